"""From observations to phases, conditions and a bounded CR status."""

from __future__ import annotations

from typing import Any

from tjoperator.status import (
    RECENT_TRIALS,
    Observation,
    Phase,
    Verdict,
    build_status,
    conditions_after,
    judge,
    status_changed,
)
from tjtrainer.progress import RunProgress, RunState, TrialRecord


def progress(state: RunState = RunState.RUNNING, done: int = 0, **extra: object) -> RunProgress:
    trials = [
        TrialRecord(
            trial=i + 1,
            model="LONG",
            number=i,
            state="complete",
            spearman=0.01 * i,
            best_so_far=0.01 * i,
            params={"eta": 0.1},
            duration_s=1.0,
            finished_at="t",
        )
        for i in range(done)
    ]
    return RunProgress(
        timeframe="15m",
        n_trials=10,
        total_trials=20,
        state=state,
        completed_trials=done,
        trials=trials,
        **extra,
    )  # type: ignore[arg-type]


def failed_job(reason: str, message: str = "") -> dict:
    return {
        "conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": message}],
        "failed": 3,
    }


def test_phases_follow_the_run() -> None:
    assert judge(Observation(None, None)).phase == Phase.PENDING
    assert judge(Observation(None, {"active": 1})).phase == Phase.RUNNING
    assert judge(Observation(progress(done=3), {"active": 1})).message == "trial 3/20"
    done = progress(RunState.COMPLETED, 20, model_version="15m_x")
    assert judge(Observation(done, {"succeeded": 1})).phase == Phase.SUCCEEDED
    assert judge(Observation(progress(RunState.CANCELLED, 4), None)).phase == Phase.CANCELLED


def test_failure_carries_the_trainers_own_message() -> None:
    obs = Observation(
        progress(RunState.FAILED, error="dataset not found at /x; run tjctl ..."),
        failed_job("PodFailurePolicy"),
    )
    verdict = judge(obs)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "TrainerFailed")
    assert verdict.message.startswith("dataset not found at /x")
    crashed = Observation(
        progress(done=2),
        failed_job("BackoffLimitExceeded", "too many"),
        trainer_message="MemoryError: out of memory",
    )
    verdict = judge(crashed)
    assert verdict.reason == "BackoffLimitExceeded"
    assert verdict.message == "MemoryError: out of memory"


def test_deadline_is_named() -> None:
    verdict = judge(Observation(progress(done=5), failed_job("DeadlineExceeded", "deadline")))
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "DeadlineExceeded")
    assert "activeDeadlineSeconds" in verdict.message


def test_job_deleted_after_the_cancel_grace_is_cancelled() -> None:
    verdict = judge(Observation(progress(done=5), None, job_deleted_for_cancel=True))
    assert (verdict.phase, verdict.reason) == (Phase.CANCELLED, "CancelGracePeriodExceeded")


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    running = judge(Observation(progress(done=1), {"active": 1}))
    first = conditions_after([], running, 1)
    by_type = {c["type"]: c for c in first}
    assert by_type["Running"]["status"] == "True"
    assert set(by_type) == {"Running"}, "a condition restates a phase the run is not in"
    old_time = "2000-01-01T00:00:00Z"
    for condition in first:
        condition["lastTransitionTime"] = old_time
    again = {c["type"]: c for c in conditions_after(first, running, 2)}
    assert again["Running"]["lastTransitionTime"] == old_time
    assert again["Running"]["observedGeneration"] == 2
    done = judge(Observation(progress(RunState.COMPLETED, 20, model_version="v"), None))
    after = {c["type"]: c for c in conditions_after(first, done, 2)}
    assert after["Running"]["status"] == "False"
    assert after["Running"]["lastTransitionTime"] != old_time
    assert after["Succeeded"]["status"] == "True"


def test_each_condition_says_something_the_phase_does_not() -> None:
    def step(previous: list[dict[str, Any]], verdict: Verdict) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in conditions_after(previous, verdict, 1)}

    waiting = step([], judge(Observation(None, {"active": 0})))
    assert list(waiting) == ["Running"]
    assert (waiting["Running"]["status"], waiting["Running"]["reason"]) == (
        "False",
        "WaitingForPod",
    )
    suspended = step(
        list(waiting.values()), judge(Observation(progress(done=2), {}, suspended=True))
    )
    assert suspended["Suspended"]["status"] == "True"
    assert suspended["Running"]["reason"] == "Suspended"
    resumed = step(list(suspended.values()), judge(Observation(progress(done=3), {"active": 1})))
    assert (resumed["Suspended"]["status"], resumed["Suspended"]["reason"]) == ("False", "Training")
    assert resumed["Running"]["status"] == "True"
    failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
    ended = step(list(resumed.values()), judge(Observation(progress(done=3), failed)))
    assert set(ended) == {"Running", "Suspended", "Failed"}
    assert (ended["Failed"]["status"], ended["Failed"]["reason"]) == ("True", "DeadlineExceeded")
    assert ended["Running"]["status"] == "False"


def test_status_is_a_bounded_summary() -> None:
    obs = Observation(progress(done=20, best_score_long=0.2), {"active": 1})
    status = build_status(obs, judge(obs), total_trials=20, previous={}, generation=1)
    assert status["trial"] == "20/20" and status["progress"] == 100
    assert len(status["recentTrials"]) == RECENT_TRIALS
    assert status["recentTrials"][-1]["trial"] == 20
    assert status["bestScoreLong"] == 0.2
    assert not status_changed(
        status, build_status(obs, judge(obs), total_trials=20, previous=status, generation=1)
    )
    more = Observation(progress(done=20, best_score_long=0.3), {"active": 1})
    assert status_changed(
        status, build_status(more, judge(more), total_trials=20, previous=status, generation=1)
    )
