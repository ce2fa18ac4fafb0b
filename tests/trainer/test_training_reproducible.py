"""Same seed and data, same trials and scores; another seed, another search."""

from __future__ import annotations

import shutil
from pathlib import Path

from trainer_testlib import RecordedRun, make_config

from tjtrainer.train import run_training


def test_same_seed_gives_the_same_trials_and_scores(
    completed_run: RecordedRun, dataset_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "shared"
    shutil.copytree(dataset_root / "datasets", root / "datasets")
    again = run_training(make_config(root, "again", seed=completed_run.config.seed))
    first = completed_run.final
    assert [(t.model, t.number, t.state) for t in again.trials] == [
        (t.model, t.number, t.state) for t in first.trials
    ]
    assert [t.params for t in again.trials] == [t.params for t in first.trials]
    assert [t.spearman for t in again.trials] == [t.spearman for t in first.trials]
    assert [t.rounds for t in again.trials] == [t.rounds for t in first.trials]
    assert (again.test_score_long, again.test_score_short) == (
        first.test_score_long,
        first.test_score_short,
    )


def test_another_seed_samples_other_parameters(completed_run: RecordedRun, data_root: Path) -> None:
    other = run_training(
        make_config(data_root, "other", seed=completed_run.config.seed + 1, n_trials=1)
    )
    assert other.trials[0].params != completed_run.final.trials[0].params
