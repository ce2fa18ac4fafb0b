"""Writing the trained models: a complete, checksummed version first, then the ``*_latest``
names the seed's consumers load.

Layout under ``<data_root>/models/`` (timeframe ``15m`` shown; see docs/TRAINER.md)::

    15m_20260123_140000/              one folder per version, never changed once written
        model_long.pkl  model_short.pkl   pickled xgboost.XGBRegressor (the seed's format)
        model_long.ubj  model_short.ubj   the same boosters in XGBoost's own format
        scaler.pkl                        sklearn StandardScaler: apply before predicting
        metadata.json                     written last: marks the version complete
    model_long_15m_latest.pkl  model_short_15m_latest.pkl
    model_long_15m_latest.ubj  model_short_15m_latest.ubj
    scaler_15m_latest.pkl
    metadata_15m_latest.json          switched last

Every file is written to a temporary name, synced and renamed. The version folder is
created exclusively, so two runs finishing in the same second get different versions (the
second waits for the next second). The ``*_latest`` copies are switched only after the
whole version is on disk, metadata last; the metadata lists the SHA-256 of every file.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import xgboost as xgb
from sklearn.preprocessing import StandardScaler

from tjtrainer.files import atomic_copy, atomic_write_bytes, fsync_path, sha256_file
from tjtrainer.progress import MODELS

METADATA_FORMAT = 1
_VERSION_ATTEMPTS = 10


@dataclass(frozen=True)
class SavedModels:
    version: str
    version_dir: Path
    metadata_path: Path
    latest_metadata_path: Path | None  # None when the version was not promoted


def version_file_names() -> dict[str, str]:
    """Role → file name inside a version folder."""
    names = {}
    for model in MODELS:
        lower = model.lower()
        names[f"{lower}_pickle"] = f"model_{lower}.pkl"
        names[f"{lower}_xgboost"] = f"model_{lower}.ubj"
    names["scaler"] = "scaler.pkl"
    return names


def latest_name(file_name: str, timeframe: str) -> str:
    """``model_long.pkl`` → ``model_long_15m_latest.pkl`` (same for the others)."""
    stem, suffix = os.path.splitext(file_name)
    return f"{stem}_{timeframe}_latest{suffix}"


def _reserve_version(models_dir: Path, timeframe: str) -> tuple[str, Path]:
    models_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(_VERSION_ATTEMPTS):
        version = f"{timeframe}_{datetime.now(UTC):%Y%m%d_%H%M%S}"
        folder = models_dir / version
        try:
            folder.mkdir()
        except FileExistsError:
            time.sleep(1.0 - time.time() % 1.0 + 0.01)
            continue
        fsync_path(models_dir)
        return version, folder
    raise RuntimeError(f"could not reserve a model version under {models_dir}")


def save_models(
    models_dir: Path,
    *,
    timeframe: str,
    boosters: dict[str, xgb.Booster],
    scaler: StandardScaler,
    metadata: dict[str, Any],
    promote: bool = True,
) -> SavedModels:
    """Write a new version of the models, then (with ``promote``) switch the ``*_latest``
    files to it; a version not promoted stays a version of its own."""
    version, folder = _reserve_version(models_dir, timeframe)
    names = version_file_names()
    for model in MODELS:
        lower = model.lower()
        raw = bytes(boosters[model].save_raw(raw_format="ubj"))
        atomic_write_bytes(folder / names[f"{lower}_xgboost"], raw)
        regressor = xgb.XGBRegressor()
        regressor.load_model(bytearray(raw))
        atomic_write_bytes(folder / names[f"{lower}_pickle"], pickle.dumps(regressor))
    atomic_write_bytes(folder / names["scaler"], pickle.dumps(scaler))

    files = {name: sha256_file(folder / name) for name in names.values()}
    full = {
        "format": METADATA_FORMAT,
        "version": version,
        "timeframe": timeframe,
        **metadata,
        "saved_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "files": files,
        "latest_files": {latest_name(name, timeframe): digest for name, digest in files.items()},
    }
    text = (json.dumps(full, indent=2, sort_keys=False) + "\n").encode()
    metadata_path = folder / "metadata.json"
    atomic_write_bytes(metadata_path, text)

    if not promote:
        return SavedModels(version, folder, metadata_path, None)
    for name in names.values():
        atomic_copy(folder / name, models_dir / latest_name(name, timeframe))
    latest_metadata = models_dir / f"metadata_{timeframe}_latest.json"
    atomic_write_bytes(latest_metadata, text)
    return SavedModels(version, folder, metadata_path, latest_metadata)
