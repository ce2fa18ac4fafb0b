"""``dev-cluster up | status | kubeconfig | down`` as a user runs them (a second control
plane, on its own free ports and state dir)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import psutil

from tjdevcluster.procs import free_ports
from tjdevcluster.testing import Cluster


def dev_cluster(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tjdevcluster", "dev-cluster", *args, f"--state-dir={state}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_port_in_use_is_named(cluster: Cluster, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        etcd, peer = free_ports(2)
        res = dev_cluster(
            tmp_path / "c", "up", f"--apiserver-port={port}",
            f"--etcd-port={etcd}", f"--etcd-peer-port={peer}",
        )  # fmt: skip
    assert res.returncode == 1
    assert f"port {port}" in res.stderr and "kube-apiserver" in res.stderr


def test_up_twice_status_kubeconfig_down(cluster: Cluster, tmp_path: Path) -> None:
    state = tmp_path / "c"
    api, etcd, peer = free_ports(3)
    ports = [f"--apiserver-port={api}", f"--etcd-port={etcd}", f"--etcd-peer-port={peer}"]
    first = dev_cluster(state, "up", *ports)
    try:
        assert first.returncode == 0, first.stderr
        assert f"export KUBECONFIG={state / 'kubeconfig'}" in first.stdout
        second = dev_cluster(state, "up")
        assert second.returncode == 0 and "already running" in second.stderr
        status = dev_cluster(state, "status", "--json")
        assert status.returncode == 0, status.stdout
        pids = [p for p in json.loads(status.stdout)["processes"].values() if p]
        assert len(pids) == 4
        kubeconfig = dev_cluster(state, "kubeconfig").stdout.strip()
        argv = [str(cluster.kubectl_path), f"--kubeconfig={kubeconfig}", "get", "nodes", "-oname"]
        nodes = subprocess.run(argv, capture_output=True, text=True, check=True)
        assert nodes.stdout.strip() == "node/tj-dev-node"
    finally:
        down = dev_cluster(state, "down")
    assert down.returncode == 0
    assert not state.exists()
    assert not [p for p in pids if alive(p)]
    assert dev_cluster(state, "status").returncode == 1
