"""The shared volume's layout (``$SHARED_DATA_PATH``), as the trainer writes it and the
operator, core and the UI read it::

    datasets/<timeframe>/dataset.parquet      made by ``tjctl dataset``, read by the trainer
    models/<version>/ and models/latest_<tf>  the model versions the trainer saves
    runs/<namespace>/<name>-<uid>/            one run's folder (see run_folder):
        progress.json                         its progress (format FORMAT_VERSION)
        CANCEL                                the cancel marker: stop after this trial
        study.journal                         the Optuna studies (JournalStorage), for resuming

Paths here are relative (``/``-separated, as in a pod's ``subPath``) or joined to a root
given by the caller; checking that names from outside are safe path segments is the
trainer's (``tjtrainer.paths``).
"""

from __future__ import annotations

from pathlib import Path

# The environment variable every component reads the shared folder from, and its default.
SHARED_DATA_ENV = "SHARED_DATA_PATH"
DEFAULT_SHARED_DATA_PATH = "./shared-data"

DATASETS_FOLDER = "datasets"
MODELS_FOLDER = "models"
RUNS_FOLDER = "runs"
# The folders trainer pods mount by subPath (the operator makes them first).
SHARED_FOLDERS = (DATASETS_FOLDER, MODELS_FOLDER, RUNS_FOLDER)

PROGRESS_FILE = "progress.json"
# progress.json's format; a reader refuses any other (tjtrainer.progress).
FORMAT_VERSION = 1
CANCEL_MARKER = "CANCEL"
STUDY_FILE = "study.journal"


def run_folder(name: str, uid: str) -> str:
    """The folder name of one run: its object's name and uid (a TrainingJob's, or a local
    row's). A new object of the same name has another uid, so it never meets an earlier
    run's folder, and nothing has to be removed or owned first."""
    return f"{name}-{uid}"


def run_parts(namespace: str, name: str, uid: str) -> tuple[str, str, str]:
    """The path segments of a run folder under the shared root."""
    return (RUNS_FOLDER, namespace, run_folder(name, uid))


def run_path(namespace: str, name: str, uid: str) -> str:
    """A run folder relative to the shared root: ``runs/<namespace>/<name>-<uid>``."""
    return "/".join(run_parts(namespace, name, uid))


def models_dir(data_root: Path) -> Path:
    """Where the model versions live."""
    return data_root / MODELS_FOLDER


def datasets_dir(data_root: Path) -> Path:
    """Where the datasets live, one folder per timeframe."""
    return data_root / DATASETS_FOLDER
