"""Test-side view of a running local control plane (used by tests/cluster/conftest.py
and bench/cluster_startup.py). Development and test scaffolding."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .controlplane import ClusterConfig, ControlPlane
from .podspec import pvc_dir
from .procs import free_ports
from .tools import Tools

T = TypeVar("T")


@dataclass
class Cluster:
    """A running local control plane, as the tests see it."""

    kubeconfig: Path
    server: str
    state_dir: Path
    volumes_root: Path
    node_name: str
    tools: Tools
    control_plane: ControlPlane

    @property
    def api_server_url(self) -> str:
        return self.server

    @property
    def kubectl_path(self) -> Path:
        return self.tools.kubectl

    @property
    def helm(self) -> Path:
        return self.tools.helm

    @property
    def env(self) -> dict[str, str]:
        """os.environ with KUBECONFIG pointing at this cluster, for subprocesses."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def pvc_dir(self, claim_name: str) -> Path:
        """The local folder that backs every PVC named claim_name (created if missing)."""
        folder = pvc_dir(self.volumes_root, claim_name)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _run(
        self, argv: list[str], check: bool, input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster (text mode)."""
        argv = [str(self.tools.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        return self._run(argv, check, input, timeout)

    def helm_run(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm against this cluster."""
        argv = [str(self.tools.helm), f"--kubeconfig={self.kubeconfig}", *args]
        return self._run(argv, check, input, timeout)

    def get_json(self, *args: str) -> Any:
        """``kubectl get ARGS -o json`` parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient for this cluster (admin)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def pod_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """The harness's log file of a pod's container (first container if None)."""
        logs = self.state_dir / "logs" / "pods" / namespace
        pattern = f"{pod}-*/{container or '*'}.log"
        files = sorted(logs.glob(pattern), key=lambda p: p.stat().st_mtime)
        return files[-1].read_text(errors="replace") if files else ""

    def wait_job(
        self, namespace: str, name: str, condition: str = "Complete", timeout: float = 60
    ) -> Any:
        """Wait until a Job has condition (Complete/Failed) True; return the Job as JSON."""

        def done() -> Any:
            job = self.get_json("job", name, "-n", namespace)
            conds = job.get("status", {}).get("conditions") or []
            hit = {c["type"] for c in conds if c["status"] == "True"}
            other = {"Complete": "Failed", "Failed": "Complete"}.get(condition)
            if other in hit:
                raise AssertionError(f"job {name} reached {other}, not {condition}: {conds}")
            return job if condition in hit else None

        return wait_for(done, timeout, f"job {namespace}/{name} {condition}")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll check() until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def running_cluster(
    state_dir: Path, tools: Tools, log: Callable[[str], None] = print, node: str = "harness"
) -> Iterator[Cluster]:
    """Start a control plane and its node (``harness`` or a real ``kubelet``) on free ports
    in state_dir; stop every process at the end (the state dir, with its logs, is left in
    place; a real node's mounts, cgroups and network namespace are removed)."""
    api_port, etcd_port, peer_port = free_ports(3)
    cfg = ClusterConfig(
        state_dir=state_dir,
        apiserver_port=api_port,
        etcd_port=etcd_port,
        etcd_peer_port=peer_port,
        node=node,
    )
    control_plane = ControlPlane(cfg, tools)
    try:
        control_plane.up(log=log)
        assert cfg.volumes_root is not None
        yield Cluster(
            kubeconfig=cfg.kubeconfig,
            server=cfg.server,
            state_dir=cfg.state_dir,
            volumes_root=cfg.volumes_root,
            node_name=cfg.node_name,
            tools=tools,
            control_plane=control_plane,
        )
    finally:
        control_plane.stop_processes()
