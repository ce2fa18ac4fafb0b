"""Writing kubeconfig files for the local control plane."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from .pki import ClientCert

CONTEXT = "tj-dev"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    server: str,
    ca_cert: Path,
    client: ClientCert | None = None,
    token_file: Path | None = None,
    user: str = "tj-dev-admin",
    namespace: str | None = None,
) -> Path:
    """Write a self-contained kubeconfig (certificates embedded) with one context."""
    creds: dict[str, str] = {}
    if client is not None:
        creds["client-certificate-data"] = _b64(client.cert)
        creds["client-key-data"] = _b64(client.key)
    if token_file is not None:
        creds["tokenFile"] = str(token_file)
    context: dict[str, str] = {"cluster": CONTEXT, "user": user}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": CONTEXT, "context": context}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path
