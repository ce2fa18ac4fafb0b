"""`tjctl dev-cluster up --node kubelet` on bad ground: not root, a taken port, a taken
namespace, the leftovers of a killed run. Each gets a clear message (or recovers), and no
traceback reaches the user."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tjdevcluster import netns
from tjdevcluster.controlplane import ClusterConfig, ControlPlane
from tjdevcluster.node import namespace_name
from tjdevcluster.procs import free_ports
from tjdevcluster.testing import Cluster

TJCTL = str(Path(sys.executable).with_name("tjctl"))


def tjctl(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [TJCTL, "dev-cluster", *args]
    env = dict(os.environ)
    if user:  # the same command as an unprivileged user
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        env["HOME"] = "/tmp"
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, env=env)


@pytest.fixture
def state_dir(tmp_path: Path, node_cluster: Cluster) -> Iterator[Path]:
    """A state dir of its own (the tools are built by the session's cluster); whatever
    starts there is taken down at the end."""
    state = tmp_path / "state"
    yield state
    if (state / "cluster.json").exists():
        tjctl("down", "--state-dir", str(state))


def test_without_root_it_says_so(node_cluster: Cluster) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        state = Path(tmp)
        state.chmod(0o777)  # the unprivileged user may write it: root is what it lacks
        result = tjctl("up", "--node", "kubelet", "--state-dir", str(state), user="65534")
        assert result.returncode == 1
        assert "needs root" in result.stderr
        assert "--node harness" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert list(state.iterdir()) == []  # nothing written, nothing built


def test_a_taken_api_port_is_named(state_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = tjctl(
            "up", "--node", "kubelet", "--state-dir", str(state_dir), "--apiserver-port", str(port)
        )
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not netns.exists(namespace_name(state_dir.resolve()))


def test_a_namespace_used_by_someone_else_is_refused(state_dir: Path) -> None:
    name = namespace_name(state_dir.resolve())
    netns.create(name)
    stranger = subprocess.Popen(netns.wrap(name, ["sleep", "300"]))
    try:
        (port,) = free_ports(1)
        result = tjctl(
            "up", "--node", "kubelet", "--state-dir", str(state_dir), "--apiserver-port", str(port)
        )
        assert result.returncode == 1
        assert f"network namespace {name} is in use" in result.stderr
        assert str(stranger.pid) in result.stderr
        assert "Traceback" not in result.stderr
        assert stranger.poll() is None  # left alone
    finally:
        stranger.kill()
        stranger.wait()
        netns.delete(name)


def test_a_second_up_after_a_kill_recovers(state_dir: Path, node_cluster: Cluster) -> None:
    (port,) = free_ports(1)
    first = tjctl(
        "up", "--node", "kubelet", "--state-dir", str(state_dir), "--apiserver-port", str(port)
    )
    assert first.returncode == 0, first.stderr
    config = ClusterConfig.load(state_dir)
    assert config is not None
    plane = ControlPlane(config, node_cluster.tools)
    # A pod, so that a shim and container processes are left over too.
    kubeconfig = str(config.kubeconfig)
    kubectl = [str(node_cluster.kubectl_path), f"--kubeconfig={kubeconfig}"]
    subprocess.run(
        [*kubectl, "run", "left", "--image=localhost/tj-pause:1", "--restart=Never"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Ready", "pod/left", "--timeout=90s"],
        check=True,
        capture_output=True,
    )
    for pid in plane.running().values():  # as a crash or an OOM kill would
        if pid:
            os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    assert plane._node().shim_pids(), "the kill should have left containerd shims behind"

    second = tjctl("up", "--node", "kubelet", "--state-dir", str(state_dir))
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    assert all(plane.running().values())
    status = tjctl("status", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout
    assert "kubelet" in status.stdout and "API ready:  True" in status.stdout
    nodes = subprocess.run(
        [*kubectl, "get", "node", config.node_name, "-o", "jsonpath={.status.conditions}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"type":"Ready"' in nodes.stdout.replace(" ", "")

    down = tjctl("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert not netns.exists(config.netns)
    assert not plane._node().shim_pids()
    assert not state_dir.exists()
