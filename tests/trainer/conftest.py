"""Fixtures of the trainer tests: small real datasets and small real training runs.

Everything runs real pandas, XGBoost, Optuna and SQLite on a few thousand rows; the
datasets are made once per session and copied where a test needs its own data root.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from trainer_testlib import ROWS, RecordedRun, make_config, recorded_run

from tjtrainer.datasets import synth_dataset


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a small synthetic 15m dataset (read-only for tests)."""
    root = tmp_path_factory.mktemp("dataset-root")
    synth_dataset(root, "15m", rows=ROWS, seed=3)
    return root


@pytest.fixture
def data_root(dataset_root: Path, tmp_path: Path) -> Path:
    """A fresh data root of this test with a copy of the small dataset."""
    root = tmp_path / "shared"
    shutil.copytree(dataset_root / "datasets", root / "datasets")
    return root


@pytest.fixture(scope="session")
def completed_run(tmp_path_factory: pytest.TempPathFactory, dataset_root: Path) -> RecordedRun:
    """One small completed run shared by the tests that only read its results."""
    root = tmp_path_factory.mktemp("completed") / "shared"
    shutil.copytree(dataset_root / "datasets", root / "datasets")
    return recorded_run(make_config(root, "completed"))
