"""The chart's RBAC is enough: with the chart installed, `tjctl operator` running with
the token of the chart's ServiceAccount (and the environment of the chart's Deployment)
drives an example TrainingJob to Succeeded, without a single Forbidden answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.operator_env import make_dataset

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "trainingjob-operator"
EXAMPLE = ROOT / "manifests" / "examples" / "trainingjob-15m.yaml"
TJCTL = str(Path(sys.executable).with_name("tjctl"))
RELEASE = "tj"
FULLNAME = f"{RELEASE}-trainingjob-operator"
CLAIM = f"{FULLNAME}-shared"
# What kopf and the kubernetes client log when the API server says no.
FORBIDDEN_MARKS = ("Forbidden", "Not enough permissions", "APIForbiddenError")


def token_kubeconfig(cluster: Any, namespace: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a fresh token of the chart's ServiceAccount."""
    token = cluster.kubectl(
        "create", "token", FULLNAME, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    server = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": server}],
        "users": [{"name": FULLNAME, "user": {"token": token}}],
        "contexts": [
            {
                "name": "operator",
                "context": {"cluster": "test", "user": FULLNAME, "namespace": namespace},
            }
        ],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def deployment_env(cluster: Any, namespace: str) -> dict[str, str]:
    """The plain environment variables of the chart's operator container."""
    deployment = cluster.get_json("deployment", FULLNAME, "-n", namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["tjctl", "operator"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


@pytest.fixture
def installed(cluster: Any, namespace: str) -> Iterator[str]:
    """The chart in a restricted namespace, its own operator Deployment scaled to 0 (this
    test runs the operator itself, under the chart's ServiceAccount)."""
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    cluster.helm_run(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        "operator.replicas=0",
        "--set",
        "ui.enabled=false",
        timeout=180,
    )
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/trainingjobs.mltraining.dev"
    )
    yield namespace
    cluster.helm_run("uninstall", RELEASE, "--namespace", namespace, check=False)


def test_operator_under_the_chart_service_account_drives_an_example_to_succeeded(
    cluster: Any, installed: str, tmp_path: Path
) -> None:
    namespace = installed
    shared = cluster.pvc_dir(CLAIM)
    make_dataset(shared, "15m", 3000)

    chart_env = deployment_env(cluster, namespace)
    assert chart_env["TJ_WATCH_NAMESPACES"] == namespace
    assert chart_env["TJ_SHARED_PVC"] == CLAIM
    env = {
        **os.environ,
        **chart_env,
        # What the pod's mount of the shared PVC is on this host (the harness's folder).
        "SHARED_DATA_PATH": str(shared),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(token_kubeconfig(cluster, namespace, tmp_path / "kubeconfig")),
    }
    env.pop("DATABASE_URL", None)
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        operator = subprocess.Popen(
            [TJCTL, "operator", "--verbose"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    example = yaml.safe_load(EXAMPLE.read_text())
    example["spec"]["nTrials"] = 2
    name = example["metadata"]["name"]
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(example))
        status = wait_phase(cluster, namespace, name, operator, log_path, timeout=420)
        assert status["phase"] == "Succeeded", (status, tail(log_path))
        assert status["trial"] == "4/4"

        job = cluster.get_json("job", f"{name}-train", "-n", namespace)
        pod = job["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == chart_env["TJ_TRAINER_IMAGE"]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == CLAIM
        assert (shared / "models" / "metadata_15m_latest.json").exists()

        # Deleting it goes through kopf's finalizer, also under the ServiceAccount.
        cluster.kubectl("delete", "trainingjob", name, "-n", namespace, "--timeout=60s")
    finally:
        os.killpg(operator.pid, signal.SIGTERM)
        try:
            operator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(operator.pid, signal.SIGKILL)
            operator.wait()
    text = log_path.read_text(errors="replace")
    denied = [line for line in text.splitlines() if any(m in line for m in FORBIDDEN_MARKS)]
    assert not denied, "the operator was denied something:\n" + "\n".join(denied[:20])


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_phase(
    cluster: Any,
    namespace: str,
    name: str,
    operator: subprocess.Popen[bytes],
    log_path: Path,
    *,
    timeout: float,
) -> dict[str, Any]:
    """Wait for a final phase; fail at once if the operator process dies."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            raise AssertionError(f"the operator exited {operator.returncode}:\n{tail(log_path)}")
        result = cluster.kubectl("get", "trainingjob", name, "-n", namespace, "-o", "json")
        status = json.loads(result.stdout).get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed", "Cancelled"):
            return status
        time.sleep(1)
    raise AssertionError(f"no final phase after {timeout:.0f} s: {status}\n{tail(log_path)}")
