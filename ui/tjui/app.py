"""The Streamlit page (``streamlit run`` this file, or ``tjctl ui``).

Sidebar: the "Start Training" form. Main: a job picker, the live view of the chosen job,
then the model aliases (champion, challenger) with their switches, then the history of
all jobs and the comparison of model versions. The chosen job is in
the URL (``?job=7``) so a link opens it.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from tjcontract.layout import models_dir
from tjcore.settings import Settings, SettingsError
from tjcore.store import JobRow
from tjui.db import DataError, Reader, describe_url, open_reader
from tjui.formatting import short_time
from tjui.forms import render_start_form
from tjui.views.aliases import render_aliases
from tjui.views.history import render_history
from tjui.views.job import render_job

HISTORY_LIMIT = 200
JOB_KEY = "job_id"
QUERY_KEY = "job"


def open_job(job_id: int) -> None:
    """Make ``job_id`` the job shown by the job view (before its picker is drawn)."""
    st.session_state[JOB_KEY] = job_id


def _job_from_url() -> int | None:
    raw = st.query_params.get(QUERY_KEY)
    return int(raw) if raw and raw.isdigit() else None


def _default_job(rows: Sequence[JobRow]) -> int | None:
    """The newest unfinished job, else the newest job."""
    for row in rows:
        if not row.is_final:
            return row.id
    return rows[0].id if rows else None


def _label(row: JobRow | None, job_id: int) -> str:
    if row is None:
        return f"Job {job_id}"
    return (
        f"Job {row.id} · {row.timeframe} · {row.n_trials} trials/model · "
        f"{short_time(row.requested_at)}"
    )


def pick_job(rows: Sequence[JobRow]) -> int | None:
    """The picker of the job to show; its choice also goes into the URL."""
    if st.session_state.get(JOB_KEY) is None:
        st.session_state[JOB_KEY] = _job_from_url() or _default_job(rows)
    chosen = st.session_state[JOB_KEY]
    if chosen is None:
        return None
    by_id = {row.id: row for row in rows}
    options = list(by_id)
    if chosen not in by_id:
        options.insert(0, chosen)
    job_id: int = st.selectbox(
        "Job", options, key=JOB_KEY, format_func=lambda i: _label(by_id.get(i), i)
    )
    st.query_params[QUERY_KEY] = str(job_id)
    return job_id


def _reader(settings: Settings) -> Reader | None:
    try:
        reader = open_reader(settings.database_url)
    except DataError as err:
        st.error(str(err))
        return None
    if reader.setup_problem:
        st.warning(reader.setup_problem)
    return reader


def main() -> None:
    """Draw the whole page once (Streamlit runs this on every interaction)."""
    st.set_page_config(page_title="Training jobs", page_icon="📈", layout="wide")
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        st.error(f"The UI's settings are wrong: {err}")
        return
    reader = _reader(settings)
    with st.sidebar:
        new_job = render_start_form(settings.database_url)
        st.caption(f"Database: {describe_url(settings.database_url)}")
    if new_job is not None:
        open_job(new_job)
    st.title("Training jobs")
    if reader is None:
        return
    try:
        rows = reader.recent(limit=HISTORY_LIMIT)
    except DataError as err:
        st.error(str(err))
        rows = []
    job_id = pick_job(rows)
    if job_id is None:
        st.info(
            "No training jobs yet: choose a timeframe and trials in the sidebar and "
            "press **Start Training**."
        )
    else:
        render_job(reader, models_dir(settings.shared_data_path), job_id)
    st.divider()
    render_aliases(settings.database_url, reader.store, models_dir(settings.shared_data_path))
    st.divider()
    render_history(rows, open_job)


if __name__ == "__main__":
    main()
