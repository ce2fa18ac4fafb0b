"""Reading and checking candles (OHLCV) from a CSV file.

Accepted: headers in any case, ``timestamp`` or one of its usual aliases (``time``,
``date``, ``datetime``, ``open_time``, ``ts``) or an unnamed first column (a pandas index
written by ``DataFrame.to_csv``); timestamps as ISO-8601 text or as Unix epoch numbers in
seconds or milliseconds. Everything else gets an :class:`~tjtrainer.errors.OhlcvError`
naming the file, the column and the line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tjtrainer.dataset_reader import order_problem
from tjtrainer.errors import OhlcvError
from tjtrainer.synth import TIMEFRAME_MINUTES

PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")
TIMESTAMP_ALIASES = ("timestamp", "time", "date", "datetime", "open_time", "ts")
# Data row i (0-based) sits on line i + 2 of the file (line 1 is the header) unless the file
# has blank lines, which the reader skips.
_FIRST_DATA_LINE = 2


def read_ohlcv_csv(path: Path, *, timeframe: str | None = None) -> pd.DataFrame:
    """Candles from ``path`` as a frame with ``timestamp`` (UTC) and float
    ``open/high/low/close/volume``, sorted as in the file (which must be ascending).

    With ``timeframe``, the typical spacing of the candles must match it.
    """
    if not path.is_file():
        raise OhlcvError(f"{path}: no such file")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise OhlcvError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise OhlcvError(f"{path}: not a readable CSV file ({exc})") from None
    columns = _column_map(path, raw)
    if raw.empty:
        raise OhlcvError(f"{path}: the file has a header but no candles")
    candles = pd.DataFrame({"timestamp": _timestamps(path, raw[columns["timestamp"]])})
    for name in VALUE_COLUMNS:
        candles[name] = _numbers(path, raw[columns[name]], name)
    _check_values(path, candles)
    _check_order(path, candles["timestamp"])
    if timeframe is not None:
        _check_spacing(path, candles["timestamp"], timeframe)
    return candles


def _column_map(path: Path, raw: pd.DataFrame) -> dict[str, str]:
    """Our column name → the file's column name."""
    by_lower: dict[str, str] = {}
    for original in raw.columns:
        by_lower.setdefault(str(original).strip().lower(), str(original))
    found: dict[str, str] = {}
    for name in VALUE_COLUMNS:
        if name in by_lower:
            found[name] = by_lower[name]
    for alias in TIMESTAMP_ALIASES:
        if alias in by_lower:
            found["timestamp"] = by_lower[alias]
            break
    else:
        first = str(raw.columns[0]) if len(raw.columns) else ""
        if first.strip() == "" or first.startswith("Unnamed: 0"):
            found["timestamp"] = first
    missing = [name for name in ("timestamp", *VALUE_COLUMNS) if name not in found]
    if missing:
        have = ", ".join(str(c) for c in raw.columns) or "none"
        raise OhlcvError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {have}); an OHLCV file "
            "needs timestamp, open, high, low, close, volume (any case; the timestamp may "
            f"also be called {', '.join(TIMESTAMP_ALIASES[1:])} or be an unnamed first column)"
        )
    return found


def _timestamps(path: Path, text: pd.Series) -> pd.Series:
    """Parse ISO-8601 text or epoch seconds/milliseconds into UTC timestamps."""
    stripped = text.str.strip()
    numeric = pd.to_numeric(stripped, errors="coerce")
    if numeric.notna().all():
        unit = "ms" if numeric.abs().max() >= 1e11 else "s"
        return pd.to_datetime(numeric, unit=unit, utc=True)
    parsed = pd.to_datetime(stripped, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna()
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise OhlcvError(
            f"{path}: line {row + _FIRST_DATA_LINE}: timestamp {text.iloc[row]!r} is not a "
            "date (use ISO-8601 like 2024-01-31T15:45:00Z, or Unix seconds/milliseconds)"
        )
    return parsed


def _numbers(path: Path, text: pd.Series, name: str) -> pd.Series:
    values = pd.to_numeric(text.str.strip(), errors="coerce").astype("float64")
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        row = int(np.argmax(bad))
        raise OhlcvError(
            f"{path}: line {row + _FIRST_DATA_LINE}: {name} {text.iloc[row]!r} is not a "
            "finite number"
        )
    return values


def _check_values(path: Path, candles: pd.DataFrame) -> None:
    for name in PRICE_COLUMNS:
        bad = (candles[name] <= 0).to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise OhlcvError(
                f"{path}: line {row + _FIRST_DATA_LINE}: {name} is {candles[name].iloc[row]}; "
                "prices must be > 0"
            )
    bad = (candles["volume"] < 0).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise OhlcvError(f"{path}: line {row + _FIRST_DATA_LINE}: volume is negative")
    _check_ranges(path, candles)


def _check_ranges(path: Path, candles: pd.DataFrame) -> None:
    """Every candle's open and close lie in [low, high]; the first candle that breaks it is
    named with what is wrong."""
    o, h, lo, c = (candles[name].to_numpy() for name in PRICE_COLUMNS)
    problems = (
        (h < lo, "high {h} is below low {lo}"),
        (o > h, "open {o} is above high {h}"),
        (o < lo, "open {o} is below low {lo}"),
        (c > h, "close {c} is above high {h}"),
        (c < lo, "close {c} is below low {lo}"),
    )
    bad = np.logical_or.reduce([mask for mask, _ in problems])
    if not bad.any():
        return
    row = int(np.argmax(bad))
    what = next(text for mask, text in problems if mask[row])
    values = {"o": o[row], "h": h[row], "lo": lo[row], "c": c[row]}
    raise OhlcvError(
        f"{path}: line {row + _FIRST_DATA_LINE}: {what.format(**values)}; a candle's open "
        "and close must lie between its low and its high"
    )


def _check_order(path: Path, timestamps: pd.Series) -> None:
    problem = order_problem(utc_nanoseconds(timestamps))
    if problem is None:
        return
    row, repeated = problem
    line, stamp = row + _FIRST_DATA_LINE, timestamps.iloc[row].isoformat()
    if repeated:
        raise OhlcvError(
            f"{path}: line {line}: duplicate timestamp {stamp} (also on line {line - 1}); "
            "each candle must appear once"
        )
    raise OhlcvError(
        f"{path}: line {line}: timestamp {stamp} is earlier than the line before; "
        "candles must be sorted by time, oldest first"
    )


def utc_nanoseconds(timestamps: pd.Series) -> np.ndarray:
    """Nanoseconds since the Unix epoch (int64) of tz-aware or naive-UTC timestamps."""
    stamps = pd.to_datetime(timestamps, utc=True).dt.tz_localize(None)
    return stamps.to_numpy().astype("datetime64[ns]").astype(np.int64)


def _check_spacing(path: Path, timestamps: pd.Series, timeframe: str) -> None:
    if len(timestamps) < 2:
        return
    step = timestamps.diff().median()
    expected = pd.Timedelta(minutes=TIMEFRAME_MINUTES[timeframe])
    if step != expected:
        raise OhlcvError(
            f"{path}: candles are typically {step} apart but the timeframe {timeframe} "
            f"means {expected}; pick the matching --timeframe or resample the file"
        )
