"""The one settings object, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SHARED_DATA_PATH = "./shared-data"
DB_FILE_NAME = "training_jobs.db"


class SettingsError(ValueError):
    """An environment variable with a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Where things live. Environment variables:

    - ``SHARED_DATA_PATH``: the shared folder (datasets/, models/, runs/, the SQLite file);
      default ``./shared-data``.
    - ``DATABASE_URL``: a SQLAlchemy URL for the ``training_jobs`` table; default the
      SQLite file ``$SHARED_DATA_PATH/training_jobs.db``.
    - ``TRAINING_POLL_INTERVAL``: seconds between the local worker's looks for pending rows.
    """

    shared_data_path: Path
    database_url: str
    poll_interval: float

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        shared = Path(env.get("SHARED_DATA_PATH") or DEFAULT_SHARED_DATA_PATH).resolve()
        url = env.get("DATABASE_URL") or f"sqlite:///{shared / DB_FILE_NAME}"
        raw_interval = env.get("TRAINING_POLL_INTERVAL", "5")
        try:
            interval = float(raw_interval)
        except ValueError:
            raise SettingsError(
                f"TRAINING_POLL_INTERVAL must be a number of seconds, got {raw_interval!r}"
            ) from None
        if interval <= 0:
            raise SettingsError(f"TRAINING_POLL_INTERVAL must be > 0, got {interval}")
        return cls(shared_data_path=shared, database_url=url, poll_interval=interval)
