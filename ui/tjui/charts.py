"""Altair charts of the UI: Spearman per trial of one job, and test Spearman across
model versions. Builders only; the views decide where they go."""

from __future__ import annotations

import altair as alt
import pandas as pd

from tjcontract.names import MODELS

# Long is green and short is red, as on a trading screen.
MODEL_SCALE = alt.Scale(domain=list(MODELS), range=["#2e9e5b", "#d64545"])


def trial_chart(trials: pd.DataFrame, *, n_trials: int) -> alt.LayerChart:
    """Dots for the Spearman of each finished trial, a step line for the best so far,
    one colour per model; the x axis spans all ``n_trials`` so the chart also shows how
    far the search has come."""
    x = alt.X(
        "model_trial:Q",
        title="trial of the model",
        scale=alt.Scale(domain=[1, max(1, n_trials)], nice=False),
        axis=alt.Axis(tickMinStep=1, format="d"),
    )
    color = alt.Color("model:N", scale=MODEL_SCALE, title="model")
    base = alt.Chart(trials).encode(x=x, color=color)
    points = (
        base.transform_filter("isValid(datum.spearman)")
        .mark_circle(size=45, opacity=0.6)
        .encode(
            y=alt.Y("spearman:Q", title="Spearman (validation)"),
            tooltip=[
                alt.Tooltip("trial:Q", title="trial"),
                alt.Tooltip("model:N"),
                alt.Tooltip("state:N"),
                alt.Tooltip("spearman:Q", format="+.4f"),
                alt.Tooltip("best_so_far:Q", title="best so far", format="+.4f"),
            ],
        )
    )
    best = (
        base.transform_filter("isValid(datum.best_so_far)")
        .mark_line(interpolate="step-after", strokeWidth=2.5)
        .encode(y="best_so_far:Q")
    )
    return alt.LayerChart(layer=[points, best], height=320)


def equity_chart(equity: pd.DataFrame) -> alt.LayerChart:
    """The backtest's cumulative net log return on the test tail, one step line per model;
    a rule marks zero."""
    base = alt.Chart(equity).encode(
        x=alt.X("time:T", title="test tail (UTC)"),
        y=alt.Y("equity:Q", title="cumulative net log return"),
        color=alt.Color("model:N", scale=MODEL_SCALE, title="model"),
        tooltip=[
            alt.Tooltip("time:T", format="%Y-%m-%d %H:%M"),
            alt.Tooltip("model:N"),
            alt.Tooltip("equity:Q", format="+.4f"),
        ],
    )
    zero = alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="#999999").encode(y="zero:Q")
    return alt.LayerChart(layer=[zero, base.mark_line(interpolate="step-after")], height=260)


def comparison_chart(versions: pd.DataFrame) -> alt.LayerChart:
    """Held-out test Spearman of each completed model version, LONG and SHORT, oldest
    version on the left; a rule marks zero (no skill)."""
    x = alt.X(
        "version:N",
        title="model version",
        sort=alt.SortField("completed"),
        axis=alt.Axis(labelAngle=-30, labelLimit=180),
    )
    base = alt.Chart(versions).encode(
        x=x,
        y=alt.Y("test_spearman:Q", title="Spearman (held-out test)"),
        color=alt.Color("model:N", scale=MODEL_SCALE, title="model"),
        tooltip=[
            alt.Tooltip("version:N"),
            alt.Tooltip("timeframe:N"),
            alt.Tooltip("model:N"),
            alt.Tooltip("test_spearman:Q", title="test Spearman", format="+.4f"),
            alt.Tooltip("verdict:N"),
            alt.Tooltip("completed:N"),
        ],
    )
    zero = alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="#999999").encode(y="zero:Q")
    line = base.mark_line(point=alt.OverlayMarkDef(size=70, filled=True))
    return alt.LayerChart(layer=[zero, line], height=280)
