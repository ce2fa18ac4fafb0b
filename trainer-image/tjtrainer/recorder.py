"""The run's recorder: one background thread that makes every trial durable, in order.

For each finished trial it (1) commits the trial to ``study.db``, (2) rewrites
``progress.json``, (3) calls ``on_progress``, always in that order, so the progress file
never claims a trial that the study could lose. Doing this off the trial path lets the
next trial's XGBoost work start at once instead of waiting some tens of milliseconds for
SQLite and fsync; a process killed meanwhile loses at most the trials still queued, which
no reader has seen finished yet. :meth:`Recorder.flush` waits for the queue to drain and
re-raises the first error the thread hit (a full disk, a failing callback).
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from tjtrainer.progress import RunProgress, write_progress
from tjtrainer.search import Timings
from tjtrainer.studies import DurableStudies


@dataclass(frozen=True)
class TrialStarted:
    """A trial was asked: insert it RUNNING with its parameters."""

    model: str
    number: int
    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]


@dataclass(frozen=True)
class TrialFinished:
    """A trial ended: complete it in the study, then publish ``progress``."""

    model: str
    trial: FrozenTrial
    progress: RunProgress


@dataclass(frozen=True)
class Publish:
    """Write ``progress`` and call back."""

    progress: RunProgress


@dataclass(frozen=True)
class Stop:
    """End the thread."""


Message = TrialStarted | TrialFinished | Publish | Stop


def snapshot(progress: RunProgress) -> RunProgress:
    """A copy of ``progress`` that later updates will not change."""
    copied = copy.copy(progress)
    copied.trials = list(progress.trials)
    copied.trial_counts = {model: dict(c) for model, c in progress.trial_counts.items()}
    copied.best_trials = dict(progress.best_trials)
    return copied


class Recorder:
    """Serialises study writes, progress writes and progress callbacks on one thread."""

    def __init__(
        self,
        studies: DurableStudies,
        run_dir: Path,
        on_progress: Callable[[RunProgress], None] | None,
        timings: Timings,
    ) -> None:
        self.studies = studies
        self.run_dir = run_dir
        self.on_progress = on_progress
        self.timings = timings
        self.error: BaseException | None = None
        self._queue: queue.Queue[Message] = queue.Queue()
        self._storage_ids: dict[tuple[str, int], int] = {}
        self._thread = threading.Thread(target=self._loop, name="tj-recorder", daemon=True)
        self._thread.start()

    def trial_started(
        self,
        model: str,
        number: int,
        params: dict[str, Any],
        distributions: dict[str, BaseDistribution],
    ) -> None:
        self._queue.put(TrialStarted(model, number, params, distributions))

    def trial_finished(self, model: str, trial: FrozenTrial, progress: RunProgress) -> None:
        """Queue ``trial``'s completion; ``progress`` must be a :func:`snapshot` taken when
        the trial was counted."""
        self._queue.put(TrialFinished(model, trial, progress))

    def publish(self, progress: RunProgress) -> None:
        """Write ``progress`` and call back, after everything queued before; wait for it."""
        self._queue.put(Publish(snapshot(progress)))
        self.flush()

    def flush(self) -> None:
        self._queue.join()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self._queue.put(Stop())
        self._thread.join()

    def _loop(self) -> None:
        while True:
            message = self._queue.get()
            try:
                if isinstance(message, Stop):
                    return
                if self.error is None:
                    self._handle(message)
            except BaseException as exc:
                self.error = exc
            finally:
                self._queue.task_done()

    def _handle(self, message: TrialStarted | TrialFinished | Publish) -> None:
        match message:
            case TrialStarted(model, number, params, distributions):
                started = time.perf_counter()
                self._storage_ids[(model, number)] = self.studies.start(
                    model, params, distributions
                )
                self.timings.storage_s += time.perf_counter() - started
            case TrialFinished(model, trial, progress):
                started = time.perf_counter()
                self.studies.finish(self._storage_ids.pop((model, trial.number)), trial)
                self.timings.storage_s += time.perf_counter() - started
                self._write(progress)
            case Publish(progress):
                self._write(progress)
            case _:
                assert_never(message)

    def _write(self, progress: RunProgress) -> None:
        started = time.perf_counter()
        write_progress(self.run_dir, progress)
        self.timings.progress_s += time.perf_counter() - started
        if self.on_progress is not None:
            self.on_progress(progress)
