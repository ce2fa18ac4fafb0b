"""The table on a real PostgreSQL server: a restart is waited out, a server that cannot be
reached is one sentence naming its host and port (never the password), a seed table is
upgraded in place, and processes opening a new database at once migrate it once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from tjcore.schema import SCHEMA_VERSION, current_version
from tjcore.store import DatabaseUnreachableError, JobStore
from tjdevcluster.postgres import PostgresServer
from tjdevcluster.procs import free_ports, port_in_use

FROZEN_V1 = Path(__file__).parent / "fixtures" / "training_jobs_v1.sql"
TJCTL = str(Path(sys.executable).with_name("tjctl"))


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_a_restarted_server_is_waited_for_and_the_store_goes_on(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    store = JobStore(postgres_url)
    first = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    postgres_server.restart()  # every pooled connection is dead now
    assert store.get(first) is not None
    # Down for 3 s while the store is asked to write: it waits, then writes.
    down = threading.Thread(target=lambda: postgres_server.restart(down_for=3.0))
    down.start()
    try:
        deadline = time.monotonic() + 30
        while port_in_use(postgres_server.port) and time.monotonic() < deadline:
            time.sleep(0.02)
        asked = time.monotonic()
        second = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
        assert time.monotonic() - asked > 1.0, "the server was not down"
    finally:
        down.join()
    assert [r.id for r in store.list_jobs()] == [second, first]
    store.close()


def test_an_unreachable_server_is_one_sentence_with_its_host_and_port() -> None:
    (port,) = free_ports(1)
    url = f"postgresql+psycopg://tj:s3cret@127.0.0.1:{port}/jobs"
    with pytest.raises(DatabaseUnreachableError) as failed:
        JobStore(url)
    message = str(failed.value)
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in message
    assert "Connection refused" in message and "check the host and port in DATABASE_URL" in message
    assert "s3cret" not in message and "\n" not in message


def test_a_wrong_password_says_which_user_and_what_to_check(
    postgres_server: PostgresServer,
) -> None:
    wrong = postgres_server.url.replace(postgres_server.password, "n0t-it")
    with pytest.raises(DatabaseUnreachableError) as failed:
        JobStore(wrong)
    message = str(failed.value)
    assert f"127.0.0.1:{postgres_server.port}" in message
    assert "password authentication failed" in message
    assert "check the user name and password in DATABASE_URL" in message
    assert "n0t-it" not in message and postgres_server.password not in message


@pytest.mark.parametrize("which", ["refused", "password", "no database"])
def test_tjctl_says_it_in_one_error_line_without_the_password(
    postgres_server: PostgresServer, tmp_path: Path, which: str
) -> None:
    url = {
        "refused": f"postgresql://tj:s3cret@127.0.0.1:{free_ports(1)[0]}/jobs",
        "password": postgres_server.url.replace(postgres_server.password, "s3cret"),
        "no database": postgres_server.url_of("missing").replace(
            postgres_server.password, "s3cret"
        ),
    }[which]
    env = {**os.environ, "SHARED_DATA_PATH": str(tmp_path), "DATABASE_URL": url}
    done = subprocess.run(
        [TJCTL, "jobs"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "s3cret" not in done.stderr and "Traceback" not in done.stderr
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert f"PostgreSQL at 127.0.0.1:{port}" in done.stderr
    assert "DATABASE_URL" in done.stderr


def test_a_seed_table_on_postgresql_is_upgraded_in_place(postgres_url: str) -> None:
    seed = FROZEN_V1.read_text().replace("INTEGER PRIMARY KEY AUTOINCREMENT", "SERIAL PRIMARY KEY")
    with psycopg.connect(_libpq(postgres_url)) as conn:
        conn.execute(seed)  # type: ignore[call-overload]
    store = JobStore(postgres_url)
    with store.engine.connect() as conn:
        assert current_version(conn) == SCHEMA_VERSION
        versions = conn.execute(text("SELECT version FROM training_jobs_schema")).all()
    assert versions == [(SCHEMA_VERSION,)]
    done, pending = sorted(store.list_jobs(), key=lambda r: r.id)
    assert (done.status, done.model_version, done.seed) == ("completed", "15m_20260123_140000", 42)
    assert done.trial_log[0]["params"] == {"max_depth": 4}
    assert store.request_cancel(pending.id).status == "cancelled"
    # Serial ids go on after the seed's rows.
    assert store.submit(timeframe="1h", n_trials=1, train_ratio=0.8, source="t") == 3
    JobStore(postgres_url).close()  # opening again changes nothing
    with psycopg.connect(_libpq(postgres_url)) as conn:
        conn.execute("UPDATE training_jobs_schema SET version = 99")
    with pytest.raises(RuntimeError, match="schema version 99, newer than this release"):
        JobStore(postgres_url)


OPENER = """
import sys
from tjcore.store import JobStore
JobStore(sys.argv[1]).close()
print("ok")
"""


def test_processes_opening_a_new_database_at_once_migrate_it_once(postgres_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, postgres_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err
    with psycopg.connect(_libpq(postgres_url)) as conn:
        assert conn.execute("SELECT version FROM training_jobs_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]


def test_a_readonly_store_is_a_read_only_session(postgres_url: str) -> None:
    store = JobStore(postgres_url)
    job = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    reader = JobStore(postgres_url, readonly=True)
    assert reader.get(job) is not None
    with pytest.raises(Exception, match="read-only transaction"):
        reader.update_job(job, status="failed")
    assert store.get(job).status == "pending"  # type: ignore[union-attr]
