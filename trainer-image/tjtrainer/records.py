"""Progress records built from Optuna trials, the same way live and after a resume.

Global trial numbers: LONG's finished trials are 1..n, SHORT's n+1..2n (n = nTrials). A
failed trial gets the number of the slot it was attempting, which its retry then takes.
"""

from __future__ import annotations

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from tjcontract.times import utc_text
from tjtrainer.progress import MODELS, TRIALS_KEPT, RunProgress, TrialRecord

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
}


def trial_record(
    trial: FrozenTrial, *, model: str, global_number: int, best_so_far: float | None
) -> TrialRecord:
    """The :class:`TrialRecord` of a finished ``trial`` of ``model``."""
    start, end = trial.datetime_start, trial.datetime_complete
    duration = (end - start).total_seconds() if start and end else 0.0
    moment = end or start
    finished_at = utc_text(moment) if moment else ""
    complete = trial.state == TrialState.COMPLETE
    rounds = trial.user_attrs.get("rounds")
    folds = trial.user_attrs.get("fold_scores")
    return TrialRecord(
        trial=global_number,
        model=model,
        number=trial.number,
        state=_STATES.get(trial.state, trial.state.name.lower()),
        spearman=float(trial.value) if complete and trial.value is not None else None,
        best_so_far=best_so_far,
        params=dict(trial.params),
        duration_s=round(max(0.0, duration), 3),
        finished_at=finished_at,
        rounds=int(rounds) if rounds is not None else None,
        error=trial.user_attrs.get("error"),
        fold_scores=[float(v) for v in folds] if folds else None,
        spread=round(float(np.std(folds)), 6) if folds else None,
        slot=slot if isinstance(slot := trial.user_attrs.get("slot"), int) else None,
    )


def listed(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The ``trials`` a progress lists (finished, or failed with an error), in the order
    they ended."""
    shown = [
        t
        for t in trials
        if t.state in FINISHED or (t.state == TrialState.FAIL and "error" in t.user_attrs)
    ]
    return sorted(shown, key=lambda t: (t.datetime_complete or t.datetime_start, t.number))


class TrialBook:
    """Counts the finished trials of each model and keeps ``progress``'s trial list: the
    latest :data:`~tjtrainer.progress.TRIALS_KEPT` records, the counts by state and the
    best trial of each model."""

    def __init__(self, progress: RunProgress, n_trials: int) -> None:
        self.progress = progress
        self.n_trials = n_trials
        self.finished = dict.fromkeys(MODELS, 0)
        self.best: dict[str, float | None] = dict.fromkeys(MODELS, None)
        self.failures_in_a_row = 0

    def rebuild(self, trials: dict[str, list[FrozenTrial]]) -> None:
        """Replace the trial list by the finished (and failed-with-error) ``trials``."""
        self.progress.trials = []
        self.progress.trials_recorded = 0
        self.progress.trial_counts = {}
        self.progress.best_trials = {}
        self.finished = dict.fromkeys(MODELS, 0)
        self.best = dict.fromkeys(MODELS, None)
        for model in MODELS:
            for trial in listed(trials.get(model, [])):
                self.add(model, trial)
        self.failures_in_a_row = 0  # a new process gets a fresh chance
        done_long = self.finished[MODELS[0]] >= self.n_trials
        self.progress.current_model = MODELS[1] if done_long else MODELS[0]

    def add(self, model: str, trial: FrozenTrial) -> TrialRecord:
        """Count a finished ``trial`` of ``model`` and append its record to the progress."""
        if trial.state in FINISHED:
            self.finished[model] += 1
            number = self._offset(model) + self.finished[model]
            self.failures_in_a_row = 0
        else:
            number = self._offset(model) + self.finished[model] + 1
            self.failures_in_a_row += 1
        improved = False
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            best = self.best[model]
            improved = best is None or trial.value > best
            self.best[model] = trial.value if best is None else max(best, trial.value)
        record = trial_record(
            trial, model=model, global_number=number, best_so_far=self.best[model]
        )
        progress = self.progress
        progress.trials.append(record)
        del progress.trials[:-TRIALS_KEPT]
        progress.trials_recorded += 1
        counts = progress.trial_counts.setdefault(model, {"complete": 0, "pruned": 0, "failed": 0})
        counts[record.state] = counts.get(record.state, 0) + 1
        if improved:
            progress.best_trials[model] = record
        self.progress.completed_trials = sum(self.finished.values())
        self.progress.best_score_long = self.best["LONG"]
        self.progress.best_score_short = self.best["SHORT"]
        return record

    def _offset(self, model: str) -> int:
        """Global numbers of ``model``'s trials start after this many."""
        return 0 if model == MODELS[0] else max(self.n_trials, self.finished[MODELS[0]])
