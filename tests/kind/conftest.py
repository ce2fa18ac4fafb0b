"""Fixtures of the kind tier: ``make kind-up`` as a user runs it, then ``make kind-down``.

Every test under tests/kind carries the ``kind`` marker and runs only when asked for
(``pytest -m kind``, ``make kind-e2e``): a plain ``pytest`` or another ``-m`` expression
deselects them, since a cold run builds a node image (see docs/INSTALL.md for the figures).

- ``host_before`` (session): the host's iptables rules, ``ip_forward`` and whether
  ``/lib/modules`` exists, before anything starts;
- ``kind_cluster`` (session): ``make kind-up`` with a copy of the example that trains fewer
  trials, a kubeconfig of its own; ``make kind-down`` at the end (again, if a test did not).

On a machine without a Docker engine (this one, CI) ``make kind-up`` starts the project's
own engine, which needs root. If kind-up fails, every test of the tier fails with its
output; none is skipped.
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
import yaml

from tjdevcluster import netns

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NAMESPACE = "trainingjob"
RELEASE = "trainingjob-operator"
CLUSTER = "tj-kind-e2e"
EXAMPLE_NAME = "kind-demo"
EXAMPLE_TRIALS = 25
FINAL = ("Succeeded", "Failed", "Cancelled")
# Seconds measured by the tier (make kind-up, the example, apply -> Succeeded, kind-down),
# printed at the end of the run: the figures of docs/INSTALL.md.
FIGURES: dict[str, float] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tier's tests ``kind``; deselect them unless the -m expression names kind."""
    mine = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    for item in mine:
        item.add_marker(pytest.mark.kind)
    if "kind" in (config.option.markexpr or ""):
        return
    if mine:
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if item not in mine]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("kind tier figures (seconds)")
        for name, seconds in FIGURES.items():
            terminalreporter.write_line(f"{name}: {seconds:.0f}")


def _log(message: str) -> None:
    print(message, flush=True)


def host_iptables() -> str:
    """The host's rules of every table (counters dropped), as iptables-save prints them."""
    out = []
    for table in ("filter", "nat", "mangle", "raw"):
        result = subprocess.run(
            ["iptables-save", "-t", table], capture_output=True, text=True, check=False
        )
        out += [
            line
            for line in result.stdout.splitlines()
            if line and not line.startswith("#") and not line.startswith(":")
        ]
    return "\n".join(out)


@dataclass
class HostState:
    iptables: str
    ip_forward: str
    lib_modules: bool


@pytest.fixture(scope="session")
def host_before() -> HostState:
    return HostState(host_iptables(), netns.host_ip_forward(), Path("/lib/modules").exists())


@dataclass
class KindCluster:
    """The cluster of ``make kind-up``, and ways to drive it from the host."""

    env: dict[str, str]
    kubeconfig: Path
    up_seconds: float
    up_output: str
    figures: dict[str, float]
    down_output: str | None = None

    def make(self, target: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", target],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    def get(self, *args: str) -> Any:
        return yaml.safe_load(self.kubectl("get", "-n", NAMESPACE, "-o", "json", *args).stdout)

    def status(self, name: str) -> dict[str, Any]:
        return self.get("trainingjob", name).get("status") or {}

    def diagnose(self, name: str) -> str:
        parts = [
            self.kubectl("get", "trainingjob", name, "-n", NAMESPACE, "-o", "yaml", check=False),
            self.kubectl("get", "pods,jobs,pvc", "-n", NAMESPACE, "-o", "wide", check=False),
            self.kubectl("logs", "-n", NAMESPACE, f"deploy/{RELEASE}", "--tail=60", check=False),
        ]
        return "\n".join(p.stdout + p.stderr for p in parts)


def _example(path: Path) -> Path:
    """The example of kind-up (manifests/examples/trainingjob-demo.yaml) with fewer trials."""
    manifest = yaml.safe_load((ROOT / "manifests/examples/trainingjob-demo.yaml").read_text())
    manifest["metadata"]["name"] = EXAMPLE_NAME
    manifest["spec"]["nTrials"] = EXAMPLE_TRIALS
    path.write_text(yaml.safe_dump(manifest))
    return path


@pytest.fixture(scope="session")
def kind_cluster(
    tmp_path_factory: pytest.TempPathFactory, host_before: HostState
) -> Iterator[KindCluster]:
    tmp = tmp_path_factory.mktemp("kind")
    kubeconfig = tmp / "kubeconfig"
    env = dict(os.environ)
    env.update(
        KIND_CLUSTER=CLUSTER,
        KUBECONFIG=str(kubeconfig),
        TJ_EXAMPLE=str(_example(tmp / "example.yaml")),
    )
    started = time.monotonic()
    up = subprocess.run(
        ["make", "-s", "kind-up"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600
    )
    seconds = time.monotonic() - started
    FIGURES["make kind-up"] = seconds
    output = up.stdout + up.stderr
    # docker, kind, kubectl and helm as kind-up used them (the project's engine's, if any).
    exports = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "tjdevcluster.kind_cli", "env", "--json"],
        capture_output=True,
        text=True,
    )
    if exports.returncode == 0:
        values = json.loads(exports.stdout)
        env["PATH"] = values.pop("PATH_PREPEND") + ":" + env["PATH"]
        env.update(values)
    cluster = KindCluster(env, kubeconfig, seconds, output, FIGURES)
    try:
        if up.returncode != 0:
            pytest.fail(f"make kind-up failed (exit {up.returncode}):\n{output[-6000:]}")
        yield cluster
    finally:
        if cluster.down_output is None:
            down = cluster.make("kind-down", timeout=600)
            _log(down.stdout + down.stderr)
