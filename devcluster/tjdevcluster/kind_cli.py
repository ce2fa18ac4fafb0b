"""``python -m tjdevcluster.kind_cli up|env|build-images|down|status|node-image``: the parts
of ``make kind-up`` / ``make kind-down`` for a machine where no Docker engine runs.

Development and test scaffolding, called by scripts/kind-up.sh and scripts/kind-down.sh
(docs/INSTALL.md). ``up`` builds or finds kind, kubectl, Helm and the node image (cached),
starts the project's own engine (kindengine.py) and prints shell ``export`` lines that point
``docker``, ``kind``, ``kubectl`` and ``helm`` at it; the script then runs the same kind,
kubectl and Helm commands as on a machine with Docker. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import yaml

from . import kindengine, kindnode, netns, tools
from .imagecache import ImagesError

REPO = Path(__file__).resolve().parents[2]
KIND_CONFIG = REPO / "kind-config.yaml"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def local_kind_config(source: Path = KIND_CONFIG, port: int | None = None) -> dict[str, object]:
    """``kind-config.yaml`` for the locally built node: the same cluster (name, mounts, made
    absolute), plus what this node needs — no kindnetd (a bridge CNI is in the image),
    kube-proxy in nftables mode, the API on a fixed loopback port (forwarded into the
    namespace), and the kubelet allowed on a cgroup v1 host."""
    config = yaml.safe_load(source.read_text())
    for node in config.get("nodes") or []:
        for mount in node.get("extraMounts") or []:
            host = Path(mount["hostPath"])
            mount["hostPath"] = str(
                host if host.is_absolute() else (source.parent / host).resolve()
            )
    networking = dict(config.get("networking") or {})
    networking.update(
        {
            "ipFamily": "ipv4",
            "disableDefaultCNI": True,
            "kubeProxyMode": "nftables",
            "apiServerAddress": "127.0.0.1",
            "apiServerPort": port or kindengine.api_port(),
            "podSubnet": kindnode.POD_SUBNET,
            "serviceSubnet": kindnode.SERVICE_SUBNET,
        }
    )
    config["networking"] = networking
    patches = list(config.get("kubeadmConfigPatches") or [])
    patches += [
        "kind: KubeletConfiguration\n"
        "# Kubernetes 1.35+ refuses a cgroup v1 host unless told otherwise\n"
        "failCgroupV1: false\n"
        "# the images are loaded by hand and cannot be pulled again: never collect them\n"
        "imageGCHighThresholdPercent: 100\n"
        "imageGCLowThresholdPercent: 99\n",
        "kind: KubeProxyConfiguration\n"
        "# pod -> Service -> pod on one bridge: replies return through the node\n"
        "nftables:\n  masqueradeAll: true\n",
    ]
    config["kubeadmConfigPatches"] = patches
    return config


def local_env(engine: kindengine.KindEngine, node_ref: str, config: Path) -> dict[str, str]:
    """What points docker, kind, kubectl and helm at the engine (PATH_PREPEND: folders to
    put first on PATH)."""
    found = tools.find_tools()
    dirs = [str(kindnode.kind_tool().path.parent)]
    if found:
        dirs += [str(found.kubectl.parent), str(found.helm.parent)]
    env = {
        name: engine.env[name] for name in ("DOCKER_HOST", "DOCKER_API_VERSION", "DOCKER_CONFIG")
    }
    env["DOCKER_BUILDKIT"] = "0"
    env["TJ_KIND_NODE_IMAGE"] = node_ref
    env["TJ_KIND_CONFIG"] = str(config)
    env["TJ_KIND_ENGINE"] = "local"
    env["PATH_PREPEND"] = ":".join(dirs)
    return env


def _exports(env: dict[str, str]) -> str:
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items() if k != "PATH_PREPEND"]
    lines.append(f'export PATH={shlex.quote(env["PATH_PREPEND"])}:"$PATH"')
    return "\n".join(lines)


def _config_path() -> Path:
    return kindnode.kind_root() / "kind-config.yaml"


def cmd_up(args: argparse.Namespace) -> int:
    start = time.monotonic()
    netns.require_root("make kind-up without a Docker engine")
    tools.ensure_tools(_log)  # kubectl and helm (and the binaries of the node image)
    kindnode.ensure_kind(_log)
    engine = kindengine.KindEngine()
    engine.start(_log)
    try:
        node_ref = engine.ensure_node_image(_log)
    except BaseException:
        engine.stop_all(_log)
        raise
    config = _config_path()
    config.write_text(
        "# Written by tjdevcluster.kind_cli from kind-config.yaml (make kind-up, local engine)\n"
        + yaml.safe_dump(local_kind_config(), sort_keys=False)
    )
    _log(f"kind engine ready in {time.monotonic() - start:.0f} s")
    print(_exports(local_env(engine, node_ref, config)))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    engine = kindengine.KindEngine()
    if not engine.is_running():
        return 3
    env = local_env(engine, kindnode.node_image_ref(), _config_path())
    print(json.dumps(env, indent=2) if args.json else _exports(env))
    return 0


def cmd_build_images(args: argparse.Namespace) -> int:
    """Both images built in the running engine (no network), tagged as the chart names
    them by default (``trainingjob-operator:<version>``, ``trainingjob-trainer:<version>``)."""
    from . import images

    engine = kindengine.KindEngine()
    if not engine.is_running():
        raise kindengine.KindEngineError("the kind engine is not running (make kind-up starts it)")
    built = images.build_images(_log, engine=engine)
    for info in built.values():
        short = info.ref.removeprefix("localhost/")
        engine.run("tag", info.ref, short)
        print(short)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    engine = kindengine.KindEngine()
    left = engine.stop_all(_log)
    if left:
        _log("kind engine: left behind:\n  " + "\n  ".join(left))
        return 1
    _log("kind engine stopped; nothing of it is left running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    engine = kindengine.KindEngine()
    state = {
        "running": engine.is_running(),
        "pids": engine.pids(),
        "netns": netns.exists(kindengine.NETNS),
        "containers": engine.containers(),
        "node_image": kindnode.node_image_ref(),
        "node_tarball": str(kindnode.find_node_tarball() or ""),
    }
    print(json.dumps(state, indent=2))
    return 0 if state["running"] else 3


def cmd_node_image(args: argparse.Namespace) -> int:
    start = time.monotonic()
    tarball = kindnode.ensure_node_tarball(_log)
    out = {
        "tarball": str(tarball),
        "bytes": tarball.stat().st_size,
        "ref": kindnode.node_image_ref(),
        "seconds": round(time.monotonic() - start, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tjdevcluster.kind_cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("up", cmd_up, "build/find everything, start the engine, print shell exports"),
        ("env", cmd_env, "print the shell exports of the running engine (exit 3 if none)"),
        ("build-images", cmd_build_images, "build both images in the running engine"),
        ("down", cmd_down, "stop the engine and remove all of it (exit 1 if anything is left)"),
        ("status", cmd_status, "the engine's processes and containers as JSON"),
        ("node-image", cmd_node_image, "build (or find) the node image's tarball"),
    ):
        command = sub.add_parser(name, help=text)
        command.set_defaults(func=func)
        if name == "env":
            command.add_argument("--json", action="store_true", help="a JSON object instead")
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ImagesError, netns.NetnsError, tools.ToolsError) as exc:
        print(f"kind: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
