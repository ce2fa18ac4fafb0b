"""Training does not depend on the labels' scale: FX-sized labels (a ten-thousandth of
the synthetic crypto ones) give the same trials, scores and real trees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from trainer_testlib import make_config

from tjtrainer.dataset_reader import DATASET_FILE
from tjtrainer.datasets import write_dataset
from tjtrainer.matrices import standardised
from tjtrainer.train import run_training

SCALE = 1e-4


def _scaled_copy(dataset_root: Path, root: Path) -> None:
    source = dataset_root / "datasets" / "15m"
    frame = pd.read_parquet(source / DATASET_FILE)
    frame[["label_long", "label_short"]] *= SCALE
    info = json.loads((source / "dataset.json").read_text())
    write_dataset(frame, root, timeframe="15m", horizon=info["horizon"], cost_bps=0.0, source={})


def _leaves(booster: xgb.Booster) -> pd.Series:
    trees = booster.trees_to_dataframe()
    return trees[trees["Feature"] == "Leaf"].groupby("Tree").size()


def _leaves_per_tree(models: Path, side: str) -> pd.Series:
    return _leaves(xgb.Booster(model_file=str(models / f"model_{side}_15m_latest.ubj")))


def test_labels_a_ten_thousandth_the_size_train_the_same_models(
    dataset_root: Path, tmp_path: Path
) -> None:
    plain, small = tmp_path / "plain", tmp_path / "small"
    shutil.copytree(dataset_root / "datasets", plain / "datasets")
    _scaled_copy(dataset_root, small)
    first = run_training(make_config(plain, "plain", n_trials=2))
    second = run_training(make_config(small, "small", n_trials=2))
    assert [t.params for t in second.trials] == [t.params for t in first.trials]
    for a, b in zip(first.trials, second.trials, strict=True):
        assert a.state == b.state
        if a.spearman is not None:
            assert b.spearman == pytest.approx(a.spearman, abs=1e-6)
    assert second.test_score_long == pytest.approx(first.test_score_long, abs=1e-6)
    assert second.test_score_short == pytest.approx(first.test_score_short, abs=1e-6)
    # Real trees, not the single leaves XGBoost's absolute split-gain floor leaves on
    # unscaled FX-sized labels.
    for side in ("long", "short"):
        leaves = _leaves_per_tree(small / "models", side)
        assert (leaves > 1).mean() > 0.9, leaves.describe()


def test_unscaled_fx_sized_labels_would_leave_single_leaves(dataset_root: Path) -> None:
    """Why standardising matters (so the test above can fail): the same data and
    parameters on raw FX-sized labels grow stumps of one leaf."""
    frame = pd.read_parquet(dataset_root / "datasets" / "15m" / DATASET_FILE)
    x = frame.drop(columns=["timestamp", "label_long", "label_short"]).to_numpy()
    y = frame["label_long"].to_numpy() * SCALE
    params = {"max_depth": 4, "learning_rate": 0.1, "tree_method": "hist", "nthread": 1}
    raw = xgb.train(params, xgb.DMatrix(x, label=y), 20)
    scaled = xgb.train(params, xgb.DMatrix(x, label=standardised(y)), 20)
    assert (_leaves(raw) == 1).all()
    assert (_leaves(scaled) > 1).all()


def test_standardised_labels_have_mean_zero_and_unit_spread() -> None:
    values = np.random.default_rng(1).normal(0.002, 3e-4, 500)
    standard = standardised(values)
    assert standard.mean() == pytest.approx(0.0, abs=1e-12)
    assert standard.std() == pytest.approx(1.0)
    assert (standardised(np.full(10, 0.3)) == 0).all()
