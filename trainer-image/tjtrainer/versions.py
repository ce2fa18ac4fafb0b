"""Model versions on disk: their names, the ``latest_<timeframe>`` pointer that publishes
one, and the cleaning up after saves that died. No XGBoost here: the UI reads through it.

Under ``models/`` (timeframe ``15m`` shown)::

    15m_20260123_140000/        a version folder, complete once metadata.json is in it
    15m_20260123_140000_001/    the next version reserved in the same second
    latest_15m -> 15m_20260123_140000                    the pointer (a relative symlink)
    model_long_15m_latest.pkl -> latest_15m/model_long.pkl   stable links through it
    metadata_15m_latest.json  -> latest_15m/metadata.json

A version is reserved by creating its folder (``mkdir`` is atomic: two savers never get
the same name) and held with an advisory lock on its ``.writing.lock`` while it is written.
Publishing replaces the pointer by a new symlink with one ``rename``, so a reader (and a
process killed at any moment) sees the old version or the new one, whole. The per-file
``*_latest`` names are links through the pointer made once; they never change again.

A folder without ``metadata.json`` whose lock nobody holds and which has not changed for
:data:`ABANDONED_AFTER_S`, and hidden ``*.tmp`` files as old, were left by a save that died:
:func:`clean_abandoned` removes them (the trainer calls it before every save).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tjtrainer.files import (
    STALE_TEMPORARY_S,
    TEMP_SUFFIX,
    fault_point,
    fsync_path,
    remove_stale_temporaries,
)
from tjtrainer.paths import UnsafePathError, confined, model_version

METADATA_FILE = "metadata.json"
WRITING_LOCK = ".writing.lock"
# A save takes seconds; a partial version this old, whose lock is free, is abandoned.
ABANDONED_AFTER_S = STALE_TEMPORARY_S
# What reserved_version names: only such folders are ever cleaned up.
VERSION_NAME = re.compile(r"[A-Za-z0-9]+_[0-9]{8}_[0-9]{6}(_[0-9]{3,})?")


def pointer_name(timeframe: str) -> str:
    """``latest_15m``: the symlink naming the published version of ``timeframe``."""
    return f"latest_{timeframe}"


def latest_name(file_name: str, timeframe: str) -> str:
    """``model_long.pkl`` → ``model_long_15m_latest.pkl`` (same for the others)."""
    stem, suffix = os.path.splitext(file_name)
    return f"{stem}_{timeframe}_latest{suffix}"


@dataclass
class Reservation:
    """A version folder being written; its lock is held until :meth:`release`."""

    version: str
    folder: Path
    _fd: int | None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / WRITING_LOCK).unlink()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _lock(path: Path) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if missing), or ``None`` if held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def reserved_version(models_dir: Path, timeframe: str) -> Iterator[Reservation]:
    """A new version folder of ``timeframe``, named by the UTC second with a counter for
    further versions in that second (``15m_20260123_140000``, ``…_001``, ``…_002``: names
    sort by time). If the block fails, the partial folder is removed."""
    models_dir.mkdir(parents=True, exist_ok=True)
    base = f"{timeframe}_{datetime.now(UTC):%Y%m%d_%H%M%S}"
    for count in itertools.count():
        version = base if count == 0 else f"{base}_{count:03d}"
        folder = models_dir / version
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        break
    fd = _lock(folder / WRITING_LOCK)  # nobody else knows the folder yet: never None
    reservation = Reservation(version, folder, fd)
    try:
        fsync_path(models_dir)
        fault_point()
        yield reservation
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(folder)
        raise
    finally:
        reservation.release()


def publish(models_dir: Path, timeframe: str, version: str, file_names: list[str]) -> None:
    """Make ``version`` (complete, holding ``file_names``) the latest of ``timeframe``."""
    model_version(version)
    pointer = models_dir / pointer_name(timeframe)
    for name in file_names:
        link = models_dir / latest_name(name, timeframe)
        target = f"{pointer.name}/{name}"
        if _readlink(link) == target:
            continue
        if _readlink(pointer) is None:
            # Upgrading from copied *_latest files: point at the version they hold first,
            # so that replacing them by links changes nothing a reader sees.
            old = _legacy_latest_version(models_dir, timeframe) or version
            _replace_symlink(pointer, old)
        _replace_symlink(link, target)
    _replace_symlink(pointer, version)


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # missing, or a regular file
        return None


def _replace_symlink(path: Path, target: str) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    os.symlink(target, temporary)
    try:
        fault_point()
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_path(path.parent)
    fault_point()


def _legacy_latest_version(models_dir: Path, timeframe: str) -> str | None:
    """The version a copied ``metadata_<tf>_latest.json`` (before the pointer) names, if
    its folder is complete."""
    found = _read_json(models_dir / latest_name(METADATA_FILE, timeframe))
    version = (found or {}).get("version")
    try:
        folder = confined(models_dir, model_version(version))
    except UnsafePathError:
        return None
    return str(version) if (folder / METADATA_FILE).is_file() else None


def latest_version(models_dir: Path, timeframe: str) -> str | None:
    """The published version of ``timeframe``, or ``None`` if there is none."""
    target = _readlink(models_dir / pointer_name(timeframe))
    if target is None:
        return _legacy_latest_version(models_dir, timeframe)
    try:
        folder = confined(models_dir, model_version(target))
    except UnsafePathError:
        return None
    return target if (folder / METADATA_FILE).is_file() else None


def version_folder(models_dir: Path, version: str) -> Path:
    """The folder of ``version`` under ``models_dir`` (the name checked and confined)."""
    return confined(models_dir, model_version(version))


def latest_metadata(models_dir: Path, timeframe: str) -> dict[str, Any] | None:
    """The ``metadata.json`` of the published version of ``timeframe``, if any."""
    version = latest_version(models_dir, timeframe)
    if version is None:
        return None
    return _read_json(version_folder(models_dir, version) / METADATA_FILE)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def clean_abandoned(models_dir: Path, *, now: float | None = None) -> list[Path]:
    """Remove what saves that died left under ``models_dir``: version folders without
    ``metadata.json`` whose lock is free, and hidden ``*.tmp`` files (at the top and in
    version folders), all unchanged for :data:`ABANDONED_AFTER_S`. Returns what went."""
    moment = time.time() if now is None else now
    removed = remove_stale_temporaries(models_dir, older_than_s=ABANDONED_AFTER_S, now=moment)
    try:
        entries = list(models_dir.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not VERSION_NAME.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        if (entry / METADATA_FILE).exists():
            removed += remove_stale_temporaries(entry, older_than_s=ABANDONED_AFTER_S, now=moment)
        elif _is_old(entry, moment) and _remove_if_unlocked(entry):
            removed.append(entry)
    return removed


def _is_old(path: Path, moment: float) -> bool:
    try:
        return moment - path.lstat().st_mtime > ABANDONED_AFTER_S
    except FileNotFoundError:
        return False


def _remove_if_unlocked(folder: Path) -> bool:
    try:
        fd = _lock(folder / WRITING_LOCK)
    except OSError as err:  # the folder went meanwhile, or is not ours to touch
        if err.errno in (errno.ENOENT, errno.EACCES, errno.EROFS):
            return False
        raise
    if fd is None:  # a live save holds it
        return False
    try:
        if (folder / METADATA_FILE).exists():  # completed after all
            (folder / WRITING_LOCK).unlink(missing_ok=True)
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True
    finally:
        os.close(fd)
