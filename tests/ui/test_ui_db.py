"""The UI reads through a read-only connection and writes only through short-lived
writable stores; database errors become sentences. On SQLite and on a real PostgreSQL
server (the tests that take ``store``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import add_job
from sqlalchemy.exc import DBAPIError

from tjcore.spec import validate_spec
from tjcore.store import JobStore
from tjdevcluster.postgres import PostgresServer
from tjdevcluster.procs import free_ports
from tjui import db
from tjui.db import DataError, cancel_job, describe_url, open_reader, submit_job


@pytest.fixture
def store(any_store: JobStore) -> JobStore:
    """The tests that take it run on both backends."""
    return any_store


def test_reads_go_through_a_read_only_connection(store: JobStore) -> None:
    job_id = add_job(store)
    reader = open_reader(store.url)

    assert reader.store.readonly
    assert [r.id for r in reader.recent(limit=5)] == [job_id]
    # SQLite: OperationalError "readonly database"; PostgreSQL: InternalError
    with pytest.raises(DBAPIError, match=r"readonly|read-only transaction"):
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


def test_an_unreachable_postgresql_server_is_a_sentence_naming_host_and_port() -> None:
    (port,) = free_ports(1)
    url = f"postgresql://tj:s3cret@127.0.0.1:{port}/jobs"
    reader = open_reader(url)  # the page opens, and says why it shows nothing
    with pytest.raises(DataError) as failed:
        reader.recent(limit=5)
    for message, action in (
        (reader.setup_problem, "create or upgrade the training_jobs table"),
        (str(failed.value), "list the training jobs"),
    ):
        assert message is not None
        assert message.startswith(
            f"Could not {action}: cannot connect to PostgreSQL at 127.0.0.1:{port}"
        )
        assert "check the host and port in DATABASE_URL" in message
        assert "s3cret" not in message and "\n" not in message


def test_the_reader_goes_on_after_the_postgresql_server_restarts(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    reader = open_reader(postgres_url)
    job_id = submit_job(postgres_url, validate_spec({"timeframe": "15m"}))
    assert [r.id for r in reader.recent(limit=5)] == [job_id]
    postgres_server.restart()
    assert reader.get(job_id) is not None
    assert cancel_job(postgres_url, job_id).status == "cancelled"


def test_a_database_that_comes_up_after_the_ui_is_set_up_on_a_later_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (port,) = free_ports(1)
    late = PostgresServer(port=port)
    first = open_reader(late.url)
    assert first.setup_problem and f"127.0.0.1:{port}" in first.setup_problem
    assert open_reader(late.url) is first  # kept for SETUP_RETRY_SECONDS
    with late:
        monkeypatch.setattr(db, "SETUP_RETRY_SECONDS", 0.0)
        again = open_reader(late.url)
        assert again.setup_problem is None and again.recent(limit=5) == []
        assert open_reader(late.url) is again
        again.store.close()
