"""``tjctl dev-cluster ...`` and ``tjctl cluster-tools``: the local control plane CLI.

Development and test scaffolding. ``tjctl`` calls :func:`register` through the
``tjctl.commands`` entry points of devcluster/pyproject.toml; ``python -m tjdevcluster``
uses the same function.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .controlplane import ClusterConfig, ControlPlane, ControlPlaneError, default_state_dir
from .netns import NetnsError, require_root
from .node import NodeError
from .procs import PortInUseError
from .tools import ToolsError, cache_root, ensure_tools


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_cluster_tools(args: argparse.Namespace) -> int:
    """Build (or find in the cache) the pinned tools and print their paths."""
    try:
        tools = ensure_tools(log=_progress)
    except ToolsError as exc:
        _err(f"cluster-tools: {exc}")
        return 1
    paths = {name: str(path) for name, path in tools.as_dict().items()}
    if args.json:
        print(json.dumps({"kubernetes": tools.kubernetes_version, **paths}, indent=2))
    else:
        print(f"# Kubernetes {tools.kubernetes_version}, cache {cache_root()}")
        for name, path in paths.items():
            print(f"{name}\t{path}")
    return 0


def _config(args: argparse.Namespace) -> ClusterConfig:
    state = Path(args.state_dir).resolve() if args.state_dir else default_state_dir()
    cfg = ClusterConfig.load(state) or ClusterConfig(state_dir=state)
    for attr in (
        "apiserver_port",
        "etcd_port",
        "etcd_peer_port",
        "node_name",
        "volumes_root",
        "node",
    ):
        value = getattr(args, attr, None)
        if value is not None:
            setattr(cfg, attr, value)
    cfg.__post_init__()
    return cfg


def cmd_up(args: argparse.Namespace) -> int:
    """Start the dev cluster (or report that it already runs)."""
    try:
        if args.node == "kubelet":  # before anything is read, built or written
            require_root("`tjctl dev-cluster up --node kubelet`")
        cfg = _config(args)
        if cfg.real_node:
            require_root("`tjctl dev-cluster up --node kubelet`")
        tools = ensure_tools(log=_progress)
        ControlPlane(cfg, tools).up(log=_progress)
    except (ToolsError, ControlPlaneError, PortInUseError, NetnsError, NodeError) as exc:
        _err(f"dev-cluster up: {exc}")
        return 1
    except PermissionError as exc:
        _err(f"dev-cluster up: no access to {exc.filename}: choose a --state-dir you may write")
        return 1
    if cfg.real_node:
        where = (
            f"Development/test scaffolding: a real kubelet on containerd in network namespace "
            f"{cfg.netns}\n(no route off the machine); load images with "
            "`tjctl images build --load`."
        )
    else:
        where = "Development/test scaffolding: pods run as local processes by the pod harness."
    print(
        f"""Dev cluster running: {cfg.server} (Kubernetes {tools.kubernetes_version}).
{where}

  export KUBECONFIG={cfg.kubeconfig}
  alias kubectl={tools.kubectl}
  kubectl get nodes

PVC folders: {cfg.volumes_root}/pvc/<claimName>   logs: {cfg.state_dir}/logs
Helm: {tools.helm}
Stop it with: tjctl dev-cluster down"""
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop every process of the dev cluster and remove its state directory."""
    cfg = _config(args)
    if not cfg.state_dir.exists():
        print(f"no dev cluster at {cfg.state_dir}")
        return 0
    try:
        if cfg.real_node:
            require_root("`tjctl dev-cluster down` of a cluster with a real node")
        stopped = ControlPlane(cfg).down()
    except (ControlPlaneError, NetnsError) as exc:
        _err(f"dev-cluster down: {exc}")
        return 1
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}; removed {cfg.state_dir}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print pids and API readiness; exit 0 only if everything runs."""
    cfg = _config(args)
    if not cfg.config_file.exists():
        print(f"no dev cluster at {cfg.state_dir} (start one with: tjctl dev-cluster up)")
        return 1
    status = ControlPlane(cfg).status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(f"state dir:  {status['state_dir']}\nserver:     {status['server']}")
        print(f"kubeconfig: {status['kubeconfig']}\nAPI ready:  {status['api_ready']}")
        for name, pid in status["processes"].items():  # type: ignore[attr-defined]
            print(f"  {name:<24} {'pid ' + str(pid) if pid else 'not running'}")
    healthy = status["api_ready"] and all(status["processes"].values())  # type: ignore[attr-defined]
    return 0 if healthy else 1


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    """Print the admin kubeconfig's path (``export KUBECONFIG=$(tjctl dev-cluster kubeconfig)``)."""
    cfg = _config(args)
    if not cfg.kubeconfig.exists():
        _err(f"no dev cluster at {cfg.state_dir} (start one with: tjctl dev-cluster up)")
        return 1
    print(cfg.kubeconfig.read_text() if args.raw else cfg.kubeconfig)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dev-cluster`` and ``cluster-tools`` subcommands (each sets ``func``)."""
    tools = subparsers.add_parser(
        "cluster-tools",
        help="build or find the pinned etcd/kube-apiserver/kube-controller-manager/kubectl/helm",
        description=f"Build (first time) or find the pinned tools under {cache_root()}.",
    )
    tools.add_argument("--json", action="store_true", help="print paths as JSON")
    tools.set_defaults(func=cmd_cluster_tools)

    dev = subparsers.add_parser(
        "dev-cluster",
        help="local control plane + pod harness for development and tests (not production)",
        description="A local Kubernetes control plane (etcd, kube-apiserver, "
        "kube-controller-manager) with a pod harness that runs pods as local processes. "
        "Development and test scaffolding only.",
    )
    actions = dev.add_subparsers(dest="dev_cluster_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", help="default: $TJ_DEV_CLUSTER_DIR or <repo>/.dev-cluster")
    up = actions.add_parser("up", parents=[common], help="start it (harmless if running)")
    up.add_argument("--apiserver-port", type=int, help="default 16443")
    up.add_argument("--etcd-port", type=int, help="default 12379")
    up.add_argument("--etcd-peer-port", type=int, help="default 12380")
    up.add_argument("--node-name", help="default tj-dev-node")
    up.add_argument(
        "--node",
        choices=("harness", "kubelet"),
        help="harness (default): pods run as local processes; kubelet: a real kubelet on "
        "containerd with a CNI and kube-proxy, in a network namespace with no route off the "
        "machine (needs root)",
    )
    up.add_argument("--volumes-root", type=Path, help="PVC folders live in <root>/pvc/<claim>")
    up.set_defaults(func=cmd_up)
    down = actions.add_parser("down", parents=[common], help="stop it and remove its state")
    down.set_defaults(func=cmd_down)
    status = actions.add_parser("status", parents=[common], help="show processes and readiness")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    kube = actions.add_parser("kubeconfig", parents=[common], help="print the kubeconfig path")
    kube.add_argument("--raw", action="store_true", help="print its content instead")
    kube.set_defaults(func=cmd_kubeconfig)
