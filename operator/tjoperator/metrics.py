"""The operator's Prometheus metrics: every metric is defined here, the operator's code
calls one function of this module where something happens, and :func:`serve` puts them
on ``http://ADDRESS:PORT/metrics`` (``tjctl operator --metrics-port``).

Trials are counted when the status that first shows them is patched, once per operator
process; trials that finished before the process started (a run it resumed) are not
counted, so a restart does not count them twice."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ParamSpec, TypeVar

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from tjcontract.words import FINAL_PHASES, Phase
from tjtrainer.progress import RunProgress

P = ParamSpec("P")
T = TypeVar("T")
STARTED = time.time()

TRAININGJOBS = Gauge(
    "tj_trainingjobs", "TrainingJobs the operator watches, by status.phase", ["phase"]
)
TRIALS = Counter(
    "tj_trials_finished",
    "Trials finished (as the status reported them), by model and state",
    ["model", "state"],
)
TRIAL_SECONDS = Histogram(
    "tj_trial_duration_seconds",
    "How long a finished trial took (its duration_s in progress.json), by model",
    ["model"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
STATUS_LAG = Histogram(
    "tj_trial_status_lag_seconds",
    "From a trial's finished_at in progress.json to the status patch that showed it",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
RECONCILE_ERRORS = Counter(
    "tj_reconcile_errors", "Handler runs that ended in an error, by handler", ["handler"]
)
API_ERRORS = Counter(
    "tj_api_errors", "Error answers of the Kubernetes API, by HTTP status", ["code"]
)
TABLE_WRITE_ERRORS = Counter(
    "tj_table_write_errors", "Failed writes to the training_jobs table, by operation", ["operation"]
)

for _phase in Phase:
    TRAININGJOBS.labels(_phase.value).set(0)


@dataclass
class _Seen:
    """Per TrainingJob (uid): the highest trial number already counted."""

    last_trial: int = 0


_phases: dict[tuple[str, str], str] = {}
_seen: dict[str, _Seen] = {}


def serve(port: int, address: str) -> None:
    """Serve ``/metrics`` on ``address:port`` from a thread of its own (OSError if the
    port cannot be bound)."""
    start_http_server(port, addr=address)


def phase_seen(namespace: str, name: str, phase: str | None) -> None:
    """TrainingJob ``namespace/name`` is in ``phase`` (``None``: it was deleted)."""
    if phase is None:
        _phases.pop((namespace, name), None)
    else:
        _phases[(namespace, name)] = phase
    counts: dict[str, int] = {p.value: 0 for p in Phase}
    for value in _phases.values():
        counts[value] = counts.get(value, 0) + 1
    for value, count in counts.items():
        TRAININGJOBS.labels(value).set(count)


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def status_published(uid: str, progress: RunProgress | None, phase: str) -> None:
    """The status of TrainingJob ``uid`` was patched from ``progress``: count the trials
    it shows for the first time, their durations and how late the status came."""
    now = time.time()
    seen = _seen.setdefault(uid, _Seen())
    for trial in progress.trials if progress else ():
        if trial.trial <= seen.last_trial:
            continue
        seen.last_trial = trial.trial
        finished = _epoch(trial.finished_at)
        if finished is None or finished < STARTED:
            continue
        TRIALS.labels(trial.model, trial.state).inc()
        TRIAL_SECONDS.labels(trial.model).observe(trial.duration_s)
        STATUS_LAG.observe(max(0.0, now - finished))
    if phase in FINAL_PHASES:
        _seen.pop(uid, None)


def api_error(status: int | None) -> None:
    API_ERRORS.labels(str(status or "none")).inc()


def reconcile_error(handler: str) -> None:
    RECONCILE_ERRORS.labels(handler).inc()


def table_write_error(operation: str) -> None:
    TABLE_WRITE_ERRORS.labels(operation).inc()


def counts_errors(handler: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorate a kopf handler (under kopf's decorator): an exception it raises (kopf
    retries it) counts in ``tj_reconcile_errors{handler=<its name>}``."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await handler(*args, **kwargs)
        except Exception:
            reconcile_error(handler.__name__)
            raise

    return wrapper
