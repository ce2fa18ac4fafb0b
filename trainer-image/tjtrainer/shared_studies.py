"""The studies of a run shared by several trainer processes, in PostgreSQL.

Each model's study lives in one PostgreSQL database (Optuna's ``RDBStorage``), named
after the run (:func:`study_prefix`), so any number of workers on any node open the same
ones. What keeps the search exact with workers racing:

- **Slots queued once.** A model's study holds ``nTrials`` WAITING trials (the slots),
  topped up under a PostgreSQL advisory lock (:meth:`SharedStudies.top_up`): the number
  queued is ``nTrials`` minus the finished (complete or pruned) and the waiting or running
  ones, so a second worker, a restarted one or a repeated call adds nothing. A worker
  takes a slot by moving it WAITING → RUNNING in one row-locked update (Optuna's
  ``set_trial_state_values``, ``SELECT … FOR UPDATE``): exactly one worker gets it. No
  slot left means no trial to run: there are never more than ``nTrials`` finished.
- **Heartbeats.** A running trial's heartbeat is recorded every
  :data:`HEARTBEAT_SECONDS`; a trial whose heartbeat is older than :data:`GRACE_SECONDS`
  (its pod died) is failed by whichever worker looks next, and Optuna's
  ``RetryHeartbeatStaleTrialCallback`` queues it again with the same parameters and slot.
- **A failed trial** (an error of its own) keeps its place in the log; the next
  :meth:`top_up` queues a new slot for it, as one process does today.

- **A database restart.** Every call below that a restart can cut is retried from its
  start (each re-reads what it counts) for :data:`RECONNECT_SECONDS`, on new connections.

Nothing here logs the database URL (it holds a password): :func:`storage_label` is what
a message may name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError, SQLAlchemyError

from tjtrainer.config import is_run_folder_storage
from tjtrainer.errors import TrainingError, TransientError
from tjtrainer.progress import MODELS
from tjtrainer.sampling import SLOT_ATTR

HEARTBEAT_SECONDS = 5
# A trial whose heartbeat is older than this is taken for dead and queued again.
GRACE_SECONDS = 20
# How often a killed trial is queued again before its slot is given a new sample.
MAX_RETRIES = 3
# How long a worker waits for a database that went away (a restart) before it fails.
RECONNECT_SECONDS = 120.0
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("tjtrainer")

# Heartbeats and their retry callback are "experimental" in Optuna (since 2.8/2.9): the
# warnings would only add lines to every worker's output. The version is pinned.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _transient(err: BaseException | None) -> bool:
    """Whether ``err`` (or what caused it) is a lost or refused database connection."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, (OperationalError, InterfaceError)):
            return True
        err = err.__cause__ or err.__context__
    return False


def _reconnecting(method: Callable[P, T]) -> Callable[P, T]:
    """Retry ``method`` while the database is away (restarted, failed over), for at most
    :data:`RECONNECT_SECONDS`; the pool's pre-ping then opens new connections. Each
    method so wrapped is safe to repeat from its start (it re-reads what it counts)."""

    @functools.wraps(method)
    def again(*args: P.args, **kwargs: P.kwargs) -> T:
        deadline = time.monotonic() + RECONNECT_SECONDS
        delay = 0.5
        while True:
            try:
                return method(*args, **kwargs)
            except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as err:
                if not _transient(err) or time.monotonic() > deadline:
                    raise
                reason = str(getattr(err, "orig", None) or err).strip().splitlines()
                log.warning(
                    "the study database is unreachable (%s); trying again in %.1f s",
                    reason[0] if reason else type(err).__name__,
                    delay,
                )
                studies = args[0]
                assert isinstance(studies, SharedStudies)
                studies.storage.remove_session()
                time.sleep(delay)
                delay = min(5.0, 2 * delay)

    return again


def storage_label(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "an unreadable database URL"


def check_storage_url(url: str | None, workers: int) -> None:
    """Refuse a study storage that cannot serve ``workers`` trainer processes.

    Raises:
        TrainingError: SQLite with several workers, or a URL that is not PostgreSQL's.
    """
    if is_run_folder_storage(url):
        if workers > 1:
            raise TrainingError(
                f"workers {workers} need the studies in PostgreSQL, not the run folder's "
                "study.journal: give the trainer --study-storage postgresql+psycopg://... "
                "(TJ_STUDY_STORAGE_URL; on a cluster the chart's database.url or "
                "database.existingSecret), or run with workers 1"
            )
        return
    assert url is not None
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise TrainingError(
            "the study storage URL cannot be read: give postgresql+psycopg://user:password"
            "@host:5432/database"
        ) from None
    if backend != "postgresql":
        raise TrainingError(
            f"the study storage must be PostgreSQL (or the run folder's own study.journal), "
            f"got {storage_label(url)}: give postgresql+psycopg://user:password@host/database"
        )


def study_prefix(run_dir: Path) -> str:
    """What names the studies of the run in ``run_dir``: its namespace and folder
    (``<name>-<uid>``, so one run's alone), the same whichever path the volume is
    mounted at (each worker pod, the dashboard on the host)."""
    return f"tj:{run_dir.parent.name}/{run_dir.name}"


def _lock_key(name: str) -> int:
    """A PostgreSQL advisory lock key (a signed 64-bit integer) for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _unreachable(url: str, err: BaseException) -> TransientError:
    reason = str(getattr(err, "orig", None) or err).strip().splitlines()
    host = make_url(url).host or "its unix socket"
    return TransientError(
        f"cannot use the study database on {host} ({reason[0] if reason else type(err).__name__}); "
        "check that PostgreSQL is running there and that the URL's user, password and "
        "database are right (chart value database.url or database.existingSecret)"
    )


class SharedStudies:
    """The run's LONG and SHORT studies in PostgreSQL, as one worker sees them.

    Raises:
        TransientError: the database cannot be reached or used (the message names the
            host, never the password).
    """

    def __init__(self, url: str, run_dir: Path) -> None:
        self.url = url
        self.prefix = study_prefix(run_dir)
        self._lock_engine = sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=1)
        self.studies: dict[str, optuna.Study] = {}
        try:
            # Optuna creates its tables when they are missing: one worker at a time.
            with self._locked("schema"):
                self.storage = RDBStorage(
                    url,
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRIES
                    ),
                )
                for model in MODELS:
                    self.studies[model] = optuna.create_study(
                        storage=self.storage,
                        study_name=f"{self.prefix}:{model}",
                        direction="maximize",
                        load_if_exists=True,
                    )
        except SQLAlchemyError as err:
            self._lock_engine.dispose()
            raise _unreachable(url, err) from None
        self._beating: set[int] = set()
        self._beat_lock = threading.Lock()
        self._stop = threading.Event()
        self._heart = threading.Thread(target=self._beat, name="tj-heartbeat", daemon=True)
        self._heart.start()

    # -- locking -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        """Hold a session advisory lock of this run (released if the process dies)."""
        key = _lock_key(f"{self.prefix}:{what}")
        with self._lock_engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                connection.commit()

    def locked(self, model: str) -> contextlib.AbstractContextManager[None]:
        """The lock under which ``model``'s slots are queued (one worker at a time)."""
        return self._locked(f"slots:{model}")

    # -- the fingerprint -----------------------------------------------------------------
    def user_attrs(self, model: str) -> dict[str, Any]:
        return self.storage.get_study_user_attrs(self.studies[model]._study_id)

    def set_user_attr(self, model: str, key: str, value: Any) -> None:
        self.storage.set_study_user_attr(self.studies[model]._study_id, key, value)

    # -- slots ---------------------------------------------------------------------------
    @_reconnecting
    def trials(self, model: str) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.studies[model]._study_id, deepcopy=False)

    @_reconnecting
    def finished_count(self) -> int:
        """Finished (and failed) trials of both models: one cheap COUNT per model."""
        states = (*FINISHED, TrialState.FAIL)
        return sum(
            self.storage.get_n_trials(self.studies[m]._study_id, state=states) for m in MODELS
        )

    @_reconnecting
    def top_up(self, model: str, n_trials: int) -> int:
        """Fail dead workers' trials (queueing their retries), then queue slots until
        finished + waiting + running = ``n_trials``; return how many are waiting."""
        study = self.studies[model]
        with self.locked(model):
            fail_stale_trials(study)
            trials = self.trials(model)
            finished = sum(t.state in FINISHED for t in trials)
            waiting = sum(t.state == TrialState.WAITING for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            used = {t.user_attrs.get(SLOT_ATTR) for t in trials}
            slot = 0
            for _ in range(n_trials - finished - waiting - running):
                while slot in used:
                    slot += 1
                study.enqueue_trial({}, user_attrs={SLOT_ATTR: slot})
                used.add(slot)
                waiting += 1
        return waiting

    @_reconnecting
    def pending(self, model: str) -> tuple[int, int]:
        """(waiting, running) trials of ``model``, after failing dead workers' trials
        (under the lock of :meth:`top_up`, which must count a retry with its trial)."""
        with self.locked(model):
            fail_stale_trials(self.studies[model])
            trials = self.trials(model)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        return waiting, sum(t.state == TrialState.RUNNING for t in trials)

    @_reconnecting
    def take(self, model: str) -> tuple[FrozenTrial, list[FrozenTrial]] | None:
        """Take a waiting slot of ``model`` (exactly one worker gets each) and start its
        heartbeat; return it (a retried trial carries its params) and the study's other
        trials as read then (one read for both); ``None`` when none is waiting."""
        trials = self.trials(model)
        for waiting in (t for t in trials if t.state == TrialState.WAITING):
            # The heartbeat first: a trial RUNNING without one would never be taken for
            # dead (Optuna skips it), and a worker killed in between would leave it so.
            self.storage.record_heartbeat(waiting._trial_id)
            try:
                if not self.storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING):
                    continue  # another worker took it
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            with self._beat_lock:
                self._beating.add(waiting._trial_id)
            return waiting, [t for t in trials if t._trial_id != waiting._trial_id]
        return None

    @_reconnecting
    def set_params(
        self, trial_id: int, params: dict[str, Any], distributions: dict[str, BaseDistribution]
    ) -> None:
        """Record a taken trial's sampled parameters (its retry runs the same)."""
        for name, value in params.items():
            distribution = distributions[name]
            self.storage.set_trial_param(
                trial_id, name, distribution.to_internal_repr(value), distribution
            )

    @_reconnecting
    def finish(self, trial_id: int, finished: FrozenTrial) -> bool:
        """Copy how the trial ended (learnt in memory) into the study, the state last;
        ``False`` if another worker failed it meanwhile (its heartbeat was late)."""
        try:
            for step, value in finished.intermediate_values.items():
                self.storage.set_trial_intermediate_value(trial_id, step, value)
            for key, value in finished.user_attrs.items():
                self.storage.set_trial_user_attr(trial_id, key, value)
            self.storage.set_trial_state_values(trial_id, finished.state, finished.values)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    def forget(self, trial_id: int) -> None:
        """Stop the heartbeat of a trial this worker told or left behind (a trial left
        behind goes stale and is run again)."""
        with self._beat_lock:
            self._beating.discard(trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._beat_lock:
                beating = list(self._beating)
            for trial_id in beating:
                with contextlib.suppress(SQLAlchemyError):  # the next beat may get through
                    self.storage.record_heartbeat(trial_id)

    def close(self) -> None:
        self._stop.set()
        self._heart.join(timeout=HEARTBEAT_SECONDS + 1)
        self.storage.remove_session()
        self.storage.engine.dispose()
        self._lock_engine.dispose()
