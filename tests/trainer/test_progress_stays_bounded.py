"""progress.json and the table's trial log stay small however many trials a run has:
the latest TRIALS_KEPT trials in full, plus counts and the best trial of each model."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from bench.progress_at_scale import fake_trial, history_memory, simulate
from tjtrainer.cli import _TrialPrinter
from tjtrainer.progress import PROGRESS_FILE, TRIALS_KEPT, RunProgress, read_progress, snapshot
from tjtrainer.records import TrialBook

TRIALS = 10_000


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunProgress, int, int]:
    run_dir = tmp_path_factory.mktemp("run")
    progress, size, written, _ = simulate(run_dir, TRIALS, sample=500)
    return run_dir, progress, size, written


def test_progress_json_is_bounded_at_ten_thousand_trials_per_model(
    big_run: tuple[Path, RunProgress, int, int],
) -> None:
    run_dir, _, size, written = big_run
    assert size < 100_000, size  # it was 9.6 MB
    assert written < 2 * TRIALS * 100_000  # it was 96 GB over the run
    found = read_progress(run_dir)
    assert found is not None and len(found.trials) == TRIALS_KEPT
    assert found.trials_recorded == found.completed_trials == 2 * TRIALS
    assert [t.trial for t in found.trials] == list(
        range(2 * TRIALS - TRIALS_KEPT + 1, 2 * TRIALS + 1)
    )
    for model in ("LONG", "SHORT"):
        counts = found.trial_counts[model]
        assert counts == {"complete": TRIALS * 3 // 4, "pruned": TRIALS // 4, "failed": 0}
        best = found.best_trials[model]
        assert best.model == model and best.spearman == getattr(
            found, f"best_score_{model.lower()}"
        )
    assert json.loads((run_dir / PROGRESS_FILE).read_text())["best_trials"]["LONG"]["params"]


def test_the_ui_history_of_twenty_such_rows_stays_small(
    big_run: tuple[Path, RunProgress, int, int], tmp_path: Path
) -> None:
    peak, log_size = history_memory(tmp_path, big_run[1], 20)
    assert log_size < 100_000, log_size  # one row's trial_log was 10.5 MB
    assert peak < 30_000_000, peak  # the history held 604 MB


def test_the_trainer_prints_every_trial_past_the_kept_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = RunProgress(timeframe="15m", n_trials=300, total_trials=600)
    book, printer = TrialBook(progress, 300), _TrialPrinter()
    printer(snapshot(progress))
    for number in range(2 * TRIALS_KEPT + 50):
        trial = fake_trial(number, dt.datetime(2026, 1, 1), [0.1] * 5, TrialState.COMPLETE)
        book.add("LONG", trial)
        printer(snapshot(progress))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]
    assert len(lines) == 2 * TRIALS_KEPT + 50
    assert lines[-1].startswith(f"trial {2 * TRIALS_KEPT + 50}/600 LONG")


def test_progress_json_round_trips_every_field(
    big_run: tuple[Path, RunProgress, int, int],
) -> None:
    """What the writer serialises (without dataclasses.asdict) is every field, nested
    records included, and reads back equal."""
    progress = dataclasses.replace(big_run[1])
    progress.evaluation = {"level": 0.05, "LONG": {"verdict": "Significant", "ci": [0.1, 0.2]}}
    text = progress.to_json()
    assert json.loads(text) == {**dataclasses.asdict(progress), "state": str(progress.state)}
    assert RunProgress.from_json(text) == progress
