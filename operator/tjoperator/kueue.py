"""Kueue: a TrainingJob that names a queue waits for Kueue to admit its Job.

The TrainingJob's labels ``kueue.x-k8s.io/queue-name`` (and, if set,
``kueue.x-k8s.io/priority-class``) go onto its Job, which is created suspended. Kueue makes
a Workload of the Job, admits it when the queue's ClusterQueue has quota (it unsuspends
the Job) and may evict it later (it suspends the Job again: the trainer pod gets SIGTERM,
its finished trials stay in the study, and the next admission resumes the same study).

For such a Job Kueue alone sets ``spec.suspend``: the operator never unsuspends it, and
the TrainingJob's own ``spec.suspend`` deactivates the Workload (``spec.active: false``;
Kueue then stops the Job) and reactivates it on resume. Where no Workload exists (Kueue
is not installed, or has not made one yet) a suspend is put on the Job itself.

Pure functions of what the operator observed; the API calls are in :mod:`tjoperator.kube`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tjcore.messages import bounded_message

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
KUEUE_LABELS = (QUEUE_LABEL, PRIORITY_LABEL)
WORKLOAD_GROUP = "kueue.x-k8s.io"
WORKLOAD_VERSION = "v1beta2"
WORKLOAD_PLURAL = "workloads"
# The conditions a queued TrainingJob carries besides those of its phase.
QUEUED, ADMITTED, EVICTED = "Queued", "Admitted", "Evicted"


def queue_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """The Kueue labels of a TrainingJob, to be put on its Job (empty: no queue)."""
    found = {key: str(value) for key, value in (labels or {}).items() if key in KUEUE_LABELS}
    return found if found.get(QUEUE_LABEL) else {}


def condition(obj: Mapping[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """The condition ``kind`` of an object's status, whatever its status."""
    for found in ((obj or {}).get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return None


def _is_true(obj: Mapping[str, Any] | None, kind: str) -> bool:
    found = condition(obj, kind)
    return found is not None and found.get("status") == "True"


def job_runs(job_status: Mapping[str, Any] | None) -> bool:
    """Whether the Job has been let run: it is not suspended and its controller started
    it (a Job just created suspended has no Suspended condition yet, nor a start time)."""
    if job_status is None:
        return False
    suspended = any(
        c.get("type") == "Suspended" and c.get("status") == "True"
        for c in job_status.get("conditions") or []
    )
    started = any(job_status.get(key) for key in ("startTime", "active", "succeeded", "failed"))
    return not suspended and started


@dataclass(frozen=True)
class QueueState:
    """Where a queued TrainingJob stands with Kueue."""

    queue: str
    admitted: bool  # the Job runs
    waiting: str  # why it waits (Kueue's words when its Workload says), while not admitted
    evicted: str | None = None  # why it was stopped after running, until admitted again


def queue_state(
    queue: str,
    job_status: Mapping[str, Any] | None,
    workload: Mapping[str, Any] | None,
    *,
    ran_before: bool,
) -> QueueState:
    """The queue state of a TrainingJob's Job: admitted when the Job runs; evicted when its
    Workload says so (or, with no Workload, when it ran before and is held again; pass
    ``ran_before=False`` when the operator held it itself); otherwise queued, with
    Kueue's reason when it has one."""
    if job_runs(job_status):
        return QueueState(queue, admitted=True, waiting="")
    reserved = condition(workload, "QuotaReserved")
    waiting = f"waiting for Kueue to admit it from queue {queue}"
    if workload is None:
        waiting += " (no Kueue Workload for its Job yet: is Kueue installed and running?)"
    elif reserved is not None and reserved.get("status") != "True" and reserved.get("message"):
        waiting += f": {reserved['message']}"
    evicted = None
    if workload is not None:
        # Kueue's own word; "Deactivated" is the TrainingJob's spec.suspend, not an eviction.
        found = condition(workload, EVICTED)
        if found and found.get("status") == "True" and found.get("reason") != "Deactivated":
            evicted = bounded_message(found.get("message") or found.get("reason") or EVICTED)
    elif ran_before:
        evicted = "Kueue suspended its Job (evicted or preempted)"
    return QueueState(queue, admitted=False, waiting=waiting, evicted=evicted)


def workload_active(workload: Mapping[str, Any]) -> bool:
    """A Workload's ``spec.active`` (Kueue's default: true)."""
    return (workload.get("spec") or {}).get("active") is not False


def queue_conditions(state: QueueState) -> list[dict[str, str]]:
    """``Queued``, ``Admitted`` and ``Evicted`` (type, status, reason, message) for the
    TrainingJob's status; timestamps are added with the phase's conditions."""
    queued = not state.admitted
    return [
        {
            "type": QUEUED,
            "status": "True" if queued else "False",
            "reason": "Evicted"
            if state.evicted and queued
            else "Waiting"
            if queued
            else "Admitted",
            "message": state.waiting if queued else f"admitted by Kueue from queue {state.queue}",
        },
        {
            "type": ADMITTED,
            "status": "True" if state.admitted else "False",
            "reason": "Admitted" if state.admitted else "Waiting",
            "message": (
                f"admitted by Kueue from queue {state.queue}" if state.admitted else state.waiting
            ),
        },
        {
            "type": EVICTED,
            "status": "True" if state.evicted and queued else "False",
            "reason": "Evicted" if state.evicted and queued else "NotEvicted",
            "message": state.evicted if state.evicted and queued else "not evicted",
        },
    ]
