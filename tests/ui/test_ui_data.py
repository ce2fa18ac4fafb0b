"""Rows to tables, model files on the volume, and the words the UI uses: pure
functions, tested without Streamlit."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import add_job, running_progress

from tjcore.store import JobStore
from tjtrainer.progress import RunState
from tjui import data
from tjui.artifacts import find_artifacts
from tjui.formatting import duration, parse_time, score


def test_trial_frame_counts_each_models_trials_from_one(store: JobStore) -> None:
    row = store.get(add_job(store, running_progress(n_trials=3, done=5)))
    assert row is not None

    frame = data.trial_frame(row.trial_log)

    assert list(frame["trial"]) == [1, 2, 3, 4, 5]
    assert list(frame["model_trial"]) == [1, 2, 3, 1, 2]
    assert frame.loc[2, "state"] == "pruned"
    assert frame["spearman"].isna().tolist() == [False, False, True, False, False]
    assert list(frame.columns[: len(data.TRIAL_COLUMNS)]) == list(data.TRIAL_COLUMNS)


def test_trial_frame_tolerates_an_older_writer() -> None:
    frame = data.trial_frame(
        [
            {"model": "LONG", "spearman": 0.1, "params": {"trial": 9, "eta": 0.1}},
            {"model": "LONG", "spearman": "n/a"},
        ]
    )
    assert list(frame["trial"]) == [1, 2]
    assert list(frame["model_trial"]) == [1, 2]
    assert frame["spearman"].isna().tolist() == [False, True]
    assert frame.loc[0, "param.trial"] == 9
    assert frame["best_so_far"].isna().all()


def test_an_empty_trial_log_is_an_empty_table() -> None:
    frame = data.trial_frame([])
    assert frame.empty
    assert list(frame.columns) == list(data.TRIAL_COLUMNS)


def test_durations_run_until_now_and_stop_at_the_end(store: JobStore) -> None:
    row = store.get(add_job(store))
    assert row is not None
    running = replace(row, status="running", started_at="2026-11-26T10:00:00.000000Z")
    now = datetime(2026, 11, 26, 10, 2, 5, tzinfo=UTC)
    assert data.job_duration_s(running, now=now) == 125
    ended = replace(running, status="failed", completed_at="2026-11-26T10:00:42.5Z")
    assert data.job_duration_s(ended, now=now) == 42.5
    assert data.job_duration_s(row, now=now) is None
    pending = replace(row, requested_at="2026-11-26T10:01:00Z")
    assert data.pending_for_s(pending, now=now) == 65
    assert data.pending_for_s(running, now=now) is None


def test_only_completed_versions_with_test_scores_are_compared(store: JobStore) -> None:
    progress = running_progress(n_trials=1, done=2, timeframe="1h", state=RunState.COMPLETED)
    progress.model_version, progress.test_score_long = "1h_20261126_100000", 0.03
    add_job(store, progress)
    add_job(store, running_progress(n_trials=3, done=1))
    frame = data.comparison_frame(store.list_jobs())
    assert frame.to_dict("records") == [
        {
            "version": "1h_20261126_100000",
            "timeframe": "1h",
            "completed": frame.loc[0, "completed"],
            "model": "LONG",
            "test_spearman": 0.03,
            "verdict": None,  # a run without a verdict (before release 5)
        }
    ]


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_model_files_are_the_ones_named_after_the_version(tmp_path: Path) -> None:
    version = "15m_20261126_140000"
    _touch(tmp_path / f"model_long_{version}.pkl")
    _touch(tmp_path / f"model_long_{version}.ubj")
    _touch(tmp_path / "model_long_15m_20261125_090000.pkl")
    _touch(tmp_path / "model_long_15m_latest.pkl")
    _touch(tmp_path / f".model_short_{version}.pkl.abc.tmp")
    _touch(tmp_path / version / "scaler.pkl")
    own = {"version": version, "files": {"long": "a"}}
    _touch(tmp_path / f"metadata_{version}.json", json.dumps(own))
    _touch(tmp_path / "metadata_15m_latest.json", json.dumps({"version": "other"}))

    found = find_artifacts(tmp_path, version, "15m")

    names = [str(f.path.relative_to(tmp_path)) for f in found.files]
    assert names == sorted(
        [
            f"{version}/scaler.pkl",
            f"metadata_{version}.json",
            f"model_long_{version}.pkl",
            f"model_long_{version}.ubj",
        ]
    )
    assert found.metadata == own
    assert found.problem is None


def test_latest_metadata_is_shown_only_if_it_names_the_version(tmp_path: Path) -> None:
    version = "15m_20261126_140000"
    _touch(tmp_path / f"model_long_{version}.pkl")
    latest = _touch(tmp_path / "metadata_15m_latest.json", json.dumps({"version": "15m_x"}))
    assert find_artifacts(tmp_path, version, "15m").metadata is None
    latest.write_text(json.dumps({"models": {"long": {"model_version": version}}}))
    assert find_artifacts(tmp_path, version, "15m").metadata_path == latest
    latest.write_text("{not json")
    assert find_artifacts(tmp_path, version, "15m").metadata is None


def test_a_missing_models_folder_is_a_problem_not_an_error(tmp_path: Path) -> None:
    found = find_artifacts(tmp_path / "nowhere", "15m_20261126_140000", "15m")
    assert found.files == []
    assert found.problem is not None and "does not exist" in found.problem


def test_words_for_numbers() -> None:
    assert score(0.123456) == "+0.1235"
    assert score(-0.05) == "-0.0500"
    assert score(None) == "—"
    assert [duration(s) for s in (4.4, 65, 3600 * 2 + 420, None)] == [
        "4 s",
        "1 min 5 s",
        "2 h 7 min",
        "—",
    ]
    assert parse_time("2026-11-26T10:00:00Z") == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert parse_time("2026-11-26T10:00:00") == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert parse_time("yesterday") is None


@pytest.mark.parametrize(
    ("version", "timeframe"),
    [
        ("0/../../metadata_leak", "15m"),
        ("15m_20261126_140000/../../metadata_leak", "15m"),
        ("*", "15m"),
        ("15m_20261126_140000", "x/../../leak"),
    ],
)
def test_no_file_outside_models_is_ever_found(tmp_path: Path, version: str, timeframe: str) -> None:
    models = tmp_path / "models"
    _touch(models / "15m_20261126_140000" / "model_long.pkl")
    _touch(models / "metadata_x" / "keep")
    for leak in ("metadata_leak.json", "leak_latest.json"):
        _touch(tmp_path / leak, json.dumps({"version": version}))
    (models / "outside").symlink_to(tmp_path)

    found = find_artifacts(models, version, timeframe)

    assert found.metadata is None and found.metadata_path is None
    for f in found.files:
        assert f.path.resolve().is_relative_to(models.resolve()), f.path
    assert not any("leak" in str(f.path) for f in found.files)


def test_a_symlink_out_of_models_is_not_followed(tmp_path: Path) -> None:
    version = "15m_20261126_140000"
    models = tmp_path / "models"
    _touch(models / version / "scaler.pkl")
    _touch(tmp_path / "secret.txt")
    (models / version / "leak.txt").symlink_to(tmp_path / "secret.txt")
    found = find_artifacts(models, version, "15m")
    assert [f.name for f in found.files] == ["scaler.pkl"]
