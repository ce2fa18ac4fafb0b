"""``make kind-up`` → the example reaches Succeeded, ``kubectl get trainingjobs -w`` shows the
live columns, the UI answers through port-forward, a cancel works → ``make kind-down``
leaves nothing running. In this order (the last test takes the cluster down)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.kind.conftest import (
    EXAMPLE_NAME,
    EXAMPLE_TRIALS,
    FINAL,
    NAMESPACE,
    RELEASE,
    HostState,
    KindCluster,
    host_iptables,
)
from tjdevcluster import kindengine, netns
from tjdevcluster.testing import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _wait_phase(cluster: KindCluster, name: str, timeout: float) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        status = cluster.status(name)
        return status if status.get("phase") in FINAL else None

    try:
        return wait_for(final, timeout, f"TrainingJob {name} to finish", interval=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.diagnose(name)}") from None


def _manifest(name: str, trials: int) -> str:
    return json.dumps(
        {
            "apiVersion": "mltraining.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": name},
            "spec": {"timeframe": "15m", "nTrials": trials, "trainRatio": 0.8, "seed": 11},
        }
    )


def test_kind_up_installs_the_chart_on_a_kind_node(kind_cluster: KindCluster) -> None:
    """One kind node, Ready; the operator and the UI rolled out from the chart; the images
    are ours (loaded, never pulled) and the node is a kind node."""
    assert "kind cluster" in kind_cluster.up_output, kind_cluster.up_output[-3000:]
    nodes = json.loads(kind_cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert len(nodes) == 1
    (node,) = nodes
    assert node["metadata"]["name"].endswith("-control-plane")
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    for deployment in (RELEASE, f"{RELEASE}-ui"):
        kind_cluster.kubectl(
            "rollout", "status", "-n", NAMESPACE, f"deploy/{deployment}", "--timeout=180s"
        )
    pods = kind_cluster.get("pods", "-l", "app.kubernetes.io/component=operator")["items"]
    assert pods[0]["status"]["containerStatuses"][0]["image"].endswith("trainingjob-operator:0.1.0")
    # No pod of the cluster ever tried to pull (everything is preloaded or loaded).
    events = json.loads(kind_cluster.kubectl("get", "events", "-A", "-o", "json").stdout)["items"]
    pulls = [e for e in events if e.get("reason") in ("Pulling", "Failed", "ErrImagePull")]
    assert not pulls, [e.get("message") for e in pulls]


def test_the_example_reaches_succeeded_with_live_columns(kind_cluster: KindCluster) -> None:
    """The TrainingJob that kind-up applied ends Succeeded; ``kubectl get trainingjobs -w``
    started after kind-up showed it running with a trial count and a best score."""
    started = time.monotonic()
    watch = subprocess.Popen(
        ["kubectl", "get", "trainingjobs", "-n", NAMESPACE, "-w"],
        env=kind_cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status = _wait_phase(kind_cluster, EXAMPLE_NAME, timeout=900)
    finally:
        time.sleep(2)
        watch.terminate()
        output, _ = watch.communicate(timeout=10)
    kind_cluster.figures[
        f"kind-up's example ({2 * EXAMPLE_TRIALS} trials) to Succeeded after kind-up"
    ] = time.monotonic() - started
    trials = 2 * EXAMPLE_TRIALS  # LONG and SHORT
    total = f"{trials}/{trials}"
    assert status["phase"] == "Succeeded", kind_cluster.diagnose(EXAMPLE_NAME)
    assert status["trial"] == total
    named = [line for line in output.splitlines() if line.startswith(EXAMPLE_NAME)]
    lines = [line.split() for line in named]
    header = output.splitlines()[0].split()
    assert header[:6] == ["NAME", "PHASE", "PROGRESS", "TRIAL", "ETA", "BEST"], output
    best_at = output.splitlines()[0].index("BEST LONG")  # read cells under their header
    live = [
        line
        for line, c in zip(named, lines, strict=True)
        if c[1] == "Running" and c[3] not in (f"0/{trials}", total)
    ]
    assert live and float(live[0][best_at:].split()[0]), output  # a best score, live
    assert lines[-1][1] == "Succeeded" and lines[-1][3] == total, output
    # The models are on the host: ./shared-data is the node's /shared-data.
    version = status["modelVersion"]
    models = list((ROOT / "shared-data" / "models").glob(f"*{version}*"))
    assert models, f"no model file of version {version} in ./shared-data/models"


def test_apply_to_succeeded(kind_cluster: KindCluster) -> None:
    """A TrainingJob applied now (images cached on the node) ends Succeeded; the time from
    apply to Succeeded is a figure of docs/INSTALL.md."""
    name = "kind-apply"
    started = time.monotonic()
    kind_cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=_manifest(name, 3))
    status = _wait_phase(kind_cluster, name, timeout=600)
    kind_cluster.figures["kubectl apply (6 trials) -> Succeeded"] = time.monotonic() - started
    assert status["phase"] == "Succeeded", kind_cluster.diagnose(name)
    assert status["trial"] == "6/6"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_ui_answers_through_port_forward(kind_cluster: KindCluster) -> None:
    port = _free_port()
    forward = subprocess.Popen(
        ["kubectl", "port-forward", "-n", NAMESPACE, f"svc/{RELEASE}-ui", f"{port}:8501"],
        env=kind_cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def get(path: str) -> str | None:
            try:
                url = f"http://127.0.0.1:{port}{path}"
                with urllib.request.urlopen(url, timeout=3) as resp:
                    return str(resp.read().decode())
            except OSError:
                return None

        assert wait_for(lambda: get("/_stcore/health"), 90, "the UI through port-forward") == "ok"
        page = get("/")
        assert page is not None and "<title>" in page.lower().replace("<title >", "<title>")
    finally:
        forward.terminate()
        forward.wait(10)


def test_a_cancel_stops_the_run(kind_cluster: KindCluster) -> None:
    name = "kind-cancel"
    kind_cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=_manifest(name, 300))

    def one_trial() -> bool:
        status = kind_cluster.status(name)
        if status.get("phase") in FINAL:
            raise AssertionError(f"{name} ended before a trial: {status}")
        return int(str(status.get("trial") or "0/0").split("/")[0]) >= 1

    wait_for(one_trial, 600, f"a trial of {name}", interval=1)
    kind_cluster.kubectl(
        "patch",
        "trainingjob",
        name,
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        '{"spec":{"cancel":true}}',
    )
    status = _wait_phase(kind_cluster, name, timeout=300)
    assert status["phase"] == "Cancelled", kind_cluster.diagnose(name)
    assert 1 <= int(status["trial"].split("/")[0]) < 600


def test_nothing_leaves_the_machine_while_up(
    kind_cluster: KindCluster, host_before: HostState
) -> None:
    """With the project's engine: its namespace has no default route; the host's iptables
    and ip_forward are as they were."""
    if kind_cluster.env.get("TJ_KIND_ENGINE") != "local":
        pytest.skip("kind-up used the user's own Docker engine: its network is the user's")
    assert netns.exists(kindengine.NETNS)
    assert netns.default_routes(kindengine.NETNS) == []
    assert netns.host_ip_forward() == "0" == host_before.ip_forward
    assert host_iptables() == host_before.iptables


def test_kind_down_leaves_nothing_running(
    kind_cluster: KindCluster, host_before: HostState
) -> None:
    started = time.monotonic()
    down = kind_cluster.make("kind-down", timeout=600)
    kind_cluster.figures["make kind-down"] = time.monotonic() - started
    kind_cluster.down_output = down.stdout + down.stderr
    assert down.returncode == 0, kind_cluster.down_output
    clusters = subprocess.run(
        ["kind", "get", "clusters"], env=kind_cluster.env, capture_output=True, text=True
    )
    assert "tj-kind-e2e" not in clusters.stdout
    engine = kindengine.KindEngine()
    assert kindengine.leftovers(engine) == []
    assert not engine.is_running()
    assert not netns.exists(kindengine.NETNS)
    with socket.socket() as probe:  # the API forwarder is gone
        assert probe.connect_ex(("127.0.0.1", kindengine.api_port())) != 0
    assert netns.host_ip_forward() == host_before.ip_forward
    assert host_iptables() == host_before.iptables
    assert Path("/lib/modules").exists() == host_before.lib_modules
