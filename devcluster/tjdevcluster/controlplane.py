"""Start, stop and inspect the local control plane (etcd, kube-apiserver,
kube-controller-manager) and its node: the pod harness (``--node harness``, the default,
everything bound to 127.0.0.1) or a real node (``--node kubelet``: kube-scheduler,
containerd, kubelet, kube-proxy and a bridge CNI, with the whole cluster inside a network
namespace that has no route off the machine, and the API forwarded to the host's loopback).

Development and test scaffolding: never a way to run production work. Everything lives
in one state directory; ``down`` stops each process by its pid file and removes it.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import netns, node, procs
from .kubeconfig import write_kubeconfig
from .pki import NODE_IP, SERVICE_CLUSTER_IP_RANGE, Pki, ensure_pki
from .tools import Tools

NODE_KINDS = ("harness", "kubelet")
COMPONENTS = {
    "harness": ("etcd", "kube-apiserver", "kube-controller-manager", "harness"),
    "kubelet": (
        "etcd",
        "kube-apiserver",
        "api-forward",
        "kube-controller-manager",
        "kube-scheduler",
        "containerd",
        "kubelet",
        "kube-proxy",
    ),
}
# Controllers that make no sense without a kubelet.
HARNESS_OFF = "-node-lifecycle-controller,-persistentvolume-attach-detach-controller"
DEFAULT_PORTS = {"apiserver": 16443, "etcd": 12379, "etcd_peer": 12380}
ISSUER = "https://kubernetes.default.svc.cluster.local"
Log = Callable[[str], None]


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message names the component and its log."""


def default_state_dir() -> Path:
    """``$TJ_DEV_CLUSTER_DIR``, else ``<repo>/.dev-cluster`` (repo = nearest pyproject.toml)."""
    env = os.environ.get("TJ_DEV_CLUSTER_DIR")
    if env:
        return Path(env).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists():
            return folder / ".dev-cluster"
    return here / ".dev-cluster"


@dataclass
class ClusterConfig:
    """Where one control plane lives and which ports it uses (saved as cluster.json)."""

    state_dir: Path
    apiserver_port: int = DEFAULT_PORTS["apiserver"]
    etcd_port: int = DEFAULT_PORTS["etcd"]
    etcd_peer_port: int = DEFAULT_PORTS["etcd_peer"]
    node_name: str = "tj-dev-node"
    volumes_root: Path | None = None
    node: str = "harness"
    netns: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        if self.volumes_root is None:
            self.volumes_root = self.state_dir / "volumes"
        self.volumes_root = Path(self.volumes_root).resolve()
        if self.node not in NODE_KINDS:
            raise ControlPlaneError(f"unknown node kind {self.node!r}: use one of {NODE_KINDS}")
        if self.node == "kubelet" and not self.netns:
            self.netns = node.namespace_name(self.state_dir)

    @property
    def components(self) -> tuple[str, ...]:
        return COMPONENTS[self.node]

    @property
    def real_node(self) -> bool:
        return self.node == "kubelet"

    @property
    def server(self) -> str:
        """The API server as the host sees it (kubectl, Helm, the tests)."""
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def internal_server(self) -> str:
        """The API server as the cluster's own components see it."""
        if self.real_node:
            return f"https://{NODE_IP}:{node.APISERVER_PORT}"
        return self.server

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def node_dir(self) -> Path:
        """State of the real node (``--node kubelet``): containerd, kubelet, CNI."""
        return self.state_dir / "node"

    @property
    def containerd_socket(self) -> Path:
        """The CRI/containerd socket of the real node (``--node kubelet``)."""
        return self.node_dir / "containerd.sock"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "cluster.json"

    def pid_file(self, component: str) -> Path:
        return self.state_dir / "run" / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    def save(self) -> None:
        data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        self.config_file.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> ClusterConfig | None:
        path = Path(state_dir) / "cluster.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class ControlPlane:
    """One local control plane, described by a ClusterConfig."""

    def __init__(self, config: ClusterConfig, tools: Tools | None = None) -> None:
        self.config = config
        self.tools = tools
        self.pki: Pki | None = None

    # -- inspection ---------------------------------------------------------------------
    def running(self) -> dict[str, int | None]:
        """Pid of each component that is alive (None if not)."""
        out: dict[str, int | None] = {}
        for name in self.config.components:
            handle = procs.tracked(self.config.pid_file(name))
            out[name] = handle.pid if handle else None
        return out

    def _ssl_context(self) -> ssl.SSLContext:
        pki_dir = self.config.state_dir / "pki"
        ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
        return ctx

    def api_get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """GET path on the API server as admin; (status, body), status 0 if unreachable."""
        try:
            with urllib.request.urlopen(
                self.config.server + path, context=self._ssl_context(), timeout=timeout
            ) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (OSError, ssl.SSLError):
            return 0, ""

    def api_create(self, path: str, obj: dict[str, object]) -> tuple[int, str]:
        """POST obj to path as admin; (status, body); 409 (exists) counts as done."""
        request = urllib.request.Request(
            self.config.server + path,
            data=json.dumps(obj).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, context=self._ssl_context(), timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def api_ready(self) -> bool:
        return self.api_get("/readyz", timeout=1.0)[0] == 200

    def status(self) -> dict[str, object]:
        """Pids, API readiness and paths, for `dev-cluster status`."""
        pids = self.running()
        return {
            "state_dir": str(self.config.state_dir),
            "server": self.config.server,
            "kubeconfig": str(self.config.kubeconfig),
            "processes": pids,
            "api_ready": bool(pids["kube-apiserver"]) and self.api_ready(),
        }

    # -- start ----------------------------------------------------------------------------
    def up(self, log: Log = print, timeout: float = 90.0) -> None:
        """Start whatever is not running yet and wait until the cluster is usable."""
        cfg = self.config
        if self.tools is None:
            raise ControlPlaneError("tools are needed to start the control plane")
        programs: dict[str, str] = {}
        if cfg.real_node:
            netns.require_root("`tjctl dev-cluster up --node kubelet`")
            programs = node.require_programs()
        alive = self.running()
        if all(alive.values()) and self.api_ready():
            log(f"dev cluster already running ({cfg.state_dir})")
            return
        if any(alive.values()):
            log("some components are down; restarting the control plane")
            self.stop_processes()
        elif cfg.real_node:
            self._clean_leftovers(log)
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        ports = [(cfg.apiserver_port, "kube-apiserver")]
        if not cfg.real_node:  # with a real node etcd listens inside the namespace
            ports += [(cfg.etcd_port, "etcd clients"), (cfg.etcd_peer_port, "etcd peers")]
        for port, what in ports:
            procs.check_port(port, what)
        cfg.save()
        self.pki = ensure_pki(cfg.state_dir / "pki", cfg.node_name)
        self._write_kubeconfigs()
        if cfg.real_node:
            netns.create(cfg.netns, (f"{NODE_IP}/32",))
            self._node().prepare(self.pki, programs, self._node_kubeconfigs())
        start = time.monotonic()
        self._start("etcd", self._etcd_argv())
        if not cfg.real_node:
            self._wait("etcd", self._etcd_healthy, timeout)
        self._start("kube-apiserver", self._apiserver_argv())
        if cfg.real_node:
            self._start("api-forward", self._forward_argv(), env=self._python_env())
        self._wait("kube-apiserver", self.api_ready, timeout)
        log(f"API server ready at {cfg.server} after {time.monotonic() - start:.1f} s")
        self._start("kube-controller-manager", self._controller_manager_argv())
        if cfg.real_node:
            self._start_real_node(programs, timeout, log)
        else:
            self._start("harness", self._harness_argv(), env=self._python_env())
        self._wait("kubelet" if cfg.real_node else "harness", self._node_ready, timeout)
        self._wait("kube-controller-manager", self._default_sa_exists, timeout)
        if cfg.real_node:
            self._create_local_volumes()
        log(f"dev cluster up in {time.monotonic() - start:.1f} s")

    def _node(self) -> node.RealNode:
        cfg = self.config
        return node.RealNode(cfg.state_dir, cfg.node_name, cfg.netns, cfg.internal_server)

    def _node_kubeconfigs(self) -> dict[str, Path]:
        names = ("kube-scheduler", "kubelet", "kube-proxy")
        return {name: self.config.state_dir / f"{name}.kubeconfig" for name in names}

    def _start_real_node(self, programs: dict[str, str], timeout: float, log: Log) -> None:
        """kube-scheduler, containerd (with the pause image), kubelet and kube-proxy."""
        assert self.tools is not None
        real, kubeconfigs = self._node(), self._node_kubeconfigs()
        self._start(
            "kube-scheduler",
            [
                str(self.tools.kube_scheduler),
                f"--kubeconfig={kubeconfigs['kube-scheduler']}",
                f"--authentication-kubeconfig={kubeconfigs['kube-scheduler']}",
                f"--authorization-kubeconfig={kubeconfigs['kube-scheduler']}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--v=1",
            ],
        )
        env = real.env(programs)
        real.socket.unlink(missing_ok=True)  # a killed run's socket answers nobody
        self._start("containerd", real.containerd_argv(programs), env=env)
        self._wait("containerd", real.socket_answers, timeout)
        real.import_pause(programs, self.tools.pause)
        self._start("kubelet", real.kubelet_argv(self.tools.kubelet, kubeconfigs["kubelet"]), env)
        self._start("kube-proxy", real.proxy_argv(self.tools.kube_proxy), env=env)
        log("real node: containerd, kubelet and kube-proxy started")

    def _create_local_volumes(self) -> None:
        """The default StorageClass ``standard`` and local PVs on the node (as kind has a
        ``standard`` class): a PVC of that class binds one when its first pod is scheduled,
        and the kubelet applies the pod's fsGroup to it."""
        objects: list[tuple[str, dict[str, object]]] = [
            ("/apis/storage.k8s.io/v1/storageclasses", node.storage_class())
        ]
        for index in range(node.LOCAL_VOLUMES):
            folder = self._node().volume_dir(index)
            folder.mkdir(parents=True, exist_ok=True)
            objects.append(
                (
                    "/api/v1/persistentvolumes",
                    node.local_volume(index, folder, self.config.node_name),
                )
            )
        for path, obj in objects:
            status, body = self.api_create(path, obj)
            if status not in (200, 201, 409):
                raise ControlPlaneError(f"could not create {obj['kind']}: {status} {body[:300]}")

    def _clean_leftovers(self, log: Log) -> None:
        """Before a real node starts: refuse a namespace that others use, then undo what a
        killed run of this cluster left (shims, containers, mounts, cgroups)."""
        cfg, real = self.config, self._node()
        ours = real.cgroup_pids() | real.shim_pids()
        others = sorted(set(netns.pids_in(cfg.netns)) - ours)
        if others:
            raise ControlPlaneError(
                f"network namespace {cfg.netns} is in use by processes {others[:10]} that this "
                "dev cluster did not start; stop them, or give this cluster another state dir "
                "(the namespace is named after it)"
            )
        if ours or real.mounts() or netns.exists(cfg.netns):
            log("cleaning up what a previous run of this dev cluster left behind")
        self._teardown_node()

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        if self.config.real_node and name != "api-forward":
            argv = netns.wrap(self.config.netns, argv)
        log_file = self.config.log_file(name)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as fh:
            fh.write(f"\n=== {time.ctime()} {' '.join(argv)}\n".encode())
        procs.start(argv, log_file, self.config.pid_file(name), env=env)

    def _wait(self, name: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if procs.tracked(self.config.pid_file(name)) is None:
                break
            time.sleep(0.1)
        log_file = self.config.log_file(name)
        lines = log_file.read_text(errors="replace").splitlines()[-25:] if log_file.exists() else []
        self.stop_processes()
        raise ControlPlaneError(
            f"{name} did not become ready (log: {log_file}):\n" + "\n".join(lines)
        )

    def _etcd_healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.config.etcd_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return b'"true"' in resp.read()
        except OSError:
            return False

    def _node_ready(self) -> bool:
        status, body = self.api_get(f"/api/v1/nodes/{self.config.node_name}")
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _default_sa_exists(self) -> bool:
        return self.api_get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

    def _write_kubeconfigs(self) -> None:
        assert self.pki is not None
        cfg, pki = self.config, self.pki
        write_kubeconfig(cfg.kubeconfig, cfg.server, pki.ca_cert, pki.admin)
        write_kubeconfig(
            cfg.state_dir / "controller-manager.kubeconfig",
            cfg.internal_server,
            pki.ca_cert,
            pki.controller_manager,
            user="system:kube-controller-manager",
        )
        write_kubeconfig(
            cfg.state_dir / "harness.kubeconfig",
            cfg.server,
            pki.ca_cert,
            pki.harness,
            user="tj-pod-harness",
        )
        if cfg.real_node:
            users = {
                "kube-scheduler": (pki.scheduler, "system:kube-scheduler"),
                "kubelet": (pki.node, f"system:node:{cfg.node_name}"),
                "kube-proxy": (pki.proxy, "system:kube-proxy"),
            }
            for name, path in self._node_kubeconfigs().items():
                client, user = users[name]
                write_kubeconfig(path, cfg.internal_server, pki.ca_cert, client, user=user)

    def _etcd_argv(self) -> list[str]:
        assert self.tools is not None
        cfg = self.config
        client = f"http://127.0.0.1:{cfg.etcd_port}"
        peer = f"http://127.0.0.1:{cfg.etcd_peer_port}"
        return [
            str(self.tools.etcd),
            "--name=tj-dev",
            f"--data-dir={cfg.state_dir / 'etcd-data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=tj-dev={peer}",
            "--unsafe-no-fsync=true",  # throw-away data: speed over durability
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        assert self.tools is not None and self.pki is not None
        cfg, pki = self.config, self.pki
        if cfg.real_node:  # inside the namespace: a real address, real Service endpoints
            where = [
                f"--advertise-address={NODE_IP}",
                "--bind-address=0.0.0.0",
                f"--secure-port={node.APISERVER_PORT}",
            ]
        else:
            where = [
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                f"--secure-port={cfg.apiserver_port}",
                "--endpoint-reconciler-type=none",  # loopback addresses are not valid endpoints
            ]
        return [
            str(self.tools.kube_apiserver),
            *where,
            f"--cert-dir={cfg.state_dir / 'pki'}",
            f"--etcd-servers=http://127.0.0.1:{cfg.etcd_port}",
            f"--tls-cert-file={pki.serving.cert}",
            f"--tls-private-key-file={pki.serving.key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction,PodSecurity",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--kubelet-client-certificate={pki.kubelet_client.cert}",
            f"--kubelet-client-key={pki.kubelet_client.key}",
            f"--kubelet-certificate-authority={pki.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]

    def _controller_manager_argv(self) -> list[str]:
        assert self.tools is not None and self.pki is not None
        cfg, pki = self.config, self.pki
        kubeconfig = cfg.state_dir / "controller-manager.kubeconfig"
        return [
            str(self.tools.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--cluster-name=tj-dev",
            # The harness is no kubelet: the node lifecycle controller would only taint it.
            "--controllers=*" if cfg.real_node else f"--controllers=*,{HARNESS_OFF}",
            "--v=1",
        ]

    def _forward_argv(self) -> list[str]:
        cfg = self.config
        return [
            sys.executable,
            "-m",
            "tjdevcluster.forward",
            f"--listen-port={cfg.apiserver_port}",
            f"--netns={cfg.netns}",
            f"--target={NODE_IP}:{node.APISERVER_PORT}",
        ]

    def _harness_argv(self) -> list[str]:
        cfg = self.config
        return [
            sys.executable,
            "-m",
            "tjdevcluster.harness",
            f"--kubeconfig={cfg.state_dir / 'harness.kubeconfig'}",
            f"--node-name={cfg.node_name}",
            f"--volumes-root={cfg.volumes_root}",
            f"--pods-dir={cfg.state_dir / 'pods'}",
            f"--pki-dir={cfg.state_dir / 'pki'}",
        ]

    def _python_env(self) -> dict[str, str]:
        """Environment of this package's own processes (harness, API forwarder)."""
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        package_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- stop -----------------------------------------------------------------------------
    def stop_processes(self) -> list[str]:
        """Stop every recorded process (the node first, then its pods' leftovers);
        with a real node also unmount, remove its cgroups and its network namespace."""
        stopped = []
        for name in reversed(self.config.components):
            if name == "containerd" and self.config.real_node:
                killed = self._node().kill_pods()
                if killed:
                    stopped.append(f"{killed} container processes")
            if procs.stop(self.config.pid_file(name), timeout=15.0):
                stopped.append(name)
        pods_dir = self.config.state_dir / "pods"
        if pods_dir.exists():
            for pid_file in pods_dir.rglob("*.pid"):
                handle = procs.tracked(pid_file)
                if handle is not None:
                    procs.signal_group(handle.pid, 9)
                    stopped.append(f"pod process {handle.pid}")
                pid_file.unlink(missing_ok=True)
        if self.config.real_node:
            stopped += self._teardown_node()
        return stopped

    def _teardown_node(self) -> list[str]:
        """Remove what a real node leaves once its processes are gone; raise if stuck."""
        real, done = self._node(), []
        killed = real.kill_pods()
        if killed:
            done.append(f"{killed} leftover container processes")
        mounts = real.unmount_all()
        cgroups = real.remove_cgroups()
        if netns.delete(self.config.netns):
            done.append(f"network namespace {self.config.netns}")
        if mounts or cgroups:
            raise ControlPlaneError(
                f"could not remove mounts {mounts[:5]} / cgroups {cgroups[:5]} of the real node"
            )
        return done

    def down(self) -> list[str]:
        """Stop everything and remove the state directory."""
        stopped = self.stop_processes()
        shutil.rmtree(self.config.state_dir, ignore_errors=True)
        return stopped
