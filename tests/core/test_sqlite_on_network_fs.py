"""The SQLite table is never put in WAL mode on a network filesystem: the store refuses it
with one line that points to DATABASE_URL.

The network filesystem is a real one: sshfs (FUSE, the SFTP protocol) talking to
OpenSSH's sftp-server through a pair of pipes, so nothing listens on any address. The
kernel of the test machines has no NFS client (no ``nfs`` in /proc/filesystems, no
modules to load), so NFS itself cannot be mounted here; its statfs magic takes the same
path as sshfs's FUSE subtype.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tjcore.sqlite_fs import network_filesystem
from tjcore.store import JobStore

SFTP_SERVERS = (Path("/usr/lib/openssh/sftp-server"), Path("/usr/lib/sftp-server"))
TJCTL = [sys.executable, "-m", "tjctl"]


def _mounted(mount_point: Path) -> bool:
    lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    return any(line.split()[4] == str(mount_point) for line in lines)


@pytest.fixture
def sshfs_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(mount point, the folder it serves): a real sshfs mount over pipes."""
    sftp_server = next((p for p in SFTP_SERVERS if p.exists()), None)
    if shutil.which("sshfs") is None or sftp_server is None or not Path("/dev/fuse").exists():
        pytest.skip("needs sshfs, OpenSSH's sftp-server and /dev/fuse (apt-get install sshfs)")
    served, mount_point = tmp_path / "served", tmp_path / "mnt"
    served.mkdir()
    mount_point.mkdir()
    to_server_r, to_server_w = os.pipe()
    to_fs_r, to_fs_w = os.pipe()
    server = subprocess.Popen([str(sftp_server)], stdin=to_server_r, stdout=to_fs_w)
    fs = subprocess.Popen(
        ["sshfs", "-f", "-o", "passive", f":{served}", str(mount_point)],
        stdin=to_fs_r,
        stdout=to_server_w,
    )
    for fd in (to_server_r, to_server_w, to_fs_r, to_fs_w):
        os.close(fd)
    try:
        deadline = time.monotonic() + 20
        while not _mounted(mount_point):
            if fs.poll() is not None or time.monotonic() > deadline:
                pytest.skip("sshfs could not mount (FUSE not permitted here?)")
            time.sleep(0.05)
        yield mount_point, served
    finally:
        unmount = shutil.which("fusermount3") or shutil.which("fusermount")
        subprocess.run(
            [unmount, "-u", str(mount_point)] if unmount else ["umount", str(mount_point)],
            check=False,
        )
        for process in (fs, server):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert not _mounted(mount_point)


def test_a_network_filesystem_is_told_from_a_local_one(
    sshfs_mount: tuple[Path, Path], tmp_path: Path
) -> None:
    mount_point, _ = sshfs_mount
    assert network_filesystem(mount_point / "shared" / "training_jobs.db") == "fuse.sshfs"
    assert network_filesystem(tmp_path / "training_jobs.db") is None


def test_tjctl_refuses_the_table_on_a_network_filesystem(
    sshfs_mount: tuple[Path, Path], tmp_path: Path
) -> None:
    mount_point, served = sshfs_mount
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["SHARED_DATA_PATH"] = str(mount_point / "shared")
    done = subprocess.run(
        [*TJCTL, "submit", "--timeframe", "15m"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: the SQLite database ")
    assert "network filesystem (fuse.sshfs)" in lines[0]
    assert "DATABASE_URL" in lines[0] and "PostgreSQL" in lines[0]
    assert not list(served.rglob("training_jobs.db*"))  # nothing was written there


def test_the_store_refuses_a_database_url_on_a_network_filesystem(
    sshfs_mount: tuple[Path, Path],
) -> None:
    mount_point, served = sshfs_mount
    for readonly in (False, True):
        with pytest.raises(ValueError, match=r"network filesystem \(fuse\.sshfs\)"):
            JobStore(f"sqlite:///{mount_point / 'jobs.db'}", readonly=readonly)
    assert not list(served.iterdir())


def test_a_local_disk_still_gets_wal(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'training_jobs.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()
