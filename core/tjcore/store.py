"""The one access layer of the ``training_jobs`` table.

Every reader and writer (local runner, worker, operator, UI, ``tjctl``) goes through
:class:`JobStore`. On SQLite it sets WAL mode and a busy timeout, and writes in
``BEGIN IMMEDIATE`` transactions so that several processes can write at once without
"database is locked" reaching the user. ``DATABASE_URL`` may point at PostgreSQL
(``postgresql://`` or ``postgresql+psycopg://``, psycopg 3): the same table, migrations
(serialised by an advisory lock) and guarantees; read-modify-write transactions lock
their row (``SELECT ... FOR UPDATE``). Pooled connections are checked before use
(``pool_pre_ping``), and a store that has reached its server once waits up to
:data:`RECONNECT_SECONDS` for it to come back (a restart); a server that cannot be
reached is one :class:`DatabaseUnreachableError` naming its host and port, never its
password.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from tjcontract.spec import (
    DEFAULT_EMBARGO,
    DEFAULT_FOLDS,
    DEFAULT_N_TRIALS,
    DEFAULT_PARALLELISM,
    DEFAULT_PROMOTION,
    DEFAULT_SEED,
    DEFAULT_TRAIN_RATIO,
    total_trials,
)
from tjcontract.times import utc_now, utc_text
from tjcontract.words import RunState
from tjcore.messages import bounded_message
from tjcore.schema import migrate, training_jobs
from tjcore.settings import redact_text
from tjcore.spec import TrainingJobSpec
from tjcore.sqlite_fs import check_sqlite_location
from tjtrainer.progress import RunProgress

BUSY_TIMEOUT_MS = 30_000
# PostgreSQL: how long one connection attempt may take, and how long a store that has
# reached its server waits for it to come back (a restart, a fail-over).
CONNECT_TIMEOUT_S = 10
RECONNECT_SECONDS = 60.0
# The advisory lock key under which one process at a time migrates a PostgreSQL database.
MIGRATION_LOCK_KEY = 0x746A_6A6F  # "tjjo"
FINAL_STATUSES = tuple(s.value for s in RunState if s.is_final)
# The source of rows that `tjctl run` makes and runs itself.
LOCAL_RUN_SOURCE = "tjctl-run"
T = TypeVar("T")


@dataclass(frozen=True)
class JobRow:
    """One row of ``training_jobs``; ``trial_log`` is parsed from its JSON text."""

    id: int
    timeframe: str
    n_trials: int
    train_ratio: float
    status: str
    progress_pct: float
    current_trial: int
    total_trials: int
    current_model: str | None
    best_score_long: float | None
    best_score_short: float | None
    trial_log: list[dict[str, Any]]
    error: str | None
    model_version: str | None
    requested_at: str
    started_at: str | None
    completed_at: str | None
    namespace: str | None
    name: str | None
    seed: int
    parallelism: int
    cancel_requested: bool
    test_score_long: float | None
    test_score_short: float | None
    source: str | None
    updated_at: str | None
    uid: str | None
    lease_owner: str | None = None
    heartbeat_at: str | None = None
    cv_folds: int = DEFAULT_FOLDS
    embargo: int = DEFAULT_EMBARGO
    verdict_long: str | None = None
    verdict_short: str | None = None
    significance_level: float | None = None
    test_p_long: float | None = None
    test_p_short: float | None = None
    test_ci_low_long: float | None = None
    test_ci_high_long: float | None = None
    test_ci_low_short: float | None = None
    test_ci_high_short: float | None = None
    evaluation: dict[str, Any] | None = None
    promotion: str = "always"
    promoted: bool | None = None
    promotion_reason: str | None = None
    cancel_forwarded: bool = False
    # What could not be read from the row ("column: why"), if anything: the row is shown
    # as damaged instead of breaking every reader of the table.
    damaged: tuple[str, ...] = ()

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def damage_of(self, columns: Iterable[str]) -> str | None:
        """What is wrong with ``columns`` of this row, or ``None`` if they read well."""
        wanted = set(columns)
        found = [d for d in self.damaged if d.split(":", 1)[0] in wanted]
        return "; ".join(found) or None

    @property
    def spec_damage(self) -> str | None:
        """What is wrong with the columns a run is made from (it must not run on guesses)."""
        return self.damage_of(SPEC_COLUMNS)

    @classmethod
    def from_mapping(cls, row: Any) -> JobRow:
        data: dict[str, Any] = dict(row)
        damaged = _coerce_columns(data)
        data["trial_log"] = _trial_log(data.get("trial_log"), damaged)
        data["cancel_requested"] = bool(data.get("cancel_requested"))
        data["cancel_forwarded"] = bool(data.get("cancel_forwarded"))
        data["evaluation"] = _json_object(data.get("evaluation"))
        if data.get("promoted") is not None:
            data["promoted"] = bool(data["promoted"])
        data["damaged"] = tuple(damaged)
        defaults = {
            "n_trials": DEFAULT_N_TRIALS,
            "train_ratio": DEFAULT_TRAIN_RATIO,
            "status": RunState.PENDING.value,
            "progress_pct": 0.0,
            "current_trial": 0,
            "total_trials": 0,
            "seed": DEFAULT_SEED,
            "parallelism": DEFAULT_PARALLELISM,
            "cv_folds": DEFAULT_FOLDS,
            "embargo": DEFAULT_EMBARGO,
            "promotion": DEFAULT_PROMOTION,
        }
        for key, value in defaults.items():
            if data.get(key) is None:
                data[key] = value
        values: dict[str, Any] = {f.name: data.get(f.name) for f in fields(cls)}
        return cls(**values)


# Columns by the Python type a row gives them; SQLite stores whatever it is given, so a
# row written by hand (or by a broken writer) may hold anything.
INT_COLUMNS = (
    "id",
    "n_trials",
    "current_trial",
    "total_trials",
    "seed",
    "parallelism",
    "cv_folds",
    "embargo",
)
FLOAT_COLUMNS = (
    "train_ratio",
    "progress_pct",
    "best_score_long",
    "best_score_short",
    "test_score_long",
    "test_score_short",
    "significance_level",
    "test_p_long",
    "test_p_short",
    "test_ci_low_long",
    "test_ci_high_long",
    "test_ci_low_short",
    "test_ci_high_short",
)
# The columns a run is made from.
SPEC_COLUMNS = (
    "timeframe",
    "n_trials",
    "train_ratio",
    "seed",
    "parallelism",
    "cv_folds",
    "embargo",
    "promotion",
)
TEXT_COLUMNS = ("timeframe", "status", "promotion", "namespace", "name", "model_version")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _coerce_columns(data: dict[str, Any]) -> list[str]:
    """Give the typed columns of ``data`` their types in place; a value that is not of its
    type is dropped (the default applies) and named in the list returned."""
    damaged: list[str] = []
    for names, kind in ((INT_COLUMNS, int), (FLOAT_COLUMNS, float)):
        for name in names:
            value = data.get(name)
            if value is None or (type(value) is kind):
                continue
            try:
                if isinstance(value, bytes | bool):
                    raise ValueError
                number = float(value)
                if kind is int:
                    if not number.is_integer():
                        raise ValueError
                    data[name] = int(number)
                else:
                    data[name] = number if math.isfinite(number) else None
            except (TypeError, ValueError, OverflowError):
                damaged.append(f"{name}: not a number ({_shown(value)})")
                data[name] = None
    for name in TEXT_COLUMNS:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            damaged.append(f"{name}: not text ({_shown(value)})")
            data[name] = None if name != "timeframe" else "?"
    return damaged


def _trial_log(text: Any, damaged: list[str]) -> list[dict[str, Any]]:
    """The trial log from its JSON text; unreadable text is named in ``damaged``."""
    if not text:
        return []
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as err:
        damaged.append(f"trial_log: not JSON ({err})")
        return []
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        damaged.append("trial_log: not a list of trials")
        return []
    return value


def _json_object(text: Any) -> dict[str, Any] | None:
    """A JSON object from the table, or ``None`` (absent or unreadable: never an error)."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def evaluation_columns(evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """The verdict columns of a run's ``evaluation`` (see tjtrainer.evaluation)."""
    if not evaluation:
        return {}
    values: dict[str, Any] = {
        "significance_level": evaluation.get("level"),
        "evaluation": json.dumps(evaluation, allow_nan=False),
    }
    for model in ("LONG", "SHORT"):
        side = model.lower()
        found = evaluation.get(model) or {}
        low, high = (found.get("ci") or [None, None])[:2]
        values |= {
            f"verdict_{side}": found.get("verdict"),
            f"test_p_{side}": found.get("p_value"),
            f"test_ci_low_{side}": low,
            f"test_ci_high_{side}": high,
        }
    return values


def progress_columns(progress: RunProgress) -> dict[str, Any]:
    """The table's view of a run's progress: the one mapping used by the local runner
    and the operator."""
    values: dict[str, Any] = {
        "status": str(progress.state),
        "progress_pct": progress.progress_pct,
        "current_trial": progress.completed_trials,
        "total_trials": progress.total_trials,
        "current_model": progress.current_model,
        "best_score_long": progress.best_score_long,
        "best_score_short": progress.best_score_short,
        "test_score_long": progress.test_score_long,
        "test_score_short": progress.test_score_short,
        "trial_log": json.dumps([vars(t) for t in progress.trials], allow_nan=False),
        "model_version": progress.model_version,
        "started_at": progress.started_at,
    }
    values |= evaluation_columns(progress.evaluation)
    if progress.promoted is not None:
        values |= {
            "promoted": int(progress.promoted),
            "promotion_reason": progress.promotion_reason,
        }
    if progress.state.is_final:
        values["completed_at"] = progress.finished_at or utc_now()
        values["error"] = progress.error
    return values


def _no_local_runner() -> ColumnElement[bool]:
    """Rows no local runner owns: not ``tjctl run``'s (its uid names no object, its
    TrainingJob name no TrainingJob) and holding no lease (a worker runs it)."""
    c = training_jobs.c
    return (c.source.is_(None) | (c.source != LOCAL_RUN_SOURCE)) & c.lease_owner.is_(None)


def _sqlite_engine(url: str, *, readonly: bool) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if database and database != ":memory:":
        check_sqlite_location(Path(database))  # never WAL on a network filesystem
    if database and database != ":memory:" and not readonly:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    if readonly:
        url = f"sqlite:///file:{database}?mode=ro&uri=true"
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how transactions start.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so two writers never deadlock on an
        # upgrade from a read lock; readers use a plain deferred transaction.
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: str, *, readonly: bool) -> Engine:
    options = {"connect_timeout": CONNECT_TIMEOUT_S}
    if readonly:  # the server refuses every write of the session
        options["options"] = "-c default_transaction_read_only=on"  # type: ignore[assignment]
    return create_engine(url, pool_pre_ping=True, connect_args=options)


class DatabaseUnreachableError(SQLAlchemyError):
    """The database server of the table cannot be reached or refuses the login; the
    message names its host and port (never the password) and what to check."""


# What psycopg says, to what the user should check.
_CONNECT_FIXES = (
    ("password authentication failed", "check the user name and password in DATABASE_URL"),
    ("does not exist", "check the database (and user) name in DATABASE_URL; create it if new"),
    ("resolve host", "check the host name in DATABASE_URL"),
    ("no pg_hba.conf entry", "let this host in through the server's pg_hba.conf"),
)


def unreachable_error(url: str, err: BaseException) -> DatabaseUnreachableError:
    """One line about a failed connection to the server of ``url``."""
    parsed = make_url(url)
    original = getattr(err, "orig", None) or err
    said = " ".join(str(original).split())
    reason = re.sub(r"^connection failed: ", "", said)
    reason = re.sub(r"connection to server at \S+ port \d+ failed: ", "", reason)
    reason = reason.replace("FATAL: ", "").split(" Is the server running")[0].rstrip(" .")
    fix = next(
        (fix for key, fix in _CONNECT_FIXES if key in said),
        "check the host and port in DATABASE_URL and that PostgreSQL runs there and accepts "
        "connections from this host",
    )
    backend = parsed.get_backend_name()
    server = "PostgreSQL" if backend == "postgresql" else f"the {backend} server"
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    message = (
        f"cannot connect to {server} at {where} (database {parsed.database!r}, user "
        f"{parsed.username!r}): {reason}; {fix} (in the cluster: the chart's database Secret)"
    )
    return DatabaseUnreachableError(redact_text(message, url))


class QueueFullError(ValueError):
    """As many rows are pending as ``TJ_MAX_QUEUED_JOBS`` allows."""


def _check_queue(conn: Connection, max_pending: int) -> None:
    """Raise :class:`QueueFullError` if ``max_pending`` rows are pending. SQLite's
    ``BEGIN IMMEDIATE`` already serialises writers; PostgreSQL needs the table lock."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE training_jobs IN SHARE ROW EXCLUSIVE MODE")
    count = conn.execute(
        select(func.count())
        .select_from(training_jobs)
        .where(training_jobs.c.status == RunState.PENDING.value)
    ).scalar_one()
    if count >= max_pending:
        raise QueueFullError(
            f"{count} jobs are queued already, the most TJ_MAX_QUEUED_JOBS allows "
            f"({max_pending}): wait until some have started, or cancel one (tjctl cancel ID, "
            "or the UI's Cancel button)"
        )


class JobStore:
    """Reads and writes ``training_jobs``.

    Args:
        url: a SQLAlchemy URL; ``sqlite:///path`` gets WAL, a busy timeout and
            ``BEGIN IMMEDIATE`` writes.
        readonly: open the database read-only (the UI); writes then fail.
    """

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        self.readonly = readonly
        backend = make_url(url).get_backend_name()
        self.is_sqlite = backend == "sqlite"
        # Whether a connection ever succeeded: after that, a refused one is waited out.
        self._reached = False
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, readonly=readonly)
        elif backend == "postgresql":
            self.engine = _postgres_engine(url, readonly=readonly)
        else:  # another SQLAlchemy dialect: untested, as SQLAlchemy makes it
            self.engine = create_engine(url, pool_pre_ping=True)
        if not readonly:
            self._retry(lambda: self._write(self._migrate))

    def _migrate(self, conn: Connection) -> int:
        if conn.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE serialises already
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        return migrate(conn)

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions -------------------------------------------------------------
    def _retry(self, work: Callable[[], T]) -> T:
        """Run ``work``, retrying a few times if SQLite still reports a lock after its
        busy timeout (a writer that held the lock for more than 30 s)."""
        for attempt in range(5):
            try:
                return work()
            except OperationalError as err:
                if ("locked" not in str(err) and "busy" not in str(err)) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _connect(self) -> Connection:
        """A connection; on PostgreSQL one failed attempt is a
        :class:`DatabaseUnreachableError`, except that a store which reached its server
        before keeps trying for :data:`RECONNECT_SECONDS` (the server restarts)."""
        if self.is_sqlite:
            return self.engine.connect()
        deadline = time.monotonic() + RECONNECT_SECONDS
        delay = 0.1
        while True:
            try:
                conn = self.engine.connect()
            except OperationalError as err:
                if not self._reached or time.monotonic() + delay > deadline:
                    raise unreachable_error(self.url, err) from None
                time.sleep(delay)
                delay = min(2 * delay, 0.5)
                continue
            self._reached = True
            return conn

    def _write(self, work: Callable[[Connection], T]) -> T:
        with self._connect() as conn, conn.begin():
            return work(conn)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._connect() as conn:
            yield conn

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        return self._retry(lambda: self._write(work))

    # -- reads ---------------------------------------------------------------------
    def get(self, job_id: int) -> JobRow | None:
        with self._read() as conn:
            row = (
                conn.execute(select(training_jobs).where(training_jobs.c.id == job_id))
                .mappings()
                .first()
            )
        return JobRow.from_mapping(row) if row else None

    def get_by_name(self, namespace: str, name: str) -> JobRow | None:
        """The newest row of TrainingJob ``namespace/name``."""
        c = training_jobs.c
        query = (
            select(training_jobs)
            .where(c.namespace == namespace, c.name == name)
            .order_by(c.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        return JobRow.from_mapping(row) if row else None

    def get_by_uid(self, uid: str) -> JobRow | None:
        """The row of the Kubernetes object with this uid."""
        with self._read() as conn:
            row = (
                conn.execute(select(training_jobs).where(training_jobs.c.uid == uid))
                .mappings()
                .first()
            )
        return JobRow.from_mapping(row) if row else None

    def list_jobs(self, *, limit: int = 50, status: str | None = None) -> list[JobRow]:
        """The newest ``limit`` rows, newest first."""
        query = select(training_jobs).order_by(training_jobs.c.id.desc()).limit(limit)
        if status:
            query = query.where(training_jobs.c.status == status)
        with self._read() as conn:
            return [JobRow.from_mapping(r) for r in conn.execute(query).mappings()]

    def pending(self, *, claimable_by: str | None = None) -> list[JobRow]:
        """Pending rows, oldest first. With ``claimable_by`` only the rows nobody named
        yet or that this namespace named earlier (a local worker resuming its own)."""
        query = (
            select(training_jobs)
            .where(training_jobs.c.status == RunState.PENDING.value)
            .order_by(training_jobs.c.requested_at, training_jobs.c.id)
        )
        if claimable_by is not None:
            query = query.where(
                training_jobs.c.name.is_(None) | (training_jobs.c.namespace == claimable_by)
            )
        with self._read() as conn:
            return [JobRow.from_mapping(r) for r in conn.execute(query).mappings()]

    def cancel_requests(self, *, namespace: str) -> list[JobRow]:
        """Rows of ``namespace`` with a cancel request not yet forwarded to their
        TrainingJob, which may still run (named rows that have not completed or failed)."""
        c = training_jobs.c
        query = select(training_jobs).where(
            c.cancel_requested == 1,
            c.namespace == namespace,
            c.name.is_not(None),
            c.status.not_in([RunState.COMPLETED.value, RunState.FAILED.value]),
            c.cancel_forwarded.is_(None) | (c.cancel_forwarded == 0),
            _no_local_runner(),
        )
        with self._read() as conn:
            return [JobRow.from_mapping(r) for r in conn.execute(query).mappings()]

    def unfinished_with_uid(self, *, namespace: str) -> list[JobRow]:
        """Rows of ``namespace`` bound to a Kubernetes object (a uid) that have not ended:
        the table bridge checks that their TrainingJob still exists."""
        c = training_jobs.c
        query = (
            select(training_jobs)
            .where(
                c.namespace == namespace,
                c.uid.is_not(None),
                c.status.in_([RunState.PENDING.value, RunState.RUNNING.value]),
                _no_local_runner(),
            )
            .order_by(c.id)
        )
        with self._read() as conn:
            return [JobRow.from_mapping(r) for r in conn.execute(query).mappings()]

    # -- writes --------------------------------------------------------------------
    def submit(
        self,
        *,
        timeframe: str,
        n_trials: int,
        train_ratio: float,
        seed: int = DEFAULT_SEED,
        parallelism: int = DEFAULT_PARALLELISM,
        cv_folds: int = DEFAULT_FOLDS,
        embargo: int = DEFAULT_EMBARGO,
        promotion: str = DEFAULT_PROMOTION,
        source: str,
        namespace: str | None = None,
        name: str | None = None,
        uid: str | None = None,
        max_pending: int | None = None,
    ) -> int:
        """Insert a ``pending`` row as the UI does; returns its id. With ``max_pending``
        the row is refused when that many rows are pending already (counted and inserted
        in one write transaction, so concurrent submitters never pass it).

        Raises:
            ValueError: a row for the same Kubernetes object (uid) exists already.
            QueueFullError: ``max_pending`` rows are pending.
        """
        values = {
            "timeframe": timeframe,
            "n_trials": n_trials,
            "train_ratio": train_ratio,
            "seed": seed,
            "parallelism": parallelism,
            "cv_folds": cv_folds,
            "embargo": embargo,
            "promotion": promotion,
            "status": RunState.PENDING.value,
            "total_trials": total_trials(n_trials),
            "requested_at": utc_now(),
            "source": source,
            "namespace": namespace,
            "name": name,
            "uid": uid,
            "updated_at": utc_now(),
        }

        def insert(conn: Connection) -> int:
            if max_pending is not None:
                _check_queue(conn, max_pending)
            key = conn.execute(training_jobs.insert().values(**values)).inserted_primary_key
            assert key is not None
            return int(key[0])

        try:
            return self.write(insert)
        except IntegrityError:
            raise ValueError(
                f"a training job for {namespace}/{name} (uid {uid}) exists already"
            ) from None

    def submit_spec(
        self,
        spec: TrainingJobSpec,
        *,
        source: str,
        namespace: str | None = None,
        name: str | None = None,
        uid: str | None = None,
        max_pending: int | None = None,
    ) -> int:
        """Insert the ``pending`` row of a validated spec (unnamed rows, as the UI makes
        them, get their TrainingJob name when a runner claims them); ``max_pending`` as
        in :meth:`submit`."""
        return self.submit(
            timeframe=spec.timeframe,
            n_trials=spec.nTrials,
            train_ratio=spec.trainRatio,
            seed=spec.seed,
            parallelism=spec.parallelism,
            cv_folds=spec.cvFolds,
            embargo=spec.embargo,
            promotion=spec.promotion,
            source=source,
            namespace=namespace,
            name=name,
            uid=uid,
            max_pending=max_pending,
        )

    def claim(self, job_id: int, *, namespace: str, name: str, start: bool) -> bool:
        """Give a pending row its TrainingJob name, exactly once: the row must be unnamed
        or already carry this very name (a claimer resuming its own row).

        With ``start`` the row also becomes ``running`` (the local worker). Returns
        whether this caller won the row.
        """
        values: dict[str, Any] = {"namespace": namespace, "name": name, "updated_at": utc_now()}
        if start:
            values |= {"status": RunState.RUNNING.value, "started_at": utc_now()}
        c = training_jobs.c
        stmt = (
            update(training_jobs)
            .where(
                c.id == job_id,
                c.status == RunState.PENDING.value,
                c.name.is_(None) | ((c.namespace == namespace) & (c.name == name)),
            )
            .values(**values)
        )
        return bool(self.write(lambda conn: conn.execute(stmt).rowcount))

    def bind_claimed(self, job_id: int, *, namespace: str, name: str, uid: str) -> bool:
        """Give the Kubernetes object ``uid`` the row that was claimed for it: only a row
        claimed under exactly this namespace and name and not bound to an object yet
        (atomic, so of two objects at most one wins). Returns whether it was bound."""
        c = training_jobs.c
        stmt = (
            update(training_jobs)
            .where(c.id == job_id, c.namespace == namespace, c.name == name, c.uid.is_(None))
            .values(uid=uid, updated_at=utc_now())
        )
        try:
            return bool(self.write(lambda conn: conn.execute(stmt).rowcount))
        except IntegrityError:  # the uid has a row already
            return False

    def update_job(self, job_id: int, **values: Any) -> None:
        """Set columns of one row (``updated_at`` is set too; ``error`` is bounded)."""
        values["updated_at"] = utc_now()
        if "error" in values:
            values["error"] = bounded_message(values["error"])
        stmt = update(training_jobs).where(training_jobs.c.id == job_id).values(**values)
        self.write(lambda conn: conn.execute(stmt))

    def mark_running(
        self, job_id: int, *, total_trials: int, lease_owner: str | None = None
    ) -> None:
        """The row is running now; with ``lease_owner`` (a local runner) it also holds a
        lease that the runner renews (:meth:`renew_lease`) while it lives."""
        self.update_job(
            job_id,
            status=RunState.RUNNING.value,
            total_trials=total_trials,
            started_at=utc_now(),
            error=None,
            completed_at=None,
            lease_owner=lease_owner,
            heartbeat_at=utc_now() if lease_owner else None,
        )

    def renew_lease(self, job_id: int, owner: str) -> bool:
        """Say that ``owner`` still runs the row; ``False`` if the lease is not its own any
        more (someone took the row over) or the row is no longer running."""
        c = training_jobs.c
        stmt = (
            update(training_jobs)
            .where(c.id == job_id, c.lease_owner == owner, c.status == RunState.RUNNING.value)
            .values(heartbeat_at=utc_now())
        )
        return bool(self.write(lambda conn: conn.execute(stmt).rowcount))

    def stale_running(self, *, lease_seconds: float) -> list[JobRow]:
        """Running rows of local runners whose lease ran out (their process died), oldest
        first; rows without a lease (the operator's) are never stale."""
        cutoff = utc_text(datetime.now(UTC) - timedelta(seconds=lease_seconds))
        c = training_jobs.c
        query = (
            select(training_jobs)
            .where(
                c.status == RunState.RUNNING.value,
                c.lease_owner.is_not(None),
                c.heartbeat_at < cutoff,
            )
            .order_by(c.heartbeat_at, c.id)
        )
        with self._read() as conn:
            return [JobRow.from_mapping(r) for r in conn.execute(query).mappings()]

    def take_over(self, row: JobRow, owner: str) -> bool:
        """Take the stale lease of ``row`` (as read) for ``owner``, atomically: of two
        workers that found it stale, one wins."""
        c = training_jobs.c
        stmt = (
            update(training_jobs)
            .where(
                c.id == row.id,
                c.status == RunState.RUNNING.value,
                c.lease_owner == row.lease_owner,
                c.heartbeat_at == row.heartbeat_at,
            )
            .values(lease_owner=owner, heartbeat_at=utc_now(), updated_at=utc_now())
        )
        return bool(self.write(lambda conn: conn.execute(stmt).rowcount))

    def apply_progress(self, job_id: int, progress: RunProgress) -> None:
        """Copy a run's progress into its row."""
        self.update_job(job_id, **progress_columns(progress))

    def finish(
        self,
        job_id: int,
        status: RunState,
        *,
        error: str | None = None,
        only_if: RunState | None = None,
    ) -> bool:
        """End a row that has no progress to tell (failed before training, cancelled
        before it started). With ``only_if``, only while the row is in that state (a
        pending row the user cancelled meanwhile stays cancelled). Returns whether the
        row was changed."""
        values = {
            "status": status.value,
            "error": bounded_message(error),
            "completed_at": utc_now(),
        }
        c = training_jobs.c
        stmt = update(training_jobs).where(c.id == job_id)
        if only_if is not None:
            stmt = stmt.where(c.status == only_if.value)
        stmt = stmt.values(**values, updated_at=utc_now())
        return bool(self.write(lambda conn: conn.execute(stmt).rowcount))

    def mark_cancel_forwarded(self, job_id: int) -> None:
        """The row's cancel request reached its TrainingJob (or found it gone): it is not
        sent again, not even after an operator restart."""
        self.update_job(job_id, cancel_forwarded=1)

    def request_cancel(self, job_id: int) -> JobRow:
        """Ask for a job to stop after its current trial, as the UI's Cancel button does.
        A pending row is cancelled at once.

        Raises:
            LookupError: no such row.
            ValueError: the job has ended already.
        """

        def work(conn: Connection) -> None:
            row = conn.execute(
                select(training_jobs.c.status)
                .where(training_jobs.c.id == job_id)
                .with_for_update()  # PostgreSQL: a claim meanwhile waits (SQLite: no-op)
            ).first()
            if row is None:
                raise LookupError(f"no training job with id {job_id}; `tjctl jobs` lists them")
            if row.status in FINAL_STATUSES:
                raise ValueError(f"training job {job_id} has ended already ({row.status})")
            values: dict[str, Any] = {"cancel_requested": 1, "updated_at": utc_now()}
            if row.status == RunState.PENDING.value:
                values |= {"status": RunState.CANCELLED.value, "completed_at": utc_now()}
            conn.execute(update(training_jobs).where(training_jobs.c.id == job_id).values(**values))

        self.write(work)
        result = self.get(job_id)
        assert result is not None
        return result
