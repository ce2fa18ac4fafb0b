"""Run one training job in this process: the embedded mode of ``tjctl run`` and
``tjctl worker``.

It writes the ``training_jobs`` row exactly as the operator does (pending → running →
completed/failed/cancelled with the same columns), shows a terminal progress bar, and
turns a cancel requested in the table into the run folder's cancel marker. While it runs
the row it holds the row's lease and renews it (a heartbeat), so that a worker can tell a
row whose process died (SIGKILL, OOM) from a live one.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from tjcontract.spec import total_trials
from tjcore.store import LOCAL_RUN_SOURCE, JobRow, JobStore
from tjtrainer.config import TrainConfig
from tjtrainer.errors import TrainingError
from tjtrainer.paths import UnsafePathError
from tjtrainer.progress import (
    CANCEL_MARKER,
    RunProgress,
    RunState,
    cancel_requested,
    request_cancel,
    run_dir_for,
    verdict_lines,
)
from tjtrainer.runlock import run_folder_busy

CANCEL_POLL_SECONDS = 1.0
INTERRUPTED = "interrupted; run the same command again to resume from the last finished trial"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, for the command line to report."""

    state: RunState
    message: str
    progress: RunProgress | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.state == RunState.FAILED else 0


class _CancelWatcher(threading.Thread):
    """Turns the row's ``cancel_requested`` into the run folder's cancel marker, so a
    cancel from the UI or ``tjctl cancel`` reaches the trainer between trials; and renews
    the row's lease every ``heartbeat`` seconds."""

    def __init__(
        self, store: JobStore, job_id: int, run_dir: Path, *, owner: str, heartbeat: float
    ) -> None:
        super().__init__(name=f"cancel-watcher-{job_id}", daemon=True)
        self.store, self.job_id, self.run_dir = store, job_id, run_dir
        self.owner, self.heartbeat = owner, heartbeat
        self.stopped = threading.Event()

    def run(self) -> None:
        last_beat = time.monotonic()
        while not self.stopped.wait(min(CANCEL_POLL_SECONDS, self.heartbeat)):
            try:  # a table that cannot be read or written for a moment must not end the run
                if time.monotonic() - last_beat >= self.heartbeat:
                    if not self.store.renew_lease(self.job_id, self.owner):
                        log.warning("job %d: its lease was taken over", self.job_id)
                    last_beat = time.monotonic()
                row = self.store.get(self.job_id)
                if row is not None and row.cancel_requested and not cancel_requested(self.run_dir):
                    request_cancel(self.run_dir)
            except (SQLAlchemyError, OSError) as err:
                log.warning("job %d: %s", self.job_id, one_line(err))


class _ProgressBar:
    """A tqdm bar over all trials, its text the current model and best scores."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.bar = tqdm(
            total=total, unit="trial", disable=not enabled, file=sys.stderr, dynamic_ncols=True
        )

    def update(self, progress: RunProgress) -> None:
        self.bar.n = progress.completed_trials
        self.bar.set_description(progress.current_model or "", refresh=False)
        self.bar.set_postfix_str(
            f"best LONG {_score(progress.best_score_long)} "
            f"SHORT {_score(progress.best_score_short)}"
        )

    def close(self) -> None:
        self.bar.close()


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4f}"


def new_run_uid() -> str:
    """The uid of a run that no Kubernetes object names (``tjctl run``, the worker)."""
    return str(uuid.uuid4())


def lease_owner_id() -> str:
    """Who holds a lease: this host and process, and a random part."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def one_line(err: BaseException) -> str:
    """The first line of an error (SQLAlchemy appends the SQL and a link)."""
    original = getattr(err, "orig", None) or err
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def _disk_full(err: BaseException) -> OSError | BaseException | None:
    """The error in ``err``'s chain that says the disk is full, if one does."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return current
        if "database or disk is full" in str(current) or "No space left" in str(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def failure_message(err: BaseException, *, where: Path | None = None) -> str:
    """What to tell the user about ``err``: a full disk in one sentence with what to do,
    anything else as its first line."""
    full = _disk_full(err)
    if full is None:
        return one_line(err) if isinstance(err, SQLAlchemyError) else str(err)
    filename = getattr(full, "filename", None)
    place = filename or where or "the shared data path"
    return (
        f"no space left on the device of {place}; free some space, then run the same "
        "command again to resume from the last finished trial"
    )


def _record_failure(store: JobStore, job_id: int, message: str) -> None:
    """End the row ``failed`` with ``message`` if the table can be written (on a full disk
    it may not)."""
    try:
        store.finish(job_id, RunState.FAILED, error=message)
    except (SQLAlchemyError, OSError) as err:
        log.warning("job %d: could not record its failure in the table: %s", job_id, one_line(err))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _heartbeat_age(row: JobRow) -> float | None:
    try:
        beat = datetime.strptime(row.heartbeat_at or "", "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return (datetime.now(UTC) - beat.replace(tzinfo=UTC)).total_seconds()


def running_elsewhere(row: JobRow, *, data_root: Path, lease_seconds: float) -> str | None:
    """Why ``row`` must not be run here now (another live process or the operator runs
    it), or ``None``. A row whose runner died (its lease ran out, or its process on this
    host is gone and the run folder is free) may be run again: that resumes it."""
    if row.is_final:
        return None
    if not row.lease_owner:
        if row.source == LOCAL_RUN_SOURCE:
            return None  # killed before it ran, or by a release without leases: resume
        return (
            f"TrainingJob {row.namespace}/{row.name} is {row.status} as job {row.id}, "
            "the TrainingJob operator's (or a worker's); cancel it there (kubectl, or "
            f"`tjctl cancel {row.id}`) or give this run another metadata.name"
        )
    if row.status != RunState.RUNNING.value:
        return None
    what = f"TrainingJob {row.namespace}/{row.name} is running already as job {row.id}"
    held = (
        f"{what} (by {row.lease_owner}); wait for it to end or stop it first "
        f"(`tjctl cancel {row.id}`)"
    )
    try:
        if row.uid and run_folder_busy(
            run_dir_for(data_root, row.namespace or "", row.name or "", row.uid)
        ):
            return held
    except UnsafePathError:
        return None
    host, _, rest = row.lease_owner.partition("/")
    pid = rest.split("/", 1)[0]
    if host == socket.gethostname() and pid.isdigit():
        return held if _pid_alive(int(pid)) else None
    age = _heartbeat_age(row)
    return held if age is not None and age < lease_seconds else None


def workers_refusal(workers: int, database_url: str) -> str | None:
    """Why ``tjctl run`` cannot run ``workers`` trainer processes with the table at
    ``database_url`` (their studies go to the same database), or ``None``."""
    if workers <= 1 or database_url.startswith("postgresql"):
        return None
    return (
        f"spec.workers: {workers} trainers share their Optuna studies in PostgreSQL, and "
        "the table is SQLite: set DATABASE_URL=postgresql+psycopg://user:password@host/db "
        "(the studies go there too), or set spec.workers: 1"
    )


def _helper_workers(config: TrainConfig) -> list[threading.Thread]:
    """Workers 1 .. N-1 of ``config`` on threads of this process (daemons: an interrupted
    run leaves their trials to the heartbeat, and the next run redoes them)."""
    from tjtrainer.train import run_training

    def work(index: int) -> None:
        try:
            run_training(replace(config, worker_index=index))
        except TrainingError as err:  # worker 0 goes on with the slots left
            log.warning("worker %d: %s", index, err)

    threads = [
        threading.Thread(target=work, args=(index,), name=f"tj-worker-{index}", daemon=True)
        for index in range(1, config.workers)
    ]
    for thread in threads:
        thread.start()
    return threads


def run_row(
    store: JobStore,
    row: JobRow,
    *,
    data_root: Path,
    show_progress: bool,
    lease_seconds: float = 60.0,
    workers: int = 1,
    study_storage: str | None = None,
    warm_start: str = "none",
) -> RunOutcome:
    """Train the job of ``row`` (which has a namespace and name) to its end, in the run
    folder of its uid (given to the row here if it has none), holding the row's lease
    (renewed every third of ``lease_seconds``). With ``workers`` > 1, that many trainers
    (threads of this process) share the studies in ``study_storage`` (PostgreSQL).
    ``warm_start``: the spec's ``warmStart`` (:mod:`tjtrainer.warmstart`)."""
    from tjtrainer.train import run_training

    assert row.namespace and row.name, "a row needs its TrainingJob name before it runs"
    if row.spec_damage:
        message = (
            f"refused to run job {row.id}: its row is damaged ({row.spec_damage}); "
            "submit the job again"
        )
        _record_failure(store, row.id, message)
        return RunOutcome(RunState.FAILED, message)
    # The run folder is this row's uid's: an earlier run of the same name (or a row of an
    # earlier table) has another.
    uid = row.uid or new_run_uid()
    try:
        run_dir = run_dir_for(data_root, row.namespace, row.name, uid)
    except UnsafePathError as err:
        message = f"refused to run job {row.id}: {err}"
        _record_failure(store, row.id, message)
        return RunOutcome(RunState.FAILED, message)
    if row.uid is None:
        store.update_job(row.id, uid=uid)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # A rerun of a cancelled or interrupted job continues: forget the old request.
        (run_dir / CANCEL_MARKER).unlink(missing_ok=True)
    except (TrainingError, OSError) as err:
        message = f"cannot use run folder {run_dir}: {failure_message(err, where=run_dir)}"
        _record_failure(store, row.id, message)
        return RunOutcome(RunState.FAILED, message)
    owner = lease_owner_id()
    store.update_job(row.id, cancel_requested=0)
    store.mark_running(row.id, total_trials=total_trials(row.n_trials), lease_owner=owner)
    config = TrainConfig(
        timeframe=row.timeframe,
        n_trials=row.n_trials,
        train_ratio=row.train_ratio,
        data_root=data_root,
        run_dir=run_dir,
        seed=row.seed,
        parallelism=row.parallelism,
        cv_folds=row.cv_folds,
        embargo=row.embargo,
        promotion=row.promotion,
        study_storage=study_storage if workers > 1 else None,
        workers=workers,
        warm_start=warm_start,
    )
    bar = _ProgressBar(total_trials(row.n_trials), enabled=show_progress)
    watcher = _CancelWatcher(
        store, row.id, run_dir, owner=owner, heartbeat=max(0.2, lease_seconds / 3)
    )
    watcher.start()

    def on_progress(progress: RunProgress) -> None:
        store.apply_progress(row.id, progress)
        bar.update(progress)

    helpers = _helper_workers(config) if workers > 1 else []
    try:
        final = run_training(config, on_progress=on_progress)
        for helper in helpers:
            helper.join()
    except TrainingError as err:
        message = failure_message(err, where=run_dir)
        _record_failure(store, row.id, message)
        return RunOutcome(RunState.FAILED, message)
    except KeyboardInterrupt:
        _record_failure(store, row.id, INTERRUPTED)
        raise
    except Exception as err:
        message = f"trainer crashed: {type(err).__name__}: {err}"
        _record_failure(store, row.id, message)
        raise
    finally:
        watcher.stopped.set()
        bar.close()
    store.apply_progress(row.id, final)
    return RunOutcome(final.state, _summary(final), final)


def _summary(progress: RunProgress) -> str:
    if progress.state == RunState.CANCELLED:
        return (
            f"cancelled after {progress.completed_trials}/{progress.total_trials} trials; "
            "no model was replaced"
        )
    return (
        f"completed {progress.completed_trials}/{progress.total_trials} trials\n"
        f"  walk-forward Spearman  LONG {_score(progress.best_score_long)}  "
        f"SHORT {_score(progress.best_score_short)}\n"
        f"  held-out test Spearman  LONG {_score(progress.test_score_long)}  "
        f"SHORT {_score(progress.test_score_short)}\n"
        + "".join(f"{line}\n" for line in verdict_lines(progress))
        + (f"  {progress.promotion_reason}\n" if progress.promotion_reason else "")
        + f"  model version {progress.model_version} in {progress.models_dir}"
    )
