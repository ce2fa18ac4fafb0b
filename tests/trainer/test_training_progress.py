"""A run trains LONG then SHORT and reports every trial, on disk first, then by callback."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
from trainer_testlib import N_TRIALS, RecordedRun

from tjtrainer.errors import RunFolderError
from tjtrainer.progress import RunProgress, RunState, read_progress
from tjtrainer.search import SEARCH_SPACE
from tjtrainer.train import run_training


def test_run_completes_with_two_times_n_trials(completed_run: RecordedRun) -> None:
    final = completed_run.final
    assert final.state == RunState.COMPLETED
    assert final.total_trials == final.completed_trials == 2 * N_TRIALS == len(final.trials)
    assert final.progress_pct == 100.0
    assert [t.trial for t in final.trials] == list(range(1, 2 * N_TRIALS + 1))
    assert [t.model for t in final.trials] == ["LONG"] * N_TRIALS + ["SHORT"] * N_TRIALS
    assert [t.number for t in final.trials] == list(range(N_TRIALS)) * 2
    assert final.model_version is not None and final.model_version.startswith("15m_")
    assert final.models_dir == str(completed_run.config.models_dir)
    assert final.test_score_long is not None and final.test_score_short is not None
    assert final.finished_at is not None and final.error is None


def test_trial_records_carry_scores_params_and_running_best(completed_run: RecordedRun) -> None:
    for model in ("LONG", "SHORT"):
        records = [t for t in completed_run.final.trials if t.model == model]
        best = None
        for record in records:
            assert record.state in ("complete", "pruned")
            assert set(record.params) == set(SEARCH_SPACE)
            assert record.duration_s >= 0 and record.finished_at.endswith("Z")
            assert record.rounds is not None and record.rounds >= 1
            if record.state == "complete":
                assert record.spearman is not None and -1 <= record.spearman <= 1
                best = record.spearman if best is None else max(best, record.spearman)
            assert record.best_so_far == best
        final = completed_run.final
        assert (final.best_score_long if model == "LONG" else final.best_score_short) == best


def test_progress_is_written_before_each_callback(completed_run: RecordedRun) -> None:
    seen, on_disk = completed_run.seen, completed_run.on_disk
    assert len(seen) == 2 * N_TRIALS + 2  # the start, each trial, the end
    assert seen[0].state == RunState.RUNNING and seen[0].trials == []
    for count, snapshot in enumerate(seen[1:-1], start=1):
        assert snapshot.state == RunState.RUNNING
        assert len(snapshot.trials) == snapshot.completed_trials == count
        assert snapshot.current_model == ("LONG" if count <= N_TRIALS else "SHORT")
    assert seen[-1].state == RunState.COMPLETED
    for snapshot, disk in zip(seen, on_disk, strict=True):
        assert disk is not None
        assert _comparable(disk) == _comparable(snapshot)


def test_progress_file_holds_the_final_state(completed_run: RecordedRun) -> None:
    on_disk = read_progress(completed_run.config.run_dir)
    assert on_disk is not None
    assert _comparable(on_disk) == _comparable(completed_run.final)


def test_a_completed_run_is_not_trained_again(completed_run: RecordedRun) -> None:
    versions_before = sorted(p.name for p in completed_run.config.models_dir.iterdir())
    started = time.monotonic()
    again = run_training(completed_run.config)
    assert time.monotonic() - started < 5
    assert again.state == RunState.COMPLETED
    assert again.model_version == completed_run.final.model_version
    assert [t.params for t in again.trials] == [t.params for t in completed_run.final.trials]
    assert sorted(p.name for p in completed_run.config.models_dir.iterdir()) == versions_before


@pytest.mark.parametrize(
    "change", [{"n_trials": N_TRIALS + 1}, {"seed": 8}, {"train_ratio": 0.7}], ids=str
)
def test_a_completed_run_of_another_config_is_never_returned(
    completed_run: RecordedRun, tmp_path: Path, change: dict[str, object]
) -> None:
    run_dir = tmp_path / "reused"
    shutil.copytree(completed_run.config.run_dir, run_dir)
    config = replace(completed_run.config, run_dir=run_dir, **change)  # type: ignore[arg-type]
    versions_before = sorted(p.name for p in config.models_dir.iterdir())
    with pytest.raises(RunFolderError, match="another configuration") as err:
        run_training(config)
    assert str(run_dir) in str(err.value)
    assert sorted(p.name for p in config.models_dir.iterdir()) == versions_before
    on_disk = read_progress(run_dir)
    assert on_disk is not None and on_disk.state == RunState.FAILED
    assert on_disk.model_version is None


def _comparable(progress: RunProgress) -> dict[str, object]:
    data = progress.__dict__.copy()
    data.pop("updated_at")
    data["trials"] = [t.__dict__ for t in progress.trials]
    return data
