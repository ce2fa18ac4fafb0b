"""The model files of a completed job on the shared volume.

The trainer writes one folder per model version (``models/15m_20261126_140000/``, named
by :func:`tjtrainer.versions.version_folder`) and publishes one through the
``latest_<tf>`` pointer (:mod:`tjtrainer.versions`). This module only looks: the files of
that folder, and the metadata that belongs to that version (its own, else the published
version's if that is this one). It tolerates the original design's flat layout (files directly in
``models/`` named after the version) and never raises for a missing or unreadable file.

The version and timeframe come from a table row, which anyone who can write the table
controls: a version that is not one safe file-name part (``0/../../x``, ``*``) or a
timeframe the trainer does not know is refused, and no file that resolves outside
``models/`` (through ``..`` or a symbolic link) is ever listed or read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tjcontract.names import TIMEFRAMES
from tjtrainer.paths import UnsafePathError, is_inside, model_version
from tjtrainer.versions import METADATA_FILE, latest_name, version_folder

MAX_FILES = 200


@dataclass(frozen=True)
class ModelFile:
    """One file of a model version."""

    path: Path
    size: int
    modified: datetime

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class ModelArtifacts:
    """What the shared volume holds for one model version."""

    models_dir: Path
    version: str
    files: list[ModelFile] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    metadata_path: Path | None = None
    problem: str | None = None


def _stat(path: Path) -> ModelFile | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return ModelFile(path, info.st_size, datetime.fromtimestamp(info.st_mtime, tz=UTC))


def _visible(path: Path) -> bool:
    """Not a hidden or temporary file (atomic writes use ``.<name>.tmp``)."""
    return not path.name.startswith(".") and not path.name.endswith(".tmp")


def _version_files(models_dir: Path, version: str) -> list[Path]:
    """The files of the version's folder, and the files directly in ``models_dir`` whose
    name contains ``version`` (the original design's flat layout); only those that resolve inside
    ``models_dir``."""
    found = {
        p
        for p in models_dir.glob(f"*{version}*")
        if p.is_file() and _visible(p) and is_inside(p, models_dir)
    }
    try:
        folder = version_folder(models_dir, version)
    except UnsafePathError:  # a version folder that links out of models/
        return sorted(found)
    if folder.is_dir():
        found.update(
            p for p in folder.rglob("*") if p.is_file() and _visible(p) and is_inside(p, models_dir)
        )
    return sorted(found)


def _mentions(value: Any, version: str) -> bool:
    """Whether a JSON document names ``version`` anywhere in its values."""
    if isinstance(value, str):
        return value == version
    if isinstance(value, dict):
        return any(_mentions(v, version) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, version) for v in value)
    return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_artifacts(models_dir: Path, version: str, timeframe: str) -> ModelArtifacts:
    """The files of model ``version`` and its metadata.

    The metadata is a ``metadata*.json`` among the version's own files, else
    ``metadata_<timeframe>_latest.json`` (the published version's, through the pointer)
    if that one names this version (a later version may have replaced it).
    """
    result = ModelArtifacts(models_dir=models_dir, version=version)
    try:
        model_version(version)
    except UnsafePathError as err:
        result.problem = f"{version!r} is not a model version ({err})"
        return result
    if not models_dir.is_dir():
        result.problem = f"{models_dir} does not exist here"
        return result
    try:
        paths = _version_files(models_dir, version)
    except OSError as err:
        result.problem = f"cannot list {models_dir}: {err.strerror or err}"
        return result
    result.files = [f for f in (_stat(p) for p in paths[:MAX_FILES]) if f is not None]
    candidates = [p for p in paths if p.name.startswith("metadata") and p.suffix == ".json"]
    # A link through the latest_<tf> pointer (or the original design's copy).
    if timeframe in TIMEFRAMES:
        candidates.append(models_dir / latest_name(METADATA_FILE, timeframe))
    for candidate in candidates:
        if not is_inside(candidate, models_dir):
            continue
        data = _read_json(candidate)
        if data is not None and (candidate in paths or _mentions(data, version)):
            result.metadata, result.metadata_path = data, candidate
            break
    return result
