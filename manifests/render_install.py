"""Render manifests/install/ (plain YAML for users without Helm) from the Helm chart, so
that the two ways to install can never drift apart.

    .venv/bin/python manifests/render_install.py [--helm PATH] [--check]

The objects are the chart's with the release `trainingjob-operator` in the namespace
`trainingjob`, minus what only Helm understands (the chart label, the keep policy), and
with `app.kubernetes.io/managed-by: kubectl`. ``--check`` compares instead of writing and
exits 1 on a difference (the cluster tests run it).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "trainingjob-operator"
OUT = ROOT / "manifests" / "install"
NAMESPACE = "trainingjob"
RELEASE = "trainingjob-operator"
SETTINGS = ["persistence.keepOnUninstall=false", "ui.enabled=true"]
# The templates do not depend on it, but Chart.yaml's kubeVersion is checked against it, and
# a helm built without Helm's own ldflags (`go install`) assumes Kubernetes v1.20.
KUBE_VERSION = "v1.31.0"
HEADER = (
    "# Generated from helm/trainingjob-operator by manifests/render_install.py; do not edit.\n"
    '# Install: docs/INSTALL.md, "Without Helm".\n'
)
# Which file each kind goes to; the UI is apart so that `kubectl apply -f
# manifests/install/` (not recursive) installs everything but the UI.
FILES = {
    "ServiceAccount": "10-rbac.yaml",
    "ClusterRole": "10-rbac.yaml",
    "ClusterRoleBinding": "10-rbac.yaml",
    "Role": "10-rbac.yaml",
    "RoleBinding": "10-rbac.yaml",
    "PersistentVolumeClaim": "20-shared-pvc.yaml",
    "Deployment": "30-operator.yaml",
    "NetworkPolicy": "40-network-policy.yaml",
}
UI_FILE = "ui/ui.yaml"


def namespace_manifest() -> dict[str, Any]:
    """The namespace, enforcing the "restricted" Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "app.kubernetes.io/part-of": "trainingjob-operator",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        },
    }


def render_chart(helm: str) -> list[dict[str, Any]]:
    argv = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    argv += ["--kube-version", KUBE_VERSION]
    for setting in SETTINGS:
        argv += ["--set", setting]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _strip_helm(obj: Any) -> None:
    """Drop the Helm-only labels and annotations, everywhere in the object."""
    if isinstance(obj, dict):
        labels = obj.get("labels")
        if isinstance(labels, dict):
            labels.pop("helm.sh/chart", None)
            if labels.get("app.kubernetes.io/managed-by") == "Helm":
                labels["app.kubernetes.io/managed-by"] = "kubectl"
        annotations = obj.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop("helm.sh/resource-policy", None)
            if not annotations:
                del obj["annotations"]
        for value in obj.values():
            _strip_helm(value)
    elif isinstance(obj, list):
        for value in obj:
            _strip_helm(value)


def files_from(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The text of each file of manifests/install/, by relative path."""
    grouped: dict[str, list[dict[str, Any]]] = {"00-namespace.yaml": [namespace_manifest()]}
    for doc in docs:
        _strip_helm(doc)
        component = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        name = UI_FILE if component == "ui" else FILES.get(doc["kind"])
        if name is None:
            raise SystemExit(f"no file for {doc['kind']} {doc['metadata']['name']}")
        grouped.setdefault(name, []).append(doc)
    return {
        name: HEADER
        + "---\n".join(yaml.safe_dump(doc, sort_keys=False, width=100) for doc in docs_)
        for name, docs_ in sorted(grouped.items())
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helm", default=shutil.which("helm") or "helm", help="helm binary")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    wanted = files_from(render_chart(args.helm))
    present = {str(p.relative_to(OUT)): p.read_text() for p in OUT.rglob("*.yaml")}
    if args.check:
        if present != wanted:
            stale = sorted(
                k for k in wanted.keys() | present.keys() if wanted.get(k) != present.get(k)
            )
            print(f"manifests/install/ differs from the chart in: {', '.join(stale)}")
            print("regenerate with: .venv/bin/python manifests/render_install.py")
            return 1
        return 0
    for name in present.keys() - wanted.keys():
        (OUT / name).unlink()
    for name, text in wanted.items():
        (OUT / name).parent.mkdir(parents=True, exist_ok=True)
        (OUT / name).write_text(text)
    print(f"wrote {len(wanted)} files to {OUT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
