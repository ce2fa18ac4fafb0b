"""One Optuna trial's work: fit an XGBoost model with sampled parameters and score it.

Speed matters because a search repeats this 2 × nTrials times:

- the training and validation matrices are built once per run (a ``QuantileDMatrix``
  for the ``hist`` method) and reused by every trial and both models;
- every :data:`EVAL_EVERY` rounds a callback predicts the validation split (XGBoost keeps
  the previous predictions, so only the new trees are evaluated) and scores it with a
  cheap rank proxy; training stops once the proxy has not improved for :data:`PATIENCE`
  rounds (early stopping inside XGBoost), and the model is truncated to its best round;
- at a few checkpoints the proxy goes to Optuna's pruner, which stops hopeless trials.

The trial's value is Spearman's rho of the best round's validation predictions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xgboost as xgb
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from tjtrainer.metrics import RankTarget

# Names follow XGBoost's scikit-learn API, so the same dict fits an XGBRegressor. Models
# train on standardised labels (tjtrainer.matrices.standardised), so ``reg_lambda`` and
# XGBoost's split-gain floor act the same whatever the labels' scale.
SEARCH_SPACE: dict[str, BaseDistribution] = {
    "n_estimators": IntDistribution(100, 1000, step=50),
    "max_depth": IntDistribution(3, 8),
    "learning_rate": FloatDistribution(0.01, 0.3, log=True),
    "min_child_weight": FloatDistribution(1.0, 100.0, log=True),
    "subsample": FloatDistribution(0.5, 1.0),
    "colsample_bytree": FloatDistribution(0.5, 1.0),
    "reg_lambda": FloatDistribution(1e-3, 100.0, log=True),
}
EVAL_EVERY = 10
PATIENCE = 50
PRUNE_CHECKPOINTS = (50, 100, 200, 400)
MAX_BIN = 256

Reporter = Callable[[float, int], bool]
"""Called with (proxy score, round) at each checkpoint; returns True to prune the trial."""


@dataclass
class Timings:
    """Where a run's time went: inside XGBoost versus our own Python around it.

    ``xgboost_s`` is wall time inside XGBoost calls on the trial path (training without
    our callback's own work, predictions, matrix construction); ``storage_s`` and
    ``progress_s`` are spent on the recorder thread. Updates are not locked: with
    parallel trials the figures are approximate.
    """

    xgboost_s: float = 0.0
    callback_python_s: float = 0.0
    storage_s: float = 0.0
    progress_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def add_xgboost(self, seconds: float, what: str) -> None:
        self.xgboost_s += seconds
        self.counts[what] = self.counts.get(what, 0) + 1


@dataclass(frozen=True)
class TrialFit:
    """What one trial learnt: its validation Spearman at its best round."""

    score: float
    rounds: int
    pruned: bool
    booster: xgb.Booster


def booster_params(params: dict[str, Any], *, seed: int, nthread: int) -> dict[str, Any]:
    """XGBoost training parameters for sampled ``params`` (without ``n_estimators``)."""
    out = {k: v for k, v in params.items() if k != "n_estimators"}
    out.update(
        objective="reg:squarederror",
        tree_method="hist",
        max_bin=MAX_BIN,
        seed=seed,
        nthread=nthread,
        verbosity=0,
    )
    return out


class _Monitor(xgb.callback.TrainingCallback):
    """Early stopping on the validation proxy, pruning checkpoints, best-round tracking."""

    def __init__(
        self,
        dvalid: xgb.DMatrix,
        target: RankTarget,
        max_rounds: int,
        report: Reporter | None,
        timings: Timings,
    ) -> None:
        super().__init__()
        self.dvalid = dvalid
        self.target = target
        self.max_rounds = max_rounds
        self.report = report
        self.timings = timings
        self.best_proxy = -np.inf
        self.best_round = 0
        self.best_predictions: np.ndarray | None = None
        self.pruned = False
        self.python_s = 0.0  # our own work inside xgb.train, not XGBoost's

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        rounds = epoch + 1
        if rounds % EVAL_EVERY and rounds != self.max_rounds:
            return False
        predictions = model.predict(self.dvalid)
        predicted = time.perf_counter()
        self.timings.counts["predict"] = self.timings.counts.get("predict", 0) + 1
        proxy = self.target.proxy(predictions)
        if proxy > self.best_proxy:
            self.best_proxy, self.best_round, self.best_predictions = proxy, rounds, predictions
        stop = rounds - self.best_round >= PATIENCE
        if self.report is not None and rounds in PRUNE_CHECKPOINTS:
            self.pruned = self.report(self.best_proxy, rounds)
        self.python_s += time.perf_counter() - predicted
        return stop or self.pruned


def fit_trial(
    params: dict[str, Any],
    dtrain: xgb.DMatrix,
    dvalid: xgb.DMatrix,
    target: RankTarget,
    *,
    seed: int,
    nthread: int,
    report: Reporter | None = None,
    timings: Timings | None = None,
) -> TrialFit:
    """Train with ``params`` on ``dtrain``, early-stopped on ``dvalid``; score the best round."""
    timings = timings if timings is not None else Timings()
    max_rounds = int(params["n_estimators"])
    monitor = _Monitor(dvalid, target, max_rounds, report, timings)
    started = time.perf_counter()
    booster = xgb.train(
        booster_params(params, seed=seed, nthread=nthread),
        dtrain,
        num_boost_round=max_rounds,
        callbacks=[monitor],
        verbose_eval=False,
    )
    elapsed = time.perf_counter() - started
    timings.add_xgboost(elapsed - monitor.python_s, "train")
    timings.callback_python_s += monitor.python_s
    if monitor.best_predictions is None:
        raise RuntimeError("the model was never evaluated on the validation split")
    score = 0.0 if monitor.pruned else target.spearman(monitor.best_predictions)
    return TrialFit(score=score, rounds=monitor.best_round, pruned=monitor.pruned, booster=booster)


def refit(
    params: dict[str, Any],
    dtrain: xgb.DMatrix,
    *,
    rounds: int,
    seed: int,
    nthread: int,
    timings: Timings | None = None,
) -> xgb.Booster:
    """Train the final model: ``rounds`` rounds, no early stopping."""
    started = time.perf_counter()
    booster = xgb.train(
        booster_params(params, seed=seed, nthread=nthread),
        dtrain,
        num_boost_round=rounds,
        verbose_eval=False,
    )
    if timings is not None:
        timings.add_xgboost(time.perf_counter() - started, "refit")
    return booster


def predict(booster: xgb.Booster, data: xgb.DMatrix, timings: Timings | None = None) -> np.ndarray:
    started = time.perf_counter()
    predictions: np.ndarray = booster.predict(data)
    if timings is not None:
        timings.add_xgboost(time.perf_counter() - started, "predict")
    return predictions
