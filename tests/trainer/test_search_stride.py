"""On large data sets the search trains on every t-th row of each fold's window, weighted
t: the stride is chosen from the data's size, the thinned rows stay inside the window,
and the weights make a thinned window train the trees its rows would train twice over."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import xgboost as xgb
from trainer_testlib import make_config

from tjtrainer.dataset_reader import load_dataset
from tjtrainer.errors import RunFolderError
from tjtrainer.matrices import build_matrices, scale_features, standardised
from tjtrainer.search import MAX_BIN, Timings, booster_params
from tjtrainer.splits import MIN_SEARCH_FIT_ROWS, make_splits, search_stride
from tjtrainer.studies import check_fingerprint
from tjtrainer.train import run_training

# Large enough leaves and L2 that the hessian sums (hence the weights) shape the trees.
PARAMS = {
    "n_estimators": 40,
    "max_depth": 4,
    "learning_rate": 0.1,
    "min_child_weight": 40.0,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "reg_lambda": 20.0,
}


def test_the_stride_is_the_horizon_unless_the_first_window_gets_too_small() -> None:
    assert search_stride(2 * MIN_SEARCH_FIT_ROWS - 1, horizon=4) == 1
    assert search_stride(2 * MIN_SEARCH_FIT_ROWS, horizon=4) == 2
    assert search_stride(3 * MIN_SEARCH_FIT_ROWS, horizon=4) == 3
    assert search_stride(40 * MIN_SEARCH_FIT_ROWS, horizon=4) == 4  # no further than h
    assert search_stride(40 * MIN_SEARCH_FIT_ROWS, horizon=1) == 1  # no overlap
    assert search_stride(40 * MIN_SEARCH_FIT_ROWS, horizon=0) == 1
    # The demo's 20,000 rows keep every row; the benchmark's 70,000 and 280,000 every 4th.
    assert make_splits(20_000, train_ratio=0.8, horizon=4).stride == 1
    assert make_splits(70_000, train_ratio=0.8, horizon=4).stride == 4
    assert make_splits(280_000, train_ratio=0.8, horizon=4).stride == 4
    assert make_splits(280_000, train_ratio=0.8, horizon=4, stride=1).stride == 1
    with pytest.raises(ValueError, match="stride must be >= 1"):
        make_splits(70_000, train_ratio=0.8, horizon=4, stride=0)


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_thinned_rows_stay_inside_each_window_and_keep_its_last_row(stride: int) -> None:
    splits = make_splits(20_000, train_ratio=0.8, horizon=4, embargo=16, stride=stride)
    for fold in splits.folds:
        window = range(int(fold.fit.start), int(fold.fit.stop))
        thinned = range(20_000)[splits.search_rows(fold)]
        assert set(thinned) <= set(window)
        assert thinned[-1] == window[-1]  # the rows nearest the purge gap are kept
        assert thinned.step == stride
        assert len(thinned) == -(-len(window) // stride)
    # The final model and the validation blocks use every row.
    assert splits.final.fit.step is None and all(b.step is None for b in splits.blocks)


def test_a_thinned_window_is_weighted_like_the_rows_it_stands_for(data_root: Path) -> None:
    dataset = load_dataset(data_root, "15m")
    splits = make_splits(dataset.rows, train_ratio=0.8, horizon=dataset.horizon, stride=2)
    scaler, features = scale_features(dataset, splits)
    matrices = build_matrices(dataset, splits, scaler, features, 1, Timings())
    matrices.use_labels("SHORT", Timings())
    fold = splits.folds[1]
    rows = splits.search_rows(fold)
    labels = standardised(dataset.y_short[rows])
    # Every thinned row twice, unweighted, on the same feature bins.
    doubled = xgb.QuantileDMatrix(
        np.repeat(features[rows], 2, axis=0),
        label=np.repeat(labels, 2),
        max_bin=MAX_BIN,
        nthread=1,
        ref=matrices.fits[0],
    )
    unweighted = xgb.QuantileDMatrix(
        features[rows], label=labels, max_bin=MAX_BIN, nthread=1, ref=matrices.fits[0]
    )
    block = matrices.blocks[2]

    def predictions(data: xgb.DMatrix) -> np.ndarray:
        booster = xgb.train(booster_params(PARAMS, seed=5, nthread=1), data, num_boost_round=40)
        return np.asarray(booster.predict(block))

    ours = predictions(matrices.fits[1])
    assert matrices.fits[1].num_row() == len(range(dataset.rows)[rows])
    np.testing.assert_allclose(ours, predictions(doubled), rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours, predictions(unweighted), rtol=1e-3, atol=1e-4)


def test_a_run_records_its_stride_and_trains_the_final_model_on_every_row(
    data_root: Path,
) -> None:
    config = make_config(data_root, "stride", n_trials=3, search_stride=3)
    progress = run_training(config)
    assert progress.state == "completed"
    metadata = json.loads((config.models_dir / "metadata_15m_latest.json").read_text())
    assert metadata["splits"]["search_stride"] == 3
    splits = make_splits(
        metadata["dataset"]["rows"], train_ratio=0.8, horizon=metadata["dataset"]["horizon"]
    )
    assert metadata["splits"]["final"]["fit"]["rows"] == int(splits.final.fit.stop)


def test_a_study_searched_with_another_stride_is_not_resumed_with_this_one() -> None:
    storage = optuna.storages.InMemoryStorage()
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "LONG")
    check_fingerprint(storage, study_id, {"cv_folds": 3, "search_stride": 1}, where="here")
    with pytest.raises(RunFolderError, match=r"search_stride differ: \{\"search_stride\": 1\}"):
        check_fingerprint(storage, study_id, {"cv_folds": 3, "search_stride": 4}, where="here")
    # A study stamped before the stride was recorded resumes with the data's stride.
    older = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "SHORT")
    check_fingerprint(storage, older, {"cv_folds": 3}, where="here")
    check_fingerprint(storage, older, {"cv_folds": 3, "search_stride": 4}, where="here")
    with pytest.raises(RunFolderError, match="cv_folds differ"):
        check_fingerprint(storage, older, {"cv_folds": 5, "search_stride": 4}, where="here")
