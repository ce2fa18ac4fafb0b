"""The plain manifests for users without Helm: they are the chart's objects (rendered by
manifests/render_install.py, so the two never drift), and the API server accepts them and
the examples (`kubectl apply --dry-run=server`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

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
