"""The real node of ``tjctl dev-cluster up --node kubelet``: containerd, kubelet, kube-proxy
and a bridge CNI, all inside the cluster's own network namespace.

Development and test scaffolding. Everything lives under ``<state>/node/``; the kubelet's
cgroups under ``/<cgroup root>`` of each cgroup v1 hierarchy (named after the state dir).
:func:`cleanup` undoes all of it: it kills every process of the node's cgroups and every
containerd shim of this node, unmounts what containerd and the kubelet mounted, removes
the cgroups and, last, the network namespace (with its pod network and iptables rules).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import yaml

from .cgroups import pids_under, remove_tree
from .imagearchive import files_image
from .pki import NODE_IP, Pki

POD_CIDR = "10.244.0.0/24"
CNI_BRIDGE = "tjcni0"
PAUSE_IMAGE = "localhost/tj-pause:1"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
KUBELET_PORT = 10250
STORAGE_CLASS = "standard"
LOCAL_VOLUMES = 8
LOCAL_VOLUME_SIZE = "20Gi"
APISERVER_PORT = 6443  # inside the namespace


class NodeError(RuntimeError):
    """The real node could not be prepared; the message says why and what to install."""


def namespace_name(state_dir: Path) -> str:
    """The network namespace of the cluster in state_dir (stable, short)."""
    return "tjdev-" + hashlib.sha1(str(state_dir).encode()).hexdigest()[:8]


def cgroup_name(state_dir: Path) -> str:
    """The kubelet's cgroup root (``cgroupRoot``) for the cluster in state_dir."""
    return namespace_name(state_dir)


def require_programs() -> dict[str, str]:
    """Paths of the host programs the node needs, or a NodeError naming the packages."""
    wanted = {
        "containerd": "containerd",
        "containerd-shim-runc-v2": "containerd",
        "ctr": "containerd",
        "runc": "runc",
        "iptables": "iptables",
        "nsenter": "util-linux",
        "ip": "iproute2",
    }
    found, missing = {}, set()
    for program, package in wanted.items():
        where = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
        if where:
            found[program] = where
        else:
            missing.add(package)
    cni = next((d for d in CNI_BIN_DIRS if Path(d, "bridge").exists()), None)
    if cni is None:
        missing.add("containernetworking-plugins")
    else:
        found["cni"] = cni
    if missing:
        raise NodeError(
            "the real node needs " + ", ".join(sorted(missing)) + ": install them with "
            f"`apt-get install {' '.join(sorted(missing))}` "
            "(or `bash scripts/install-node-deps.sh`)"
        )
    return found


class RealNode:
    """Paths, configuration files and command lines of one real node."""

    def __init__(self, state_dir: Path, node_name: str, netns: str, api_server: str) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "node"
        self.node_name = node_name
        self.netns = netns
        self.api_server = api_server  # as seen from inside the namespace
        self.cgroup = cgroup_name(state_dir)

    # -- paths ------------------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    def socket_answers(self) -> bool:
        """True once containerd accepts connections on its socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def volume_dir(self, index: int) -> Path:
        """The host folder behind local PV number ``index``."""
        return self.state_dir / "volumes" / f"pv-{index}"

    # -- preparation ------------------------------------------------------------------------
    def prepare(self, pki: Pki, programs: dict[str, str], kubeconfigs: dict[str, Path]) -> None:
        """Write containerd's, the CNI's, the kubelet's and kube-proxy's configuration and
        create the kubelet's cgroup root."""
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._write_containerd_config(programs["cni"])
        self._write_cni_config()
        self._write_kubelet_config(pki)
        self._write_proxy_config(kubeconfigs["kube-proxy"])
        (self.dir / "resolv.conf").write_text(
            "# pods of the dev cluster resolve nothing off the machine\nnameserver 127.0.0.1\n"
        )
        self._make_cgroup_root()

    def _write_containerd_config(self, cni_bin: str) -> None:
        root, state = self.dir / "containerd" / "root", self.dir / "containerd" / "state"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        text = f"""# containerd of the dev cluster's real node (written by tjdevcluster.node)
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  level = "warn"
[metrics]
  address = ""

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # This VM grants no CAP_SYS_RESOURCE: never ask for a lower oom_score_adj than our own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  tolerate_missing_hugetlb_controller = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{self.dir / "cni" / "net.d"}"
    max_conf_num = 1
  [{cri}.registry]
    config_path = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{self.dir / "containerd" / "opt"}"
"""
        (self.dir / "containerd.toml").write_text(text)

    def _write_cni_config(self) -> None:
        conf = {
            "cniVersion": "1.0.0",
            "name": "tj-pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": CNI_BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni" / "ipam"),
                    },
                }
            ],
        }
        target = self.dir / "cni" / "net.d" / "10-tj-pods.conflist"
        target.write_text(json.dumps(conf, indent=2) + "\n")

    def _write_kubelet_config(self, pki: Pki) -> None:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This VM has cgroup v1 only; Kubernetes 1.36 refuses it unless told otherwise.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup}",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": NODE_IP,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "tlsCertFile": str(pki.node_serving.cert),
            "tlsPrivateKeyFile": str(pki.node_serving.key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(pki.ca_cert)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "clusterDNS": [],
            "resolvConf": str(self.dir / "resolv.conf"),
            "podLogsDir": str(self.dir / "pod-logs"),
            "failSwapOn": False,
            # Small thresholds: a shared test machine must not evict the tests' pods.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            # Images are loaded by hand and cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "syncFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "shutdownGracePeriod": "0s",
            "localStorageCapacityIsolation": True,
            "protectKernelDefaults": False,
        }
        (self.dir / "kubelet-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _write_proxy_config(self, kubeconfig: Path) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": self.node_name,
            "bindAddress": NODE_IP,
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # Replies of pod -> Service -> pod on one bridge return through the gateway.
            "iptables": {"masqueradeAll": True},
            # Leave the machine-wide conntrack settings alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        (self.dir / "kube-proxy.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _hierarchies(self) -> list[Path]:
        """Each mounted cgroup v1 hierarchy (one folder per controller set)."""
        out = []
        for entry in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.exists() else []:
            if entry.is_dir() and not entry.is_symlink() and (entry / "cgroup.procs").exists():
                out.append(entry)
        return out

    def _make_cgroup_root(self) -> None:
        for hierarchy in self._hierarchies():
            if hierarchy.name == "unified":
                continue
            folder = hierarchy / self.cgroup
            folder.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    if not (folder / knob).read_text().strip():
                        (folder / knob).write_text((hierarchy / knob).read_text())

    # -- command lines ------------------------------------------------------------------------
    def containerd_argv(self, programs: dict[str, str]) -> list[str]:
        return [programs["containerd"], f"--config={self.dir / 'containerd.toml'}"]

    def kubelet_argv(self, kubelet: Path, kubeconfig: Path) -> list[str]:
        return [
            str(kubelet),
            f"--config={self.dir / 'kubelet-config.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.dir / 'kubelet'}",
            f"--cert-dir={self.dir / 'kubelet' / 'pki'}",
            f"--hostname-override={self.node_name}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        ]

    def proxy_argv(self, kube_proxy: Path) -> list[str]:
        return [str(kube_proxy), f"--config={self.dir / 'kube-proxy.yaml'}", "--v=1"]

    def env(self, programs: dict[str, str]) -> dict[str, str]:
        """Environment of containerd and the kubelet (iptables, runc and shims on PATH)."""
        dirs = {str(Path(p).parent) for k, p in programs.items() if k != "cni"}
        path = os.pathsep.join([*sorted(dirs), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        return {"PATH": path, "HOME": str(self.dir), "LANG": "C.UTF-8"}

    # -- images ---------------------------------------------------------------------------------
    def ctr(self, programs: dict[str, str], *args: str, input: bytes | None = None) -> str:
        """Run ``ctr -n k8s.io ARGS`` against this node's containerd."""
        result = subprocess.run(
            [programs["ctr"], f"--address={self.socket}", "-n", "k8s.io", *args],
            input=input,
            capture_output=True,
        )
        if result.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed: {result.stderr.decode()[-1500:]}")
        return result.stdout.decode()

    def import_pause(self, programs: dict[str, str], pause_binary: Path) -> None:
        """Load the locally built pause image (a one-file image ``FROM scratch``)."""
        if PAUSE_IMAGE in self.ctr(programs, "images", "list", "-q"):
            return
        image = files_image(
            PAUSE_IMAGE, {"/pause": pause_binary}, {"Entrypoint": ["/pause"], "User": "65535:65535"}
        )
        self.ctr(programs, "images", "import", "-", input=image)

    def images(self, programs: dict[str, str]) -> list[str]:
        return self.ctr(programs, "images", "list", "-q").split()

    # -- cleanup ----------------------------------------------------------------------------
    def cgroup_pids(self) -> set[int]:
        """Every process in the node's cgroups (pods' containers)."""
        return pids_under(self.cgroup)

    def shim_pids(self) -> set[int]:
        """containerd shims started by this node's containerd (they outlive it)."""
        needle = str(self.socket)
        pids = set()
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if cmd and "containerd-shim" in cmd[0] and needle in cmd:
                pids.add(proc.pid)
        return pids

    def kill_pods(self) -> int:
        """SIGKILL every container process and shim of this node; how many there were."""
        victims = self.cgroup_pids() | self.shim_pids()
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in victims):
            for pid in victims:  # reap our own children (none normally)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        return len(victims)

    def mounts(self) -> list[str]:
        """Mount points under the state dir, deepest first."""
        base = str(self.state_dir)
        found = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point == base or point.startswith(base + "/"):
                found.append(point)
        return sorted(set(found), key=lambda p: p.count("/"), reverse=True)

    def unmount_all(self) -> list[str]:
        left = []
        for _ in range(3):
            points = self.mounts()
            for point in points:
                subprocess.run(["umount", "-l", point], capture_output=True)
            left = self.mounts()
            if not left:
                break
        return left

    def remove_cgroups(self) -> list[str]:
        """rmdir the node's cgroups, deepest first; the folders that could not go."""
        return remove_tree(self.cgroup, attempts=20)


def storage_class() -> dict[str, object]:
    """The node's default StorageClass: statically made local PVs, bound on first use."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    }


def local_volume(index: int, folder: Path, node_name: str) -> dict[str, object]:
    """Local PV number ``index`` on ``folder`` of the node."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"tj-local-pv-{index}", "labels": {"tj-dev-cluster/local": "true"}},
        "spec": {
            "capacity": {"storage": LOCAL_VOLUME_SIZE},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
            "local": {"path": str(folder)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [node_name],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }
