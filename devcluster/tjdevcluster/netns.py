"""Network namespaces with no route off the machine, for the real node and image builds.

Development and test scaffolding. Everything that could send a packet (the control plane
of ``--node kubelet``, containerd, the CNI's pod network, kube-proxy's Service IPs, dockerd
and its image builds) runs inside such a namespace: it has a loopback interface, local
addresses on it, and bridges and veths that its own processes create, but **no uplink and
no default route**, so nothing can leave the machine. The host's ``net.ipv4.ip_forward``
and iptables are never touched (a namespace has its own).

Processes are put into a namespace with ``nsenter --net=...`` (which, unlike
``ip netns exec``, keeps the host's mount namespace and so the cgroup mounts).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000


class NetnsError(RuntimeError):
    """A namespace could not be made, entered or checked; the message says why."""


def require_root(what: str) -> None:
    """Refuse clearly when not root (namespaces, mounts and cgroups need it)."""
    if os.geteuid() != 0:
        raise NetnsError(
            f"{what} needs root: it creates a network namespace, mounts and cgroups. "
            "Run it as root (e.g. `sudo -E tjctl ...`), or use the default `--node harness`."
        )


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    result = subprocess.run([ip, *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def path(name: str) -> Path:
    """The bind-mount file of namespace ``name``."""
    return NETNS_DIR / name


def exists(name: str) -> bool:
    return path(name).exists()


def create(name: str, local_addresses: tuple[str, ...] = ()) -> None:
    """Create namespace ``name`` (loopback up, ``local_addresses`` on lo); reuse if present."""
    if not exists(name):
        _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")
    have = _ip("-n", name, "-o", "addr", "show", "dev", "lo").stdout
    for cidr in local_addresses:
        if f" {cidr} " not in have:
            _ip("-n", name, "addr", "add", cidr, "dev", "lo")
    assert_isolated(name)


def delete(name: str) -> bool:
    """Delete namespace ``name`` (its processes must be gone); True if it existed."""
    if not exists(name):
        return False
    _ip("netns", "delete", name, check=False)
    if exists(name):  # `ip netns delete` leaves the file if the unmount failed
        subprocess.run(["umount", "-l", str(path(name))], capture_output=True)
        path(name).unlink(missing_ok=True)
    return True


def wrap(name: str, argv: list[str]) -> list[str]:
    """argv run inside namespace ``name`` (same mounts, cgroups and pid namespace)."""
    nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"
    return [nsenter, f"--net={path(name)}", "--", *argv]


def routes(name: str) -> list[str]:
    """Every route of every table inside the namespace, one per line."""
    out = _ip("-n", name, "route", "show", "table", "all").stdout
    out += _ip("-n", name, "-6", "route", "show", "table", "all").stdout
    return [line for line in out.splitlines() if line.strip()]


def default_routes(name: str) -> list[str]:
    """Routes that could lead off the machine: ``default`` ones (there must be none)."""
    return [r for r in routes(name) if r.split()[0] == "default"]


def assert_isolated(name: str) -> None:
    """Raise NetnsError if the namespace has a default route."""
    found = default_routes(name)
    if found:
        raise NetnsError(f"network namespace {name} has a route off the machine: {found}")


def host_ip_forward() -> str:
    """The host's ``net.ipv4.ip_forward`` (must stay ``0``)."""
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


def enter(name: str) -> None:
    """Move the calling thread (call it before starting threads) into namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path(name), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns into {name} failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def pids_in(name: str) -> list[int]:
    """Pids of the processes whose network namespace is ``name``."""
    try:
        target = os.stat(path(name)).st_ino
    except FileNotFoundError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == target:
                found.append(int(entry.name))
        except OSError:
            continue
    return found
