"""A cancel marker stops the run after the current trial; no model is written or replaced."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from trainer_testlib import N_TRIALS, make_config

from tjtrainer.progress import RunProgress, RunState, read_progress, request_cancel
from tjtrainer.train import run_training


def fake_latest(models_dir: Path) -> dict[str, bytes]:
    """Models of an earlier run that a cancelled run must leave alone."""
    models_dir.mkdir(parents=True)
    files = {
        "model_long_15m_latest.pkl": b"old long",
        "model_short_15m_latest.pkl": b"old short",
        "metadata_15m_latest.json": b'{"version": "15m_20240101_000000"}',
    }
    for name, content in files.items():
        (models_dir / name).write_bytes(content)
    return files


def test_cancel_stops_after_the_current_trial(data_root: Path) -> None:
    config = make_config(data_root, n_trials=4)
    before = fake_latest(config.models_dir)
    seen: list[RunProgress] = []
    requested: list[float] = []

    def on_progress(progress: RunProgress) -> None:
        seen.append(progress)
        if progress.completed_trials == 2 and not requested:
            request_cancel(config.run_dir)
            requested.append(time.time())

    final = run_training(config, on_progress=on_progress)
    assert final.state == RunState.CANCELLED
    assert 2 <= final.completed_trials < 2 * 4
    # The callback runs right after each trial; what counts is that no trial started
    # after the request (the trial in flight when it came may finish).
    for trial in final.trials:
        started = datetime.fromisoformat(trial.finished_at).timestamp() - trial.duration_s
        assert started <= requested[0] + 0.05, (trial.trial, started - requested[0])
    assert final.finished_at is not None and final.model_version is None
    assert seen[-1].state == RunState.CANCELLED
    on_disk = read_progress(config.run_dir)
    assert on_disk is not None and on_disk.state == RunState.CANCELLED
    assert len(on_disk.trials) == final.completed_trials
    assert {p.name: p.read_bytes() for p in config.models_dir.iterdir()} == before


def test_cancel_requested_before_the_start_runs_no_trial(data_root: Path) -> None:
    config = make_config(data_root)
    request_cancel(config.run_dir)
    final = run_training(config)
    assert final.state == RunState.CANCELLED
    assert final.completed_trials == 0 and final.trials == []
    assert not config.models_dir.exists()


def test_cancelled_run_resumes_when_the_marker_is_gone(data_root: Path) -> None:
    config = make_config(data_root)

    def cancel_at_once(progress: RunProgress) -> None:
        if progress.completed_trials >= 1:
            request_cancel(config.run_dir)

    first = run_training(config, on_progress=cancel_at_once)
    assert first.state == RunState.CANCELLED
    kept = [(t.model, t.number, t.params) for t in first.trials]
    (config.run_dir / "CANCEL").unlink()
    final = run_training(config)
    assert final.state == RunState.COMPLETED
    assert final.completed_trials == 2 * N_TRIALS
    assert [(t.model, t.number, t.params) for t in final.trials][: len(kept)] == kept
