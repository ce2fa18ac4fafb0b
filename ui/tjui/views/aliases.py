"""The model aliases: champion and challenger of each model of each timeframe, who set
them and when, and the two switches of ``tjctl models``: make a version the champion,
roll the champion back (both through :mod:`tjcore.aliases`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from tjcontract.names import TIMEFRAMES
from tjcore.aliases import AliasError, UnrecordedSwitch, promote, rollback, states, who
from tjcore.store import JobStore
from tjtrainer.versions import SIDES, AliasChange, list_versions
from tjui.db import DataError, friendly_errors

MODEL_CHOICES = {"both models": SIDES, "LONG only": ("long",), "SHORT only": ("short",)}
VIA = "ui"


def aliases_frame(store: JobStore, models_dir: Path) -> pd.DataFrame:
    """One line per alias of each model of each timeframe."""
    return pd.DataFrame(
        [
            {
                "timeframe": s.timeframe,
                "model": s.model,
                "alias": s.alias,
                "version": s.version,
                "test Spearman": s.test_spearman,
                "set by": s.set_by,
                "set at (UTC)": s.set_at,
            }
            for s in states(store, models_dir)
        ]
    )


def _switch(url: str, work: Callable[[JobStore], list[AliasChange]], action: str) -> None:
    try:
        with friendly_errors(action, url):  # the table's errors (AliasError is no such)
            store = JobStore(url)
            try:
                changes = work(store)
            except AliasError as err:
                st.error(f"Could not {action}: {err}")
                return
            except UnrecordedSwitch as err:
                st.error(f"Switched on disk, but the table could not record it: {err}")
                return
            finally:
                store.close()
    except DataError as err:
        st.error(str(err))
        return
    if not changes:
        st.info("Nothing changed: that version is the champion already.")
    for change in changes:
        st.success(f"{change.alias} {change.side.upper()}: {change.old or '—'} → {change.new}")


def render_aliases(url: str, reader_store: JobStore, models_dir: Path) -> None:
    """Draw the aliases with their switches (drawn above the table, so that the table
    shows the state after a switch)."""
    st.subheader("Model aliases")
    versions = list_versions(models_dir)
    if not versions:
        st.caption("Champion and challenger appear here once a job has saved a model version.")
        return
    left, right = st.columns(2)
    with left:
        version = st.selectbox("Version", versions, key="alias_version")
        models = st.radio("Models", list(MODEL_CHOICES), key="alias_models", horizontal=True)
        if st.button("Make champion", key="alias_promote"):
            _switch(
                url,
                lambda store: promote(
                    store, models_dir, str(version), sides=MODEL_CHOICES[models], by=who(VIA)
                ),
                f"make {version} the champion",
            )
    with right:
        timeframe = st.selectbox("Timeframe", TIMEFRAMES, key="alias_timeframe")
        if st.button("Roll back the champion", key="alias_rollback"):
            _switch(
                url,
                lambda store: rollback(store, models_dir, str(timeframe), by=who(VIA)),
                f"roll back the {timeframe} champion",
            )
    try:
        with friendly_errors("read the model aliases", url):
            frame = aliases_frame(reader_store, models_dir)
    except DataError as err:
        st.error(str(err))
        return
    st.dataframe(
        frame,
        hide_index=True,
        key="aliases_table",
        column_config={"test Spearman": st.column_config.NumberColumn(format="%+.4f")},
    )
    st.caption(
        "`*_latest` files and `load_latest` follow the champion. Making a version champion "
        "makes the one it replaces the challenger; rolling back undoes the last switch."
    )
