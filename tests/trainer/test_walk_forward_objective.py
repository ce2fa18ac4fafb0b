"""The objective is the mean Spearman over purged, embargoed walk-forward folds: each fold
early-stops on one block and is scored on the next; pruning happens between folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from trainer_testlib import RecordedRun, make_config

from tjtrainer.dataset_reader import load_dataset
from tjtrainer.matrices import build_matrices, scale_features
from tjtrainer.metrics import spearman
from tjtrainer.search import Timings, booster_params, fit_trial, predict
from tjtrainer.splits import make_splits
from tjtrainer.train import run_training

PARAMS = {
    "n_estimators": 300,
    "max_depth": 4,
    "learning_rate": 0.1,
    "min_child_weight": 5.0,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "reg_lambda": 1.0,
}


def test_trial_value_is_the_mean_of_its_fold_scores(completed_run: RecordedRun) -> None:
    trials = completed_run.final.trials
    complete = [t for t in trials if t.state == "complete"]
    assert complete
    for record in complete:
        assert record.fold_scores is not None and len(record.fold_scores) == 3
        assert record.spearman == pytest.approx(float(np.mean(record.fold_scores)))
        assert record.spread == pytest.approx(float(np.std(record.fold_scores)), abs=1e-6)
        assert len(set(record.fold_scores)) == 3  # three different blocks


def test_each_fold_is_scored_on_its_block_after_early_stopping_on_the_one_before(
    data_root: Path,
) -> None:
    dataset = load_dataset(data_root, "15m")
    splits = make_splits(dataset.rows, train_ratio=0.8, horizon=dataset.horizon)
    matrices = build_matrices(dataset, splits, *scale_features(dataset, splits), 1, Timings())
    matrices.use_labels("LONG", Timings())
    folds = matrices.fold_inputs("LONG")
    result = fit_trial(PARAMS, folds, seed=3, nthread=1)
    assert len(result.fold_scores) == len(splits.folds) == 3
    for fold, inputs, score, rounds in zip(
        splits.folds, folds, result.fold_scores, result.fold_rounds, strict=True
    ):
        assert fold.score is not None
        # Refit the fold by hand: same matrices, same seed, cut at the trial's best round.
        booster = xgb.train(
            booster_params(PARAMS, seed=3, nthread=1), inputs.fit, num_boost_round=rounds
        )
        scored = spearman(predict(booster, inputs.score), dataset.y_long[fold.score])
        watched = spearman(predict(booster, inputs.early_stop), dataset.y_long[fold.early_stop])
        assert score == pytest.approx(scored, abs=1e-9)
        assert score != pytest.approx(watched, abs=1e-6)  # not the early-stopping block's


def test_pruning_happens_between_folds(data_root: Path) -> None:
    progress = run_training(make_config(data_root, "pruning", n_trials=10))
    pruned = [t for t in progress.trials if t.state == "pruned"]
    assert any(t.fold_scores for t in pruned), "with 10 trials per model some stop after a fold"
    for record in pruned:
        # Stopped after a fold (1 or 2 scored) or inside the first fold's fit at a round
        # rung (none scored; tests/trainer/test_successive_halving.py).
        assert len(record.fold_scores or []) < 3
        assert record.spearman is None  # a pruned trial has no value


def test_the_metadata_records_the_folds(completed_run: RecordedRun) -> None:
    models = completed_run.config.models_dir
    metadata = json.loads((models / "metadata_15m_latest.json").read_text())
    splits = metadata["splits"]
    assert splits["cv_folds"] == 3 and splits["embargo"] == 16 and splits["purge_gap"] == 4
    assert len(splits["folds"]) == 3
    for fold in splits["folds"]:
        fit, stop, score = fold["fit"], fold["early_stop"], fold["score"]
        assert fit["first_row"] == 0
        assert stop["first_row"] - fit["rows"] >= 20
        assert score["first_row"] - (stop["first_row"] + stop["rows"]) >= 20
    final = splits["final"]
    assert final["early_stop"] == splits["folds"][-1]["score"]
    assert splits["test"]["first_row"] >= splits["search"]["rows"] + 20
    long = metadata["models"]["LONG"]
    assert long["validation_spearman"] == pytest.approx(np.mean(long["fold_spearman"]))
    assert long["fold_spread"] == pytest.approx(np.std(long["fold_spearman"]))
    assert 1 <= long["final_rounds"] <= long["best_params"]["n_estimators"]
