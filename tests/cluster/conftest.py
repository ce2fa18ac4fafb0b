"""Fixtures of the cluster tier: a real control plane + pod harness (tjdevcluster).

- ``cluster`` (session): etcd, kube-apiserver, kube-controller-manager and the pod harness
  on free loopback ports in a temp dir (never the user's dev cluster), all stopped at the
  end. It is a :class:`tjdevcluster.testing.Cluster`: ``kubeconfig``, ``server`` /
  ``api_server_url``, ``pvc_dir(claim)``, ``kubectl(*args, check=True, input=None)``,
  ``helm`` (path), ``helm_run(*args)``, ``env``, ``get_json``, ``wait_job``, ``pod_log``...
- ``namespace`` (function): a fresh namespace per test, deleted afterwards.

If the pinned tools cannot be built, or the control plane does not start, every test of
the tier fails with the reason; nothing is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tjdevcluster.controlplane import ControlPlaneError
from tjdevcluster.procs import PortInUseError
from tjdevcluster.testing import Cluster, running_cluster, wait_for
from tjdevcluster.tools import ToolsError, ensure_tools

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/cluster carries the ``cluster`` marker."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cluster)


def _log(message: str) -> None:
    print(message, flush=True)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A control plane + pod harness on free ports in a temp dir, for the whole session."""
    try:
        tools = ensure_tools(log=_log)
    except ToolsError as exc:
        pytest.fail(f"cluster tools could not be built: {exc}", pytrace=False)
    state = tmp_path_factory.mktemp("devcluster")
    try:
        with running_cluster(state, tools, log=_log) as running:
            yield running
    except (ControlPlaneError, PortInUseError) as exc:
        pytest.fail(f"control plane did not start: {exc}", pytrace=False)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test; deleted (without waiting) afterwards."""
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:40]
    name = f"{base.strip('-')}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)

    def has_default_sa() -> bool:
        res = cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False)
        return res.returncode == 0

    wait_for(has_default_sa, 30, f"the default service account in {name}")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
