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

**Aliases.** Each model (``long``, ``short``) of a timeframe has a ``champion`` and a
``challenger``, relative symlinks switched with one ``rename`` each (``champion_15m_long ->
15m_20260123_140000``). The ``*_latest`` names follow the champions: ``latest_<tf>`` names
the champions' version, or, while the two models' champions are different versions (which
is allowed only when they share their feature scaling), a ``mix_<long>_<short>`` folder of
links to both, with a metadata.json of its own. ``latest_<tf>`` is switched last, in one
``rename``, so a reader of the ``*_latest`` names sees one whole set, the old or the new.
A models folder from before aliases has none: its champion is ``latest_<tf>``'s version.
Alias switches are serialised by an advisory lock on the models folder.

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
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tjcontract.files import (
    STALE_TEMPORARY_S,
    TEMP_SUFFIX,
    atomic_write_bytes,
    fault_point,
    fsync_path,
    remove_stale_temporaries,
)
from tjcontract.names import VERSION_NAME
from tjtrainer.paths import UnsafePathError, confined, model_version

METADATA_FILE = "metadata.json"
WRITING_LOCK = ".writing.lock"
# A save takes seconds; a partial version this old, whose lock is free, is abandoned.
ABANDONED_AFTER_S = STALE_TEMPORARY_S
ALIASES = ("champion", "challenger")
SIDES = ("long", "short")
MIX_PREFIX = "mix_"
# The files of a version that both models use (the rest belong to one model each).
SHARED_SCALING = "scaler.json"


class AliasError(ValueError):
    """An alias switch that is refused (the message says why and what to do)."""


@dataclass(frozen=True)
class AliasChange:
    """One alias of one model that a switch moved from ``old`` to ``new``."""

    alias: str
    side: str
    old: str | None
    new: str | None


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
    """Make ``version`` (complete, holding ``file_names``) the champion of both models of
    ``timeframe`` and so the target of its ``*_latest`` names (the challengers stay)."""
    model_version(version)
    with alias_lock(models_dir, timeframe):
        _make_links(models_dir, timeframe, file_names, version)
        for side in SIDES:
            _replace_symlink(models_dir / alias_name("champion", timeframe, side), version)
        _replace_symlink(models_dir / pointer_name(timeframe), version)


def _make_links(models_dir: Path, timeframe: str, file_names: list[str], version: str) -> None:
    """The ``*_latest`` links through ``latest_<tf>``, made once (a reader sees no change)."""
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


def alias_name(alias: str, timeframe: str, side: str) -> str:
    """``champion_15m_long``: the symlink naming ``alias`` of model ``side`` of ``timeframe``."""
    return f"{alias}_{timeframe}_{side.lower()}"


@contextmanager
def alias_lock(models_dir: Path, timeframe: str) -> Iterator[None]:
    """Hold the lock that serialises alias switches (blocking): an advisory ``flock`` on
    the models folder itself, so no lock file lies among the versions."""
    del timeframe  # one lock for all timeframes: switches are rare and quick
    models_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(models_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _complete(models_dir: Path, name: str) -> str | None:
    try:
        folder = confined(models_dir, model_version(name))
    except UnsafePathError:
        return None
    return name if (folder / METADATA_FILE).is_file() else None


def alias_version(models_dir: Path, alias: str, timeframe: str, side: str) -> str | None:
    """The version ``alias`` names for model ``side`` of ``timeframe``, if any. In a models
    folder from before aliases the champion is ``latest_<tf>``'s version."""
    target = _readlink(models_dir / alias_name(alias, timeframe, side))
    if target is not None:
        return _complete(models_dir, target)
    if alias == "champion":
        current = latest_version(models_dir, timeframe)
        if current is not None and not current.startswith(MIX_PREFIX):
            return current
    return None


def aliases(models_dir: Path, timeframe: str) -> dict[tuple[str, str], str | None]:
    """(alias, side) → version for ``timeframe``."""
    return {(a, s): alias_version(models_dir, a, timeframe, s) for a in ALIASES for s in SIDES}


def version_metadata(models_dir: Path, version: str) -> dict[str, Any] | None:
    """The ``metadata.json`` of ``version``, if it is complete and readable."""
    try:
        return _read_json(version_folder(models_dir, version) / METADATA_FILE)
    except UnsafePathError:
        return None


def list_versions(models_dir: Path, timeframe: str | None = None) -> list[str]:
    """The complete versions under ``models_dir`` (of ``timeframe``), newest first."""
    try:
        entries = list(models_dir.iterdir())
    except FileNotFoundError:
        return []
    found = [
        e.name
        for e in entries
        if VERSION_NAME.fullmatch(e.name)
        and not e.is_symlink()
        and (e / METADATA_FILE).is_file()
        and (timeframe is None or e.name.startswith(f"{timeframe}_"))
    ]
    return sorted(found, reverse=True)


def _checked(models_dir: Path, timeframe: str, version: str) -> dict[str, Any]:
    """The metadata of ``version`` if it is a complete version of ``timeframe``."""
    try:
        model_version(version)
    except UnsafePathError as err:
        raise AliasError(str(err)) from None
    metadata = None if version.startswith(MIX_PREFIX) else version_metadata(models_dir, version)
    if metadata is None:
        raise AliasError(
            f"{version} is not a complete model version under {models_dir}; "
            "`tjctl models list` lists them"
        )
    if metadata.get("timeframe") != timeframe:
        raise AliasError(
            f"{version} is a model version of timeframe {metadata.get('timeframe')}, "
            f"not {timeframe}"
        )
    return metadata


def make_champion(
    models_dir: Path, timeframe: str, version: str, sides: tuple[str, ...] = SIDES
) -> list[AliasChange]:
    """Make ``version`` the champion of the models ``sides`` of ``timeframe``; each champion
    it replaces becomes that model's challenger, and ``*_latest`` follows (last, in one
    rename). Returns the changes made (none if ``version`` is the champion already).

    Raises:
        AliasError: ``version`` is not a complete version of ``timeframe``, the other
            model has no champion, or the two champions would not share their scaling.
    """
    with alias_lock(models_dir, timeframe):
        _checked(models_dir, timeframe, version)
        current = {s: alias_version(models_dir, "champion", timeframe, s) for s in SIDES}
        wanted = {s: version if s in sides else current[s] for s in SIDES}
        for side, found in wanted.items():
            if found is None:
                raise AliasError(
                    f"the {side} model of {timeframe} has no champion yet; promote {version} "
                    "for both models"
                )
        target = _latest_target(models_dir, timeframe, wanted)
        changes: list[AliasChange] = []
        for side in SIDES:
            link = models_dir / alias_name("champion", timeframe, side)
            old = current[side]
            if side not in sides or old == version:
                if _readlink(link) is None and old is not None:
                    _replace_symlink(link, old)  # pin it before latest_<tf> moves
                continue
            challenger = alias_version(models_dir, "challenger", timeframe, side)
            if old is not None and challenger != old:
                _replace_symlink(models_dir / alias_name("challenger", timeframe, side), old)
                changes.append(AliasChange("challenger", side, challenger, old))
            _replace_symlink(link, version)
            changes.append(AliasChange("champion", side, old, version))
        pointer = models_dir / pointer_name(timeframe)
        if _readlink(pointer) != target:
            _replace_symlink(pointer, target)
        return changes


def make_challenger(
    models_dir: Path, timeframe: str, version: str, sides: tuple[str, ...] = SIDES
) -> list[AliasChange]:
    """Make ``version`` the challenger of the models ``sides`` of ``timeframe``."""
    with alias_lock(models_dir, timeframe):
        _checked(models_dir, timeframe, version)
        changes = []
        for side in sides:
            old = alias_version(models_dir, "challenger", timeframe, side)
            if old != version:
                _replace_symlink(models_dir / alias_name("challenger", timeframe, side), version)
                changes.append(AliasChange("challenger", side, old, version))
        return changes


def _latest_target(models_dir: Path, timeframe: str, champions: dict[str, str | None]) -> str:
    """What ``latest_<tf>`` must name for these champions: their version, or a mix folder
    of links to both (made once; its metadata.json written last)."""
    long_v, short_v = str(champions["long"]), str(champions["short"])
    if long_v == short_v:
        return long_v
    found = {v: _checked(models_dir, timeframe, v) for v in (long_v, short_v)}
    scaling = {v: (m.get("files") or {}).get(SHARED_SCALING) for v, m in found.items()}
    features = {v: m.get("features") for v, m in found.items()}
    if scaling[long_v] != scaling[short_v] or features[long_v] != features[short_v]:
        raise AliasError(
            f"the long champion {long_v} and the short champion {short_v} of {timeframe} "
            "scale their features differently (another dataset or trainRatio), so the "
            f"*_latest files cannot hold both; promote one version for both models"
        )
    name = f"{MIX_PREFIX}{long_v}_{short_v}"
    folder = models_dir / name
    if (folder / METADATA_FILE).is_file():
        return name
    folder.mkdir(exist_ok=True)
    files: dict[str, str] = {}
    for file_name in found[long_v].get("files") or {}:
        source = short_v if "short" in file_name else long_v
        digest = (found[source].get("files") or {}).get(file_name)
        if digest is None:
            continue
        _replace_symlink(folder / file_name, f"../{source}/{file_name}")
        files[file_name] = digest
    models = {
        side.upper(): (found[v].get("models") or {}).get(side.upper())
        for side, v in (("long", long_v), ("short", short_v))
    }
    mixed = {
        "format": found[long_v].get("format"),
        "version": name,
        "timeframe": timeframe,
        "mixed": {"LONG": long_v, "SHORT": short_v},
        "features": features[long_v],
        "models": models,
        "files": files,
        "latest_files": {latest_name(f, timeframe): d for f, d in files.items()},
    }
    atomic_write_bytes(folder / METADATA_FILE, (json.dumps(mixed, indent=2) + "\n").encode())
    return name
