"""A trainer process killed mid-trial resumes: finished trials kept, 2 × nTrials in all.

These tests run ``python -m tjtrainer train`` as a real subprocess, as the trainer pod does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tjtrainer.progress import RunState, read_progress
from tjtrainer.studies import open_run_storage

N_TRIALS = 4


def train_command(data_root: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tjtrainer",
        "train",
        "--timeframe",
        "15m",
        "--n-trials",
        str(N_TRIALS),
        "--train-ratio",
        "0.8",
        "--seed",
        "5",
        "--parallelism",
        "1",
        "--run-dir",
        str(run_dir),
        "--data-root",
        str(data_root),
    ]


def study_states(run_dir: Path) -> list[str]:
    """The state of every trial of the run's studies, in the order they were made."""
    storage = open_run_storage(run_dir)
    trials = [t for s in storage.get_all_studies() for t in storage.get_all_trials(s._study_id)]
    return [t.state.name for t in sorted(trials, key=lambda t: t._trial_id)]


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"trainer ended (code {process.returncode}) before {what}:\n{output}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def finished_and_running(run_dir: Path) -> bool:
    progress = read_progress(run_dir)
    if progress is None or progress.completed_trials < 2:
        return False
    return "RUNNING" in study_states(run_dir)


def test_sigkill_mid_trial_then_rerun_keeps_finished_trials(data_root: Path) -> None:
    run_dir = data_root / "runs" / "default" / "killed"
    process = subprocess.Popen(
        train_command(data_root, run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: finished_and_running(run_dir), process, "a trial was running")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    states = study_states(run_dir)
    assert states.count("RUNNING") == 1  # the trial the kill interrupted
    before = read_progress(run_dir)
    assert before is not None and before.state == RunState.RUNNING
    kept = [(t.model, t.number, t.params, t.spearman) for t in before.trials]
    assert len(kept) >= 2

    rerun = subprocess.run(
        train_command(data_root, run_dir), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resuming with" in rerun.stdout

    final = read_progress(run_dir)
    assert final is not None and final.state == RunState.COMPLETED
    assert final.completed_trials == len(final.trials) == 2 * N_TRIALS
    assert [t.trial for t in final.trials] == list(range(1, 2 * N_TRIALS + 1))
    after = [(t.model, t.number, t.params, t.spearman) for t in final.trials]
    assert after[: len(kept)] == kept  # nothing finished was lost or redone
    states = study_states(run_dir)
    assert states.count("FAIL") == 1 and "RUNNING" not in states
    assert states.count("COMPLETE") + states.count("PRUNED") == 2 * N_TRIALS
    assert (data_root / "models" / "metadata_15m_latest.json").exists()


def test_sigterm_exits_promptly_and_leaves_the_run_resumable(data_root: Path) -> None:
    run_dir = data_root / "runs" / "default" / "terminated"
    process = subprocess.Popen(
        train_command(data_root, run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def one_trial_done() -> bool:
        progress = read_progress(run_dir)
        return progress is not None and progress.completed_trials >= 1

    wait_for(one_trial_done, process, "the first trial")
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert time.monotonic() - sent < 5
    assert process.returncode == 128 + signal.SIGTERM
    assert "SIGTERM" in output
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.RUNNING  # not failed
    assert progress.error is None
