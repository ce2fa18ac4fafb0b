"""Writing the trained models as a complete, checksummed version and publishing it; loading
the published one with its checksums verified.

Layout under ``<data_root>/models/`` (timeframe ``15m`` shown; see docs/TRAINER.md and
:mod:`tjtrainer.versions` for the pointer)::

    15m_20260123_140000/              one folder per version, never changed once written
        model_long.ubj  model_short.ubj   the boosters in XGBoost's own format
        scaler.json                       the feature scaling (mean, scale, features)
        model_long.pkl  model_short.pkl   legacy: pickled xgboost.XGBRegressor (the seed's)
        scaler.pkl                        legacy: pickled sklearn StandardScaler
                                          (both written without scikit-learn: tjtrainer.legacy)
        metadata.json                     written last: marks the version complete
    latest_15m -> 15m_20260123_140000     the pointer, switched last, in one rename
    model_long_15m_latest.ubj -> latest_15m/model_long.ubj   (and the other files)
    metadata_15m_latest.json  -> latest_15m/metadata.json

Every file is written to a temporary name, synced and renamed; the metadata lists the
SHA-256 of every file, and :func:`load_latest` refuses a file that does not match it.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xgboost as xgb

from tjcontract.files import atomic_write_bytes, fault_point, sha256_file
from tjtrainer import versions
from tjtrainer.legacy import regressor_pickle, scaler_pickle
from tjtrainer.progress import MODELS
from tjtrainer.versions import METADATA_FILE, latest_name

if TYPE_CHECKING:
    from tjtrainer.matrices import Standardiser

METADATA_FORMAT = 1
SCALER_JSON = "scaler.json"


class ModelFileError(Exception):
    """A published model cannot be loaded: missing, or not the file its metadata lists."""


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
    names["scaler_json"] = SCALER_JSON
    return names


def _scaler_json(scaler: Standardiser, features: Any) -> bytes:
    scale = scaler.scale_ if scaler.scale_ is not None else np.ones_like(scaler.mean_)
    document = {
        "features": list(features) if isinstance(features, list | tuple) else None,
        "mean": [float(v) for v in scaler.mean_],
        "scale": [float(v) for v in scale],
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def save_models(
    models_dir: Path,
    *,
    timeframe: str,
    boosters: dict[str, xgb.Booster],
    scaler: Standardiser,
    metadata: dict[str, Any],
    promote: bool = True,
) -> SavedModels:
    """Write a new version of the models, then (with ``promote``) publish it as the champion
    of both models and so the latest, in one atomic switch; a version not promoted becomes
    the challenger of both models. What saves
    that died left behind is removed first (:func:`tjtrainer.versions.clean_abandoned`)."""
    versions.clean_abandoned(models_dir)
    names = version_file_names()
    with versions.reserved_version(models_dir, timeframe) as reservation:
        version, folder = reservation.version, reservation.folder
        contents: dict[str, bytes] = {}
        for model in MODELS:
            lower = model.lower()
            raw = bytes(boosters[model].save_raw(raw_format="ubj"))
            contents[names[f"{lower}_xgboost"]] = raw
            contents[names[f"{lower}_pickle"]] = regressor_pickle(raw)
        contents[names["scaler"]] = scaler_pickle(scaler)
        contents[names["scaler_json"]] = _scaler_json(scaler, metadata.get("features"))
        # Written at once, so that their fsyncs overlap (each waits for the disk, which
        # on a network volume is milliseconds); all are on disk before the metadata.
        with ThreadPoolExecutor(len(contents), thread_name_prefix="tj-save") as pool:
            list(
                pool.map(
                    lambda item: atomic_write_bytes(folder / item[0], item[1]), contents.items()
                )
            )

        files = {name: sha256_file(folder / name) for name in names.values()}
        full = {
            "format": METADATA_FORMAT,
            "version": version,
            "timeframe": timeframe,
            **metadata,
            "saved_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "files": files,
            "latest_files": {
                latest_name(name, timeframe): digest for name, digest in files.items()
            },
        }
        text = (json.dumps(full, indent=2, sort_keys=False) + "\n").encode()
        metadata_path = folder / METADATA_FILE
        atomic_write_bytes(metadata_path, text)  # the version is complete from here on

    if not promote:
        versions.make_challenger(models_dir, timeframe, version)
        return SavedModels(version, folder, metadata_path, None)
    versions.publish(models_dir, timeframe, version, [*names.values(), METADATA_FILE])
    fault_point()
    return SavedModels(
        version, folder, metadata_path, models_dir / latest_name(METADATA_FILE, timeframe)
    )


@dataclass(frozen=True)
class LatestModel:
    """One published model, its scaling and its version's metadata, checksums verified."""

    version: str
    side: str
    booster: xgb.Booster
    features: list[str] | None
    mean: np.ndarray
    scale: np.ndarray
    metadata: dict[str, Any]

    def predict(self, rows: Any) -> np.ndarray:
        """Predictions for ``rows`` (unscaled features, in :attr:`features`' order): the
        label in standard units (see ``metadata["models"][side]["label_scaling"]``)."""
        values = np.asarray(rows, dtype=np.float64)
        return np.asarray(self.booster.inplace_predict((values - self.mean) / self.scale))


def load_latest(models_dir: Path | str, timeframe: str, side: str) -> LatestModel:
    """The champion ``side`` (``long`` or ``short``) model of ``timeframe``, loaded from
    XGBoost's own format after checking every file it uses against the SHA-256 recorded in
    its version's ``metadata.json``; no pickle is loaded.

    Raises:
        ModelFileError: no published version, or a file missing or changed since it was
            saved (the message names the file and what to do).
    """
    root = Path(models_dir)
    lower = side.lower()
    if lower.upper() not in MODELS:
        raise ModelFileError(f"side must be one of long, short, got {side!r}")
    version = versions.alias_version(root, "champion", timeframe, lower)
    if version is None:
        raise ModelFileError(
            f"no published {timeframe} model under {root} (no "
            f"{versions.alias_name('champion', timeframe, lower)} or "
            f"{versions.pointer_name(timeframe)} pointing at a complete version); train one first"
        )
    folder = versions.version_folder(root, version)
    metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    booster = xgb.Booster()
    booster.load_model(bytearray(_verified(folder, f"model_{lower}.ubj", metadata)))
    scaling = json.loads(_verified(folder, SCALER_JSON, metadata))
    return LatestModel(
        version=version,
        side=lower.upper(),
        booster=booster,
        features=scaling.get("features") or metadata.get("features"),
        mean=np.asarray(scaling["mean"], dtype=np.float64),
        scale=np.asarray(scaling["scale"], dtype=np.float64),
        metadata=metadata,
    )


def _verified(folder: Path, name: str, metadata: dict[str, Any]) -> bytes:
    """The bytes of ``folder/name`` if their SHA-256 is the one ``metadata`` lists."""
    path = folder / name
    expected = (metadata.get("files") or {}).get(name)
    if expected is None:
        raise ModelFileError(
            f"{folder / METADATA_FILE} lists no checksum for {name} (a version saved before "
            f"{name} existed?); retrain, or load its legacy pickles at your own risk"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"cannot read {path}: {err.strerror or err}") from None
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise ModelFileError(
            f"{path} has SHA-256 {found}, but {folder / METADATA_FILE} records {expected}: "
            "the file changed after it was saved; do not use it (retrain, or restore the "
            "version from a backup)"
        )
    return data
