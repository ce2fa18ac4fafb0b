"""The throwaway PostgreSQL server of the tests (tjdevcluster.postgres), on the real binaries."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from tjdevcluster import postgres
from tjdevcluster.postgres import PostgresError, PostgresServer
from tjdevcluster.procs import port_in_use


def _count_rows(url: str) -> int:
    engine = sa.create_engine(url, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM kept")).scalar_one())
    finally:
        engine.dispose()


def test_server_serves_its_role_by_password_keeps_rows_over_a_restart_and_leaves_nothing() -> None:
    server = PostgresServer(password="s3cret/:@x")
    with server:
        root, port = server.root, server.port
        assert root is not None and port_in_use(port)
        engine = sa.create_engine(server.url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (x int)"))
            conn.execute(sa.text("INSERT INTO kept VALUES (1), (2)"))
        engine.dispose()
        server.restart()
        assert _count_rows(server.url) == 2
        wrong = server.url.replace("s3cret%2F%3A%40x", "wrong")
        with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
            _count_rows(wrong)
    assert not port_in_use(port)
    assert not root.exists()


def test_each_new_database_starts_empty(postgres_server: PostgresServer, postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE kept (x int)"))
    engine.dispose()
    other = postgres_server.new_database()
    with psycopg.connect(other.replace("postgresql+psycopg", "postgresql")) as conn:
        assert conn.execute("SELECT to_regclass('kept')").fetchone() == (None,)
    postgres_server.drop_database(other.rsplit("/", 1)[1])


def test_missing_binaries_say_how_to_install_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres, "BIN_DIRS", (tmp_path,))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PostgresError, match="apt-get install postgresql-15"):
        PostgresServer().start()
