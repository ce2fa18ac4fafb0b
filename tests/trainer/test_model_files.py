"""Models are written as a complete, checksummed version, then published as *_latest."""

from __future__ import annotations

import json
import os
import pickle
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.preprocessing import StandardScaler
from trainer_testlib import N_TRIALS, RecordedRun

from tjcontract.files import sha256_file
from tjtrainer import versions
from tjtrainer.dataset_reader import load_dataset
from tjtrainer.metrics import spearman
from tjtrainer.models import save_models
from tjtrainer.splits import make_splits

LATEST = [
    "champion_15m_long",
    "champion_15m_short",
    "latest_15m",
    "metadata_15m_latest.json",
    "model_long_15m_latest.pkl",
    "model_long_15m_latest.ubj",
    "model_short_15m_latest.pkl",
    "model_short_15m_latest.ubj",
    "scaler_15m_latest.json",
    "scaler_15m_latest.pkl",
]
VERSION_FILES = [
    "metadata.json",
    "model_long.pkl",
    "model_long.ubj",
    "model_short.pkl",
    "model_short.ubj",
    "scaler.json",
    "scaler.pkl",
]


@pytest.fixture(scope="module")
def metadata(completed_run: RecordedRun) -> dict:
    return json.loads((completed_run.config.models_dir / "metadata_15m_latest.json").read_text())


def test_layout_latest_names_and_one_version_folder(completed_run: RecordedRun) -> None:
    models = completed_run.config.models_dir
    version = completed_run.final.model_version
    assert version is not None
    assert sorted(p.name for p in models.iterdir()) == sorted([*LATEST, version])
    assert sorted(p.name for p in (models / version).iterdir()) == VERSION_FILES


def test_latest_names_are_links_through_one_pointer(completed_run: RecordedRun) -> None:
    models = completed_run.config.models_dir
    version = str(completed_run.final.model_version)
    assert os.readlink(models / "latest_15m") == version
    assert os.readlink(models / "champion_15m_long") == version
    assert os.readlink(models / "champion_15m_short") == version
    for name in VERSION_FILES:
        stem, suffix = name.rsplit(".", 1)
        latest = models / f"{stem}_15m_latest.{suffix}"
        assert os.readlink(latest) == f"latest_15m/{name}"
        assert latest.read_bytes() == (models / version / name).read_bytes()


def test_metadata_lists_the_checksum_of_every_file(
    completed_run: RecordedRun, metadata: dict
) -> None:
    models = completed_run.config.models_dir
    folder = models / metadata["version"]
    assert set(metadata["files"]) == set(VERSION_FILES) - {"metadata.json"}
    for name, digest in metadata["files"].items():
        assert sha256_file(folder / name) == digest
    for name, digest in metadata["latest_files"].items():
        assert sha256_file(models / name) == digest


def test_metadata_describes_the_run(completed_run: RecordedRun, metadata: dict) -> None:
    config, final = completed_run.config, completed_run.final
    assert metadata["version"] == final.model_version
    assert metadata["version"].startswith("15m_") and len(metadata["version"]) == 19
    assert metadata["timeframe"] == "15m"
    assert (metadata["n_trials"], metadata["train_ratio"], metadata["seed"]) == (
        N_TRIALS,
        config.train_ratio,
        config.seed,
    )
    dataset = load_dataset(config.data_root, "15m")
    assert metadata["features"] == dataset.features
    assert metadata["dataset"]["checksum"] == dataset.checksum
    assert metadata["dataset"]["rows"] == dataset.rows
    sizes = make_splits(dataset.rows, train_ratio=0.8, horizon=dataset.horizon).sizes()
    assert metadata["row_counts"] == {**sizes, "dataset": dataset.rows}
    for key in ("started_at", "finished_at", "saved_at"):
        assert metadata[key].endswith("Z")
    long, short = metadata["models"]["LONG"], metadata["models"]["SHORT"]
    assert long["validation_spearman"] == final.best_score_long
    assert short["validation_spearman"] == final.best_score_short
    assert long["test_spearman"] == final.test_score_long
    assert short["test_spearman"] == final.test_score_short
    best_long = max(
        (t for t in final.trials if t.model == "LONG" and t.spearman is not None),
        key=lambda t: t.spearman or 0.0,
    )
    assert long["best_params"] == best_long.params


def test_saved_models_reproduce_the_reported_test_score(
    completed_run: RecordedRun, metadata: dict
) -> None:
    models = completed_run.config.models_dir
    dataset = load_dataset(completed_run.config.data_root, "15m")
    test = make_splits(dataset.rows, train_ratio=0.8, horizon=dataset.horizon).test
    scaler = pickle.loads((models / "scaler_15m_latest.pkl").read_bytes())
    rows = scaler.transform(dataset.x[test])
    for model, labels in (("long", dataset.y_long), ("short", dataset.y_short)):
        regressor = pickle.loads((models / f"model_{model}_15m_latest.pkl").read_bytes())
        assert isinstance(regressor, xgb.XGBRegressor)
        booster = xgb.Booster(model_file=str(models / f"model_{model}_15m_latest.ubj"))
        predicted = regressor.predict(rows)
        np.testing.assert_allclose(predicted, booster.inplace_predict(rows), rtol=1e-6)
        reported = metadata["models"][model.upper()]["test_spearman"]
        assert spearman(predicted, labels[test]) == pytest.approx(reported, abs=1e-9)


def test_no_temporary_files_are_left(completed_run: RecordedRun) -> None:
    for path in completed_run.config.data_root.rglob("*"):
        assert not path.name.endswith(".tmp"), path


def tiny_booster(seed: int) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    data = xgb.DMatrix(rng.normal(size=(50, 3)), label=rng.normal(size=50))
    return xgb.train({"max_depth": 2, "nthread": 1}, data, num_boost_round=2)


def test_two_saves_in_the_same_second_get_distinct_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Clock:
        @staticmethod
        def now(tz: object = None) -> datetime:
            return datetime(2026, 1, 23, 14, 0, 0, tzinfo=UTC)

    monkeypatch.setattr(versions, "datetime", Clock)
    scaler = StandardScaler().fit(np.arange(6.0).reshape(3, 2))
    started = time.monotonic()
    saved = [
        save_models(
            tmp_path,
            timeframe="1h",
            boosters={"LONG": tiny_booster(i), "SHORT": tiny_booster(i + 10)},
            scaler=scaler,
            metadata={"note": i},
        )
        for i in range(3)
    ]
    assert time.monotonic() - started < 5  # nobody waits for the next second
    names = [s.version for s in saved]
    assert names == ["1h_20260123_140000", "1h_20260123_140000_001", "1h_20260123_140000_002"]
    assert names == sorted(names)
    assert all(s.version_dir.is_dir() for s in saved)
    latest = json.loads((tmp_path / "metadata_1h_latest.json").read_text())
    assert latest["version"] == saved[2].version and latest["note"] == 2
    first = json.loads((saved[0].version_dir / "metadata.json").read_text())
    assert first["note"] == 0  # the older version stays as it was
    for name, digest in first["files"].items():
        assert sha256_file(saved[0].version_dir / name) == digest
