"""A throwaway real PostgreSQL 15 server for tests, benches and the dev cluster.

``initdb`` into a fresh folder, ``pg_ctl start`` on 127.0.0.1 (a free port) and a unix
socket in that folder, a password-authenticated role owning one database; ``stop()``
stops the server (``pg_ctl stop -m fast``) and removes the folder. PostgreSQL refuses
to run as root, so as root the binaries run as the ``postgres`` system user (runuser),
which then owns the folder. Development and test scaffolding.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import psycopg
from psycopg import sql

from .procs import free_ports

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
# Throwaway data: durability off for speed; room for many workers' connection pools.
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}


class PostgresError(RuntimeError):
    """The throwaway server could not be started or used (message says how to fix it)."""


def find_binary(name: str) -> Path:
    """Path of one PostgreSQL 15 server binary, or PostgresError saying how to install it."""
    for folder in BIN_DIRS:
        if (folder / name).is_file():
            return folder / name
    found = shutil.which(name)
    if found:
        return Path(found)
    raise PostgresError(
        f"PostgreSQL's {name} was not found (looked in {', '.join(map(str, BIN_DIRS))} and "
        "on PATH); install the server binaries: apt-get install postgresql-15"
    )


class PostgresServer:
    """A PostgreSQL server in a fresh folder; a context manager (start ... stop).

    ``url`` is the SQLAlchemy URL of ``database`` as ``user`` (password authentication
    over TCP on 127.0.0.1); ``new_database()`` makes another empty database of that role.
    ``port`` fixes the TCP port (default: a free one).
    """

    def __init__(
        self,
        *,
        user: str = "tj",
        database: str = "tj",
        password: str | None = None,
        listen: str = "127.0.0.1",
        root: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.user = user
        self.database = database
        self.password = password or secrets.token_hex(12)
        self.listen = listen
        self._root_given = root
        self.root: Path | None = None
        self._port_given = port
        self.port = port or 0
        self.started = False

    # -- paths ---------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self._need_root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._need_root() / "socket"

    @property
    def log_path(self) -> Path:
        return self._need_root() / "postgres.log"

    def _need_root(self) -> Path:
        if self.root is None:
            raise PostgresError("the PostgreSQL server was not started")
        return self.root

    # -- URLs ----------------------------------------------------------------------------
    def url_of(self, database: str) -> str:
        """SQLAlchemy URL of one database of this server, as the role with its password."""
        return (
            f"postgresql+psycopg://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{quote(database, safe='')}"
        )

    @property
    def url(self) -> str:
        return self.url_of(self.database)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> PostgresServer:
        """initdb, start the server, create the role and its database."""
        initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        find_binary("postgres")
        if self._root_given is not None:
            self._root_given.mkdir(parents=True, exist_ok=True)
            self.root = self._root_given
        else:
            # As root, in /tmp: the postgres user must reach the folder, and TMPDIR may be
            # a folder of root's alone.
            where = "/tmp" if os.geteuid() == 0 else None
            self.root = Path(tempfile.mkdtemp(prefix="tj-postgres-", dir=where))
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        self._give_to_server_user(self.root)
        try:
            self._run(
                [str(initdb), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth-local=trust",
                 "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                "initdb",
            )  # fmt: skip
            with open(self.data_dir / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.listen}/32 scram-sha-256\n")
            self._start_on_a_free_port(pg_ctl)
            self._create_role_and_database()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_on_a_free_port(self, pg_ctl: Path) -> None:
        last_error: PostgresError | None = None
        for _ in range(1 if self._port_given else 3):  # a free port may be taken by now
            self.port = self._port_given or free_ports(1)[0]
            try:
                self._pg_ctl_start(pg_ctl)
                return
            except PostgresError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    def _pg_ctl_start(self, pg_ctl: Path) -> None:
        options = " ".join(f"-c {key}={value}" for key, value in SERVER_SETTINGS.items())
        self._run(
            [str(pg_ctl), "start", "-w", "-t", "60", "-D", str(self.data_dir),
             "-l", str(self.log_path), "-o",
             f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.listen} {options}"],
            "pg_ctl start",
        )  # fmt: skip
        self.started = True

    def _pg_ctl_stop(self) -> None:
        self.started = False
        self._run(
            [str(find_binary("pg_ctl")), "stop", "-w", "-t", "60", "-m", "fast",
             "-D", str(self.data_dir)],
            "pg_ctl stop",
        )  # fmt: skip

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop the server (open connections are cut), stay down ``down_for`` seconds, and
        start it again on the same port with the same data."""
        self._pg_ctl_stop()
        time.sleep(down_for)
        self._pg_ctl_start(find_binary("pg_ctl"))

    def stop(self) -> None:
        """Stop the server (fast: open connections are cut) and remove its folder."""
        if self.started:
            self._pg_ctl_stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------
    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection as the superuser over the unix socket."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
        )

    def new_database(self, name: str | None = None) -> str:
        """Create an empty database owned by the role (from template0); its URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                    sql.Identifier(name), sql.Identifier(self.user)
                )
            )
        return self.url_of(name)

    def drop_database(self, name: str) -> None:
        """Drop one database, cutting its open connections."""
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def _create_role_and_database(self) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(self.user), sql.Literal(self.password)
                )
            )
        self.new_database(self.database)

    # -- running the binaries -------------------------------------------------------------
    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        if shutil.which("runuser") is None:
            raise PostgresError("runuser is missing; PostgreSQL cannot run as root without it")
        return ["runuser", "-u", SYSTEM_USER, "--", *argv]

    def _give_to_server_user(self, root: Path) -> None:
        if os.geteuid() != 0:
            return
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PostgresError(
                f"there is no {SYSTEM_USER!r} system user to run PostgreSQL as (it refuses "
                "root); install the server package, which creates it: "
                "apt-get install postgresql-15"
            ) from None
        for path in (root, *root.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, argv: list[str], what: str) -> None:
        done = subprocess.run(
            self._as_server_user(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            log = ""
            if self.root is not None and self.log_path.exists():
                log = self.log_path.read_text(errors="replace")[-2000:]
            raise PostgresError(
                f"{what} failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}\n{log}".strip()
            )
