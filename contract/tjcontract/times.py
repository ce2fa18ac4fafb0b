"""The one timestamp format of the table, ``progress.json`` and the run folder."""

from __future__ import annotations

from datetime import UTC, datetime

# ISO 8601 in UTC with microseconds and a ``Z``: ``2026-12-02T04:30:00.123456Z``. Such
# strings sort as the moments they name.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_text(moment: datetime) -> str:
    """``moment`` (aware) in :data:`TIME_FORMAT`."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def utc_now() -> str:
    """Now, in :data:`TIME_FORMAT` (microseconds)."""
    return utc_text(datetime.now(UTC))
