"""A ResourceQuota that leaves no room for the trainer pod (issue 12: "`workers` above what
the namespace's quota allows: a clear condition, not a stuck Pending"), with the real
`tjctl operator`, the real API server's quota admission, the real Job controller (it
posts FailedCreate) and, once the quota is gone, the pod harness running the trainer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.cluster.operator_env import OperatorEnv, running_operator

RUN = {"timeframe": "15m", "nTrials": 3, "trainRatio": 0.8, "seed": 3}


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    with running_operator(cluster, tmp_path_factory.mktemp("operator")) as env:
        yield env


def _running_condition(status: dict[str, Any]) -> dict[str, Any]:
    return {c["type"]: c for c in status.get("conditions") or []}.get("Running") or {}


def test_a_quota_with_no_room_names_itself_and_the_run_starts_once_it_is_lifted(
    env: OperatorEnv, namespace: str
) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "trainers", "namespace": namespace},
        "spec": {"hard": {"pods": "0"}},
    }
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(quota))
    env.wait_for(
        "the quota's status",
        lambda: env.kubectl(
            "get", "resourcequota", "trainers", "-n", namespace, "-o", "jsonpath={.status.hard}"
        ).stdout.strip(),
        30,
    )
    name = "no-room"
    env.apply(namespace, name, **RUN)

    def refused() -> dict[str, Any] | None:
        status = env.status(namespace, name)
        return (
            status if _running_condition(status or {}).get("reason") == "PodsNotCreated" else None
        )

    status = env.wait_for(f"{name} to say why no pod runs", refused, 90)
    assert status["phase"] == "Pending"
    message = status["message"]
    assert "exceeded quota: trainers" in message, message
    assert "ResourceQuota" in message and "spec.workers" in message
    events = env.kubectl(
        "get", "events", "-n", namespace, "--field-selector",
        f"involvedObject.name={name},involvedObject.kind=TrainingJob", "-o", "yaml",
    ).stdout  # fmt: skip
    assert "PodsNotCreated" in events and "Warning" in events

    env.kubectl("delete", "resourcequota", "trainers", "-n", namespace)
    status = env.wait_phase(namespace, name, "Succeeded", "Failed", "Cancelled", timeout=300)
    assert status["phase"] == "Succeeded", status
    assert status["trial"] == "6/6"
