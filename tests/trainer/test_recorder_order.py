"""The recorder thread makes a trial durable in the study before progress.json or the
callback can claim it, in the order trials were handed over, and stops at its first error."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tjtrainer.progress import RunProgress, read_progress
from tjtrainer.recorder import Recorder, snapshot
from tjtrainer.records import TrialBook
from tjtrainer.search import SEARCH_SPACE, Timings, TrialFit
from tjtrainer.studies import DurableStudies, mirror_study, open_run_storage, record_outcome

MODEL = "LONG"


def _ask(study: optuna.Study) -> optuna.Trial:
    return study.ask(SEARCH_SPACE)


def _fit(score: float) -> TrialFit:
    return TrialFit(score, (score, score), (40, 60), False, (1.2, 1.1), 1.05)


def test_each_trial_is_in_the_study_before_its_progress_is_published(tmp_path: Path) -> None:
    studies = DurableStudies(tmp_path)
    mirror = mirror_study(
        [], sampler=optuna.samplers.RandomSampler(0), pruner=optuna.pruners.NopPruner(), name=MODEL
    )
    progress = RunProgress(timeframe="15m", n_trials=3, total_trials=6)
    book = TrialBook(progress, 3)
    seen: list[tuple[int, list[TrialState]]] = []

    def on_progress(published: RunProgress) -> None:
        # What the journal holds when the callback runs (read as another process would).
        other = open_run_storage(tmp_path)
        trials = other.get_all_trials(other.get_study_id_from_name(MODEL))
        seen.append((published.completed_trials, [t.state for t in trials]))

    recorder = Recorder(studies, tmp_path, on_progress, Timings())
    try:
        for score in (0.1, 0.3, 0.2):
            trial = _ask(mirror)
            recorder.trial_started(MODEL, trial.number, trial.params, trial.distributions)
            trial.report(score, 0)
            finished = record_outcome(mirror, trial, _fit(score))
            book.add(MODEL, finished)
            recorder.trial_finished(MODEL, finished, snapshot(progress))
        recorder.flush()
    finally:
        recorder.close()
    stored = studies.trials(MODEL)
    studies.close()
    complete = TrialState.COMPLETE
    assert seen == [(1, [complete]), (2, [complete] * 2), (3, [complete] * 3)]
    assert [t.value for t in stored] == [0.1, 0.3, 0.2]
    assert [t.intermediate_values for t in stored] == [{0: 0.1}, {0: 0.3}, {0: 0.2}]
    assert stored[1].user_attrs["fold_rounds"] == [40, 60]
    assert [t.params for t in stored] == [t.params for t in mirror.get_trials()]
    written = read_progress(tmp_path)
    assert written is not None and written.best_score_long == 0.3


def test_the_first_error_stops_the_recorder_and_is_raised_on_flush(tmp_path: Path) -> None:
    studies = DurableStudies(tmp_path)
    calls: list[int] = []

    def on_progress(published: RunProgress) -> None:
        calls.append(published.completed_trials)
        raise OSError("no space left on device")

    recorder = Recorder(studies, tmp_path, on_progress, Timings())
    progress = RunProgress(timeframe="15m", n_trials=3, total_trials=6)
    try:
        with pytest.raises(OSError, match="no space left"):
            recorder.publish(progress)
        progress.completed_trials = 1
        with pytest.raises(OSError, match="no space left"):
            recorder.publish(progress)  # not handled: the recorder stopped at the first
    finally:
        recorder.close()
        studies.close()
    assert calls == [0]
