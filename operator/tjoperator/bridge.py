"""The table bridge: rows that the UI (or ``tjctl submit``) inserts as ``pending`` become
TrainingJobs, exactly once; a cancel requested in the table becomes ``spec.cancel``.

Exactly once holds across restarts because a row is first claimed in the table under a
new name (``row-<id>-<random>``, stored in the row) and the TrainingJob is then created
under that name, where 409 AlreadyExists counts as done. The random part keeps a row of
a new table (whose ids start again at 1) from meeting the TrainingJob of an old row.

Each row is handled on its own: a row the API refuses for good (400, 403, 422: values out
of the CRD's range, a quota, an admission policy) ends ``failed`` with the API's message;
any other error leaves the row for the next pass. Forwarding cancels never waits on the
creates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tjcore.store import JobRow, JobStore
from tjoperator import kube
from tjoperator.job_builder import build_trainingjob_for_row, row_trainingjob_name
from tjtrainer.progress import RunState

log = logging.getLogger(__name__)
BRIDGE_POLL_SECONDS = 1.0
# Answers that the same request will get again, however often it is sent.
REFUSED_FOR_GOOD = frozenset({400, 403, 422})


def _create(store: JobStore, namespace: str, row: JobRow) -> bool:
    """Claim ``row`` and create its TrainingJob; ``False`` if someone else claimed it."""
    name = row.name or row_trainingjob_name(row.id)
    if row.name is None and not store.claim(row.id, namespace=namespace, name=name, start=False):
        return False  # a local worker took it first
    body = build_trainingjob_for_row(
        row_id=row.id,
        name=name,
        namespace=namespace,
        timeframe=row.timeframe,
        n_trials=row.n_trials,
        train_ratio=row.train_ratio,
        seed=row.seed,
        parallelism=row.parallelism,
        cv_folds=row.cv_folds,
        embargo=row.embargo,
        promotion=row.promotion,
    )
    if kube.create_trainingjob(body):
        log.info("row %d became TrainingJob %s/%s", row.id, namespace, name)
    return True


def create_pending(store: JobStore, namespace: str, done: set[int]) -> None:
    """Turn every pending row into a TrainingJob, each on its own (blocking)."""
    for row in store.pending(claimable_by=namespace):
        if row.id in done:
            continue
        try:
            if _create(store, namespace, row):
                done.add(row.id)
        except kube.ApiException as err:
            if err.status not in REFUSED_FOR_GOOD:
                log.warning(
                    "row %d: the API answered %s to its TrainingJob; trying again",
                    row.id,
                    err.status,
                )
                continue
            message = f"the Kubernetes API refused the TrainingJob: {kube.api_message(err)}"
            log.warning("row %d failed: %s", row.id, message)
            store.finish(row.id, RunState.FAILED, error=message, only_if=RunState.PENDING)
            done.add(row.id)
        except Exception:
            log.exception("row %d: could not become a TrainingJob; trying again", row.id)


def forward_cancels(store: JobStore, watched: tuple[str, ...], cancelled: set[int]) -> None:
    """Set ``spec.cancel`` on the TrainingJob of every row with a cancel request."""
    for row in store.cancel_requests():
        if row.id in cancelled or (watched and row.namespace not in watched):
            continue
        assert row.namespace and row.name
        try:
            if kube.request_cancel(row.namespace, row.name):
                log.info(
                    "row %d: cancel requested in the table reached %s/%s",
                    row.id,
                    row.namespace,
                    row.name,
                )
        except Exception as err:
            log.warning("row %d: could not forward its cancel (%s); trying again", row.id, err)
            continue
        cancelled.add(row.id)


async def run(store: JobStore, namespace: str, watched: tuple[str, ...]) -> None:
    """Keep the table and the cluster in step until cancelled."""
    done: set[int] = set()
    cancelled: set[int] = set()
    log.info("table bridge: pending rows become TrainingJobs in namespace %s", namespace)
    steps: tuple[tuple[str, Callable[[], None]], ...] = (
        ("creating TrainingJobs", lambda: create_pending(store, namespace, done)),
        ("forwarding cancels", lambda: forward_cancels(store, watched, cancelled)),
    )
    while True:
        for what, step in steps:
            try:
                await asyncio.to_thread(step)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("table bridge: %s failed; trying again", what)
        await asyncio.sleep(BRIDGE_POLL_SECONDS)
