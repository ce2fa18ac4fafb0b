"""The Job's failure contract on the real control plane: the Job controller, the pod
harness running the real trainer, the real `tjctl operator` process.

- a transient failure (an OSError while saving: exit 75) is retried within backoffLimit,
  and the retry resumes the study and succeeds;
- a permanent one (a garbage dataset: exit 3) fails the Job at once, with one pod;
- an eviction (the pod gets condition DisruptionTarget) is not counted against
  backoffLimit, even when that is 0.

The operator has a volume of its own here (TJ_SHARED_PVC), so the faults planted in it
touch no other test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.operator_env import (
    OperatorEnv,
    running_operator,
)
from tjoperator.job_builder import job_name

OWN_CLAIM = "tj-exit-codes"


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    with running_operator(cluster, tmp_path_factory.mktemp("operator"), claim=OWN_CLAIM) as env:
        yield env


def job_status(env: OperatorEnv, namespace: str, name: str) -> dict[str, Any]:
    jobs = env.jobs_of(namespace, name)
    return dict(jobs[0].get("status") or {}) if jobs else {}


def exit_codes(env: OperatorEnv, namespace: str, name: str) -> list[int]:
    codes = []
    for pod in env.pods_of(namespace, name):
        for container in pod["status"].get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated")
            if terminated:
                codes.append(terminated["exitCode"])
    return sorted(codes)


def test_a_transient_failure_is_retried_and_the_retry_resumes(
    env: OperatorEnv, namespace: str
) -> None:
    models = env.shared / "models"
    models.write_text("a file where the models folder must be")  # saving fails: OSError
    try:
        env.apply(namespace, "flaky", timeframe="15m", nTrials=2, seed=3, backoffLimit=2)
        status = env.wait_for(
            "the Retrying verdict",
            lambda: (lambda s: s if s.get("conditions") and "exit code 75" in str(s) else None)(
                env.status(namespace, "flaky")
            ),
            timeout=180,
        )
        assert status["phase"] == "Running", status
        running = {c["type"]: c for c in status["conditions"]}["Running"]
        assert running["reason"] == "Retrying" and "resumes the study" in running["message"]
    finally:
        models.unlink()
    status = env.wait_phase(namespace, "flaky", "Succeeded", "Failed", timeout=240)
    assert status["phase"] == "Succeeded", status
    assert status["trial"] == "4/4"
    job = env.wait_for(
        "the Job to complete",
        lambda: (lambda j: j if j.get("succeeded") else None)(job_status(env, namespace, "flaky")),
        timeout=60,
    )
    assert (job.get("failed"), job.get("succeeded")) == (1, 1)
    assert exit_codes(env, namespace, "flaky") == [0, 75]
    pods = sorted(env.pods_of(namespace, "flaky"), key=lambda p: p["metadata"]["creationTimestamp"])
    second = env.cluster.pod_log(namespace, pods[-1]["metadata"]["name"])
    assert "resuming with 4 finished trials" in second, second
    events = env.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert any(
        e["reason"] == "Retrying" and e["type"] == "Warning" for e in json.loads(events)["items"]
    )


def test_a_permanent_failure_fails_the_job_at_once(env: OperatorEnv, namespace: str) -> None:
    garbage = env.shared / "datasets" / "1h"
    garbage.mkdir(parents=True, exist_ok=True)
    (garbage / "dataset.parquet").write_bytes(b"not parquet at all")
    env.apply(namespace, "broken", timeframe="1h", nTrials=2, backoffLimit=3)
    status = env.wait_phase(namespace, "broken", "Failed", "Succeeded", timeout=120)
    assert status["phase"] == "Failed", status
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "TrainerFailed"
    assert "not a readable Parquet file" in status["message"]
    job = env.wait_for(
        "the Job's Failed condition",
        lambda: (
            lambda j: j if any(c["type"] == "Failed" for c in j.get("conditions") or []) else None
        )(job_status(env, namespace, "broken")),
        timeout=60,
    )
    reason = next(c["reason"] for c in job["conditions"] if c["type"] == "Failed")
    assert reason == "PodFailurePolicy"
    assert exit_codes(env, namespace, "broken") == [3]  # one pod: no retry was spent


def test_an_eviction_does_not_count_against_backoff_limit(env: OperatorEnv, namespace: str) -> None:
    env.apply(namespace, "evicted", timeframe="15m", nTrials=300, seed=5, backoffLimit=0)
    env.wait_trials(namespace, "evicted", 2, timeout=180)
    pod = env.pods_of(namespace, "evicted")[0]["metadata"]["name"]
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": namespace},
    }
    env.kubectl(
        "create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", "-f", "-",
        input=json.dumps(eviction),
    )  # fmt: skip
    # The Job makes a new pod (backoffLimit 0 would have failed it), which resumes.
    env.wait_for(
        "a second pod",
        lambda: [p for p in env.pods_of(namespace, "evicted") if p["metadata"]["name"] != pod],
        timeout=120,
    )
    job = job_status(env, namespace, "evicted")
    assert not any(c["type"] == "Failed" for c in job.get("conditions") or []), job
    assert not job.get("failed"), job
    env.kubectl("patch", "trainingjob", "evicted", "-n", namespace, "--type=merge",
                "-p", '{"spec": {"cancel": true}}')  # fmt: skip
    status = env.wait_phase(namespace, "evicted", "Cancelled", "Failed", timeout=180)
    assert status["phase"] == "Cancelled", status
    assert job_name("evicted") == env.jobs_of(namespace, "evicted")[0]["metadata"]["name"]
