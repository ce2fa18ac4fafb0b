"""One of N trainer processes (workers) searching one run's studies in PostgreSQL.

Every worker loads the dataset, takes waiting slots of LONG, then of SHORT, from the
shared studies (:mod:`tjtrainer.shared_studies`: each slot goes to exactly one worker),
fits them with ``parallelism`` trials at once and tells the study, until no slot is
left. Then:

- workers 1 .. N-1 exit 0 (``running``: the run is not over; the pod is done);
- worker 0, the leader, takes any slot still waiting (a retry of a dead worker's trial),
  waits until every slot of both models is finished, refits the best trial of each
  model and saves the models, exactly once.

The leader alone writes ``progress.json``: a thread rebuilds it from the studies whenever
their count of finished trials changes (one COUNT query per model every
:data:`PROGRESS_POLL_SECONDS`), so every reader (the operator, ``kubectl get -w``, the
table) keeps reading one file, in order, with every worker's trials. A cancel (the run
folder's ``CANCEL`` marker, shared) stops every worker after its current trial; the
leader ends the run ``cancelled`` once no trial is running. The sampler works on the
database study itself (TPE with the constant liar for trials in flight): a worker's
history must include the other workers' trials, which an in-memory mirror would not.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import optuna
from optuna.pruners import NopPruner
from optuna.trial import FrozenTrial, TrialState
from threadpoolctl import threadpool_limits

from tjcontract.files import STALE_TEMPORARY_S, remove_stale_temporaries
from tjcontract.spec import total_trials
from tjtrainer.config import TrainConfig
from tjtrainer.cpus import available_cpus
from tjtrainer.errors import RunFolderBusyError, RunFolderError, TrainingError, TransientError
from tjtrainer.finalize import finish_models
from tjtrainer.matrices import Matrices, build_matrices, scale_features
from tjtrainer.progress import (
    MODELS,
    OnProgress,
    RunProgress,
    RunState,
    cancel_requested,
    read_progress,
    snapshot,
    utc_now,
    write_progress,
)
from tjtrainer.records import FINISHED, TrialBook
from tjtrainer.runlock import LOCK_FILE, RunFolderLock
from tjtrainer.sampling import (
    SLOT_ATTR,
    PruningReference,
    slot_seed,
)
from tjtrainer.search import SEARCH_SPACE, Timings
from tjtrainer.shared_studies import SharedStudies, check_storage_url
from tjtrainer.studies import check_fingerprint, mirror_study
from tjtrainer.train import (
    check_same_config,
    fingerprint,
    fit_slot,
    load_data,
    record_outcome,
    validate_config,
)
from tjtrainer.warmstart import warm_params

log = logging.getLogger("tjtrainer")

PROGRESS_POLL_SECONDS = 0.25
# How often the leader looks for slots to retry while other workers finish theirs.
WAIT_SECONDS = 1.0
MAX_FAILURES_IN_A_ROW = 3


def lock_name(worker_index: int) -> str:
    """The run-folder lock of a worker: the leader's is the one-process lock."""
    return LOCK_FILE if worker_index == 0 else f".trainer-{worker_index}.lock"


def run_worker(
    config: TrainConfig, *, on_progress: OnProgress | None, timings: Timings
) -> RunProgress:
    """Run worker ``config.worker_index`` of ``config.workers`` (see the module's text).

    Returns the run's progress: the final one for the leader, this worker's view for the
    others. Failures raise :class:`TrainingError`; the leader records them first.
    """
    progress = RunProgress(
        timeframe=config.timeframe,
        n_trials=config.n_trials,
        total_trials=total_trials(config.n_trials),
        train_ratio=config.train_ratio,
        seed=config.seed,
        cv_folds=config.cv_folds,
        embargo=config.embargo,
    )
    run = _Worker(config, progress, on_progress, timings)
    leader = config.worker_index == 0
    try:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunFolderLock(config.run_dir, name=lock_name(config.worker_index))
        with lock, threadpool_limits(limits=1, user_api="blas"):
            if leader:
                remove_stale_temporaries(config.run_dir, older_than_s=STALE_TEMPORARY_S)
            try:
                validate_config(config)
                if not 0 <= config.worker_index < config.workers:
                    raise TrainingError(
                        f"worker index {config.worker_index} is outside 0 .. {config.workers - 1}"
                    )
                check_storage_url(config.study_storage, config.workers)
                try:
                    existing = read_progress(config.run_dir)
                except ValueError as exc:
                    run.keep_progress_file = True
                    raise RunFolderError(
                        f"{exc}; delete it to resume from the trials in the study database"
                    ) from None
                if existing is not None:
                    check_same_config(existing, config)
                    if existing.state == RunState.COMPLETED:
                        log.info("run in %s already completed", config.run_dir)
                        return existing
                    progress.started_at = existing.started_at
                    run.recorded = existing.completed_trials
                return run.execute()
            except TrainingError as exc:
                run.fail(str(exc))
                raise
            except Exception as exc:
                message = f"unexpected {type(exc).__name__}: {exc}"
                run.fail(message)
                raise TransientError(message) from exc
    except RunFolderBusyError:
        raise
    except OSError as exc:
        raise TransientError(f"cannot use run folder {config.run_dir}: {exc}") from exc


class _Worker:
    """One worker's run; ``lock`` guards the progress and the counters."""

    def __init__(
        self,
        config: TrainConfig,
        progress: RunProgress,
        on_progress: OnProgress | None,
        timings: Timings,
    ) -> None:
        self.config = config
        self.progress = progress
        self.on_progress = on_progress
        self.timings = timings
        self.leader = config.worker_index == 0
        self.lock = threading.Lock()
        self.book = TrialBook(progress, config.n_trials)
        self.studies: SharedStudies | None = None
        self.cancelled = False
        self.failures_in_a_row = 0
        self.last_error: str | None = None
        self.own_trials = 0
        self.recorded = 0
        self.keep_progress_file = False
        self.warm: dict[str, list[dict[str, Any]]] = {}  # a warm start's first slots
        self._seen = -1
        self._stop_watch = threading.Event()
        self.watch_error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------
    def execute(self) -> RunProgress:
        config = self.config
        dataset, splits = load_data(config)
        scaler, features = scale_features(dataset, splits)
        matrices = build_matrices(dataset, splits, scaler, features, self._nthread(), self.timings)
        assert config.study_storage is not None
        self.studies = studies = SharedStudies(config.study_storage, config.run_dir)
        watcher: threading.Thread | None = None
        try:
            for model in MODELS:
                check_fingerprint(
                    studies.storage,
                    studies.studies[model]._study_id,
                    fingerprint(config, dataset, splits),
                    where=f"the study {studies.prefix}:{model}",
                )
                with studies.locked(model):  # the first worker resolves it, before any slot
                    self.warm[model] = warm_params(
                        config, model, studies.storage, studies.studies[model]._study_id
                    )
                studies.top_up(model, config.n_trials)
            if self.leader:
                self._check_nothing_lost()
                self.progress.state = RunState.RUNNING
                self.progress.error = None
                self.progress.finished_at = None
                self._refresh(force=True)
                watcher = threading.Thread(target=self._watch, name="tj-progress", daemon=True)
                watcher.start()
            for model in MODELS:
                if self._should_stop():
                    break
                self._search(model, matrices)
            if not self.leader and self.cancelled:
                return self._end(RunState.CANCELLED)
            if not self.leader:
                log.info(
                    "worker %d: no slot left after %d trials of its own; the leader saves "
                    "the models",
                    config.worker_index,
                    self.own_trials,
                )
                return self.progress
            # A cancel too: the run ends once the other workers' trials are told.
            if not self._wait_for_all(matrices):
                return self._end(RunState.CANCELLED)
            self._stop_watch.set()
            watcher.join()  # type: ignore[union-attr]
            watcher = None
            self._raise_watch_error()
            self._refresh(force=True)
            final = finish_models(
                config,
                dataset=dataset,
                splits=splits,
                matrices=matrices,
                studies={m: studies.trials(m) for m in MODELS},
                progress=self.progress,
                nthread=self._nthread(1),
                timings=self.timings,
            )
            if final is None:
                return self._end(RunState.CANCELLED)
            final.record_in(self.progress)
            return self._end(RunState.COMPLETED)
        finally:
            self._stop_watch.set()
            if watcher is not None:
                watcher.join()
            studies.close()

    def _check_nothing_lost(self) -> None:
        """Refuse studies holding fewer finished trials than ``progress.json`` lists."""
        assert self.studies is not None
        finished = sum(t.state in FINISHED for model in MODELS for t in self.studies.trials(model))
        if finished < self.recorded:
            raise RunFolderError(
                f"the study database holds {finished} finished trials of this run but "
                f"progress.json lists {self.recorded}: the studies lost trials (another "
                "database, or emptied); point the trainer at the database of this run, or "
                "delete progress.json to go on with the trials the database holds"
            )

    def _wait_for_all(self, matrices: Matrices) -> bool:
        """Leader: run what is still waiting until every slot of both models is finished;
        ``False`` when a cancel came first (then once no trial is running any more)."""
        assert self.studies is not None
        while True:
            if self.cancelled or cancel_requested(self.config.run_dir):
                self.cancelled = True
                if all(self.studies.pending(m)[1] == 0 for m in MODELS):
                    return False
            else:
                busy = False
                for model in MODELS:
                    waiting = self.studies.top_up(model, self.config.n_trials)
                    if waiting:
                        self._search(model, matrices)
                    # Both counts: a dead worker's trial found stale by this very call
                    # is queued again (waiting) and no longer running.
                    still_waiting, running = self.studies.pending(model)
                    busy = busy or waiting > 0 or still_waiting > 0 or running > 0
                if not busy:
                    return True
            self._raise_watch_error()
            time.sleep(WAIT_SECONDS)

    def _end(self, state: RunState) -> RunProgress:
        if not self.leader:
            self.progress.state = state
            log.info("worker %d: %s", self.config.worker_index, state)
            return self.progress
        self._stop_watch.set()
        self._refresh(force=True)
        with self.lock:
            self.progress.state = state
            self.progress.finished_at = utc_now()
            self._write()
        log.info("run %s", state)
        return self.progress

    def fail(self, message: str) -> None:
        """Leader: record the failure in ``progress.json``; the others only raise."""
        self._stop_watch.set()
        self.progress.state = RunState.FAILED
        self.progress.error = message
        self.progress.finished_at = utc_now()
        if not self.leader or self.keep_progress_file:
            return
        try:
            with self.lock:
                self._write()
        except Exception as exc:  # a full disk, say: the failure itself is raised anyway
            log.error("could not record the failure in %s: %s", self.config.run_dir, exc)

    def _nthread(self, parallelism: int | None = None) -> int:
        return max(1, available_cpus() // (parallelism or self.config.parallelism))

    # -- progress (leader) -----------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop_watch.wait(PROGRESS_POLL_SECONDS):
            try:
                self._refresh()
            except BaseException as exc:  # a full disk: the main thread raises it
                self.watch_error = exc
                return

    def _raise_watch_error(self) -> None:
        if self.watch_error is not None:
            raise self.watch_error

    def _refresh(self, *, force: bool = False) -> None:
        """Rebuild the trial log from the studies when their finished count changed."""
        assert self.studies is not None
        count = self.studies.finished_count()
        if count == self._seen and not force:
            return
        trials = {m: self.studies.trials(m) for m in MODELS}
        with self.lock:
            self._seen = count
            self.book.rebuild(trials)
            self._write()

    def _write(self) -> None:
        """Write ``progress.json`` and call back; lock held."""
        started = time.perf_counter()
        write_progress(self.config.run_dir, self.progress)
        self.timings.progress_s += time.perf_counter() - started
        if self.on_progress is not None:
            self.on_progress(snapshot(self.progress))

    # -- the search ------------------------------------------------------------------
    def _search(self, model: str, matrices: Matrices) -> None:
        matrices.use_labels(model, self.timings)
        if self.config.parallelism == 1:
            self._trials(model, matrices)
            return
        with ThreadPoolExecutor(self.config.parallelism, thread_name_prefix="trial") as pool:
            futures = [
                pool.submit(self._trials, model, matrices) for _ in range(self.config.parallelism)
            ]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error

    def _should_stop(self) -> bool:
        if self.cancelled or self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            return True
        if self.watch_error is not None:
            return True
        if cancel_requested(self.config.run_dir):
            self.cancelled = True
            return True
        return False

    def _trials(self, model: str, matrices: Matrices) -> None:
        """Take, fit and tell slots of ``model`` until none is waiting (or a stop)."""
        assert self.studies is not None
        studies = self.studies
        folds = matrices.fold_inputs(model)
        nthread = self._nthread()
        while not self._should_stop():
            started = time.perf_counter()
            found = studies.take(model)
            if found is None:
                return
            taken, history = found
            slot = taken.user_attrs.get(SLOT_ATTR, taken.number)
            try:
                mirror, trial = self._sample(model, slot, taken, history)
                fresh = {k: v for k, v in trial.params.items() if k not in taken.params}
                studies.set_params(taken._trial_id, fresh, trial.distributions)
                reference = PruningReference.of([t for t in history if t.state in FINISHED])
                self.timings.storage_s += time.perf_counter() - started
                log.info(
                    "worker %d: %s trial #%d (slot %s) started",
                    self.config.worker_index,
                    model,
                    taken.number,
                    slot,
                )
                outcome = fit_slot(
                    trial,
                    model=model,
                    slot=slot,
                    seed=self.config.seed,
                    reference=reference,
                    folds=folds,
                    nthread=nthread,
                    timings=self.timings,
                )
                started = time.perf_counter()
                finished = record_outcome(mirror, trial, outcome)
                told = studies.finish(taken._trial_id, finished)
                self.timings.storage_s += time.perf_counter() - started
            finally:
                studies.forget(taken._trial_id)  # no heartbeat for a trial left behind
            if not told:
                log.warning(
                    "trial %d was taken for dead by another worker (its heartbeat was late); "
                    "its retry runs instead",
                    taken.number,
                )
                continue
            with self.lock:
                self.own_trials += 1
                if finished.state in FINISHED:
                    self.failures_in_a_row = 0
                else:
                    self.failures_in_a_row += 1
                    self.last_error = str(finished.user_attrs.get("error"))
            log.info(
                "worker %d: %s trial #%d (slot %s) %s value=%s",
                self.config.worker_index,
                model,
                taken.number,
                slot,
                finished.state.name.lower(),
                finished.value,
            )
            if finished.state not in FINISHED:
                studies.top_up(model, self.config.n_trials)  # a new slot for the failed one
        if self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise TrainingError(
                f"{MAX_FAILURES_IN_A_ROW} {model} trials in a row failed on worker "
                f"{self.config.worker_index}; last error: {self.last_error}"
            )

    def _sample(
        self, model: str, slot: int, taken: FrozenTrial, history: list[FrozenTrial]
    ) -> tuple[optuna.Study, optuna.Trial]:
        """Sample slot ``slot`` in memory from the study's finished and running trials
        (one read of the database instead of one per parameter and per look), TPE seeded
        by the slot; a retried trial keeps the parameters it had, and a warm start's
        first slots take the parameters it names."""
        sampler = optuna.samplers.TPESampler(
            multivariate=True,
            constant_liar=True,  # trials running elsewhere count as bad: not sampled again
            seed=slot_seed(self.config.seed, model, slot),
        )
        shown = [t for t in history if t.state in (*FINISHED, TrialState.RUNNING)]
        mirror = mirror_study(shown, sampler=sampler, pruner=NopPruner(), name=model)
        warm = self.warm.get(model, [])
        if taken.params:
            mirror.enqueue_trial(taken.params)
        elif isinstance(slot, int) and slot < len(warm):
            mirror.enqueue_trial(warm[slot])  # a warm start: the earlier version's best
        return mirror, mirror.ask(SEARCH_SPACE)
