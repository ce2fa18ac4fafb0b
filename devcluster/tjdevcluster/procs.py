"""Background processes tracked by pid files, and port checks.

A pid file holds ``<pid> <create_time>`` so that a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil


class PortInUseError(RuntimeError):
    """A port the control plane needs is taken."""

    def __init__(self, port: int, what: str) -> None:
        super().__init__(
            f"port {port} on 127.0.0.1 (for {what}) is already in use; stop whatever listens "
            f"there or choose other ports (see `tjctl dev-cluster up --help`)"
        )
        self.port = port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something listens on host:port (or it cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def check_port(port: int, what: str) -> None:
    """Raise PortInUseError naming the port if it is taken."""
    if port_in_use(port):
        raise PortInUseError(port, what)


def free_ports(count: int) -> list[int]:
    """Distinct ports that are free right now on 127.0.0.1."""
    socks, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in socks:
            sock.close()
    return ports


def start(
    argv: list[str], log_path: Path, pid_path: Path, env: dict[str, str] | None = None
) -> psutil.Process:
    """Start argv detached (own session), output to log_path; record it in pid_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    handle = psutil.Process(proc.pid)
    pid_path.write_text(f"{proc.pid} {handle.create_time()}\n")
    return handle


def tracked(pid_path: Path) -> psutil.Process | None:
    """The live process recorded in pid_path, or None (gone, or pid reused)."""
    try:
        pid_text, created = pid_path.read_text().split()
        handle = psutil.Process(int(pid_text))
        if abs(handle.create_time() - float(created)) > 0.01:
            return None
        if handle.status() == psutil.STATUS_ZOMBIE:
            return None
        return handle
    except (OSError, ValueError, psutil.Error):
        return None


def stop(pid_path: Path, timeout: float = 10.0) -> bool:
    """SIGTERM the recorded process (SIGKILL after timeout); True if one was running."""
    handle = tracked(pid_path)
    pid_path.unlink(missing_ok=True)
    if handle is None:
        return False
    try:
        handle.send_signal(signal.SIGTERM)
        handle.wait(timeout)
    except psutil.TimeoutExpired:
        handle.kill()
        handle.wait(5)
    except psutil.NoSuchProcess:
        pass
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until pid has exited; True if it did within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            return True
        time.sleep(0.05)
    return not psutil.pid_exists(pid)


def signal_group(pid: int, sig: int) -> None:
    """Send sig to the process group led by pid (ignoring a group already gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
