"""The status words: a run's state (the ``training_jobs`` table's ``status`` column and
``progress.json``'s ``state``) and a TrainingJob's phase (``status.phase``, Kubernetes
style), and how one maps to the other."""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    """Where a run stands: the five words of the ``training_jobs`` table (the original
    design's), also the trainer's ``progress.json`` state."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED)


class Phase(StrEnum):
    """The TrainingJob's phase (CamelCase, Kubernetes style)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def is_final(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)

    @property
    def table_word(self) -> RunState:
        """The word the ``training_jobs`` table holds for this phase (see
        :func:`table_word_of` for the runs whose trainer has or has not started)."""
        return _TABLE_WORDS[self]


_TABLE_WORDS = {
    Phase.PENDING: RunState.PENDING,
    Phase.RUNNING: RunState.RUNNING,
    # A suspended run has not ended; the table has no word of its own for it
    # (see table_word_of: "pending" until the trainer has started).
    Phase.SUSPENDED: RunState.RUNNING,
    Phase.SUCCEEDED: RunState.COMPLETED,
    Phase.FAILED: RunState.FAILED,
    Phase.CANCELLED: RunState.CANCELLED,
}
FINAL_PHASES = frozenset(p.value for p in Phase if p.is_final)


def table_word_of(phase: Phase, *, trainer_started: bool) -> str:
    """The table's word for ``phase``: a suspended run is ``running`` once its trainer
    has written progress and ``pending`` before, and so is a run that Kueue evicted and
    that waits to be admitted again (the table's five words stay the only ones, so every
    reader of the table understands them)."""
    if phase == Phase.SUSPENDED and not trainer_started:
        return RunState.PENDING.value
    if phase == Phase.PENDING and trainer_started:
        return RunState.RUNNING.value
    return phase.table_word.value
