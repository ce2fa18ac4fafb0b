"""The ``training_jobs`` table: its columns and its versioned migrations.

Version 1 is the seed's table exactly (``../seed/ML_TRAINING_ARCHITECTURE.md``); each
later version adds columns (declared once, with the version that added it) or a table
property, so a database made by an older release is upgraded in place without losing a
row. The version lives in the one-row table ``training_jobs_schema``; a seed database
without it is recognised as version 1.

Version 3: ids are never given out twice (``AUTOINCREMENT`` on SQLite, as the seed's table
had; release 0.1.0 made its tables without it, so SQLite handed the id of a deleted newest
row to the next one). Such a table is rebuilt from the table below and its rows copied with
their ids. PostgreSQL's serial ids never go back anyway.

Version 4: the lease of a running row (``lease_owner``, ``heartbeat_at``).

Version 5: the walk-forward folds asked for (``cv_folds``, ``embargo``) and each model's
honest verdict on its test tail (``verdict_long/short``, ``significance_level``,
``test_p_long/short``, the interval ``test_ci_low/high_long/short``, and ``evaluation``:
the whole verdict and backtest as JSON).

Version 6: the promotion policy of the spec (``promotion``) and what it decided
(``promoted``, ``promotion_reason``).

Version 7: whether a row's cancel request has reached its TrainingJob
(``cancel_forwarded``), so the table bridge sends it once, not at every start.

Version 8: a second table, ``model_aliases``: every switch of a model alias (``champion``,
``challenger``) made by ``tjctl models`` or the UI, with who and when (the trainer's own
promotions are in its row: ``model_version``, ``promoted``, ``completed_at``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DefaultClause,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    TextClause,
    inspect,
    text,
)

from tjcontract.spec import DEFAULT_N_TRIALS, DEFAULT_SEED, DEFAULT_TRAIN_RATIO
from tjcontract.words import RunState

SCHEMA_VERSION = 8

metadata = MetaData()
# Columns added after the seed's table carry the schema version that added them.
V2 = {"since": 2}
V4 = {"since": 4}
V5 = {"since": 5}
V6 = {"since": 6}
V7 = {"since": 7}
V8 = {"since": 8}

training_jobs = Table(
    "training_jobs",
    metadata,
    # Version 1: the seed's columns, names and types.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("timeframe", Text, nullable=False),
    Column("n_trials", Integer, server_default=text(str(DEFAULT_N_TRIALS))),
    Column("train_ratio", Float, server_default=text(str(DEFAULT_TRAIN_RATIO))),
    Column("status", Text, server_default=text(f"'{RunState.PENDING.value}'")),
    Column("progress_pct", Float, server_default=text("0")),
    Column("current_trial", Integer, server_default=text("0")),
    Column("total_trials", Integer, server_default=text("0")),
    Column("current_model", Text),
    Column("best_score_long", Float),
    Column("best_score_short", Float),
    Column("trial_log", Text),
    Column("error", Text),
    Column("model_version", Text),
    Column("requested_at", Text, nullable=False),
    Column("started_at", Text),
    Column("completed_at", Text),
    # Version 2: who runs the row (and the uid of its TrainingJob), cancel requests,
    # honest scores, bookkeeping.
    Column("namespace", Text, info=V2),
    Column("name", Text, info=V2),
    Column("seed", Integer, server_default=text(str(DEFAULT_SEED)), info=V2),
    Column("parallelism", Integer, server_default=text("1"), info=V2),
    Column("cancel_requested", Integer, server_default=text("0"), info=V2),
    Column("test_score_long", Float, info=V2),
    Column("test_score_short", Float, info=V2),
    Column("source", Text, info=V2),
    Column("updated_at", Text, info=V2),
    Column("uid", Text, info=V2),
    # Version 4: the lease of a row that a local runner (tjctl run, the worker) is running:
    # who runs it and when it last said so. A row whose lease ran out is stale (its
    # process died) and a worker resumes or fails it.
    Column("lease_owner", Text, info=V4),
    Column("heartbeat_at", Text, info=V4),
    # Version 5: the walk-forward folds of the spec, and the verdict on each model.
    Column("cv_folds", Integer, server_default=text("3"), info=V5),
    Column("embargo", Integer, server_default=text("16"), info=V5),
    Column("verdict_long", Text, info=V5),
    Column("verdict_short", Text, info=V5),
    Column("significance_level", Float, info=V5),
    Column("test_p_long", Float, info=V5),
    Column("test_p_short", Float, info=V5),
    Column("test_ci_low_long", Float, info=V5),
    Column("test_ci_high_long", Float, info=V5),
    Column("test_ci_low_short", Float, info=V5),
    Column("test_ci_high_short", Float, info=V5),
    Column("evaluation", Text, info=V5),
    # Version 6: the promotion policy, and whether the version became *_latest.
    Column("promotion", Text, server_default=text("'always'"), info=V6),
    Column("promoted", Integer, info=V6),
    Column("promotion_reason", Text, info=V6),
    # Version 7: the table bridge forwarded the row's cancel request to its TrainingJob.
    Column("cancel_forwarded", Integer, server_default=text("0"), info=V7),
    sqlite_autoincrement=True,
)
# The version whose table on SQLite has AUTOINCREMENT ids (older tables are rebuilt).
AUTOINCREMENT_SINCE = 3

# Version 8: one row per switch of a model alias (tjtrainer.versions holds the aliases
# themselves, as symbolic links; this is who switched them and when).
model_aliases = Table(
    "model_aliases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("timeframe", Text, nullable=False),
    Column("model", Text, nullable=False),  # LONG or SHORT
    Column("alias", Text, nullable=False),  # champion or challenger
    Column("version", Text),  # None: the alias was removed
    Column("previous_version", Text),
    Column("action", Text, nullable=False),  # promote or rollback
    Column("changed_by", Text, nullable=False),
    Column("changed_at", Text, nullable=False),
    info=V8,
    sqlite_autoincrement=True,
)

schema_table = Table(
    "training_jobs_schema",
    metadata,
    Column("version", Integer, nullable=False),
)

INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_training_jobs_status ON training_jobs (status, requested_at)",
    "CREATE INDEX IF NOT EXISTS ix_training_jobs_name ON training_jobs (namespace, name)",
    # One row per Kubernetes object: a TrainingJob deleted and created again under the
    # same name is a new object with a new uid, and gets a new row.
    "CREATE UNIQUE INDEX IF NOT EXISTS ix_training_jobs_uid ON training_jobs (uid)",
    "CREATE INDEX IF NOT EXISTS ix_model_aliases_alias ON model_aliases (timeframe, model, alias)",
)


def _add_column_sql(column: Column[Any], conn: Connection) -> str:
    """``ALTER TABLE … ADD COLUMN`` for ``column``, with its type and server default."""
    sql_type = column.type.compile(dialect=conn.dialect)
    default = column.server_default
    suffix = ""
    if isinstance(default, DefaultClause) and isinstance(default.arg, TextClause):
        suffix = f" DEFAULT {default.arg.text}"
    return f"ALTER TABLE training_jobs ADD COLUMN {column.name} {sql_type}{suffix}"


def _has_autoincrement(conn: Connection) -> bool:
    sql = conn.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'training_jobs'")
    ).scalar()
    return "AUTOINCREMENT" in str(sql or "").upper()


def _rebuild_sqlite_table(conn: Connection) -> None:
    """Recreate ``training_jobs`` as the table above declares it and copy every row with its
    id (SQLite can change a table's primary key only this way); the indexes are made again
    by :func:`migrate`."""
    old = f"{training_jobs.name}_before_v{SCHEMA_VERSION}"
    conn.execute(text(f"ALTER TABLE training_jobs RENAME TO {old}"))
    # Indexes follow a renamed table under their names: drop them so the new table gets them.
    for (index,) in conn.execute(
        text(
            "SELECT name FROM sqlite_master "
            "WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"
        ),
        {"t": old},
    ).all():
        conn.execute(text(f'DROP INDEX "{index}"'))
    training_jobs.create(conn)
    columns = ", ".join(column.name for column in training_jobs.columns)
    conn.execute(text(f"INSERT INTO training_jobs ({columns}) SELECT {columns} FROM {old}"))
    conn.execute(text(f"DROP TABLE {old}"))


def current_version(conn: Connection) -> int:
    """The schema version of the database behind ``conn``; 0 when it has no table yet."""
    tables = set(inspect(conn).get_table_names())
    if "training_jobs" not in tables:
        return 0
    if "training_jobs_schema" not in tables:
        return 1
    version = conn.execute(schema_table.select()).scalar()
    return int(version) if version is not None else 1


def migrate(conn: Connection) -> int:
    """Create or upgrade the table to :data:`SCHEMA_VERSION` inside the caller's
    transaction; returns the version found before."""
    found = current_version(conn)
    if found > SCHEMA_VERSION:
        raise RuntimeError(
            f"the training_jobs table has schema version {found}, newer than this "
            f"release knows ({SCHEMA_VERSION}); upgrade trainingjob-operator"
        )
    if found == 0:
        metadata.create_all(conn)
    else:
        schema_table.create(conn, checkfirst=True)
        if found < V8["since"]:
            model_aliases.create(conn, checkfirst=True)
        existing = {c["name"] for c in inspect(conn).get_columns("training_jobs")}
        for column in training_jobs.columns:
            added_in = column.info.get("since", 1)
            if found < added_in and column.name not in existing:
                conn.execute(text(_add_column_sql(column, conn)))
        sqlite = conn.dialect.name == "sqlite"
        if found < AUTOINCREMENT_SINCE and sqlite and not _has_autoincrement(conn):
            _rebuild_sqlite_table(conn)
    for statement in INDEXES:
        conn.execute(text(statement))
    conn.execute(schema_table.delete())
    conn.execute(schema_table.insert().values(version=SCHEMA_VERSION))
    return found
