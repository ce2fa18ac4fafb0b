"""What a real kubelet reports about a trainer pod, and what the TrainingJob then shows.

The pod harness cannot pull images or enforce memory limits, so these tests play the
kubelet themselves: the trainer's Job (built by the operator's own ``build_job``) is made
before its TrainingJob, with its pods bound to a stand-in Node that no harness runs; the
operator adopts it (create answers 409), and the test writes the pod status a kubelet
writes — ``ErrImageNeverPull``, ``ErrImagePull``/``ImagePullBackOff``, ``OOMKilled``.
Everything else is real: the API server, the Job controller (which counts the failed pod
and makes the next one), the `tjctl operator` process, its Events and its SQLite table.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.cluster.operator_env import CLAIM, ROOT, OperatorEnv, OperatorProcess
from tjcore.spec import validate_spec
from tjcore.store import JobStore
from tjoperator.config import OperatorConfig
from tjoperator.job_builder import build_job

STAND_IN_NODE = "tj-kubelet-stand-in"
IMAGE = "localhost/trainingjob-trainer-missing:0.1.0"
PULL_TIMEOUT_SECONDS = 20


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    shared = cluster.pvc_dir(CLAIM)
    shared.mkdir(parents=True, exist_ok=True)
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "crd.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/trainingjobs.mltraining.dev"
    )
    # A Node object no harness serves: its pods stay as the test writes them (and are not
    # garbage-collected as pods of a missing node).
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": STAND_IN_NODE}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(node))
    database_url = f"sqlite:///{shared / 'kubelet_reports.db'}"
    process_env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "SHARED_DATA_PATH": str(shared),
        "DATABASE_URL": database_url,
        "TJ_IMAGE_PULL_TIMEOUT_SECONDS": str(PULL_TIMEOUT_SECONDS),
        # The image the kubelet reports on is not the configured trainer image: allow it,
        # or the operator refuses the TrainingJob (InvalidSpec) before any pod exists.
        "TJ_ALLOWED_TRAINER_IMAGES": IMAGE,
    }
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    operator = OperatorProcess(env=process_env, log_path=log_path, args=["--no-bridge"])
    operator.start()
    store = JobStore(database_url)
    try:
        yield OperatorEnv(cluster, shared, operator, store)
    finally:
        operator.stop()
        store.close()
        cluster.kubectl("delete", "node", STAND_IN_NODE, "--wait=false", check=False)


def start(env: OperatorEnv, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """The TrainingJob ``name`` whose Job's pods run on the stand-in node; returns its
    first pod once the Job controller made it."""
    spec = {"timeframe": "15m", "nTrials": 2, "image": IMAGE, **spec}
    job = build_job(
        name=name,
        namespace=namespace,
        uid="none",
        spec=validate_spec(spec),
        config=OperatorConfig(allowed_images=(IMAGE,)),  # as the operator is configured
    )
    del job["metadata"]["ownerReferences"]  # its owner does not exist yet
    job["spec"]["template"]["spec"]["nodeName"] = STAND_IN_NODE
    env.kubectl("create", "-f", "-", input=yaml.safe_dump(job))
    env.apply(namespace, name, **spec)
    return env.wait_for("the trainer pod", lambda: next(iter(env.pods_of(namespace, name)), None))


def kubelet_writes(env: OperatorEnv, pod: dict[str, Any], status: dict[str, Any]) -> None:
    """Patch the pod's status as its kubelet would."""
    meta = pod["metadata"]
    env.kubectl(
        "patch",
        "pod",
        meta["name"],
        "-n",
        meta["namespace"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def container_status(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "trainer",
        "image": IMAGE,
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": state,
    }


def waiting(reason: str, message: str) -> dict[str, Any]:
    return {
        "phase": "Pending",
        "containerStatuses": [
            container_status({"waiting": {"reason": reason, "message": message}})
        ],
    }


def warnings_of(env: OperatorEnv, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Warning Events the operator posted about TrainingJob ``name``."""
    events = json.loads(env.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    return [
        e
        for e in events["items"]
        if e["involvedObject"].get("kind") == "TrainingJob"
        and e["involvedObject"].get("name") == name
        and e.get("type") == "Warning"
    ]


def failed_condition(status: dict[str, Any]) -> dict[str, Any]:
    return {c["type"]: c for c in status["conditions"]}["Failed"]


def test_an_image_missing_from_the_node_fails_at_once_and_deletes_the_job(
    env: OperatorEnv, namespace: str
) -> None:
    pod = start(env, namespace, "no-image")
    message = f'Container image "{IMAGE}" is not present with pull policy of Never'
    kubelet_writes(env, pod, waiting("ErrImageNeverPull", message))
    status = env.wait_phase(namespace, "no-image", "Failed", "Succeeded", timeout=60)
    assert failed_condition(status)["reason"] == "ImageNotFound"
    assert status["message"].startswith(f"trainer image {IMAGE} is not on node {STAND_IN_NODE}")
    assert "load it into the node's container runtime" in status["message"]
    env.wait_for("the Job to go", lambda: not env.jobs_of(namespace, "no-image"), 60)
    row = env.store.get_by_name(namespace, "no-image")
    assert row is not None and row.status == "failed" and row.error == status["message"]
    events = env.wait_for("the Event", lambda: warnings_of(env, namespace, "no-image"), 30)
    assert [e["reason"] for e in events] == ["ImageNotFound"]


def test_an_oom_killed_trainer_fails_at_once_naming_its_limit(
    env: OperatorEnv, namespace: str
) -> None:
    pod = start(env, namespace, "oom", resources={"limits": {"memory": "1536Mi"}}, backoffLimit=4)
    oom = {
        "terminated": {
            "reason": "OOMKilled",
            "exitCode": 137,
            "startedAt": "2026-11-26T13:14:22Z",
            "finishedAt": "2026-11-26T13:16:40Z",
            "containerID": "containerd://0123abcd",
        }
    }
    kubelet_writes(env, pod, {"phase": "Failed", "containerStatuses": [container_status(oom)]})
    status = env.wait_phase(namespace, "oom", "Failed", "Succeeded", timeout=60)
    assert failed_condition(status)["reason"] == "OOMKilled"
    assert "memory limit of 1536Mi" in status["message"]
    assert "raise spec.resources.limits.memory" in status["message"]
    # Not four more pods in vain: the Job (and the Job controller's next pod) go at once.
    env.wait_for("the Job to go", lambda: not env.jobs_of(namespace, "oom"), 60)
    row = env.store.get_by_name(namespace, "oom")
    assert row is not None and row.status == "failed" and "1536Mi" in (row.error or "")
    events = env.wait_for("the Event", lambda: warnings_of(env, namespace, "oom"), 30)
    assert [e["reason"] for e in events] == ["OOMKilled"]


def test_a_failing_pull_is_shown_while_pending_then_fails_after_the_timeout(
    env: OperatorEnv, namespace: str
) -> None:
    pod = start(env, namespace, "no-pull")
    error = (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{IMAGE}": '
        f'failed to resolve reference "{IMAGE}": not found'
    )
    kubelet_writes(env, pod, waiting("ErrImagePull", error))

    def pending_with_reason() -> dict[str, Any] | None:
        status = env.status(namespace, "no-pull")
        running = {c["type"]: c for c in status.get("conditions") or []}.get("Running", {})
        return status if running.get("reason") == "ImagePullBackOff" else None

    status = env.wait_for("the pull error in the status", pending_with_reason, 30)
    assert status["phase"] == "Pending"
    assert f"cannot pull trainer image {IMAGE}" in status["message"] and error in status["message"]
    kubelet_writes(env, pod, waiting("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"'))
    status = env.wait_phase(
        namespace, "no-pull", "Failed", "Succeeded", timeout=PULL_TIMEOUT_SECONDS + 40
    )
    assert failed_condition(status)["reason"] == "ImagePullBackOff"
    assert f"trainer image {IMAGE} could not be pulled" in status["message"]
    env.wait_for("the Job to go", lambda: not env.jobs_of(namespace, "no-pull"), 60)
    row = env.store.get_by_name(namespace, "no-pull")
    assert row is not None and row.status == "failed" and IMAGE in (row.error or "")
    events = env.wait_for(
        "both Events",
        lambda: (lambda w: w if len(w) >= 2 else None)(warnings_of(env, namespace, "no-pull")),
        30,
    )
    # One warning while Pending (not one per look, nor per kubelet retry), one failure.
    assert sorted(e["message"].split(":")[0] for e in events) == ["Failed", "Pending"]
    assert {e["reason"] for e in events} == {"ImagePullBackOff"}
    assert all(e.get("count", 1) == 1 for e in events)
