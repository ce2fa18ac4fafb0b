"""The run folder's progress format: one module for its writer (the trainer) and its
readers (the local runner, the operator, the UI).

A run folder (:mod:`tjcontract.layout`: ``$SHARED_DATA_PATH/runs/<namespace>/<name>-<uid>/``,
one per run: a new object of the same name has another uid, so another folder) holds:

- ``progress.json``: the state of the run, rewritten atomically after every trial
  (temporary file, fsync, rename), so a reader sees either the old or the new state. It
  stays small however many trials run: the last :data:`TRIALS_KEPT` trials in full, and
  counts and the best trial of each model (every trial stays in ``study.journal``);
- ``CANCEL``: the cancel marker; its presence asks the trainer to stop after the
  current trial;
- ``study.journal``: the Optuna studies (Optuna's ``JournalStorage``, a log of
  operations, :mod:`tjtrainer.studies`), so a restarted trainer resumes.
"""

from __future__ import annotations

import copy
import glob
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tjcontract.files import atomic_write_bytes
from tjcontract.layout import CANCEL_MARKER, FORMAT_VERSION, PROGRESS_FILE, run_folder, run_parts

# Re-exported for the trainer's modules (studies, shared_studies, train) that read it here.
from tjcontract.layout import STUDY_FILE as STUDY_FILE
from tjcontract.names import MODELS
from tjcontract.times import utc_now
from tjcontract.words import RunState
from tjtrainer import paths
from tjtrainer.paths import confined

# progress.json (and the table's trial log) keep this many of the latest trials in full.
TRIALS_KEPT = 100
# What RunProgress says of the finished trials (rebuilt from the study on every start).
TRIAL_FIELDS = (
    "trials",
    "trials_recorded",
    "trial_counts",
    "best_trials",
    "completed_trials",
    "current_model",
    "best_score_long",
    "best_score_short",
)


@dataclass
class TrialRecord:
    """One finished Optuna trial.

    ``trial`` counts across both models (1 .. 2 × nTrials); ``number`` is Optuna's own
    number inside the model's study. ``state`` is ``complete``, ``pruned`` or ``failed``.
    ``best_so_far`` is the best Spearman of this model up to and including this trial.
    ``rounds`` is the mean over its folds of the boosting rounds the trial kept (each
    fold's best round on its early-stopping block). ``error`` says why a failed
    trial failed.
    """

    trial: int
    model: str
    number: int
    state: str
    spearman: float | None
    best_so_far: float | None
    params: dict[str, Any]
    duration_s: float
    finished_at: str
    rounds: int | None = None
    error: str | None = None
    # The Spearman of each walk-forward fold scored (fewer than cv_folds when pruned) and
    # their standard deviation; ``spearman`` is their mean.
    fold_scores: list[float] | None = None
    spread: float | None = None
    # The trial's place in its model's search (tjtrainer.sampling): what its sampling,
    # pruning and XGBoost seed depend on; the same in every run with the same seed.
    slot: int | None = None


@dataclass
class RunProgress:
    """Everything a reader needs to show a run; serialised as ``progress.json``.

    ``timeframe``, ``n_trials``, ``train_ratio``, ``seed``, ``cv_folds`` and ``embargo``
    record what the run was asked (files written before a field was recorded have
    ``None``)."""

    timeframe: str
    n_trials: int
    total_trials: int
    train_ratio: float | None = None
    seed: int | None = None
    cv_folds: int | None = None
    embargo: int | None = None
    state: RunState = RunState.RUNNING
    completed_trials: int = 0
    current_model: str | None = None
    best_score_long: float | None = None
    best_score_short: float | None = None
    test_score_long: float | None = None
    test_score_short: float | None = None
    # The honest verdict per model (tjtrainer.evaluation): {"level": 0.05, "LONG": {
    # "verdict", "test_spearman", "ci": [low, high], "p_value", "backtest": {...}}, ...}
    evaluation: dict[str, Any] | None = None
    # Whether the version became *_latest under the run's promotion policy, and why.
    promoted: bool | None = None
    promotion_reason: str | None = None
    model_version: str | None = None
    models_dir: str | None = None
    error: str | None = None
    started_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    # The latest TRIALS_KEPT trials, oldest first; ``trials_recorded`` counts every trial
    # recorded (finished and failed), so ``trials_recorded - len(trials)`` were dropped.
    trials: list[TrialRecord] = field(default_factory=list)
    trials_recorded: int = 0
    # Per model: {"complete": n, "pruned": n, "failed": n} over all the run's trials,
    # and the record of its best trial.
    trial_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    best_trials: dict[str, TrialRecord] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    @property
    def progress_pct(self) -> float:
        """Finished trials as a share of all trials, 0..100 (100 once completed)."""
        if self.state == RunState.COMPLETED:
            return 100.0
        if self.total_trials <= 0:
            return 0.0
        return round(min(100.0, 100.0 * self.completed_trials / self.total_trials), 2)

    def take_trials(self, other: RunProgress) -> None:
        """Take ``other``'s trial list and counts (what an earlier process recorded)."""
        for name in TRIAL_FIELDS:
            setattr(self, name, copy.deepcopy(getattr(other, name)))

    def to_json(self) -> str:
        # What dataclasses.asdict gives, without its deep copy (7 times slower, and this
        # runs after every trial): the records' own dicts are only read.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["state"] = str(self.state)
        data["trials"] = [vars(t) for t in self.trials]
        data["best_trials"] = {model: vars(t) for model, t in self.best_trials.items()}
        return json.dumps(data, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> RunProgress:
        """Parse ``progress.json``; anything else raises ``ValueError`` saying what."""
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ValueError(f"not JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"not a progress object (a JSON {type(data).__name__})")
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"progress.json has format {data.get('format')!r}, this reader knows "
                f"{FORMAT_VERSION}; upgrade the component that reads it"
            )
        try:
            data["state"] = RunState(data["state"])
            data["trials"] = [TrialRecord(**t) for t in data.get("trials") or []]
            data["best_trials"] = {
                model: TrialRecord(**t) for model, t in (data.get("best_trials") or {}).items()
            }
            data.setdefault("trials_recorded", len(data["trials"]))  # written before it was
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a progress object ({type(err).__name__}: {err})") from None


OnProgress = Callable[[RunProgress], None]
"""What a run calls with a snapshot of its progress each time it publishes it."""


def snapshot(progress: RunProgress) -> RunProgress:
    """A copy of ``progress`` that later updates will not change (what ``on_progress``
    callbacks are given)."""
    copied = copy.copy(progress)
    copied.trials = list(progress.trials)
    copied.trial_counts = {model: dict(c) for model, c in progress.trial_counts.items()}
    copied.best_trials = dict(progress.best_trials)
    return copied


def write_progress(run_dir: Path, progress: RunProgress) -> None:
    """Persist ``progress`` durably and atomically as ``run_dir/progress.json``."""
    progress.updated_at = utc_now()
    atomic_write_bytes(run_dir / PROGRESS_FILE, progress.to_json().encode("utf-8"))


def read_progress(run_dir: Path) -> RunProgress | None:
    """The run's last written progress, or ``None`` if the trainer has not written any.

    Raises:
        ValueError: the file is not a progress file this reader knows (garbage, a newer
            format); the message names the file.
    """
    path = run_dir / PROGRESS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason})") from None
    try:
        return RunProgress.from_json(text)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def request_cancel(run_dir: Path) -> None:
    """Ask the trainer working in ``run_dir`` to stop after its current trial."""
    atomic_write_bytes(run_dir / CANCEL_MARKER, (utc_now() + "\n").encode("utf-8"))


def cancel_requested(run_dir: Path) -> bool:
    """Whether someone asked this run to stop."""
    return (run_dir / CANCEL_MARKER).exists()


def run_dir_for(data_root: Path, namespace: str, name: str, uid: str) -> Path:
    """The run folder of the run ``uid`` of TrainingJob ``namespace/name`` (a local run's
    uid is its row's) under the shared data root.

    Raises:
        UnsafePathError: ``namespace`` or ``uid`` is not a DNS-1123 label or ``name`` not
            a Kubernetes object name (``../x``, an absolute path, ...), or the folder would
            resolve outside ``runs/``.
    """
    runs, namespace_part, folder = run_parts(
        paths.label(namespace, what="the namespace of a run"),
        paths.object_name(name, what="the name of a run"),
        paths.label(uid, what="the uid of a run"),
    )
    return confined(data_root / runs, namespace_part, folder)


def latest_run_dir(data_root: Path, namespace: str, name: str) -> Path | None:
    """The newest run folder of TrainingJob ``namespace/name`` (the runs of the objects
    of that name, one per uid, by when they last changed); ``None`` if it has none.

    Raises:
        UnsafePathError: as :func:`run_dir_for`.
    """
    parent = run_dir_for(data_root, namespace, name, "x").parent
    found = []
    for folder in parent.glob(f"{glob.escape(name)}-*") if parent.is_dir() else ():
        uid = folder.name[len(name) + 1 :]
        if folder.is_dir() and folder.name == run_folder(name, uid) and _is_uuid(uid):
            found.append((folder.stat().st_mtime, folder))
    return max(found)[1] if found else None


def _is_uuid(text: str) -> bool:
    """Whether ``text`` is a uid as Kubernetes and ``tjctl run`` make them (a UUID)."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def verdict_lines(progress: RunProgress) -> list[str]:
    """One line per model: its verdict, interval, p-value and backtest (see evaluation)."""
    evaluation = progress.evaluation or {}
    level = evaluation.get("level")
    lines = []
    for model in MODELS:
        found = evaluation.get(model)
        if not found:
            continue
        low, high = found["ci"]
        trades = found["backtest"]
        lines.append(
            f"  {model}: {found['verdict']} at {level:g} (test Spearman "
            f"{found['test_spearman']:+.4f}, 95 % CI [{low:+.4f}, {high:+.4f}], placebo p = "
            f"{found['p_value']:.3f}); backtest {trades['trades']} trades, net "
            f"{100 * trades['net_return']:+.2f} %, Sharpe {trades['sharpe']:+.2f}, hit rate "
            f"{100 * trades['hit_rate']:.0f} %, {trades['turnover_per_day']:.1f} trades/day"
            + (
                f"; deflated probability of its walk-forward score over {found['trials']} "
                f"trials {found['deflated_probability']:.2f}"
                if "deflated_probability" in found
                else ""
            )
        )
    return lines
