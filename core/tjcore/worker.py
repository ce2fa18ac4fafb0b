"""The seed's polling daemon for machines without a cluster: ``tjctl worker``.

It picks ``pending`` rows oldest first and runs them one at a time in this process,
exactly as ``tjctl run`` does. A worker that is stopped (SIGTERM, Ctrl-C) hands its row
back as ``pending``; the next worker resumes it from the run folder's study.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from pathlib import Path
from types import FrameType

from tjcore.runner import RunOutcome, run_row
from tjcore.store import JobStore
from tjtrainer.progress import RunState

LOCAL_NAMESPACE = "local"
log = logging.getLogger(__name__)


def local_name(job_id: int) -> str:
    """A new TrainingJob name for row ``job_id`` run by a local worker: the id for people, a
    random part so that a row of a new table (ids start again at 1) never meets the run
    folder of an old one. The claim stores it in the row, so a resuming worker keeps it."""
    return f"job-{job_id}-{secrets.token_hex(3)}"


def run_next(store: JobStore, *, data_root: Path, show_progress: bool) -> RunOutcome | None:
    """Claim and run the oldest pending row; ``None`` if there is none to take."""
    for row in store.pending(claimable_by=LOCAL_NAMESPACE):
        name = row.name or local_name(row.id)
        if not store.claim(row.id, namespace=LOCAL_NAMESPACE, name=name, start=True):
            continue  # another worker or the operator took it first
        claimed = store.get(row.id)
        assert claimed is not None
        log.info("job %d: %s, %d trials per model", row.id, row.timeframe, row.n_trials)
        try:
            outcome = run_row(store, claimed, data_root=data_root, show_progress=show_progress)
        except KeyboardInterrupt:
            store.update_job(row.id, status=RunState.PENDING.value, error=None)
            raise
        log.info("job %d %s: %s", row.id, outcome.state, outcome.message)
        return outcome
    return None


def serve(
    store: JobStore, *, data_root: Path, interval: float, once: bool, show_progress: bool
) -> int:
    """Run pending jobs until stopped; with ``once``, until no pending row is left."""
    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while not stop.is_set():
            outcome = run_next(store, data_root=data_root, show_progress=show_progress)
            if outcome is None:
                if once:
                    return 0
                stop.wait(interval)
    except KeyboardInterrupt:
        log.info("worker stopped; its job, if any, is pending again and will resume")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
