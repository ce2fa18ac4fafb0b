"""The trainer's exit codes (tjtrainer.exitcodes): permanent failures exit 3, which the
Job fails at once; anything else exits 75, which the Job retries, and the retry resumes.

Each test runs ``python -m tjtrainer train`` as a real subprocess, as the trainer pod does,
on real files; the faults are real ones (a file where a folder must be, a garbage dataset).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tjtrainer.exitcodes import EXIT_BAD_ARGUMENTS, EXIT_PERMANENT, EXIT_TRANSIENT
from tjtrainer.progress import RunState, read_progress


def train(data_root: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tjtrainer", "train", "--timeframe", "15m", "--n-trials", "2",
         "--seed", "4", "--run-dir", str(run_dir), "--data-root", str(data_root),
         "--termination-log", str(run_dir.parent / "termination-log"), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip


def last_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[-1]


def test_an_oserror_while_saving_exits_transient_and_the_retry_resumes(data_root: Path) -> None:
    # A file where the models folder must be: saving the models fails with an OSError
    # after every trial has finished.
    (data_root / "models").write_text("not a folder")
    run_dir = data_root / "runs" / "ns" / "io"
    failed = train(data_root, run_dir)
    assert failed.returncode == EXIT_TRANSIENT, failed.stderr
    assert "FileExistsError" in last_error(failed) or "NotADirectoryError" in last_error(failed)
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.FAILED
    assert progress.completed_trials == 4

    (data_root / "models").unlink()  # what a retry may meet: the fault has gone
    retried = train(data_root, run_dir)
    assert retried.returncode == 0, retried.stderr
    assert "resuming with 4 finished trials" in retried.stdout
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.COMPLETED


def test_a_bad_dataset_exits_permanent(data_root: Path) -> None:
    (data_root / "datasets" / "15m" / "dataset.parquet").write_bytes(b"garbage, not parquet")
    run_dir = data_root / "runs" / "ns" / "bad"
    result = train(data_root, run_dir)
    assert result.returncode == EXIT_PERMANENT, result.stderr
    assert "not a readable Parquet file" in last_error(result)
    assert (run_dir.parent / "termination-log").read_text().strip() == last_error(
        result
    ).removeprefix("error: ")


def test_a_missing_dataset_exits_permanent(tmp_path: Path) -> None:
    result = train(tmp_path / "empty", tmp_path / "runs" / "ns" / "none")
    assert result.returncode == EXIT_PERMANENT, result.stderr
    assert "no dataset for timeframe 15m" in last_error(result)


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    result = train(tmp_path, tmp_path / "run", "--parallelism", "17")
    assert result.returncode == EXIT_BAD_ARGUMENTS
    assert "--parallelism must be an integer from 1 to 16, got 17" in result.stderr
