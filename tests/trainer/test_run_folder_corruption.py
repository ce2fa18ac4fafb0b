"""A damaged run folder stops the trainer with one ``error:`` line that names the file
and says what to do; it never restarts from 0 trials silently nor shows a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from trainer_testlib import N_TRIALS, RecordedRun

from tjcontract.layout import STUDY_FILE
from tjtrainer.progress import MODELS, RunState, read_progress, write_progress
from tjtrainer.studies import FINGERPRINT_KEY, PREVIOUS_STUDY_FILE, open_run_storage


@pytest.fixture
def killed_run(completed_run: RecordedRun, tmp_path: Path) -> Path:
    """A copy of a run folder as a trainer killed after all its trials leaves it (state
    ``running``, every trial in progress.json and the study); returns the data root."""
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
    study = killed_run / "runs" / "default" / "job" / STUDY_FILE
    study.write_bytes(b"")
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


@pytest.mark.parametrize(
    "content",
    [
        b"this is not an Optuna journal at all" * 100,
        b"SQLite format 3\x00" + bytes(100),
        b'{"op_code":0,"worker_id":"w","study_name":"LONG","directions":[1]}\n{broken\n{}\n',
    ],
)
def test_a_garbage_study_is_named(killed_run: Path, content: bytes) -> None:
    study = killed_run / "runs" / "default" / "job" / STUDY_FILE
    study.write_bytes(content)
    line = one_error_line(train(killed_run))
    assert str(study) in line and "not a readable Optuna journal" in line, line
    assert "move it away" in line, line
    assert study.read_bytes() == content  # left as found


def _trials(run_dir: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    storage = open_run_storage(run_dir)
    return {m: optuna.load_study(study_name=m, storage=storage).get_trials() for m in MODELS}


def test_a_last_line_cut_by_a_kill_is_dropped_and_every_finished_trial_kept(
    killed_run: Path,
) -> None:
    run_dir = killed_run / "runs" / "default" / "job"
    study = run_dir / STUDY_FILE
    whole = study.read_bytes()
    before = _trials(run_dir)
    # What a trainer killed in the middle of an append leaves: a line without its end.
    study.write_bytes(whole + b'{"op_code":4,"worker_id":"gone","study_id":0,"datetime_st')
    done = train(killed_run)
    assert done.returncode == 0, done.stderr
    assert "was cut by a killed process" in done.stdout, done.stdout
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.COMPLETED
    assert progress.completed_trials == 2 * N_TRIALS
    assert study.read_bytes().startswith(whole)
    after = _trials(run_dir)
    for model in MODELS:  # no trial was run again
        assert [t.params for t in after[model]] == [t.params for t in before[model]], model


def test_a_previous_releases_study_db_is_copied_into_the_journal_once(
    killed_run: Path,
) -> None:
    run_dir = killed_run / "runs" / "default" / "job"
    before = _trials(run_dir)
    # The previous release's run folder: the same studies in study.db (SQLite), no journal.
    previous = run_dir / PREVIOUS_STUDY_FILE
    sqlite = optuna.storages.RDBStorage(f"sqlite:///{previous}")
    for model in MODELS:
        optuna.copy_study(
            from_study_name=model, from_storage=open_run_storage(run_dir), to_storage=sqlite
        )
    fingerprint = optuna.load_study(study_name="LONG", storage=sqlite).user_attrs[FINGERPRINT_KEY]
    sqlite.engine.dispose()
    (run_dir / STUDY_FILE).unlink()

    done = train(killed_run)

    assert done.returncode == 0, done.stderr
    copied = [line for line in done.stdout.splitlines() if "copied the" in line]
    assert len(copied) == 1 and f"{2 * N_TRIALS} trials of {previous}" in copied[0], done.stdout
    assert f"{PREVIOUS_STUDY_FILE} is left as it was" in copied[0]
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.COMPLETED
    assert progress.completed_trials == 2 * N_TRIALS
    after = _trials(run_dir)
    for model in MODELS:  # every trial kept, none run again
        assert [(t.number, t.state, t.params, t.value) for t in after[model]] == [
            (t.number, t.state, t.params, t.value) for t in before[model]
        ], model
        assert [t.user_attrs for t in after[model]] == [t.user_attrs for t in before[model]]
    journal = open_run_storage(run_dir)
    long_attrs = journal.get_study_user_attrs(journal.get_study_id_from_name("LONG"))
    assert long_attrs[FINGERPRINT_KEY] == fingerprint  # the study attributes came too
    assert previous.is_file()  # left in place, no longer used
    again = train(killed_run)  # completed: nothing copied again
    assert again.returncode == 0 and "copied the" not in again.stdout, again.stdout


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


# Fills the file-size limit (RLIMIT_FSIZE) in the middle of a trial's append: the kernel
# writes part of the line, then refuses (EFBIG), as a full disk does with ENOSPC. A real
# partial write on a real file; a subprocess, so pytest's own files are not limited.
_APPEND_CUT_BY_A_LIMIT = """
import resource, signal, sys
from pathlib import Path
import optuna
from tjtrainer.studies import open_journal

path = Path(sys.argv[1])
study = optuna.create_study(study_name="LONG", storage=open_journal(path))
objective = lambda trial: trial.suggest_float("x", 0.0, 1.0)
study.optimize(objective, n_trials=3)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 40, hard))
try:
    study.optimize(objective, n_trials=1)
except OSError as err:
    print("refused", err.errno)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
study.optimize(objective, n_trials=1)
print("trials", len(study.trials))
"""


def test_an_append_cut_by_a_full_disk_leaves_no_half_line(tmp_path: Path) -> None:
    study = tmp_path / STUDY_FILE
    done = subprocess.run(
        [sys.executable, "-c", _APPEND_CUT_BY_A_LIMIT, str(study)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "refused 27" in done.stdout, done.stdout  # EFBIG: the append was cut
    assert "trials 4" in done.stdout, done.stdout
    lines = study.read_bytes().splitlines()
    assert all(line.startswith(b'{"op_code":') and line.endswith(b"}") for line in lines)
    trials = optuna.load_study(study_name="LONG", storage=open_run_storage(tmp_path)).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
