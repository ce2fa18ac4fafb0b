"""A database made by the seed (schema version 1) is upgraded in place, every row kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from tjcore.schema import SCHEMA_VERSION, current_version
from tjcore.store import JobStore

FROZEN_V1 = Path(__file__).parent / "fixtures" / "training_jobs_v1.sql"


def make_v1_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(FROZEN_V1.read_text())


def test_seed_database_is_upgraded_without_losing_rows(tmp_path: Path) -> None:
    db = tmp_path / "seed.db"
    make_v1_database(db)
    store = JobStore(f"sqlite:///{db}")
    with store.engine.connect() as conn:
        assert current_version(conn) == SCHEMA_VERSION
    rows = sorted(store.list_jobs(), key=lambda r: r.id)
    assert [r.status for r in rows] == ["completed", "pending"]
    done = rows[0]
    assert done.model_version == "15m_20260123_140000"
    assert done.best_score_long == pytest.approx(0.081)
    assert done.trial_log[0]["params"] == {"max_depth": 4}
    assert done.cancel_requested is False and done.seed == 42
    assert rows[1].train_ratio == pytest.approx(0.75)
    # The new columns work on old rows.
    store.request_cancel(rows[1].id)
    assert store.get(rows[1].id).status == "cancelled"  # type: ignore[union-attr]


def test_opening_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = JobStore(url)
    job = first.submit(timeframe="1h", n_trials=3, train_ratio=0.8, source="test")
    second = JobStore(url)
    assert second.get(job) is not None
    with second.engine.connect() as conn:
        versions = conn.execute(text("SELECT version FROM training_jobs_schema")).all()
    assert versions == [(SCHEMA_VERSION,)]


def test_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    JobStore(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE training_jobs_schema SET version = 99")
    with pytest.raises(RuntimeError, match="schema version 99, newer than this release"):
        JobStore(f"sqlite:///{db}")


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "wal.db"
    JobStore(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
