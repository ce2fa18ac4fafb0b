"""The table bridge: rows that the UI (or ``tjctl submit``) inserts as ``pending`` become
TrainingJobs, exactly once; a cancel requested in the table becomes ``spec.cancel``.

Exactly once holds across restarts because a row is first claimed in the table with a
deterministic name (``row-<id>``) and the TrainingJob is then created under that name,
where 409 AlreadyExists counts as done.
"""

from __future__ import annotations

import asyncio
import logging

from tjcore.store import JobStore
from tjoperator import kube
from tjoperator.job_builder import build_trainingjob_for_row, row_trainingjob_name

log = logging.getLogger(__name__)
BRIDGE_POLL_SECONDS = 1.0


def sync_once(
    store: JobStore, namespace: str, watched: tuple[str, ...], done: set[int], cancelled: set[int]
) -> None:
    """One pass over the table (blocking; run in a thread)."""
    for row in store.pending(claimable_by=namespace):
        if row.id in done:
            continue
        name = row.name or row_trainingjob_name(row.id)
        if row.name is None and not store.claim(
            row.id, namespace=namespace, name=name, start=False
        ):
            continue  # a local worker took it first
        body = build_trainingjob_for_row(
            row_id=row.id,
            namespace=namespace,
            timeframe=row.timeframe,
            n_trials=row.n_trials,
            train_ratio=row.train_ratio,
            seed=row.seed,
            parallelism=row.parallelism,
        )
        body["metadata"]["name"] = name
        if kube.create_trainingjob(body):
            log.info("row %d became TrainingJob %s/%s", row.id, namespace, name)
        done.add(row.id)
    for row in store.cancel_requests():
        if row.id in cancelled or (watched and row.namespace not in watched):
            continue
        assert row.namespace and row.name
        if kube.request_cancel(row.namespace, row.name):
            log.info(
                "row %d: cancel requested in the table reached %s/%s",
                row.id,
                row.namespace,
                row.name,
            )
        cancelled.add(row.id)


async def run(store: JobStore, namespace: str, watched: tuple[str, ...]) -> None:
    """Keep the table and the cluster in step until cancelled."""
    done: set[int] = set()
    cancelled: set[int] = set()
    log.info("table bridge: pending rows become TrainingJobs in namespace %s", namespace)
    while True:
        try:
            await asyncio.to_thread(sync_once, store, namespace, watched, done, cancelled)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("table bridge pass failed; trying again")
        await asyncio.sleep(BRIDGE_POLL_SECONDS)
