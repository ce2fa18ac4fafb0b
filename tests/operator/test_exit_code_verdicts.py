"""What a trainer pod's exit code means for the TrainingJob (tjtrainer.exitcodes): a
permanent exit fails the run at once, a transient one is retried by the Job (the run
stays Running, with a Warning), and only the Job's own failure ends a retried run.

Pods in the shape the API returns them (``status.containerStatuses[].state.terminated``).
"""

from __future__ import annotations

from typing import Any

from tjoperator.status import Observation, Phase, judge, trainer_exit_code
from tjtrainer.exitcodes import EXIT_PERMANENT, EXIT_TRANSIENT
from tjtrainer.progress import RunProgress, RunState

ERROR = "unexpected OSError: [Errno 28] No space left on device"


def failed_progress(error: str = ERROR) -> RunProgress:
    return RunProgress(
        timeframe="15m", n_trials=5, total_trials=10, state=RunState.FAILED, error=error
    )


def ended_pod(code: int, finished: str = "2026-01-01T00:00:10Z") -> dict[str, Any]:
    return {
        "metadata": {"name": f"tj-train-{code}-{finished[-3:-1]}"},
        "spec": {"containers": [{"name": "trainer", "image": "trainer:1"}]},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "reason": "Error",
                            "message": "x",
                            "finishedAt": finished,
                        }
                    },
                }
            ],
        },
    }


def test_a_transient_exit_is_retried_not_final() -> None:
    obs = Observation(failed_progress(), {"failed": 1}, pods=(ended_pod(EXIT_TRANSIENT),))
    verdict = judge(obs)
    assert (verdict.phase, verdict.reason) == (Phase.RUNNING, "Retrying")
    assert ERROR in verdict.message and "resumes the study" in verdict.message
    assert verdict.warning  # one Warning Event says a retry happens


def test_pythons_own_exit_1_and_a_kill_are_retried_too() -> None:
    for code in (1, 137, 143):
        obs = Observation(failed_progress(), {"failed": 1}, pods=(ended_pod(code),))
        assert judge(obs).reason == "Retrying"


def test_a_permanent_exit_fails_at_once() -> None:
    obs = Observation(
        failed_progress("no dataset for timeframe 15m"),
        {"failed": 1},
        pods=(ended_pod(EXIT_PERMANENT),),
    )
    verdict = judge(obs)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "TrainerFailed")
    assert verdict.message == "no dataset for timeframe 15m"


def test_the_last_pod_to_end_decides() -> None:
    pods = (ended_pod(EXIT_TRANSIENT, "2026-01-01T00:00:10Z"),
            ended_pod(EXIT_PERMANENT, "2026-01-01T00:01:10Z"))  # fmt: skip
    assert trainer_exit_code(pods) == EXIT_PERMANENT
    assert trainer_exit_code(tuple(reversed(pods))) == EXIT_PERMANENT
    assert trainer_exit_code(()) is None


def test_before_the_exit_code_is_known_the_run_is_not_final() -> None:
    verdict = judge(Observation(failed_progress(), {"active": 1}))
    assert (verdict.phase, verdict.reason) == (Phase.RUNNING, "TrainerExited")


def test_the_jobs_failure_ends_a_retried_run_with_the_trainers_message() -> None:
    job = {
        "failed": 3,
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
    }
    verdict = judge(Observation(failed_progress(), job, pods=(ended_pod(EXIT_TRANSIENT),)))
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "BackoffLimitExceeded")
    assert verdict.message == ERROR


def test_without_a_job_a_failed_run_is_failed() -> None:
    verdict = judge(Observation(failed_progress(), None))
    assert verdict.phase == Phase.FAILED
