"""The end of a run: refit each model's best trial, score it once on the test tail, save.

The best trial of each model (highest validation Spearman among completed trials) is
refitted with its parameters on the whole search part (train + gap + validation). Its
number of rounds is the trial's best round scaled by how many more rows the refit sees.
The refitted models are scored once on the held-out test tail, which no trial has seen:
that is the honest score reported as ``test_score_long/short``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sklearn
import xgboost as xgb
from optuna.trial import FrozenTrial, TrialState

from tjtrainer.config import TrainConfig
from tjtrainer.datasets import Dataset, iso_utc
from tjtrainer.errors import TrainingError
from tjtrainer.matrices import Matrices, label_scaling
from tjtrainer.metrics import spearman
from tjtrainer.models import save_models
from tjtrainer.progress import MODELS, RunProgress, cancel_requested, utc_now
from tjtrainer.search import EVAL_EVERY, PATIENCE, SEARCH_SPACE, Timings, predict, refit
from tjtrainer.splits import VALIDATION_SHARE, Splits


@dataclass(frozen=True)
class FinalModels:
    version: str
    models_dir: Path
    test_scores: dict[str, float]


def best_trial(model: str, trials: list[FrozenTrial]) -> FrozenTrial:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        raise TrainingError(
            f"no {model} trial completed (all were pruned or failed); nothing to save"
        )
    return max(complete, key=lambda t: (t.value, -t.number))


def refit_rounds(trial_rounds: int, splits: Splits) -> int:
    sizes = splits.sizes()
    search_rows = int(splits.search.stop) - int(splits.search.start)
    return max(1, round(trial_rounds * search_rows / max(1, sizes["train"])))


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
    """Refit, score and save both models; ``None`` if a cancel arrived meanwhile."""
    test = matrices.matrix(splits.test, model=None, timings=timings)
    boosters: dict[str, xgb.Booster] = {}
    summary: dict[str, dict[str, Any]] = {}
    bests = {model: best_trial(model, studies[model]) for model in MODELS}
    search = matrices.matrix(splits.search, model=MODELS[0], timings=timings)
    for model in MODELS:
        best = bests[model]
        rounds = refit_rounds(int(best.user_attrs.get("rounds", 1)), splits)
        search.set_label(matrices.training_labels(model, splits.search))
        boosters[model] = refit(
            best.params,
            search,
            rounds=rounds,
            seed=config.seed + best.number,
            nthread=nthread,
            timings=timings,
        )
        test_score = spearman(
            predict(boosters[model], test, timings), matrices.labels(model, splits.test)
        )
        summary[model] = _model_summary(best, rounds, test_score, studies[model])
        summary[model]["label_scaling"] = label_scaling(matrices.labels(model, splits.search))
    if cancel_requested(config.run_dir):
        return None
    metadata = _metadata(config, dataset, splits, progress, summary)
    saved = save_models(
        config.models_dir,
        timeframe=config.timeframe,
        boosters=boosters,
        scaler=matrices.scaler,
        metadata=metadata,
    )
    return FinalModels(
        version=saved.version,
        models_dir=config.models_dir,
        test_scores={m: summary[m]["test_spearman"] for m in MODELS},
    )


def _model_summary(
    best: FrozenTrial, rounds: int, test_score: float, trials: list[FrozenTrial]
) -> dict[str, Any]:
    states = [t.state for t in trials]
    return {
        "best_params": dict(best.params),
        "best_trial_number": best.number,
        "trial_rounds": best.user_attrs.get("rounds"),
        "refit_rounds": rounds,
        "validation_spearman": best.value,
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
            "train": _split_info(dataset, splits.train),
            "validation": _split_info(dataset, splits.validation),
            "test": _split_info(dataset, splits.test),
            "purge_gap": splits.purge_gap,
            "validation_share": VALIDATION_SHARE,
        },
        "row_counts": {**splits.sizes(), "dataset": dataset.rows},
        "scaler": "sklearn StandardScaler fitted on the search part (train + validation)",
        "inference": "prediction = model.predict(scaler.transform(rows[features])), in "
        "standard units of the label: label estimate = mean + std * prediction "
        "(models.<side>.label_scaling)",
        "objective": "Spearman rank correlation on the validation split (maximise)",
        "search": {
            "sampler": "optuna TPESampler(multivariate=True)",
            "pruner": "optuna MedianPruner on the validation rank proxy",
            "early_stopping": {"eval_every": EVAL_EVERY, "patience_rounds": PATIENCE},
            "space": {k: repr(v) for k, v in SEARCH_SPACE.items()},
        },
        "models": summary,
        "run_dir": str(config.run_dir),
        "software": {
            "python": platform.python_version(),
            "xgboost": xgb.__version__,
            "optuna": optuna.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
