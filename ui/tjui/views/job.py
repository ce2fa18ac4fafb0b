"""The live view of one training job, refreshed every few seconds without reloading
the page while the job is pending or running.

It shows what the original design's "Monitor Training" promises (progress bar, current
trial and model, best Spearman of LONG and SHORT, trial log) plus a chart of every trial, the
error of a failed job, the model files of a completed one and the Cancel button.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import streamlit as st

from tjcontract.words import RunState
from tjcore.settings import Settings
from tjcore.store import JobRow
from tjui import charts, data
from tjui.artifacts import find_artifacts
from tjui.db import DataError, Reader, cancel_job, describe_url
from tjui.formatting import NONE_TEXT, duration, file_size, score, short_time

REFRESH_S = 3.0
PENDING_WARNING_S = 60.0
FLASH_KEY = "job_view_flash"
BadgeColor = Literal["gray", "blue", "green", "red", "orange"]
STATUS_COLORS: dict[str, BadgeColor] = {
    RunState.PENDING: "gray",
    RunState.RUNNING: "blue",
    RunState.COMPLETED: "green",
    RunState.FAILED: "red",
    RunState.CANCELLED: "orange",
}


def render_job(reader: Reader, models_dir: Path, job_id: int) -> None:
    """Show job ``job_id``; while it is not final, the view re-reads its row every
    :data:`REFRESH_S` seconds and the whole page reruns once its status changes (so the
    history updates and polling stops when it ends)."""
    row = _read(reader, job_id)
    if row is None:
        return
    if row.is_final:
        _job_body(reader, models_dir, job_id, row.status)
    else:
        st.fragment(_job_body, run_every=REFRESH_S)(reader, models_dir, job_id, row.status)


def _read(reader: Reader, job_id: int) -> JobRow | None:
    try:
        row = reader.get(job_id)
    except DataError as err:
        st.error(str(err))
        return None
    if row is None:
        st.warning(f"There is no training job {job_id} (any more).")
    return row


def _job_body(reader: Reader, models_dir: Path, job_id: int, shown_status: str) -> None:
    row = _read(reader, job_id)
    if row is None:
        return
    if row.status != shown_status:
        st.rerun()
    title, action = st.columns([5, 1], vertical_alignment="center")
    title.subheader(
        f"Job {row.id} · {row.timeframe} · {row.n_trials} trials per model · "
        f"train ratio {row.train_ratio:g}"
    )
    can_cancel = not row.is_final and not row.cancel_requested
    if (
        can_cancel
        and action.button("Cancel", key=f"cancel_{row.id}", width="stretch")
        and _cancel(reader, row.id)
    ):
        st.rerun()  # the whole page: the status, the button and the history change
    flash = st.session_state.pop(FLASH_KEY, None)
    if flash:
        st.info(flash)
    _status(row, reader.url)
    _progress(row)
    if row.status == RunState.COMPLETED and row.model_version:
        _models(row, models_dir)
    _trials(row)


def _cancel(reader: Reader, job_id: int) -> bool:
    """Ask for cancellation; the outcome waits in the session for the next run."""
    try:
        updated = cancel_job(reader.url, job_id)
    except DataError as err:
        st.error(str(err))
        return False
    if updated.status == RunState.CANCELLED:
        st.session_state[FLASH_KEY] = f"Job {job_id} was cancelled before it started."
    else:
        st.session_state[FLASH_KEY] = (
            f"Cancel requested: job {job_id} stops after its current trial."
        )
    return True


def _status(row: JobRow, database_url: str) -> None:
    words = [f"requested {short_time(row.requested_at)} UTC"]
    if row.started_at:
        words.append(f"ran {duration(data.job_duration_s(row))}")
    if row.name:
        words.append(f"TrainingJob {row.namespace}/{row.name}")
    st.badge(row.status, color=STATUS_COLORS.get(row.status, "gray"))
    st.caption(" · ".join(words))
    waited = data.pending_for_s(row)
    if row.status == RunState.RUNNING and row.cancel_requested:
        st.info("Cancel requested: the job stops after its current trial.")
    elif waited is not None and waited > PENDING_WARNING_S:
        st.warning(_pending_hint(row, waited, database_url))
    elif row.status == RunState.PENDING:
        st.info("Waiting for the operator or a local runner to pick this job up.")
    elif row.status == RunState.FAILED:
        st.error(f"Training failed: {row.error or 'no error message was recorded.'}")
    elif row.status == RunState.CANCELLED:
        st.warning(
            f"Cancelled after {row.current_trial} of {row.total_trials} trials."
            if row.current_trial
            else "Cancelled before the first trial."
        )


def _pending_hint(row: JobRow, waited: float, database_url: str) -> str:
    if row.name:
        return (
            f"Pending for {duration(waited)}: the operator made TrainingJob "
            f"{row.namespace}/{row.name}, but its trainer has not started. Check the pod: "
            f"`kubectl -n {row.namespace} describe trainingjob {row.name}` and "
            f"`kubectl -n {row.namespace} get pods`."
        )
    return (
        f"Pending for {duration(waited)} and nothing has picked it up. Is the operator "
        "running in the cluster (`kubectl get pods -A | grep trainingjob`), or a local "
        "runner (`tjctl worker`)? It must use the same database as this UI: "
        f"{describe_url(database_url)}."
    )


def _progress(row: JobRow) -> None:
    pct = max(0.0, min(100.0, float(row.progress_pct)))
    text = f"{pct:.0f}% · trial {row.current_trial}/{row.total_trials}"
    if row.status == RunState.RUNNING and row.current_model:
        text += f" · training {row.current_model}"
    st.progress(pct / 100.0, text=text)
    cells = st.columns(4)
    cells[0].metric("Trial", f"{row.current_trial}/{row.total_trials}")
    cells[1].metric("Current model", row.current_model or "—")
    cells[2].metric("Best LONG (Spearman)", score(row.best_score_long))
    cells[3].metric("Best SHORT (Spearman)", score(row.best_score_short))
    if row.test_score_long is not None or row.test_score_short is not None:
        test = st.columns(4)
        test[2].metric(
            "Test LONG", score(row.test_score_long), help="Spearman on the held-out tail"
        )
        test[3].metric(
            "Test SHORT", score(row.test_score_short), help="Spearman on the held-out tail"
        )
    if row.verdict_long or row.verdict_short:
        _verdicts(row)


def _verdicts(row: JobRow) -> None:
    """Each model's verdict on its test tail, and what trading it would have done."""
    cells = st.columns(2)
    for cell, model, verdict, p_value in (
        (cells[0], "LONG", row.verdict_long, row.test_p_long),
        (cells[1], "SHORT", row.verdict_short, row.test_p_short),
    ):
        cell.metric(
            f"Verdict {model}",
            verdict or "—",
            help="Test Spearman against placebos (the labels rotated against the "
            "predictions) and a block-bootstrap interval: Significant when p is below the "
            "level and the interval above zero.",
        )
        cell.caption(data.verdict_text(verdict, p_value, row.significance_level))
    frame = data.verdict_frame(row.evaluation)
    if not frame.empty:
        st.dataframe(
            frame,
            hide_index=True,
            placeholder=NONE_TEXT,
            column_config={
                "test Spearman": st.column_config.NumberColumn(format="%+.4f"),
                "CI low": st.column_config.NumberColumn("95 % CI low", format="%+.4f"),
                "CI high": st.column_config.NumberColumn("95 % CI high", format="%+.4f"),
                "p-value": st.column_config.NumberColumn(format="%.3f"),
                "net return": st.column_config.NumberColumn(format="%+.4f"),
                "Sharpe": st.column_config.NumberColumn(format="%+.2f"),
                "hit rate": st.column_config.NumberColumn(format="%.2f"),
                "trades/day": st.column_config.NumberColumn(format="%.1f"),
                "deflated": st.column_config.NumberColumn(
                    "deflated prob.",
                    format="%.2f",
                    help="Deflated Sharpe Ratio's correction of the best walk-forward score "
                    "for the number of trials run: near 1, more than selection explains.",
                ),
            },
        )
        st.caption(
            "Backtest of the test tail, net of costs: a trade when the prediction is in the "
            "top fifth of the last validation block's, one at a time, held for the horizon."
        )


def _models(row: JobRow, models_dir: Path) -> None:
    assert row.model_version is not None
    if row.promoted is False:
        st.warning(f"Model version `{row.model_version}` was kept, but {row.promotion_reason}")
    else:
        st.success(f"Model version `{row.model_version}`")
    found = find_artifacts(models_dir, row.model_version, row.timeframe)
    if found.problem:
        st.caption(f"Model files: {found.problem}.")
    elif not found.files:
        st.caption(f"No files named after {row.model_version} under {models_dir} on this host.")
    else:
        st.dataframe(
            [
                {
                    "file": str(f.path.relative_to(models_dir)),
                    "size": file_size(f.size),
                    "modified (UTC)": f.modified.strftime("%Y-%m-%d %H:%M:%S"),
                }
                for f in found.files
            ],
            hide_index=True,
        )
    equity = data.equity_frame(found.metadata)
    if not equity.empty:
        st.altair_chart(charts.equity_chart(equity), width="stretch")
        st.caption("Equity curve of the backtest on the held-out test tail, per model.")
    if found.metadata is not None and found.metadata_path is not None:
        with st.expander(f"Metadata ({found.metadata_path.name})"):
            st.json(found.metadata, expanded=2)


def _dashboard(row: JobRow) -> None:
    """A link to the job's study in optuna-dashboard (``TJ_DASHBOARD_URL``), else how to
    serve it."""
    if not row.name or not row.namespace:
        return
    link = Settings.from_env().dashboard_link(row.namespace, row.name)
    if link:
        st.link_button("Study in optuna-dashboard", link)
    else:
        st.caption(
            f"`tjctl dashboard {row.name} -n {row.namespace}` serves this job's study in "
            "optuna-dashboard (read-only); set TJ_DASHBOARD_URL to link it here."
        )


def _trials(row: JobRow) -> None:
    if not row.trial_log:
        return
    frame = data.trial_frame(row.trial_log)
    st.altair_chart(charts.trial_chart(frame, n_trials=row.n_trials), width="stretch")
    st.caption("Dots: Spearman of each trial · line: best so far, per model.")
    _dashboard(row)
    # A fixed label keeps the expander open across refreshes.
    with st.expander("Trial log"):
        st.dataframe(
            frame.sort_values("trial", ascending=False),
            hide_index=True,
            placeholder=NONE_TEXT,  # a pruned trial's missing score reads as elsewhere
            column_config={
                "model_trial": st.column_config.NumberColumn("# in model"),
                "spearman": st.column_config.NumberColumn(format="%+.4f"),
                "best_so_far": st.column_config.NumberColumn("best so far", format="%+.4f"),
                "duration_s": st.column_config.NumberColumn("seconds", format="%.1f"),
                "finished_at": "finished (UTC)",
            },
        )
