"""The ETA of a TrainingJob (status.etaSeconds / eta / etaAt and the ETA column of
``kubectl get``) with the real operator and trainer on the real control plane."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.cluster.operator_env import OperatorEnv, running_operator

# 300 trials: long enough for the ETA, in whole seconds, to fall while it runs (with 60,
# trials of a few tens of ms left it at 1 s throughout), short enough to finish.
SPEC = {"timeframe": "15m", "nTrials": 150, "trainRatio": 0.8, "seed": 2, "parallelism": 2}


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    with running_operator(cluster, tmp_path_factory.mktemp("eta")) as env:
        yield env


def _eta_column(env: OperatorEnv, namespace: str, name: str) -> str:
    header, line = env.kubectl("get", "trainingjobs", name, "-n", namespace).stdout.splitlines()
    start = header.index("ETA")
    return line[start:].split()[0]


def test_a_running_trainingjob_has_an_eta_that_decreases_and_none_once_it_ended(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "eta", **SPEC)
    early = env.wait_for(
        "an ETA while running",
        lambda: (lambda s: s if s.get("phase") == "Running" and s.get("etaSeconds") else None)(
            env.status(namespace, "eta")
        ),
    )
    assert early["eta"] and early["etaSeconds"] > 0, early
    assert datetime.fromisoformat(early["etaAt"].replace("Z", "+00:00")) > datetime.fromisoformat(
        early["startedAt"].replace("Z", "+00:00")
    )
    env.wait_for(
        "the ETA column to show status.eta",
        lambda: _eta_column(env, namespace, "eta") == env.status(namespace, "eta").get("eta"),
        timeout=30,
    )
    # Every ETA the status shows while running, until the run ends.
    seen: dict[int, int] = {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        now = env.status(namespace, "eta")
        if now.get("phase") != "Running":
            break
        if now.get("etaSeconds") is not None:
            seen[now["currentTrial"]] = now["etaSeconds"]
        time.sleep(0.25)
    print("trial -> etaSeconds:", seen)
    trials = sorted(seen)
    assert len(trials) >= 3 and trials[-1] - trials[0] >= 20, seen
    assert seen[trials[-1]] < seen[trials[0]], seen
    status = env.wait_phase(namespace, "eta", "Succeeded", "Failed", "Cancelled", timeout=300)
    assert status["phase"] == "Succeeded", status
    for key in ("etaSeconds", "eta", "etaAt"):
        assert key not in status, status
    print(env.kubectl("get", "trainingjobs", "eta", "-n", namespace).stdout)
