"""A database made by the seed (schema version 1) is upgraded in place, every row kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from tjcore.schema import SCHEMA_VERSION, current_version
from tjcore.store import JobStore

FIXTURES = Path(__file__).parent / "fixtures"
FROZEN_V1 = FIXTURES / "training_jobs_v1.sql"
FROZEN_V2 = FIXTURES / "training_jobs_v2.sql"


def make_database(path: Path, frozen: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(frozen.read_text())


def make_v1_database(path: Path) -> None:
    make_database(path, FROZEN_V1)


def delete_row(path: Path, job_id: int) -> None:
    """Delete a row behind the store's back, as an admin with sqlite3 would."""
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM training_jobs WHERE id = ?", (job_id,))


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


def test_row_ids_are_never_reused(tmp_path: Path) -> None:
    db = tmp_path / "ids.db"
    store = JobStore(f"sqlite:///{db}")
    ids = [store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t") for _ in range(3)]
    delete_row(db, ids[-1])
    again = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    assert again == ids[-1] + 1, "the id of a deleted row was given to a new one"


@pytest.mark.parametrize("frozen", [FROZEN_V1, FROZEN_V2], ids=["v1", "v2"])
def test_an_old_table_is_upgraded_to_ids_that_are_never_reused(
    tmp_path: Path, frozen: Path
) -> None:
    db = tmp_path / "old.db"
    make_database(db, frozen)
    store = JobStore(f"sqlite:///{db}")
    before = sorted(store.list_jobs(), key=lambda r: r.id)
    assert [r.id for r in before] == [1, 2]
    with sqlite3.connect(db) as conn:
        table_sql = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'training_jobs'"
        ).fetchone()[0]
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(training_jobs)")}
    assert "AUTOINCREMENT" in table_sql.upper()
    assert {"ix_training_jobs_uid", "ix_training_jobs_status", "ix_training_jobs_name"} <= indexes
    delete_row(db, 2)
    assert store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t") == 3
    # Every column of every old row came through the rebuild.
    reopened = JobStore(f"sqlite:///{db}")
    assert reopened.get(1) == before[0]


def test_the_v2_table_keeps_its_rows_and_uids(tmp_path: Path) -> None:
    db = tmp_path / "v2.db"
    make_database(db, FROZEN_V2)
    store = JobStore(f"sqlite:///{db}")
    with store.engine.connect() as conn:
        assert current_version(conn) == SCHEMA_VERSION
    done, pending = store.get(1), store.get(2)
    assert done is not None and pending is not None
    assert (done.status, done.model_version, done.namespace, done.name) == (
        "completed",
        "15m_20261101_120000",
        "local",
        "job-1",
    )
    assert done.trial_log == [{"trial": 1, "model": "LONG", "spearman": 0.05}]
    assert (pending.seed, pending.train_ratio, pending.uid) == (9, 0.75, "uid-b")
    with pytest.raises(ValueError, match="exists already"):
        store.submit(timeframe="1h", n_trials=1, train_ratio=0.8, source="t", uid="uid-b")


def test_the_v7_table_gains_the_model_aliases_table_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "v7.db"
    make_database(db, FIXTURES / "training_jobs_v7.sql")
    store = JobStore(f"sqlite:///{db}")
    with store.engine.connect() as conn:
        assert current_version(conn) == SCHEMA_VERSION == 8
        assert conn.execute(text("SELECT count(*) FROM model_aliases")).scalar() == 0
    done, pending = store.get(1), store.get(2)
    assert done is not None and pending is not None
    assert (done.status, done.model_version, done.promoted, done.name) == (
        "completed",
        "15m_20261201_120000",
        True,
        "train-15m",
    )
    assert (pending.status, pending.timeframe, pending.train_ratio) == ("pending", "1h", 0.75)
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO model_aliases (timeframe, model, alias, version, action, "
                "changed_by, changed_at) VALUES ('15m', 'LONG', 'champion', "
                "'15m_20261201_120000', 'promote', 'me', 'now')"
            )
        )
    assert JobStore(f"sqlite:///{db}").get(1) == done  # opening again changes nothing
