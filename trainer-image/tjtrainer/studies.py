"""The Optuna studies of a run: ``run_dir/study.journal``, Optuna's ``JournalStorage``.

The journal (a ``JournalFileBackend`` file) holds one study per model, named ``LONG`` and
``SHORT``, as a log of operations: every write appends one JSON line, and opening the
file replays it. Trials' lines are not fsynced as they are written: the journal is
fsynced (every line so far) by :meth:`DurableStudies.sync`, which the run's progress
publisher (:mod:`tjtrainer.publisher`) calls before ``progress.json`` names a trial; a
line that changes a study (created, an attribute set) is fsynced at once. A trial is
created RUNNING when it is asked, each sampled parameter written as it is drawn, and
completed (intermediate values, rounds, state, value) when it ends. A process killed
mid-trial leaves that trial RUNNING; the next process marks it FAIL and goes on, so
every finished trial is kept. A
process killed in the middle of an append leaves a last line without its newline:
Optuna's reader skips it, and opening the journal for writing cuts it off before
anything is appended after it (that write never returned, so nothing relied on it). An
append the disk refuses part-way (full) is cut back to where it began before the error
is raised, so the next line cannot fuse with its half.

Only the trainer holding the run folder's lock (:mod:`tjtrainer.runlock`) writes the
journal, so Optuna's own lock (a ``study.journal.lock`` symlink made and removed around
every append, and waited for 30 s when a killed process left it behind) is not used.
Readers (``tjctl dashboard``, the tests) open it with :func:`open_run_storage`, which
refuses writes.

The trainer's sampler and pruner search the journal directly (no in-memory copy): a
trial's operations are on disk, fsynced, before ``progress.json`` names it. Measured
against the previous release's ``study.db`` with an in-memory mirror and a recorder
thread, the journal searched directly is simpler and was faster in wall time, CPU and
resume: see docs/TRAINER.md ("Resume") and ``bench/study_storage.py``.
:func:`mirror_study` and :func:`record_outcome` also serve the workers of a shared
PostgreSQL study (:mod:`tjtrainer.workers`).

A run folder of the previous release holds ``study.db`` (SQLite through ``RDBStorage``)
instead: the first start of this trainer there copies its studies into the journal, study
attributes included (:func:`copy_previous_studies`), and leaves ``study.db`` as it was,
no longer read.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import weakref
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend, JournalStorage
from optuna.storages.journal._file import BaseJournalFileLock
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import FrozenTrial, TrialState

from tjcontract.files import FILE_MODE, atomic_output, fsync_path
from tjcontract.layout import PROGRESS_FILE, STUDY_FILE
from tjcontract.names import MODELS
from tjtrainer.errors import RunFolderError
from tjtrainer.sampling import FIRST_FOLD_RMSE_ATTR, RUNG_RMSE_ATTR
from tjtrainer.search import TrialFit

FINGERPRINT_KEY = "fingerprint"
# The previous release's study file (SQLite), copied into the journal once.
PREVIOUS_STUDY_FILE = "study.db"
# How every line of an Optuna journal begins (JournalStorage's own json.dumps).
_JOURNAL_LINE_START = b'{"op_code":'
# The longest last line looked for when a killed append left one without its newline.
_TAIL_BYTES = 1 << 20

log = logging.getLogger("tjtrainer")
optuna.logging.set_verbosity(optuna.logging.WARNING)


class _RunFolderLockHeld(BaseJournalFileLock):
    """The journal's writer holds the run folder's lock: no lock file per append."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


# Operations on trials: appended without an fsync of their own (a killed process loses
# none of them: they are in the kernel once written). The journal is fsynced before
# progress.json names a trial (DurableStudies.sync), so a machine that loses power can
# lose only trials that ended after the last progress written, which the next process
# runs again. An operation on a study (created, an attribute set) is fsynced at once.
_SYNCED_LATER = frozenset(
    {
        JournalOperation.CREATE_TRIAL,
        JournalOperation.SET_TRIAL_PARAM,
        JournalOperation.SET_TRIAL_STATE_VALUES,
        JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE,
        JournalOperation.SET_TRIAL_USER_ATTR,
        JournalOperation.SET_TRIAL_SYSTEM_ATTR,
    }
)


def _journal_line(entry: dict[str, Any]) -> bytes:
    """One operation as a line of the journal file, as ``JournalFileBackend`` writes it."""
    return json.dumps(entry, separators=(",", ":")).encode("utf-8") + b"\n"


class _ReadOnlyBackend(JournalFileBackend):
    """A journal file that exists and is only read, while its writer may append (a write
    raises instead of happening; no lock file is made)."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path, lock_obj=_RunFolderLockHeld())
        self.path = file_path

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise PermissionError(f"{self.path} is opened read-only")


class _RunJournalBackend(JournalFileBackend):
    """The run's journal as its one writer appends to it: Optuna's lines, without a lock
    file per append; a study's changes fsynced at once, trials' by :meth:`sync` (16
    fsyncs a trial on the trial path were 3 % of its time on a local disk, more on
    network storage).

    The file is read once, when opened: what this writer appends after that is handed
    back to Optuna's replay from memory, parsed from the very lines written (Optuna reads
    the file again before every read and after every write of its storage, about 1,400
    times in a run of 30 + 30 trials); the file stays open to append, as the one writer's."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path, lock_obj=_RunFolderLockHeld())
        self.path = file_path
        self._counts = threading.Lock()
        self._appended = 0  # appends so far
        self._synced = 0  # appends known to be on disk
        self._unread: list[dict[str, Any]] = []  # appended, not yet read back
        self._unread_from: int | None = None  # the number of the first; None: read the file
        self._fd: int | None = None  # opened by the first append
        self._size = 0  # the file's size after the last append

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        if log_number_from == self._unread_from:
            logs, self._unread = self._unread, []
        else:  # the first read (or one from elsewhere in the file)
            logs, self._unread = list(super().read_logs(log_number_from)), []
        self._unread_from = log_number_from + len(logs)
        return (log for log in logs)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append ``logs`` whole or not at all: a write that fails part-way (a full disk)
        is cut off again, so a line appended after it cannot fuse with its half line."""
        lines = [_journal_line(entry) for entry in logs]
        data = b"".join(lines)
        fd = self._append_fd()
        pending = memoryview(data)
        try:
            while pending:
                pending = pending[os.write(fd, pending) :]
        except OSError:
            os.ftruncate(fd, self._size)
            raise
        self._size += len(data)
        self._unread.extend(json.loads(line) for line in lines)
        with self._counts:
            self._appended += 1
            appended = self._appended
        if any(entry["op_code"] not in _SYNCED_LATER for entry in logs):
            self._fsynced(fd, appended)

    def _append_fd(self) -> int:
        """The journal opened to append, once (closed when this backend goes)."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
            self._size = os.fstat(self._fd).st_size
            weakref.finalize(self, os.close, self._fd)
        return self._fd

    def sync(self) -> None:
        """Make every line appended so far durable (one fsync, none if nothing is new)."""
        with self._counts:
            appended = self._appended
            if appended == self._synced:
                return
        assert self._fd is not None, "an append opened it"
        self._fsynced(self._fd, appended)  # the file this writer keeps open

    def _fsynced(self, fd: int, appended: int) -> None:
        os.fsync(fd)
        with self._counts:
            self._synced = max(self._synced, appended)


class _LinesBackend(BaseJournalBackend):
    """A journal built in memory, as the lines ``JournalFileBackend`` would write."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        for line in self.lines[log_number_from:]:
            yield json.loads(line)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.lines.extend(_journal_line(entry) for entry in logs)


def _unreadable(path: Path, reason: str) -> RunFolderError:
    return RunFolderError(
        f"{path} is not a readable Optuna journal ({reason}); move it away to start this "
        f"run's trials again from 0 (with {PROGRESS_FILE}), or restore it from a backup"
    )


def _check_and_trim(path: Path) -> None:
    """Refuse a file that is not an Optuna journal; cut off a last line a killed append
    left without its newline (Optuna skips it, but a line appended after it would make the
    journal unreadable from there on)."""
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as handle:
        head = handle.read(len(_JOURNAL_LINE_START))
        if not (head.startswith(_JOURNAL_LINE_START) or _JOURNAL_LINE_START.startswith(head)):
            raise _unreadable(path, f"it begins {head[:16]!r}, not {_JOURNAL_LINE_START!r}")
        start = max(0, size - _TAIL_BYTES)
        handle.seek(start)
        tail = handle.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        if cut < 0 and start > 0:
            raise _unreadable(path, f"its last {_TAIL_BYTES} bytes hold no line end")
        keep = start + cut + 1
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    log.warning(
        "%s: its last line (%d bytes) was cut by a killed process; removed (the write it "
        "held had not returned)",
        path,
        size - keep,
    )


class RunJournal(JournalStorage):
    """The run's journal, to search and write; :meth:`sync` makes durable what the
    trials wrote so far."""

    def __init__(self, backend: _RunJournalBackend) -> None:
        self._run_backend = backend
        super().__init__(backend)

    def sync(self) -> None:
        self._run_backend.sync()


def open_journal(path: Path) -> RunJournal:
    """The journal at ``path`` to search and write, created if missing; the caller holds
    the run folder's lock and calls :meth:`RunJournal.sync` before relying on its trials.

    Raises:
        RunFolderError: ``path`` is not an Optuna journal; the message says what to do.
    """
    if path.exists():
        _check_and_trim(path)
    try:
        return RunJournal(_RunJournalBackend(str(path)))
    except OSError:
        raise
    except Exception as err:  # json, or a log Optuna cannot replay
        raise _unreadable(path, f"{type(err).__name__}: {err}") from None


def open_run_storage(run_dir: Path) -> JournalStorage:
    """A run folder's studies for a reader (``tjctl dashboard``, the tests), read-only;
    safe while the trainer writes them.

    Raises:
        FileNotFoundError: the run has no study yet.
    """
    path = run_dir / STUDY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {path}")
    return JournalStorage(_ReadOnlyBackend(str(path)))


def copy_previous_studies(run_dir: Path) -> int | None:
    """Copy the studies of a previous release's ``study.db`` into a new journal, once:
    ``None`` when there is nothing to copy (a journal exists, or no ``study.db``), else
    how many trials were copied. ``study.db`` is left as it was. The journal appears
    whole or not at all (a process killed meanwhile copies again at the next start).

    Raises:
        RunFolderError: ``study.db`` cannot be read; the message says what to do.
    """
    journal, previous = run_dir / STUDY_FILE, run_dir / PREVIOUS_STUDY_FILE
    if journal.exists() or not previous.is_file() or previous.stat().st_size == 0:
        return None
    lines = _LinesBackend()
    target = JournalStorage(lines)
    source: RDBStorage | None = None
    try:
        # Read as it is: no table is made in a file that has none, no schema upgraded.
        source = RDBStorage(
            f"sqlite:///{previous}",
            engine_kwargs={"connect_args": {"timeout": 60}},
            skip_table_creation=True,
        )
        names = [s.study_name for s in source.get_all_studies()]
        for name in sorted(names, key=lambda n: (MODELS.index(n) if n in MODELS else 2, n)):
            optuna.copy_study(from_study_name=name, from_storage=source, to_storage=target)
    except Exception as err:  # SQLAlchemy, sqlite3, or a schema Optuna cannot read
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()
        raise RunFolderError(
            f"{previous} (the study of a previous release, to be copied into {STUDY_FILE}) "
            f"is not a readable Optuna study ({reason[0] if reason else type(err).__name__}); "
            f"move it away to start this run's trials again from 0 (with {PROGRESS_FILE}), "
            "or restore it from a backup"
        ) from None
    finally:
        if source is not None:
            source.remove_session()
            source.engine.dispose()
    copied = sum(
        len(target.get_all_trials(s._study_id, deepcopy=False)) for s in target.get_all_studies()
    )
    with atomic_output(journal) as tmp:
        tmp.write_bytes(b"".join(lines.lines))
    fsync_path(run_dir)
    log.info(
        "copied the %d trials of %s (the previous release's study) into %s; %s is left as it "
        "was and no longer used (delete it once the run is over)",
        copied,
        previous,
        STUDY_FILE,
        PREVIOUS_STUDY_FILE,
    )
    return copied


class DurableStudies:
    """``run_dir/study.journal``: one study per model, tied to one dataset and split.

    ``recorded`` is how many finished trials ``progress.json`` lists: a study that holds
    fewer (emptied, replaced) is refused rather than silently searched again from 0.

    Raises:
        RunFolderError: the journal is not an Optuna journal, or has lost trials that
            ``progress.json`` lists (or the previous release's ``study.db`` to copy
            cannot be read); the message says what to do.
    """

    def __init__(self, run_dir: Path, *, recorded: int = 0) -> None:
        self.path = run_dir / STUDY_FILE
        copy_previous_studies(run_dir)
        if recorded and (not self.path.exists() or self.path.stat().st_size == 0):
            raise self._lost(0, recorded)
        self.study_ids: dict[str, int] = {}
        self.storage = open_journal(self.path)
        for model in MODELS:
            study = optuna.create_study(
                storage=self.storage, study_name=model, direction="maximize", load_if_exists=True
            )
            self.study_ids[model] = study._study_id
        finished = sum(
            t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            for model in MODELS
            for t in self.trials(model)
        )
        if finished < recorded:
            raise self._lost(finished, recorded)

    def _lost(self, finished: int, recorded: int) -> RunFolderError:
        progress = self.path.with_name(PROGRESS_FILE)
        return RunFolderError(
            f"{self.path} holds {finished} finished trials but {progress} lists {recorded} "
            f"finished trials: the study lost trials (emptied or replaced); restore {STUDY_FILE} "
            f"from a backup, or delete {PROGRESS_FILE} to go on with the trials {STUDY_FILE} "
            "holds (delete the whole run folder to start afresh)"
        )

    def sync(self) -> None:
        """Make every trial written so far durable (before ``progress.json`` names it)."""
        self.storage.sync()

    def check_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        """Stamp empty studies with what they are for; refuse studies made for another run."""
        for model in MODELS:
            self._check_fingerprint(model, fingerprint)

    def _check_fingerprint(self, model: str, fingerprint: dict[str, Any]) -> None:
        check_fingerprint(self.storage, self.study_ids[model], fingerprint, where=self.path)

    def fail_stale(self) -> int:
        """Mark trials left RUNNING by a dead process as FAIL; return how many."""
        count = 0
        for model in MODELS:
            for trial in self.trials(model):
                if trial.state == TrialState.RUNNING:
                    trial_id = self.storage.get_trial_id_from_study_id_trial_number(
                        self.study_ids[model], trial.number
                    )
                    self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
                    count += 1
        return count

    def trials(self, model: str) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.study_ids[model], deepcopy=False)


def check_fingerprint(
    storage: BaseStorage, study_id: int, fingerprint: dict[str, Any], *, where: object
) -> None:
    """Stamp an empty study with what it is for; refuse one made for another run (its
    trials cannot be resumed). ``where`` names the study's home in the message: a run
    folder's journal (a path), which the message offers to delete, or a shared study.
    Keys a stamp does not have (stamped before they were recorded) are not compared."""
    stored = storage.get_study_user_attrs(study_id).get(FINGERPRINT_KEY)
    if stored is None:
        storage.set_study_user_attr(study_id, FINGERPRINT_KEY, fingerprint)
        return
    changed = sorted(k for k in stored if stored.get(k) != fingerprint.get(k))
    if changed:
        raise RunFolderError(
            f"{where} was made for another run ({', '.join(changed)} differ: "
            f"{json.dumps({k: stored.get(k) for k in changed})} then, "
            f"{json.dumps({k: fingerprint.get(k) for k in changed})} now); its trials "
            "cannot be resumed: use a new run folder"
            + (f" or delete {where}" if isinstance(where, Path) else "")
        )


def mirror_study(
    trials: list[FrozenTrial],
    *,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    name: str,
) -> optuna.Study:
    """An in-memory study holding ``trials`` (same numbers), for sampling and pruning."""
    study = optuna.create_study(
        storage=InMemoryStorage(),
        study_name=name,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
    )
    study.add_trials(trials)
    return study


def record_outcome(
    study: optuna.Study, trial: optuna.Trial, outcome: TrialFit | str
) -> FrozenTrial:
    """Tell ``study`` how ``trial`` ended (a fit, or the error that stopped it); return the
    finished trial."""
    if isinstance(outcome, str):
        trial.set_user_attr("error", outcome)
        return study.tell(trial, state=TrialState.FAIL)
    trial.set_user_attr("rounds", outcome.rounds)
    trial.set_user_attr("fold_scores", list(outcome.fold_scores))
    trial.set_user_attr("fold_rounds", list(outcome.fold_rounds))
    trial.set_user_attr(RUNG_RMSE_ATTR, list(outcome.rung_rmse))
    if math.isfinite(outcome.first_fold_rmse):
        trial.set_user_attr(FIRST_FOLD_RMSE_ATTR, outcome.first_fold_rmse)
    if outcome.pruned:
        return study.tell(trial, state=TrialState.PRUNED)
    return study.tell(trial, outcome.score)
