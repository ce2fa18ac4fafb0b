"""The project's own Docker engine for kind, for a machine where no Docker engine runs.

Development and test scaffolding behind ``make kind-up`` / ``make kind-down``
(scripts/kind-up.sh, docs/INSTALL.md). containerd and dockerd run inside network namespace
``tj-kind``, which has a loopback interface and the bridge that kind's network makes, and
**no uplink and no default route**: nothing the engine, the node container or its pods run
can send a packet off the machine. dockerd runs with ``--iptables=false --ip-masq=false
--ip-forward=false`` (the host's iptables and ``net.ipv4.ip_forward`` are never touched: the
namespace has its own), its containers' DNS upstream is ``127.0.0.1`` (nothing answers
there; without it Docker would name this machine's resolver or 8.8.8.8), and its default
runtime is a runc wrapper that drops CAP_SYS_RESOURCE from each container (this machine
grants it to nobody, and kind's node container is privileged).

The engine outlives the command that starts it (the cluster lives until ``kind-down``):
its processes are found again by pid files. The only thing on the host's network is
``python -m tjdevcluster.forward``, listening on ``127.0.0.1:<api port>`` and connecting
from inside the namespace to the port Docker publishes there for the kind API server.

Layout: ``<cache>/kind/engine/`` (data, exec root, logs, pid files), ``<cache>/kind/bin/``
(the runc wrapper).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from . import baseimage, cgroups, dockerd, netns
from .imagecache import ImagesError, Log, clean_env
from .kindnode import IMPORT_CHANGES, ensure_node_tarball, image_recipe, kind_root, node_image_ref
from .kindnode import recipe_hash as _hash

NETNS = "tj-kind"
CGROUP_PARENT = "tj-kind"
DEFAULT_API_PORT = 16444
RUNTIME = "tj-runc"
# Host paths that dockerd, containerd and kind's `-v /lib/modules:...` create if missing;
# removed again by stop() when this engine created them (deepest first, folders if empty).
HOST_PATHS = (*dockerd.HOST_LEFTOVERS, Path("/lib/modules"))
RUNC_WRAPPER = '''#!/usr/bin/python3 -I
"""runc for the containers of the project's kind engine (tjdevcluster.kindengine): drops
CAP_SYS_RESOURCE from the capability sets of each container and of each `docker exec`
process (this machine grants it to no process, so runc would fail to apply it to a
privileged one), then runs runc with the same arguments."""
import json
import os
import sys

REAL = "{runc}"
args = sys.argv[1:]


def option(names):
    for i, arg in enumerate(args):
        if arg in names and i + 1 < len(args):
            return args[i + 1]
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def drop(path, process_of):
    with open(path) as handle:
        spec = json.load(handle)
    caps = process_of(spec).get("capabilities") or {{}}
    if any("CAP_SYS_RESOURCE" in (v or []) for v in caps.values()):
        for key, values in caps.items():
            caps[key] = [c for c in values or [] if c != "CAP_SYS_RESOURCE"]
        with open(path + ".tj", "w") as handle:
            json.dump(spec, handle)
        os.replace(path + ".tj", path)


if "create" in args or "run" in args:  # the container's config.json in its bundle
    bundle = option(("--bundle", "-b")) or "."
    drop(os.path.join(bundle, "config.json"), lambda spec: spec.get("process") or {{}})
elif "exec" in args:  # `docker exec`: a process.json of its own
    process = option(("--process", "-p"))
    if process:
        drop(process, lambda spec: spec)
os.execv(REAL, [REAL, *args])
'''


class KindEngineError(ImagesError):
    """The kind engine could not start, stop or be found; the message says why."""


def api_port() -> int:
    return int(os.environ.get("TJ_KIND_API_PORT") or DEFAULT_API_PORT)


def _alive(pid: int, needle: str) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and needle in " ".join(proc.cmdline())
    except (psutil.Error, ValueError):
        return False


class KindEngine(dockerd.Dockerd):
    """dockerd + containerd for kind in namespace ``tj-kind``; usable across processes."""

    def __init__(self) -> None:
        super().__init__(home=kind_root() / "engine")
        self.wrapper = kind_root() / "bin" / RUNTIME

    # -- processes, by pid file -----------------------------------------------------------------
    def _pid(self, name: str) -> int | None:
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            pid = int(self._pid_file(name).read_text().split()[0])
            needle = str(self.home) if name != "forward" else f"--netns {NETNS}"
            if _alive(pid, needle):
                return pid
        return None

    def pids(self) -> dict[str, int]:
        """The running processes of this engine (dockerd, containerd, forward), by name."""
        found = {}
        for name in ("dockerd", "containerd", "forward"):
            pid = self._pid(name)
            if pid is not None:
                found[name] = pid
        return found

    def is_running(self) -> bool:
        """dockerd runs and its API answers."""
        if self._pid("dockerd") is None or not self.socket.exists():
            return False
        return self.run("version", "--format", "{{.Server.Version}}", check=False).returncode == 0

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

    # -- start ------------------------------------------------------------------------------------
    def _write_wrapper(self) -> None:
        runc = dockerd._find("runc", "/usr/sbin/runc", "/usr/bin/runc")
        self.wrapper.parent.mkdir(parents=True, exist_ok=True)
        self.wrapper.write_text(RUNC_WRAPPER.format(runc=runc))
        self.wrapper.chmod(0o755)

    def _daemon_config(self) -> Path:
        config = {
            # Containers' DNS upstream: loopback, where nothing answers (Docker would
            # otherwise take this machine's resolver, or 8.8.8.8 when that is loopback).
            "dns": ["127.0.0.1"],
            "runtimes": {RUNTIME: {"path": str(self.wrapper)}},
            "default-runtime": RUNTIME,
        }
        path = self.home / "daemon.json"
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def start(self, log: Log) -> None:
        """Start containerd and dockerd in namespace tj-kind (if not running) and wait for
        the API; then the API forwarder."""
        netns.require_root("the project's kind engine (no Docker engine runs here)")
        self._write_wrapper()
        if self.is_running():
            self.start_forward(log)
            return
        self.stop_all()  # whatever a killed earlier run left
        dockerd_bin = dockerd._find("dockerd", "/usr/sbin/dockerd", "/usr/bin/dockerd")
        containerd = dockerd._find("containerd", "/usr/bin/containerd")
        dockerd._find("docker-proxy", "/usr/sbin/docker-proxy", "/usr/bin/docker-proxy")
        dockerd.docker_client()
        for folder in (self.data_root, self.exec_root, self.client_config):
            folder.mkdir(parents=True, exist_ok=True)
        (self.client_config / "config.json").write_text("{}\n")
        created = [str(path) for path in HOST_PATHS if not path.exists()]
        (self.home / "host-paths.json").write_text(json.dumps(created) + "\n")
        try:
            netns.create(NETNS)
        except netns.NetnsError as exc:
            raise KindEngineError(str(exc)) from None
        start = time.monotonic()
        self._spawn("containerd", [containerd, "--config", str(self._write_containerd_config())])
        self._wait_for("containerd", self.containerd_socket.exists)
        self._spawn(
            "dockerd",
            [
                dockerd_bin,
                f"--config-file={self._daemon_config()}",
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
                "--userland-proxy=true",
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
        log(
            f"kind engine: dockerd running in network namespace {NETNS} "
            f"({time.monotonic() - start:.1f} s)"
        )
        self.start_forward(log)

    def start_forward(self, log: Log) -> None:
        """``127.0.0.1:<api port>`` of the host → the same port inside the namespace."""
        if self._pid("forward") is not None:
            return
        port = api_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise KindEngineError(
                    f"127.0.0.1:{port} is taken on this machine; set TJ_KIND_API_PORT to a free "
                    "port (kind's API server is published there)"
                ) from None
        with open(self.home / "forward.log", "ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tjdevcluster.forward",
                    "--listen-port",
                    str(port),
                    "--netns",
                    NETNS,
                    "--target",
                    f"127.0.0.1:{port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=str(Path(__file__).resolve().parents[1]),
            )
        self._pid_file("forward").write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (self.home / "forward.log").read_text(errors="replace")[-1500:]
                raise KindEngineError(f"the API forwarder exited:\n{tail}")
            with socket.socket() as probe:
                probe.settimeout(1)
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    log(f"kind engine: 127.0.0.1:{port} forwarded into namespace {NETNS}")
                    return
            time.sleep(0.1)
        raise KindEngineError(f"the API forwarder does not listen on 127.0.0.1:{port}")

    # -- the node image ---------------------------------------------------------------------------
    def ensure_node_image(self, log: Log) -> str:
        """The locally built node image in this engine (``docker import`` once); its tag."""
        ref = node_image_ref()
        marker = f"tjdevcluster kind node {_hash(image_recipe())}"
        found = self.run("image", "inspect", "-f", "{{.Comment}}", ref, check=False)
        if found.returncode == 0 and found.stdout.strip() == marker:
            return ref
        tarball = ensure_node_tarball(log)
        start = time.monotonic()
        changes = [arg for change in IMPORT_CHANGES for arg in ("--change", change)]
        self.run("import", "--message", marker, *changes, str(tarball), ref)
        log(f"kind engine: imported the node image {ref} ({time.monotonic() - start:.0f} s)")
        repository = ref.rsplit(":", 1)[0]
        listed = self.run("images", repository, "--format", "{{.Repository}}:{{.Tag}}")
        for old in listed.stdout.split():  # node images of earlier recipes
            if old != ref:
                self.run("image", "rm", old, check=False)
        return ref

    # -- stop -------------------------------------------------------------------------------------
    def containers(self) -> list[str]:
        if not self.is_running():
            return []
        out = self.run("ps", "-aq", check=False).stdout
        return out.split()

    def stop_all(self, log: Log | None = None) -> list[str]:
        """Stop the forwarder, every container, dockerd, containerd and their shims; unmount,
        remove the namespace, the cgroups and the host paths this engine made. What is
        left (should be nothing), as messages."""
        ids = self.containers()
        if ids:
            self.run("rm", "-f", "-v", *ids, check=False)
            if log:
                log(f"kind engine: removed {len(ids)} container(s)")
        if self.is_running():  # the nodes' anonymous /var volumes, if any is left
            self.run("volume", "prune", "-f", check=False)
        for name in ("forward", "dockerd", "containerd"):
            pid = self._pid(name)
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    self._terminate(name, psutil.Process(pid))
            self._pid_file(name).unlink(missing_ok=True)
        for shim in self._shims():
            self._terminate("shim", shim, grace=5)
        # A node container's processes outlive a killed shim: kill what is in our cgroups.
        for pid in cgroups.pids_under(CGROUP_PARENT):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for _ in range(3):
            points = baseimage._mounts_under(self.home)
            for point in points:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
            if not points:
                break
        netns.delete(NETNS)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        left = [f"cgroup {folder}" for folder in cgroups.remove_tree(CGROUP_PARENT)]
        with contextlib.suppress(FileNotFoundError, ValueError):
            created = json.loads((self.home / "host-paths.json").read_text())
            for path in map(Path, created):
                with contextlib.suppress(OSError):
                    if path.is_dir() and not path.is_symlink():
                        path.rmdir()
                    else:
                        path.unlink(missing_ok=True)
            (self.home / "host-paths.json").unlink()
        return left + leftovers(self)


def leftovers(engine: KindEngine) -> list[str]:
    """What of the engine still exists (processes, namespace, mounts, cgroups)."""
    found = [f"process {name} (pid {pid})" for name, pid in engine.pids().items()]
    found += [f"containerd shim pid {shim.pid}" for shim in engine._shims()]
    if netns.exists(NETNS):
        found.append(f"network namespace {NETNS}")
    found += [f"mount {point}" for point in baseimage._mounts_under(engine.home)]
    found += [f"cgroup {group}" for group in cgroups.folders(CGROUP_PARENT)]
    found += [f"process {pid} in the engine's cgroups" for pid in cgroups.pids_under(CGROUP_PARENT)]
    return found
