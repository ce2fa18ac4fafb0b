"""The shared volume's layout (``$SHARED_DATA_PATH``), as the trainer writes it and the
operator, core and the UI read it::

    datasets/<timeframe>/dataset.parquet      made by ``tjctl dataset``, read by the trainer
    models/<version>/ and models/latest_<tf>  the model versions the trainer saves
    runs/<namespace>/<name>/                  one run's folder:
        progress.json                         its progress (format FORMAT_VERSION)
        CANCEL                                the cancel marker: stop after this trial
        study.db                              the Optuna study (SQLite), for resuming
        OWNER                                 the uid of the run the folder belongs to

Paths here are relative (``/``-separated, as in a pod's ``subPath``) or joined to a root
given by the caller; checking that names from outside are safe path segments is the
trainer's (``tjtrainer.paths``).
"""

from __future__ import annotations

from pathlib import Path

DATASETS_FOLDER = "datasets"
MODELS_FOLDER = "models"
RUNS_FOLDER = "runs"
# The folders trainer pods mount by subPath (the operator makes them first).
SHARED_FOLDERS = (DATASETS_FOLDER, MODELS_FOLDER, RUNS_FOLDER)

PROGRESS_FILE = "progress.json"
# progress.json's format; a reader refuses any other (tjtrainer.progress).
FORMAT_VERSION = 1
CANCEL_MARKER = "CANCEL"
STUDY_FILE = "study.db"
OWNER_FILE = "OWNER"


def run_parts(namespace: str, name: str) -> tuple[str, str, str]:
    """The path segments of a run folder under the shared root."""
    return (RUNS_FOLDER, namespace, name)


def run_path(namespace: str, name: str) -> str:
    """A run folder relative to the shared root: ``runs/<namespace>/<name>``."""
    return "/".join(run_parts(namespace, name))


def models_dir(data_root: Path) -> Path:
    """Where the model versions live."""
    return data_root / MODELS_FOLDER


def model_version_dir(data_root: Path, version: str) -> Path:
    """The folder of model version ``version`` (check it with tjtrainer.paths first)."""
    return models_dir(data_root) / version


def datasets_dir(data_root: Path) -> Path:
    """Where the datasets live, one folder per timeframe."""
    return data_root / DATASETS_FOLDER
