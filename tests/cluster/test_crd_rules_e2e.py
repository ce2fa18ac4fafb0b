"""The CRD's own rules, as the real kube-apiserver applies them (no operator needed):

- the spec is fixed once created — an edit of any field but ``cancel`` (the one field
  meant to change: the stop request) is refused with a message saying what to do, where it
  used to be accepted and then ignored;
- a namespace may be as long as Kubernetes allows (63), like ``tjctl run``'s manifests.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.cluster.operator_env import ROOT
from tjcore.spec import load_manifest


def apply_crd(cluster: Any) -> None:
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "crd.yaml"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/trainingjobs.mltraining.dev"
    )


def create(cluster: Any, namespace: str, name: str, **spec: Any) -> None:
    body = {
        "apiVersion": "mltraining.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"timeframe": "15m", **spec},
    }
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(body))


def patch(cluster: Any, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    return cluster.kubectl(
        "patch", "trainingjob", name, "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": spec}), check=False,
    )  # fmt: skip


def test_spec_edits_after_create_are_refused_but_cancel(cluster: Any, namespace: str) -> None:
    apply_crd(cluster)
    create(cluster, namespace, "fixed", nTrials=5)
    for edit in ({"nTrials": 50}, {"image": "other:1"}, {"resources": {"limits": {"cpu": "2"}}}):
        result = patch(cluster, namespace, "fixed", edit)
        assert result.returncode != 0, (edit, result.stdout)
        assert "spec is immutable once created" in result.stderr, result.stderr
        assert "except spec.cancel" in result.stderr
    stored = cluster.get_json("trainingjob", "fixed", "-n", namespace)["spec"]
    assert stored["nTrials"] == 5 and "image" not in stored
    cancelled = patch(cluster, namespace, "fixed", {"cancel": True})
    assert cancelled.returncode == 0, cancelled.stderr
    assert cluster.get_json("trainingjob", "fixed", "-n", namespace)["spec"]["cancel"] is True
    # Metadata (labels, annotations, kopf's finalizers) stays editable.
    labelled = cluster.kubectl("label", "trainingjob", "fixed", "-n", namespace, "team=ml")
    assert labelled.returncode == 0


def test_a_namespace_of_63_characters_is_accepted(cluster: Any, tmp_path: Any) -> None:
    apply_crd(cluster)
    long_namespace = ("ns-" + "x" * 70)[:63]
    cluster.kubectl("create", "namespace", long_namespace)
    try:
        create(cluster, long_namespace, "j")
        manifest = tmp_path / "tj.yaml"
        manifest.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "mltraining.dev/v1alpha1",
                    "kind": "TrainingJob",
                    "metadata": {"name": "j", "namespace": long_namespace},
                    "spec": {"timeframe": "15m"},
                }
            )
        )
        assert load_manifest(manifest).namespace == long_namespace
    finally:
        cluster.kubectl("delete", "namespace", long_namespace, "--wait=false", check=False)
