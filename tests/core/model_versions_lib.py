"""Model versions for the alias tests (tjctl models, the UI): saved by the trainer's own
save_models with tiny boosters, and what the *_latest names hold."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import xgboost as xgb
from sklearn.preprocessing import StandardScaler

from tjtrainer.models import save_models


def save_version(
    shared: Path, seed: int, *, promote: bool = True, scaler_rows: int = 4, test: float = 0.01
) -> str:
    """A complete 15m version saved by the trainer's own save_models (tiny boosters)."""
    rng = np.random.default_rng(seed)
    boosters = {
        model: xgb.train(
            {"max_depth": 2, "nthread": 1},
            xgb.DMatrix(rng.normal(size=(50, 3)), label=rng.normal(size=50)),
            num_boost_round=2,
        )
        for model in ("LONG", "SHORT")
    }
    scaler = StandardScaler().fit(np.arange(3.0 * scaler_rows).reshape(scaler_rows, 3))
    return save_models(
        shared / "models",
        timeframe="15m",
        boosters=boosters,
        scaler=scaler,
        metadata={
            "features": ["a", "b", "c"],
            "models": {
                m: {"test_spearman": test + i / 100} for i, m in enumerate(("LONG", "SHORT"))
            },
        },
        promote=promote,
    ).version


def latest_set(models: Path) -> str:
    """The version every *_latest name holds (checked against its metadata's SHA-256s)."""
    metadata = json.loads((models / "metadata_15m_latest.json").read_text())
    for name, digest in metadata["latest_files"].items():
        assert hashlib.sha256((models / name).read_bytes()).hexdigest() == digest, name
    return str(metadata["version"])
