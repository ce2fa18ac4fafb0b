"""``kubectl tj`` (the kubectl-tj script of the package) run by the real kubectl against
the real control plane, with the real operator and trainer behind it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.operator_env import OperatorEnv, running_operator

LONG = {"timeframe": "15m", "nTrials": 400, "trainRatio": 0.8, "seed": 3}
VENV_BIN = Path(sys.executable).parent
FINAL = ("Succeeded", "Failed", "Cancelled")


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    with running_operator(
        cluster, tmp_path_factory.mktemp("plugin"), env={"TJ_CANCEL_GRACE_SECONDS": "30"}
    ) as env:
        yield env


def kubectl_tj(
    env: OperatorEnv, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``kubectl tj ARGS`` as a user types it: kubectl finds kubectl-tj on PATH."""
    kubectl_dir = str(Path(env.cluster.kubectl_path).parent)
    process_env = {
        **os.environ,
        "PATH": os.pathsep.join([kubectl_dir, str(VENV_BIN), os.environ.get("PATH", "")]),
        "KUBECONFIG": str(kubeconfig or env.cluster.kubeconfig),
        "DATABASE_URL": env.store.url,
    }
    assert shutil.which("kubectl-tj", path=process_env["PATH"]), "kubectl-tj is not installed"
    return subprocess.run(
        ["kubectl", "tj", *args],
        env=process_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _kubectl_on(env: OperatorEnv, kubeconfig: Path, *args: str) -> str:
    return subprocess.run(
        [str(env.cluster.kubectl_path), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


def _kubeconfig_in(env: OperatorEnv, tmp_path: Path, namespace: str) -> Path:
    """A copy of the cluster's kubeconfig whose current context has ``namespace``."""
    copy = tmp_path / "kubeconfig"
    shutil.copy(env.cluster.kubeconfig, copy)
    _kubectl_on(env, copy, "config", "set-context", "--current", f"--namespace={namespace}")
    return copy


def test_trials_then_cancel_of_a_running_trainingjob(
    env: OperatorEnv, namespace: str, tmp_path: Path
) -> None:
    env.apply(namespace, "plugged", **LONG)
    env.wait_trials(namespace, "plugged", 3)
    # The namespace comes from the context when -n is not given.
    kubeconfig = _kubeconfig_in(env, tmp_path, namespace)
    shown = kubectl_tj(env, "trials", "plugged", kubeconfig=kubeconfig)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    print(shown.stdout)
    row = env.store.get_by_name(namespace, "plugged")
    assert row is not None
    assert lines[0].startswith(f"TrainingJob {namespace}/plugged (row {row.id}): Running")
    assert lines[1].split() == [
        "TRIAL",
        "MODEL",
        "STATE",
        "SPEARMAN",
        "BEST",
        "SO",
        "FAR",
        "SECONDS",
        "FINISHED",
    ]
    printed = [line.split() for line in lines[2:]]
    assert len(printed) >= 3
    assert [p[0] for p in printed[:3]] == ["1", "2", "3"] and printed[0][1] == "LONG"
    first = row.trial_log[0]
    assert printed[0][2] == first["state"] and printed[0][-1] == first["finished_at"]

    cancelled = kubectl_tj(env, "cancel", "plugged", "-n", namespace)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancel requested" in cancelled.stdout
    body = env.get(namespace, "plugged")
    assert body is not None and body["spec"]["cancel"] is True
    status = env.wait_phase(namespace, "plugged", "Cancelled", "Succeeded", "Failed")
    assert status["phase"] == "Cancelled", status

    again = kubectl_tj(env, "cancel", "plugged", "-n", namespace)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"error: TrainingJob {namespace}/plugged has already ended (Cancelled); nothing to cancel"
    )


def test_suspend_then_resume_then_cancel(env: OperatorEnv, namespace: str) -> None:
    env.apply(namespace, "paused", **LONG)
    before = env.wait_trials(namespace, "paused", 2)["currentTrial"]
    suspended = kubectl_tj(env, "suspend", "paused", "-n", namespace)
    assert suspended.returncode == 0, suspended.stderr
    assert "suspend requested" in suspended.stdout
    status = env.wait_phase(namespace, "paused", "Suspended", *FINAL)
    assert status["phase"] == "Suspended", status
    assert "etaSeconds" not in status, status  # no ETA while nothing runs
    held = env.status(namespace, "paused")["currentTrial"]
    assert held >= before

    resumed = kubectl_tj(env, "resume", "paused", "-n", namespace)
    assert resumed.returncode == 0, resumed.stderr
    assert "resume requested" in resumed.stdout
    body = env.get(namespace, "paused")
    assert body is not None and body["spec"]["suspend"] is False
    env.wait_trials(namespace, "paused", held + 2)
    assert env.status(namespace, "paused")["phase"] == "Running"

    assert kubectl_tj(env, "cancel", "paused", "-n", namespace).returncode == 0
    assert env.wait_phase(namespace, "paused", *FINAL)["phase"] == "Cancelled"
    late = kubectl_tj(env, "suspend", "paused", "-n", namespace)
    assert late.returncode == 1 and late.stderr.strip() == (
        f"error: TrainingJob {namespace}/paused has already ended (Cancelled); nothing to suspend"
    )


def test_errors_are_one_line(env: OperatorEnv, namespace: str, tmp_path: Path) -> None:
    missing = kubectl_tj(env, "trials", "nosuch", "-n", namespace)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip() == (
        f"error: no TrainingJob 'nosuch' in namespace '{namespace}'; "
        f"`kubectl get trainingjobs -n {namespace}` lists them"
    )
    missing = kubectl_tj(env, "cancel", "nosuch", "-n", namespace)
    assert missing.returncode == 1 and "error: no TrainingJob 'nosuch'" in missing.stderr

    # A kubeconfig whose server nothing listens on (a closed loopback port).
    nowhere = tmp_path / "nowhere"
    shutil.copy(env.cluster.kubeconfig, nowhere)
    cluster_name = _kubectl_on(
        env, nowhere, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].name}"
    ).strip()
    _kubectl_on(env, nowhere, "config", "set-cluster", cluster_name, "--server=https://127.0.0.1:1")
    down = kubectl_tj(env, "cancel", "any", "-n", namespace, kubeconfig=nowhere)
    assert down.returncode == 1
    [line] = down.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the cluster (") and "127.0.0.1:1" in line, line
