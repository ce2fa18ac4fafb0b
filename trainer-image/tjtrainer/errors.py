"""The trainer's errors: each carries a message meant for the person who runs the job."""

from __future__ import annotations


class TrainingError(Exception):
    """A training run cannot go on; ``str(error)`` says why and, where possible, what to do."""


class TransientError(TrainingError):
    """A failure that a retry may fix: an I/O error, a full disk, an unexpected exception
    (the pod exits with ``EXIT_TRANSIENT`` and the Job retries, resuming the study)."""


class DatasetError(TrainingError):
    """A dataset (or the candles it is built from) is missing, malformed or too small."""


class DatasetMissingError(DatasetError):
    """No dataset where the trainer looks for one."""


class OhlcvError(DatasetError):
    """An OHLCV CSV file cannot be turned into candles."""


class RunFolderError(TrainingError):
    """The run folder belongs to another run (a different dataset or split) or is in use."""


class RunFolderBusyError(RunFolderError, TransientError):
    """Another trainer process is working in the same run folder right now."""
