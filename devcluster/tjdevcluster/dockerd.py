"""The project's own Docker engine for image builds: containerd + dockerd started inside
network namespace ``tj-images`` (no route off the machine), with no iptables, no bridge
and no IP forwarding, its data under ``<cache>/images/docker/``; stopped by pid.

Development and test scaffolding. Nothing of this machine's Docker configuration is read
(``--config-file`` and ``DOCKER_CONFIG`` point at our own empty files), and the host's
network (iptables, ``ip_forward``, interfaces) is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from . import netns
from .imagecache import ImagesError, Log, cache_root, clean_env, locked

NETNS = "tj-images"
# One engine at a time on this machine, whatever the cache: the namespace name is global.
LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
CGROUP_PARENT = "tj-images"
API_VERSION = "1.41"  # Docker 20.10 (Debian's docker.io); newer clients speak it too
INSTALL_HINT = "install them with `apt-get install docker.io containerd debootstrap`"
# Host paths dockerd 20.10 / containerd 1.6 create whatever their flags say (its trust
# key, the plugin socket folder, the shim socket folder); removed after the build when
# they were not there before (deepest first; folders only when empty).
HOST_LEFTOVERS = (
    Path("/etc/docker/key.json"),
    Path("/etc/docker"),
    Path("/run/docker/plugins"),
    Path("/run/docker"),
    Path("/run/containerd/s"),
    Path("/run/containerd"),
)


def _find(name: str, *candidates: str) -> str:
    for path in (*candidates, shutil.which(name)):
        if path and os.access(path, os.X_OK):
            return path
    raise ImagesError(f"{name} not found; {INSTALL_HINT} (or scripts/install-node-deps.sh)")


def require_root(what: str = "tjctl images build") -> None:
    """Refuse clearly when not root (netns.require_root, with the reason of this tool)."""
    try:
        netns.require_root(what)
    except netns.NetnsError:
        raise ImagesError(
            f"{what} needs root: it runs its own dockerd and containerd inside a network "
            "namespace with no route off the machine. Run it as root (e.g. "
            "`sudo -E tjctl images build`)."
        ) from None


def docker_client() -> str:
    """Debian's 20.10 client if present (any newer client works with DOCKER_API_VERSION)."""
    return _find("docker", "/usr/bin/docker")


class Dockerd:
    """A private dockerd: ``argv(...)``/``run(...)`` give docker commands that talk to it."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or cache_root() / "docker"
        self.data_root = self.home / "data"
        self.exec_root = self.home / "exec"
        self.socket = self.exec_root / "docker.sock"
        self.containerd_socket = self.exec_root / "containerd.sock"
        self.client_config = self.home / "client"
        self._procs: dict[str, psutil.Process] = {}
        self._created: list[Path] = []
        if len(str(self.containerd_socket)) + 8 > 100:  # unix socket paths: 108 bytes
            raise ImagesError(f"{self.home} is too long a path for sockets; set TJ_CACHE_DIR")

    # -- client -------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """Environment of docker commands: classic builder, our socket, no host config."""
        return clean_env(
            DOCKER_HOST=f"unix://{self.socket}",
            DOCKER_API_VERSION=API_VERSION,
            DOCKER_BUILDKIT="0",
            DOCKER_CONFIG=str(self.client_config),
        )

    def argv(self, *args: str) -> list[str]:
        return [docker_client(), *args]

    def run(self, *args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess:
        """Run ``docker ARGS`` against this engine (text output captured by default)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        result = subprocess.run(self.argv(*args), env=self.env, check=False, **kwargs)  # type: ignore[call-overload]
        if check and result.returncode != 0:
            err = result.stderr if isinstance(result.stderr, str) else ""
            raise ImagesError(f"docker {' '.join(args[:3])} failed: {err.strip()[-2000:]}")
        return result

    # -- daemon -------------------------------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.home / f"{name}.pid"

    def _stop_leftovers(self) -> None:
        """A dockerd/containerd of ours that a killed earlier run left behind."""
        for name in ("dockerd", "containerd"):
            pid_file = self._pid_file(name)
            with contextlib.suppress(FileNotFoundError, ValueError, psutil.Error):
                pid = int(pid_file.read_text().split()[0])
                proc = psutil.Process(pid)
                if str(self.home) in " ".join(proc.cmdline()):
                    self._terminate(name, proc)
            pid_file.unlink(missing_ok=True)

    def _write_containerd_config(self) -> Path:
        config = self.home / "containerd.toml"
        config.write_text(
            f"""# containerd of tjctl images build (written by tjdevcluster.dockerd)
version = 2
root = "{self.data_root / "containerd"}"
state = "{self.exec_root / "containerd"}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[debug]
  level = "warn"
[metrics]
  address = ""
"""
        )
        return config

    def _spawn(self, name: str, argv: list[str]) -> psutil.Process:
        with open(self.home / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                netns.wrap(NETNS, argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                start_new_session=True,
            )
        handle = psutil.Process(proc.pid)
        self._pid_file(name).write_text(f"{proc.pid}\n")
        self._procs[name] = handle
        return handle

    def _wait_for(self, name: str, ready: object, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        proc = self._procs[name]
        while time.monotonic() < deadline:
            if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                tail = (self.home / f"{name}.log").read_text(errors="replace")[-2000:]
                raise ImagesError(f"{name} exited at start; end of its log:\n{tail}")
            if callable(ready) and ready():
                return
            time.sleep(0.2)
        raise ImagesError(f"{name} not ready after {timeout:.0f} s (see {self.home}/{name}.log)")

    def start(self, log: Log) -> None:
        """Start containerd and dockerd in the namespace; wait until the API answers."""
        require_root()
        dockerd = _find("dockerd", "/usr/sbin/dockerd", "/usr/bin/dockerd")
        containerd = _find("containerd", "/usr/bin/containerd")
        _find("runc", "/usr/sbin/runc", "/usr/bin/runc")
        docker_client()
        for folder in (self.data_root, self.exec_root, self.client_config):
            folder.mkdir(parents=True, exist_ok=True)
        self._stop_leftovers()
        (self.client_config / "config.json").write_text("{}\n")
        (self.home / "daemon.json").write_text("{}\n")
        self._created = [path for path in HOST_LEFTOVERS if not path.exists()]
        try:
            netns.create(NETNS)
        except netns.NetnsError as exc:
            raise ImagesError(str(exc)) from None
        start = time.monotonic()
        self._spawn("containerd", [containerd, "--config", str(self._write_containerd_config())])
        self._wait_for("containerd", self.containerd_socket.exists)
        self._spawn(
            "dockerd",
            [
                dockerd,
                f"--config-file={self.home / 'daemon.json'}",
                f"--host=unix://{self.socket}",
                f"--containerd={self.containerd_socket}",
                f"--data-root={self.data_root}",
                f"--exec-root={self.exec_root}",
                f"--pidfile={self.exec_root / 'dockerd.pid'}",
                f"--cgroup-parent={CGROUP_PARENT}",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--log-level=warn",
            ],
        )
        self._wait_for(
            "dockerd",
            lambda: (
                self.run("version", "--format", "{{.Server.Version}}", check=False).returncode == 0
            ),
        )
        netns.assert_isolated(NETNS)
        log(f"dockerd running in network namespace {NETNS} ({time.monotonic() - start:.1f} s)")

    def _terminate(self, name: str, proc: psutil.Process, grace: float = 30) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def _shims(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if (
                "containerd-shim" in (proc.info["name"] or "")
                and str(self.containerd_socket) in cmd
            ):
                found.append(proc)
        return found

    def stop(self) -> None:
        """Stop dockerd, then containerd and any shim of theirs; unmount, delete the
        namespace and the runtime state (the image data stays for the next build)."""
        for name in ("dockerd", "containerd"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                self._terminate(name, proc)
            self._pid_file(name).unlink(missing_ok=True)
        for shim in self._shims():
            self._terminate("shim", shim, grace=5)
        for root in (self.exec_root, self.data_root):
            prefix = str(root)
            mounts = [
                line.split()[4]
                for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if line.split()[4].startswith(prefix + "/")
            ]
            for mount in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", mount], capture_output=True)
        netns.delete(NETNS)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        for group in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}"):
            for child in sorted(group.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                group.rmdir()
        for path in self._created:
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink(missing_ok=True)


@contextlib.contextmanager
def running(log: Log) -> Iterator[Dockerd]:
    """A started private dockerd for the ``with`` block (one at a time: a file lock)."""
    with locked("tj-images-dockerd", LOCK_DIR):
        engine = Dockerd()
        try:
            engine.start(log)
            yield engine
        finally:
            engine.stop()
