"""What one training run is asked to do: the trainer's only input (its defaults and bounds
are the spec's, :mod:`tjcontract.spec`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tjcontract.layout import models_dir
from tjcontract.spec import (
    DEFAULT_EMBARGO,
    DEFAULT_FOLDS,
    DEFAULT_PARALLELISM,
    DEFAULT_PROMOTION,
    DEFAULT_SEED,
    DEFAULT_WARM_START,
    DEFAULT_WORKERS,
)

# The trainer's environment: the study database's URL (it holds a password: the operator
# gives it from a Secret) and the worker's index (Kubernetes sets it in an Indexed Job).
STUDY_STORAGE_ENV = "TJ_STUDY_STORAGE_URL"
WORKER_INDEX_ENV = "JOB_COMPLETION_INDEX"


def is_run_folder_storage(url: str | None) -> bool:
    """Whether ``url`` means the run folder's own studies (``study.journal``): ``None``
    does, and so does any ``sqlite`` URL (how the previous release named its ``study.db``)."""
    return url is None or url.startswith("sqlite")


@dataclass(frozen=True)
class TrainConfig:
    """One run of the trainer.

    Args:
        timeframe: ``15m`` or ``1h``; picks ``<data_root>/datasets/<timeframe>/``.
        n_trials: Optuna trials per model (``spec.nTrials``; the run does
            :func:`tjcontract.spec.total_trials` in all).
        train_ratio: share of rows used for the search (train + validation); the rest,
            after a purge gap, is the held-out test tail.
        data_root: the shared folder (``SHARED_DATA_PATH``).
        run_dir: where progress, the cancel marker and the study live.
        seed: makes the whole run reproducible.
        parallelism: Optuna trials evaluated at once.
        cv_folds: walk-forward folds of the search part (the trial's value is their mean
            Spearman); see :mod:`tjtrainer.splits`.
        embargo: rows kept out after the purge gap at every boundary between rows a model
            learns from and rows it is judged on.
        search_stride: the search trains on every ``search_stride``-th row of a fold's
            window; ``None``: chosen from the data's size (:func:`tjtrainer.splits.search_stride`).
        promotion: when the new version becomes ``*_latest``: ``always``,
            ``ifSignificant`` (both models' verdicts Significant) or ``ifBetterThanLatest``
            (mean test Spearman of the two models above the current latest's).
        study_storage: the SQLAlchemy URL of the database holding the run's Optuna
            studies; ``None``: ``run_dir/study.journal`` (:mod:`tjtrainer.studies`).
            Several workers need a PostgreSQL one (:mod:`tjtrainer.workers`). Never logged
            (it may hold a password).
        workers: trainer processes sharing the studies (``spec.workers``).
        worker_index: this process's place among them, 0 .. workers - 1; worker 0 writes
            ``progress.json`` and refits and saves the models.
        warm_start: ``none``, ``latest`` or a model version whose best trials are the
            first trials of this search (:mod:`tjtrainer.warmstart`).
    """

    timeframe: str
    n_trials: int
    train_ratio: float
    data_root: Path
    run_dir: Path
    seed: int = DEFAULT_SEED
    parallelism: int = DEFAULT_PARALLELISM
    cv_folds: int = DEFAULT_FOLDS
    embargo: int = DEFAULT_EMBARGO
    search_stride: int | None = None
    promotion: str = DEFAULT_PROMOTION
    study_storage: str | None = None
    workers: int = DEFAULT_WORKERS
    worker_index: int = 0
    warm_start: str = DEFAULT_WARM_START

    @property
    def models_dir(self) -> Path:
        return models_dir(self.data_root)

    @property
    def shares_studies(self) -> bool:
        """Whether this process is one worker of several on PostgreSQL studies
        (:mod:`tjtrainer.workers`) rather than the run folder's only searcher."""
        return not is_run_folder_storage(self.study_storage) or self.workers > 1
