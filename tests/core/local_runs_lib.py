"""What the local-run tests share: `tjctl` as a user runs it on a data folder, a manifest
file, a data folder with a small dataset, and the table in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tjcore.store import JobStore

TJCTL = str(Path(sys.executable).with_name("tjctl"))


def tjctl(shared: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`tjctl ARGS` with ``shared`` as its data folder and the table in it."""
    env = {**os.environ, "SHARED_DATA_PATH": str(shared)}
    env.pop("DATABASE_URL", None)
    return subprocess.run([TJCTL, *args], env=env, capture_output=True, text=True, timeout=timeout)


def manifest(tmp_path: Path, name: str, **spec: object) -> Path:
    """A TrainingJob manifest file (2 trials per model unless ``spec`` says otherwise)."""
    body = {"timeframe": "15m", "nTrials": 2, "trainRatio": 0.8, "seed": 3, **spec}
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        "apiVersion: mltraining.dev/v1alpha1\nkind: TrainingJob\n"
        f"metadata:\n  name: {name}\nspec: {json.dumps(body)}\n"
    )
    return path


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with a 3,000-row synthetic 15m dataset, made by `tjctl dataset synth`."""
    folder = tmp_path_factory.mktemp("shared")
    made = tjctl(folder, "dataset", "synth", "--timeframe", "15m", "--rows", "3000")
    assert made.returncode == 0, made.stderr
    return folder


def store_of(shared: Path) -> JobStore:
    return JobStore(f"sqlite:///{shared / 'training_jobs.db'}")
