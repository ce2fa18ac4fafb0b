"""A damaged run folder stops the trainer with one ``error:`` line that names the file
and says what to do; it never restarts from 0 trials silently nor shows a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainer_testlib import N_TRIALS, RecordedRun

from tjtrainer.progress import RunState, read_progress, write_progress


@pytest.fixture
def killed_run(completed_run: RecordedRun, tmp_path: Path) -> Path:
    """A copy of a run folder as a trainer killed after all its trials leaves it (state
    ``running``, every trial in progress.json and study.db); returns the data root."""
    root = tmp_path / "shared"
    shutil.copytree(completed_run.config.data_root / "datasets", root / "datasets")
    run_dir = root / "runs" / "default" / "job"
    shutil.copytree(completed_run.config.run_dir, run_dir)
    progress = read_progress(run_dir)
    assert progress is not None and progress.completed_trials == 2 * N_TRIALS
    progress.state, progress.model_version, progress.finished_at = RunState.RUNNING, None, None
    write_progress(run_dir, progress)
    return root


def train_command(root: Path) -> list[str]:
    return [
        sys.executable, "-m", "tjtrainer", "train", "--timeframe", "15m",
        "--n-trials", str(N_TRIALS), "--train-ratio", "0.8", "--seed", "7",
        "--run-dir", str(root / "runs" / "default" / "job"), "--data-root", str(root),
    ]  # fmt: skip


def train(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(train_command(root), capture_output=True, text=True, timeout=300)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_an_emptied_study_is_not_a_silent_restart(killed_run: Path) -> None:
    study = killed_run / "runs" / "default" / "job" / "study.db"
    study.write_bytes(b"")
    for extra in study.parent.glob("study.db-*"):
        extra.unlink()
    line = one_error_line(train(killed_run))
    assert str(study) in line and f"lists {2 * N_TRIALS} finished trials" in line, line
    assert "delete" in line  # what to do
    progress = read_progress(study.parent)
    assert progress is not None and progress.completed_trials == 2 * N_TRIALS


@pytest.mark.parametrize("content", [b"[1]", b"{not json", b'{"format": 1}', b"\xff\xfe"])
def test_a_garbage_progress_file_is_named(killed_run: Path, content: bytes) -> None:
    progress = killed_run / "runs" / "default" / "job" / "progress.json"
    progress.write_bytes(content)
    line = one_error_line(train(killed_run))
    assert str(progress) in line and "AttributeError" not in line, line
    assert "delete it" in line, line


def test_a_garbage_study_is_named(killed_run: Path) -> None:
    study = killed_run / "runs" / "default" / "job" / "study.db"
    for extra in study.parent.glob("study.db-*"):
        extra.unlink()
    study.write_bytes(b"this is not an SQLite database at all" * 100)
    line = one_error_line(train(killed_run))
    assert str(study) in line and "not" in line, line
    assert "move it away" in line or "delete" in line, line


def test_temporary_files_of_a_killed_trainer_go_on_the_next_start(killed_run: Path) -> None:
    run_dir = killed_run / "runs" / "default" / "job"
    command = train_command(killed_run)
    env = {**os.environ, "TJTRAINER_KILL_AT": "1"}  # killed before its first rename
    killed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode == -9, killed.stderr
    left = list(run_dir.glob(".progress.json.*.tmp"))
    assert left, sorted(p.name for p in run_dir.iterdir())
    two_hours_ago = time.time() - 7200
    for path in left:
        os.utime(path, (two_hours_ago, two_hours_ago))
    fresh = run_dir / ".CANCEL.abc123.tmp"  # someone else's write that may be in flight
    fresh.write_text("")
    done = train(killed_run)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in run_dir.glob(".*.tmp")] == [fresh.name]
