"""Fill a pod's local volume folders (configMap, secret, projected, downwardAPI, ...).

Development and test scaffolding for the pod harness. PVC and hostPath folders are
created if missing; emptyDir is an empty folder of the pod; configMap/secret/
downwardAPI/projected folders get their files written once at pod start (no updates).
A projected service-account token also gets a ``kubeconfig`` beside it, which the
harness points ``KUBECONFIG`` at, since the in-cluster paths do not exist on this host.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from .kubeconfig import write_kubeconfig
from .podspec import LaunchError, Pod, field_value, volume_folder

Data = dict[str, bytes]
DataLookup = Callable[[str, str, str], Data | None]


def read_data(core: client.CoreV1Api, kind: str, namespace: str, name: str) -> Data | None:
    """The data of a ConfigMap or Secret as bytes, or None if it does not exist."""
    try:
        if kind == "configmap":
            cm = core.read_namespaced_config_map(name, namespace)
            data = {k: v.encode() for k, v in (cm.data or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
            return data
        secret = core.read_namespaced_secret(name, namespace)
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _write_items(folder: Path, data: Data, items: list[dict[str, Any]] | None) -> None:
    pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
    for key, rel in pairs:
        if key not in data:
            raise LaunchError(f"key {key!r} not found for volume at {folder}")
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[key])


def _object(
    lookup: DataLookup, kind: str, namespace: str, ref: Mapping[str, Any], wait: float
) -> Data | None:
    name = ref.get("name") or ref.get("secretName") or ""
    deadline = time.monotonic() + wait
    while True:
        data = lookup(kind, namespace, name)
        if data is not None or ref.get("optional"):
            return data
        if time.monotonic() > deadline:
            raise LaunchError(f"{kind} {name!r} not found in namespace {namespace!r}")
        time.sleep(0.2)


def _token(core: client.CoreV1Api, pod: Pod, source: Mapping[str, Any]) -> bytes:
    meta = pod["metadata"]
    body = {
        "spec": {
            "audiences": [source["audience"]] if source.get("audience") else None,
            "expirationSeconds": int(source.get("expirationSeconds") or 3607),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
    }
    sa = pod["spec"].get("serviceAccountName") or "default"
    create: Any = core.create_namespaced_service_account_token
    resp = create(sa, meta["namespace"], body, _preload_content=False)
    return str(json.loads(resp.data)["status"]["token"]).encode()


def prepare_volumes(
    core: client.CoreV1Api,
    pod: Pod,
    volumes_root: Path,
    pod_dir: Path,
    server: str,
    ca_file: Path,
    node_name: str,
) -> dict[str, Path]:
    """Create and fill every volume folder of pod; return {volume name: kubeconfig path}
    for projected volumes that carry a service-account token."""
    namespace = pod["metadata"]["namespace"]

    def lookup(kind: str, ns: str, name: str) -> Data | None:
        return read_data(core, kind, ns, name)

    kubeconfigs: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        folder = volume_folder(volume, volumes_root, pod_dir)
        folder.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            data = _object(lookup, "configmap", namespace, volume["configMap"], 10)
            _write_items(folder, data or {}, volume["configMap"].get("items"))
        elif "secret" in volume:
            data = _object(lookup, "secret", namespace, volume["secret"], 10)
            _write_items(folder, data or {}, volume["secret"].get("items"))
        elif "downwardAPI" in volume:
            _downward(folder, pod, volume["downwardAPI"].get("items") or [], node_name)
        elif "projected" in volume:
            for source in volume["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    sat = source["serviceAccountToken"]
                    (folder / sat["path"]).write_bytes(_token(core, pod, sat))
                    kubeconfigs[volume["name"]] = write_kubeconfig(
                        folder / "kubeconfig",
                        server,
                        ca_file,
                        token_file=folder / sat["path"],
                        user="service-account",
                        namespace=namespace,
                    )
                elif "configMap" in source:
                    ref = source["configMap"]
                    data = _object(lookup, "configmap", namespace, ref, 10)
                    if data is None and ref.get("name") == "kube-root-ca.crt":
                        data = {"ca.crt": ca_file.read_bytes()}
                    _write_items(folder, data or {}, ref.get("items"))
                elif "secret" in source:
                    data = _object(lookup, "secret", namespace, source["secret"], 10)
                    _write_items(folder, data or {}, source["secret"].get("items"))
                elif "downwardAPI" in source:
                    _downward(folder, pod, source["downwardAPI"].get("items") or [], node_name)
    return kubeconfigs


def _downward(folder: Path, pod: Pod, items: list[dict[str, Any]], node_name: str) -> None:
    for item in items:
        if "fieldRef" not in item:
            continue
        target = folder / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(field_value(pod, item["fieldRef"]["fieldPath"], node_name))
