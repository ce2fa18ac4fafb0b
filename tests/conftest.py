"""Fixtures shared by the test tiers: a real SQLite file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tjcore.store import JobStore


@pytest.fixture
def shared_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SHARED_DATA_PATH whose SQLite file tjctl, the UI and the store use."""
    shared = tmp_path / "shared"
    monkeypatch.setenv("SHARED_DATA_PATH", str(shared))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{shared / 'training_jobs.db'}")
    return shared


@pytest.fixture
def store(shared_dir: Path) -> Iterator[JobStore]:
    """A writable store of that file, to arrange rows and check what was written."""
    job_store = JobStore(f"sqlite:///{shared_dir / 'training_jobs.db'}")
    yield job_store
    job_store.close()
