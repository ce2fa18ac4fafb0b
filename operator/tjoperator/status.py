"""Pure status math: from what the operator observes (the run's progress file, the
Job's status, the trainer pods' container states, a pending cancel) to the TrainingJob's
``status`` and its table row. The phase is said once in the status (``phase``, for the
printer column) and once as the table's word (:func:`tjcontract.words.table_word_of`, in
the row only);
the conditions say what the phase does not (:func:`conditions_after`).

Kept free of API calls so every transition is unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tjcontract.words import Phase, RunState
from tjcore.messages import bounded_message
from tjoperator.kueue import QueueState, queue_conditions
from tjtrainer.exitcodes import is_permanent
from tjtrainer.progress import RunProgress, utc_now

RECENT_TRIALS = 5
DEFAULT_IMAGE_PULL_TIMEOUT_SECONDS = 300.0
# Kubelet reasons of a container waiting for an image that will never come: fail at once.
IMAGE_NEVER_REASONS = {"ErrImageNeverPull": "ImageNotFound", "InvalidImageName": "InvalidImageName"}
# Kubelet reasons of a pull that fails but is retried (with back-off): it may recover.
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")
# Verdict reasons that end the run because of what a trainer pod showed; the operator
# deletes the Job for them (retrying cannot help, and a pod must not sit Pending forever).
POD_FAILURE_REASONS = frozenset(
    {"OOMKilled", "ImageNotFound", "InvalidImageName", "ImagePullBackOff"}
)
# Non-final verdicts that deserve a Warning Event (once, when they appear).
WARNING_REASONS = frozenset({"ImagePullBackOff", "Retrying", "PodsNotCreated"})


# The condition present in every status: True while the trainer runs; False, with the
# verdict's reason and message, says why it does not (WaitingForPod, Suspended, ...).
RUNNING_CONDITION = "Running"


@dataclass(frozen=True)
class Observation:
    """What the operator saw of one TrainingJob at one moment."""

    progress: RunProgress | None
    job: dict[str, Any] | None  # the Job's .status, None when no Job exists
    job_deleted_for_cancel: bool = False
    trainer_message: str | None = None  # the failed pod's termination message
    # The Job's pods as the API returns them (metadata, spec, status with
    # containerStatuses), from the last look; looked at only when the Job's counts say
    # that something may be wrong, so often empty.
    pods: tuple[dict[str, Any], ...] = ()
    # How long the trainer pod has been failing to pull its image, and how long it may.
    image_pull_seconds: float = 0.0
    image_pull_timeout: float = DEFAULT_IMAGE_PULL_TIMEOUT_SECONDS
    # The Job was deleted by someone else after a cancel was asked (so it is not made
    # again): no trainer runs any more.
    job_gone_on_cancel: bool = False
    # spec.suspend is true and the Job's controller has stopped every trainer pod.
    suspended: bool = False
    # spec.suspend is true but a trainer pod is still stopping.
    suspending: bool = False
    # A cancel came while suspended: the operator deleted the Job, nothing runs.
    cancelled_while_suspended: bool = False
    # Where Kueue stands with it, if the TrainingJob names a queue (tjoperator.kueue).
    queue: QueueState | None = None
    # Trainer pods the Job should run but its controller could not create, with the
    # controller's last FailedCreate message (a ResourceQuota, a LimitRange...).
    pods_missing: int = 0
    create_failure: str | None = None


def job_says_suspended(job: dict[str, Any] | None) -> bool:
    """Whether the Job controller has taken a Job's ``spec.suspend: true`` in (its
    ``Suspended`` condition is True; it turns False when the Job is resumed)."""
    return _job_condition(job, "Suspended") is not None


def job_suspended(job: dict[str, Any] | None) -> bool:
    """Whether a Job's status says it is suspended with no pod left running or
    stopping (its ``Suspended`` condition, ``active`` and ``terminating`` both 0)."""
    if job is None or not job_says_suspended(job):
        return False
    return not (job.get("active") or 0) and not (job.get("terminating") or 0)


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: str
    message: str

    def __post_init__(self) -> None:
        # The message goes to the CR status, its conditions, the Event and the row.
        object.__setattr__(self, "message", bounded_message(self.message) or "")

    @property
    def warning(self) -> bool:
        """Whether its Event is a Warning (a failure, or trouble on the way)."""
        return self.phase == Phase.FAILED or self.reason in WARNING_REASONS


@dataclass(frozen=True)
class PodTrouble:
    """A trainer container that cannot start, or was killed for its memory."""

    reason: str  # OOMKilled, or the kubelet's waiting reason (ErrImageNeverPull, ...)
    pod: str
    container: str
    image: str
    kubelet_message: str
    exit_code: int | None = None
    memory_limit: str | None = None
    node: str | None = None

    @property
    def fatal(self) -> bool:
        """Retrying cannot help: the same limit kills again, a missing image stays missing."""
        return self.reason == "OOMKilled" or self.reason in IMAGE_NEVER_REASONS

    @property
    def pulling(self) -> bool:
        return self.reason in IMAGE_PULL_REASONS


def _spec_container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if container.get("name") == name:
            return dict(container)
    return {}


def _container_troubles(pod: dict[str, Any]) -> list[PodTrouble]:
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "?")
    node = (pod.get("spec") or {}).get("nodeName")
    found = []
    for container in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        spec = _spec_container(pod, container.get("name", ""))
        image = spec.get("image") or container.get("image") or "?"
        limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
        state, last = container.get("state") or {}, container.get("lastState") or {}
        for terminated in (state.get("terminated"), last.get("terminated")):
            if terminated and terminated.get("reason") == "OOMKilled":
                found.append(
                    PodTrouble(
                        "OOMKilled",
                        name,
                        container.get("name", "?"),
                        image,
                        terminated.get("message") or "",
                        exit_code=terminated.get("exitCode"),
                        memory_limit=str(limit) if limit is not None else None,
                        node=node,
                    )
                )
                break
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason") or ""
        if reason in IMAGE_NEVER_REASONS or reason in IMAGE_PULL_REASONS:
            found.append(
                PodTrouble(
                    reason,
                    name,
                    container.get("name", "?"),
                    image,
                    (waiting.get("message") or "").strip(),
                    node=node,
                )
            )
    return found


def pod_trouble(pods: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> PodTrouble | None:
    """The worst trouble the trainer pods show: an OOM kill, then an image that cannot
    be found, then a pull that is being retried; ``None`` if there is none. A pod that
    ended for another reason (an error exit, a deletion) is not trouble of this kind."""
    troubles = [t for pod in pods for t in _container_troubles(pod)]
    for wanted in (
        lambda t: t.reason == "OOMKilled",
        lambda t: t.fatal,
        lambda t: t.pulling,
    ):
        for trouble in troubles:
            if wanted(trouble):
                return trouble
    return None


def termination_message(pods: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> str | None:
    """The last line of the termination message of the most recent failed container."""
    messages: list[tuple[str, str]] = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("exitCode") not in (None, 0) and terminated.get("message"):
                messages.append(
                    (str(terminated.get("finishedAt") or ""), terminated["message"].strip())
                )
    if not messages:
        return None
    messages.sort(key=lambda item: item[0])
    lines = [line for line in messages[-1][1].splitlines() if line.strip()]
    return lines[-1] if lines else messages[-1][1]


def trainer_exit_code(pods: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> int | None:
    """The exit code of the container that ended last among the pods, ``None`` if none
    has ended (or the pods were not looked at since)."""
    ended: list[tuple[str, int]] = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if isinstance(terminated.get("exitCode"), int):
                ended.append((str(terminated.get("finishedAt") or ""), terminated["exitCode"]))
    return max(ended)[1] if ended else None


def _retrying(obs: Observation, progress: RunProgress) -> Verdict:
    """The trainer failed but its Job has not: a transient exit is being retried (the
    retry resumes the study), or the pod's exit code is not known yet."""
    code = trainer_exit_code(obs.pods)
    error = progress.error or "the trainer failed"
    pods = (obs.job or {}).get("failed") or 0
    if code is None:
        return Verdict(
            Phase.RUNNING,
            "TrainerExited",
            f"{error}; waiting for the Job: it retries a transient failure (the retry "
            "resumes the study) and fails at once on a permanent one",
        )
    return Verdict(
        Phase.RUNNING,
        "Retrying",
        f"{error} (exit code {code}, transient); the Job retries it within its backoffLimit "
        f"and the retry resumes the study ({pods} failed pod(s) so far)",
    )


IMAGE_FIX = "set spec.image / the chart's trainer.image"


def _trouble_verdict(trouble: PodTrouble, obs: Observation) -> Verdict:
    """What a trainer pod's trouble means for the TrainingJob."""
    kubelet = trouble.reason + (f": {trouble.kubelet_message}" if trouble.kubelet_message else "")
    where = f"node {trouble.node}" if trouble.node else "the node"
    if trouble.reason == "OOMKilled":
        code = trouble.exit_code if trouble.exit_code is not None else 137
        killed = (
            f"the trainer ran out of memory: container {trouble.container} of pod "
            f"{trouble.pod} was OOMKilled (exit code {code})"
        )
        if trouble.memory_limit:
            message = (
                f"{killed} at its memory limit of {trouble.memory_limit}; raise "
                "spec.resources.limits.memory (a retry with the same limit would be "
                "killed again; finished trials are kept on the volume)"
            )
        else:
            message = (
                f"{killed} with no memory limit set, so {where} ran out of memory; set "
                "spec.resources.requests.memory and limits.memory to what the trainer "
                "needs (finished trials are kept on the volume)"
            )
        return Verdict(Phase.FAILED, "OOMKilled", message)
    if trouble.reason == "ErrImageNeverPull":
        return Verdict(
            Phase.FAILED,
            IMAGE_NEVER_REASONS[trouble.reason],
            f"trainer image {trouble.image} is not on {where} ({kubelet}): load it into "
            f"the node's container runtime or {IMAGE_FIX}",
        )
    if trouble.reason == "InvalidImageName":
        return Verdict(
            Phase.FAILED,
            IMAGE_NEVER_REASONS[trouble.reason],
            f"trainer image {trouble.image!r} is not a valid image name ({kubelet}): "
            f"{IMAGE_FIX} to a valid image reference",
        )
    advice = (
        "check the image name and tag, that the registry is reachable and the pod may "
        f"pull from it (imagePullSecrets), or load the image onto the node, or {IMAGE_FIX}"
    )
    timeout = obs.image_pull_timeout
    if obs.image_pull_seconds >= timeout:
        return Verdict(
            Phase.FAILED,
            "ImagePullBackOff",
            f"trainer image {trouble.image} could not be pulled onto {where} for "
            f"{timeout:.0f} s ({kubelet}): {advice}",
        )
    state = obs.progress.state if obs.progress else None
    return Verdict(
        Phase.RUNNING if state == RunState.RUNNING else Phase.PENDING,
        "ImagePullBackOff",
        f"cannot pull trainer image {trouble.image} onto {where} ({kubelet}); the kubelet "
        f"retries, the job fails if it has not worked after {timeout:.0f} s: {advice}",
    )


def _job_condition(job: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for condition in (job or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _suspended(progress: RunProgress | None) -> Verdict:
    if progress is None:
        where = "before it started"
    else:
        where = f"at trial {progress.completed_trials}/{progress.total_trials}"
    return Verdict(
        Phase.SUSPENDED,
        "Suspended",
        f"suspended {where}: no trainer pod runs and finished trials are kept; set "
        "spec.suspend to false to resume the same study",
    )


def _queued(queue: QueueState, progress: RunProgress | None) -> Verdict:
    if queue.evicted:
        where = f" at trial {progress.completed_trials}/{progress.total_trials}" if progress else ""
        return Verdict(
            Phase.PENDING,
            "Evicted",
            f"evicted by Kueue{where}: {queue.evicted}; finished trials are kept and the same "
            "study resumes when Kueue admits it again",
        )
    return Verdict(Phase.PENDING, "Queued", queue.waiting)


def _pods_not_created(obs: Observation, progress: RunProgress | None) -> Verdict:
    """The Job controller cannot create some trainer pods (a quota, most often): the run
    goes on with the pods it has, or waits if it has none, and says why and what to do."""
    missing = obs.pods_missing
    said = (
        f"the Job controller cannot create {missing} trainer pod(s): {obs.create_failure}; "
        "raise the namespace's ResourceQuota, or lower spec.workers or "
        "spec.resources.requests (the controller keeps trying)"
    )
    if progress is not None and progress.state == RunState.RUNNING:
        where = f"trial {progress.completed_trials}/{progress.total_trials}"
        return Verdict(Phase.RUNNING, "PodsNotCreated", f"{where}; {said}")
    return Verdict(Phase.PENDING, "PodsNotCreated", said)


def judge(obs: Observation) -> Verdict:
    """The phase, reason and message that ``obs`` implies."""
    progress = obs.progress
    state = progress.state if progress else None
    if state == RunState.COMPLETED and progress is not None:
        return Verdict(
            Phase.SUCCEEDED,
            "TrainingCompleted",
            f"models {progress.model_version} written"
            + (f"; {progress.promotion_reason}" if progress.promoted is False else ""),
        )
    if state == RunState.CANCELLED:
        return Verdict(
            Phase.CANCELLED,
            "CancelRequested",
            "stopped after the current trial on request; no model was replaced",
        )
    trouble = pod_trouble(obs.pods)
    # The trainer's own error (it exited and said why) wins over what the pods show.
    if trouble is not None and trouble.fatal and state != RunState.FAILED:
        return _trouble_verdict(trouble, obs)
    failed = _job_condition(obs.job, "Failed")
    permanent = state == RunState.FAILED and is_permanent(trainer_exit_code(obs.pods))
    if obs.cancelled_while_suspended:
        return Verdict(
            Phase.CANCELLED,
            "CancelRequested",
            "cancelled while suspended or queued by Kueue: its Job was deleted, so it "
            "never resumes; finished "
            "trials are kept and no model was replaced",
        )
    if obs.suspended and not failed and not permanent:
        return _suspended(progress)
    if (
        state == RunState.FAILED
        and progress is not None
        and obs.job is not None
        and not failed
        and not is_permanent(trainer_exit_code(obs.pods))
    ):
        return _retrying(obs, progress)
    if state == RunState.FAILED or failed:
        error = (progress.error if progress and progress.error else None) or obs.trainer_message
        reason = (failed or {}).get("reason") or "TrainerFailed"
        if reason == "PodFailurePolicy":
            reason = "TrainerFailed"
        if reason == "DeadlineExceeded":
            error = f"activeDeadlineSeconds exceeded; {error or (failed or {}).get('message')}"
        return Verdict(Phase.FAILED, reason, error or (failed or {}).get("message") or reason)
    if obs.job_gone_on_cancel:
        return Verdict(
            Phase.CANCELLED,
            "JobDeleted",
            "cancelled: its Job was deleted after the cancel was asked, so no trainer runs; "
            "finished trials are kept and no model was replaced",
        )
    if obs.job_deleted_for_cancel:
        return Verdict(
            Phase.CANCELLED,
            "CancelGracePeriodExceeded",
            "the trainer did not stop in time after the cancel; its Job was deleted",
        )
    if _job_condition(obs.job, "Complete"):
        return Verdict(
            Phase.FAILED, "NoResult", "the trainer exited 0 without writing a final progress state"
        )
    if obs.suspending:
        return Verdict(
            Phase.RUNNING,
            "Suspending",
            "suspend asked: the Job controller is stopping the trainer pod",
        )
    if obs.queue is not None and not obs.queue.admitted and obs.job is not None:
        return _queued(obs.queue, progress)
    if trouble is not None and trouble.pulling:
        return _trouble_verdict(trouble, obs)
    if obs.create_failure and obs.pods_missing:
        return _pods_not_created(obs, progress)
    if state == RunState.RUNNING:
        done = progress.completed_trials if progress else 0
        total = progress.total_trials if progress else 0
        return Verdict(Phase.RUNNING, "Training", f"trial {done}/{total}")
    if obs.job and (obs.job.get("active") or 0) > 0:
        return Verdict(Phase.RUNNING, "PodStarted", "the trainer pod is starting")
    return Verdict(Phase.PENDING, "WaitingForPod", "waiting for the trainer pod")


def conditions_after(
    previous: list[dict[str, Any]],
    verdict: Verdict,
    generation: int | None,
    queue: QueueState | None = None,
) -> list[dict[str, Any]]:
    """The condition list for ``verdict``; each one says something (the API conventions),
    none restates a phase the run is not in. ``Running`` always (see
    :data:`RUNNING_CONDITION`); ``Suspended`` once the run has been suspended (False with
    the current reason after it resumes); the final phase's own condition (``Succeeded``,
    ``Failed`` or ``Cancelled``, True) once it ends; ``Queued``, ``Admitted`` and
    ``Evicted`` for a TrainingJob that names a Kueue queue. Every condition carries the
    verdict's reason and message, its Kueue ones their own; ``lastTransitionTime``
    changes only when a condition's status changes."""
    old = {c.get("type"): c for c in previous or []}
    now = utc_now().split(".")[0] + "Z"

    def condition(kind: str, true: bool) -> dict[str, Any]:
        return {
            "type": kind,
            "status": "True" if true else "False",
            "reason": verdict.reason,
            "message": verdict.message,
        }

    wanted = [condition(RUNNING_CONDITION, verdict.phase == Phase.RUNNING)]
    if verdict.phase == Phase.SUSPENDED or Phase.SUSPENDED.value in old:
        wanted.append(condition(Phase.SUSPENDED.value, verdict.phase == Phase.SUSPENDED))
    if verdict.phase.is_final:
        wanted.append(condition(verdict.phase.value, True))
    if queue is not None:
        wanted += queue_conditions(queue)
    result = []
    for found in wanted:
        before = old.get(found["type"])
        changed = before is None or before.get("status") != found["status"]
        result.append(
            found
            | {
                "lastTransitionTime": (
                    now if changed or before is None else before.get("lastTransitionTime", now)
                ),
                "observedGeneration": generation or 0,
            }
        )
    return result


def _rounded(score: float | None) -> float | None:
    """Scores to 4 decimals in the CR, so ``kubectl get`` columns stay readable (the
    table keeps full precision)."""
    return None if score is None else round(score, 4)


def _recent_trials(progress: RunProgress) -> list[dict[str, Any]]:
    return [
        {
            "trial": t.trial,
            "model": t.model,
            "state": t.state,
            "spearman": _rounded(t.spearman),
            "bestSoFar": _rounded(t.best_so_far),
            "durationSeconds": round(t.duration_s, 3),
        }
        for t in progress.trials[-RECENT_TRIALS:]
    ]


def _verdict_status(progress: RunProgress) -> dict[str, Any]:
    """Each model's verdict on its test tail (tjtrainer.evaluation), once there is one."""
    evaluation = progress.evaluation or {}
    if not evaluation:
        return {}
    out: dict[str, Any] = {"significanceLevel": evaluation.get("level")}
    for model, suffix in (("LONG", "Long"), ("SHORT", "Short")):
        found = evaluation.get(model) or {}
        ci = found.get("ci") or []
        out |= {
            f"verdict{suffix}": found.get("verdict"),
            f"testPValue{suffix}": _rounded(found.get("p_value")),
            f"testCi{suffix}": [_rounded(v) for v in ci] if len(ci) == 2 else None,
        }
    return out


def build_status(
    obs: Observation,
    verdict: Verdict,
    *,
    total_trials: int,
    previous: dict[str, Any],
    generation: int | None,
) -> dict[str, Any]:
    """The CR ``status``: a bounded summary (the full trial log lives in the table)."""
    progress = obs.progress
    done = progress.completed_trials if progress else 0
    total = progress.total_trials if progress else total_trials
    pct = progress.progress_pct if progress else 0.0
    if verdict.phase == Phase.SUCCEEDED:
        pct = 100.0
    status: dict[str, Any] = {
        "phase": verdict.phase.value,
        "progress": int(pct),
        "trial": f"{done}/{total}",
        "currentTrial": done,
        "totalTrials": total,
        "message": verdict.message,
        "observedGeneration": generation or 0,
        "conditions": conditions_after(
            previous.get("conditions") or [], verdict, generation, obs.queue
        ),
    }
    if progress:
        status |= {
            "currentModel": progress.current_model,
            "bestScoreLong": _rounded(progress.best_score_long),
            "bestScoreShort": _rounded(progress.best_score_short),
            "testScoreLong": _rounded(progress.test_score_long),
            "testScoreShort": _rounded(progress.test_score_short),
            **_verdict_status(progress),
            **(
                {"promoted": progress.promoted, "promotionReason": progress.promotion_reason}
                if progress.promoted is not None
                else {}
            ),
            "modelVersion": progress.model_version,
            "startedAt": progress.started_at,
            "recentTrials": _recent_trials(progress),
        }
    if verdict.phase.is_final:
        status["completedAt"] = previous.get("completedAt") or utc_now()
    return status


def status_changed(previous: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``new`` says something ``previous`` does not (conditions' timestamps and
    kopf's own keys aside)."""

    def strip(status: dict[str, Any]) -> dict[str, Any]:
        data = {k: v for k, v in status.items() if k not in ("kopf", "conditions")}
        data["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or []
        ]
        return data

    return strip({k: previous.get(k) for k in new}) != strip(new)
