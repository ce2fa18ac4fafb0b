"""kopf handlers of the TrainingJob operator.

- create/resume: the training_jobs row (adopted or inserted) and one Job (409 is fine);
- a daemon per running TrainingJob: progress → CR status and table row, cancel grace;
- spec.cancel: the cancel marker; delete: the Job goes and a running row is cancelled;
- startup: API credentials, the table, and the table bridge.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import kopf

from tjcore.settings import redact_text, redact_url
from tjcore.spec import GROUP, PLURAL, VERSION, SpecError, TrainingJobSpec, validate_spec
from tjcore.store import JobRow, JobStore
from tjoperator import bridge, kube
from tjoperator.config import OperatorConfig
from tjoperator.job_builder import (
    ANNOTATION_ROW_ID,
    LABEL_TRAININGJOB,
    build_job,
    build_trainingjob_for_row,
    job_name,
)
from tjoperator.status import Observation, Phase, Verdict, build_status
from tjoperator.tracking import Tracker, observe, publish, row_values
from tjtrainer.progress import RunState, claim_run_dir, request_cancel, run_dir_for

log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, PLURAL)
# Answers to creating the Job that the same Job gets again however often it is sent (an
# invalid pod spec); other errors (quota, 5xx) are retried.
JOB_REFUSED_FOR_GOOD = frozenset({400, 422})


class Runtime:
    """What the handlers share, set once at start-up by :func:`configure`."""

    config: OperatorConfig = OperatorConfig()
    store: JobStore | None = None


def _namespaced(namespace: str | None) -> str:
    """TrainingJobs are namespaced; kopf types the namespace as optional for all kinds."""
    assert namespace, "TrainingJob without a namespace"
    return namespace


def configure(config: OperatorConfig) -> None:
    Runtime.config = config


@kopf.on.startup()
async def on_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.batching.idle_timeout = 0.1
    settings.batching.batch_window = 0.05
    await asyncio.to_thread(kube.load_config)
    config = Runtime.config
    if config.database_url:
        try:
            Runtime.store = await asyncio.to_thread(JobStore, config.database_url)
        except Exception as err:
            # No traceback: SQLAlchemy's messages may quote the URL, password and all.
            reason = redact_text(f"{type(err).__name__}: {err}", config.database_url)
            log.error(
                "cannot open the training_jobs table at %s (%s); the CR status "
                "still works, the table and the bridge do not",
                redact_url(config.database_url),
                reason.splitlines()[0],
            )
    if Runtime.store is not None and config.bridge_namespace:
        memo.bridge_task = asyncio.create_task(
            bridge.run(Runtime.store, config.bridge_namespace, config.namespaces)
        )


@kopf.on.cleanup()
async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("bridge_task")
    if task is not None:
        task.cancel()


@kopf.index("batch", "v1", "jobs", labels={LABEL_TRAININGJOB: kopf.PRESENT})
def job_statuses(namespace: str | None, name: str, status: kopf.Status, **_: Any) -> Any:
    """The status of every trainer Job, kept current by kopf's watch."""
    return {(namespace, name): dict(status)}


def _is_the_bridges(row: JobRow, namespace: str, name: str, spec: TrainingJobSpec) -> bool:
    """Whether TrainingJob ``namespace/name`` with ``spec`` is the one the table bridge made
    for ``row``: the bridge claimed the row under exactly this name, no object has the row
    yet, and the spec is the row's (the bridge sets nothing else)."""
    if row.uid is not None or (row.namespace, row.name) != (namespace, name):
        return False
    bridge_made = build_trainingjob_for_row(
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
    try:
        expected = validate_spec(bridge_made["spec"])
    except SpecError:
        return False
    return replace(spec, cancel=False) == expected


def _ensure_row(
    namespace: str, name: str, uid: str, annotations: dict[str, str], spec: TrainingJobSpec
) -> int | None:
    """The table row of this TrainingJob object: the row already made for its uid, the
    row the table bridge claimed for it (named in its annotation), or a new row.

    The annotation alone proves nothing (anyone who may create a TrainingJob can write
    it): a row is taken only if it is the bridge's own claim for this very object."""
    store = Runtime.store
    if store is None:
        return None
    row = store.get_by_uid(uid)
    if row is not None:
        return row.id
    row_id = annotations.get(ANNOTATION_ROW_ID, "")
    claimed = store.get(int(row_id)) if row_id.isdigit() else None
    if claimed is not None:
        if _is_the_bridges(claimed, namespace, name, spec) and store.bind_claimed(
            claimed.id, namespace=namespace, name=name, uid=uid
        ):
            return claimed.id
        log.warning(
            "%s/%s: annotation %s=%s names a row that the table bridge did not claim for "
            "this TrainingJob; it gets a row of its own",
            namespace,
            name,
            ANNOTATION_ROW_ID,
            row_id,
        )
    return store.submit_spec(spec, source="kubectl", namespace=namespace, name=name, uid=uid)


def _claim_run_dir(run_dir: Path, uid: str) -> None:
    """Make the run folder this object's. A folder left by an earlier TrainingJob of the
    same name (deleted, then created again) is removed: the new object starts afresh,
    while the old one's trial log stays in its table row and its models stay put."""
    if claim_run_dir(run_dir, uid):
        log.info("%s: removed the run folder of an earlier object of the same name", run_dir)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
async def ensure_job(
    body: kopf.Body,
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    uid: str,
    status: kopf.Status,
    annotations: kopf.Annotations,
    meta: kopf.Meta,
    **_: Any,
) -> None:
    """Give the TrainingJob its row and its Job; harmless to repeat."""
    namespace = _namespaced(namespace)
    if str(status.get("phase", "")) in {p.value for p in Phase if p.is_final}:
        return
    config = Runtime.config
    generation = meta.get("generation")
    try:
        parsed = validate_spec(dict(spec))
    except SpecError as err:
        await _finish_early(
            body, namespace, name, None, Phase.FAILED, "InvalidSpec", str(err), generation
        )
        return
    run_dir = run_dir_for(config.shared_data_path, namespace, name)
    await asyncio.to_thread(_claim_run_dir, run_dir, uid)
    row_id = await asyncio.to_thread(_ensure_row, namespace, name, uid, dict(annotations), parsed)
    if parsed.cancel:
        await _finish_early(
            body,
            namespace,
            name,
            row_id,
            Phase.CANCELLED,
            "CancelRequested",
            "cancelled before it started",
            generation,
        )
        return
    job = build_job(name=name, namespace=namespace, uid=uid, spec=parsed, config=config)
    try:
        created = await kube.call(lambda: kube.create_job(job))
    except kube.ApiException as err:
        if err.status not in JOB_REFUSED_FOR_GOOD:
            raise  # kopf retries the handler
        message = f"the API refused the trainer Job: {kube.api_message(err)}"
        await _finish_early(
            body, namespace, name, row_id, Phase.FAILED, "JobRefused", message, generation
        )
        return
    if created:
        kopf.info(body, reason="JobCreated", message=f"created Job {job_name(name)}")
    # The daemon owns the phase; this handler only says which Job and row are the run's.
    await kube.call(
        lambda: kube.patch_status(namespace, name, {"jobName": job_name(name), "rowId": row_id})
    )


async def _finish_early(
    body: kopf.Body,
    namespace: str,
    name: str,
    row_id: int | None,
    phase: Phase,
    reason: str,
    message: str,
    generation: int | None,
) -> None:
    verdict = Verdict(phase, reason, message)
    obs = Observation(progress=None, job=None)
    status = build_status(obs, verdict, total_trials=0, previous={}, generation=generation)
    status |= {"rowId": row_id}
    await kube.call(lambda: kube.patch_status(namespace, name, status))
    if Runtime.store is not None and row_id is not None:
        await asyncio.to_thread(Runtime.store.update_job, row_id, **row_values(obs, verdict))
    kopf.event(
        body, type="Warning" if phase == Phase.FAILED else "Normal", reason=reason, message=message
    )


def _is_active(status: kopf.Status, **_: Any) -> bool:
    return str(status.get("phase", "")) not in {p.value for p in Phase if p.is_final}


# When the phase turns final the filter stops matching and kopf stops the daemon: give it
# a graceful moment (backoff) to post the final Event before it is cancelled.
@kopf.daemon(
    *RESOURCE,
    when=_is_active,
    cancellation_backoff=5.0,
    cancellation_timeout=5.0,
    initial_delay=0.0,
)
async def track_progress(
    body: kopf.Body,
    name: str,
    namespace: str | None,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    """Follow the run until it ends: every trial reaches the CR status and the row."""
    namespace = _namespaced(namespace)
    job_statuses: kopf.Index[tuple[str, str], dict[str, Any]] = kwargs["job_statuses"]
    config = Runtime.config
    spec = body.get("spec", {})
    total = 2 * int(spec.get("nTrials", 30))
    tracker = Tracker(
        uid=body["metadata"]["uid"],
        namespace=namespace,
        name=name,
        job_name=job_name(name),
        run_dir=run_dir_for(config.shared_data_path, namespace, name),
        row_id=(body.get("status") or {}).get("rowId"),
        total_trials=total,
        last_status=dict(body.get("status") or {}),
    )
    while not stopped:
        if tracker.row_id is None:
            tracker.row_id = (body.get("status") or {}).get("rowId")
        job_status = next(iter(job_statuses.get((namespace, tracker.job_name), [])), None)
        cancel = bool(body.get("spec", {}).get("cancel"))
        try:
            obs = await observe(
                tracker,
                job_status,
                cancel=cancel,
                grace=config.cancel_grace_seconds,
                image_pull_timeout=config.image_pull_timeout_seconds,
            )
            changed = await publish(
                tracker,
                obs,
                store=Runtime.store,
                generation=body.get("metadata", {}).get("generation"),
            )
        except kube.ApiException as err:
            log.warning("%s/%s: API error %s while tracking; retrying", namespace, name, err.status)
            await asyncio.sleep(2)
            continue
        if changed is not None:
            kopf.event(
                body,
                type="Warning" if changed.warning else "Normal",
                reason=changed.reason,
                message=f"{changed.phase}: {changed.message}",
            )
            if changed.phase.is_final:
                return
        await stopped.wait(config.poll_seconds)


@kopf.on.field(*RESOURCE, field="spec.cancel", new=True)
async def on_cancel(name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    """Ask the trainer to stop after its current trial (the daemon enforces the grace)."""
    namespace = _namespaced(namespace)
    run_dir = run_dir_for(Runtime.config.shared_data_path, namespace, name)
    await asyncio.to_thread(request_cancel, run_dir)
    kopf.info(body, reason="CancelRequested", message="the trainer stops after its current trial")


@kopf.on.delete(*RESOURCE)
async def on_delete(name: str, namespace: str | None, status: kopf.Status, **_: Any) -> None:
    """Delete the Job (its pods go with it) and end a running row as cancelled."""
    namespace = _namespaced(namespace)
    run_dir = run_dir_for(Runtime.config.shared_data_path, namespace, name)
    await asyncio.to_thread(request_cancel, run_dir)
    await kube.call(lambda: kube.delete_job(namespace, job_name(name)))
    row_id = status.get("rowId")
    store = Runtime.store
    if store is not None and row_id is not None:
        row = await asyncio.to_thread(store.get, int(row_id))
        if row is not None and not row.is_final:
            await asyncio.to_thread(
                store.finish, row.id, RunState.CANCELLED, error="the TrainingJob was deleted"
            )
