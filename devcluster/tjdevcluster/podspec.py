"""Turn a pod's container into a local process launch (pure functions, no API calls).

Development and test scaffolding. The rules, also in docs/DEV_CLUSTER.md:

- Images are ignored. ``command[0]`` must be ``python``/``python3``/``python3.N`` (any
  directory; run with the harness's own ``sys.executable``) or a console command of this
  project (``tjctl``…, looked up next to ``sys.executable``).
- Volumes map to local folders: a PVC to ``<volumes root>/pvc/<claimName>``, a hostPath
  to the same path, everything else (emptyDir, configMap, secret, projected,
  downwardAPI) to a folder of the pod that is removed with the pod.
- Because the process runs on this host, each mountPath (and the container's
  terminationMessagePath) used as a path prefix in command, args, env values and
  workingDir is rewritten to the local folder (or file). A ``subPath`` mount maps to
  that folder of the volume; where mountPath ends in the subPath, the parent path
  (``/shared`` of ``/shared/models`` from subPath ``models``) maps to the volume's root,
  so a path argument naming the folder the mounts meet in works as in a real pod.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ", "LANG", "LC_ALL")
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
PYTHON_RE = re.compile(r"python(3(\.\d+)?)?")

Pod = dict[str, Any]
Lookup = Callable[[str, str, str], dict[str, str] | None]  # (kind, namespace, name)


class LaunchError(ValueError):
    """The container cannot run on this harness; the message says why."""


@dataclass
class Launch:
    """Everything needed to start one container as a local process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    termination_file: Path
    fallback_to_logs: bool
    mounts: dict[str, Path] = field(default_factory=dict)


def pvc_dir(volumes_root: Path, claim_name: str) -> Path:
    """The local folder backing every PVC named claim_name: ``<root>/pvc/<claimName>``."""
    if not claim_name or "/" in claim_name or claim_name in (".", ".."):
        raise ValueError(f"invalid claim name {claim_name!r}")
    return Path(volumes_root) / "pvc" / claim_name


@cache
def project_commands() -> frozenset[str]:
    """Console commands of this project (e.g. ``tjctl``)."""
    try:
        dist = metadata.distribution("trainingjob-operator")
        names = {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}
    except metadata.PackageNotFoundError:
        names = set()
    return frozenset(names | {"tjctl"})


def resolve_command(argv0: str) -> str:
    """Map a container's command[0] to a local executable, or raise LaunchError."""
    base = os.path.basename(argv0)
    if PYTHON_RE.fullmatch(base):
        return sys.executable
    if base in project_commands():
        candidate = Path(sys.executable).parent / base
        if os.access(candidate, os.X_OK):
            return str(candidate)
        raise LaunchError(f"command {argv0!r}: {candidate} not found (is the project installed?)")
    raise LaunchError(
        f"command {argv0!r} is not supported by the dev-cluster pod harness: images are "
        f"ignored, so command[0] must be python/python3 or one of this project's commands "
        f"({', '.join(sorted(project_commands()))})"
    )


def volume_folder(volume: Mapping[str, Any], volumes_root: Path, pod_dir: Path) -> Path:
    """The local folder that backs one pod volume."""
    name = volume["name"]
    if "persistentVolumeClaim" in volume:
        return pvc_dir(volumes_root, volume["persistentVolumeClaim"]["claimName"])
    if "hostPath" in volume:
        return Path(volume["hostPath"]["path"])
    for kind in ("emptyDir", "configMap", "secret", "projected", "downwardAPI"):
        if kind in volume:
            return pod_dir / "volumes" / kind / name
    kinds = sorted(k for k in volume if k != "name")
    raise LaunchError(f"volume {name!r}: type {kinds} is not supported by the pod harness")


def path_rewriter(mapping: Mapping[str, Path]) -> Callable[[str], str]:
    """A function replacing each mapped path, used as a path prefix, by its local path."""
    if not mapping:
        return lambda value: value
    keys = sorted((k.rstrip("/") or "/" for k in mapping), key=len, reverse=True)
    local = {k.rstrip("/") or "/": str(v) for k, v in mapping.items()}
    pattern = re.compile(
        r"(?<![\w.\-/])(" + "|".join(re.escape(k) for k in keys) + r")(?=$|/|[^\w.\-])"
    )
    return lambda value: pattern.sub(lambda m: local[m.group(1)], value)


def expand_refs(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known variables expand, ``$$`` escapes."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)", sub, value)


def field_value(pod: Pod, path: str, node_name: str) -> str:
    """Value of a downward-API fieldRef."""
    meta, spec = pod.get("metadata", {}), pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName") or node_name,
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise LaunchError(f"fieldRef {path!r} is not supported by the pod harness")


def _ref_value(source: Mapping[str, Any], pod: Pod, lookup: Lookup, node_name: str) -> str | None:
    namespace = pod["metadata"]["namespace"]
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"], node_name)
    for key, kind in (("configMapKeyRef", "configmap"), ("secretKeyRef", "secret")):
        if key in source:
            ref = source[key]
            data = lookup(kind, namespace, ref["name"]) or {}
            if ref["key"] not in data and not ref.get("optional"):
                raise LaunchError(f"{kind} {ref['name']!r} key {ref['key']!r} not found")
            return data.get(ref["key"])
    if "resourceFieldRef" in source:
        return "1"
    raise LaunchError(f"env valueFrom {sorted(source)} is not supported by the pod harness")


def build_env(
    container: Mapping[str, Any], pod: Pod, lookup: Lookup, base: Mapping[str, str], node: str
) -> dict[str, str]:
    """The container's environment: base, then envFrom, then env (with $(VAR) expansion)."""
    env = dict(base)
    namespace = pod["metadata"]["namespace"]
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for key, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
            if key in source:
                data = lookup(kind, namespace, source[key]["name"])
                if data is None and not source[key].get("optional"):
                    raise LaunchError(f"{kind} {source[key]['name']!r} not found (envFrom)")
                env.update({prefix + k: v for k, v in (data or {}).items()})
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = _ref_value(var["valueFrom"], pod, lookup, node)
            if value is not None:
                env[var["name"]] = value
        else:
            env[var["name"]] = expand_refs(var.get("value") or "", env)
    return env


def build_launch(
    pod: Pod,
    container: Mapping[str, Any],
    volumes_root: Path,
    pod_dir: Path,
    lookup: Lookup,
    base_env: Mapping[str, str],
    node_name: str,
) -> Launch:
    """Translate one container of pod into a Launch, or raise LaunchError."""
    name = container["name"]
    command = list(container.get("command") or [])
    if not command:
        raise LaunchError(
            f"container {name!r} has no command; images are ignored by the pod harness, "
            f"so the pod must set command (python/python3 or a project command)"
        )
    volumes = {v["name"]: v for v in pod.get("spec", {}).get("volumes") or []}
    mounts: dict[str, Path] = {}
    implied: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        if mount["name"] not in volumes:
            raise LaunchError(f"volumeMount {mount['name']!r} names no volume of the pod")
        folder = volume_folder(volumes[mount["name"]], volumes_root, pod_dir)
        sub_path = (mount.get("subPath") or "").strip("/")
        if sub_path:
            if ".." in sub_path.split("/"):
                raise LaunchError(f"volumeMount {mount['name']!r}: subPath {sub_path!r} has '..'")
            folder = folder / sub_path
            # A mountPath ending in its subPath (/shared/models from subPath models):
            # the parent (/shared) means the volume's root, as a path argument such as
            # --data-root /shared does in a real pod, where the mounts meet under it.
            path = mount["mountPath"].rstrip("/")
            if path.endswith("/" + sub_path):
                implied.setdefault(
                    path[: -len(sub_path) - 1] or "/", folder.parents[sub_path.count("/")]
                )
        mounts[mount["mountPath"]] = folder
    for path, folder in implied.items():
        mounts.setdefault(path, folder)
    term_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    termination_file = pod_dir / f"{name}.termination-log"
    rewrite = path_rewriter({**mounts, term_path: termination_file})
    env = build_env(container, pod, lookup, base_env, node_name)
    env = {k: rewrite(v) for k, v in env.items()}
    argv = [expand_refs(a, env) for a in command + list(container.get("args") or [])]
    argv = [rewrite(a) for a in argv]
    argv[0] = resolve_command(argv[0])
    work = container.get("workingDir")
    cwd = Path(rewrite(work)) if work else pod_dir / "work"
    return Launch(
        name=name,
        argv=argv,
        env=env,
        cwd=cwd,
        termination_file=termination_file,
        fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        mounts=mounts,
    )


def base_environment(pod: Pod, api_port: int, home: Path) -> dict[str, str]:
    """What every container starts with (no host variables but a few locale/BLAS ones)."""
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    bindir = str(Path(sys.executable).parent)
    env.update(
        {
            "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(api_port),
        }
    )
    env.setdefault("LANG", "C.UTF-8")
    return env
