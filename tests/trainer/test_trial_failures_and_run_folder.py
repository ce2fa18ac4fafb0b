"""Failing trials, parallel trials, and run folders that belong to someone else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from trainer_testlib import make_config

from tjtrainer import train
from tjtrainer.dataset_reader import DATASET_FILE
from tjtrainer.datasets import synth_dataset
from tjtrainer.errors import RunFolderBusyError, RunFolderError, TrainingError
from tjtrainer.paths import UnsafePathError
from tjtrainer.progress import RunProgress, RunState, read_progress, request_cancel, run_dir_for
from tjtrainer.runlock import RunFolderLock
from tjtrainer.search import fit_trial


def test_a_failing_trial_is_recorded_and_the_run_goes_on(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("out of luck")
        return fit_trial(*args, **kwargs)

    monkeypatch.setattr(train, "fit_trial", flaky)
    final = train.run_training(make_config(data_root, n_trials=2))
    assert final.state == RunState.COMPLETED
    assert final.completed_trials == 4
    failed = [t for t in final.trials if t.state == "failed"]
    assert len(failed) == 1 and failed[0].error == "RuntimeError: out of luck"
    assert failed[0].spearman is None
    # The failed attempt and its retry share the slot number; finished ones are 1..2n.
    finished = [t.trial for t in final.trials if t.state != "failed"]
    assert finished == [1, 2, 3, 4] and failed[0].trial == 2


def test_three_failures_in_a_row_fail_the_run(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("bad parameters")

    monkeypatch.setattr(train, "fit_trial", broken)
    config = make_config(data_root)
    with pytest.raises(TrainingError, match="3 LONG trials in a row failed; last error: "):
        train.run_training(config)
    progress = read_progress(config.run_dir)
    assert progress is not None and progress.state == RunState.FAILED
    assert progress.error is not None and "ValueError: bad parameters" in progress.error
    assert [t.state for t in progress.trials] == ["failed"] * 3


def test_parallel_trials_share_one_study_safely(data_root: Path) -> None:
    seen: list[RunProgress] = []
    final = train.run_training(
        make_config(data_root, n_trials=3, parallelism=2), on_progress=seen.append
    )
    assert final.state == RunState.COMPLETED
    assert final.completed_trials == 6 == len(final.trials)
    for model in ("LONG", "SHORT"):
        numbers = sorted(t.number for t in final.trials if t.model == model)
        assert numbers == [0, 1, 2]
    counts = [len(p.trials) for p in seen]
    assert counts == sorted(counts)  # callbacks arrive in order, one trial at a time


def test_a_second_trainer_on_the_same_folder_is_refused(data_root: Path) -> None:
    config = make_config(data_root)
    with RunFolderLock(config.run_dir), pytest.raises(RunFolderBusyError, match="another trainer"):
        train.run_training(config)
    assert read_progress(config.run_dir) is None  # the other trainer's progress is untouched


def test_a_study_made_with_another_dataset_is_not_resumed(data_root: Path) -> None:
    config = make_config(data_root)
    request_cancel(config.run_dir)
    assert train.run_training(config).state == RunState.CANCELLED
    synth_dataset(data_root, "15m", rows=2500, seed=99)
    assert (data_root / "datasets" / "15m" / DATASET_FILE).exists()
    with pytest.raises(RunFolderError, match="dataset_checksum"):
        train.run_training(config)


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("local", "../../../pwned"),
        ("local", "a/b"),
        ("..", "job"),
        ("local", ""),
        ("local", "/etc"),
        ("Local", "job"),
        ("local", "x" * 254),
        ("local", "a..b"),
    ],
)
def test_a_run_folder_is_always_a_folder_under_runs(
    tmp_path: Path, namespace: str, name: str
) -> None:
    with pytest.raises(UnsafePathError, match="must be"):
        run_dir_for(tmp_path, namespace, name, "uid-1")
    with pytest.raises(UnsafePathError, match="the uid of a run must be"):
        run_dir_for(tmp_path, "local", "job", "../x")
    assert (
        run_dir_for(tmp_path, "local", "job-1", "ab12cd")
        == tmp_path / "runs" / "local" / "job-1-ab12cd"
    )
