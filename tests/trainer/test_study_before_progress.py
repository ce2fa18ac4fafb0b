"""Each trial is in the study (the journal, read as another process would read it) before
``progress.json`` or the ``on_progress`` callback claims it, in the order the trials are
counted, with one trial at a time and with parallel trials; the first error of a progress
write or callback stops the run before another trial starts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial, TrialState
from trainer_testlib import make_config

from tjtrainer.errors import TransientError
from tjtrainer.progress import MODELS, RunProgress, RunState, read_progress
from tjtrainer.studies import open_run_storage
from tjtrainer.train import run_training

N = 3
CREATE_TRIAL, SET_TRIAL_STATE_VALUES = (
    JournalOperation.CREATE_TRIAL,
    JournalOperation.SET_TRIAL_STATE_VALUES,
)
STATES = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}


def _stored(run_dir: Path) -> dict[str, dict[int, FrozenTrial]]:
    storage = open_run_storage(run_dir)
    return {
        model: {t.number: t for t in storage.get_all_trials(storage.get_study_id_from_name(model))}
        for model in MODELS
    }


@pytest.mark.parametrize("parallelism", [1, 2])
def test_each_trial_is_in_the_study_before_its_progress_is_published(
    data_root: Path, parallelism: int
) -> None:
    config = make_config(data_root, f"order-{parallelism}", n_trials=N, parallelism=parallelism)
    seen: list[tuple[RunProgress, dict[str, dict[int, FrozenTrial]], RunProgress | None]] = []

    def on_progress(published: RunProgress) -> None:
        seen.append((published, _stored(config.run_dir), read_progress(config.run_dir)))

    final = run_training(config, on_progress=on_progress)

    assert final.state == RunState.COMPLETED and final.completed_trials == 2 * N
    counts = [published.completed_trials for published, _, _ in seen]
    assert counts == sorted(counts) and counts[-1] == 2 * N
    assert set(range(2 * N + 1)) <= set(counts)  # published after every trial
    for published, stored, on_disk in seen:
        assert on_disk is not None  # written before the callback
        assert (on_disk.state, on_disk.trials_recorded) == (
            published.state,
            published.trials_recorded,
        )
        for record in published.trials:
            trial = stored[record.model][record.number]
            assert trial.state == STATES[record.state], record
            assert trial.params == record.params and trial.user_attrs["slot"] == record.slot
            if record.state == "complete":
                assert trial.value == record.spearman


def test_the_first_error_of_a_progress_callback_stops_the_run(data_root: Path) -> None:
    config = make_config(data_root, "no-space", n_trials=N)
    calls: list[int] = []

    def on_progress(published: RunProgress) -> None:
        calls.append(published.completed_trials)
        if published.completed_trials == 1:
            raise OSError("no space left on device")

    with pytest.raises(TransientError, match="no space left on device"):
        run_training(config, on_progress=on_progress)

    assert calls[:2] == [0, 1]
    stored = _stored(config.run_dir)
    assert len(stored["LONG"]) == 1 and not stored["SHORT"]  # no trial after the error
    on_disk = read_progress(config.run_dir)
    assert on_disk is not None and on_disk.state == RunState.FAILED
    assert on_disk.error is not None and "no space left on device" in on_disk.error


def test_every_trial_end_is_fsynced_with_the_lines_before_it(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal is fsynced right after each line that creates or ends a trial (which
    makes every earlier line durable too), not after each parameter or attribute. The
    real ``os.fsync`` runs; the spy only notes how long the journal was at each call."""
    config = make_config(data_root, "fsync", n_trials=N)
    journal = config.run_dir / "study.journal"
    synced_sizes: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        real_fsync(fd)
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(journal.resolve()):
            synced_sizes.append(os.fstat(fd).st_size)

    monkeypatch.setattr(os, "fsync", spy)
    run_training(config)
    lines = journal.read_bytes().splitlines(keepends=True)
    ends, offset = [], 0
    for line in lines:
        offset += len(line)
        if json.loads(line)["op_code"] in (CREATE_TRIAL, SET_TRIAL_STATE_VALUES):
            ends.append(offset)
    assert len(ends) == 2 * 2 * N  # each trial created and ended
    assert set(ends) <= set(synced_sizes)
    assert synced_sizes[-1] == offset  # nothing left unsynced at the end
    assert len(synced_sizes) < len(lines) / 2  # parameters and attributes are not synced
