"""Synthetic candles look like a market, and `synth_dataset` honours the dataset contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kurtosis, spearmanr

from tjcontract.files import sha256_file
from tjtrainer.dataset_reader import DATASET_FILE, INFO_FILE, load_dataset
from tjtrainer.datasets import synth_dataset
from tjtrainer.errors import DatasetError
from tjtrainer.features import FEATURES
from tjtrainer.splits import minimum_rows
from tjtrainer.synth import synth_candles


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return synth_candles("15m", 8000, seed=11)


def test_candles_are_consistent_ohlcv(candles: pd.DataFrame) -> None:
    assert list(candles.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert (candles["high"] >= candles[["open", "close"]].max(axis=1)).all()
    assert (candles["low"] <= candles[["open", "close"]].min(axis=1)).all()
    assert (candles[["open", "high", "low", "close", "volume"]] > 0).all().all()
    steps = candles["timestamp"].diff().dropna()
    assert (steps == pd.Timedelta(minutes=15)).all()
    assert str(candles["timestamp"].dt.tz) == "UTC"


def test_returns_have_heavy_tails_and_volatility_clusters(candles: pd.DataFrame) -> None:
    returns = np.diff(np.log(candles["close"].to_numpy()))
    assert kurtosis(returns) > 3.0  # excess kurtosis: far heavier tails than a normal
    size = np.abs(returns)
    assert np.corrcoef(size[:-1], size[1:])[0, 1] > 0.1  # big moves follow big moves
    assert abs(np.corrcoef(returns[:-1], returns[1:])[0, 1]) < 0.1  # yet no easy trend


def test_volume_rises_with_volatility(candles: pd.DataFrame) -> None:
    size = np.abs(np.diff(np.log(candles["close"].to_numpy())))
    assert spearmanr(candles["volume"].to_numpy()[1:], size).statistic > 0.3


def test_same_seed_same_candles_other_seed_other_candles() -> None:
    pd.testing.assert_frame_equal(
        synth_candles("1h", 500, seed=5), synth_candles("1h", 500, seed=5)
    )
    assert not synth_candles("1h", 500, seed=5).equals(synth_candles("1h", 500, seed=6))


def test_hourly_candles_are_an_hour_apart() -> None:
    steps = synth_candles("1h", 50, seed=0)["timestamp"].diff().dropna()
    assert (steps == pd.Timedelta(hours=1)).all()


def test_synth_dataset_writes_the_contract(tmp_path: Path) -> None:
    path, info = synth_dataset(tmp_path, "15m", rows=1200, seed=2, horizon=6)
    assert path == tmp_path / "datasets" / "15m" / DATASET_FILE
    frame = pd.read_parquet(path)
    assert len(frame) == 1200 == info.rows
    assert list(frame.columns) == ["timestamp", *FEATURES, "label_long", "label_short"]
    assert frame["timestamp"].is_monotonic_increasing and frame["timestamp"].is_unique
    assert np.isfinite(frame.drop(columns="timestamp").to_numpy()).all()

    described = json.loads((path.parent / INFO_FILE).read_text())
    assert described["checksum"] == f"sha256:{sha256_file(path)}"
    assert described["rows"] == 1200
    assert described["horizon"] == 6
    assert described["cost_bps"] == 10.0
    assert described["features"] == list(FEATURES)
    assert described["source"] == {"kind": "synth", "seed": 2, "candles": 1200 + 96 + 6}
    assert described["first_timestamp"].endswith("Z")


def test_synth_dataset_carries_a_learnable_signal(tmp_path: Path) -> None:
    path, _ = synth_dataset(tmp_path, "15m", rows=20_000, seed=4)
    frame = pd.read_parquet(path)
    correlations = [abs(spearmanr(frame[name], frame["label_long"]).statistic) for name in FEATURES]
    assert max(correlations) > 0.03  # weak but real structure a model can find
    assert max(correlations) < 0.3  # and nowhere near a giveaway


def test_synth_dataset_replaces_the_previous_one(tmp_path: Path) -> None:
    synth_dataset(tmp_path, "1h", rows=1200, seed=1)
    path, info = synth_dataset(tmp_path, "1h", rows=1300, seed=1)
    assert len(pd.read_parquet(path)) == 1300 == info.rows
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary files left behind
    shutil.rmtree(tmp_path / "datasets")


@pytest.mark.parametrize("timeframe", ["../../escaped", "/tmp/escaped-dataset", "5m"])
def test_a_timeframe_is_never_a_path_of_its_own(tmp_path: Path, timeframe: str) -> None:
    root = tmp_path / "shared"
    with pytest.raises(DatasetError, match="timeframe must be one of 15m, 1h"):
        synth_dataset(root, timeframe, rows=500, seed=1)
    assert not (tmp_path / "escaped").exists()
    assert not Path("/tmp/escaped-dataset").exists()
    with pytest.raises(DatasetError, match="timeframe must be one of"):
        load_dataset(root, timeframe)


def test_too_few_rows_are_refused_and_the_dataset_in_place_is_kept(tmp_path: Path) -> None:
    path, before = synth_dataset(tmp_path, "15m", rows=1200, seed=1)
    content = path.read_bytes()
    with pytest.raises(DatasetError) as caught:
        synth_dataset(tmp_path, "15m", rows=10, seed=1)
    message = str(caught.value)
    assert "10 rows are too few to train with the default spec" in message
    assert f"ask for --rows {minimum_rows(horizon=before.horizon)} or more" in message
    assert "--force" in message
    assert path.read_bytes() == content  # the usable dataset is untouched
    _, forced = synth_dataset(tmp_path, "15m", rows=10, seed=1, force=True)
    assert forced.rows == 10 == len(pd.read_parquet(path))


def test_a_negative_seed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="--seed must be an integer >= 0, got -1"):
        synth_dataset(tmp_path, "15m", seed=-1)
    assert not (tmp_path / "datasets").exists()
