"""Progress records built from Optuna trials, the same way live and after a resume."""

from __future__ import annotations

from datetime import UTC

from optuna.trial import FrozenTrial, TrialState

from tjtrainer.progress import TrialRecord

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
    finished_at = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else ""
    complete = trial.state == TrialState.COMPLETE
    rounds = trial.user_attrs.get("rounds")
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
    )
