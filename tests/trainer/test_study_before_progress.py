"""Each trial is in the study (the journal, read as another process would read it, and
fsynced) before ``progress.json`` or the ``on_progress`` callback claims it, in the order
the trials are counted, with one trial at a time and with parallel trials; no fsync is
on the trial path; the first error of a progress write or callback stops the run at its
next trial."""

from __future__ import annotations

import json
import os
import threading
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
    # Snapshots that queue up while one is written are coalesced: only the newest is.
    assert counts == sorted(counts) and counts[-1] == 2 * N and len(seen) >= 2
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
    calls: list[tuple[int, RunState]] = []

    def on_progress(published: RunProgress) -> None:
        calls.append((published.completed_trials, published.state))
        if published.completed_trials >= 1:
            raise OSError("no space left on device")

    with pytest.raises(TransientError, match="no space left on device"):
        run_training(config, on_progress=on_progress)

    # Called for the start, the first trial(s), then once more with the failure.
    assert [state for _, state in calls] == [RunState.RUNNING, RunState.RUNNING, RunState.FAILED]
    assert calls[0][0] == 0 and calls[1][0] >= 1
    stored = _stored(config.run_dir)
    # The trial that was running when the callback failed ends; no other starts.
    assert len(stored["LONG"]) <= calls[1][0] + 1 and not stored["SHORT"]
    on_disk = read_progress(config.run_dir)
    assert on_disk is not None and on_disk.state == RunState.FAILED
    assert on_disk.error is not None and "no space left on device" in on_disk.error


@pytest.mark.parametrize("parallelism", [1, 2])
def test_the_journal_is_fsynced_before_progress_names_a_trial_and_not_on_the_trial_path(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, parallelism: int
) -> None:
    """Every trial end a published snapshot counts lies in the part of the journal
    fsynced before it was published, and the journal is fsynced only by the publisher's
    thread once the studies exist. The real ``os.fsync`` runs; the spy only notes how long
    the journal was at each call, and on which thread."""
    config = make_config(data_root, f"fsync-{parallelism}", n_trials=N, parallelism=parallelism)
    journal = config.run_dir / "study.journal"
    synced: list[tuple[int, str]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        real_fsync(fd)
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(journal.resolve()):
            synced.append((os.fstat(fd).st_size, threading.current_thread().name))

    published: list[tuple[int, int]] = []  # (trials counted, journal bytes fsynced)

    def on_progress(progress: RunProgress) -> None:
        published.append((progress.trials_recorded, max((n for n, _ in synced), default=0)))

    monkeypatch.setattr(os, "fsync", spy)
    run_training(config, on_progress=on_progress)
    lines = journal.read_bytes().splitlines(keepends=True)
    trial_ends, offset, first_trial = [], 0, None
    for line in lines:
        offset += len(line)
        operation = json.loads(line)
        if operation["op_code"] == CREATE_TRIAL and first_trial is None:
            first_trial = offset
        finished = {int(TrialState.COMPLETE), int(TrialState.PRUNED), int(TrialState.FAIL)}
        if operation["op_code"] == SET_TRIAL_STATE_VALUES and operation["state"] in finished:
            trial_ends.append(offset)
    assert len(trial_ends) == 2 * N and published[-1][0] == 2 * N
    for counted, synced_bytes in published:
        assert all(end <= synced_bytes for end in sorted(trial_ends)[:counted])
    assert synced[-1][0] == offset  # nothing left unsynced at the end
    assert first_trial is not None
    on_trial_path = [name for size, name in synced if size >= first_trial and name != "tj-progress"]
    assert not on_trial_path
    assert len(synced) <= len(published) + 4  # a study's creation and attributes, at most
