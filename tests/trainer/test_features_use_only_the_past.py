"""Features of a candle depend on that candle and earlier ones only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tjtrainer.features import FEATURES, WARMUP_ROWS, compute_features
from tjtrainer.synth import synth_candles


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return synth_candles("15m", 1500, seed=8)


@pytest.mark.parametrize("cut", [WARMUP_ROWS, 700, 1498])
def test_changing_future_candles_leaves_past_features_unchanged(
    candles: pd.DataFrame, cut: int
) -> None:
    before = compute_features(candles)
    changed = candles.copy()
    future = changed.index > cut
    rng = np.random.default_rng(cut)
    scale = rng.uniform(0.5, 2.0, future.sum())
    for column in ("open", "high", "low", "close"):
        changed.loc[future, column] = changed.loc[future, column] * scale
    changed.loc[future, "volume"] = changed.loc[future, "volume"] * rng.uniform(
        0.1, 10, future.sum()
    )
    after = compute_features(changed)
    pd.testing.assert_frame_equal(before.iloc[: cut + 1], after.iloc[: cut + 1], check_exact=True)
    # The change is visible from the next candle on, so the test above is not vacuous.
    assert not np.allclose(before.iloc[cut + 1 :].to_numpy(), after.iloc[cut + 1 :].to_numpy())


def test_warm_up_rows_are_empty_and_the_rest_finite(candles: pd.DataFrame) -> None:
    features = compute_features(candles)
    assert list(features.columns) == list(FEATURES)
    assert features.iloc[:WARMUP_ROWS].isna().all().all()
    assert np.isfinite(features.iloc[WARMUP_ROWS:].to_numpy()).all()


def test_flat_market_gives_finite_features() -> None:
    stamps = pd.date_range("2024-01-01", periods=300, freq="15min", tz="UTC")
    flat = pd.DataFrame(
        {
            "timestamp": stamps,
            "open": 100.0,
            "high": 100.0,
            "low": 100.0,
            "close": 100.0,
            "volume": 0.0,
        }
    )
    features = compute_features(flat).iloc[WARMUP_ROWS:]
    assert np.isfinite(features.to_numpy()).all()
    assert (features["clv"] == 0).all()
    assert (features["rsi_14"] == 50).all()


def test_returns_are_log_returns_over_their_lag(candles: pd.DataFrame) -> None:
    features = compute_features(candles)
    close = candles["close"].to_numpy()
    row = 500
    assert features["ret_1"].iloc[row] == pytest.approx(np.log(close[row] / close[row - 1]))
    assert features["ret_96"].iloc[row] == pytest.approx(np.log(close[row] / close[row - 96]))
