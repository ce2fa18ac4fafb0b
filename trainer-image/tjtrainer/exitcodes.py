"""The trainer's exit codes: the contract between ``python -m tjtrainer train`` and the
Job the operator builds (``tjoperator.job_builder``), kept here so both read one list.

- ``EXIT_OK`` (0): the run completed, or stopped on a cancel.
- ``EXIT_BAD_ARGUMENTS`` (2, argparse's own): the command line was refused.
- ``EXIT_PERMANENT`` (3): a retry cannot fix it — a bad spec, a bad or missing dataset, a
  run folder that belongs to another configuration.
- ``EXIT_TRANSIENT`` (75, sysexits' ``EX_TEMPFAIL``): anything else — an I/O error, a
  full disk, an unexpected exception. Python's own 1 (an uncaught exception) and the
  kill codes (137, 143) mean the same.

The Job's podFailurePolicy fails the Job at once on :data:`PERMANENT_EXIT_CODES`; every
other failure goes through its ``backoffLimit``, and the retry resumes the study.
"""

from __future__ import annotations

from tjtrainer.errors import TrainingError, TransientError

EXIT_OK = 0
EXIT_BAD_ARGUMENTS = 2
EXIT_PERMANENT = 3
EXIT_TRANSIENT = 75
PERMANENT_EXIT_CODES = (EXIT_BAD_ARGUMENTS, EXIT_PERMANENT)


def exit_code_for(error: BaseException) -> int:
    """The exit code of a ``train`` that failed with ``error``."""
    if isinstance(error, TrainingError) and not isinstance(error, TransientError):
        return EXIT_PERMANENT
    return EXIT_TRANSIENT


def is_permanent(exit_code: int | None) -> bool:
    """Whether a trainer container that exited with ``exit_code`` must not be retried."""
    return exit_code in PERMANENT_EXIT_CODES
