"""Words and numbers as the UI shows them: scores, durations, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

NONE_TEXT = "—"


def parse_time(value: str | None) -> datetime | None:
    """An aware UTC datetime from the table's ISO-8601 text, or ``None`` if absent or
    unreadable (the UI never fails on a bad timestamp)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """``end - start`` in seconds, or ``None`` if either is unknown."""
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def score(value: float | None) -> str:
    """A Spearman correlation with its sign and four decimals."""
    return NONE_TEXT if value is None else f"{value:+.4f}"


def duration(seconds: float | None) -> str:
    """A duration in the largest two units that matter: ``42 s``, ``3 min 5 s``, ``2 h 7 min``."""
    if seconds is None:
        return NONE_TEXT
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def short_time(value: str | None) -> str:
    """``2026-11-26 14:00:05`` from a stored timestamp (UTC), for tables and labels."""
    parsed = parse_time(value)
    return NONE_TEXT if parsed is None else parsed.strftime("%Y-%m-%d %H:%M:%S")


def file_size(size: int) -> str:
    """Bytes in B, KB, MB or GB."""
    amount = float(size)
    for unit in ("B", "KB", "MB"):
        if amount < 1024:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"
