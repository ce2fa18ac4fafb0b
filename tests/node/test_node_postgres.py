"""The chart's own PostgreSQL (postgresql.enabled) on the real node, from the image
``tjctl images build`` makes (localhost/trainingjob-postgres), and a TrainingJob with
``workers: 3`` whose three trainer pods share one study per model in it.

The node has no cluster DNS, so the Service gets a fixed cluster IP (postgresql.clusterIP)
that the chart's database URL names. The test reads the table and the studies through the
store and Optuna over ``kubectl port-forward`` to the Service on loopback.
"""

from __future__ import annotations

import base64
import copy
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.node.conftest import FULLNAME, ROOT, Release
from tjcore.store import JobStore
from tjdevcluster.images import image_ref
from tjdevcluster.testing import wait_for
from tjtrainer.versions import VERSION_NAME

POSTGRES = f"{FULLNAME}-postgresql"
CLUSTER_IP = "10.96.0.12"  # in the static band of the service range 10.96.0.0/24
N_TRIALS = 3
EXAMPLE = yaml.safe_load((ROOT / "manifests" / "examples" / "trainingjob-15m.yaml").read_text())


@pytest.fixture(scope="module")
def release_values() -> list[str]:
    # The image itself: ci/dev-cluster-values.yaml names the one tjctl images build loads.
    return [
        "--set",
        "postgresql.enabled=true",
        "--set",
        "postgresql.storageClassName=standard",
        "--set",
        f"postgresql.clusterIP={CLUSTER_IP}",
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def database_url(release: Release) -> Iterator[str]:
    """The chart's server on a loopback port of this machine (kubectl port-forward)."""
    secret = release.get("secret", POSTGRES)
    password = base64.b64decode(secret["data"]["password"]).decode()
    port = _free_port()
    forward = subprocess.Popen(
        [
            str(release.cluster.kubectl_path),
            f"--kubeconfig={release.cluster.kubeconfig}",
            "-n",
            release.namespace,
            "port-forward",
            "--address=127.0.0.1",
            f"svc/{POSTGRES}",
            f"{port}:5432",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def listening() -> bool | None:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0 or None

        wait_for(listening, 30, "kubectl port-forward to the PostgreSQL Service")
        yield f"postgresql+psycopg://tj:{password}@127.0.0.1:{port}/trainingjobs"
    finally:
        forward.terminate()
        forward.wait(10)


def test_the_server_runs_from_our_image_as_999(release: Release) -> None:
    (pod,) = release.pods("app.kubernetes.io/component=postgresql")
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["image"].endswith(image_ref("postgres"))
    assert release.kubectl("exec", pod["metadata"]["name"], "--", "id", "-u").stdout.strip() == (
        "999"
    )
    service = release.get("service", POSTGRES)
    assert service["spec"]["clusterIP"] == CLUSTER_IP


def test_three_workers_share_the_charts_postgresql(release: Release, database_url: str) -> None:
    name = "node-workers"
    manifest: dict[str, Any] = copy.deepcopy(EXAMPLE)
    manifest["metadata"]["name"] = name
    manifest["spec"].update(nTrials=N_TRIALS, workers=3, parallelism=1)
    release.apply(manifest)
    status = release.wait_phase(name, timeout=600)
    assert status["phase"] == "Succeeded", release.diagnose(name)
    assert status["trial"] == f"{2 * N_TRIALS}/{2 * N_TRIALS}"

    pods = release.trainer_pods(name)
    indexes = sorted(
        p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods
    )
    assert indexes == ["0", "1", "2"], indexes

    # The row, read through the store from here.
    store = JobStore(database_url, readonly=True)
    try:
        row = store.get_by_name(release.namespace, name)
    finally:
        store.close()
    assert row is not None and row.status == "completed", row
    assert row.model_version == status["modelVersion"]

    # Exactly nTrials finished trials per model: 2 x nTrials in the shared studies.
    storage = optuna.storages.RDBStorage(database_url)
    try:
        finished = 0
        for study_name in optuna.study.get_all_study_names(storage):
            trials = optuna.load_study(study_name=study_name, storage=storage).get_trials()
            done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
            assert len(done) == N_TRIALS, (study_name, trials)
            finished += len(done)
    finally:
        storage.engine.dispose()
    assert finished == 2 * N_TRIALS

    # One model version on the shared volume: this run's.
    listing = release.ui("ls", "/shared/models").split()
    assert [entry for entry in listing if VERSION_NAME.fullmatch(entry)] == [status["modelVersion"]]
