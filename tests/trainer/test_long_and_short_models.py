"""The LONG and SHORT models answer different questions: their predictions are not one
another's mirror image (as they were with forward-return labels)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import xgboost as xgb
from trainer_testlib import RecordedRun

from tjtrainer.dataset_reader import load_dataset
from tjtrainer.datasets import synth_dataset
from tjtrainer.search import booster_params

PARAMS = {
    "max_depth": 4,
    "learning_rate": 0.1,
    "min_child_weight": 5.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "reg_lambda": 1.0,
}


def _predictions(root: Path, models: Path | None = None) -> dict[str, np.ndarray]:
    """Test-tail predictions of the saved models, or of LONG and SHORT models trained with
    the same parameters and seed when ``models`` is None."""
    dataset = load_dataset(root, "15m")
    cut = int(dataset.rows * 0.8)
    out = {}
    for model, labels in (("long", dataset.y_long), ("short", dataset.y_short)):
        if models is not None:
            booster = xgb.Booster(model_file=str(models / f"model_{model}_15m_latest.ubj"))
            scaler = pickle.loads((models / "scaler_15m_latest.pkl").read_bytes())
            rows = scaler.transform(dataset.x[cut:])
        else:
            train = xgb.DMatrix(dataset.x[:cut], label=labels[:cut])
            booster = xgb.train(booster_params(PARAMS, seed=1, nthread=1), train, 60)
            rows = dataset.x[cut:]
        out[model] = booster.inplace_predict(rows)
    return out


def _mirror(predictions: dict[str, np.ndarray]) -> float:
    """1.0 when SHORT's predictions are LONG's negated (up to a shift)."""
    return float(-np.corrcoef(predictions["long"], predictions["short"])[0, 1])


def test_trained_long_and_short_models_are_not_mirror_images(completed_run: RecordedRun) -> None:
    config = completed_run.config
    predictions = _predictions(config.data_root, config.models_dir)
    assert np.ptp(predictions["long"]) > 0 and np.ptp(predictions["short"]) > 0
    assert _mirror(predictions) < 0.9


def test_barrier_labels_break_the_mirror_that_forward_labels_make(tmp_path: Path) -> None:
    """The same parameters and seed on both sides: mirrored models with forward labels
    (what the trainer used to spend half its compute on), different ones with barriers."""
    synth_dataset(tmp_path / "forward", "15m", rows=3000, seed=5, label="forward")
    synth_dataset(tmp_path / "barrier", "15m", rows=3000, seed=5)
    assert _mirror(_predictions(tmp_path / "forward")) > 0.999
    assert _mirror(_predictions(tmp_path / "barrier")) < 0.9
