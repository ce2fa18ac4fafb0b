"""The history of training jobs: one line per job (selecting one opens it above) and a
chart of the held-out test Spearman across model versions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from tjcore.store import JobRow
from tjui import charts, data
from tjui.formatting import NONE_TEXT

TABLE_KEY = "history_table"


def render_history(rows: Sequence[JobRow], on_open: Callable[[int], None]) -> None:
    """Draw the history of ``rows`` (newest first); choosing a line calls ``on_open``
    with its job id before the next run of the page."""
    st.subheader("History")
    if not rows:
        st.info("No training jobs yet: start one with the form in the sidebar.")
        return
    ids = [row.id for row in rows]

    def opened() -> None:
        selection = st.session_state[TABLE_KEY]["selection"]["rows"]
        if selection and selection[0] < len(ids):
            on_open(ids[selection[0]])

    st.caption("Select a line to open its job.")
    st.dataframe(
        data.history_frame(rows),
        hide_index=True,
        key=TABLE_KEY,
        on_select=opened,
        selection_mode="single-row",
        placeholder=NONE_TEXT,  # a missing score or verdict reads as elsewhere in the UI
        column_config={
            "id": st.column_config.NumberColumn("job", format="%d"),
            "progress": st.column_config.ProgressColumn(
                "progress", min_value=0, max_value=100, format="%.0f%%"
            ),
            "best LONG": st.column_config.NumberColumn(format="%+.4f"),
            "best SHORT": st.column_config.NumberColumn(format="%+.4f"),
            "test LONG": st.column_config.NumberColumn(format="%+.4f"),
            "test SHORT": st.column_config.NumberColumn(format="%+.4f"),
            "verdict LONG": "verdict LONG",
            "verdict SHORT": "verdict SHORT",
            "requested": "requested (UTC)",
        },
    )
    versions = data.comparison_frame(rows)
    st.subheader("Model versions")
    if versions.empty:
        st.caption("The test Spearman of each model version appears here once a job completes.")
        return
    st.altair_chart(charts.comparison_chart(versions), width="stretch")
    st.caption("Spearman of LONG and SHORT on each version's held-out test tail.")
