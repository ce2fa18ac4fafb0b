"""How long a running TrainingJob still needs: ``status.etaSeconds``, ``status.eta`` (the
same as a short human duration, the ``ETA`` column of ``kubectl get``) and
``status.etaAt`` (the projected end of the search, RFC 3339).

The estimate is made from the run's own trials each time ``progress.json`` changes:
``ceil(trials left / parallelism) × median duration of the last RECENT_TRIALS finished
(complete or pruned) trials``. The median keeps one slow or one pruned trial from moving
it much; pruned trials are shorter than complete ones, so a run that prunes a lot gets a
shorter ETA. The refit of the best models and their test at the end are not counted.
Pure: no clock is read, so the status changes only when the progress does.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from tjtrainer.progress import RunProgress, RunState

# How many of the latest finished trials the per-trial estimate is the median of.
RECENT_TRIALS = 20
# The states of trials that ran to an end of their own (a failed trial says little of time).
TIMED_STATES = ("complete", "pruned")
ETA_KEYS = ("etaSeconds", "eta", "etaAt")


@dataclass(frozen=True)
class Eta:
    """The time left of a search, as estimated at ``since`` (the progress update)."""

    seconds: int
    since: datetime

    @property
    def at(self) -> str:
        """The projected end, RFC 3339 in UTC with seconds precision."""
        return (self.since + timedelta(seconds=self.seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def human(self) -> str:
        return human_duration(self.seconds)


def human_duration(seconds: int) -> str:
    """``45s``, ``3m20s``, ``2h05m``, ``3d4h``: the two largest units, as kubectl does."""
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def estimate(progress: RunProgress | None, *, parallelism: int) -> Eta | None:
    """The ETA of a running search, ``None`` while there is nothing to go by (no trial
    finished yet) or nothing left to estimate (the run is not running)."""
    if progress is None or progress.state != RunState.RUNNING:
        return None
    left = max(0, progress.total_trials - progress.completed_trials)
    durations = [t.duration_s for t in progress.trials if t.state in TIMED_STATES]
    if not durations:
        return None
    per_trial = statistics.median(durations[-RECENT_TRIALS:])
    seconds = math.ceil(math.ceil(left / max(1, parallelism)) * per_trial)
    try:
        since = _parse_time(progress.updated_at)
    except ValueError:
        return None
    return Eta(seconds=seconds, since=since)


def eta_status(progress: RunProgress | None, *, parallelism: int) -> dict[str, object]:
    """The status keys of the ETA; ``None`` values (which a merge patch deletes) when there
    is no estimate, so a finished TrainingJob shows no ETA."""
    found = estimate(progress, parallelism=parallelism)
    if found is None:
        return dict.fromkeys(ETA_KEYS)
    return {"etaSeconds": found.seconds, "eta": found.human, "etaAt": found.at}
