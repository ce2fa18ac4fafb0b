"""Fixtures shared by the test tiers: a real SQLite file per test, and a real PostgreSQL
server (one a session, a fresh empty database a test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tjcore.store import JobStore
from tjdevcluster.postgres import PostgresServer


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL 15 server for the session, stopped and removed at its end."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh empty database of that server, dropped after the test."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The table's URL on each backend in turn (the SQLite file of ``shared_dir``, then a
    fresh PostgreSQL database), also set as DATABASE_URL."""
    if request.param == "sqlite":
        url = f"sqlite:///{shared_dir / 'training_jobs.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
def any_store(database_url: str) -> Iterator[JobStore]:
    """A writable store of ``database_url``: a test using it runs on both backends."""
    job_store = JobStore(database_url)
    yield job_store
    job_store.close()
