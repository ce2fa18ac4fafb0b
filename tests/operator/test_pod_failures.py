"""Trainer pods that a real kubelet cannot start (image missing, unpullable, invalid) or
kills for its memory: what the TrainingJob, its Events, its Job and its row show.

The pod dicts have the shape the API returns (``kubectl get pod -o json``), as a kubelet
writes them: ``status.containerStatuses[].state.waiting{reason,message}``,
``.state.terminated{reason,exitCode}``, ``lastState``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import kopf
import pytest

from tjcore.store import JobStore
from tjoperator import handlers, kube, tracking
from tjoperator.config import OperatorConfig
from tjoperator.status import (
    Observation,
    Phase,
    Verdict,
    build_status,
    judge,
    pod_trouble,
    termination_message,
)
from tjoperator.tracking import Tracker, act, observe, publish
from tjtrainer.progress import RunProgress, RunState, run_dir_for, write_progress

IMAGE = "localhost/trainingjob-trainer:0.1.0"
NODE = "worker-1"
NEVER_PULL = f'Container image "{IMAGE}" is not present with pull policy of Never'
PULL_ERROR = (
    f'rpc error: code = NotFound desc = failed to pull and unpack image "{IMAGE}": '
    f'failed to resolve reference "{IMAGE}": {IMAGE}: not found'
)
BACK_OFF = f'Back-off pulling image "{IMAGE}"'


def pod(
    *,
    phase: str = "Pending",
    state: dict[str, Any] | None = None,
    last_state: dict[str, Any] | None = None,
    name: str = "small-train-abcde",
    image: str = IMAGE,
    memory_limit: str | None = "4Gi",
    restarts: int = 0,
) -> dict[str, Any]:
    """A trainer pod as the API returns it, with the trainer container in ``state``."""
    resources: dict[str, Any] = {"requests": {"cpu": "1", "memory": "1Gi"}}
    if memory_limit:
        resources["limits"] = {"memory": memory_limit}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {
                "batch.kubernetes.io/controller-uid": "c0ffee",
                "batch.kubernetes.io/job-name": "small-train",
                "job-name": "small-train",
            },
        },
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "trainer",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "resources": resources,
                }
            ],
        },
        "status": {
            "phase": phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
            ],
            "startTime": "2026-11-26T13:14:21Z",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": restarts,
                    "state": state or {"waiting": {"reason": "ContainerCreating"}},
                    "lastState": last_state or {},
                }
            ],
        },
    }


def waiting(reason: str, message: str) -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


def terminated(reason: str, code: int, message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reason": reason,
        "exitCode": code,
        "startedAt": "2026-11-26T13:14:22Z",
        "finishedAt": "2026-11-26T13:16:40Z",
        "containerID": "containerd://0123abcd",
    }
    if message is not None:
        body["message"] = message
    return {"terminated": body}


OOM_POD = pod(phase="Failed", state=terminated("OOMKilled", 137))
ACTIVE = {"active": 1, "ready": 0, "startTime": "2026-11-26T13:14:21Z"}


def running(done: int = 3) -> RunProgress:
    return RunProgress(timeframe="15m", n_trials=10, total_trials=20, completed_trials=done)


# -- judge: pure ------------------------------------------------------------------------
def test_an_image_missing_from_the_node_fails_at_once_naming_the_image() -> None:
    obs = Observation(None, ACTIVE, pods=(pod(state=waiting("ErrImageNeverPull", NEVER_PULL)),))
    verdict = judge(obs)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "ImageNotFound")
    assert verdict.message.startswith(
        f"trainer image {IMAGE} is not on node {NODE} (ErrImageNeverPull"
    )
    assert "load it into the node's container runtime" in verdict.message
    assert "spec.image" in verdict.message and "trainer.image" in verdict.message


def test_an_invalid_image_name_fails_at_once() -> None:
    bad = "Trainer:Latest!"
    message = (
        f'Failed to apply default image tag "{bad}": couldn\'t parse image name '
        f'"{bad}": invalid reference format'
    )
    obs = Observation(
        None, ACTIVE, pods=(pod(image=bad, state=waiting("InvalidImageName", message)),)
    )
    verdict = judge(obs)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "InvalidImageName")
    assert repr(bad) in verdict.message and "invalid reference format" in verdict.message
    assert "spec.image" in verdict.message


@pytest.mark.parametrize(
    ("reason", "message"), [("ErrImagePull", PULL_ERROR), ("ImagePullBackOff", BACK_OFF)]
)
def test_a_failing_pull_is_shown_while_pending_then_fails_after_the_timeout(
    reason: str, message: str
) -> None:
    pods = (pod(state=waiting(reason, message)),)
    verdict = judge(
        Observation(None, ACTIVE, pods=pods, image_pull_seconds=12, image_pull_timeout=300)
    )
    assert (verdict.phase, verdict.reason) == (Phase.PENDING, "ImagePullBackOff")
    assert verdict.warning
    assert f"cannot pull trainer image {IMAGE}" in verdict.message
    assert message in verdict.message and "300 s" in verdict.message
    late = judge(
        Observation(None, ACTIVE, pods=pods, image_pull_seconds=300, image_pull_timeout=300)
    )
    assert (late.phase, late.reason) == (Phase.FAILED, "ImagePullBackOff")
    assert f"trainer image {IMAGE} could not be pulled" in late.message
    assert "imagePullSecrets" in late.message


def test_pending_conditions_say_why_the_run_has_not_started() -> None:
    obs = Observation(None, ACTIVE, pods=(pod(state=waiting("ImagePullBackOff", BACK_OFF)),))
    verdict = judge(obs)
    status = build_status(obs, verdict, total_trials=20, previous={}, generation=1)
    assert status["phase"] == "Pending" and status["message"] == verdict.message
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Running"]["status"] == "False"
    assert conditions["Running"]["reason"] == "ImagePullBackOff"
    assert IMAGE in conditions["Running"]["message"]
    assert "Failed" not in conditions, "a condition restates a phase the run is not in"


def test_an_oom_kill_fails_at_once_naming_the_limit_and_the_fix() -> None:
    verdict = judge(Observation(running(), {"active": 0, "failed": 1}, pods=(OOM_POD,)))
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "OOMKilled")
    assert "OOMKilled (exit code 137)" in verdict.message
    assert "memory limit of 4Gi" in verdict.message
    assert "raise spec.resources.limits.memory" in verdict.message
    assert "finished trials are kept" in verdict.message


def test_an_oom_kill_beats_the_jobs_generic_backoff_failure() -> None:
    job = {
        "failed": 3,
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "x"}
        ],
    }
    verdict = judge(Observation(running(), job, pods=(OOM_POD,), trainer_message="Killed"))
    assert verdict.reason == "OOMKilled" and "4Gi" in verdict.message


def test_an_oom_kill_in_last_state_counts_and_no_limit_is_explained() -> None:
    restarted = pod(
        phase="Running",
        state={"running": {"startedAt": "2026-11-26T13:17:00Z"}},
        last_state=terminated("OOMKilled", 137),
        memory_limit=None,
        restarts=1,
    )
    verdict = judge(Observation(running(), ACTIVE, pods=(restarted,)))
    assert verdict.reason == "OOMKilled"
    assert "no memory limit set" in verdict.message and NODE in verdict.message


def test_other_pod_endings_are_not_pod_trouble() -> None:
    errored = pod(phase="Failed", state=terminated("Error", 3, "boom"))
    sigkilled = pod(phase="Failed", state=terminated("Error", 137))
    creating = pod(state=waiting("ContainerCreating", ""))
    assert pod_trouble((errored, sigkilled, creating)) is None
    assert judge(Observation(running(), ACTIVE, pods=(errored, creating))).phase == Phase.RUNNING


def test_the_trainers_own_error_and_a_finished_run_win_over_the_pods() -> None:
    failed = RunProgress(
        timeframe="15m", n_trials=10, total_trials=20, state=RunState.FAILED, error="bad data"
    )
    assert judge(Observation(failed, None, pods=(OOM_POD,))).message == "bad data"
    done = RunProgress(
        timeframe="15m", n_trials=10, total_trials=20, state=RunState.COMPLETED, model_version="v"
    )
    assert judge(Observation(done, None, pods=(OOM_POD,))).phase == Phase.SUCCEEDED


def test_termination_message_is_the_last_line_of_the_latest_failure() -> None:
    early = pod(phase="Failed", state=terminated("Error", 3, "Traceback\nearly error\n"))
    late = pod(phase="Failed", state=terminated("Error", 1, "Traceback\n  x\nlate error\n"))
    late["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = (
        "2027-01-01T00:00:00Z"
    )
    assert termination_message((late, early)) == "late error"
    assert termination_message((pod(),)) is None


# -- the tracker against a fake API ---------------------------------------------------
class FakeApi:
    """The calls tracking.py makes, with what a real cluster would answer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pods: list[dict[str, Any]] = []
        self.job_exists = True
        self.selector_reads = 0
        self.pod_lists = 0
        self.deletes: list[tuple[str, str]] = []
        self.statuses: list[dict[str, Any]] = []
        monkeypatch.setattr(kube, "job_pod_selector", self.job_pod_selector)
        monkeypatch.setattr(kube, "list_pods", self.list_pods)
        monkeypatch.setattr(kube, "list_trainingjob_pods", self.list_trainingjob_pods)
        monkeypatch.setattr(kube, "delete_job", self.delete_job)
        monkeypatch.setattr(kube, "patch_status", self.patch_status)

    def job_pod_selector(self, namespace: str, name: str) -> str | None:
        self.selector_reads += 1
        return "batch.kubernetes.io/controller-uid=c0ffee" if self.job_exists else None

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        assert selector == "batch.kubernetes.io/controller-uid=c0ffee"
        self.pod_lists += 1
        return [dict(p) for p in self.pods] if self.job_exists else []

    def list_trainingjob_pods(self, namespace: str, name: str, label: str) -> list[dict[str, Any]]:
        """The pods of every Job of the TrainingJob (the settle step waits for them)."""
        return [dict(p) for p in self.pods] if self.job_exists else []

    def delete_job(self, namespace: str, name: str) -> bool:
        self.deletes.append((namespace, name))
        existed, self.job_exists = self.job_exists, False
        return existed

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    return FakeApi(monkeypatch)


def tracker(run_dir: Path, row_id: int | None = None) -> Tracker:
    return Tracker(
        uid="uid-1",
        namespace="ns",
        name="small",
        job_name="small-train",
        run_dir=run_dir,
        row_id=row_id,
        total_trials=20,
        last_status={},
    )


def poll(t: Tracker, job: dict[str, Any] | None, **kwargs: Any) -> Any:
    async def once() -> Any:
        obs = await observe(t, job, **kwargs)
        obs = await act(t, obs, job, cancel=False, grace=120)
        return obs, await publish(t, obs, store=None, generation=1)

    return asyncio.run(once())


def test_pods_are_listed_only_while_the_job_counts_say_something_is_wrong(
    api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tracker(tmp_path)
    api.pods = [pod()]
    poll(t, None)  # no Job yet
    poll(t, {"active": 1, "ready": 1})  # running and ready
    poll(t, {"succeeded": 1})
    assert (api.selector_reads, api.pod_lists) == (0, 0)
    for _ in range(5):  # active, not ready: once per POD_CHECK_SECONDS, not per poll
        poll(t, ACTIVE)
    assert (api.selector_reads, api.pod_lists) == (1, 1)
    monkeypatch.setattr(tracking, "POD_CHECK_SECONDS", 0.0)
    poll(t, ACTIVE)
    assert (api.selector_reads, api.pod_lists) == (1, 2)  # the selector is read once
    poll(t, {"active": 1, "ready": 1, "failed": 1})  # a pod failed: look at once
    assert api.pod_lists == 3
    poll(t, {"active": 1, "ready": 1, "failed": 1})
    assert api.pod_lists == 3


def test_a_missing_image_deletes_the_job_once_and_fails_the_run(
    api: FakeApi, tmp_path: Path
) -> None:
    t = tracker(tmp_path)
    api.pods = [pod(state=waiting("ErrImageNeverPull", NEVER_PULL))]
    obs, event = poll(t, ACTIVE)
    assert event is not None and (event.phase, event.reason) == (Phase.FAILED, "ImageNotFound")
    assert IMAGE in event.message
    assert api.deletes == [("ns", "small-train")]
    # Later looks (the Job is going, its pods with it) keep the verdict, delete nothing.
    for job in (ACTIVE, None):
        obs, event = poll(t, job)
        assert judge(obs).reason == "ImageNotFound"
    assert api.deletes == [("ns", "small-train")]
    assert api.statuses[-1]["phase"] == "Failed"


def test_an_oom_killed_pod_ends_the_run_before_the_job_retries(
    api: FakeApi, tmp_path: Path
) -> None:
    t = tracker(tmp_path)
    api.pods = [OOM_POD, pod(name="small-train-retry")]  # the Job made its next pod
    _, event = poll(t, {"active": 1, "ready": 0, "failed": 1})
    assert event is not None and (event.phase, event.reason) == (Phase.FAILED, "OOMKilled")
    assert "4Gi" in event.message
    assert api.deletes == [("ns", "small-train")]
    failed = {c["type"]: c for c in api.statuses[-1]["conditions"]}["Failed"]
    assert failed["reason"] == "OOMKilled"


def test_an_oom_seen_after_the_job_failed_names_it_without_deleting(
    api: FakeApi, tmp_path: Path
) -> None:
    t = tracker(tmp_path)
    api.pods = [OOM_POD, OOM_POD, OOM_POD]
    job = {
        "failed": 3,
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "x"}
        ],
    }
    t.failed_pods_seen = 3  # as if this tracker had seen the failures one by one
    _, event = poll(t, job)
    assert event is not None and event.reason == "OOMKilled"
    assert api.deletes == []  # a finished Job needs no deleting


def test_a_failing_pull_warns_once_then_fails_after_the_timeout(
    api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracking, "POD_CHECK_SECONDS", 0.0)
    t = tracker(tmp_path)
    events = []
    for reason, message in [("ErrImagePull", PULL_ERROR), ("ImagePullBackOff", BACK_OFF)] * 3:
        api.pods = [pod(state=waiting(reason, message))]
        _, event = poll(t, ACTIVE, image_pull_timeout=3600)
        events.append(event)
    warnings = [e for e in events if e is not None]
    assert len(warnings) == 1
    assert (warnings[0].phase, warnings[0].reason) == (Phase.PENDING, "ImagePullBackOff")
    assert warnings[0].warning
    assert api.statuses[-1]["phase"] == "Pending" and BACK_OFF in api.statuses[-1]["message"]
    assert api.deletes == []
    _, event = poll(t, ACTIVE, image_pull_timeout=1e-9)
    assert event is not None and (event.phase, event.reason) == (Phase.FAILED, "ImagePullBackOff")
    assert api.deletes == [("ns", "small-train")]


def test_a_pull_that_recovers_clears_the_warning(
    api: FakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracking, "POD_CHECK_SECONDS", 0.0)
    t = tracker(tmp_path)
    api.pods = [pod(state=waiting("ImagePullBackOff", BACK_OFF))]
    poll(t, ACTIVE)
    assert t.image_pull_since is not None
    obs, _ = poll(t, {"active": 1, "ready": 1})
    assert t.image_pull_since is None and judge(obs).reason == "PodStarted"


# -- the daemon: phase, Events and the row --------------------------------------------
class Stopped:
    """kopf's DaemonStopped after ``polls`` waits."""

    def __init__(self, polls: int) -> None:
        self.left = polls

    def __bool__(self) -> bool:
        return self.left <= 0

    async def wait(self, timeout: float) -> None:
        self.left -= 1
        await asyncio.sleep(0)


class Index:
    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        return [self.status] if key == ("ns", "small-train") else default


def run_daemon(
    shared: Path,
    store: JobStore,
    monkeypatch: pytest.MonkeyPatch,
    job: dict[str, Any],
    started: bool = True,
    row_in_status: bool = True,
    polls: int = 20,
    memo: kopf.Memo | None = None,
    **config: Any,
) -> tuple[int, list[dict[str, Any]]]:
    """Run ``track_progress`` for TrainingJob ns/small with a row; returns the row id and
    the Events it posted."""
    row_id = store.submit(
        timeframe="15m", n_trials=10, train_ratio=0.8, source="kubectl", uid="uid-1"
    )
    run_dir = run_dir_for(shared, "ns", "small", "uid-1")
    run_dir.mkdir(parents=True)
    if started:  # the trainer has written its progress
        write_progress(run_dir, running(2))
    events: list[dict[str, Any]] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: events.append(kw))
    monkeypatch.setattr(tracking, "POD_CHECK_SECONDS", 0.0)
    memo = memo if memo is not None else kopf.Memo()
    memo.config = OperatorConfig(shared_data_path=shared, poll_seconds=0, **config)
    memo.table = handlers.Table(store)
    body = {
        "metadata": {"name": "small", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": {"timeframe": "15m", "nTrials": 10},
        "status": {"rowId": row_id, "jobName": "small-train"} if row_in_status else {},
    }
    daemon: Any = handlers.track_progress  # kopf's decorator types it as its DaemonFn
    asyncio.run(
        daemon(
            body=body,
            name="small",
            namespace="ns",
            stopped=Stopped(polls),
            memo=memo,
            logger=logging.getLogger("test"),
            job_statuses=Index(job),
        )
    )
    return row_id, events


def test_the_daemon_reports_an_oom_kill_in_status_event_and_row(
    api: FakeApi, shared_dir: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.pods = [OOM_POD]
    row_id, events = run_daemon(
        shared_dir, store, monkeypatch, {"active": 1, "ready": 0, "failed": 1}
    )
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "OOMKilled")]
    assert "4Gi" in events[0]["message"]
    assert api.deletes == [("ns", "small-train")]
    status = api.statuses[-1]
    assert status["phase"] == "Failed" and "limits.memory" in status["message"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert (failed["status"], failed["reason"]) == ("True", "OOMKilled")
    row = store.get(row_id)
    assert row is not None and row.status == "failed"
    assert row.error == status["message"]


def test_the_daemon_warns_once_about_a_failing_pull(
    api: FakeApi, shared_dir: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.pods = [pod(state=waiting("ImagePullBackOff", BACK_OFF))]
    row_id, events = run_daemon(
        shared_dir,
        store,
        monkeypatch,
        ACTIVE,
        started=False,
        polls=30,
        image_pull_timeout_seconds=3600,
    )
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "ImagePullBackOff")]
    assert events[0]["message"].startswith(f"Pending: cannot pull trainer image {IMAGE}")
    assert api.deletes == []
    assert api.statuses[-1]["phase"] == "Pending"
    row = store.get(row_id)
    assert row is not None and row.status == "pending" and row.error is None


def test_the_daemon_fails_a_pull_that_does_not_recover_in_time(
    api: FakeApi, shared_dir: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.pods = [pod(state=waiting("ImagePullBackOff", BACK_OFF))]
    row_id, events = run_daemon(
        shared_dir, store, monkeypatch, ACTIVE, started=False, image_pull_timeout_seconds=1e-9
    )
    # First the warning (Pending), then the failure: two Events, each once.
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "ImagePullBackOff")] * 2
    assert events[0]["message"].startswith("Pending: cannot pull")
    assert events[1]["message"].startswith(f"Failed: trainer image {IMAGE} could not be pulled")
    assert api.deletes == [("ns", "small-train")]
    row = store.get(row_id)
    assert row is not None and row.status == "failed" and IMAGE in (row.error or "")


def test_the_daemon_fails_a_missing_image_at_once(
    api: FakeApi, shared_dir: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.pods = [pod(state=waiting("ErrImageNeverPull", NEVER_PULL))]
    row_id, events = run_daemon(shared_dir, store, monkeypatch, ACTIVE, started=False)
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "ImageNotFound")]
    assert api.deletes == [("ns", "small-train")]
    row = store.get(row_id)
    assert row is not None and row.status == "failed"
    assert (row.error or "").startswith(f"trainer image {IMAGE} is not on node {NODE}")


def test_the_pull_timeout_is_a_setting_like_the_cancel_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argparse

    from tjoperator import cli

    assert OperatorConfig.from_env().image_pull_timeout_seconds == 300
    monkeypatch.setenv("TJ_IMAGE_PULL_TIMEOUT_SECONDS", "45")
    assert OperatorConfig.from_env().image_pull_timeout_seconds == 45
    assert OperatorConfig.from_env(image_pull_timeout_seconds=9).image_pull_timeout_seconds == 9
    monkeypatch.setenv("TJ_IMAGE_PULL_TIMEOUT_SECONDS", "0")
    with pytest.raises(
        ValueError, match="TJ_IMAGE_PULL_TIMEOUT_SECONDS must be a number of seconds > 0"
    ):
        OperatorConfig.from_env()
    monkeypatch.delenv("TJ_IMAGE_PULL_TIMEOUT_SECONDS")
    with pytest.raises(
        ValueError, match="--image-pull-timeout-seconds must be a number of seconds > 0"
    ):
        OperatorConfig.from_env(image_pull_timeout_seconds=-1)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["operator", "--image-pull-timeout-seconds", "60"])
    assert args.image_pull_timeout_seconds == 60


def test_a_run_that_fails_before_its_row_is_named_in_the_status_still_fails_the_row(
    api: FakeApi, shared_dir: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kubelet reports ErrImageNeverPull within a second; the create handler may not yet
    # have written status.rowId when the daemon sees it.
    api.pods = [pod(state=waiting("ErrImageNeverPull", NEVER_PULL))]
    row_id, events = run_daemon(
        shared_dir, store, monkeypatch, ACTIVE, started=False, row_in_status=False
    )
    assert [e["reason"] for e in events] == ["ImageNotFound"]
    assert api.statuses[-1]["rowId"] == row_id
    row = store.get(row_id)
    assert row is not None and row.status == "failed" and IMAGE in (row.error or "")


def test_a_verdict_of_the_create_handler_is_published_by_the_daemon_alone(
    api: FakeApi, shared_dir: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The create handler decided (the API refused the Job) and handed the verdict over;
    # the daemon, the one writer of the phase, publishes it once and ends.
    memo = kopf.Memo()
    memo[handlers.EARLY_VERDICT] = Verdict(Phase.FAILED, "JobRefused", "the API refused it")
    row_id, events = run_daemon(
        shared_dir, store, monkeypatch, {}, started=False, memo=memo, polls=5
    )
    assert [s["phase"] for s in api.statuses] == ["Failed"]
    assert api.statuses[-1]["message"] == "the API refused it"
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "JobRefused")]
    row = store.get(row_id)
    assert row is not None and row.status == "failed" and row.error == "the API refused it"


def test_after_an_api_error_kopf_runs_the_daemon_again_with_its_tracker(
    api: FakeApi, shared_dir: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The status write answers 503 once: the daemon ends with kopf.TemporaryError (kopf
    # runs it again after the delay); the run again keeps what the first one did.
    api.pods = [OOM_POD]
    answers = [kube.ApiException(status=503, reason="Service Unavailable")]
    patch = api.patch_status

    def flaky_patch(namespace: str, name: str, status: dict[str, Any]) -> None:
        if answers:
            raise answers.pop(0)
        patch(namespace, name, status)

    monkeypatch.setattr(kube, "patch_status", flaky_patch)
    memo = kopf.Memo()
    with pytest.raises(kopf.TemporaryError):
        run_daemon(
            shared_dir, store, monkeypatch, {"active": 1, "ready": 0, "failed": 1}, memo=memo
        )
    first = memo[handlers.TRACKER]
    assert api.deletes == [("ns", "small-train")] and api.statuses == []
    daemon: Any = handlers.track_progress
    body = {
        "metadata": {"name": "small", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": {"timeframe": "15m", "nTrials": 10},
        "status": {"jobName": "small-train"},
    }
    asyncio.run(
        daemon(
            body=body,
            namespace="ns",
            stopped=Stopped(5),
            memo=memo,
            logger=logging.getLogger("test"),
            job_statuses=Index({"active": 1, "ready": 0, "failed": 1}),
        )
    )
    assert memo[handlers.TRACKER] is first
    assert api.deletes == [("ns", "small-train")], "the Job was deleted twice"
    assert [s["phase"] for s in api.statuses] == ["Failed"]
