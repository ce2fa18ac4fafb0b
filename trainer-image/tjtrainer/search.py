"""One Optuna trial's work: fit an XGBoost model per walk-forward fold with sampled
parameters and score it (see :mod:`tjtrainer.splits` for the folds).

Per fold, the model is trained on the fold's expanding window, early-stopped on the block
before the fold's scored block, and scored (Spearman's rho) on the scored block at its
best round: early stopping never watches the rows it is scored on. The trial's value is
the mean of the fold scores; their spread is kept with the trial. After every fold but
the last, the running mean goes to the pruner, which stops trials that are below the
median of earlier trials after as many folds. Folds run from the smallest training window
to the largest, so a hopeless trial costs the least.

Speed matters because a search repeats this 2 × nTrials times:

- the matrices of every fold and block are built once per run (a ``QuantileDMatrix`` for
  the ``hist`` method) and reused by every trial and both models;
- XGBoost's own early stopping watches the rmse of the early-stopping block (whose
  predictions it keeps, so only new trees are evaluated) and stops once it has not
  improved for :data:`PATIENCE` rounds; the scored block is predicted at the best round.
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
# Early stopping: training stops once the early-stopping block's rmse (on labels in the
# fit's standard units) has not improved for PATIENCE rounds. Measured on the synthetic 15m
# set (bench/train_throughput.py, several data seeds, docs/TRAINER.md): against a rank
# proxy with a patience of 50, the same fresh-data Spearman in about a third of the time;
# 10 rounds instead of 20 kept it again, in about 0.7 of the time.
PATIENCE = 10
# Feature bins of the ``hist`` method. Split finding costs bins x features x nodes per
# round: 64 instead of XGBoost's default 256 took 2.3x less per round at depth 8 on 28,000
# rows x 24 features, at the same fresh-data Spearman.
MAX_BIN = 64

Reporter = Callable[[float, int], bool]
"""Called with (mean fold score so far, folds done - 1) after every fold but the last;
returns True to prune the trial."""

# Rounds after which the first fold's fit is compared with earlier trials' (successive
# halving over rounds): a trial whose best early-stopping rmse so far is worse than theirs
# at as many rounds stops there, before it spends a whole fit and two more folds.
ROUND_RUNGS: tuple[int, ...] = (10, 20, 40, 80, 160, 320, 640)

RungCheck = Callable[[int, float], bool]
"""Called with (rung index, best early-stopping rmse so far) at each of
:data:`ROUND_RUNGS` the first fold reaches; returns True to prune the trial."""


@dataclass
class Timings:
    """Where a run's time went: inside XGBoost versus our own Python around it.

    ``xgboost_s`` is the time inside XGBoost calls (training, predictions, matrix
    construction), summed over the calls: with parallel trials it exceeds the wall time,
    and ``xgboost_wall_s`` (the union of the calls' spans) is the wall time XGBoost was
    busy. ``storage_s`` is telling the study how each trial ended (its attributes and
    state, written to the journal: on the trial path) and ``progress_s`` publishing the
    progress (the journal's fsync and ``progress.json``, on the publisher's thread: off
    the trial path; tjtrainer.publisher). Updates are not locked (appending to a list is
    atomic in CPython; the sums are approximate with parallel trials).
    """

    xgboost_s: float = 0.0
    callback_python_s: float = 0.0
    storage_s: float = 0.0
    progress_s: float = 0.0
    rounds: int = 0  # boosting rounds trained, over every fit
    counts: dict[str, int] = field(default_factory=dict)
    spans: list[tuple[float, float]] = field(default_factory=list)

    def add_xgboost(self, seconds: float, what: str) -> None:
        """Count an XGBoost call of ``seconds`` that has just ended."""
        ended = time.perf_counter()
        self.xgboost_s += seconds
        self.counts[what] = self.counts.get(what, 0) + 1
        self.spans.append((ended - seconds, ended))

    @property
    def xgboost_wall_s(self) -> float:
        """Wall time during which at least one XGBoost call ran (parallel trials' calls
        overlap, so this is at most the run's wall time, unlike ``xgboost_s``)."""
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self.spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total


@dataclass(frozen=True)
class FoldInput:
    """One fold's matrices and targets, as a trial sees them."""

    fit: xgb.DMatrix
    early_stop: xgb.DMatrix  # labelled in the fit's standard units (rmse early stopping)
    score: xgb.DMatrix
    score_target: RankTarget


@dataclass(frozen=True)
class TrialFit:
    """What one trial learnt: its Spearman on each fold's scored block and the mean."""

    score: float
    fold_scores: tuple[float, ...]
    fold_rounds: tuple[int, ...]
    pruned: bool
    # The first fold's best early-stopping rmse at each rung it reached, and at its end
    # (what later trials' round rungs are compared with).
    rung_rmse: tuple[float, ...] = ()
    first_fold_rmse: float = float("nan")

    @property
    def rounds(self) -> int:
        """The mean best round over the folds."""
        return max(1, round(sum(self.fold_rounds) / max(1, len(self.fold_rounds))))

    @property
    def spread(self) -> float:
        """The standard deviation of the fold scores (0 for one fold)."""
        return float(np.std(self.fold_scores)) if self.fold_scores else 0.0


@dataclass(frozen=True)
class FitResult:
    """A booster early-stopped on a block: its best round and the block's predictions,
    and its best rmse on the block at each rung of :data:`ROUND_RUNGS` it reached."""

    booster: xgb.Booster
    best_round: int
    early_stop_predictions: np.ndarray
    best_rmse: float = float("nan")
    rung_rmse: tuple[float, ...] = ()
    pruned: bool = False


class _RoundRungs(xgb.callback.TrainingCallback):
    """Notes the best early-stopping rmse at each rung; stops when ``check`` prunes."""

    def __init__(self, check: RungCheck | None) -> None:
        super().__init__()
        self.check = check
        self.rung_rmse: list[float] = []
        self.pruned = False

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
        rung = len(self.rung_rmse)
        if rung >= len(ROUND_RUNGS) or epoch + 1 != ROUND_RUNGS[rung]:
            return False
        best = float(min(evals_log["stop"]["rmse"]))
        self.rung_rmse.append(best)
        self.pruned = self.check is not None and self.check(rung, best)
        return self.pruned


def trial_seed(seed: int, model: str, number: int) -> int:
    """XGBoost's seed for trial ``number`` of ``model`` in a run seeded ``seed``: a hash of
    all three, so runs with neighbouring seeds share no trial's randomness (``seed +
    number`` made trial 1 of seed s trial 0 of seed s + 1)."""
    entropy = [int(seed) & 0xFFFFFFFF, 0 if model == "LONG" else 1, int(number)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] & 0x7FFFFFFF)


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


def fit_early_stopped(
    params: dict[str, Any],
    dfit: xgb.DMatrix,
    dstop: xgb.DMatrix,
    *,
    seed: int,
    nthread: int,
    timings: Timings | None = None,
    rungs: RungCheck | None = None,
) -> FitResult:
    """Train with ``params`` on ``dfit``, early-stopped on the rmse of ``dstop`` (which
    carries its labels in the standard units of ``dfit``'s); the booster keeps every round,
    ``best_round`` says where to cut. With ``rungs``, the fit stops (``pruned``) when the
    check says so at a rung of :data:`ROUND_RUNGS`."""
    timings = timings if timings is not None else Timings()
    started = time.perf_counter()
    rung_notes = _RoundRungs(rungs)
    evals_log: dict[str, Any] = {}
    booster = xgb.train(
        booster_params(params, seed=seed, nthread=nthread),
        dfit,
        num_boost_round=int(params["n_estimators"]),
        evals=[(dstop, "stop")],
        callbacks=[xgb.callback.EarlyStopping(rounds=PATIENCE, save_best=False), rung_notes],
        evals_result=evals_log,
        verbose_eval=False,
    )
    best = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1)) + 1
    stop_predictions: np.ndarray = booster.predict(dstop, iteration_range=(0, best))
    timings.add_xgboost(time.perf_counter() - started, "train")
    timings.rounds += booster.num_boosted_rounds()
    return FitResult(
        booster,
        best,
        stop_predictions,
        best_rmse=float(min(evals_log["stop"]["rmse"])),
        rung_rmse=tuple(rung_notes.rung_rmse),
        pruned=rung_notes.pruned,
    )


def fit_trial(
    params: dict[str, Any],
    folds: list[FoldInput],
    *,
    seed: int,
    nthread: int,
    report: Reporter | None = None,
    rungs: RungCheck | None = None,
    timings: Timings | None = None,
) -> TrialFit:
    """Fit and score ``params`` fold by fold; stop early when ``rungs`` says prune during
    the first fold's fit, or ``report`` after a fold."""
    timings = timings if timings is not None else Timings()
    scores: list[float] = []
    rounds: list[int] = []
    first: FitResult | None = None
    for index, fold in enumerate(folds):
        fitted = fit_early_stopped(
            params,
            fold.fit,
            fold.early_stop,
            seed=seed,
            nthread=nthread,
            timings=timings,
            rungs=rungs if index == 0 else None,
        )
        first = first or fitted
        if fitted.pruned:
            return _trial_fit(scores, rounds, first, pruned=True)
        predictions = predict(fitted.booster, fold.score, timings, rounds=fitted.best_round)
        scores.append(fold.score_target.spearman(predictions))
        rounds.append(fitted.best_round)
        last = index == len(folds) - 1
        if not last and report is not None and report(float(np.mean(scores)), index):
            return _trial_fit(scores, rounds, first, pruned=True)
    assert first is not None, "a trial needs at least one fold"
    return _trial_fit(scores, rounds, first, pruned=False)


def _trial_fit(
    scores: list[float], rounds: list[int], first: FitResult, *, pruned: bool
) -> TrialFit:
    score = float(np.mean(scores)) if scores else float("nan")
    return TrialFit(score, tuple(scores), tuple(rounds), pruned, first.rung_rmse, first.best_rmse)


def predict(
    booster: xgb.Booster,
    data: xgb.DMatrix,
    timings: Timings | None = None,
    *,
    rounds: int | None = None,
) -> np.ndarray:
    """Predictions of ``booster`` (its first ``rounds`` rounds when given)."""
    started = time.perf_counter()
    window = (0, rounds) if rounds is not None else (0, 0)
    predictions: np.ndarray = booster.predict(data, iteration_range=window)
    if timings is not None:
        timings.add_xgboost(time.perf_counter() - started, "predict")
    return predictions
