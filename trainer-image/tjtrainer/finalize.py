"""The end of a run: fit each model's best trial once more, score it once on the test
tail, save.

The best trial of each model (highest mean walk-forward Spearman among completed trials)
is fitted with its parameters the way every fold was, one block further on: on the search
part up to the last validation block (and its gap), early-stopped on that block, cut at
its best round. The final models are scored once on the held-out test tail, which no
trial has seen: that is the honest score reported as ``test_score_long/short``.
"""

from __future__ import annotations

import platform
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import xgboost as xgb
from optuna.trial import FrozenTrial, TrialState

from tjtrainer.config import TrainConfig
from tjtrainer.dataset_reader import Dataset, iso_utc
from tjtrainer.errors import TrainingError
from tjtrainer.evaluation import (
    CONFIDENCE,
    SIGNIFICANCE_LEVEL,
    SIGNIFICANT,
    backtest,
    deflated_selection,
    entry_threshold,
    judge,
)
from tjtrainer.legacy import sklearn_version
from tjtrainer.matrices import Matrices, label_scaling
from tjtrainer.metrics import spearman
from tjtrainer.models import save_models
from tjtrainer.progress import MODELS, RunProgress, cancel_requested, utc_now
from tjtrainer.search import (
    PATIENCE,
    SEARCH_SPACE,
    Timings,
    fit_early_stopped,
    predict,
    trial_seed,
)
from tjtrainer.splits import CV_SHARE, Splits
from tjtrainer.versions import alias_version, latest_metadata
from tjtrainer.warmstart import top_params


@dataclass(frozen=True)
class FinalModels:
    version: str
    models_dir: Path
    test_scores: dict[str, float]
    evaluation: dict[str, Any]
    promoted: bool = True
    promotion_reason: str | None = None

    def record_in(self, progress: RunProgress) -> None:
        """Put the saved version, its test scores, verdicts and promotion in ``progress``."""
        progress.model_version = self.version
        progress.models_dir = str(self.models_dir)
        progress.test_score_long = self.test_scores["LONG"]
        progress.test_score_short = self.test_scores["SHORT"]
        progress.evaluation = self.evaluation
        progress.promoted = self.promoted
        progress.promotion_reason = self.promotion_reason


def best_trial(model: str, trials: list[FrozenTrial]) -> FrozenTrial:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        raise TrainingError(
            f"no {model} trial completed (all were pruned or failed); nothing to save"
        )
    return max(complete, key=lambda t: (t.value, -t.number))


def finish_models(
    config: TrainConfig,
    *,
    dataset: Dataset,
    splits: Splits,
    matrices: Matrices,
    studies: dict[str, list[FrozenTrial]],
    progress: RunProgress,
    nthread: int,
    timings: Timings,
) -> FinalModels | None:
    """Fit, score and save both models; ``None`` if a cancel arrived meanwhile."""
    test = matrices.matrix(splits.test, model=None, timings=timings)
    stop_block = matrices.matrix(splits.final.early_stop, model=None, timings=timings)
    boosters: dict[str, xgb.Booster] = {}
    summary: dict[str, dict[str, Any]] = {}
    bests = {model: best_trial(model, studies[model]) for model in MODELS}
    fit = matrices.matrix(splits.final.fit, model=MODELS[0], timings=timings)
    # A model is judged (NumPy, most of it outside the GIL) while the next one is fitted
    # (XGBoost): the verdicts cost the run no time of their own but the last one's.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verdict") as judging:
        judgements: dict[str, Future[dict[str, Any]]] = {}
        for model in MODELS:
            best = bests[model]
            fit.set_label(matrices.training_labels(model, splits.final.fit))
            stop_block.set_label(
                matrices.scaled_like(model, splits.final.early_stop, splits.final.fit)
            )
            fitted = fit_early_stopped(
                best.params,
                fit,
                stop_block,
                seed=trial_seed(config.seed, model, int(best.user_attrs.get("slot", best.number))),
                nthread=nthread,
                timings=timings,
            )
            boosters[model] = fitted.booster[: fitted.best_round]
            predicted = predict(boosters[model], test, timings)
            test_labels = matrices.labels(model, splits.test)
            test_score = spearman(predicted, test_labels)
            summary[model] = _model_summary(best, fitted.best_round, test_score, studies[model])
            judgements[model] = judging.submit(
                _judgement,
                config,
                model,
                predicted,
                test_labels,
                threshold=entry_threshold(fitted.early_stop_predictions),
                dataset=dataset,
                splits=splits,
                matrices=matrices,
                trials=studies[model],
                best=best,
            )
        for model in MODELS:
            summary[model].update(judgements[model].result())
    if cancel_requested(config.run_dir):
        return None
    promoted, reason = promotion_decision(config, summary)
    metadata = _metadata(config, dataset, splits, progress, summary)
    metadata["promotion"] = {"policy": config.promotion, "promoted": promoted, "reason": reason}
    if promoted:  # what `tjctl models rollback` goes back to
        metadata["promotion"]["replaces"] = {
            m: alias_version(config.models_dir, "champion", config.timeframe, m.lower())
            for m in MODELS
        }
    saved = save_models(
        config.models_dir,
        timeframe=config.timeframe,
        boosters=boosters,
        scaler=matrices.scaler,
        metadata=metadata,
        promote=promoted,
    )
    return FinalModels(
        version=saved.version,
        models_dir=config.models_dir,
        test_scores={m: summary[m]["test_spearman"] for m in MODELS},
        evaluation=evaluation_summary(summary),
        promoted=promoted,
        promotion_reason=reason,
    )


def _judgement(
    config: TrainConfig,
    model: str,
    predicted: np.ndarray,
    test_labels: np.ndarray,
    *,
    threshold: float,
    dataset: Dataset,
    splits: Splits,
    matrices: Matrices,
    trials: list[FrozenTrial],
    best: FrozenTrial,
) -> dict[str, Any]:
    """The final ``model``'s verdict on the test tail, the deflation of its selection
    among ``trials``, its backtest and its label scaling (summary entries)."""
    verdict = judge(
        predicted, test_labels, horizon=splits.purge_gap, seed=trial_seed(config.seed, model, 0)
    )
    scores = [
        float(t.value) for t in trials if t.state == TrialState.COMPLETE and t.value is not None
    ]
    return {
        "verdict": verdict.to_dict(),
        "selection": deflated_selection(
            scores,
            list(best.user_attrs.get("fold_scores") or [best.value]),
            sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials),
        ),
        "backtest": backtest(
            predicted,
            test_labels,
            dataset.timestamps[splits.test],
            threshold=threshold,
            horizon=splits.purge_gap,
        ),
        "label_scaling": label_scaling(matrices.labels(model, splits.final.fit)),
    }


def promotion_decision(config: TrainConfig, summary: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """Whether the new version becomes ``*_latest`` under ``config.promotion``, and why."""
    policy = config.promotion
    if policy == "always":
        return True, "promoted (policy always)"
    if policy == "ifSignificant":
        failing = [m for m in MODELS if summary[m]["verdict"]["verdict"] != SIGNIFICANT]
        if failing:
            words = ", ".join(
                f"{m} is {summary[m]['verdict']['verdict']} (p = "
                f"{summary[m]['verdict']['p_value']:.3f})"
                for m in failing
            )
            return False, f"not promoted (policy ifSignificant): {words}"
        return True, "promoted (policy ifSignificant): both models are Significant"
    latest = _latest_metadata(config)
    new = _mean_test(summary)
    if latest is None:
        return True, "promoted (policy ifBetterThanLatest): there is no latest version yet"
    old = _mean_test(latest.get("models") or {})
    if old is None or new is None or new > old:
        return True, (
            f"promoted (policy ifBetterThanLatest): mean test Spearman {_fmt(new)} beats "
            f"{_fmt(old)} of {latest.get('version')}"
        )
    return False, (
        f"not promoted (policy ifBetterThanLatest): mean test Spearman {_fmt(new)} does not "
        f"beat {_fmt(old)} of the latest version {latest.get('version')}"
    )


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:+.4f}"


def _mean_test(models: dict[str, Any]) -> float | None:
    scores = [(models.get(m) or {}).get("test_spearman") for m in MODELS]
    if any(not isinstance(s, int | float) for s in scores):
        return None
    return float(np.mean([float(s) for s in scores if s is not None]))


def _latest_metadata(config: TrainConfig) -> dict[str, Any] | None:
    return latest_metadata(config.models_dir, config.timeframe)


def evaluation_summary(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the progress file, the table and the CR say of each model's verdict and
    backtest (the metadata keeps the equity curves too)."""
    out: dict[str, Any] = {"level": SIGNIFICANCE_LEVEL}
    for model in MODELS:
        verdict = summary[model]["verdict"]
        trades = {
            k: v for k, v in summary[model]["backtest"].items() if k not in ("equity", "rule")
        }
        out[model] = {
            "verdict": verdict["verdict"],
            "test_spearman": verdict["test_spearman"],
            "ci": [verdict["ci_low"], verdict["ci_high"]],
            "p_value": verdict["p_value"],
            "deflated_probability": summary[model]["selection"]["deflated_probability"],
            "trials": summary[model]["selection"]["trials"],
            "backtest": trades,
        }
    return out


def _model_summary(
    best: FrozenTrial, rounds: int, test_score: float, trials: list[FrozenTrial]
) -> dict[str, Any]:
    states = [t.state for t in trials]
    folds = best.user_attrs.get("fold_scores") or []
    return {
        "best_params": dict(best.params),
        "top_params": top_params(trials),  # what a warm start of a later run begins with
        "best_trial_number": best.number,
        "trial_rounds": best.user_attrs.get("rounds"),
        "fold_rounds": best.user_attrs.get("fold_rounds"),
        "final_rounds": rounds,
        "validation_spearman": best.value,
        "fold_spearman": folds,
        "fold_spread": float(np.std(folds)) if folds else None,
        "test_spearman": test_score,
        "trials": {
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL),
        },
    }


def _split_info(dataset: Dataset, part: slice) -> dict[str, Any]:
    start, stop = int(part.start), int(part.stop)
    stamps = dataset.timestamps
    return {
        "rows": stop - start,
        "first_row": start,
        "first_timestamp": iso_utc(stamps[start]) if stop > start else None,
        "last_timestamp": iso_utc(stamps[stop - 1]) if stop > start else None,
    }


def _metadata(
    config: TrainConfig,
    dataset: Dataset,
    splits: Splits,
    progress: RunProgress,
    summary: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "n_trials": config.n_trials,
        "train_ratio": config.train_ratio,
        "seed": config.seed,
        "parallelism": config.parallelism,
        "started_at": progress.started_at,
        "finished_at": utc_now(),
        "features": list(dataset.features),
        "dataset": {
            "path": str(dataset.path),
            "checksum": dataset.checksum,
            "rows": dataset.rows,
            "horizon": dataset.horizon,
            "first_timestamp": iso_utc(dataset.timestamps[0]),
            "last_timestamp": iso_utc(dataset.timestamps[-1]),
        },
        "splits": {
            "search": _split_info(dataset, splits.search),
            "folds": [
                {
                    "fit": _split_info(dataset, fold.fit),
                    "early_stop": _split_info(dataset, fold.early_stop),
                    "score": _split_info(dataset, fold.score) if fold.score else None,
                }
                for fold in splits.folds
            ],
            "final": {
                "fit": _split_info(dataset, splits.final.fit),
                "early_stop": _split_info(dataset, splits.final.early_stop),
            },
            "test": _split_info(dataset, splits.test),
            "purge_gap": splits.purge_gap,
            "embargo": splits.embargo,
            "cv_folds": len(splits.folds),
            "cv_share": CV_SHARE,
            "search_stride": splits.stride,
        },
        "row_counts": {**splits.sizes(), "dataset": dataset.rows},
        "scaler": "StandardScaler (mean, scale) fitted on the search part",
        "inference": "prediction = model.predict(scaler.transform(rows[features])), in "
        "standard units of the label: label estimate = mean + std * prediction "
        "(models.<side>.label_scaling)",
        "evaluation": "tjtrainer.evaluation: test Spearman with a moving-block bootstrap "
        f"{CONFIDENCE:g} interval, a placebo p-value over circular shifts of the labels, "
        f"verdict Significant when p < {SIGNIFICANCE_LEVEL:g} and the interval is above 0; "
        "backtest of the test tail net of costs",
        "objective": "mean Spearman rank correlation over the purged, embargoed "
        "walk-forward folds (maximise)",
        "search": {
            "sampler": "optuna TPESampler(multivariate=True)",
            "pruner": "optuna MedianPruner on the running mean fold Spearman, after each fold",
            "early_stopping": {
                "metric": "rmse of the early-stopping block",
                "patience_rounds": PATIENCE,
            },
            "space": {k: repr(v) for k, v in SEARCH_SPACE.items()},
        },
        "models": summary,
        "run_dir": str(config.run_dir),
        "software": {
            "python": platform.python_version(),
            "xgboost": xgb.__version__,
            "optuna": optuna.__version__,
            "scikit-learn": sklearn_version(),  # of scaler.pkl; the trainer does not load it
        },
    }
