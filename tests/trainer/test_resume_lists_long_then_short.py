"""A resumed run lists LONG's trials, then SHORT's, even when its study holds SHORT trials
that ended while LONG's search went on (two trials at once run SHORT's next slot when
LONG's must wait), as the run that made them did. The run folder is made from a real
finished run's trials, so the state is exact rather than left to a kill's timing."""

from __future__ import annotations

from pathlib import Path

from trainer_testlib import N_TRIALS, make_config

from tjcontract.layout import STUDY_FILE
from tjcontract.names import MODELS
from tjtrainer.progress import read_progress
from tjtrainer.records import FINISHED
from tjtrainer.studies import open_journal, open_run_storage
from tjtrainer.train import run_training


def test_short_trials_found_before_long_is_over_are_listed_after_it(data_root: Path) -> None:
    done = make_config(data_root, "whole")
    run_training(done)
    source = open_run_storage(done.run_dir)
    partial = make_config(data_root, "partial")
    partial.run_dir.mkdir(parents=True)
    target = open_journal(partial.run_dir / STUDY_FILE)
    kept = {"LONG": 1, "SHORT": 2}  # LONG's search not over; two SHORT trials ended
    for study in source.get_all_studies():
        study_id = target.create_new_study(study.directions, study.study_name)
        for key, value in study.user_attrs.items():
            target.set_study_user_attr(study_id, key, value)
        for key, value in study.system_attrs.items():
            target.set_study_system_attr(study_id, key, value)
        trials = source.get_all_trials(study._study_id)
        for trial in [t for t in trials if t.state in FINISHED][: kept[study.study_name]]:
            target.create_new_trial(study_id, template_trial=trial)

    final = run_training(partial)

    assert final.completed_trials == 2 * N_TRIALS
    numbers = [record.trial for record in final.trials]
    assert numbers == list(range(1, 2 * N_TRIALS + 1))
    assert [record.model for record in final.trials] == [MODELS[0]] * N_TRIALS + [
        MODELS[1]
    ] * N_TRIALS
    written = read_progress(partial.run_dir)
    assert written is not None and [r.trial for r in written.trials] == numbers
    # The two SHORT trials found were kept, not run again.
    resumed = open_run_storage(partial.run_dir)
    short = next(s for s in resumed.get_all_studies() if s.study_name == MODELS[1])
    finished = [t for t in resumed.get_all_trials(short._study_id) if t.state in FINISHED]
    assert len(finished) == N_TRIALS
