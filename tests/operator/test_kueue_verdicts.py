"""Kueue (issue 13 item 2) in the pure parts: the Job a queued TrainingJob gets, and what
Kueue's hold, admission and eviction mean for the phase, the conditions and the table."""

from __future__ import annotations

from tests.operator.test_status_transitions import progress
from tjcore.spec import validate_spec
from tjoperator.config import OperatorConfig
from tjoperator.job_builder import build_job
from tjoperator.kueue import PRIORITY_LABEL, QUEUE_LABEL, queue_labels, queue_state
from tjoperator.status import Observation, Phase, build_status, judge
from tjoperator.tracking import row_values

HELD_JOB = {"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}]}
RUNNING_JOB = {"active": 1, "startTime": "2026-12-02T04:00:00Z"}


def workload(*conditions: dict[str, str], active: bool = True) -> dict:
    return {
        "metadata": {"name": "job-tj-a-train-1a2b3"},
        "spec": {"active": active},
        "status": {"conditions": list(conditions)},
    }


def conditions_of(obs: Observation) -> dict[str, dict]:
    status = build_status(obs, judge(obs), total_trials=20, previous={}, generation=1)
    return {c["type"]: c for c in status["conditions"]}


def test_a_queued_trainingjob_gets_a_suspended_job_with_its_kueue_labels() -> None:
    labels = {QUEUE_LABEL: "team-a", PRIORITY_LABEL: "high", "app": "other"}
    queue = queue_labels(labels)
    assert queue == {QUEUE_LABEL: "team-a", PRIORITY_LABEL: "high"}
    spec = validate_spec({"timeframe": "15m"})
    job = build_job(
        name="tj-a", namespace="ml", uid="u", spec=spec, config=OperatorConfig(), queue=queue
    )
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][QUEUE_LABEL] == "team-a"
    assert job["metadata"]["labels"][PRIORITY_LABEL] == "high"
    assert "app" not in job["metadata"]["labels"]
    plain = build_job(name="tj-a", namespace="ml", uid="u", spec=spec, config=OperatorConfig())
    assert plain["spec"]["suspend"] is False and QUEUE_LABEL not in plain["metadata"]["labels"]


def test_a_priority_class_alone_is_no_queue() -> None:
    assert queue_labels({PRIORITY_LABEL: "high"}) == {}
    assert queue_labels(None) == {}


def test_a_held_job_is_queued_with_kueues_reason() -> None:
    pending = workload(
        {
            "type": "QuotaReserved",
            "status": "False",
            "reason": "Pending",
            "message": "couldn't assign flavors to pod set main: insufficient quota for cpu",
        }
    )
    state = queue_state("team-a", HELD_JOB, pending, ran_before=False)
    obs = Observation(None, HELD_JOB, queue=state)
    verdict = judge(obs)
    assert (verdict.phase, verdict.reason) == (Phase.PENDING, "Queued")
    assert "team-a" in verdict.message and "insufficient quota for cpu" in verdict.message
    conditions = conditions_of(obs)
    assert conditions["Queued"]["status"] == "True"
    assert conditions["Admitted"]["status"] == "False"
    assert conditions["Evicted"]["status"] == "False"


def test_with_no_workload_the_message_asks_whether_kueue_runs() -> None:
    state = queue_state("team-a", HELD_JOB, None, ran_before=False)
    assert "is Kueue installed" in judge(Observation(None, HELD_JOB, queue=state)).message


def test_an_admitted_job_runs_and_says_so() -> None:
    state = queue_state("team-a", RUNNING_JOB, None, ran_before=False)
    obs = Observation(progress(done=2), RUNNING_JOB, queue=state)
    assert judge(obs).phase == Phase.RUNNING
    conditions = conditions_of(obs)
    assert conditions["Admitted"]["status"] == "True"
    assert conditions["Queued"]["status"] == "False"


def test_an_evicted_run_waits_again_and_keeps_its_trials() -> None:
    evicted = workload(
        {
            "type": "Evicted",
            "status": "True",
            "reason": "Preempted",
            "message": "Preempted to accommodate a workload due to prioritization",
        }
    )
    state = queue_state("team-a", HELD_JOB, evicted, ran_before=True)
    obs = Observation(progress(done=7), HELD_JOB, queue=state)
    verdict = judge(obs)
    assert (verdict.phase, verdict.reason) == (Phase.PENDING, "Evicted")
    assert "7/20" in verdict.message and "Preempted to accommodate" in verdict.message
    assert "same study resumes" in verdict.message
    status = build_status(obs, verdict, total_trials=20, previous={}, generation=1)
    assert row_values(obs, verdict)["status"] == "running", (
        "an evicted run has not ended: the table says running"
    )
    assert status["currentTrial"] == 7
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Evicted"]["status"] == "True"
    assert conditions["Queued"]["status"] == "True"


def test_a_deactivation_is_the_users_suspend_not_an_eviction() -> None:
    deactivated = workload(
        {"type": "Evicted", "status": "True", "reason": "Deactivated", "message": "inactive"},
        active=False,
    )
    state = queue_state("team-a", HELD_JOB, deactivated, ran_before=True)
    assert state.evicted is None
    suspended = Observation(
        progress(done=4), {**HELD_JOB, "active": 0}, suspended=True, queue=state
    )
    assert judge(suspended).phase == Phase.SUSPENDED


def test_without_a_workload_a_job_held_after_running_counts_as_evicted() -> None:
    assert queue_state("q", HELD_JOB, None, ran_before=True).evicted
    assert queue_state("q", HELD_JOB, None, ran_before=False).evicted is None


def test_a_fresh_job_with_no_status_yet_is_not_admitted() -> None:
    assert not queue_state("q", {}, None, ran_before=False).admitted
