"""Fixtures of the UI tests: a real SQLite file per test, and rows written the way the
local runner and the operator write them (``JobStore.apply_progress``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from tjcore.store import JobStore
from tjtrainer.progress import RunProgress, RunState, TrialRecord, utc_now
from tjui import APP_PATH

__all__ = ["APP_PATH", "add_job", "chart_frames", "running_progress"]


def running_progress(
    *,
    n_trials: int,
    done: int,
    timeframe: str = "15m",
    state: RunState = RunState.RUNNING,
) -> RunProgress:
    """A run with ``done`` finished trials, LONG first, then SHORT: noisy scores that
    climb slowly, every fifth trial pruned (no score)."""
    progress = RunProgress(timeframe=timeframe, n_trials=n_trials, total_trials=2 * n_trials)
    best: dict[str, float] = {}
    for index in range(done):
        model = "LONG" if index < n_trials else "SHORT"
        number = index % n_trials
        pruned = number % 5 == 2
        wobble = ((number * 7919 + (model == "SHORT") * 104729) % 97) / 97 - 0.5
        base = 0.04 if model == "LONG" else 0.02
        spearman = None if pruned else round(base + 0.004 * number + 0.05 * wobble, 4)
        if spearman is not None:
            best[model] = max(best.get(model, spearman), spearman)
        progress.trials.append(
            TrialRecord(
                trial=index + 1,
                model=model,
                number=number,
                state="pruned" if pruned else "complete",
                spearman=spearman,
                best_so_far=best.get(model),
                params={"max_depth": 3 + number % 4, "learning_rate": 0.05},
                duration_s=1.5,
                finished_at=utc_now(),
            )
        )
        progress.current_model = model
    progress.completed_trials = done
    progress.best_score_long = best.get("LONG")
    progress.best_score_short = best.get("SHORT")
    progress.state = state
    return progress


def add_job(
    store: JobStore, progress: RunProgress | None = None, *, n_trials: int = 5, **columns: object
) -> int:
    """A row submitted as the UI does, then advanced by ``progress`` and ``columns``."""
    job_id = store.submit(
        timeframe=progress.timeframe if progress else "15m",
        n_trials=progress.n_trials if progress else n_trials,
        train_ratio=0.8,
        source="test",
    )
    if progress is not None:
        store.mark_running(job_id, total_trials=progress.total_trials)
        store.apply_progress(job_id, progress)
    if columns:
        store.update_job(job_id, **columns)
    return job_id


def chart_frames(chart: Any) -> list[pd.DataFrame]:
    """The data of a chart element of Streamlit's AppTest (sent as Arrow tables)."""
    return [pa.ipc.open_stream(d.data.data).read_pandas() for d in chart.proto.datasets]
