"""Fixtures of the core tests: a real SQLite file per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tjcore.store import JobStore


@pytest.fixture
def shared_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SHARED_DATA_PATH whose SQLite file the store and tjctl use."""
    shared = tmp_path / "shared"
    monkeypatch.setenv("SHARED_DATA_PATH", str(shared))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return shared


@pytest.fixture
def store(shared_dir: Path) -> Iterator[JobStore]:
    job_store = JobStore(f"sqlite:///{shared_dir / 'training_jobs.db'}")
    yield job_store
    job_store.close()
