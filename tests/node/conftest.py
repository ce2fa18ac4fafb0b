"""Fixtures of the node tier: the dev cluster with a real node (``--node kubelet``), our
real images loaded into its containerd, and the chart installed unchanged.

- ``node_cluster`` (session): tools built or found, both images built (or found) with
  ``tjctl images build`` and loaded, then etcd, kube-apiserver, controller-manager,
  scheduler, containerd, kubelet and kube-proxy inside a network namespace with no route
  off the machine, on a free host port in a temp dir (never the user's dev cluster); all
  stopped and removed at the end. A :class:`tjdevcluster.testing.Cluster`.
- ``release`` (module): the chart installed with ``ci/dev-cluster-values.yaml`` into a
  namespace that enforces the restricted Pod Security Standard, with a synthetic dataset
  written by the chart's hook Job; a :class:`Release` to drive it. A test module may add
  ``helm --set`` arguments by defining its own ``release_values`` fixture.

Needs root (namespaces, mounts, cgroups). If something cannot be built or started, every
test of the tier fails with the reason; none is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tjdevcluster.controlplane import ControlPlaneError
from tjdevcluster.netns import NetnsError
from tjdevcluster.node import NodeError
from tjdevcluster.procs import PortInUseError
from tjdevcluster.testing import Cluster, running_cluster, wait_for
from tjdevcluster.tools import ToolsError, ensure_tools

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHART = ROOT / "helm" / "trainingjob-operator"
VALUES = CHART / "ci" / "dev-cluster-values.yaml"
RELEASE = "tj"
FULLNAME = f"{RELEASE}-trainingjob-operator"
FINAL = ("Succeeded", "Failed", "Cancelled")
MISSING_IMAGE = "localhost/trainingjob-trainer:not-loaded"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/node carries the ``node`` marker."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.node)


def _log(message: str) -> None:
    print(message, flush=True)


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A control plane with a real kubelet node and both images loaded."""
    if os.geteuid() != 0:
        pytest.fail("the node tier needs root (network namespace, mounts, cgroups)", pytrace=False)
    from tjdevcluster import dockerd
    from tjdevcluster.imagecache import ImagesError
    from tjdevcluster.images import build_images, load_images

    try:
        tools = ensure_tools(log=_log)
    except ToolsError as exc:
        pytest.fail(f"cluster tools could not be built: {exc}", pytrace=False)
    state = tmp_path_factory.mktemp("nodecluster")
    try:
        with running_cluster(state, tools, log=_log, node="kubelet") as cluster:
            with dockerd.running(_log) as engine:
                images = build_images(_log, engine=engine)
                socket = cluster.control_plane.config.containerd_socket
                load_images(socket, [info.ref for info in images.values()], _log, engine)
            yield cluster
    except (ControlPlaneError, PortInUseError, NetnsError, NodeError, ImagesError) as exc:
        pytest.fail(f"the real node did not start: {exc}", pytrace=False)


@dataclass
class Release:
    """The chart installed in one namespace of the real node, and ways to look at it."""

    cluster: Cluster
    namespace: str

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.namespace, *args, **kwargs)

    def get(self, *args: str) -> Any:
        return self.cluster.get_json(*args, "-n", self.namespace)

    def status(self, name: str) -> dict[str, Any]:
        return self.get("trainingjob", name).get("status") or {}

    def wait_phase(self, name: str, timeout: float = 300) -> dict[str, Any]:
        """Wait for a final phase of TrainingJob ``name``; its status."""

        def final() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("phase") in FINAL else None

        try:
            return wait_for(final, timeout, f"TrainingJob {name} to finish", interval=1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnose(name)}") from None

    def wait_trials(self, name: str, at_least: int, timeout: float = 240) -> dict[str, Any]:
        """Wait until ``at_least`` trials of TrainingJob ``name`` have finished."""

        def enough() -> dict[str, Any] | None:
            status = self.status(name)
            done = int(str(status.get("trial") or "0/0").split("/")[0])
            if status.get("phase") in FINAL:
                raise AssertionError(f"{name} ended before {at_least} trials: {status}")
            return status if done >= at_least else None

        return wait_for(enough, timeout, f"{at_least} trials of {name}", interval=0.5)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return list(self.get("pods", "-l", selector)["items"])

    def trainer_pods(self, name: str) -> list[dict[str, Any]]:
        return self.pods(f"job-name={name}-train")

    def ui(self, *argv: str) -> str:
        """Run a command in the UI container (uid 10001, the shared volume mounted)."""
        return self.kubectl("exec", f"deploy/{FULLNAME}-ui", "-c", "ui", "--", *argv).stdout

    def rows(self) -> list[dict[str, Any]]:
        """The training_jobs table, read by ``tjctl jobs`` inside the UI pod."""
        return list(json.loads(self.ui("tjctl", "jobs", "-o", "json", "--limit", "100")))

    def diagnose(self, name: str) -> str:
        """What a failing test prints: the TrainingJob, its pods and the operator's log."""
        parts = [
            self.kubectl("get", "trainingjob", name, "-o", "yaml", check=False).stdout,
            self.kubectl("get", "pods,jobs", "-o", "wide", check=False).stdout,
            self.kubectl("logs", f"deploy/{FULLNAME}", "--tail=60", check=False).stdout,
        ]
        return "\n".join(parts)


@pytest.fixture(scope="module")
def release_values() -> list[str]:
    """Extra ``helm install`` arguments of a module's release (none by default)."""
    return []


@pytest.fixture(scope="module")
def release(
    node_cluster: Cluster, request: pytest.FixtureRequest, release_values: list[str]
) -> Iterator[Release]:
    """The chart in a restricted namespace of the real node, with a 15m dataset."""
    namespace = f"tj-{request.module.__name__.rsplit('.', 1)[-1].replace('_', '-')[:40]}"
    node_cluster.kubectl("create", "namespace", namespace)
    node_cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    started = time.monotonic()
    node_cluster.helm_run(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "-f",
        str(VALUES),
        "--set",
        "syntheticDataset.enabled=true",
        "--set",
        "syntheticDataset.rows=20000",
        "--set",
        "operator.imagePullTimeoutSeconds=20",
        "--set",
        "operator.cancelGraceSeconds=60",
        # The image test_a_missing_trainer_image_is_named names: allowed, never loaded.
        "--set-json",
        f"trainer.allowedImages={json.dumps([MISSING_IMAGE])}",
        *release_values,
        "--wait",
        "--wait-for-jobs",
        "--timeout=6m",
        timeout=420,
    )
    _log(f"helm install on the real node took {time.monotonic() - started:.0f} s")
    yield Release(node_cluster, namespace)
    node_cluster.helm_run("uninstall", RELEASE, "--namespace", namespace, check=False)
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
