"""The one settings object, read from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from tjcontract import checks
from tjcontract.layout import DEFAULT_SHARED_DATA_PATH, SHARED_DATA_ENV

DB_FILE_NAME = "training_jobs.db"
# Pending rows that `tjctl submit` and the UI may queue at once (TJ_MAX_QUEUED_JOBS).
DEFAULT_MAX_QUEUED_JOBS = 20


# "scheme://user:password@" in any text, for URLs SQLAlchemy cannot parse.
_CREDENTIALS = re.compile(r"(://[^:/?#@\s]*:)[^@\s]*@")


class SettingsError(ValueError):
    """An environment variable with a value that cannot be used."""


def redact_url(url: str) -> str:
    """A database URL fit for logs and messages: its password masked as ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return redact_text(url, url)


def redact_text(text: str, url: str) -> str:
    """``text`` (an error message, say) without the password of ``url`` in it."""
    try:
        password = make_url(url).password
    except ArgumentError:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return _CREDENTIALS.sub(r"\1***@", text)


@dataclass(frozen=True)
class Settings:
    """Where things live. Environment variables:

    - ``SHARED_DATA_PATH``: the shared folder (datasets/, models/, runs/, the SQLite file);
      default ``./shared-data``.
    - ``DATABASE_URL``: a SQLAlchemy URL for the ``training_jobs`` table; default the
      SQLite file ``$SHARED_DATA_PATH/training_jobs.db``. Refused: a URL SQLAlchemy cannot
      read or an in-memory SQLite database; ``tjctl`` also one whose driver is missing.
    - ``TRAINING_POLL_INTERVAL``: seconds between the local worker's looks for pending rows.
    - ``TRAINING_LEASE_SECONDS``: how long a local runner's running row stays its own
      without a heartbeat (it renews every third of that); then a worker resumes it (the
      worker's rows) or fails it (``tjctl run``'s). Default 60.
    - ``TJ_MAX_QUEUED_JOBS``: how many pending rows ``tjctl submit`` and the UI's Start
      button may queue at once; past it they refuse with a message. Default 20.
    - ``TJ_DASHBOARD_URL``: where the UI links a job's study in optuna-dashboard (served
      by ``tjctl dashboard``), with ``{namespace}`` and ``{name}`` filled in, e.g.
      ``http://127.0.0.1:8080/``; unset: the UI says how to start it.
    """

    shared_data_path: Path
    database_url: str
    poll_interval: float
    lease_seconds: float = 60.0
    max_queued_jobs: int = DEFAULT_MAX_QUEUED_JOBS
    dashboard_url: str | None = None

    def dashboard_link(self, namespace: str, name: str) -> str | None:
        """The optuna-dashboard URL of the study of ``namespace/name``, if one is set."""
        if self.dashboard_url is None:
            return None
        return self.dashboard_url.format(namespace=namespace, name=name)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        shared = _folder(env.get(SHARED_DATA_ENV) or DEFAULT_SHARED_DATA_PATH)
        url = env.get("DATABASE_URL") or f"sqlite:///{shared / DB_FILE_NAME}"
        check_database_url(url)
        return cls(
            shared_data_path=shared,
            database_url=url,
            poll_interval=_seconds(env, "TRAINING_POLL_INTERVAL", "5"),
            lease_seconds=_seconds(env, "TRAINING_LEASE_SECONDS", "60"),
            max_queued_jobs=_count(env, "TJ_MAX_QUEUED_JOBS", DEFAULT_MAX_QUEUED_JOBS),
            dashboard_url=_dashboard_url(env.get("TJ_DASHBOARD_URL") or None),
        )


def _dashboard_url(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        filled = raw.format(namespace="ns", name="name")
    except (KeyError, IndexError, ValueError):
        filled = ""
    if not filled.startswith(("http://", "https://")):
        raise SettingsError(
            f"TJ_DASHBOARD_URL must be an http:// or https:// URL with at most {{namespace}} "
            f"and {{name}} in it, got {raw!r}"
        )
    return raw


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    return checks.named(checks.integer(low=1), name, SettingsError)(env.get(name) or str(default))


def _folder(raw: str) -> Path:
    """SHARED_DATA_PATH resolved; refused if it (or the nearest part of it that exists) is
    not a folder."""
    path = Path(raw).resolve()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SettingsError(
            f"SHARED_DATA_PATH={raw} cannot be the shared folder: {existing} is not a folder; "
            "set SHARED_DATA_PATH to a folder (it is created if missing)"
        )
    return path


def check_database_url(url: str) -> None:
    """Raise :class:`SettingsError` unless ``url`` names a database every process can
    share (its driver is checked apart: :func:`check_database_driver`)."""
    shown = redact_text(url, url)
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except ArgumentError:
        raise SettingsError(
            f"DATABASE_URL={shown} is not a database URL SQLAlchemy knows; use "
            "sqlite:////absolute/path/training_jobs.db or postgresql://user:password@host/db, "
            "or leave it unset for the SQLite file in SHARED_DATA_PATH"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise SettingsError(
                f"DATABASE_URL={shown} is an in-memory SQLite database: the UI, the operator "
                "and each worker would see their own empty table; give a file "
                "(sqlite:////absolute/path/training_jobs.db) or leave DATABASE_URL unset"
            )


def check_database_driver(url: str) -> None:
    """Raise :class:`SettingsError` if the Python driver of ``url`` (a checked URL) is not
    installed. Apart from :func:`check_database_url` so that only the commands that open
    the table import it (the operator keeps running and says so in its log)."""
    shown = redact_text(url, url)
    dialect = make_url(url).get_dialect()
    try:
        dialect.import_dbapi()
    except ImportError as err:
        raise SettingsError(
            f"DATABASE_URL={shown} needs the Python driver {err.name or dialect.driver!r}, "
            "which is not installed; install it in this environment (for PostgreSQL: "
            "pip install 'psycopg[binary]') or use another URL"
        ) from None


def _seconds(env: Mapping[str, str], name: str, default: str) -> float:
    return checks.named(checks.seconds(), name, SettingsError)(env.get(name) or default)
