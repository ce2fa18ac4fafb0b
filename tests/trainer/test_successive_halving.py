"""Successive halving: a trial's first fold stops at a round rung when its early-stopping
rmse is worse than what earlier trials had after as many rounds, and a trial stops after
a fold when its running mean is outside the best third of earlier trials' after as many
folds. Both bars come from the finished trials a trial was sampled from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from trainer_testlib import make_config

from tjtrainer.dataset_reader import load_dataset
from tjtrainer.matrices import build_matrices, scale_features
from tjtrainer.sampling import (
    FIRST_FOLD_RMSE_ATTR,
    KEEP_SHARE,
    PRUNER_STARTUP_TRIALS,
    RUNG_RMSE_ATTR,
    PruningReference,
    linear_quantile,
)
from tjtrainer.search import ROUND_RUNGS, Timings, fit_trial
from tjtrainer.splits import make_splits
from tjtrainer.train import run_training

PARAMS = {
    "n_estimators": 300,
    "max_depth": 3,
    "learning_rate": 0.01,  # slow: still improving at the first rungs
    "min_child_weight": 5.0,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "reg_lambda": 1.0,
}


def _trial(
    state: TrialState,
    *,
    folds: dict[int, float] | None = None,
    rungs: list[float] | None = None,
    final_rmse: float | None = None,
) -> FrozenTrial:
    attrs: dict[str, object] = {}
    if rungs is not None:
        attrs[RUNG_RMSE_ATTR] = rungs
    if final_rmse is not None:
        attrs[FIRST_FOLD_RMSE_ATTR] = final_rmse
    return optuna.trial.create_trial(
        state=state,
        value=0.0 if state == TrialState.COMPLETE else None,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        intermediate_values=folds or {},
        user_attrs=attrs,
    )


def test_after_a_fold_only_the_best_third_goes_on() -> None:
    means = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
    reference = PruningReference.of(
        [_trial(TrialState.COMPLETE, folds={0: m, 1: m}) for m in means[:3]]
        + [_trial(TrialState.PRUNED, folds={0: m}) for m in means[3:]]  # pruned trials count
    )
    bar = float(np.quantile(means, 1 - KEEP_SHARE))
    assert reference.prunes(bar - 1e-6, 0)
    assert not reference.prunes(bar + 1e-6, 0)
    assert not reference.prunes(0.0, 1)  # only 3 trials reached fold 2: too few to judge


def test_nothing_is_pruned_before_enough_trials_reached_the_step() -> None:
    few = [_trial(TrialState.COMPLETE, folds={0: 0.05}, rungs=[0.9], final_rmse=0.9)]
    reference = PruningReference.of(few * (PRUNER_STARTUP_TRIALS - 1))
    assert not reference.prunes(-1.0, 0)
    assert not reference.prunes_rung(0, 99.0)


def test_a_round_rung_compares_the_best_rmse_with_earlier_trials_at_as_many_rounds() -> None:
    trials = [
        # Reached rung 0 only, then stopped by itself at its best 0.80: it stands for 0.80
        # at every later rung.
        _trial(TrialState.COMPLETE, folds={0: 0.1}, rungs=[0.81], final_rmse=0.80),
        _trial(TrialState.COMPLETE, folds={0: 0.1}, rungs=[0.83, 0.82], final_rmse=0.82),
        _trial(TrialState.COMPLETE, folds={0: 0.1}, rungs=[0.84, 0.83], final_rmse=0.83),
        _trial(TrialState.PRUNED, folds={0: 0.0}, rungs=[0.85, 0.84], final_rmse=0.84),
        _trial(TrialState.PRUNED, rungs=[0.90], final_rmse=0.90),  # pruned at rung 0
        _trial(TrialState.PRUNED, rungs=[0.86, 0.85], final_rmse=0.85),  # pruned at rung 1
    ]
    reference = PruningReference.of(trials)
    assert reference.rung_reached[0] == 6
    assert reference.rung_thresholds[0] == pytest.approx(
        np.median([0.81, 0.83, 0.84, 0.85, 0.90, 0.86])
    )
    assert reference.prunes_rung(0, 0.86)  # worse than the median: stop
    assert not reference.prunes_rung(0, 0.84)
    # Rung 1: the trial pruned at rung 0 stands for nothing; the others for their values.
    assert reference.rung_reached[1] == 5
    assert reference.rung_thresholds[1] == pytest.approx(np.median([0.80, 0.82, 0.83, 0.84, 0.85]))
    # Old trials without rung notes do not count.
    assert PruningReference.of([_trial(TrialState.COMPLETE, folds={0: 0.1})] * 6).rung_reached == {}


def test_a_fit_pruned_at_a_rung_stops_there_without_scoring_a_fold(data_root: Path) -> None:
    dataset = load_dataset(data_root, "15m")
    splits = make_splits(dataset.rows, train_ratio=0.8, horizon=dataset.horizon)
    matrices = build_matrices(dataset, splits, *scale_features(dataset, splits), 1, Timings())
    matrices.use_labels("LONG", Timings())
    folds = matrices.fold_inputs("LONG")
    seen: list[tuple[int, float]] = []

    def prune_at_first_rung(rung: int, rmse: float) -> bool:
        seen.append((rung, rmse))
        return True

    timings = Timings()
    result = fit_trial(PARAMS, folds, seed=3, nthread=1, rungs=prune_at_first_rung, timings=timings)
    assert result.pruned
    assert result.fold_scores == ()  # no fold was scored
    assert timings.rounds == ROUND_RUNGS[0]  # it stopped at that rung's round
    assert [rung for rung, _ in seen] == [0]
    assert result.rung_rmse == (seen[0][1],)
    assert result.first_fold_rmse == pytest.approx(seen[0][1])

    # Without a check the same fit runs on (to its early stop), and every fold is scored.
    free_timings = Timings()
    free = fit_trial(PARAMS, folds, seed=3, nthread=1, timings=free_timings)
    assert not free.pruned and len(free.fold_scores) == 3
    assert free_timings.rounds > ROUND_RUNGS[0]
    assert free.rung_rmse[0] == pytest.approx(result.rung_rmse[0])
    assert free.first_fold_rmse <= free.rung_rmse[0]  # the best so far never gets worse


def test_a_real_search_prunes_at_rounds_and_after_folds(data_root: Path) -> None:
    progress = run_training(make_config(data_root, "halving", n_trials=12))
    pruned = [t for t in progress.trials if t.state == "pruned"]
    at_rounds = [t for t in pruned if not t.fold_scores]
    after_folds = [t for t in pruned if t.fold_scores]
    assert at_rounds, "some first folds stopped at a round rung"
    assert after_folds, "some trials stopped after a fold"
    assert all(t.spearman is None for t in pruned)
    assert sum(t.state == "complete" for t in progress.trials) >= 2 * PRUNER_STARTUP_TRIALS


def test_the_pruning_bars_are_numpys_quantiles_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    for n in range(1, 40):
        for values in (rng.normal(size=n), rng.integers(0, 4, size=n) / 7.0, rng.random(n) * 1e-4):
            listed = [float(v) for v in values]
            for q in (0.0, 1 / 3, 1 / 2, 2 / 3, 0.95, 1.0):
                assert linear_quantile(listed, q) == float(np.quantile(listed, q)), (listed, q)
    assert np.isnan(linear_quantile([0.1, float("nan"), 0.3], 0.5))
