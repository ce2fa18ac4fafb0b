"""Following one TrainingJob while it runs: read its progress file and its Job, derive
the status, and write it to the CR and the table row within a poll interval."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tjcore.store import JobStore, progress_columns
from tjoperator import kube
from tjoperator.status import Observation, Phase, Verdict, build_status, judge, status_changed
from tjtrainer.progress import (
    PROGRESS_FILE,
    RunProgress,
    read_progress,
    request_cancel,
    utc_now,
)

log = logging.getLogger(__name__)
# Written by the operator into each run folder: the uid of the TrainingJob it belongs to.
OWNER_FILE = "OWNER"


@dataclass
class Tracker:
    """The state kept between two looks at one TrainingJob."""

    uid: str
    namespace: str
    name: str
    job_name: str
    run_dir: Path
    row_id: int | None
    total_trials: int
    last_status: dict[str, Any]
    progress: RunProgress | None = None
    progress_mtime: float = -1.0
    trainer_message: str | None = None
    cancel_since: float | None = None
    job_deleted_for_cancel: bool = False

    def read_progress(self) -> None:
        """Re-read ``progress.json`` when it changed since the last look; nothing is read
        until the run folder is this object's (a same-named predecessor's is not)."""
        try:
            if (self.run_dir / OWNER_FILE).read_text().strip() != self.uid:
                return
        except FileNotFoundError:
            return
        try:
            mtime = (self.run_dir / PROGRESS_FILE).stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self.progress_mtime:
            return
        try:
            self.progress = read_progress(self.run_dir)
            self.progress_mtime = mtime
        except ValueError as err:  # a newer format, or a file from something else
            log.error("%s/%s: cannot read %s: %s", self.namespace, self.name, PROGRESS_FILE, err)


async def observe(
    tracker: Tracker, job_status: dict[str, Any] | None, *, cancel: bool, grace: float
) -> Observation:
    """Look at the run once; handles the cancel marker and grace period on the way."""
    await asyncio.to_thread(tracker.read_progress)
    if cancel:
        if tracker.cancel_since is None:
            tracker.cancel_since = time.monotonic()
            await asyncio.to_thread(request_cancel, tracker.run_dir)
        overdue = time.monotonic() - tracker.cancel_since > grace
        running = tracker.progress is None or not tracker.progress.state.is_final
        if overdue and running and not tracker.job_deleted_for_cancel:
            log.warning(
                "%s/%s: trainer ignored the cancel for %.0f s; deleting its Job",
                tracker.namespace,
                tracker.name,
                grace,
            )
            await kube.call(lambda: kube.delete_job(tracker.namespace, tracker.job_name))
            tracker.job_deleted_for_cancel = True
    obs = Observation(
        tracker.progress, job_status, tracker.job_deleted_for_cancel, tracker.trainer_message
    )
    if judge(obs).phase == Phase.FAILED and tracker.trainer_message is None and job_status:
        message = await kube.call(lambda: kube.trainer_message(tracker.namespace, tracker.job_name))
        tracker.trainer_message = message or ""
        obs = Observation(
            tracker.progress,
            job_status,
            tracker.job_deleted_for_cancel,
            tracker.trainer_message or None,
        )
    return obs


def row_values(obs: Observation, verdict: Verdict) -> dict[str, Any]:
    """The table columns for an observation (the seed's words for the status)."""
    values = progress_columns(obs.progress) if obs.progress else {}
    values["status"] = verdict.phase.seed_word
    if verdict.phase.is_final:
        values["completed_at"] = values.get("completed_at") or utc_now()
        values["error"] = verdict.message if verdict.phase == Phase.FAILED else None
    if verdict.phase == Phase.SUCCEEDED:
        values["progress_pct"] = 100.0
    return values


async def publish(
    tracker: Tracker, obs: Observation, *, store: JobStore | None, generation: int | None
) -> Verdict | None:
    """Write the status and the row if anything changed; returns the verdict when the
    phase changed (for an Event), else ``None``."""
    verdict = judge(obs)
    status = build_status(
        obs,
        verdict,
        total_trials=tracker.total_trials,
        previous=tracker.last_status,
        generation=generation,
    )
    status["jobName"] = tracker.job_name
    if tracker.row_id is not None:  # a null would delete the key in a merge patch
        status["rowId"] = tracker.row_id
    if not status_changed(tracker.last_status, status):
        return None
    phase_changed = tracker.last_status.get("phase") != status["phase"]
    if store is not None and tracker.row_id is not None:
        row_id = tracker.row_id
        try:
            await asyncio.to_thread(store.update_job, row_id, **row_values(obs, verdict))
        except Exception:  # the table must never stop the CR from progressing
            log.exception(
                "%s/%s: could not update training_jobs row %s",
                tracker.namespace,
                tracker.name,
                row_id,
            )
    # The row first: whoever sees the CR's new phase finds the table already there.
    await kube.call(lambda: kube.patch_status(tracker.namespace, tracker.name, status))
    tracker.last_status = status
    return verdict if phase_changed else None
