"""Start, stop and inspect the local control plane (etcd, kube-apiserver,
kube-controller-manager) and the pod harness, all bound to 127.0.0.1.

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

from . import procs
from .kubeconfig import write_kubeconfig
from .pki import SERVICE_CLUSTER_IP_RANGE, Pki, ensure_pki
from .tools import Tools

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "harness")
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
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        if self.volumes_root is None:
            self.volumes_root = self.state_dir / "volumes"
        self.volumes_root = Path(self.volumes_root).resolve()

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

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
        for name in COMPONENTS:
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
        alive = self.running()
        if all(alive.values()) and self.api_ready():
            log(f"dev cluster already running ({cfg.state_dir})")
            return
        if any(alive.values()):
            log("some components are down; restarting the control plane")
            self.stop_processes()
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        for port, what in (
            (cfg.etcd_port, "etcd clients"),
            (cfg.etcd_peer_port, "etcd peers"),
            (cfg.apiserver_port, "kube-apiserver"),
        ):
            procs.check_port(port, what)
        cfg.save()
        self.pki = ensure_pki(cfg.state_dir / "pki")
        self._write_kubeconfigs()
        start = time.monotonic()
        self._start("etcd", self._etcd_argv())
        self._wait("etcd", self._etcd_healthy, timeout)
        self._start("kube-apiserver", self._apiserver_argv())
        self._wait("kube-apiserver", self.api_ready, timeout)
        log(f"API server ready at {cfg.server} after {time.monotonic() - start:.1f} s")
        self._start("kube-controller-manager", self._controller_manager_argv())
        self._start("harness", self._harness_argv(), env=self._harness_env())
        self._wait("harness", self._node_ready, timeout)
        self._wait("kube-controller-manager", self._default_sa_exists, timeout)
        log(f"dev cluster up in {time.monotonic() - start:.1f} s")

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
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
            cfg.server,
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
        return [
            str(self.tools.kube_apiserver),
            "--advertise-address=127.0.0.1",
            "--bind-address=127.0.0.1",
            f"--secure-port={cfg.apiserver_port}",
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
            "--endpoint-reconciler-type=none",  # loopback addresses are not valid endpoints
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
            # No kubelet, no cloud: the node lifecycle controller would only taint the node.
            "--controllers=*,-node-lifecycle-controller,-persistentvolume-attach-detach-controller",
            "--v=1",
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

    def _harness_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        package_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- stop -----------------------------------------------------------------------------
    def stop_processes(self) -> list[str]:
        """Stop every recorded process, harness first, then its pods' leftovers."""
        stopped = []
        for name in reversed(COMPONENTS):
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
        return stopped

    def down(self) -> list[str]:
        """Stop everything and remove the state directory."""
        stopped = self.stop_processes()
        shutil.rmtree(self.config.state_dir, ignore_errors=True)
        return stopped
