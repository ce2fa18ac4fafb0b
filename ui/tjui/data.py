"""Rows of ``training_jobs`` as the DataFrames the UI draws: the history, the trial log
and the comparison of model versions. Pure functions, no Streamlit, no database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from tjcontract.names import MODELS
from tjcontract.words import RunState
from tjcore.store import JobRow
from tjui.formatting import duration, parse_time, seconds_between, short_time

HISTORY_COLUMNS = (
    "id",
    "status",
    "timeframe",
    "trials",
    "progress",
    "duration",
    "best LONG",
    "best SHORT",
    "test LONG",
    "test SHORT",
    "verdict LONG",
    "verdict SHORT",
    "version",
    "requested",
)

TRIAL_COLUMNS = (
    "trial",
    "model",
    "model_trial",
    "state",
    "spearman",
    "best_so_far",
    "duration_s",
    "finished_at",
)

COMPARISON_COLUMNS = ("version", "timeframe", "completed", "model", "test_spearman", "verdict")
VERDICT_COLUMNS = (
    "model",
    "verdict",
    "test Spearman",
    "CI low",
    "CI high",
    "p-value",
    "trades",
    "net return",
    "Sharpe",
    "hit rate",
    "trades/day",
    "deflated",
)


def job_duration_s(row: JobRow, *, now: datetime | None = None) -> float | None:
    """How long the job has run: start to end once final, start to ``now`` while running."""
    start = parse_time(row.started_at)
    if row.is_final:
        end = parse_time(row.completed_at) or parse_time(row.updated_at)
    else:
        end = now or datetime.now(UTC)
    return seconds_between(start, end)


def pending_for_s(row: JobRow, *, now: datetime | None = None) -> float | None:
    """Seconds a ``pending`` row has waited since it was requested; ``None`` otherwise."""
    if row.status != RunState.PENDING:
        return None
    return seconds_between(parse_time(row.requested_at), now or datetime.now(UTC))


def history_frame(rows: Iterable[JobRow], *, now: datetime | None = None) -> pd.DataFrame:
    """One line per job, newest first as given, in :data:`HISTORY_COLUMNS`."""
    records = [
        {
            "id": row.id,
            # A row with unreadable values is listed, marked, instead of hiding the rest.
            "status": f"{row.status} (damaged)" if row.damaged else row.status,
            "timeframe": row.timeframe,
            "trials": f"{row.current_trial}/{row.total_trials}",
            "progress": float(row.progress_pct),
            "duration": duration(job_duration_s(row, now=now)),
            "best LONG": row.best_score_long,
            "best SHORT": row.best_score_short,
            "test LONG": row.test_score_long,
            "test SHORT": row.test_score_short,
            "verdict LONG": row.verdict_long,
            "verdict SHORT": row.verdict_short,
            "version": row.model_version,
            "requested": short_time(row.requested_at),
        }
        for row in rows
    ]
    frame = pd.DataFrame.from_records(records, columns=list(HISTORY_COLUMNS))
    for column in ("progress", "best LONG", "best SHORT", "test LONG", "test SHORT"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def _params_columns(params: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as table columns; a name that clashes with a trial column gets a
    ``param.`` prefix so nothing is overwritten."""
    return {(f"param.{k}" if k in TRIAL_COLUMNS else k): v for k, v in params.items()}


def trial_frame(trial_log: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The trial log, one line per finished trial, in :data:`TRIAL_COLUMNS` followed by
    one column per hyperparameter.

    ``model_trial`` counts the trials of each model from 1, so LONG and SHORT can share
    an axis. Missing keys (an older writer) become empty cells, never an error.
    """
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for position, entry in enumerate(trial_log, start=1):
        model = str(entry.get("model") or "?")
        seen[model] = seen.get(model, 0) + 1
        number = entry.get("number")
        params = entry.get("params")
        records.append(
            {
                "trial": entry.get("trial", position),
                "model": model,
                "model_trial": number + 1 if isinstance(number, int) else seen[model],
                "state": entry.get("state"),
                "spearman": entry.get("spearman"),
                "best_so_far": entry.get("best_so_far"),
                "duration_s": entry.get("duration_s"),
                "finished_at": short_time(entry.get("finished_at")),
            }
            | (_params_columns(params) if isinstance(params, Mapping) else {})
        )
    frame = pd.DataFrame.from_records(records)
    for column in TRIAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    extra = [c for c in frame.columns if c not in TRIAL_COLUMNS]
    frame = frame[list(TRIAL_COLUMNS) + extra]
    for column in ("spearman", "best_so_far", "duration_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def comparison_frame(rows: Iterable[JobRow]) -> pd.DataFrame:
    """Held-out test Spearman of every completed model version, one line per version
    and model, oldest version first."""
    records = []
    for row in rows:
        if row.status != RunState.COMPLETED or not row.model_version:
            continue
        scores = (row.test_score_long, row.test_score_short)
        verdicts = (row.verdict_long, row.verdict_short)
        for model, value, verdict in zip(MODELS, scores, verdicts, strict=True):
            if value is None:
                continue
            records.append(
                {
                    "version": row.model_version,
                    "timeframe": row.timeframe,
                    "completed": short_time(row.completed_at),
                    "model": model,
                    "test_spearman": float(value),
                    "verdict": verdict,
                }
            )
    frame = pd.DataFrame.from_records(records, columns=list(COMPARISON_COLUMNS))
    return frame.sort_values(["completed", "version", "model"], kind="stable").reset_index(
        drop=True
    )


def verdict_text(verdict: str | None, p_value: float | None, level: float | None) -> str:
    """``Significant (p = 0.003 < 0.05)``; an em dash when there is no verdict."""
    if not verdict:
        return "—"
    if p_value is None or level is None:
        return verdict
    sign = "<" if p_value < level else "≥"
    return f"{verdict} (p = {p_value:.3f} {sign} {level:g})"


def verdict_frame(evaluation: Mapping[str, Any] | None) -> pd.DataFrame:
    """One line per model: its verdict on the test tail and its backtest."""
    records = []
    for model in MODELS:
        found = (evaluation or {}).get(model)
        if not isinstance(found, Mapping):
            continue
        ci = list(found.get("ci") or [None, None])[:2]
        trades = found.get("backtest") or {}
        records.append(
            {
                "model": model,
                "verdict": found.get("verdict"),
                "test Spearman": found.get("test_spearman"),
                "CI low": ci[0],
                "CI high": ci[1],
                "p-value": found.get("p_value"),
                "trades": trades.get("trades"),
                "net return": trades.get("net_return"),
                "Sharpe": trades.get("sharpe"),
                "hit rate": trades.get("hit_rate"),
                "trades/day": trades.get("turnover_per_day"),
                "deflated": found.get("deflated_probability"),
            }
        )
    return pd.DataFrame.from_records(records, columns=list(VERDICT_COLUMNS))


def equity_frame(metadata: Mapping[str, Any] | None) -> pd.DataFrame:
    """The backtest's equity curves of both models (``time``, ``model``, ``equity``: the
    cumulative net log return), from a version's metadata; empty when it has none."""
    records = []
    models = (metadata or {}).get("models")
    for model in MODELS:
        found = models.get(model) if isinstance(models, Mapping) else None
        trades = found.get("backtest") if isinstance(found, Mapping) else None
        for point in (trades or {}).get("equity") or []:
            if isinstance(point, Sequence) and len(point) == 2:
                records.append({"time": point[0], "model": model, "equity": point[1]})
    frame = pd.DataFrame.from_records(records, columns=["time", "model", "equity"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True, errors="coerce")
    frame["equity"] = pd.to_numeric(frame["equity"], errors="coerce")
    return frame.dropna()
