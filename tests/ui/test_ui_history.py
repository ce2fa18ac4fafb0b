"""The history lists every job, opens the chosen one, compares model versions, and
survives a database it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import APP_PATH, add_job, chart_frames, running_progress
from streamlit.testing.v1 import AppTest

from tjcore.store import JobStore
from tjtrainer.progress import RunState
from tjui.formatting import NONE_TEXT


def _app() -> AppTest:
    return AppTest.from_file(str(APP_PATH), default_timeout=30)


def _completed(store: JobStore, version: str, long: float, short: float) -> int:
    progress = running_progress(n_trials=2, done=4, state=RunState.COMPLETED)
    progress.model_version = version
    progress.test_score_long, progress.test_score_short = long, short
    return add_job(store, progress)


def test_the_history_lists_jobs_newest_first_with_their_numbers(store: JobStore) -> None:
    done = _completed(store, "15m_20261126_140000", 0.05, 0.01)
    running = add_job(store, running_progress(n_trials=10, done=4))
    pending = add_job(store)

    at = _app().run()

    table = at.dataframe[-1].value
    assert list(table["id"]) == [pending, running, done]
    assert list(table["status"]) == ["pending", "running", "completed"]
    assert list(table["trials"]) == ["0/10", "4/20", "4/4"]
    assert table.loc[table["id"] == done, "version"].item() == "15m_20261126_140000"
    assert table.loc[table["id"] == done, "test LONG"].item() == pytest.approx(0.05)


def test_the_newest_unfinished_job_opens_by_default(store: JobStore) -> None:
    running = add_job(store, running_progress(n_trials=10, done=4))
    _completed(store, "15m_20261126_140000", 0.05, 0.01)

    at = _app().run()

    assert at.selectbox(key="job_id").value == running
    assert at.query_params["job"] == str(running)


def test_choosing_a_job_opens_it(store: JobStore) -> None:
    first = _completed(store, "15m_20261126_140000", 0.05, 0.01)
    add_job(store, running_progress(n_trials=10, done=4))
    at = _app().run()

    at.selectbox(key="job_id").select(first).run()

    assert any(s.value.startswith(f"Job {first} · 15m") for s in at.subheader)
    assert at.query_params["job"] == str(first)
    assert "Model version `15m_20261126_140000`" in at.success[0].value


def test_test_scores_of_versions_are_compared_in_a_chart(store: JobStore) -> None:
    _completed(store, "15m_20261126_140000", 0.05, 0.01)
    _completed(store, "15m_20261127_090000", 0.07, -0.02)
    add_job(store, running_progress(n_trials=10, done=4))

    at = _app().run()

    frames = [f for c in at.get("vega_lite_chart") for f in chart_frames(c)]
    (versions,) = [f for f in frames if "test_spearman" in f.columns]
    shown = versions[["version", "model", "test_spearman"]].itertuples(index=False, name=None)
    assert list(shown) == [
        ("15m_20261126_140000", "LONG", 0.05),
        ("15m_20261126_140000", "SHORT", 0.01),
        ("15m_20261127_090000", "LONG", 0.07),
        ("15m_20261127_090000", "SHORT", -0.02),
    ]


def test_an_unreadable_database_shows_a_message_not_a_traceback(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = shared_dir / "broken.db"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"this is not a SQLite database" * 100)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{broken}")

    at = _app().run()

    assert not at.exception
    messages = [e.value for e in at.error] + [w.value for w in at.warning]
    assert any("Could not" in m and "file is not a database" in m for m in messages)
    assert all("Traceback" not in m for m in messages)


def test_a_fresh_shared_folder_says_no_jobs_yet(shared_dir: Path) -> None:
    at = _app().run()

    assert not at.exception
    assert not at.error
    assert any("No training jobs yet" in i.value for i in at.info)
    assert (shared_dir / "training_jobs.db").exists()


def test_missing_scores_and_verdicts_read_as_a_dash(store: JobStore) -> None:
    running = add_job(store, running_progress(n_trials=10, done=1))

    at = _app().run()

    table = at.dataframe[-1]
    line = table.value.loc[table.value["id"] == running]
    missing = [
        c for c in ("best SHORT", "test LONG", "verdict LONG", "version") if line[c].isna().all()
    ]
    assert missing == ["best SHORT", "test LONG", "verdict LONG", "version"]
    assert table.proto.placeholder == NONE_TEXT == "—"  # what the grid shows for them
