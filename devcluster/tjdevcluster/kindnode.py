"""A kind node image built on this machine from package registries only, and the kind CLI.

Development and test scaffolding behind ``make kind-up`` when no Docker engine runs here
(scripts/kind-up.sh; docs/INSTALL.md). A user with Docker pulls ``kindest/node`` as usual
and never runs this. What goes into the image, and where each piece comes from:

- a Debian bookworm root file system (``debootstrap --variant=minbase``) with systemd,
  Debian's containerd, runc and CNI plugins, iptables, nftables, iproute2 and the tools
  kind's entrypoint calls;
- kind's own node files (entrypoint, systemd units, kubelet drop-ins, sysctls) from the
  ``sigs.k8s.io/kind`` Go module;
- kubelet (the dev cluster's build, tools.py), kubeadm (built here, ``kindbuild/``) and
  kubectl (tools.py's) in ``/usr/bin``; ``/kind/version`` names the Kubernetes release;
- the control-plane images kubeadm expects (kube-apiserver, kube-controller-manager,
  kube-scheduler, kube-proxy, etcd, coredns, pause under their ``registry.k8s.io`` names),
  each made of our Go-built binary (kube-proxy also gets nft and iptables from the root
  file system), preloaded into the image's containerd (``/var/lib/containerd``) as kind
  does, so nothing is ever pulled;
- no kindnetd (not on the Go module proxy): a bridge CNI configuration for the node's pod
  range (the cluster runs with ``disableDefaultCNI``); no storage provisioner (the chart
  uses a hostPath volume over ``kind-config.yaml``'s extraMounts).

Cache (outside the repo, keyed by version and recipe)::

    ${TJ_CACHE_DIR:-~/.cache/trainingjob-operator}/
        tools/kind-v0.33.0/kind, tools/kubeadm-v1.36.3/kubeadm, tools/coredns-v1.14.2/coredns
        kind/node-v1.36.3-<hash>/node.tar     the node image's root file system
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import baseimage, netns, tools
from .imagearchive import files_image
from .imagecache import (
    ImagesError,
    Log,
    check_free_space,
    is_complete,
    locked,
    mark_complete,
    recipe_hash,
    remove_stale,
    run_step,
)

KIND_VERSION = "v0.33.0"
KIND_MODULE = "sigs.k8s.io/kind"
COREDNS_VERSION = "v1.14.2"  # kubeadm v1.36's CoreDNSVersion
COREDNS_MODULE = "github.com/coredns/coredns"
ETCD_IMAGE_TAG = "3.6.8-0"  # kubeadm v1.36's DefaultEtcdVersion (our etcd is v3.6.8)
PAUSE_IMAGE_TAG = "3.10.2"  # kubeadm v1.36's PauseVersion
REGISTRY = "registry.k8s.io"
KINDBUILD_DIR = Path(__file__).resolve().parent / "kindbuild"
SUITE = baseimage.SUITE
# What the node needs beyond minbase (kind's base image installs the same, less the
# packages for network storage, fuse and the build tools).
PACKAGES = (
    "systemd",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "procps",
    "jq",
    "bash",
)
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap", "ptp")
POD_SUBNET = "10.244.0.0/16"
NODE_POD_CIDR = "10.244.0.0/24"  # the first (only) node's range
SERVICE_SUBNET = "10.96.0.0/16"
# Registries whose pulls containerd sends to a closed loopback port instead (nothing is
# pulled; this only makes sure a missing image can never reach anything off the machine).
BLOCKED_REGISTRIES = ("registry.k8s.io", "docker.io", "ghcr.io", "quay.io", "gcr.io")
# Bump when the steps below change: the recipe's hash names the cache folder.
NODE_REVISION = 1
# What `docker import` sets (kind's base image also sets STOPSIGNAL SIGRTMIN+3, which an
# import cannot; kind removes its nodes with `docker rm -f`, never `docker stop`).
IMPORT_CHANGES = (
    "ENV container=docker",
    'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
)
# kind's node files we take from its module (path inside images/base/files).
KIND_FILES = (
    "usr/local/bin/entrypoint",
    "kind/bin/undo-mount-hacks.sh",
    "kind/bin/create-kubelet-cgroup-v2.sh",
    "etc/systemd/system/kubelet.service",
    "etc/systemd/system/kubelet.slice",
    "etc/systemd/system/undo-mount-hacks.service",
    "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "etc/systemd/system/kubelet.service.d/11-kind.conf",
    "etc/crictl.yaml",
    "etc/default/kubelet",
    "etc/sysctl.d/10-network-security.conf",
    "etc/sysctl.d/10-network-magic.conf",
)


class KindError(ImagesError):
    """The kind CLI or the node image could not be built; the message says why."""


def cache_base() -> Path:
    """``$TJ_CACHE_DIR`` (default ``~/.cache/trainingjob-operator``)."""
    base = os.environ.get("TJ_CACHE_DIR") or str(Path.home() / ".cache" / "trainingjob-operator")
    return Path(base).expanduser().resolve()


def kind_root() -> Path:
    """``<cache>/kind``: the node images, the engine's data, the generated files."""
    return cache_base() / "kind"


def kubernetes_version() -> str:
    return tools.kubernetes_version()


# -- Go-built tools, each its own cache entry ------------------------------------------------


@dataclass(frozen=True)
class GoTool:
    """A binary built from the Go module proxy into ``tools/<name>-<version>/<name>``."""

    name: str
    version: str
    how: str  # what the stamp says: a changed recipe rebuilds

    @property
    def path(self) -> Path:
        return tools.cache_root() / f"{self.name}-{self.version}" / self.name

    @property
    def stamp(self) -> str:
        return f"{self.name} {self.version} {self.how}"

    def is_complete(self) -> bool:
        stamp = self.path.parent / tools.STAMP
        return (
            stamp.is_file()
            and stamp.read_text().strip() == self.stamp
            and os.access(self.path, os.X_OK)
        )


def kind_tool() -> GoTool:
    return GoTool("kind", KIND_VERSION, f"go install {KIND_MODULE}@{KIND_VERSION}")


def kubeadm_tool() -> GoTool:
    return GoTool(
        "kubeadm", kubernetes_version(), "go build kindbuild k8s.io/kubernetes/cmd/kubeadm"
    )


def coredns_tool() -> GoTool:
    return GoTool("coredns", COREDNS_VERSION, f"go install {COREDNS_MODULE}@{COREDNS_VERSION}")


def _go_build(tool: GoTool, argv: list[str], cwd: Path | None, log: Log) -> Path:
    """Run ``go argv`` (output into a scratch GOBIN / -o dir) and install the binary."""
    if tool.is_complete():
        return tool.path
    with locked(f"build-{tool.name}", tools.cache_root()):
        if tool.is_complete():
            return tool.path
        scratch = tools.cache_root() / "_build"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            env = dict(tools._go_env())
            env["GOBIN"] = tmp
            if cwd is None:  # go install pkg@version: the module's own go.mod and go.sum
                env["GOFLAGS"] = env["GOFLAGS"].replace("-mod=readonly", "").strip()
            start = time.monotonic()
            log(f"building {tool.name} {tool.version} from the Go module proxy (first time only)")
            args = [a.replace("{out}", tmp) for a in argv]
            tools._run_go(args, cwd or Path(tmp), env, f"go build {tool.name}", log)
            built = Path(tmp) / tool.name
            if not built.is_file():
                raise KindError(f"go build of {tool.name} made no {built.name}")
            tool.path.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(built), tool.path)
            tool.path.chmod(0o755)
            (tool.path.parent / tools.STAMP).write_text(tool.stamp + "\n")
            log(f"  {tool.name}: {time.monotonic() - start:.0f} s")
    return tool.path


def _install_argv(module: str, version: str) -> list[str]:
    return [
        "install",
        "-v",
        "-p",
        tools._jobs(),
        "-trimpath",
        "-ldflags",
        "-s -w",
        f"{module}@{version}",
    ]


def ensure_kind(log: Log = print) -> Path:
    """The kind CLI, ``go install``ed once (about a minute)."""
    return _go_build(kind_tool(), _install_argv(KIND_MODULE, KIND_VERSION), None, log)


def ensure_kubeadm(log: Log = print) -> Path:
    """kubeadm of the pinned release, built through the ``kindbuild/`` wrapper module."""
    tool = kubeadm_tool()
    if tool.is_complete():
        return tool.path
    scratch = tools.cache_root() / "_build"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as src:
        shutil.copytree(KINDBUILD_DIR, src, dirs_exist_ok=True)
        argv = [
            "build",
            "-v",
            "-p",
            tools._jobs(),
            "-trimpath",
            "-ldflags",
            tools._version_ldflags(tool.version),
            "-o",
            "{out}/kubeadm",
            "k8s.io/kubernetes/cmd/kubeadm",
        ]
        return _go_build(tool, argv, Path(src), log)


def ensure_coredns(log: Log = print) -> Path:
    return _go_build(coredns_tool(), _install_argv(COREDNS_MODULE, COREDNS_VERSION), None, log)


def kind_module_dir(log: Log = print) -> Path:
    """The ``sigs.k8s.io/kind`` module's source (``go mod download``), for its node files."""
    env = dict(tools._go_env())
    env["GOFLAGS"] = ""
    result = subprocess.run(
        [tools._go_binary(), "mod", "download", "-json", f"{KIND_MODULE}@{KIND_VERSION}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    if result.returncode != 0:
        raise KindError(f"go mod download {KIND_MODULE}@{KIND_VERSION}: {result.stderr[-1500:]}")
    return Path(json.loads(result.stdout)["Dir"])


# -- component images --------------------------------------------------------------------------


def component_images() -> dict[str, str]:
    """Image reference → what it holds, as kubeadm v1.36 and kind name them."""
    kv = kubernetes_version()
    return {
        f"{REGISTRY}/kube-apiserver:{kv}": "kube-apiserver",
        f"{REGISTRY}/kube-controller-manager:{kv}": "kube-controller-manager",
        f"{REGISTRY}/kube-scheduler:{kv}": "kube-scheduler",
        f"{REGISTRY}/kube-proxy:{kv}": "kube-proxy",
        f"{REGISTRY}/etcd:{ETCD_IMAGE_TAG}": "etcd",
        f"{REGISTRY}/coredns/coredns:{COREDNS_VERSION}": "coredns",
        f"{REGISTRY}/pause:{PAUSE_IMAGE_TAG}": "pause",
    }


PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _libraries(root: Path, programs: list[str]) -> list[str]:
    """The shared libraries (paths inside ``root``) that ``programs`` load, by ldd in a chroot."""
    found: set[str] = set()
    for program in programs:
        result = subprocess.run(
            ["chroot", str(root), "/usr/bin/ldd", program], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise KindError(f"ldd {program} in the node root file system: {result.stderr.strip()}")
        for line in result.stdout.splitlines():
            words = line.split()
            if "=>" in words and len(words) >= 3 and words[2].startswith("/"):
                found.add(words[2])
            elif words and words[0].startswith("/"):
                found.add(words[0])
    return sorted(found)


def _real(root: Path, path: str) -> Path:
    """``path`` inside ``root`` with its symlinks resolved inside ``root``."""
    current = root / path.lstrip("/")
    for _ in range(20):
        if not current.is_symlink():
            return current
        target = os.readlink(current)
        current = (root / target.lstrip("/")) if target.startswith("/") else current.parent / target
    raise KindError(f"too many symlinks at {path}")


def kube_proxy_files(root: Path, binary: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """kube-proxy plus nft and iptables (nft backend) with their libraries, from ``root``."""
    programs = ["/usr/sbin/nft", "/usr/sbin/xtables-nft-multi"]
    files: dict[str, Path] = {"/usr/local/bin/kube-proxy": binary}
    for path in [*programs, *_libraries(root, programs)]:
        files[path] = _real(root, path)
    for module in sorted((root / "usr/lib/x86_64-linux-gnu/xtables").glob("*.so")):
        files["/" + str(module.relative_to(root))] = module
    links = {
        f"/usr/sbin/{name}": "xtables-nft-multi"
        for name in (
            "iptables",
            "iptables-save",
            "iptables-restore",
            "ip6tables",
            "ip6tables-save",
            "ip6tables-restore",
        )
    }
    # The libraries live under /usr/lib (usrmerge): /lib and /lib64 point there.
    links["/lib"] = "usr/lib"
    links["/lib64"] = "usr/lib64"
    moved = {}
    for name, source in files.items():
        for prefix in ("/lib/", "/lib64/"):
            if name.startswith(prefix):
                name = "/usr" + name
        moved[name] = source
    return moved, links


def component_archives(root: Path, binaries: dict[str, Path]) -> dict[str, bytes]:
    """Every control-plane image as a docker-archive tarball, by reference."""
    out = {}
    for ref, name in component_images().items():
        symlinks: dict[str, str] = {}
        if name == "kube-proxy":
            files, symlinks = kube_proxy_files(root, binaries[name])
            config: dict[str, object] = {"Env": [PATH_ENV]}
        elif name in ("coredns", "pause"):
            files = {f"/{name}": binaries[name]}
            config = {"Env": [PATH_ENV], "Entrypoint": [f"/{name}"]}
        else:
            files = {f"/usr/local/bin/{name}": binaries[name]}
            config = {"Env": [PATH_ENV], "Entrypoint": [f"/usr/local/bin/{name}"]}
        out[ref] = files_image(ref, files, config, symlinks)
    return out


# -- node configuration files ------------------------------------------------------------------


def containerd_config() -> str:
    """The node's /etc/containerd/config.toml (Debian's containerd 1.6, kind's settings)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# containerd of the kind node built by tjdevcluster.kindnode (kind's settings, for
# Debian's containerd 1.6)
version = 2

[{cri}]
  sandbox_image = "{REGISTRY}/pause:{PAUSE_IMAGE_TAG}"
  tolerate_missing_hugetlb_controller = true
  # This machine grants no CAP_SYS_RESOURCE: never ask for a lower oom_score_adj.
  restrict_oom_score_adj = true
  disable_apparmor = true
[{cri}.containerd]
  discard_unpacked_layers = true
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = true
[{cri}.cni]
  bin_dir = "/opt/cni/bin"
  conf_dir = "/etc/cni/net.d"
[{cri}.registry]
  # Every image is preloaded; a pull of anything else goes to a closed loopback port.
  config_path = "/etc/containerd/certs.d"
"""


def blocked_registry_hosts() -> str:
    return (
        "# tjdevcluster.kindnode: this node pulls nothing; a pull ends at a closed local port\n"
        'server = "http://127.0.0.1:9"\n'
        '[host."http://127.0.0.1:9"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )


def cni_config() -> str:
    conf = {
        "cniVersion": "1.0.0",
        "name": "tj-kind",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


CONTAINERD_UNIT = """# kind's containerd.service, for Debian's containerd in /usr/bin
[Unit]
Description=containerd container runtime
After=network.target local-fs.target
StartLimitIntervalSec=0

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=1
LimitNPROC=infinity
LimitCORE=infinity
LimitNOFILE=infinity
TasksMax=infinity

[Install]
WantedBy=multi-user.target
"""

# kind applies this file's objects at creation; an empty one means its built-in default.
STORAGE_MANIFEST = """# The default StorageClass of the node: no provisioner runs here. The shared
# claim binds the hostPath PersistentVolume it makes (persistence.hostPath=/shared-data).
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
"""


# -- the node image ----------------------------------------------------------------------------


def recipe() -> str:
    """The text whose hash keys the node image's cache folder."""
    return "\n".join(
        [
            f"kind node {kubernetes_version()} for kind {KIND_VERSION}, revision {NODE_REVISION}",
            f"debootstrap --variant=minbase --include={','.join(PACKAGES)} {SUITE}",
            f"cni plugins {','.join(CNI_PLUGINS)}",
            *(f"{ref}" for ref in component_images()),
            containerd_config(),
            cni_config(),
            STORAGE_MANIFEST,
            CONTAINERD_UNIT,
        ]
    )


def node_dir() -> Path:
    return kind_root() / f"node-{kubernetes_version()}-{recipe_hash(recipe())}"


def image_recipe() -> str:
    """The root file system's recipe and the image configuration ``docker import`` gives it."""
    return "\n".join([recipe(), *IMPORT_CHANGES])


def node_image_ref() -> str:
    """The tag the node image gets in the project's engine (never pulled: ``localhost/``)."""
    return f"localhost/tj-kind-node:{kubernetes_version()}-{recipe_hash(image_recipe())}"


def find_node_tarball() -> Path | None:
    tarball = node_dir() / "node.tar"
    return tarball if is_complete(node_dir(), recipe()) and tarball.is_file() else None


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


def _link(root: Path, path: str, target: str) -> None:
    link = root / path.lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def configure_rootfs(root: Path, kind_src: Path, binaries: dict[str, Path]) -> None:
    """kind's node files, the Kubernetes binaries, containerd's and the CNI's configuration,
    the systemd units enabled as kind's base image does, and the cleaning of this machine."""
    files = kind_src / "images" / "base" / "files"
    for rel in KIND_FILES:
        text = (files / rel).read_text()
        _write(root, rel, text, 0o755 if rel.endswith((".sh", "entrypoint")) else 0o644)
    _write(root, "/etc/systemd/system/containerd.service", CONTAINERD_UNIT)
    _write(root, "/etc/containerd/config.toml", containerd_config())
    for registry in BLOCKED_REGISTRIES:
        _write(root, f"/etc/containerd/certs.d/{registry}/hosts.toml", blocked_registry_hosts())
    _write(root, "/etc/cni/net.d/10-tj-kind.conflist", cni_config())
    cni = root / "opt/cni/bin"
    cni.mkdir(parents=True, exist_ok=True)
    for plugin in sorted((root / "usr/lib/cni").iterdir()):
        if plugin.name in CNI_PLUGINS:
            shutil.move(str(plugin), cni / plugin.name)
        else:
            plugin.unlink()
    (root / "usr/lib/cni").rmdir()
    _link(root, "/usr/lib/cni", "/opt/cni/bin")
    for name in ("kubelet", "kubeadm", "kubectl"):
        target = root / "usr/bin" / name
        shutil.copy2(binaries[name], target)
        target.chmod(0o755)
    _write(root, "/kind/version", kubernetes_version() + "\n")
    _write(root, "/kind/manifests/default-storage.yaml", STORAGE_MANIFEST)
    (root / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
    (root / "kind").chmod(0o755)
    # As kind's base image: no unit but ours starts; journald leaves /dev/kmsg alone.
    for pattern in (
        "usr/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
        "usr/lib/systemd/system/multi-user.target.wants/*",
        "etc/systemd/system/*.wants/*",
        "usr/lib/systemd/system/local-fs.target.wants/*",
        "usr/lib/systemd/system/sockets.target.wants/*udev*",
        "usr/lib/systemd/system/sockets.target.wants/*initctl*",
        "usr/lib/systemd/system/basic.target.wants/*",
    ):
        for path in root.glob(pattern):
            path.unlink()
    with open(root / "etc/systemd/journald.conf", "a") as journald:
        journald.write("ReadKMsg=no\n")
    _link(root, "/usr/sbin/init", "/usr/lib/systemd/systemd")
    wants = "/etc/systemd/system/multi-user.target.wants"
    for unit in ("kubelet.service", "containerd.service", "undo-mount-hacks.service"):
        _link(root, f"{wants}/{unit}", f"/etc/systemd/system/{unit}")
    _link(root, "/etc/systemd/system/systemd-binfmt.service", "/dev/null")
    _clean(root)


def _clean(root: Path) -> None:
    """Nothing of this machine or of the bootstrap; no documentation (as baseimage does)."""
    root.chmod(0o755)
    for name in ("etc/resolv.conf", "etc/hostname"):
        (root / name).unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    (root / "etc/apt/sources.list").write_text(f"deb {baseimage.PUBLIC_MIRROR} {SUITE} main\n")
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/cache/debconf/*-old",
        "var/lib/dpkg/*-old",
        "var/log/*",
        "tmp/*",
        "root/.*",
        "debootstrap",
    ):
        baseimage._remove(root, pattern)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    baseimage._slim(root)
    for needed in ("usr/bin/containerd", "usr/sbin/runc", "usr/sbin/nft", "usr/bin/kubelet"):
        if not (root / needed).exists():
            raise KindError(f"the node root file system has no /{needed}")


def preload_images(root: Path, archives: dict[str, bytes], scratch: Path, log: Log) -> None:
    """Import the control-plane images into ``root``'s /var/lib/containerd (namespace k8s.io,
    not unpacked, pinned: what ``kind build node-image`` does), with this machine's
    containerd run inside a network namespace of its own (it needs no network)."""
    containerd = shutil.which("containerd") or "/usr/bin/containerd"
    ctr = shutil.which("ctr") or "/usr/bin/ctr"
    socket = scratch / "c.sock"
    config = scratch / "containerd.toml"
    config.write_text(
        f"""version = 2
root = "{root / "var/lib/containerd"}"
state = "{scratch / "state"}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[metrics]
  address = ""
"""
    )
    space = f"tj-kindpre-{os.getpid() % 100000}"
    netns.create(space)
    proc = None
    try:
        with open(scratch / "containerd.log", "wb") as out:
            proc = subprocess.Popen(
                netns.wrap(space, [containerd, "--config", str(config)]),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while not socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                log_text = (scratch / "containerd.log").read_text(errors="replace")[-1500:]
                raise KindError(f"containerd for the preload did not start:\n{log_text}")
            time.sleep(0.1)
        for ref, data in archives.items():
            result = subprocess.run(
                [
                    ctr,
                    f"--address={socket}",
                    "--namespace=k8s.io",
                    "images",
                    "import",
                    "--label=io.cri-containerd.pinned=pinned",
                    "--all-platforms",
                    "--no-unpack",
                    "--digests",
                    "-",
                ],
                input=data,
                capture_output=True,
            )
            if result.returncode != 0:
                raise KindError(f"ctr import of {ref}: {result.stderr.decode()[-1500:]}")
        listed = subprocess.run(
            [ctr, f"--address={socket}", "--namespace=k8s.io", "images", "ls", "-q"],
            capture_output=True,
            text=True,
        ).stdout.split()
        missing = [ref for ref in archives if ref not in listed]
        if missing:
            raise KindError(f"not in the node's containerd after the import: {missing}")
        log(f"  preloaded {len(archives)} images into the node's containerd")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        netns.delete(space)
    shutil.rmtree(root / "var/lib/containerd/tmpmounts", ignore_errors=True)


def ensure_node_tarball(log: Log = print) -> Path:
    """The node image's root file system as a tarball (``docker import``-able), built once."""
    found = find_node_tarball()
    if found:
        return found
    netns.require_root("building the kind node image")
    if not shutil.which("debootstrap"):
        raise KindError(
            "debootstrap not found; install it with `apt-get install debootstrap containerd` "
            "(or scripts/install-node-deps.sh)"
        )
    folder = node_dir()
    with locked(folder.name, kind_root()):
        if find_node_tarball():
            return node_dir() / "node.tar"
        check_free_space(kind_root())
        start = time.monotonic()
        base_tools = tools.ensure_tools(log)
        binaries = {
            "kubelet": base_tools.kubelet,
            "kubectl": base_tools.kubectl,
            "kubeadm": ensure_kubeadm(log),
            "kube-apiserver": base_tools.kube_apiserver,
            "kube-controller-manager": base_tools.kube_controller_manager,
            "kube-scheduler": base_tools.kube_scheduler,
            "kube-proxy": base_tools.kube_proxy,
            "etcd": base_tools.etcd,
            "pause": base_tools.pause,
            "coredns": ensure_coredns(log),
        }
        kind_src = kind_module_dir(log)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        scratch_root = kind_root() / "_build"
        scratch_root.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="noderoot-", dir=scratch_root))
        scratch = Path(tempfile.mkdtemp(prefix="preload-", dir=scratch_root))
        mirror = baseimage.debian_mirror()
        log(f"debootstrap {SUITE} for the kind node from {mirror} (first time only)")
        try:
            run_step(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    SUITE,
                    str(root),
                    mirror,
                ],
                "debootstrap (node)",
                folder / "debootstrap.log",
                log,
                env=dict(os.environ, LANG="C.UTF-8"),
                show=lambda line: line if line.startswith("I: Base system installed") else None,
            )
            for mount in baseimage._mounts_under(root):
                subprocess.run(["umount", "-l", str(mount)], capture_output=True)
            configure_rootfs(root, kind_src, binaries)
            preload_images(root, component_archives(root, binaries), scratch, log)
            partial = folder / "node.tar.partial"
            run_step(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."],
                "tar of the node root file system",
                folder / "tar.log",
                log,
            )
            partial.rename(folder / "node.tar")
        finally:
            baseimage.remove_rootfs(root)
            shutil.rmtree(scratch, ignore_errors=True)
        mark_complete(folder, recipe())
        remove_stale(folder)
        size = (folder / "node.tar").stat().st_size / 1e6
        log(f"kind node image ready in {time.monotonic() - start:.0f} s ({size:.0f} MB)")
    return folder / "node.tar"
