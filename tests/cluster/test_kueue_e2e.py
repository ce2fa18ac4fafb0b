"""Kueue (issue 13 item 2) end to end against a real Kueue controller built from its Go
module (tests/cluster/kueue_env.py says what differs from a chart install), the real
`tjctl operator`, the real Job controller and the pod harness running the real trainer.

Each test has a ClusterQueue of its own that admits one trainer (1 cpu: the trainer's
default request) from the test's namespace only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
import yaml

from tests.cluster.kueue_env import running_kueue
from tests.cluster.operator_env import OperatorEnv, running_operator
from tjoperator.kueue import PRIORITY_LABEL, QUEUE_LABEL
from tjtrainer.studies import open_run_storage

# Long enough that a preemption or a suspend lands mid-run: 10 + 10 trials now end in a few
# seconds (the preemption test once failed within 8 s of its start, most likely so).
RUN = {"timeframe": "15m", "nTrials": 40, "trainRatio": 0.8, "seed": 3}
SHORT = {"timeframe": "15m", "nTrials": 3, "trainRatio": 0.8, "seed": 4}
FINAL = ("Succeeded", "Failed", "Cancelled")
QUEUE = "team"


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    with (
        running_kueue(cluster, tmp_path_factory.mktemp("kueue")),
        running_operator(cluster, tmp_path_factory.mktemp("operator")) as env,
    ):
        for name, value in (("low", 10), ("high", 1000)):
            _apply(env, "kueue.x-k8s.io/v1beta2", "WorkloadPriorityClass", name, value=value)
        _apply(env, "kueue.x-k8s.io/v1beta2", "ResourceFlavor", "default", spec={})
        yield env


def _apply(env: OperatorEnv, api: str, kind: str, name: str, **body: Any) -> None:
    doc = {"apiVersion": api, "kind": kind, "metadata": {"name": name}, **body}
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def _queues(env: OperatorEnv, namespace: str, cpu: str) -> None:
    """A ClusterQueue (named after the namespace) with ``cpu`` of quota, preempting lower
    priorities, and the namespace's LocalQueue on it."""
    _apply(
        env, "kueue.x-k8s.io/v1beta2", "ClusterQueue", namespace,
        spec={
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": namespace}
            },
            "preemption": {"withinClusterQueue": "LowerPriority"},
            "resourceGroups": [{
                "coveredResources": ["cpu", "memory"],
                "flavors": [{"name": "default", "resources": [
                    {"name": "cpu", "nominalQuota": cpu},
                    {"name": "memory", "nominalQuota": "16Gi"},
                ]}],
            }],
        },
    )  # fmt: skip
    doc = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "LocalQueue",
        "metadata": {"name": QUEUE, "namespace": namespace},
        "spec": {"clusterQueue": namespace},
    }
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def _submit(env: OperatorEnv, namespace: str, name: str, priority: str, **spec: Any) -> None:
    labels = {QUEUE_LABEL: QUEUE, PRIORITY_LABEL: priority}
    doc = {
        "apiVersion": "mltraining.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def _with_reason(env: OperatorEnv, namespace: str, name: str, reason: str) -> Any:
    def seen() -> dict[str, Any] | None:
        status = env.status(namespace, name)
        found = _conditions(status).get("Running" if reason == "Queued" else "Queued")
        return status if status.get("phase") == "Pending" and found else None

    def has_reason() -> dict[str, Any] | None:
        status = seen()
        queued = _conditions(status or {}).get("Queued") or {}
        return status if status and queued.get("reason") == reason else None

    return env.wait_for(f"{namespace}/{name} to be {reason}", has_reason, timeout=120)


def _workload(env: OperatorEnv, namespace: str, name: str) -> dict[str, Any]:
    found = json.loads(env.kubectl("get", "workloads", "-n", namespace, "-o", "json").stdout)
    mine = [
        w
        for w in found["items"]
        if any(o.get("name") == f"{name}-train" for o in w["metadata"].get("ownerReferences", []))
    ]
    assert len(mine) == 1, found["items"]
    return dict(mine[0])


def _live_pods(env: OperatorEnv, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in env.pods_of(namespace, name)
        if not p["metadata"].get("deletionTimestamp")
        and p["status"].get("phase") in ("Pending", "Running")
    ]


def _finished(env: OperatorEnv, namespace: str, name: str) -> dict[str, int]:
    run_dir = env.run_dir(namespace, name)
    assert run_dir is not None, f"no run folder of {namespace}/{name}"
    storage = open_run_storage(run_dir)
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return {
        model: sum(
            t.state in done
            for t in optuna.load_study(study_name=model, storage=storage).get_trials(deepcopy=False)
        )
        for model in ("LONG", "SHORT")
    }


def _progress(env: OperatorEnv, namespace: str, name: str) -> dict[str, Any]:
    return env.progress(namespace, name)


def test_a_queued_trainingjob_waits_with_kueues_reason_and_runs_once_admitted(
    env: OperatorEnv, namespace: str
) -> None:
    _queues(env, namespace, cpu="0")  # no quota yet
    name = "queued"
    _submit(env, namespace, name, "low", **SHORT)
    status = _with_reason(env, namespace, name, "Waiting")
    conditions = _conditions(status)
    assert conditions["Queued"]["status"] == "True"
    assert conditions["Admitted"]["status"] == "False"
    assert "quota" in status["message"], status["message"]  # Kueue's own reason
    job = env.jobs_of(namespace, name)[0]
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][QUEUE_LABEL] == QUEUE
    assert _workload(env, namespace, name)["spec"]["priority"] == 10
    assert env.pods_of(namespace, name) == []
    row_id = env.wait_for("its row", lambda: env.status(namespace, name).get("rowId"), 30)
    row = env.store.get(row_id)
    assert row is not None and row.status == "pending"

    _queues(env, namespace, cpu="1")  # Kueue admits it now
    status = env.wait_phase(namespace, name, *FINAL, timeout=300)
    assert status["phase"] == "Succeeded", status
    conditions = _conditions(status)
    assert conditions["Admitted"]["status"] == "True"
    assert conditions["Queued"]["status"] == "False"
    assert conditions["Evicted"]["status"] == "False"


def test_a_preempted_run_is_evicted_keeps_its_trials_and_resumes_the_same_study(
    env: OperatorEnv, namespace: str
) -> None:
    _queues(env, namespace, cpu="1")
    low, high = "low-priority", "high-priority"
    _submit(env, namespace, low, "low", **RUN)
    env.wait_trials(namespace, low, 2, timeout=180)
    assert _conditions(env.status(namespace, low))["Admitted"]["status"] == "True"

    _submit(env, namespace, high, "high", **SHORT)
    status = _with_reason(env, namespace, low, "Evicted")
    assert _conditions(status)["Evicted"]["status"] == "True"
    assert "Preempted" in status["message"] or "preempt" in status["message"].lower(), status
    row_id = status["rowId"]
    env.wait_for(  # an evicted run has not ended
        "the row to say running",
        lambda: getattr(env.store.get(row_id), "status", None) == "running",
        30,
    )
    env.wait_for("the evicted trainer pod to go", lambda: not _live_pods(env, namespace, low), 60)
    kept = _progress(env, namespace, low)
    before = {(t["model"], t["number"]): t["spearman"] for t in kept["trials"]}
    assert kept["completed_trials"] >= 2

    assert env.wait_phase(namespace, high, *FINAL, timeout=300)["phase"] == "Succeeded"
    status = env.wait_phase(namespace, low, *FINAL, timeout=400)
    assert status["phase"] == "Succeeded", status
    assert _conditions(status)["Evicted"]["status"] == "False"
    final = _progress(env, namespace, low)
    total = 2 * RUN["nTrials"]
    assert [t["trial"] for t in final["trials"]] == list(range(1, total + 1))
    after = {(t["model"], t["number"]): t["spearman"] for t in final["trials"]}
    assert all(after[key] == score for key, score in before.items()), "a finished trial changed"
    assert _finished(env, namespace, low) == {"LONG": RUN["nTrials"], "SHORT": RUN["nTrials"]}


def test_suspend_deactivates_the_workload_and_resume_requeues_it(
    env: OperatorEnv, namespace: str
) -> None:
    _queues(env, namespace, cpu="1")
    name = "suspended-in-queue"
    _submit(env, namespace, name, "low", **RUN)
    env.wait_trials(namespace, name, 1, timeout=180)
    patch = {"spec": {"suspend": True}}
    env.kubectl(
        "patch", "trainingjob", name, "-n", namespace, "--type", "merge", "-p", json.dumps(patch)
    )
    status = env.wait_phase(namespace, name, "Suspended", *FINAL, timeout=120)
    assert status["phase"] == "Suspended", status
    assert _workload(env, namespace, name)["spec"]["active"] is False
    assert _conditions(status)["Evicted"]["status"] == "False", "a suspend is no eviction"

    patch = {"spec": {"suspend": False}}
    env.kubectl(
        "patch", "trainingjob", name, "-n", namespace, "--type", "merge", "-p", json.dumps(patch)
    )
    try:
        status = env.wait_phase(namespace, name, *FINAL, timeout=400)
    except AssertionError:
        print(json.dumps(env.status(namespace, name), indent=1)[:3000])
        print(json.dumps(_workload(env, namespace, name), indent=1)[:6000])
        print(json.dumps(env.jobs_of(namespace, name), indent=1)[:3000])
        raise
    assert status["phase"] == "Succeeded", status
    assert _workload(env, namespace, name)["spec"]["active"] is True
    assert _finished(env, namespace, name) == {"LONG": RUN["nTrials"], "SHORT": RUN["nTrials"]}
