"""A training run: search LONG and SHORT, refit the best of each, score it once on the
held-out tail, save the models; progress after every trial; cancel and resume.

The entry point is :func:`run_training`. It is idempotent per run folder: a completed run
returns its progress without training again, an interrupted one resumes from
``study.journal`` (see :mod:`tjtrainer.studies`), a cancelled one stays cancelled while the
``CANCEL`` marker exists.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from threadpoolctl import threadpool_limits

from tjcontract.files import STALE_TEMPORARY_S, remove_stale_temporaries
from tjcontract.names import TIMEFRAMES
from tjcontract.spec import FIELDS_BY_NAME, PROMOTIONS, total_trials
from tjtrainer.config import TrainConfig
from tjtrainer.cpus import available_cpus
from tjtrainer.dataset_reader import Dataset, load_dataset
from tjtrainer.errors import (
    DatasetError,
    RunFolderBusyError,
    RunFolderError,
    TrainingError,
    TransientError,
)
from tjtrainer.finalize import finish_models
from tjtrainer.matrices import Matrices, build_matrices, scale_features
from tjtrainer.progress import (
    MODELS,
    STUDY_FILE,
    OnProgress,
    RunProgress,
    RunState,
    cancel_requested,
    read_progress,
    snapshot,
    utc_now,
    write_progress,
)
from tjtrainer.publisher import Publisher
from tjtrainer.records import FINISHED, TrialBook, listed
from tjtrainer.runlock import RunFolderLock
from tjtrainer.sampling import (
    SLOT_ATTR,
    PruningReference,
    Slots,
    SlotSampler,
    reporter,
    rung_check,
    slots_of,
)
from tjtrainer.search import SEARCH_SPACE, FoldInput, Timings, TrialFit, fit_trial, trial_seed
from tjtrainer.splits import Splits, make_splits
from tjtrainer.studies import DurableStudies, record_outcome

log = logging.getLogger("tjtrainer")

MAX_FAILURES_IN_A_ROW = 3


def validate_config(config: TrainConfig) -> None:
    """Raise :class:`TrainingError` naming the field and the allowed values (the spec's
    bounds, :mod:`tjcontract.spec`)."""
    if config.timeframe not in TIMEFRAMES:
        raise TrainingError(
            f"timeframe must be one of {', '.join(TIMEFRAMES)}, got {config.timeframe!r}"
        )
    for attr, name in _BOUNDED:
        spec_field = FIELDS_BY_NAME[name]
        low, high = spec_field.minimum, spec_field.maximum
        assert low is not None and high is not None
        value = getattr(config, attr)
        integral = isinstance(value, int) and not isinstance(value, bool)
        if (spec_field.type == "integer" and not integral) or not low <= value <= high:
            raise TrainingError(f"{attr} must be {spec_field.allowed()}, got {value!r}")
    if config.promotion not in PROMOTIONS:
        raise TrainingError(
            f"promotion must be one of {', '.join(PROMOTIONS)}, got {config.promotion!r}"
        )


# TrainConfig's bounded fields and the spec field whose bounds they have.
_BOUNDED = (
    ("n_trials", "nTrials"),
    ("train_ratio", "trainRatio"),
    ("seed", "seed"),
    ("parallelism", "parallelism"),
    ("cv_folds", "cvFolds"),
    ("embargo", "embargo"),
    ("workers", "workers"),
)


def run_training(
    config: TrainConfig,
    *,
    on_progress: OnProgress | None = None,
    timings: Timings | None = None,
) -> RunProgress:
    """Run (or resume) the training described by ``config``.

    After every trial, ``progress.json`` in ``config.run_dir`` is rewritten and then
    ``on_progress`` is called with a snapshot. Returns the final progress, whose state is
    ``completed`` or ``cancelled``. On failure, writes state ``failed`` with the error and
    raises :class:`TrainingError`. ``timings``, when given, collects where time went.
    With a PostgreSQL ``config.study_storage`` this process is one worker of several
    (:mod:`tjtrainer.workers`).
    """
    if config.shares_studies:
        from tjtrainer.workers import run_worker

        return run_worker(config, on_progress=on_progress, timings=timings or Timings())
    progress = RunProgress(
        timeframe=config.timeframe,
        n_trials=config.n_trials,
        total_trials=total_trials(config.n_trials) if isinstance(config.n_trials, int) else 0,
        train_ratio=config.train_ratio,
        seed=config.seed,
        cv_folds=config.cv_folds,
        embargo=config.embargo,
    )
    run = _Run(config, progress, on_progress, timings or Timings())
    try:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        # Our numpy maths works on small vectors between XGBoost rounds: multithreaded
        # BLAS only adds threads that spin and steal the cores XGBoost is using.
        with RunFolderLock(config.run_dir), threadpool_limits(limits=1, user_api="blas"):
            # What the atomic writes of a trainer killed here left (its lock is ours now).
            remove_stale_temporaries(config.run_dir, older_than_s=STALE_TEMPORARY_S)
            try:
                validate_config(config)
                existing = _read_existing(config, run)
                if existing is not None:
                    check_same_config(existing, config)
                if existing is not None and existing.state == RunState.COMPLETED:
                    log.info(
                        "run in %s already completed (%s)", config.run_dir, existing.model_version
                    )
                    return existing
                if existing is not None:
                    progress.started_at = existing.started_at
                    # Kept if the run fails before the study is read; checked against it.
                    progress.take_trials(existing)
                    run.recorded = existing.completed_trials
                return run.execute()
            except TrainingError as exc:
                run.fail(str(exc))
                raise
            except Exception as exc:
                message = f"unexpected {type(exc).__name__}: {exc}"
                run.fail(message)
                raise TransientError(message) from exc
            finally:
                # Also on an interrupt: no snapshot is published after the caller's
                # own record of how the run ended.
                run.publisher.close()
    except RunFolderBusyError:
        raise
    except OSError as exc:
        raise TransientError(f"cannot use run folder {config.run_dir}: {exc}") from exc


def fingerprint(config: TrainConfig, dataset: Dataset, splits: Splits) -> dict[str, Any]:
    """What the trials of a study depend on: resuming with anything else would mix scores."""
    return {
        "timeframe": config.timeframe,
        "dataset_checksum": dataset.checksum,
        "train_ratio": config.train_ratio,
        "horizon": dataset.horizon,
        "cv_folds": config.cv_folds,
        "embargo": config.embargo,
        "search_stride": splits.stride,
        "search_space": {k: repr(v) for k, v in SEARCH_SPACE.items()},
    }


def check_same_config(existing: RunProgress, config: TrainConfig) -> None:
    """Refuse a run folder whose recorded run was asked something else: its results (or
    its trials, for a resume) are not this run's. Fields the file did not record are not
    compared."""
    asked = {
        "timeframe": config.timeframe,
        "n_trials": config.n_trials,
        "train_ratio": config.train_ratio,
        "seed": config.seed,
        "cv_folds": config.cv_folds,
        "embargo": config.embargo,
    }
    differences = [
        f"{key} {getattr(existing, key)!r}, asked {value!r}"
        for key, value in asked.items()
        if getattr(existing, key) is not None and getattr(existing, key) != value
    ]
    if differences:
        raise RunFolderError(
            f"{config.run_dir} holds a {existing.state} run of another configuration "
            f"({'; '.join(differences)}); it is not this run's result: give this run "
            "a run folder of its own"
        )


def load_data(config: TrainConfig) -> tuple[Dataset, Splits]:
    """The run's dataset and its splits."""
    dataset = load_dataset(config.data_root, config.timeframe)
    try:
        splits = make_splits(
            dataset.rows,
            train_ratio=config.train_ratio,
            horizon=dataset.horizon,
            folds=config.cv_folds,
            embargo=config.embargo,
            stride=config.search_stride,
        )
    except DatasetError as exc:
        raise DatasetError(f"{dataset.path}: {exc}") from None
    return dataset, splits


def _read_existing(config: TrainConfig, run: _Run) -> RunProgress | None:
    try:
        return read_progress(config.run_dir)
    except ValueError as exc:
        run.keep_progress_file = True  # not ours to overwrite: the person decides
        raise RunFolderError(
            f"{exc}; delete it to resume from the trials in {STUDY_FILE} (or delete the "
            "run folder to start afresh)"
        ) from None


def fit_slot(
    trial: optuna.Trial,
    *,
    model: str,
    slot: int,
    seed: int,
    reference: PruningReference,
    folds: list[FoldInput],
    nthread: int,
    timings: Timings,
) -> TrialFit | str:
    """The fit of ``trial`` in ``slot`` (seeded by the slot, pruned against ``reference``),
    or the error that stopped it; one process's trials and the workers' alike."""
    try:
        return fit_trial(
            trial.params,
            folds,
            seed=trial_seed(seed, model, slot),
            nthread=nthread,
            report=reporter(trial, reference),
            rungs=rung_check(reference),
            timings=timings,
        )
    except Exception as exc:
        log.warning("%s trial %d failed: %s", model, trial.number, exc)
        return f"{type(exc).__name__}: {exc}"


class _Run:
    """The state of one run while it executes; one lock guards all of it."""

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
        self.lock = threading.Lock()
        self.book = TrialBook(progress, config.n_trials)
        self.cancelled = False
        self.broken = False  # a worker raised (a journal or progress write, the callback)
        self.samplers: dict[str, SlotSampler] = {}
        self.slots: dict[str, Slots] = {}
        self.slot_of: dict[str, dict[int, int]] = {}
        self.changed = threading.Condition(self.lock)  # a slot of either model finished
        self.held: list[tuple[str, FrozenTrial]] = []  # finished before their model's turn
        self.studies: DurableStudies | None = None
        self.search: dict[str, optuna.Study] = {}  # each model's, on the journal
        self.recorded = 0  # finished trials the existing progress.json lists
        self.keep_progress_file = False  # it is unreadable: leave it as found
        # progress.json and on_progress, written off the trial path once the journal
        # holds what they name (tjtrainer.publisher).
        self.publisher = Publisher(config.run_dir, on_progress, timings)

    # -- lifecycle -------------------------------------------------------------------
    def execute(self) -> RunProgress:
        config = self.config
        dataset, splits = self._load_data()
        scaler, features = scale_features(dataset, splits)
        # Opening the journal replays it (a few milliseconds per hundred trials, and a
        # previous release's study.db is copied first): do it while XGBoost builds the
        # matrices, which holds no GIL.
        with ThreadPoolExecutor(1, thread_name_prefix="tj-open-study") as pool:
            opening = pool.submit(DurableStudies, config.run_dir, recorded=self.recorded)
            try:
                matrices = build_matrices(
                    dataset, splits, scaler, features, self._nthread(), self.timings
                )
            finally:
                self.studies = opening.result()
        self.publisher.sync = self.studies.sync
        self.studies.check_fingerprint(fingerprint(config, dataset, splits))
        self._resume()
        self._publish()
        self.publisher.flush()  # the run is shown as running before its first trial
        if cancel_requested(config.run_dir):
            return self._finish(RunState.CANCELLED)
        self._search(matrices)
        if self.cancelled:
            return self._finish(RunState.CANCELLED)
        final = finish_models(
            config,
            dataset=dataset,
            splits=splits,
            matrices=matrices,
            studies={m: self.search[m].get_trials(deepcopy=False) for m in MODELS},
            progress=self.progress,
            nthread=self._nthread(1),
            timings=self.timings,
        )
        if final is None:
            return self._finish(RunState.CANCELLED)
        final.record_in(self.progress)
        return self._finish(RunState.COMPLETED)

    def _load_data(self) -> tuple[Dataset, Splits]:
        return load_data(self.config)

    def _resume(self) -> None:
        """Take over what an earlier process left in the study."""
        assert self.studies is not None
        stale = self.studies.fail_stale()
        found = {m: self.studies.trials(m) for m in MODELS}
        # SHORT trials that ended while LONG's search went on (two trials at once) wait
        # again until it is over, so the progress still lists LONG's trials, then SHORT's.
        first, later = MODELS
        if sum(t.state in FINISHED for t in found[first]) < self.config.n_trials:
            self.held = [(later, trial) for trial in listed(found[later])]
            found[later] = []
        self.book.rebuild(found)
        if stale or self.progress.completed_trials or self.held:
            log.info(
                "resuming: %d finished trials kept, %d interrupted trials marked failed",
                self.progress.completed_trials + len(self.held),
                stale,
            )
        for model in MODELS:
            trials = self.studies.trials(model)
            self.samplers[model] = SlotSampler.of_run(self.config, model, self.studies)
            self.search[model] = optuna.load_study(
                study_name=model,
                storage=self.studies.storage,
                sampler=self.samplers[model],
                pruner=optuna.pruners.NopPruner(),
            )
            self.slot_of[model] = slots_of(trials)
            by_number = {t.number: t for t in trials}
            self.slots[model] = Slots(
                n_trials=self.config.n_trials,
                lag=self.config.parallelism,
                done={
                    slot: by_number[number].state in FINISHED
                    for number, slot in self.slot_of[model].items()
                },
                condition=self.changed,
            )
        self.progress.state = RunState.RUNNING
        self.progress.error = None
        self.progress.finished_at = None

    def _finish(self, state: RunState) -> RunProgress:
        self.progress.state = state
        self.progress.finished_at = utc_now()
        self._publish()
        self.publisher.flush()
        self.publisher.close()
        log.info("run %s", state)
        return self.progress

    def fail(self, message: str) -> None:
        """Record the failure (what failed may be a progress write or the callback)."""
        self.progress.state = RunState.FAILED
        self.progress.error = message
        self.progress.finished_at = utc_now()
        # What is queued is published first, so that no older snapshot lands after this.
        self.publisher.close()
        if self.keep_progress_file:
            return
        try:
            if self.studies is not None:
                with contextlib.suppress(OSError):  # a full disk: the failure is written anyway
                    self.studies.sync()
            write_progress(self.config.run_dir, self.progress)
            if self.on_progress is not None:
                self.on_progress(snapshot(self.progress))
        except Exception as exc:  # a full disk, say: the failure itself is raised anyway
            log.error("could not record the failure in %s: %s", self.config.run_dir, exc)

    def _publish(self) -> None:
        """Have ``progress.json`` rewritten and ``on_progress`` called with a snapshot (by
        the publisher, after the journal's fsync); with parallel trials, called with the
        lock held, so snapshots are taken in the order trials are counted. Raises the
        first error of an earlier publication."""
        self.progress.updated_at = utc_now()  # the run's own copy stays as fresh as the file
        self.publisher.submit(snapshot(self.progress))

    def _nthread(self, parallelism: int | None = None) -> int:
        """XGBoost threads per trial: the CPUs we may use shared by the parallel trials."""
        return max(1, available_cpus() // (parallelism or self.config.parallelism))

    # -- the search ------------------------------------------------------------------
    def _search(self, matrices: Matrices) -> None:
        """Both models' searches. One trial at a time: LONG's, then SHORT's. Several at
        once: the workers take the next slot either model may ask, LONG's first, so that
        a worker whose next LONG slot must wait for an older LONG trial (to be sampled
        from exactly the trials before it) runs a SHORT trial meanwhile. Each model's
        trials are the same either way; SHORT's matrices are then a copy with its labels."""
        todo = [m for m in MODELS if self.book.finished[m] < self.config.n_trials]
        if not todo:
            return
        with self.lock:
            self.progress.current_model = todo[0]
        if self.config.parallelism == 1:
            for model in todo:
                with self.lock:
                    self.progress.current_model = model
                matrices.use_labels(model, self.timings)
                self._worker([model], {model: matrices.fold_inputs(model)}.__getitem__)
                if self.cancelled:
                    return
            return
        matrices.use_labels(todo[0], self.timings)
        folds = {todo[0]: matrices.fold_inputs(todo[0])}
        building = threading.Lock()

        def folds_of(model: str) -> list[FoldInput]:
            with building:  # the first worker to need them builds them (no GIL held)
                if model not in folds:
                    folds[model] = matrices.copy_for(model, self.timings).fold_inputs(model)
            return folds[model]

        with ThreadPoolExecutor(self.config.parallelism, thread_name_prefix="trial") as pool:
            futures = [
                pool.submit(self._worker, todo, folds_of) for _ in range(self.config.parallelism)
            ]
            errors = [f.exception() for f in futures]
        with self.lock:
            self._hand_over()  # what a cancel or an error left held
        for error in errors:
            if error is not None:
                raise error

    def _worker(self, models: list[str], folds_of: Callable[[str], list[FoldInput]]) -> None:
        nthread = self._nthread()
        try:
            while True:
                with self.lock:
                    picked = self._next_slot(models)
                    if picked is None:
                        break
                    model, slot = picked
                    study, slots = self.search[model], self.slots[model]
                    slot_of = self.slot_of[model]
                    visible = slots.visible(slot, slot_of)
                    self.samplers[model].prepare(slot, visible)
                    # The journal holds the trial RUNNING with its parameters from here.
                    trial = study.ask(SEARCH_SPACE)
                    trial.set_user_attr(SLOT_ATTR, slot)
                    reference = PruningReference.of(
                        [t for t in study.get_trials(deepcopy=False) if t.number in visible]
                    )
                    slots.in_flight.add(slot)
                outcome = fit_slot(
                    trial,
                    model=model,
                    slot=slot,
                    seed=self.config.seed,
                    reference=reference,
                    folds=folds_of(model),
                    nthread=nthread,
                    timings=self.timings,
                )
                with self.lock:
                    finished = self._record(study, trial, outcome)
                    slots.in_flight.discard(slot)
                    slots.done[slot] = finished.state in FINISHED
                    slot_of[finished.number] = slot
                    self._hand_over(model, finished)
                    self.changed.notify_all()
        except BaseException:
            self.broken = True  # the other workers start no new trial
            raise
        finally:
            with self.lock:
                self.changed.notify_all()
        if self.book.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            last = self.progress.trials[-1]
            raise TrainingError(
                f"{MAX_FAILURES_IN_A_ROW} {last.model} trials in a row failed; last error: "
                f"{last.error}"
            )

    def _hand_over(self, model: str | None = None, trial: FrozenTrial | None = None) -> None:
        """Count a finished ``trial`` (already in the study) and publish the progress, in
        the models' order: the progress lists LONG's trials, then SHORT's, as when the
        models are searched one after the other, so a SHORT trial that ends while LONG's
        search goes on is held until it is over (a killed process finds it in the study,
        and the resumed run holds it again: see ``_resume``). Without a trial: publish all
        that is held. Lock held."""
        if trial is not None:
            assert model is not None
            self.held.append((model, trial))
        keep = []
        for held_model, held in sorted(self.held, key=lambda h: MODELS.index(h[0])):
            earlier = MODELS[: MODELS.index(held_model)]
            if trial is not None and not all(self._search_over(m) for m in earlier):
                keep.append((held_model, held))
                continue
            self.book.add(held_model, held)
            self.progress.current_model = held_model
            self.held.remove((held_model, held))
            self._publish()
        self.held = keep

    def _search_over(self, model: str) -> bool:
        """No more trials of ``model`` will start or finish. Lock held."""
        slots = self.slots.get(model)
        return slots is None or (slots.decide()[0] == "stop" and not slots.in_flight)

    def _next_slot(self, models: list[str]) -> tuple[str, int] | None:
        """The model and slot to ask next, the first of ``models`` that may ask one,
        waiting while each depends on trials in flight; ``None`` when their searches are
        over. Called with the lock held."""
        while not self._should_stop():
            over = 0
            for model in models:
                action, slot = self.slots[model].decide()
                if action == "ask":
                    return model, slot
                over += action == "stop"
            if over == len(models):
                return None
            self.changed.wait(timeout=1.0)  # and look at the cancel marker again
        return None

    def _should_stop(self) -> bool:
        """Whether the search must end now (an error, a cancel); lock held."""
        if self.cancelled or self.broken:
            return True
        if self.book.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            return True
        if cancel_requested(self.config.run_dir):
            self.cancelled = True
            return True
        return False

    def _record(
        self, study: optuna.Study, trial: optuna.Trial, outcome: TrialFit | str
    ) -> FrozenTrial:
        """Tell the journal how ``trial`` ended (durable before any progress claims it)."""
        started = time.perf_counter()
        finished = record_outcome(study, trial, outcome)
        self.timings.storage_s += time.perf_counter() - started
        return finished
