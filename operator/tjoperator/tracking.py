"""Following one TrainingJob while it runs: read its progress file, its Job and (when
the Job's counts say something may be wrong) its pods, derive the status, and write it
to the CR and the table row within a poll interval.

A Job deleted by someone else while the run goes on is made again once its pods are
gone (the trainer resumes the study), with a Warning Event ``JobDeleted``; after a cancel
it is not, and the run ends ``Cancelled``. Before a final phase that was decided from
outside the trainer (a cancel's grace ran out, a pod failure, a deleted Job) the daemon
waits for the trainer's pods to go and reads the progress file once more, so the row's
trial log is the one the trainer left."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import kopf

from tjcontract.spec import DEFAULT_PARALLELISM
from tjcontract.words import table_word_of
from tjcore.store import JobStore, progress_columns
from tjoperator import kube, metrics
from tjoperator.eta import eta_status
from tjoperator.job_builder import LABEL_TRAININGJOB
from tjoperator.kueue import QueueState, job_runs, queue_state, workload_active
from tjoperator.status import (
    DEFAULT_IMAGE_PULL_TIMEOUT_SECONDS,
    POD_FAILURE_REASONS,
    Observation,
    Phase,
    Verdict,
    build_status,
    job_says_suspended,
    job_suspended,
    judge,
    pod_trouble,
    status_changed,
    termination_message,
)
from tjtrainer.progress import (
    PROGRESS_FILE,
    RunProgress,
    read_progress,
    request_cancel,
    utc_now,
)

log = logging.getLogger(__name__)
# How often the pods of a Job are listed while one of them is not ready (starting, or
# stuck on its image); the progress file is read far more often, the API is spared.
POD_CHECK_SECONDS = 2.0
# How often a Job missing from the watch's index is looked up directly.
JOB_CHECK_SECONDS = 2.0
# How long a final status waits for the trainer's pods to go (and write their last trial).
SETTLE_SECONDS = 60.0


@dataclass
class Tracker:
    """The state kept between two looks at one TrainingJob."""

    uid: str
    namespace: str
    name: str
    job_name: str
    run_dir: Path
    row_id: int | None
    total_trials: int
    last_status: dict[str, Any]
    parallelism: int | None = None  # spec.parallelism (None: the default), for the ETA
    workers: int = 1  # spec.workers: trainer pods, each running ``parallelism`` trials
    progress: RunProgress | None = None
    progress_mtime: float = -1.0
    trainer_message: str | None = None
    cancel_since: float | None = None
    job_deleted_for_cancel: bool = False
    pod_selector: str | None = None  # the Job's own, read once
    pods: tuple[dict[str, Any], ...] = ()  # from the last look at the pods
    pods_checked_at: float = -math.inf
    failed_pods_seen: int = 0  # the Job's ``failed`` count at the last look
    image_pull_since: float | None = None  # when a failing pull was first seen
    job_deleted_for_failure: bool = False
    last_reason: str | None = None  # of the last published verdict
    job_manifest: dict[str, Any] | None = None  # the Job to make again if it is deleted
    job_expected: bool = False  # the Job was made (seen, or named in the status)
    job_checked_at: float = -math.inf
    job_gone_on_cancel: bool = False
    suspend_applied: bool | None = None  # the spec.suspend last set on the Job
    cancelled_while_suspended: bool = False  # the Job was deleted for it
    queue: str | None = None  # the Kueue queue it names (tjoperator.kueue), if any
    workload: dict[str, Any] | None = None  # its Kueue Workload, from the last look
    workload_checked_at: float = -math.inf
    ran_before: bool = False  # its Job has run (so being held again is an eviction)
    held_job_itself: bool = False  # suspended with no Workload: the operator held the Job
    create_failure: str | None = None  # the Job controller's last FailedCreate message
    create_checked_at: float = -math.inf
    job_gone: bool = False  # the Job the run expects is not there (read, not the watch)
    # Events to post (type, reason, message), drained by the daemon.
    notices: list[tuple[str, str, str]] = field(default_factory=list)
    # kopf's logger of this object (its lines name it); the module's outside a handler.
    logger: kopf.Logger = field(default_factory=lambda: log)

    def read_progress(self) -> None:
        """Re-read ``progress.json`` when it changed since the last look (the folder is
        this object's uid's: a same-named predecessor's is another)."""
        try:
            mtime = (self.run_dir / PROGRESS_FILE).stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self.progress_mtime:
            return
        try:
            self.progress = read_progress(self.run_dir)
            self.progress_mtime = mtime
        except ValueError as err:  # a newer format, or a file from something else
            self.logger.error("cannot read %s: %s", PROGRESS_FILE, err)


def _pods_due(tracker: Tracker, job_status: dict[str, Any] | None, now: float) -> bool:
    """Whether to list the Job's pods now. Only when the Job's counts say that something
    may be wrong: a pod failed since the last look (was it OOM-killed?), or a pod is
    active but not ready (is it stuck on its image?) — then every POD_CHECK_SECONDS."""
    if job_status is None or tracker.job_deleted_for_failure:
        return False
    trouble = pod_trouble(tracker.pods)
    if trouble is not None and trouble.fatal:
        return False  # decided; keep the facts that decided it
    if (job_status.get("failed") or 0) > tracker.failed_pods_seen:
        return True
    if job_status.get("succeeded"):
        return False
    active, ready = job_status.get("active") or 0, job_status.get("ready") or 0
    if active <= ready:
        if trouble is not None:  # the pull worked after all
            tracker.pods, tracker.image_pull_since = (), None
        return False
    return now - tracker.pods_checked_at >= POD_CHECK_SECONDS


async def _look_at_pods(tracker: Tracker, job_status: dict[str, Any] | None, now: float) -> None:
    """List the Job's pods into the tracker (the Job's selector is read the first time)."""
    if tracker.pod_selector is None:
        tracker.pod_selector = await kube.call(
            lambda: kube.job_pod_selector(tracker.namespace, tracker.job_name)
        )
    selector = tracker.pod_selector
    pods: list[dict[str, Any]] = []
    if selector is not None:
        pods = await kube.call(lambda: kube.list_pods(tracker.namespace, selector))
    tracker.pods = tuple(pods)
    tracker.pods_checked_at = now
    tracker.failed_pods_seen = (job_status or {}).get("failed") or 0
    trouble = pod_trouble(tracker.pods)
    if trouble is not None and trouble.pulling:
        if tracker.image_pull_since is None:
            tracker.image_pull_since = now
    else:
        tracker.image_pull_since = None


def _active(pods: list[dict[str, Any]]) -> bool:
    return any((p.get("status") or {}).get("phase") in ("Pending", "Running", None) for p in pods)


async def _trainer_pods_active(tracker: Tracker) -> bool:
    """Whether a pod of any Job of this TrainingJob is still pending or running."""
    pods = await kube.call(
        lambda: kube.list_trainingjob_pods(tracker.namespace, tracker.name, LABEL_TRAININGJOB)
    )
    return _active(pods)


def _deleted_by_us(tracker: Tracker) -> bool:
    return (
        tracker.job_deleted_for_cancel
        or tracker.job_deleted_for_failure
        or tracker.cancelled_while_suspended
    )


async def _look_for_job(tracker: Tracker, job_status: dict[str, Any] | None) -> None:
    """Notice a Job that someone deleted under a running TrainingJob (the watch's index
    lacks it and a direct read, every JOB_CHECK_SECONDS at most, confirms it)."""
    tracker.job_gone = False
    if job_status is not None:
        tracker.job_expected = True
        return
    finished = tracker.progress is not None and tracker.progress.state.is_final
    now = time.monotonic()
    if (
        not tracker.job_expected
        or _deleted_by_us(tracker)
        or finished
        or tracker.job_gone_on_cancel
        or now - tracker.job_checked_at < JOB_CHECK_SECONDS
    ):
        return
    tracker.job_checked_at = now
    # Not there: the watch has not caught up yet.
    tracker.job_gone = not await kube.call(
        lambda: kube.job_exists(tracker.namespace, tracker.job_name)
    )


async def _replace_deleted_job(tracker: Tracker, cancel: bool, suspend: bool) -> None:
    """A Job someone deleted: make it again once its pods are gone (the trainer
    resumes), or, after a cancel, end the run."""
    if not tracker.job_gone:
        return
    where = tracker.progress.completed_trials if tracker.progress else 0
    total = tracker.progress.total_trials if tracker.progress else tracker.total_trials
    if cancel:
        tracker.job_gone_on_cancel = True
        tracker.logger.warning(
            "JobDeleted: Job %s is gone after the cancel; the run ends", tracker.job_name
        )
        return
    if tracker.job_manifest is None or await _trainer_pods_active(tracker):
        return  # its old pods are still stopping: make it again when they are gone
    manifest = tracker.job_manifest
    manifest["spec"]["suspend"] = suspend or tracker.queue is not None
    if not await kube.call(lambda: kube.create_job(manifest)):
        return
    message = (
        f"Job {tracker.job_name} was deleted while the run was at {where}/{total} trials; "
        "created it again, the trainer resumes from its last finished trial (cancel or "
        "delete the TrainingJob to stop the run)"
    )
    tracker.logger.warning("JobDeleted: %s", message)
    tracker.notices.append(("Warning", "JobDeleted", message))
    tracker.pod_selector, tracker.pods, tracker.failed_pods_seen = None, (), 0
    tracker.trainer_message, tracker.image_pull_since = None, None
    tracker.suspend_applied = suspend


async def _apply_suspend(
    tracker: Tracker, job_status: dict[str, Any] | None, suspend: bool
) -> None:
    """Give the Job the TrainingJob's ``spec.suspend`` when its status says otherwise
    (level-based: also after an operator restart; no call while they agree); the Job
    controller then stops or starts the trainer pod. A finished Job is left alone."""
    if job_status is None or _job_finished(job_status):
        return
    if job_says_suspended(job_status) == suspend:
        tracker.suspend_applied = suspend
        return
    if tracker.suspend_applied == suspend:
        return  # asked already; the Job controller has not caught up yet
    try:
        found = await kube.call(
            lambda: kube.set_job_suspend(tracker.namespace, tracker.job_name, suspend)
        )
    except kube.ApiException as err:
        if err.status not in (400, 422):
            raise
        tracker.logger.warning(
            "the API refused suspend=%s on Job %s: %s",
            suspend,
            tracker.job_name,
            kube.api_message(err),
        )
        found = True
    if not found:
        return
    if not suspend and tracker.last_status.get("phase") == Phase.SUSPENDED.value:
        message = "resumed: the Job starts a trainer pod, which " + (
            "resumes the same study" if tracker.progress is not None else "starts the run"
        )
        tracker.logger.info("%s", message)
        tracker.notices.append(("Normal", "Resumed", message))
    tracker.suspend_applied = suspend


async def _apply_queued_suspend(
    tracker: Tracker, job_status: dict[str, Any] | None, suspend: bool
) -> None:
    """``spec.suspend`` of a TrainingJob that Kueue admits: its Workload's ``spec.active``
    (Kueue stops the Job, or queues it again); with no Workload, a suspend is put on the
    Job itself and taken off on resume. A Job held by Kueue is never unsuspended here."""
    if job_status is None or _job_finished(job_status) or tracker.suspend_applied == suspend:
        return
    # Read now, not from the last look: a Workload seen before our own last patch is stale.
    workload = await kube.call(lambda: kube.job_workload(tracker.namespace, tracker.job_name))
    tracker.workload = workload
    if workload is not None:
        name = workload["metadata"]["name"]
        if workload_active(workload) == suspend:
            await kube.call(lambda: kube.set_workload_active(tracker.namespace, name, not suspend))
            what = "deactivated" if suspend else "activated"
            tracker.logger.info("%s Kueue Workload %s", what, name)
    elif suspend or tracker.held_job_itself:
        await kube.call(lambda: kube.set_job_suspend(tracker.namespace, tracker.job_name, suspend))
        tracker.held_job_itself = suspend
    if not suspend and tracker.last_status.get("phase") == Phase.SUSPENDED.value:
        message = "resumed: Kueue admits it again, and its trainer resumes the same study"
        tracker.logger.info("%s", message)
        tracker.notices.append(("Normal", "Resumed", message))
    tracker.suspend_applied = suspend


async def _look_at_queue(
    tracker: Tracker, job_status: dict[str, Any] | None, now: float
) -> QueueState | None:
    """Where Kueue stands with a queued TrainingJob (its Workload is read while the Job is
    held, every JOB_CHECK_SECONDS at most, and whenever a suspend is applied)."""
    if tracker.queue is None or job_status is None:
        return None
    runs = job_runs(job_status)
    if not runs and now - tracker.workload_checked_at >= JOB_CHECK_SECONDS:
        tracker.workload = await kube.call(
            lambda: kube.job_workload(tracker.namespace, tracker.job_name)
        )
        tracker.workload_checked_at = now
    tracker.ran_before = tracker.ran_before or runs or tracker.progress is not None
    return queue_state(
        tracker.queue,
        job_status,
        tracker.workload,
        ran_before=tracker.ran_before and not tracker.held_job_itself,
    )


def _pods_missing(tracker: Tracker, job_status: dict[str, Any] | None) -> int:
    """Trainer pods the Job should be running and has not (none while it is held,
    finished or being stopped)."""
    if job_status is None or _job_finished(job_status) or job_says_suspended(job_status):
        return 0
    if job_status.get("succeeded") or tracker.job_deleted_for_cancel:
        return 0
    return max(0, tracker.workers - int(job_status.get("active") or 0))


async def _look_at_create_failures(
    tracker: Tracker, job_status: dict[str, Any] | None, now: float
) -> int:
    """How many trainer pods are missing; while some are, the Job controller's last
    ``FailedCreate`` message (read at most every POD_CHECK_SECONDS) says why."""
    missing = _pods_missing(tracker, job_status)
    if not missing:
        tracker.create_failure = None
        return 0
    if now - tracker.create_checked_at >= POD_CHECK_SECONDS:
        tracker.create_checked_at = now
        tracker.create_failure = await kube.call(
            lambda: kube.latest_job_event(tracker.namespace, tracker.job_name, "FailedCreate")
        )
    return missing


def _may_still_write(pod: dict[str, Any]) -> bool:
    """Whether the trainer in ``pod`` may still write a trial: the pod runs, or one of
    its containers has started. A pod whose containers never started (its image missing
    or not pulled, say) has nothing to write, however long it stays."""
    status = pod.get("status") or {}
    if status.get("phase") == "Running":
        return True
    if status.get("phase") not in ("Pending", None):
        return False
    return any("running" in (c.get("state") or {}) for c in status.get("containerStatuses") or [])


async def wait_for_pods(namespace: str, name: str, timeout: float = SETTLE_SECONDS) -> None:
    """Wait (at most ``timeout``) until no pod of TrainingJob ``namespace/name`` may still
    write a trial."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = await kube.call(
            lambda: kube.list_trainingjob_pods(namespace, name, LABEL_TRAININGJOB)
        )
        if not any(_may_still_write(pod) for pod in pods):
            return
        await asyncio.sleep(1.0)


async def settle(tracker: Tracker, obs: Observation) -> Observation:
    """Before a final verdict that the trainer did not write itself: wait (at most
    :data:`SETTLE_SECONDS`) for its pods to go, then read its progress once more."""
    verdict = judge(obs)
    if not verdict.phase.is_final or (obs.progress is not None and obs.progress.state.is_final):
        return obs
    await wait_for_pods(tracker.namespace, tracker.name)
    tracker.progress_mtime = -1.0
    await asyncio.to_thread(tracker.read_progress)
    return replace(obs, progress=tracker.progress)


def _job_finished(job_status: dict[str, Any] | None) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job_status or {}).get("conditions") or []
    )


async def observe(
    tracker: Tracker,
    job_status: dict[str, Any] | None,
    *,
    suspend: bool = False,
    image_pull_timeout: float = DEFAULT_IMAGE_PULL_TIMEOUT_SECONDS,
) -> Observation:
    """Look at the run once: its progress file, whether its Job is gone, Kueue's
    Workload, and (when the Job's counts call for it) its pods and the Job controller's
    failures. Only reads; :func:`act` does what the observation calls for. No time limit
    of the operator runs while suspended (no pod pulls an image)."""
    await asyncio.to_thread(tracker.read_progress)
    await _look_for_job(tracker, job_status)
    now = time.monotonic()
    queue = await _look_at_queue(tracker, job_status, now)
    suspended = suspend and job_suspended(job_status)
    stopping = (job_status or {}).get("active") or (job_status or {}).get("terminating")
    suspending = suspend and not suspended and job_status is not None and bool(stopping)
    if suspend:
        tracker.image_pull_since = None
    looked = _pods_due(tracker, job_status, now)
    if looked:
        await _look_at_pods(tracker, job_status, now)
    missing = await _look_at_create_failures(tracker, job_status, now)

    def observation() -> Observation:
        since = tracker.image_pull_since
        return Observation(
            tracker.progress,
            job_status,
            tracker.job_deleted_for_cancel,
            tracker.trainer_message or None,
            pods=tracker.pods,
            image_pull_seconds=0.0 if since is None else now - since,
            image_pull_timeout=image_pull_timeout,
            job_gone_on_cancel=tracker.job_gone_on_cancel,
            suspended=suspended,
            suspending=suspending,
            cancelled_while_suspended=tracker.cancelled_while_suspended,
            queue=queue,
            pods_missing=missing,
            create_failure=tracker.create_failure,
        )

    obs = observation()
    if judge(obs).phase == Phase.FAILED and tracker.trainer_message is None and job_status:
        if not looked and not tracker.job_deleted_for_failure:
            await _look_at_pods(tracker, job_status, now)
        tracker.trainer_message = termination_message(tracker.pods) or ""
        obs = observation()
    return obs


async def act(
    tracker: Tracker,
    obs: Observation,
    job_status: dict[str, Any] | None,
    *,
    cancel: bool,
    grace: float,
    suspend: bool = False,
) -> Observation:
    """Do what ``obs`` calls for, and return it with what was done: make a deleted Job
    again, give the Job (or its Kueue Workload) ``spec.suspend``, write the cancel marker,
    and delete the Job when a cancel finds it held, when the trainer outlives the cancel's
    grace, or when a trainer pod shows that the run cannot succeed."""
    await _replace_deleted_job(tracker, cancel, suspend)
    if tracker.queue is None:
        await _apply_suspend(tracker, job_status, suspend)
    else:
        await _apply_queued_suspend(tracker, job_status, suspend)
    # No trainer runs: suspended, or held by Kueue (queued, or evicted and queued again).
    held = job_suspended(job_status) and (suspend or obs.queue is not None)
    if cancel and held and not tracker.cancelled_while_suspended:
        await asyncio.to_thread(request_cancel, tracker.run_dir)
        tracker.logger.info("cancelled while suspended; deleting its Job")
        await kube.call(lambda: kube.delete_job(tracker.namespace, tracker.job_name))
        tracker.cancelled_while_suspended = True
    if cancel and not suspend and not held:
        if tracker.cancel_since is None:
            tracker.cancel_since = time.monotonic()
            await asyncio.to_thread(request_cancel, tracker.run_dir)
        overdue = time.monotonic() - tracker.cancel_since > grace
        running = tracker.progress is None or not tracker.progress.state.is_final
        if overdue and running and not tracker.job_deleted_for_cancel:
            tracker.logger.warning("trainer ignored the cancel for %.0f s; deleting its Job", grace)
            await kube.call(lambda: kube.delete_job(tracker.namespace, tracker.job_name))
            tracker.job_deleted_for_cancel = True
    obs = replace(
        obs,
        job_deleted_for_cancel=tracker.job_deleted_for_cancel,
        job_gone_on_cancel=tracker.job_gone_on_cancel,
        cancelled_while_suspended=tracker.cancelled_while_suspended,
    )
    verdict = judge(obs)
    if (
        verdict.phase == Phase.FAILED
        and verdict.reason in POD_FAILURE_REASONS
        and not tracker.job_deleted_for_failure
        and job_status is not None
        and not _job_finished(job_status)
    ):
        tracker.logger.warning("%s; deleting its Job: %s", verdict.reason, verdict.message)
        await kube.call(lambda: kube.delete_job(tracker.namespace, tracker.job_name))
        tracker.job_deleted_for_failure = True
    return obs


def row_values(obs: Observation, verdict: Verdict) -> dict[str, Any]:
    """The table columns for an observation (the table's words for the status)."""
    values = progress_columns(obs.progress) if obs.progress else {}
    values["status"] = table_word_of(verdict.phase, trainer_started=obs.progress is not None)
    if verdict.phase.is_final:
        values["completed_at"] = values.get("completed_at") or utc_now()
        values["error"] = verdict.message if verdict.phase == Phase.FAILED else None
    if verdict.phase == Phase.SUCCEEDED:
        values["progress_pct"] = 100.0
    return values


async def publish(
    tracker: Tracker,
    obs: Observation,
    *,
    store: JobStore | None,
    generation: int | None,
    verdict: Verdict | None = None,
) -> Verdict | None:
    """Write the status and the row if anything changed (the only writer of the phase);
    returns the verdict when it deserves an Event (the phase changed, or a warning such
    as ImagePullBackOff appeared), else ``None``. ``verdict`` is one the create handler
    decided before any trainer ran (an invalid spec, a refused Job, a cancel before the
    start); otherwise it is judged from ``obs``."""
    verdict = verdict or judge(obs)
    if tracker.row_id is None and store is not None and verdict.phase != Phase.PENDING:
        # The create handler makes the row and then names it in the status; a run that
        # ends (or starts) before that reaches this daemon still updates its row.
        try:
            row = await asyncio.to_thread(store.get_by_uid, tracker.uid)
        except Exception:  # the table must never stop the CR from progressing
            tracker.logger.exception("could not look up its row")
            row = None
        tracker.row_id = row.id if row is not None else None
    status = build_status(
        obs,
        verdict,
        total_trials=tracker.total_trials,
        previous=tracker.last_status,
        generation=generation,
    )
    status["jobName"] = tracker.job_name
    status |= eta_status(
        obs.progress if verdict.phase == Phase.RUNNING else None,
        parallelism=(tracker.parallelism or DEFAULT_PARALLELISM) * tracker.workers,
    )
    if tracker.row_id is not None:  # a null would delete the key in a merge patch
        status["rowId"] = tracker.row_id
    if not status_changed(tracker.last_status, status):
        return None
    phase_changed = tracker.last_status.get("phase") != status["phase"]
    new_warning = verdict.warning and verdict.reason != tracker.last_reason
    if store is not None and tracker.row_id is not None:
        row_id = tracker.row_id
        try:
            await asyncio.to_thread(store.update_job, row_id, **row_values(obs, verdict))
        except Exception:  # the table must never stop the CR from progressing
            metrics.table_write_error("update_job")
            tracker.logger.exception("could not update training_jobs row %s", row_id)
    # The row first: whoever sees the CR's new phase finds the table already there.
    await kube.call(lambda: kube.patch_status(tracker.namespace, tracker.name, status))
    metrics.status_published(tracker.uid, obs.progress, status["phase"])
    tracker.last_status = status
    tracker.last_reason = verdict.reason
    return verdict if phase_changed or new_warning else None
