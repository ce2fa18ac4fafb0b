"""Trainer pods the Job controller cannot create (issue 12, "workers above what the
namespace's quota allows"): a clear reason and what to do, not a silent Pending."""

from __future__ import annotations

from tests.operator.test_status_transitions import progress
from tjoperator.status import Observation, Phase, judge

QUOTA = (
    'pods "tj-train-0-abcde" is forbidden: exceeded quota: trainers, requested: pods=1, '
    "used: pods=2, limited: pods=2"
)


def test_no_pod_created_is_pending_with_the_quota_and_the_fix() -> None:
    verdict = judge(Observation(None, {"active": 0}, pods_missing=1, create_failure=QUOTA))
    assert (verdict.phase, verdict.reason) == (Phase.PENDING, "PodsNotCreated")
    assert "exceeded quota: trainers" in verdict.message
    assert "ResourceQuota" in verdict.message and "spec.workers" in verdict.message
    assert verdict.warning, "a Warning Event, once"


def test_a_run_with_some_pods_goes_on_and_says_which_are_missing() -> None:
    obs = Observation(progress(done=5), {"active": 2}, pods_missing=1, create_failure=QUOTA)
    verdict = judge(obs)
    assert (verdict.phase, verdict.reason) == (Phase.RUNNING, "PodsNotCreated")
    assert verdict.message.startswith("trial 5/20; ")
    assert "cannot create 1 trainer pod(s)" in verdict.message


def test_missing_pods_without_a_failure_message_are_just_starting() -> None:
    verdict = judge(Observation(progress(done=5), {"active": 2}, pods_missing=1))
    assert (verdict.phase, verdict.reason) == (Phase.RUNNING, "Training")
