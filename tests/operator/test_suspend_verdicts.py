"""Suspend and resume (issue 13 item 1) in the pure status math: what a suspended Job
means for the phase, the condition and the table's word."""

from __future__ import annotations

from pathlib import Path

from tests.core.test_local_runs import manifest, tjctl
from tests.operator.test_status_transitions import progress
from tjcore.spec import validate_spec
from tjoperator.config import OperatorConfig
from tjoperator.job_builder import build_job
from tjoperator.status import Observation, Phase, build_status, job_suspended, judge
from tjoperator.tracking import row_values
from tjtrainer.progress import RunState

SUSPENDED_JOB = {
    "conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}],
    "active": 0,
}


def test_a_job_is_suspended_only_once_its_pods_have_stopped() -> None:
    assert job_suspended(SUSPENDED_JOB)
    assert not job_suspended({**SUSPENDED_JOB, "terminating": 1})
    assert not job_suspended({**SUSPENDED_JOB, "active": 1})
    assert not job_suspended({"active": 0})
    assert not job_suspended(None)


def test_a_suspended_run_is_suspended_with_its_condition_and_keeps_its_trials() -> None:
    obs = Observation(progress(done=3), SUSPENDED_JOB, suspended=True)
    verdict = judge(obs)
    assert verdict.phase == Phase.SUSPENDED and verdict.reason == "Suspended"
    assert "3/20" in verdict.message and "spec.suspend to false" in verdict.message
    status = build_status(obs, verdict, total_trials=20, previous={}, generation=2)
    assert row_values(obs, verdict)["status"] == "running"  # the table keeps the seed's words
    assert "status" not in status, "the CR says the phase once, in phase"
    assert status["currentTrial"] == 3
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Suspended"]["status"] == "True"
    assert conditions["Running"]["status"] == "False"
    assert "completedAt" not in status
    assert not verdict.phase.is_final and not verdict.warning


def test_a_run_created_suspended_is_pending_in_the_table() -> None:
    obs = Observation(None, SUSPENDED_JOB, suspended=True)
    verdict = judge(obs)
    assert verdict.phase == Phase.SUSPENDED and "before it started" in verdict.message
    status = build_status(obs, verdict, total_trials=20, previous={}, generation=1)
    assert status["phase"] == "Suspended" and row_values(obs, verdict)["status"] == "pending"


def test_while_the_pod_stops_the_run_is_suspending() -> None:
    obs = Observation(progress(done=3), {"active": 0, "terminating": 1}, suspending=True)
    verdict = judge(obs)
    assert (verdict.phase, verdict.reason) == (Phase.RUNNING, "Suspending")


def test_a_run_that_finished_before_the_suspend_took_effect_stays_finished() -> None:
    done = progress(RunState.COMPLETED, 20, model_version="15m_x")
    assert judge(Observation(done, SUSPENDED_JOB, suspended=True)).phase == Phase.SUCCEEDED
    stopped = progress(RunState.CANCELLED, 4)
    assert judge(Observation(stopped, SUSPENDED_JOB, suspended=True)).phase == Phase.CANCELLED


def test_a_cancel_while_suspended_ends_cancelled() -> None:
    obs = Observation(progress(done=3), None, cancelled_while_suspended=True)
    verdict = judge(obs)
    assert (verdict.phase, verdict.reason) == (Phase.CANCELLED, "CancelRequested")
    assert "while suspended" in verdict.message


def test_the_job_is_created_suspended_when_the_spec_says_so() -> None:
    def job(**spec: object) -> dict:
        parsed = validate_spec({"timeframe": "15m", **spec})
        return build_job(name="x", namespace="ns", uid="u", spec=parsed, config=OperatorConfig())

    assert job(suspend=True)["spec"]["suspend"] is True
    assert job()["spec"]["suspend"] is False


def test_tjctl_run_refuses_a_suspended_manifest(tmp_path: Path) -> None:
    path = manifest(tmp_path, "held", suspend=True)
    result = tjctl(tmp_path, "run", "-f", str(path))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: {path}: spec.suspend is true; set it to false to run it"
    ]
    assert not (tmp_path / "runs").exists()
