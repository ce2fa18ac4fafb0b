"""Durable, atomic file writes and checksums, for everything written to the shared volume
(datasets, models, the run folder's progress and cancel marker).

A file appears under its final name only once complete: it is written to a hidden
temporary name in the same folder, flushed to disk, renamed, and the folder is synced.

:func:`fault_point` marks the steps between file operations where a crash must leave
nothing half done; the tests kill the process at each of them (``TJTRAINER_KILL_AT``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CHUNK = 1 << 20
FILE_MODE = 0o644
TEMP_SUFFIX = ".tmp"
# A write takes seconds: a temporary file this old was left by a process that died.
STALE_TEMPORARY_S = 3600.0
# Test hook: the process SIGKILLs itself at the N-th fault point it reaches (1-based).
KILL_AT_ENV = "TJTRAINER_KILL_AT"
_faults_reached = 0
_faults_lock = threading.Lock()


def fault_point() -> None:
    """A step after which a crash must leave every published file whole (see the tests)."""
    global _faults_reached
    target = os.environ.get(KILL_AT_ENV)
    if not target:
        return
    with _faults_lock:  # files may be written on several threads at once
        _faults_reached += 1
        reached = _faults_reached
    if reached == int(target):
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    # mkstemp makes the file private (0600); the shared volume's other readers (operator,
    # UI, inference) may run as other users.
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_path(tmp)
        fault_point()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    fault_point()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def remove_stale_temporaries(
    folder: Path, *, older_than_s: float, now: float | None = None
) -> list[Path]:
    """Remove the hidden ``.<name>.<random>.tmp`` files (and links) in ``folder``, not
    below it, unchanged for ``older_than_s``: what writes of a killed process left.
    Returns what went."""
    moment = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            if moment - entry.lstat().st_mtime <= older_than_s:
                continue
            entry.unlink()
        except FileNotFoundError:
            continue
        removed.append(entry)
    return removed


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's data (a folder: its entries, e.g. a rename) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
