"""The plain manifests for users without Helm: they are the chart's objects (rendered by
manifests/render_install.py, so the two never drift), and the API server accepts them and
the examples (`kubectl apply --dry-run=server`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tjdevcluster.testing import wait_for

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
NAMESPACE = "trainingjob"  # the namespace of manifests/install/


def test_install_manifests_are_the_rendered_chart(cluster: Any) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(MANIFESTS / "render_install.py"),
            "--check",
            "--helm",
            str(cluster.helm),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_server_side_dry_run_accepts_the_manifests_and_the_examples(cluster: Any) -> None:
    install = MANIFESTS / "install"
    cluster.kubectl("apply", "-f", str(MANIFESTS / "crd.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/trainingjobs.mltraining.dev"
    )
    # The namespace for real: the dry run of the objects in it needs it to exist.
    cluster.kubectl("apply", "-f", str(install / "00-namespace.yaml"))
    try:
        result = cluster.kubectl(
            "apply", "--dry-run=server", "-f", str(install), "-f", str(install / "ui")
        )
        applied = result.stdout.splitlines()
        assert all(line.endswith("(server dry run)") for line in applied), result.stdout
        kinds = sorted({line.split("/", 1)[0] for line in applied})
        assert kinds == [
            "clusterrole.rbac.authorization.k8s.io",
            "clusterrolebinding.rbac.authorization.k8s.io",
            "deployment.apps",
            "namespace",
            "networkpolicy.networking.k8s.io",
            "persistentvolumeclaim",
            "role.rbac.authorization.k8s.io",
            "rolebinding.rbac.authorization.k8s.io",
            "service",
            "serviceaccount",
        ]
        # The namespace warns on (and enforces) the "restricted" Pod Security Standard.
        assert "violate PodSecurity" not in result.stderr, result.stderr

        examples = cluster.kubectl(
            "apply", "--dry-run=server", "-n", NAMESPACE, "-f", str(MANIFESTS / "examples")
        )
        assert examples.stdout.count("trainingjob.mltraining.dev/") == len(
            list((MANIFESTS / "examples").glob("*.yaml"))
        ), examples.stdout
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_the_dataset_build_job_turns_candles_on_the_volume_into_a_dataset(
    cluster: Any, namespace: str
) -> None:
    """manifests/jobs/dataset-build.yaml, as docs/INSTALL.md has a user run it (the pod
    harness runs its command; the CSV is put where `kubectl cp` would put it)."""
    from tjtrainer.synth import synth_candles

    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    job = yaml.safe_load((MANIFESTS / "jobs" / "dataset-build.yaml").read_text())
    claim = job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    shared = cluster.pvc_dir(claim)
    synth_candles("15m", 2000, seed=3).to_csv(shared / "candles_15m.csv", index=False)
    dataset = shared / "datasets" / "15m" / "dataset.parquet"
    dataset.unlink(missing_ok=True)

    cluster.kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "jobs" / "dataset-build.yaml"))
    cluster.wait_job(namespace, job["metadata"]["name"], "Complete", timeout=120)
    assert wait_for(dataset.exists, 10, "the dataset file")
    info = json.loads((dataset.parent / "dataset.json").read_text())
    assert info["timeframe"] == "15m"
