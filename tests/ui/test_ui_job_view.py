"""The job view shows a job's progress, scores, trials, error or models, and asks for
cancellation through the table."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import APP_PATH, add_job, running_progress
from streamlit.testing.v1 import AppTest

from tjcore.store import JobStore
from tjtrainer.progress import RunState
from tjui.formatting import NONE_TEXT


def _open(job_id: int) -> AppTest:
    at = AppTest.from_file(str(APP_PATH), default_timeout=30)
    at.query_params["job"] = str(job_id)
    return at.run()


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _texts(at: AppTest) -> str:
    alerts = [*at.info, *at.warning, *at.error, *at.success]
    return "\n".join(str(a.value) for a in alerts)


def test_a_running_job_shows_progress_trial_and_best_scores(store: JobStore) -> None:
    progress = running_progress(n_trials=10, done=14)
    job_id = add_job(store, progress)

    at = _open(job_id)

    assert not at.exception
    (bar,) = at.get("progress")
    assert bar.proto.value == 70
    assert "trial 14/20 · training SHORT" in bar.proto.text
    metrics = _metrics(at)
    assert metrics["Trial"] == "14/20"
    assert metrics["Current model"] == "SHORT"
    assert metrics["Best LONG (Spearman)"] == f"{progress.best_score_long:+.4f}"
    assert metrics["Best SHORT (Spearman)"] == f"{progress.best_score_short:+.4f}"
    assert at.button(key=f"cancel_{job_id}").label == "Cancel"


def test_the_trials_appear_as_a_chart_and_a_log_with_params(store: JobStore) -> None:
    job_id = add_job(store, running_progress(n_trials=10, done=14))

    at = _open(job_id)

    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert {layer["mark"]["type"] for layer in spec["layer"]} == {"circle", "line"}
    (expander,) = [e for e in at.expander if e.label == "Trial log"]
    log = expander.dataframe[0].value
    assert len(log) == 14
    assert list(log.sort_values("trial")["model"]) == ["LONG"] * 10 + ["SHORT"] * 4
    assert {"max_depth", "learning_rate", "spearman", "best_so_far"} <= set(log.columns)
    # A pruned trial has no score: the grid shows it as the rest of the UI does.
    assert expander.dataframe[0].proto.placeholder == NONE_TEXT == "—"


def test_cancel_sets_the_request_and_the_job_keeps_running(store: JobStore) -> None:
    job_id = add_job(store, running_progress(n_trials=10, done=3))
    at = _open(job_id)

    at.button(key=f"cancel_{job_id}").click().run()

    row = store.get(job_id)
    assert row is not None
    assert row.cancel_requested is True
    assert row.status == "running"
    assert "stops after its current trial" in _texts(at)
    assert not [b for b in at.button if b.key == f"cancel_{job_id}"]


def test_cancelling_a_pending_job_ends_it_at_once(store: JobStore) -> None:
    job_id = add_job(store)
    at = _open(job_id)

    at.button(key=f"cancel_{job_id}").click().run()

    row = store.get(job_id)
    assert row is not None
    assert (row.status, row.cancel_requested) == ("cancelled", True)
    assert "cancelled before it started" in _texts(at)


def test_a_failed_job_shows_its_error_and_no_cancel(store: JobStore) -> None:
    progress = running_progress(n_trials=4, done=2, state=RunState.FAILED)
    progress.error = "dataset datasets/15m has no label_short column; run the labeling step"
    job_id = add_job(store, progress)

    at = _open(job_id)

    assert not at.exception
    (error,) = at.error
    assert error.value == f"Training failed: {progress.error}"
    assert not [b for b in at.button if b.key == f"cancel_{job_id}"]


def test_a_completed_job_shows_its_version_files_and_test_scores(
    store: JobStore, shared_dir: Path
) -> None:
    version = "15m_20261126_140000"
    models = shared_dir / "models"
    models.mkdir(parents=True)
    for name in (f"model_long_{version}.pkl", f"model_short_{version}.json", "other_1h.pkl"):
        (models / name).write_bytes(b"x" * 10)
    (models / "metadata_15m_latest.json").write_text(json.dumps({"version": version}))
    progress = running_progress(n_trials=3, done=6, state=RunState.COMPLETED)
    progress.model_version = version
    progress.test_score_long, progress.test_score_short = 0.081, -0.012
    job_id = add_job(store, progress)

    at = _open(job_id)

    assert f"Model version `{version}`" in at.success[0].value
    files = at.dataframe[0].value
    assert sorted(files["file"]) == [f"model_long_{version}.pkl", f"model_short_{version}.json"]
    assert any(e.label == "Metadata (metadata_15m_latest.json)" for e in at.expander)
    assert _metrics(at)["Test LONG"] == "+0.0810"
    assert _metrics(at)["Test SHORT"] == "-0.0120"
    assert at.get("progress")[0].proto.value == 100


def test_a_job_pending_for_long_says_what_to_check(store: JobStore) -> None:
    job_id = add_job(store)
    old = (datetime.now(UTC) - timedelta(seconds=95)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    store.update_job(job_id, requested_at=old)

    at = _open(job_id)

    (warning,) = at.warning
    assert re.match(r"Pending for 1 min 3\d s and nothing has picked it up", warning.value)
    assert "operator" in warning.value
    assert "tjctl worker" in warning.value
    assert str(store.url).removeprefix("sqlite:///") in warning.value


def test_a_fresh_pending_job_just_waits(store: JobStore) -> None:
    job_id = add_job(store)
    at = _open(job_id)
    assert not at.warning
    assert "Waiting for the operator or a local runner" in at.info[0].value


def test_a_row_cannot_point_the_model_view_outside_models(
    store: JobStore, shared_dir: Path
) -> None:
    models = shared_dir / "models"
    (models / "15m_20261126_140000").mkdir(parents=True)
    (shared_dir / "metadata_leak.json").write_text(json.dumps({"password": "hunter2"}))
    progress = running_progress(n_trials=3, done=6, state=RunState.COMPLETED)
    progress.model_version = "0/../../metadata_leak"
    job_id = add_job(store, progress)

    at = _open(job_id)

    assert not at.exception
    file_lists = [d.value for d in at.dataframe if "file" in d.value.columns]
    assert not any(len(files) for files in file_lists), file_lists
    shown = [d.value.to_string() for d in at.dataframe] + [str(j.value) for j in at.json]
    assert not any("hunter2" in text for text in shown), shown
    assert not [e for e in at.expander if e.label.startswith("Metadata")]
    assert any("not a model version" in str(c.value) for c in at.caption)


def test_the_study_links_to_optuna_dashboard(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = add_job(store, running_progress(n_trials=3, done=2), namespace="ml", name="train-a")

    at = _open(job_id)  # no TJ_DASHBOARD_URL: how to serve it
    assert any("`tjctl dashboard train-a -n ml`" in c.value for c in at.caption)

    monkeypatch.setenv("TJ_DASHBOARD_URL", "http://127.0.0.1:8080/{namespace}/{name}/")
    at = _open(job_id)
    (button,) = at.get("link_button")
    assert button.proto.url == "http://127.0.0.1:8080/ml/train-a/"
    assert button.proto.label == "Study in optuna-dashboard"
