"""Whether the SQLite file of ``training_jobs`` may live where it is.

The store runs SQLite in WAL mode, whose shared-memory index only works when every
process is on the same machine: on a network filesystem (NFS, SMB/CIFS, CephFS, 9p, a
network FUSE filesystem such as sshfs) readers and writers on other nodes see a stale
index and the database gets corrupted; a rollback journal is no better there, since it
relies on the filesystem's locks. So the store refuses such a place and points to a
server database (``DATABASE_URL``) instead.

The filesystem is told by ``statfs(2)``'s ``f_type``; a FUSE filesystem by its subtype in
``/proc/self/mountinfo``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

# f_type of statfs(2) (linux/magic.h and the filesystems' own headers).
NETWORK_MAGICS = {
    0x6969: "nfs",
    0x517B: "smb",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x00C36400: "ceph",
    0x01021997: "9p",
    0x5346414F: "afs",
    0x6B414653: "afs",
    0x73757245: "coda",
    0x564C: "ncp",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x01161970: "gfs2",
    0x7461636F: "ocfs2",
    0x19830326: "beegfs",
    0x20030528: "orangefs",
}
FUSE_MAGIC = 0x65735546
# FUSE filesystems that reach their files over the network (mountinfo's "fuse.<name>").
NETWORK_FUSE = frozenset(
    {
        "sshfs",
        "s3fs",
        "gcsfuse",
        "rclone",
        "glusterfs",
        "ceph-fuse",
        "juicefs",
        "goofys",
        "blobfuse",
        "blobfuse2",
        "mountpoint-s3",
        "fuse-nfs",
        "davfs",
        "cifs",
        "smbnetfs",
        "seaweedfs",
        "lizardfs",
        "moosefs",
        "mfs",
        "cvmfs",
    }
)


class _StatFs(ctypes.Structure):
    # Only f_type is read; the buffer is sized for the whole struct statfs (120 bytes
    # on 64-bit Linux) with room to spare.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 256)]


def _fs_magic(path: Path) -> int | None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    buf = _StatFs()
    if libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return None
    return buf.f_type & 0xFFFFFFFF


def _fuse_subtype(path: Path) -> str:
    """The ``fuse.<subtype>`` of the mount holding ``path`` ('' if unknown)."""
    best, fstype = "", ""
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    target = str(path)
    for line in lines:
        head, _, tail = line.partition(" - ")
        parts = head.split()
        if len(parts) < 5 or not tail:
            continue
        mount_point = parts[4].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fstype = mount_point, tail.split()[0]
    return fstype.removeprefix("fuse.").removeprefix("fuseblk.")


def network_filesystem(path: Path) -> str | None:
    """The name of the network filesystem holding ``path`` (its nearest existing
    folder), or ``None`` if it is a local one or cannot be told."""
    folder = path.resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    magic = _fs_magic(folder)
    if magic in NETWORK_MAGICS:
        return NETWORK_MAGICS[magic]
    if magic == FUSE_MAGIC:
        subtype = _fuse_subtype(folder)
        if subtype in NETWORK_FUSE:
            return f"fuse.{subtype}"
    return None


def check_sqlite_location(database: Path) -> None:
    """Raise :class:`~tjcore.settings.SettingsError` if ``database`` sits on a network
    filesystem, where SQLite's WAL (and its locks) cannot be trusted."""
    from tjcore.settings import SettingsError

    found = network_filesystem(database)
    if found is not None:
        raise SettingsError(
            f"the SQLite database {database} is on a network filesystem ({found}), where "
            "SQLite's WAL mode and file locks do not work across machines and the table "
            "would get corrupted; set DATABASE_URL to a PostgreSQL database "
            "(postgresql://user:password@host/db, see docs/INSTALL.md) or keep the "
            "SQLite file on a local disk"
        )
