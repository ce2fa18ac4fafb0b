"""Pure status math: from what the operator observes (the run's progress file, the
Job's status, a pending cancel) to the TrainingJob's ``status`` and its table row.

Kept free of API calls so every transition is unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tjtrainer.progress import RunProgress, RunState, utc_now

RECENT_TRIALS = 5


class Phase(StrEnum):
    """The TrainingJob's phase (CamelCase, Kubernetes style)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def is_final(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)

    @property
    def seed_word(self) -> str:
        """The seed's status word, as the ``training_jobs`` table stores it."""
        return {
            Phase.PENDING: RunState.PENDING,
            Phase.RUNNING: RunState.RUNNING,
            Phase.SUCCEEDED: RunState.COMPLETED,
            Phase.FAILED: RunState.FAILED,
            Phase.CANCELLED: RunState.CANCELLED,
        }[self].value


CONDITION_OF_PHASE = {
    Phase.RUNNING: "Running",
    Phase.SUCCEEDED: "Succeeded",
    Phase.FAILED: "Failed",
    Phase.CANCELLED: "Cancelled",
}


@dataclass(frozen=True)
class Observation:
    """What the operator saw of one TrainingJob at one moment."""

    progress: RunProgress | None
    job: dict[str, Any] | None  # the Job's .status, None when no Job exists
    job_deleted_for_cancel: bool = False
    trainer_message: str | None = None  # the failed pod's termination message


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    reason: str
    message: str


def _job_condition(job: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for condition in (job or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def judge(obs: Observation) -> Verdict:
    """The phase, reason and message that ``obs`` implies."""
    progress = obs.progress
    state = progress.state if progress else None
    if state == RunState.COMPLETED and progress is not None:
        return Verdict(
            Phase.SUCCEEDED, "TrainingCompleted", f"models {progress.model_version} written"
        )
    if state == RunState.CANCELLED:
        return Verdict(
            Phase.CANCELLED,
            "CancelRequested",
            "stopped after the current trial on request; no model was replaced",
        )
    failed = _job_condition(obs.job, "Failed")
    if state == RunState.FAILED or failed:
        error = (progress.error if progress and progress.error else None) or obs.trainer_message
        reason = (failed or {}).get("reason") or "TrainerFailed"
        if reason == "PodFailurePolicy":
            reason = "TrainerFailed"
        if reason == "DeadlineExceeded":
            error = f"activeDeadlineSeconds exceeded; {error or (failed or {}).get('message')}"
        return Verdict(Phase.FAILED, reason, error or (failed or {}).get("message") or reason)
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
    if state == RunState.RUNNING:
        done = progress.completed_trials if progress else 0
        total = progress.total_trials if progress else 0
        return Verdict(Phase.RUNNING, "Training", f"trial {done}/{total}")
    if obs.job and (obs.job.get("active") or 0) > 0:
        return Verdict(Phase.RUNNING, "PodStarted", "the trainer pod is starting")
    return Verdict(Phase.PENDING, "WaitingForPod", "waiting for the trainer pod")


def conditions_after(
    previous: list[dict[str, Any]], verdict: Verdict, generation: int | None
) -> list[dict[str, Any]]:
    """The condition list for ``verdict``: the phase's condition True, the others False;
    ``lastTransitionTime`` changes only when a condition's status changes."""
    old = {c.get("type"): c for c in previous or []}
    now = utc_now().split(".")[0] + "Z"
    result = []
    for phase, kind in CONDITION_OF_PHASE.items():
        status = "True" if verdict.phase == phase else "False"
        before = old.get(kind)
        changed = before is None or before.get("status") != status
        result.append(
            {
                "type": kind,
                "status": status,
                "reason": verdict.reason if status == "True" else "NotInPhase",
                "message": verdict.message if status == "True" else f"phase is {verdict.phase}",
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
        "status": verdict.phase.seed_word,
        "progress": int(pct),
        "trial": f"{done}/{total}",
        "currentTrial": done,
        "totalTrials": total,
        "message": verdict.message,
        "observedGeneration": generation or 0,
        "conditions": conditions_after(previous.get("conditions") or [], verdict, generation),
    }
    if progress:
        status |= {
            "currentModel": progress.current_model,
            "bestScoreLong": _rounded(progress.best_score_long),
            "bestScoreShort": _rounded(progress.best_score_short),
            "testScoreLong": _rounded(progress.test_score_long),
            "testScoreShort": _rounded(progress.test_score_short),
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
