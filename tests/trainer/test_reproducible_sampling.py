"""Reproducibility: a trial's parameters, pruning and seed follow from (seed, model, slot)
alone — the same with parallel trials, across a kill and resume; neighbouring seeds share
no configuration."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from trainer_testlib import make_config

from tjtrainer.progress import RunProgress, read_progress
from tjtrainer.sampling import Slots, SlotSampler, slot_seed
from tjtrainer.search import SEARCH_SPACE
from tjtrainer.studies import open_run_storage
from tjtrainer.train import run_training

N_TRIALS = 7


def _startup_configs(seed: int, model: str, count: int = 10) -> list[tuple[object, ...]]:
    sampler = SlotSampler(seed, model)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    configs = []
    for slot in range(count):
        sampler.prepare(slot, frozenset())
        trial = study.ask(SEARCH_SPACE)
        configs.append(tuple(sorted(trial.params.items())))
        study.tell(trial, 0.0)
    return configs


def test_neighbouring_seeds_share_no_configuration() -> None:
    seen = [_startup_configs(seed, model) for seed in (7, 8, 9) for model in ("LONG", "SHORT")]
    flat = [config for configs in seen for config in configs]
    assert len(set(flat)) == len(flat) == 60
    assert _startup_configs(7, "LONG") == _startup_configs(7, "LONG")  # and seeds do repeat
    assert (
        len({slot_seed(s, m, k) for s in (7, 8) for m in ("LONG", "SHORT") for k in range(50)})
        == 200
    )


def test_slots_wait_for_their_history_and_for_needed_outcomes() -> None:
    slots = Slots(n_trials=3, lag=2)
    assert slots.decide() == ("ask", 0)
    slots.in_flight.add(0)
    assert slots.decide() == ("ask", 1)  # sampled from slots <= -1: nothing
    slots.in_flight.add(1)
    assert slots.decide() == ("wait", 2)  # slot 2 is sampled from slot 0, still running
    slots.in_flight.discard(1)
    slots.done[1] = True  # 1 finished first: still wait, history is slot 0
    assert slots.decide() == ("wait", 2)
    slots.in_flight.discard(0)
    slots.done[0] = True
    assert slots.decide() == ("ask", 2)
    slots.in_flight.add(2)
    assert slots.decide() == ("wait", 3)  # needed only if slot 2 fails
    slots.in_flight.discard(2)
    slots.done[2] = False  # it failed with an error: one more slot
    assert slots.decide() == ("ask", 3)
    slots.done[3] = True
    assert slots.decide() == ("stop", 4)
    resumed = Slots(n_trials=3, lag=2, done={0: True, 2: True})  # slot 1 was killed
    assert resumed.decide() == ("ask", 1)
    assert resumed.visible(1, {10: 0, 12: 2}) == frozenset()
    assert resumed.visible(4, {10: 0, 12: 2}) == frozenset({10, 12})


def _trials_by_slot(progress: RunProgress) -> dict[tuple[str, int], tuple[object, ...]]:
    out = {}
    for t in progress.trials:
        assert t.slot is not None
        out[(t.model, t.slot)] = (t.state, t.params, t.spearman, t.fold_scores, t.rounds)
    return out


@pytest.fixture(scope="module")
def parallel_run(tmp_path_factory: pytest.TempPathFactory, dataset_root: Path) -> RunProgress:
    import shutil

    root = tmp_path_factory.mktemp("parallel") / "shared"
    shutil.copytree(dataset_root / "datasets", root / "datasets")
    return run_training(make_config(root, "p2", n_trials=N_TRIALS, parallelism=2))


def test_parallel_trials_give_the_same_trials_every_time(
    parallel_run: RunProgress, data_root: Path
) -> None:
    again = run_training(make_config(data_root, "p2-again", n_trials=N_TRIALS, parallelism=2))
    first = _trials_by_slot(parallel_run)
    assert set(first) == {(m, k) for m in ("LONG", "SHORT") for k in range(len(first) // 2)}
    assert _trials_by_slot(again) == first
    assert any(state == "pruned" for state, *_ in first.values())  # pruning is reproduced too
    assert (again.test_score_long, again.test_score_short) == (
        parallel_run.test_score_long,
        parallel_run.test_score_short,
    )


def test_a_killed_and_resumed_parallel_run_gives_the_same_trials(
    parallel_run: RunProgress, data_root: Path
) -> None:
    run_dir = data_root / "runs" / "default" / "p2-killed"
    command = [
        sys.executable, "-m", "tjtrainer", "train", "--timeframe", "15m",
        "--n-trials", str(N_TRIALS), "--train-ratio", "0.8", "--seed", "7",
        "--parallelism", "2", "--run-dir", str(run_dir), "--data-root", str(data_root),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        progress = read_progress(run_dir) if run_dir.exists() else None
        if progress is not None and progress.completed_trials >= 4:
            break
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    storage = open_run_storage(run_dir)
    states = [
        t.state.name for s in storage.get_all_studies() for t in storage.get_all_trials(s._study_id)
    ]
    assert "RUNNING" in states  # trials were cut off: their slots are asked again
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    final = read_progress(run_dir)
    assert final is not None and final.state == "completed"
    assert _trials_by_slot(final) == _trials_by_slot(parallel_run)
