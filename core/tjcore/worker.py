"""The seed's polling daemon for machines without a cluster: ``tjctl worker``.

It picks ``pending`` rows oldest first and runs them one at a time in this process,
exactly as ``tjctl run`` does. A worker that is stopped (SIGTERM, Ctrl-C) hands its row
back as ``pending``; the next worker resumes it from the run folder's study. A worker that
died (SIGKILL, the OOM killer) cannot: its row stays ``running`` until its lease runs out,
and then the next worker takes it over and resumes it. A stale row of ``tjctl run`` is
ended ``failed`` (running the same command again resumes it).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from pathlib import Path
from types import FrameType

from tjcore.runner import RunOutcome, run_row
from tjcore.store import JobStore
from tjtrainer.paths import UnsafePathError
from tjtrainer.progress import RunState, run_dir_for
from tjtrainer.runlock import run_folder_busy

LOCAL_NAMESPACE = "local"
log = logging.getLogger(__name__)


def local_name(job_id: int) -> str:
    """A new TrainingJob name for row ``job_id`` run by a local worker: the id for people, a
    random part so that a row of a new table (ids start again at 1) never meets the run
    folder of an old one. The claim stores it in the row, so a resuming worker keeps it."""
    return f"job-{job_id}-{secrets.token_hex(3)}"


def _run(
    store: JobStore, job_id: int, *, data_root: Path, show_progress: bool, lease_seconds: float
) -> RunOutcome:
    row = store.get(job_id)
    assert row is not None
    log.info("job %d: %s, %d trials per model", row.id, row.timeframe, row.n_trials)
    try:
        outcome = run_row(
            store,
            row,
            data_root=data_root,
            show_progress=show_progress,
            lease_seconds=lease_seconds,
        )
    except KeyboardInterrupt:
        store.update_job(row.id, status=RunState.PENDING.value, error=None, lease_owner=None)
        raise
    log.info("job %d %s: %s", row.id, outcome.state, outcome.message)
    return outcome


def take_over_stale(
    store: JobStore, *, data_root: Path, show_progress: bool, lease_seconds: float
) -> RunOutcome | None:
    """Resume the oldest stale row of a dead worker (ending stale rows of other local
    runners ``failed`` on the way); ``None`` if there is none."""
    for row in store.stale_running(lease_seconds=lease_seconds):
        try:
            run_dir: Path | None = (
                run_dir_for(data_root, row.namespace or "", row.name or "", row.uid)
                if row.uid
                else None  # it never ran: no folder
            )
        except UnsafePathError:
            run_dir = None
        if run_dir is not None and run_folder_busy(run_dir):
            continue  # its trainer still lives (a late heartbeat): not stale
        if not store.take_over(row, f"worker {os.getpid()} taking over"):
            continue  # another worker took it first
        if row.namespace != LOCAL_NAMESPACE:
            message = (
                f"{row.lease_owner or 'the process that ran it'} stopped without a word "
                f"(killed, or out of memory) after {row.current_trial}/{row.total_trials} "
                "trials; run the same command again to resume from the last finished trial"
            )
            log.warning("job %d failed: %s", row.id, message)
            store.finish(row.id, RunState.FAILED, error=message)
            continue
        log.info("job %d: its worker (%s) died; resuming it", row.id, row.lease_owner)
        return _run(
            store,
            row.id,
            data_root=data_root,
            show_progress=show_progress,
            lease_seconds=lease_seconds,
        )
    return None


def run_next(
    store: JobStore, *, data_root: Path, show_progress: bool, lease_seconds: float = 60.0
) -> RunOutcome | None:
    """Resume a stale row of a dead worker, else claim and run the oldest pending row;
    ``None`` if there is none to take."""
    outcome = take_over_stale(
        store, data_root=data_root, show_progress=show_progress, lease_seconds=lease_seconds
    )
    if outcome is not None:
        return outcome
    for row in store.pending(claimable_by=LOCAL_NAMESPACE):
        name = row.name or local_name(row.id)
        if not store.claim(row.id, namespace=LOCAL_NAMESPACE, name=name, start=True):
            continue  # another worker or the operator took it first
        return _run(
            store,
            row.id,
            data_root=data_root,
            show_progress=show_progress,
            lease_seconds=lease_seconds,
        )
    return None


def serve(
    store: JobStore,
    *,
    data_root: Path,
    interval: float,
    once: bool,
    show_progress: bool,
    lease_seconds: float = 60.0,
) -> int:
    """Run pending jobs until stopped; with ``once``, until no pending row is left."""

    stopping = False

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        # Only raise: a handler that takes a lock (Event.set) deadlocks when the signal
        # lands while the main thread holds that lock.
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while True:
            outcome = run_next(
                store, data_root=data_root, show_progress=show_progress, lease_seconds=lease_seconds
            )
            if outcome is None:
                if once:
                    return 0
                time.sleep(interval)
    except (KeyboardInterrupt, Exception) as stop:
        # Once stopping, any error is the interrupt's: it may land inside a database call,
        # whose driver then fails on its way out (psycopg: "can't change 'autocommit'
        # now"); the transaction is gone with its connection, so its row is as it was.
        if not (isinstance(stop, KeyboardInterrupt) or stopping):
            raise
        log.info("worker stopped; its job, if any, is pending again and will resume")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
