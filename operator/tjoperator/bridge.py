"""The table bridge: rows that the UI (or ``tjctl submit``) inserts as ``pending`` become
TrainingJobs, exactly once; a cancel requested in the table becomes ``spec.cancel``.

Exactly once holds across restarts because a row is first claimed in the table under a
new name (``row-<id>-<random>``, stored in the row) and the TrainingJob is then created
under that name, where 409 AlreadyExists counts as done; the new object's uid is bound to
the row at once, and a row with a uid is never created again. So a TrainingJob deleted
before the operator got to it is not made again: its row ends ``cancelled`` (by the
operator's delete handler, or here, when the object is gone without one). The random part
keeps a row of a new table (whose ids start again at 1) from meeting the TrainingJob of an
old row.

Each row is handled on its own: a row the API refuses for good (400, 403, 422: values out
of the CRD's range, a quota, an admission policy) ends ``failed`` with the API's message;
any other error leaves the row for the next pass. Forwarding cancels never waits on the
creates, and a cancel is forwarded once (``cancel_forwarded``), not at every start.

The bridge acts only on rows of its own namespace: under a cluster-wide operator a cancel
in the table never reaches another namespace's TrainingJob. Its API calls run in a thread
of its own, once each: what fails is tried again at the next pass.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from sqlalchemy.exc import SQLAlchemyError

from tjcore.settings import redact_text
from tjcore.store import JobRow, JobStore
from tjoperator import kube, metrics
from tjoperator.job_builder import (
    ANNOTATION_ROW_ID,
    build_trainingjob_for_row,
    row_trainingjob_name,
)
from tjtrainer.progress import RunState

log = logging.getLogger(__name__)
BRIDGE_POLL_SECONDS = 1.0
# Answers that the same request will get again, however often it is sent.
REFUSED_FOR_GOOD = frozenset({400, 403, 422})


def _create(store: JobStore, namespace: str, row: JobRow) -> bool:
    """Claim ``row``, create its TrainingJob and bind the new object's uid to the row;
    ``False`` if someone else claimed it."""
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
    uid = kube.counted(lambda: kube.create_trainingjob(body))
    if uid is not None:
        log.info("row %d became TrainingJob %s/%s", row.id, namespace, name)
    else:  # made before a restart: it is ours if it names this row
        found = kube.counted(lambda: kube.read_trainingjob(namespace, name)) or {}
        annotations = (found.get("metadata") or {}).get("annotations") or {}
        if annotations.get(ANNOTATION_ROW_ID) == str(row.id):
            uid = found["metadata"]["uid"]
    if uid is not None:
        store.bind_claimed(row.id, namespace=namespace, name=name, uid=uid)
    return True


def create_pending(store: JobStore, namespace: str, done: set[int]) -> None:
    """Turn every pending row into a TrainingJob, each on its own (blocking)."""
    for row in store.pending(claimable_by=namespace):
        if row.id in done or row.uid is not None:
            continue  # its TrainingJob was made (and may have been deleted since)
        if row.spec_damage:
            message = f"the row is damaged ({row.spec_damage}); submit the job again"
            log.warning("row %d failed: %s", row.id, message)
            store.finish(row.id, RunState.FAILED, error=message, only_if=RunState.PENDING)
            done.add(row.id)
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
            metrics.reconcile_error("bridge")
            log.exception("row %d: could not become a TrainingJob; trying again", row.id)


def forward_cancels(store: JobStore, namespace: str) -> None:
    """Set ``spec.cancel`` on the TrainingJob of every row of ``namespace`` with a cancel
    request not forwarded yet; each is forwarded once."""
    for row in store.cancel_requests(namespace=namespace):
        assert row.name
        name = row.name
        try:
            if kube.counted(partial(kube.request_cancel, namespace, name)):
                log.info(
                    "row %d: cancel requested in the table reached %s/%s", row.id, namespace, name
                )
        except Exception as err:
            log.warning("row %d: could not forward its cancel (%s); trying again", row.id, err)
            continue
        store.mark_cancel_forwarded(row.id)


def end_rows_of_deleted(store: JobStore, namespace: str) -> None:
    """End ``cancelled`` the unfinished rows of ``namespace`` whose TrainingJob is gone
    (deleted while no operator ran its delete handler)."""
    rows = store.unfinished_with_uid(namespace=namespace)
    if not rows:
        return
    alive = kube.counted(lambda: kube.trainingjob_uids(namespace))  # after reading the rows
    for row in rows:
        if row.uid in alive:
            continue
        log.warning(
            "row %d: its TrainingJob %s/%s was deleted before it ended", row.id, namespace, row.name
        )
        store.finish(
            row.id,
            RunState.CANCELLED,
            error="the TrainingJob was deleted before it ended",
            only_if=RunState(row.status),
        )


def _first_line(err: SQLAlchemyError) -> str:
    """The driver's words without SQLAlchemy's SQL echo and parameters."""
    original = getattr(err, "orig", None) or err
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


async def run(store: JobStore, namespace: str) -> None:
    """Keep the table and the cluster of ``namespace`` in step until cancelled."""
    done: set[int] = set()
    log.info("table bridge: pending rows become TrainingJobs in namespace %s", namespace)
    steps: tuple[tuple[str, Callable[[], None], int], ...] = (
        ("creating TrainingJobs", lambda: create_pending(store, namespace, done), 1),
        ("forwarding cancels", lambda: forward_cancels(store, namespace), 1),
        ("ending rows of deleted TrainingJobs", lambda: end_rows_of_deleted(store, namespace), 10),
    )
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="table-bridge") as own:
        for passes in itertools.count():
            for what, step, every in steps:
                if passes % every:
                    continue
                try:
                    await loop.run_in_executor(own, step)
                except asyncio.CancelledError:
                    raise
                except SQLAlchemyError as err:  # the table: one line, never its password
                    metrics.reconcile_error("bridge")
                    log.warning(
                        "table bridge: %s failed (%s); trying again",
                        what,
                        redact_text(_first_line(err), store.url),
                    )
                except Exception:
                    metrics.reconcile_error("bridge")
                    log.exception("table bridge: %s failed; trying again", what)
            await asyncio.sleep(BRIDGE_POLL_SECONDS)
