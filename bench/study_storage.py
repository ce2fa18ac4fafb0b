"""The trainer's study storage: what a trial costs on each candidate, and what a resume costs.

Candidates, each holding the run's two studies (LONG, SHORT) in the run folder:

- ``trainer``: what the trainer does: the run folder's ``study.journal``
  (:class:`tjtrainer.studies.DurableStudies`: Optuna's ``JournalStorage`` on a
  ``JournalFileBackend`` file, without Optuna's lock file since the run folder's lock
  is held), searched directly; the journal's fsync and ``progress.json`` on the
  publisher's thread, off the trial path (:mod:`tjtrainer.publisher`);
- ``journal``: the same with Optuna's default ``JournalFileBackend`` (its symlink lock
  made and removed around every append), as the decision below measured it;
- ``sqlite``: the previous release's ``study.db`` (SQLite through ``RDBStorage``, WAL,
  ``synchronous=NORMAL``) searched directly; ``progress.json`` written on the trial path.

The decision to search the journal directly (docs/TRAINER.md, "Resume") was measured with
commit 3e3ccd5's trainer and this bench as of 550a02a, whose ``today`` candidate, the
trainer then, was ``study.db`` + an in-memory mirror the sampler worked on + a recorder
thread copying each trial to ``study.db`` and writing ``progress.json``; that code is
gone (run 550a02a's bench at 3e3ccd5 to measure it again).

Each trial is the run's own path with one trial at a time (``tjtrainer.train``): the slot
sampler (TPE) reseeded by slot, ``ask`` over the search space, the slot attribute, the
pruning reference read from the study, the round-rung checks, one intermediate report per
fold but the last (``--folds``, default 3 as ``cvFolds``), the trial's five attributes,
``tell``, the progress record. XGBoost's fit is a fixed amount of CPU work outside the GIL
on ``--fit-threads`` threads (SHA-256 of 1 MB blocks, about ``--fit-ms`` on this machine
when nothing else of ours runs), so any thread of the storage overlaps it and competes
with it for the CPUs as it would with XGBoost.

Measured per repetition: the trial path outside the fit per trial (p50, p95); the wall
time per trial, fit included (what a run's length follows); the CPU
per trial of every thread minus the fit's own (what the storage takes from XGBoost on a
busy machine); the resume: opening a run folder whose LONG study holds N trials up to a
search-ready state (stale trials failed, the trial list rebuilt). ``--trials 200,2000``
measures the last ``--measured`` trials of a study growing to N (the first N - measured
are loaded from a copy made once). Candidates run interleaved, one repetition each in
turn; the table gives the median and the spread (min-max) over ``--repeat`` and each
median's ratio to the trainer's.

Usage: ``python bench/study_storage.py [--trials 200,2000] [--measured 200] [--repeat 5]
[--fit-ms 40] [--dir DIR]`` (DIR: where the run folders go, e.g. the shared volume;
default a temporary folder).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
from optuna.pruners import NopPruner
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from tjtrainer.progress import MODELS, RunProgress, snapshot, write_progress
from tjtrainer.publisher import Publisher
from tjtrainer.records import FINISHED, TrialBook
from tjtrainer.sampling import (
    FIRST_FOLD_RMSE_ATTR,
    RUNG_RMSE_ATTR,
    SLOT_ATTR,
    PruningReference,
    Slots,
    SlotSampler,
    reporter,
    slots_of,
)
from tjtrainer.search import ROUND_RUNGS, SEARCH_SPACE, Timings, TrialFit
from tjtrainer.studies import DurableStudies, RunJournal, record_outcome

MODEL = MODELS[0]
JOURNAL_FILE = "study.log"
SEED = 42


@dataclass
class Measure:
    """One repetition of one candidate at one size."""

    path_ms: list[float] = field(default_factory=list)  # per trial, outside the fit
    wall_ms_per_trial: float = 0.0
    cpu_ms_per_trial: float = 0.0  # every thread, the fit's CPU taken out
    resume_ms: float = 0.0

    def p(self, q: float) -> float:
        return float(np.percentile(self.path_ms, q))


class Candidate:
    """A study storage as the trial path uses it."""

    name = ""

    def open(self, run_dir: Path, sampler: SlotSampler) -> optuna.Study:
        """The LONG study the sampler searches (both studies exist afterwards)."""
        raise NotImplementedError

    def asked(self, trial: optuna.Trial) -> None:
        """``trial`` was just asked (its parameters are sampled)."""

    def finished(self, trial: FrozenTrial, progress: RunProgress) -> None:
        raise NotImplementedError

    def drain(self) -> None:
        """Wait until everything handed over is durable."""

    def close(self) -> None:
        raise NotImplementedError

    def durable(self) -> BaseStorage:
        """The durable storage opened by :meth:`open`."""
        raise NotImplementedError

    def resume(self, run_dir: Path) -> list[FrozenTrial]:
        """Open ``run_dir`` as a new process would: the LONG trials, stale ones failed."""
        raise NotImplementedError


class Direct(Candidate):
    """A durable storage searched directly; ``progress.json`` on the trial path."""

    def storage(self, run_dir: Path) -> BaseStorage:
        raise NotImplementedError

    def open(self, run_dir: Path, sampler: SlotSampler) -> optuna.Study:
        self.run_dir = run_dir
        self.store = self.storage(run_dir)
        studies = [
            optuna.create_study(
                storage=self.store,
                study_name=model,
                direction="maximize",
                sampler=sampler,
                pruner=NopPruner(),
                load_if_exists=True,
            )
            for model in MODELS
        ]
        return studies[0]

    def finished(self, trial: FrozenTrial, progress: RunProgress) -> None:
        write_progress(self.run_dir, progress)

    def close(self) -> None:
        self.release(self.store)

    def durable(self) -> BaseStorage:
        return self.store

    def release(self, storage: BaseStorage) -> None:
        """Let go of ``storage``'s connections."""

    def resume(self, run_dir: Path) -> list[FrozenTrial]:
        storage = self.storage(run_dir)
        try:
            study = optuna.load_study(study_name=MODEL, storage=storage)
            for model in MODELS[1:]:
                optuna.load_study(study_name=model, storage=storage)
            trials = study.get_trials(deepcopy=False)
            for trial in trials:
                if trial.state == TrialState.RUNNING:
                    trial_id = storage.get_trial_id_from_study_id_trial_number(
                        storage.get_study_id_from_name(MODEL), trial.number
                    )
                    storage.set_trial_state_values(trial_id, TrialState.FAIL)
            return study.get_trials(deepcopy=False)
        finally:
            self.release(storage)


class Trainer(Direct):
    """The trainer's journal, published as the trainer publishes: the journal's fsync and
    ``progress.json`` on the publisher's thread (:mod:`tjtrainer.publisher`), off the
    trial path; their CPU and the fsyncs' waits still count in the wall and CPU columns."""

    name = "trainer"

    def storage(self, run_dir: Path) -> BaseStorage:
        return DurableStudies(run_dir).storage

    def open(self, run_dir: Path, sampler: SlotSampler) -> optuna.Study:
        study = super().open(run_dir, sampler)
        self.publisher = Publisher(run_dir, None, Timings())
        assert isinstance(self.store, RunJournal)
        self.publisher.sync = self.store.sync
        return study

    def finished(self, trial: FrozenTrial, progress: RunProgress) -> None:
        self.publisher.submit(snapshot(progress))

    def drain(self) -> None:
        self.publisher.flush()

    def close(self) -> None:
        self.publisher.close()
        super().close()


class Journal(Direct):
    name = "journal"

    def storage(self, run_dir: Path) -> BaseStorage:
        return JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE)))


class Sqlite(Direct):
    name = "sqlite"

    def storage(self, run_dir: Path) -> BaseStorage:
        path = run_dir / "study.db"

        def connect() -> sqlite3.Connection:  # as the previous release's trainer did
            connection = sqlite3.connect(path, timeout=60, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            return connection

        return optuna.storages.RDBStorage(
            f"sqlite:///{path}",
            engine_kwargs={"creator": connect},
            skip_compatibility_check=not path.exists(),
        )

    def release(self, storage: BaseStorage) -> None:
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.remove_session()
            storage.engine.dispose()


class Fit:
    """XGBoost's stand-in: a fixed amount of CPU work outside the GIL (SHA-256 of 1 MB
    blocks) on ``threads`` threads, sized to take ``ms`` on this machine when nothing
    else of ours runs; a storage thread's work would slow it as it slows XGBoost."""

    BLOCK = bytes(1 << 20)

    def __init__(self, ms: float, threads: int) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="fit")
        self.threads = threads
        self.cpu_s = 0.0  # CPU the fit's threads used since reset
        block_s = min(self._timed(4 * threads) for _ in range(5)) / 4  # the least loaded
        self.blocks = max(threads, round(ms / 1000 / block_s))

    def _timed(self, blocks: int) -> float:
        began = time.perf_counter()
        self.burn(blocks)
        return time.perf_counter() - began

    def burn(self, blocks: int) -> None:
        share = [max(1, blocks // self.threads)] * self.threads
        self.cpu_s += sum(self.pool.map(self._hash, share))

    def _hash(self, blocks: int) -> float:
        began = time.thread_time()
        for _ in range(blocks):
            hashlib.sha256(self.BLOCK).digest()
        return time.thread_time() - began

    def trial(self, trial: optuna.Trial, reference: PruningReference, folds: int) -> TrialFit:
        """What ``fit_trial`` gives, with its reports and pruning checks."""
        rng = np.random.default_rng(trial.number)
        rmse = 1.0 + rng.random()
        rungs: list[float] = []
        for rung in range(len(ROUND_RUNGS) // 2):
            rungs.append(rmse - 0.01 * rung)
            if reference.prunes_rung(rung, rungs[-1]):
                self.burn(self.blocks // 3)
                return TrialFit(float("nan"), (), (), True, tuple(rungs), rungs[-1])
        report = reporter(trial, reference)
        scores: list[float] = []
        for fold in range(folds):
            scores.append(float(rng.normal(0.05, 0.03)))
            self.burn(self.blocks // folds)
            if fold < folds - 1 and report(float(np.mean(scores)), fold):
                mean = float(np.mean(scores))
                return TrialFit(mean, tuple(scores), (50,) * len(scores), True, tuple(rungs))
        mean = float(np.mean(scores))
        return TrialFit(mean, tuple(scores), (50,) * folds, False, tuple(rungs), rungs[-1])


def base_trials(count: int, folds: int) -> list[FrozenTrial]:
    """``count`` finished trials shaped like the run's (parameters, reports, attributes)."""
    rng = np.random.default_rng(SEED)
    trials = []
    for slot in range(count):
        params = {}
        for name, dist in SEARCH_SPACE.items():
            low, high = dist.low, dist.high  # type: ignore[attr-defined]
            value = low + (high - low) * rng.random()
            step = getattr(dist, "step", None)
            if isinstance(dist, optuna.distributions.IntDistribution):
                value = int(low + ((value - low) // (step or 1)) * (step or 1))
            params[name] = value
        pruned = rng.random() < 0.4
        scores = [float(rng.normal(0.05, 0.03)) for _ in range(1 if pruned else folds)]
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions=dict(SEARCH_SPACE),
                value=None if pruned else float(np.mean(scores)),
                state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                intermediate_values={i: float(np.mean(scores[: i + 1])) for i in range(folds - 1)},
                user_attrs={
                    SLOT_ATTR: slot,
                    "rounds": 50,
                    "fold_scores": scores,
                    "fold_rounds": [50] * len(scores),
                    RUNG_RMSE_ATTR: [1.5 - 0.01 * r for r in range(len(ROUND_RUNGS))],
                    FIRST_FOLD_RMSE_ATTR: 1.4,
                },
            )
        )
    return trials


def make_base(folder: Path, candidate: Candidate, count: int, folds: int) -> Path:
    """A run folder whose LONG study holds ``count`` finished trials (made once)."""
    folder.mkdir(parents=True)
    candidate.open(folder, SlotSampler(SEED, MODEL))
    if count:
        study = optuna.load_study(study_name=MODEL, storage=candidate.durable())
        study.add_trials(base_trials(count, folds))
    candidate.close()
    return folder


def run_once(
    candidate: Candidate,
    base: Path,
    run_dir: Path,
    *,
    total: int,
    measured: int,
    fit: Fit,
    folds: int,
) -> Measure:
    """Copy ``base``, run ``measured`` trials on it, then time a resume of the result."""
    shutil.copytree(base, run_dir)
    out = Measure()
    sampler = SlotSampler(SEED, MODEL)
    study = candidate.open(run_dir, sampler)
    trials = study.get_trials(deepcopy=False)
    progress = RunProgress(timeframe="15m", n_trials=total, total_trials=2 * total)
    book = TrialBook(progress, total)
    book.rebuild({MODEL: trials, MODELS[1]: []})
    slot_of = slots_of(trials)
    slots = Slots(n_trials=total, lag=1, done=dict.fromkeys(slot_of.values(), True))
    cpu, wall, fit.cpu_s = time.process_time(), time.perf_counter(), 0.0
    for _ in range(measured):
        began = time.perf_counter()
        action, slot = slots.decide()
        assert action == "ask", action
        visible = slots.visible(slot, slot_of)
        sampler.prepare(slot, visible)
        trial = study.ask(SEARCH_SPACE)
        trial.set_user_attr(SLOT_ATTR, slot)
        reference = PruningReference.of(
            [t for t in study.get_trials(deepcopy=False) if t.number in visible]
        )
        candidate.asked(trial)
        fit_began = time.perf_counter()
        outcome = fit.trial(trial, reference, folds)
        fit_ended = time.perf_counter()
        finished = record_outcome(study, trial, outcome)
        slots.done[slot] = finished.state in FINISHED
        slot_of[finished.number] = slot
        book.add(MODEL, finished)
        candidate.finished(finished, progress)
        out.path_ms.append(((fit_began - began) + (time.perf_counter() - fit_ended)) * 1000)
    candidate.drain()
    out.wall_ms_per_trial = (time.perf_counter() - wall) * 1000 / measured
    out.cpu_ms_per_trial = (time.process_time() - cpu - fit.cpu_s) * 1000 / measured
    candidate.close()
    began = time.perf_counter()
    resumed = candidate.resume(run_dir)
    fresh = RunProgress(timeframe="15m", n_trials=total, total_trials=2 * total)
    TrialBook(fresh, total).rebuild({MODEL: resumed, MODELS[1]: []})
    out.resume_ms = (time.perf_counter() - began) * 1000
    done = sum(t.state in FINISHED for t in resumed)
    assert done == total, f"{candidate.name}: {done} finished trials resumed, expected {total}"
    return out


def spread(values: list[float]) -> str:
    """Median (min-max)."""
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


COLUMNS = (
    ("trial path p50 ms", lambda m: m.p(50)),
    ("trial path p95 ms", lambda m: m.p(95)),
    ("wall ms/trial, fit included", lambda m: m.wall_ms_per_trial),
    ("CPU ms/trial outside the fit", lambda m: m.cpu_ms_per_trial),
    ("resume ms", lambda m: m.resume_ms),
)


def table(results: dict[tuple[str, int], list[Measure]], sizes: list[int]) -> str:
    """The Markdown table: each column's median (min-max) and its ratio to the first
    candidate's (the trainer's)."""
    names = [c.name for c in CANDIDATES]
    lines = [
        "| study size | storage | " + " | ".join(f"{title} | x" for title, _ in COLUMNS) + " |",
        "|---|---|" + "---|---|" * len(COLUMNS),
    ]
    for total in sizes:
        for name in names:
            cells = []
            for _, get in COLUMNS:
                values = [get(m) for m in results[(name, total)]]
                ref = statistics.median(get(m) for m in results[(names[0], total)])
                cells.append(f"{spread(values)} | {statistics.median(values) / ref:.2f}")
            lines.append(f"| {total} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


CANDIDATES: tuple[type[Candidate], ...] = (Trainer, Journal, Sqlite)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default="200,2000", help="study sizes, comma-separated")
    parser.add_argument("--measured", type=int, default=200, help="trials timed per size")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--folds", type=int, default=3, help="cvFolds (reports = folds - 1)")
    parser.add_argument("--fit-ms", type=float, default=40.0, help="the fit's CPU work")
    parser.add_argument("--fit-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dir", type=Path, default=None, help="where run folders go")
    args = parser.parse_args()
    sizes = [int(s) for s in args.trials.split(",")]
    fit = Fit(args.fit_ms, args.fit_threads)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(
        f"{os.cpu_count()} CPUs; fit: {fit.blocks} blocks on {fit.threads} threads "
        f"(~{args.fit_ms:.0f} ms idle), {args.folds} folds"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        results: dict[tuple[str, int], list[Measure]] = {}
        for total in sizes:
            measured = min(args.measured, total)
            bases = {
                c.name: make_base(
                    root / f"base-{c.name}-{total}", c(), total - measured, args.folds
                )
                for c in CANDIDATES
            }
            for rep in range(args.repeat):
                for make in CANDIDATES:  # interleaved: a change of load hits every candidate
                    run_dir = root / f"run-{make.name}-{total}-{rep}"
                    results.setdefault((make.name, total), []).append(
                        run_once(
                            make(),
                            bases[make.name],
                            run_dir,
                            total=total,
                            measured=measured,
                            fit=fit,
                            folds=args.folds,
                        )
                    )
                    shutil.rmtree(run_dir)
                print(f"  {total} trials: repetition {rep + 1} of {args.repeat}", flush=True)
            print(table(results, [total]), flush=True)  # kept if a later size is stopped
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"median (min-max) over {args.repeat} repetitions; x: median / the trainer's median")
    print(table(results, sizes))


if __name__ == "__main__":
    main()
