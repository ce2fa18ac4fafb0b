"""Ways in through a TrainingJob, on the real control plane with the real operator:

- ``spec.image`` outside the operator's allow-list ends Failed / InvalidSpec, naming the
  allowed images, and no Job (so no pod) is made; the CRD itself stays permissive;
- a trainer pod mounts only its run folder, ``datasets/`` read-only and ``models/``
  (subPath mounts), never the volume's root with the table and other runs' folders, and
  still runs to Succeeded (the pod harness maps the subPath mounts like a kubelet; the
  real node tier, tests/node, runs the same Job on containerd).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.operator_env import (
    OperatorEnv,
    running_operator,
)

OWN_CLAIM = "tj-confinement"
TRAINER_IMAGE = "localhost/trainingjob-trainer:0.1.0"
ALSO_ALLOWED = "localhost/trainingjob-trainer:0.2.0"


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    with running_operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        claim=OWN_CLAIM,
        env={"TJ_TRAINER_IMAGE": TRAINER_IMAGE, "TJ_ALLOWED_TRAINER_IMAGES": ALSO_ALLOWED},
    ) as env:
        yield env


def test_an_image_outside_the_allow_list_fails_as_invalid_spec(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "foreign", timeframe="15m", nTrials=2, image="attacker/miner:latest")
    status = env.wait_phase(namespace, "foreign", "Failed", "Running", "Succeeded", timeout=60)
    assert status["phase"] == "Failed", status
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "InvalidSpec"
    assert "'attacker/miner:latest' is not an allowed trainer image" in status["message"]
    assert f"allowed: {TRAINER_IMAGE}, {ALSO_ALLOWED}" in status["message"]
    assert env.jobs_of(namespace, "foreign") == []


def test_the_trainer_pod_mounts_only_what_it_needs_and_succeeds(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "confined", timeframe="15m", nTrials=2, seed=2, image=ALSO_ALLOWED)
    pod = env.wait_for(
        "the trainer pod", lambda: next(iter(env.pods_of(namespace, "confined")), None)
    )
    container = pod["spec"]["containers"][0]
    assert container["image"] == ALSO_ALLOWED
    job = env.get(namespace, "confined")
    assert job is not None
    folder = f"runs/{namespace}/confined-{job['metadata']['uid']}"
    shared = {m["mountPath"]: m for m in container["volumeMounts"] if m["name"] == "shared"}
    assert {path: (m.get("subPath"), m.get("readOnly", False)) for path, m in shared.items()} == {
        f"/shared/{folder}": (folder, False),
        "/shared/datasets": ("datasets", True),
        "/shared/models": ("models", False),
    }
    status = env.wait_phase(namespace, "confined", "Succeeded", "Failed", timeout=240)
    assert status["phase"] == "Succeeded", status
    version = status["modelVersion"]
    assert (env.shared / "models" / version).is_dir()
    run_dir = env.run_dir(namespace, "confined")
    assert run_dir is not None and (run_dir / "progress.json").is_file()
