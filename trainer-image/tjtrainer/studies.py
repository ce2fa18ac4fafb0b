"""The Optuna studies of a run: durable in ``run_dir/study.db``, searched in memory.

``study.db`` (SQLite through Optuna's ``RDBStorage``) holds one study per model, named
``LONG`` and ``SHORT``. A trial is inserted there as RUNNING, with its sampled
parameters, when it starts, and completed (intermediate values, rounds, state, value)
when it ends. A process killed mid-trial leaves that trial RUNNING; the next process
marks it FAIL and goes on, so every finished trial is kept.

The sampler and the pruner work on an in-memory mirror of each study, loaded from
``study.db`` at start: Optuna's RDB storage costs tens of milliseconds per call (one
transaction per parameter, per reported value, per read), which would be a visible share
of a search whose trials take a second or two. ``study.db`` sees only two short writes
per trial, serialised by the caller. SQLite runs in WAL mode with ``synchronous=NORMAL``
(a commit survives the process being killed; only a power cut may lose the last few) and
a busy timeout, so readers (optuna-dashboard) never block the trainer.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from tjcontract.layout import PROGRESS_FILE, STUDY_FILE
from tjcontract.names import MODELS
from tjtrainer.errors import RunFolderError
from tjtrainer.sampling import FIRST_FOLD_RMSE_ATTR, RUNG_RMSE_ATTR
from tjtrainer.search import TrialFit

FINGERPRINT_KEY = "fingerprint"
BUSY_TIMEOUT_S = 60

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sqlite_storage(path: Path) -> RDBStorage:
    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    # An existing file may come from another Optuna version: check its schema. A new
    # file is stamped with this version's schema, so the check (which loads every
    # migration script once more) would only cost time.
    return RDBStorage(
        f"sqlite:///{path}",
        engine_kwargs={"creator": connect},
        skip_compatibility_check=not path.exists(),
    )


class DurableStudies:
    """``run_dir/study.db``: one study per model, tied to one dataset and split.

    ``recorded`` is how many finished trials ``progress.json`` lists: a study that holds
    fewer (emptied, replaced) is refused rather than silently searched again from 0.

    Raises:
        RunFolderError: ``study.db`` is not an SQLite database of Optuna, or has lost
            trials that ``progress.json`` lists; the message says what to do.
    """

    def __init__(self, run_dir: Path, *, recorded: int = 0) -> None:
        self.path = run_dir / STUDY_FILE
        if recorded and (not self.path.exists() or self.path.stat().st_size == 0):
            raise self._lost(0, recorded)
        self.study_ids: dict[str, int] = {}
        try:
            self.storage: BaseStorage = _sqlite_storage(self.path)
            for model in MODELS:
                study = optuna.create_study(
                    storage=self.storage,
                    study_name=model,
                    direction="maximize",
                    load_if_exists=True,
                )
                self.study_ids[model] = self.storage.get_study_id_from_name(study.study_name)
            finished = sum(
                t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                for model in MODELS
                for t in self.trials(model)
            )
        except (SQLAlchemyError, sqlite3.Error) as err:
            reason = str(getattr(err, "orig", None) or err).splitlines()[0]
            raise RunFolderError(
                f"{self.path} is not a readable Optuna study ({reason}); move it away to "
                "start this run's trials again from 0 (with progress.json), or restore it "
                "from a backup"
            ) from None
        if finished < recorded:
            self.close()
            raise self._lost(finished, recorded)

    def _lost(self, finished: int, recorded: int) -> RunFolderError:
        progress = self.path.with_name(PROGRESS_FILE)
        return RunFolderError(
            f"{self.path} holds {finished} finished trials but {progress} lists {recorded} "
            "finished trials: the study lost trials (emptied or replaced); restore study.db "
            f"from a backup, or delete {PROGRESS_FILE} to go on with the trials study.db "
            "holds (delete the whole run folder to start afresh)"
        )

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

    def start(
        self, model: str, params: dict[str, Any], distributions: dict[str, BaseDistribution]
    ) -> int:
        """Insert a RUNNING trial with its parameters; return its storage id."""
        template = FrozenTrial(
            number=0,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=dt.datetime.now(),
            datetime_complete=None,
            params=params,
            distributions=distributions,
            user_attrs={},
            system_attrs={},
            intermediate_values={},
            trial_id=0,
        )
        return self.storage.create_new_trial(self.study_ids[model], template)

    def finish(self, trial_id: int, finished: FrozenTrial) -> None:
        """Copy what the in-memory trial learnt; the state goes last."""
        for step, value in finished.intermediate_values.items():
            self.storage.set_trial_intermediate_value(trial_id, step, value)
        for key, value in finished.user_attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)
        self.storage.set_trial_state_values(trial_id, finished.state, finished.values)

    def close(self) -> None:
        storage = self.storage
        if isinstance(storage, RDBStorage):
            storage.remove_session()
            storage.engine.dispose()


def check_fingerprint(
    storage: BaseStorage, study_id: int, fingerprint: dict[str, Any], *, where: object
) -> None:
    """Stamp an empty study with what it is for; refuse one made for another run (its
    trials cannot be resumed). ``where`` names the study's home in the message."""
    stored = storage.get_study_user_attrs(study_id).get(FINGERPRINT_KEY)
    if stored is None:
        storage.set_study_user_attr(study_id, FINGERPRINT_KEY, fingerprint)
        return
    changed = sorted(
        k for k in fingerprint.keys() | stored.keys() if stored.get(k) != fingerprint.get(k)
    )
    if changed:
        raise RunFolderError(
            f"{where} was made for another run ({', '.join(changed)} differ: "
            f"{json.dumps({k: stored.get(k) for k in changed})} then, "
            f"{json.dumps({k: fingerprint.get(k) for k in changed})} now); its trials "
            "cannot be resumed: use a new run folder or delete study.db"
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
