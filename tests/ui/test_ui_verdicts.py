"""A completed job shows each model's verdict, the backtest and its equity curve; the
history lists the verdicts; the start form asks for the walk-forward folds."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import APP_PATH, add_job, chart_frames, running_progress
from streamlit.testing.v1 import AppTest

from tjcore.store import JobStore
from tjtrainer.progress import RunState
from tjui import data

VERSION = "15m_20261201_120000"
EVALUATION = {
    "level": 0.05,
    "LONG": {
        "verdict": "Significant",
        "test_spearman": 0.1234,
        "ci": [0.05, 0.2],
        "p_value": 0.002,
        "backtest": {
            "trades": 40,
            "net_return": 0.031,
            "sharpe": 2.5,
            "hit_rate": 0.55,
            "turnover_per_day": 3.2,
        },
    },
    "SHORT": {
        "verdict": "NotSignificant",
        "test_spearman": 0.01,
        "ci": [-0.06, 0.08],
        "p_value": 0.41,
        "backtest": {
            "trades": 35,
            "net_return": -0.02,
            "sharpe": -1.1,
            "hit_rate": 0.45,
            "turnover_per_day": 2.8,
        },
    },
}


def _completed(store: JobStore, shared_dir: Path) -> int:
    progress = running_progress(n_trials=3, done=6, state=RunState.COMPLETED)
    progress.model_version = VERSION
    progress.test_score_long, progress.test_score_short = 0.1234, 0.01
    progress.evaluation = EVALUATION
    folder = shared_dir / "models" / VERSION
    folder.mkdir(parents=True)
    equity = {
        model: {
            "backtest": {"equity": [["2024-01-01T00:00:00Z", 0.01], ["2024-01-02T00:00:00Z", v]]}
        }
        for model, v in (("LONG", 0.031), ("SHORT", -0.02))
    }
    (folder / "metadata.json").write_text(json.dumps({"version": VERSION, "models": equity}))
    return add_job(store, progress)


def test_a_completed_job_shows_the_verdicts_and_the_backtest(
    store: JobStore, shared_dir: Path
) -> None:
    job_id = _completed(store, shared_dir)
    at = AppTest.from_file(str(APP_PATH), default_timeout=30)
    at.query_params["job"] = str(job_id)
    at.run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Verdict LONG"] == "Significant"
    assert metrics["Verdict SHORT"] == "NotSignificant"
    captions = [str(c.value) for c in at.caption]
    assert "Significant (p = 0.002 < 0.05)" in captions
    assert "NotSignificant (p = 0.410 ≥ 0.05)" in captions
    (table,) = [d.value for d in at.dataframe if "verdict" in d.value.columns]
    assert list(table["model"]) == ["LONG", "SHORT"]
    assert list(table["trades"]) == [40, 35] and table["CI high"].iloc[0] == 0.2
    equity = [
        f for chart in at.get("vega_lite_chart") for f in chart_frames(chart) if "equity" in f
    ]
    assert equity and sorted(set(equity[0]["model"])) == ["LONG", "SHORT"]


def test_the_history_lists_the_verdicts(store: JobStore, shared_dir: Path) -> None:
    _completed(store, shared_dir)
    frame = data.history_frame(store.list_jobs())
    assert frame.loc[0, "verdict LONG"] == "Significant"
    assert frame.loc[0, "verdict SHORT"] == "NotSignificant"
    versions = data.comparison_frame(store.list_jobs())
    assert list(versions["verdict"]) == ["Significant", "NotSignificant"]


def test_the_start_form_sends_the_walk_forward_folds(store: JobStore) -> None:
    at = AppTest.from_file(str(APP_PATH), default_timeout=30).run()
    inputs = {n.label: n for n in at.sidebar.number_input}
    assert inputs["Walk-forward folds"].value == 3 and inputs["Embargo (rows)"].value == 16
    inputs["Walk-forward folds"].set_value(4)
    inputs["Embargo (rows)"].set_value(0)
    at.sidebar.button[0].click().run()
    assert not at.exception
    (row,) = store.list_jobs()
    assert (row.cv_folds, row.embargo) == (4, 0)


def test_frames_without_a_verdict_are_empty() -> None:
    assert data.verdict_frame(None).empty
    assert data.equity_frame({"models": {"LONG": {"backtest": {}}}}).empty
    assert data.verdict_text(None, None, None) == "—"
