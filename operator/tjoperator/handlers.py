"""kopf handlers of the TrainingJob operator.

- create/resume: the training_jobs row (adopted or inserted) and one Job (409 is fine);
  ``JobCreated`` is posted until the status names the Job, so a restart right after the
  Job was made still posts it. A cancel found at resume of a run that has started takes
  the normal path (the marker, the grace, then the Job's deletion);
- a daemon per running TrainingJob: progress → CR status and table row, cancel grace, a
  Job deleted under it made again; it is the only writer of ``status.phase`` (the create
  handler hands it the verdicts it decides before any trainer runs);
- spec.cancel: the cancel marker; delete: the Job goes, its pods are waited for, and a
  running row is cancelled with the trainer's final progress;
- startup: API credentials, the table, and the table bridge.

What the handlers share lives in kopf's memo: the operator's ``config`` (given to
``kopf.run``) and its ``table`` (opened at start-up, or later); each object's memo (kopf's
shallow copy of the operator's) holds its daemon's :class:`~tjoperator.tracking.Tracker`
and an early verdict. API errors are retried by kopf, which runs the handler again (a
transient answer after ``kube.call``'s delay, any other error after the handler's backoff).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import kopf

from tjcontract.names import GROUP, PLURAL, VERSION
from tjcontract.spec import DEFAULT_N_TRIALS, total_trials
from tjcore.messages import bounded_message
from tjcore.settings import redact_text, redact_url
from tjcore.spec import SpecError, TrainingJobSpec, validate_spec
from tjcore.store import DatabaseUnreachableError, JobRow, JobStore
from tjoperator import bridge, kube, metrics
from tjoperator.config import OperatorConfig
from tjoperator.job_builder import (
    ANNOTATION_ROW_ID,
    LABEL_TRAININGJOB,
    build_job,
    build_trainingjob_for_row,
    check_job_allowed,
    job_name,
)
from tjoperator.kueue import QUEUE_LABEL, queue_labels
from tjoperator.status import Observation, Phase, Verdict
from tjoperator.tracking import (
    Tracker,
    act,
    observe,
    publish,
    row_values,
    settle,
    wait_for_pods,
)
from tjtrainer.progress import read_progress, request_cancel, run_dir_for

log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, PLURAL)
# Answers to creating the Job that the same Job gets again however often it is sent (an
# invalid pod spec); other errors (quota, 5xx) are retried.
JOB_REFUSED_FOR_GOOD = frozenset({400, 422})
# The memo key under which the create handler hands the daemon an early verdict.
EARLY_VERDICT = "early_verdict"
# The memo key of the daemon's Tracker: kept when kopf runs the daemon again after an error.
TRACKER = "tracker"
# How long kopf waits before it runs the daemon again after an error that is not transient.
TRACKING_BACKOFF_SECONDS = 2.0
EVENT_COMPONENT = "trainingjob-operator"
# How often the operator tries again to reach a database that was not up when it started.
STORE_RETRY_SECONDS = 5.0


@dataclass
class Table:
    """The training_jobs table once it is open. One instance sits in the operator's memo,
    so every object's memo (a shallow copy) sees a table that opens after start-up."""

    store: JobStore | None = None


def _config(memo: kopf.Memo) -> OperatorConfig:
    config = memo.get("config")
    return config if isinstance(config, OperatorConfig) else OperatorConfig()


def _store(memo: kopf.Memo) -> JobStore | None:
    table = memo.get("table")
    return table.store if isinstance(table, Table) else None


def _namespaced(namespace: str | None) -> str:
    """TrainingJobs are namespaced; kopf types the namespace as optional for all kinds."""
    assert namespace, "TrainingJob without a namespace"
    return namespace


@kopf.on.startup()
async def on_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.batching.idle_timeout = 0.1
    settings.batching.batch_window = 0.05
    await asyncio.to_thread(kube.load_config)
    config = _config(memo)
    memo.table = table = Table()
    if config.database_url:
        try:
            table.store = await asyncio.to_thread(JobStore, config.database_url)
        except Exception as err:
            # No traceback: SQLAlchemy's messages may quote the URL, password and all.
            reason = redact_text(f"{type(err).__name__}: {err}", config.database_url)
            unreachable = isinstance(err, DatabaseUnreachableError)
            log.error(
                "cannot open the training_jobs table at %s (%s); the CR status "
                "still works, the table and the bridge do not%s",
                redact_url(config.database_url),
                reason.splitlines()[0],
                f" until it can be reached (trying every {STORE_RETRY_SECONDS:.0f} s)"
                if unreachable
                else "",
            )
            if unreachable:  # a database that starts after the operator, say
                memo.store_task = asyncio.create_task(_open_store_later(config, table, memo))
    if table.store is not None and config.bridge_namespace:
        memo.bridge_task = asyncio.create_task(bridge.run(table.store, config.bridge_namespace))


async def _open_store_later(config: OperatorConfig, table: Table, memo: kopf.Memo) -> None:
    """Open the table once its database can be reached, then start the bridge."""
    while table.store is None:
        await asyncio.sleep(STORE_RETRY_SECONDS)
        try:
            table.store = await asyncio.to_thread(JobStore, config.database_url)
        except DatabaseUnreachableError:
            continue
        except Exception as err:
            reason = redact_text(f"{type(err).__name__}: {err}", config.database_url)
            log.error("cannot open the training_jobs table: %s", reason.splitlines()[0])
            return
    log.info("the training_jobs table at %s is open now", redact_url(config.database_url))
    if config.bridge_namespace:
        memo.bridge_task = asyncio.create_task(bridge.run(table.store, config.bridge_namespace))


@kopf.on.cleanup()
async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    for key in ("store_task", "bridge_task"):
        task = memo.get(key)
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
    return replace(spec, cancel=False, suspend=False) == expected


def _ensure_row(
    store: JobStore | None,
    logger: kopf.Logger,
    namespace: str,
    name: str,
    uid: str,
    annotations: dict[str, str],
    spec: TrainingJobSpec,
) -> int | None:
    """The table row of this TrainingJob object: the row already made for its uid, the
    row the table bridge claimed for it (named in its annotation), or a new row.

    The annotation alone proves nothing (anyone who may create a TrainingJob can write
    it): a row is taken only if it is the bridge's own claim for this very object."""
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
        logger.warning(
            "annotation %s=%s names a row that the table bridge did not claim for "
            "this TrainingJob; it gets a row of its own",
            ANNOTATION_ROW_ID,
            row_id,
        )
    return store.submit_spec(spec, source="kubectl", namespace=namespace, name=name, uid=uid)


def _event(body: kopf.Body, *, warning: bool, reason: str, message: str) -> None:
    """Post an Event (queued by kopf); its message is bounded."""
    kopf.event(
        body,
        type="Warning" if warning else "Normal",
        reason=reason,
        message=bounded_message(message) or "",
    )


def _run_started(run_dir: Path) -> bool:
    """Whether this object's trainer has written progress (the folder is its uid's)."""
    try:
        return read_progress(run_dir) is not None
    except (OSError, ValueError):
        return False


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@metrics.counts_errors
async def ensure_job(
    body: kopf.Body,
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    uid: str,
    status: kopf.Status,
    annotations: kopf.Annotations,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Give the TrainingJob its row and its Job; harmless to repeat. A verdict reached
    before any trainer runs goes to the daemon, the one writer of the phase."""
    namespace = _namespaced(namespace)
    if str(status.get("phase", "")) in {p.value for p in Phase if p.is_final}:
        return
    config = _config(memo)
    try:
        parsed = validate_spec(dict(spec))
        check_job_allowed(parsed, config)  # allowed images; workers need PostgreSQL
    except SpecError as err:
        memo[EARLY_VERDICT] = Verdict(Phase.FAILED, "InvalidSpec", str(err))
        return
    # This object's own folder (its uid's), made as the pods' user before they mount it.
    run_dir = run_dir_for(config.shared_data_path, namespace, name, uid)
    await asyncio.to_thread(run_dir.mkdir, parents=True, exist_ok=True)
    row_id = await asyncio.to_thread(
        _ensure_row, _store(memo), logger, namespace, name, uid, dict(annotations), parsed
    )
    jname = job_name(name)
    if parsed.cancel:
        started = await asyncio.to_thread(_run_started, run_dir) or await kube.call(
            lambda: kube.job_exists(namespace, jname)
        )
        if not started:
            memo[EARLY_VERDICT] = Verdict(
                Phase.CANCELLED, "CancelRequested", "cancelled before it started"
            )
            return
        # Cancelled while no operator ran: the trainer stops after its trial, and the
        # daemon enforces the grace as for any cancel.
        await asyncio.to_thread(request_cancel, run_dir)
        await kube.call(
            lambda: kube.patch_status(namespace, name, {"jobName": jname, "rowId": row_id})
        )
        return
    job = build_job(
        name=name,
        namespace=namespace,
        uid=uid,
        spec=parsed,
        config=config,
        queue=queue_labels(body.get("metadata", {}).get("labels")),
    )
    try:
        created = await kube.call(lambda: kube.create_job(job))
    except kube.ApiException as err:
        if err.status not in JOB_REFUSED_FOR_GOOD:
            raise  # kopf runs the handler again
        message = f"the API refused the trainer Job: {kube.api_message(err)}"
        memo[EARLY_VERDICT] = Verdict(Phase.FAILED, "JobRefused", message)
        return
    if not status.get("jobName"):
        # Posted before the status names the Job, and at once (not queued): an operator
        # killed in between posts it again after its restart.
        said = f"created Job {jname}" if created else f"Job {jname} exists (made before a restart)"
        involved = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
        }
        await kube.call(
            lambda: kube.create_event(
                involved,
                type="Normal",
                reason="JobCreated",
                message=said,
                component=EVENT_COMPONENT,
            )
        )
    elif created:
        message = (
            f"Job {jname} was gone (deleted while the operator was not running); created it "
            "again, the trainer resumes from its last finished trial"
        )
        logger.warning("JobDeleted: %s", message)
        _event(body, warning=True, reason="JobDeleted", message=message)
    # The daemon owns the phase; this handler only says which Job and row are the run's.
    await kube.call(lambda: kube.patch_status(namespace, name, {"jobName": jname, "rowId": row_id}))


@kopf.on.event(*RESOURCE)
async def count_phase(event: kopf.RawEvent, namespace: str | None, name: str, **_: Any) -> None:
    """Every TrainingJob's phase, as the watch sees it, for the metrics (on the event
    loop, so never two at once)."""
    phase = str((event["object"].get("status") or {}).get("phase") or Phase.PENDING.value)
    metrics.phase_seen(_namespaced(namespace), name, None if event["type"] == "DELETED" else phase)


def _is_active(status: kopf.Status, **_: Any) -> bool:
    return str(status.get("phase", "")) not in {p.value for p in Phase if p.is_final}


def _tracker(
    body: kopf.Body, namespace: str, config: OperatorConfig, logger: kopf.Logger
) -> Tracker:
    """A new Tracker for TrainingJob ``body``, with the Job to make again if it is deleted."""
    name, spec = body["metadata"]["name"], body.get("spec", {})
    uid = body["metadata"]["uid"]
    queue = queue_labels(body["metadata"].get("labels"))
    try:
        manifest: dict[str, Any] | None = build_job(
            name=name,
            namespace=namespace,
            uid=uid,
            spec=validate_spec(dict(spec)),
            config=config,
            queue=queue,
        )
    except SpecError:
        manifest = None  # the create handler fails it
    return Tracker(
        uid=uid,
        namespace=namespace,
        name=name,
        job_name=job_name(name),
        run_dir=run_dir_for(config.shared_data_path, namespace, name, uid),
        row_id=(body.get("status") or {}).get("rowId"),
        total_trials=total_trials(int(spec.get("nTrials", DEFAULT_N_TRIALS))),
        parallelism=spec.get("parallelism"),
        workers=int(spec.get("workers") or 1),
        last_status=dict(body.get("status") or {}),
        job_manifest=manifest,
        queue=queue.get(QUEUE_LABEL),
        logger=logger,
    )


# When the phase turns final the filter stops matching and kopf stops the daemon: give it
# a graceful moment (backoff) to post the final Event before it is cancelled. An error
# ends this run of the daemon; kopf runs it again (its Tracker is kept in the memo).
@kopf.daemon(
    *RESOURCE,
    when=_is_active,
    cancellation_backoff=5.0,
    cancellation_timeout=5.0,
    initial_delay=0.0,
    backoff=TRACKING_BACKOFF_SECONDS,
)
@metrics.counts_errors
async def track_progress(
    body: kopf.Body,
    namespace: str | None,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """Follow the run until it ends: every trial reaches the CR status and the row."""
    namespace = _namespaced(namespace)
    job_statuses: kopf.Index[tuple[str, str], dict[str, Any]] = kwargs["job_statuses"]
    config = _config(memo)
    tracker: Tracker = memo.get(TRACKER) or _tracker(body, namespace, config, logger)
    memo[TRACKER] = tracker
    while not stopped:
        current = body.get("status") or {}
        if tracker.row_id is None:
            tracker.row_id = current.get("rowId")
        tracker.job_expected = tracker.job_expected or bool(current.get("jobName"))
        job_status = next(iter(job_statuses.get((namespace, tracker.job_name), [])), None)
        cancel = bool(body.get("spec", {}).get("cancel"))
        suspend = bool(body.get("spec", {}).get("suspend"))
        generation = body.get("metadata", {}).get("generation")
        early: Verdict | None = memo.get(EARLY_VERDICT)
        if early is not None:
            obs = Observation(progress=None, job=None)
        else:
            obs = await observe(
                tracker,
                job_status,
                suspend=suspend,
                image_pull_timeout=config.image_pull_timeout_seconds,
            )
            obs = await act(
                tracker,
                obs,
                job_status,
                cancel=cancel,
                suspend=suspend,
                grace=config.cancel_grace_seconds,
            )
            obs = await settle(tracker, obs)
        changed = await publish(
            tracker, obs, store=_store(memo), generation=generation, verdict=early
        )
        while tracker.notices:
            kind, reason, message = tracker.notices.pop(0)
            _event(body, warning=kind == "Warning", reason=reason, message=message)
        if changed is not None:
            _event(
                body,
                warning=changed.warning,
                reason=changed.reason,
                message=f"{changed.phase}: {changed.message}",
            )
            if changed.phase.is_final:
                return
        await stopped.wait(config.poll_seconds)


@kopf.on.field(*RESOURCE, field="spec.cancel", new=True)
@metrics.counts_errors
async def on_cancel(
    name: str, namespace: str | None, uid: str, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Ask the trainer to stop after its current trial (the daemon enforces the grace)."""
    namespace = _namespaced(namespace)
    run_dir = run_dir_for(_config(memo).shared_data_path, namespace, name, uid)
    await asyncio.to_thread(request_cancel, run_dir)
    kopf.info(body, reason="CancelRequested", message="the trainer stops after its current trial")


@kopf.on.delete(*RESOURCE)
@metrics.counts_errors
async def on_delete(
    name: str, namespace: str | None, uid: str, status: kopf.Status, memo: kopf.Memo, **_: Any
) -> None:
    """Delete the Job (its pods go with it) and end a running row as cancelled, with the
    progress the trainer left once its pods are gone."""
    namespace = _namespaced(namespace)
    run_dir = run_dir_for(_config(memo).shared_data_path, namespace, name, uid)
    await asyncio.to_thread(request_cancel, run_dir)
    await kube.call(lambda: kube.delete_job(namespace, job_name(name)))
    store = _store(memo)
    if store is None:
        return
    row_id = status.get("rowId")
    # A TrainingJob deleted before its rowId reached the status still has its row.
    row = await asyncio.to_thread(store.get, int(row_id)) if row_id is not None else None
    if row is None:
        row = await asyncio.to_thread(store.get_by_uid, uid)
    if row is None or row.is_final:
        return
    await wait_for_pods(namespace, name)
    progress = None
    if await asyncio.to_thread(_run_started, run_dir):
        progress = await asyncio.to_thread(read_progress, run_dir)
    verdict = Verdict(Phase.CANCELLED, "Deleted", "the TrainingJob was deleted")
    values = row_values(Observation(progress, None), verdict)
    values["error"] = "the TrainingJob was deleted"
    await asyncio.to_thread(store.update_job, row.id, **values)
