"""The UI reads through a read-only connection and writes only through short-lived
writable stores; database errors become sentences."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import add_job
from sqlalchemy.exc import OperationalError

from tjcore.spec import validate_spec
from tjcore.store import JobStore
from tjui.db import DataError, cancel_job, describe_url, open_reader, submit_job


def test_reads_go_through_a_read_only_connection(store: JobStore) -> None:
    job_id = add_job(store)
    reader = open_reader(store.url)

    assert reader.store.readonly
    assert [r.id for r in reader.recent(limit=5)] == [job_id]
    with pytest.raises(OperationalError, match="readonly"):
        reader.store.update_job(job_id, status="running")


def test_the_reader_creates_the_table_of_a_fresh_folder(shared_dir: Path) -> None:
    url = f"sqlite:///{shared_dir / 'new' / 'jobs.db'}"
    reader = open_reader(url)
    assert reader.recent(limit=5) == []
    assert reader.setup_problem is None


def test_the_writes_submit_and_cancel(store: JobStore) -> None:
    job_id = submit_job(store.url, validate_spec({"timeframe": "1h", "nTrials": 4}))
    row = store.get(job_id)
    assert row is not None and (row.status, row.total_trials, row.source) == ("pending", 8, "ui")
    assert cancel_job(store.url, job_id).status == "cancelled"
    with pytest.raises(DataError, match="has ended already"):
        cancel_job(store.url, job_id)
    with pytest.raises(DataError, match="no training job with id 999"):
        cancel_job(store.url, 999)


def test_a_failing_query_is_a_sentence(shared_dir: Path) -> None:
    url = f"sqlite:///{shared_dir / 'gone.db'}"
    reader = open_reader(url)
    (shared_dir / "gone.db").unlink()
    with pytest.raises(DataError) as failed:
        reader.get(1)
    message = str(failed.value)
    assert message.startswith("Could not read training job 1: unable to open database file.")
    assert "sqlalche.me" not in message and "SELECT" not in message


def test_urls_are_shown_without_their_password() -> None:
    shown = describe_url("postgresql://tj:s3cret@db:5432/jobs")
    assert "s3cret" not in shown and "db:5432/jobs" in shown
