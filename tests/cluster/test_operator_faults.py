"""The operator's and the table's lifecycle under faults (issue 15, items 5, 8 and 13):
the real `tjctl operator` process (SIGKILLed where a crash is meant) against the real
kube-apiserver and Job controller, the pod harness running the real trainer, a real
SQLite table and the real run folders."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.cluster.operator_env import (
    CLAIM,
    OperatorEnv,
    running_operator,
)
from tjcore.spec import validate_spec
from tjoperator.config import OperatorConfig
from tjoperator.job_builder import build_job

BRIDGE_NAMESPACE = "tj-faults-bridge"
# Long enough to act on a run in the middle; short enough to run to its end.
MEDIUM = {"timeframe": "15m", "nTrials": 8, "trainRatio": 0.8, "seed": 1}
# Long enough to be still running a second or two after its second trial: with trials
# that no longer wait for the journal's fsync, 8 + 8 of them could end before the Job
# was deleted (a fresh-clone CI of d48d17f).
RESUMABLE = {**MEDIUM, "nTrials": 60}
LONG = {"timeframe": "15m", "nTrials": 400, "trainRatio": 0.8, "seed": 1}
FINAL = ("Succeeded", "Failed", "Cancelled")


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    # No --namespace: the operator watches all namespaces (the chart's watchAllNamespaces).
    with running_operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        env={"TJ_CANCEL_GRACE_SECONDS": "30"},
        args=("--bridge-namespace", BRIDGE_NAMESPACE),
        namespaces=(BRIDGE_NAMESPACE,),
    ) as env:
        yield env


def _progress(env: OperatorEnv, namespace: str, name: str) -> dict[str, Any]:
    return env.progress(namespace, name)


def _events(env: OperatorEnv, namespace: str, name: str) -> list[dict[str, Any]]:
    result = env.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name},involvedObject.kind=TrainingJob",
        "-o",
        "json",
    )
    return list(json.loads(result.stdout)["items"])


def _reasons(env: OperatorEnv, namespace: str, name: str) -> list[str]:
    return [str(e.get("reason")) for e in _events(env, namespace, name)]


def _patch_cancel(env: OperatorEnv, namespace: str, name: str) -> None:
    env.kubectl(
        "patch",
        "trainingjob",
        name,
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec":{"cancel":true}}',
    )


def _final_row(env: OperatorEnv, row_id: int) -> Any:
    def finished() -> Any:
        row = env.store.get(row_id)
        return row if row and row.is_final else None

    return env.wait_for(f"row {row_id} to end", finished, timeout=60)


def _row_name(env: OperatorEnv, row_id: int) -> str:
    def name() -> str | None:
        row = env.store.get(row_id)
        return row.name if row else None

    return str(env.wait_for(f"row {row_id} to be claimed by the bridge", name, timeout=30))


def _trial_log_matches_progress(env: OperatorEnv, row: Any, namespace: str, name: str) -> None:
    progress = _progress(env, namespace, name)
    assert progress, "no progress.json"
    assert [t["trial"] for t in row.trial_log] == [t["trial"] for t in progress["trials"]]
    assert row.current_trial == progress["completed_trials"]


# -- item 8: cancel while the operator is down ----------------------------------------
def test_a_cancel_made_while_the_operator_is_down_takes_the_normal_path(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "cancel-while-down", **LONG)
    env.wait_trials(namespace, "cancel-while-down", 2)
    row_id = env.status(namespace, "cancel-while-down")["rowId"]
    env.operator.kill()
    _patch_cancel(env, namespace, "cancel-while-down")
    time.sleep(1)
    assert _progress(env, namespace, "cancel-while-down")["state"] == "running"
    env.operator.start()
    status = env.wait_phase(namespace, "cancel-while-down", *FINAL, timeout=90)
    assert status["phase"] == "Cancelled", status
    assert "before it started" not in status["message"], status
    assert status["currentTrial"] >= 2, status
    # The trainer itself stopped after its trial (the cancel marker), within the grace.
    cancelled = {c["type"]: c for c in status["conditions"]}["Cancelled"]
    assert cancelled["reason"] == "CancelRequested", status
    assert _progress(env, namespace, "cancel-while-down")["state"] == "cancelled"
    row = _final_row(env, row_id)
    assert row.status == "cancelled" and row.model_version is None
    _trial_log_matches_progress(env, row, namespace, "cancel-while-down")


def test_a_run_that_completed_while_the_operator_was_down_stays_succeeded(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "done-while-down", **MEDIUM)
    env.wait_trials(namespace, "done-while-down", 1)
    row_id = env.status(namespace, "done-while-down")["rowId"]
    env.operator.kill()
    env.wait_for(
        "the trainer to finish while the operator is down",
        lambda: _progress(env, namespace, "done-while-down").get("state") == "completed",
        timeout=180,
    )
    _patch_cancel(env, namespace, "done-while-down")  # too late: it has finished
    env.operator.start()
    status = env.wait_phase(namespace, "done-while-down", *FINAL, timeout=90)
    assert status["phase"] == "Succeeded", status
    version = _progress(env, namespace, "done-while-down")["model_version"]
    assert status["modelVersion"] == version
    row = _final_row(env, row_id)
    assert (row.status, row.model_version) == ("completed", version)
    _trial_log_matches_progress(env, row, namespace, "done-while-down")


# -- item 8: the Job deleted under a running TrainingJob -------------------------------
def test_deleting_the_job_of_a_running_trainingjob_is_noticed_and_the_run_resumes(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "lost-job", **RESUMABLE)
    env.wait_trials(namespace, "lost-job", 2)
    old = env.jobs_of(namespace, "lost-job")[0]["metadata"]["uid"]
    env.kubectl("delete", "job", "lost-job-train", "-n", namespace)
    env.wait_for(
        "a Warning Event about the deleted Job",
        lambda: "JobDeleted" in _reasons(env, namespace, "lost-job"),
        timeout=60,
    )
    jobs = env.wait_for(
        "the Job to be created again",
        lambda: [j for j in env.jobs_of(namespace, "lost-job") if j["metadata"]["uid"] != old],
        timeout=90,
    )
    assert len(jobs) == 1
    status = env.wait_phase(namespace, "lost-job", *FINAL, timeout=240)
    assert status["phase"] == "Succeeded", status
    assert status["trial"] == "120/120"
    event = next(e for e in _events(env, namespace, "lost-job") if e["reason"] == "JobDeleted")
    assert event["type"] == "Warning" and "lost-job-train" in event["message"]
    assert "JobDeleted" in env.operator.log_path.read_text()
    row = _final_row(env, status["rowId"])
    assert row.status == "completed"
    _trial_log_matches_progress(env, row, namespace, "lost-job")


# -- item 8: the final progress reaches the table --------------------------------------
def test_after_a_delete_the_row_holds_the_final_trial_log(env: OperatorEnv, namespace: str) -> None:
    env.apply(namespace, "deleted-mid-run", **LONG)
    env.wait_trials(namespace, "deleted-mid-run", 2)
    row_id = env.status(namespace, "deleted-mid-run")["rowId"]
    env.kubectl("delete", "trainingjob", "deleted-mid-run", "-n", namespace, "--timeout=90s")
    env.wait_for("the pods to go", lambda: not env.pods_of(namespace, "deleted-mid-run"), 60)
    row = _final_row(env, row_id)
    assert row.status == "cancelled"
    time.sleep(1)  # anything the trainer wrote on its way out is on disk by now
    _trial_log_matches_progress(env, env.store.get(row_id), namespace, "deleted-mid-run")


# -- item 8: JobCreated after a crash right after creating the Job ---------------------
def test_job_created_is_posted_by_an_operator_killed_right_after_creating_the_job(
    env: OperatorEnv, namespace: str
) -> None:
    env.operator.kill()
    env.apply(namespace, "crash-after-create", **MEDIUM)
    body = env.get(namespace, "crash-after-create")
    assert body is not None
    # What the killed operator left behind: the Job it created, and nothing else yet.
    config = OperatorConfig(pvc_claim=CLAIM)  # what the test operator runs with
    job = build_job(
        name="crash-after-create",
        namespace=namespace,
        uid=body["metadata"]["uid"],
        spec=validate_spec(body["spec"]),
        config=config,
    )
    env.kubectl("create", "-f", "-", input=yaml.safe_dump(job))
    env.operator.start()
    env.wait_for(
        "the JobCreated Event",
        lambda: "JobCreated" in _reasons(env, namespace, "crash-after-create"),
        timeout=60,
    )
    status = env.wait_phase(namespace, "crash-after-create", *FINAL, timeout=240)
    assert status["phase"] == "Succeeded", status
    assert len(env.jobs_of(namespace, "crash-after-create")) == 1


# -- item 5: a TrainingJob deleted before its rowId reached the status ----------------
NO_JOBS_QUOTA = {
    "apiVersion": "v1",
    "kind": "ResourceQuota",
    "metadata": {"name": "no-jobs", "namespace": BRIDGE_NAMESPACE},
    "spec": {"hard": {"count/jobs.batch": "0"}},
}


def test_a_bridge_trainingjob_deleted_before_its_row_id_reached_the_status_stays_deleted(
    env: OperatorEnv,
) -> None:
    # A quota that refuses every Job (403, retried): the TrainingJob gets its row but its
    # create handler never gets to write the rowId into the status.
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(NO_JOBS_QUOTA))
    try:
        time.sleep(2)  # the quota controller counts the namespace's Jobs first
        job_id = env.store.submit(timeframe="15m", n_trials=2, train_ratio=0.8, source="ui")
        name = _row_name(env, job_id)
        env.wait_for(
            "the TrainingJob", lambda: env.get(BRIDGE_NAMESPACE, name) is not None, timeout=30
        )
        env.wait_for(
            "the operator to try its Job",
            lambda: "exceeded quota" in env.operator.log_path.read_text(),
            timeout=60,
        )
        assert "rowId" not in env.status(BRIDGE_NAMESPACE, name)
        env.kubectl("delete", "trainingjob", name, "-n", BRIDGE_NAMESPACE, "--timeout=60s")
        row = _final_row(env, job_id)
        assert row.status == "cancelled"
        env.operator.kill()
        env.operator.start()
        time.sleep(8)  # several bridge passes of the restarted operator
        assert env.get(BRIDGE_NAMESPACE, name) is None, "the bridge made it again"
        assert env.store.get(job_id).status == "cancelled"  # type: ignore[union-attr]
    finally:
        env.kubectl("delete", "resourcequota", "no-jobs", "-n", BRIDGE_NAMESPACE, check=False)


def test_a_bridge_trainingjob_deleted_while_the_operator_is_down_ends_its_row(
    env: OperatorEnv,
) -> None:
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(NO_JOBS_QUOTA))
    try:
        time.sleep(2)
        job_id = env.store.submit(timeframe="15m", n_trials=2, train_ratio=0.8, source="ui")
        name = _row_name(env, job_id)
        env.wait_for(
            "the TrainingJob", lambda: env.get(BRIDGE_NAMESPACE, name) is not None, timeout=30
        )
        env.operator.kill()
        # Deleted while nobody runs its finalizer: take the finalizer off, as an admin would.
        env.kubectl(
            "patch",
            "trainingjob",
            name,
            "-n",
            BRIDGE_NAMESPACE,
            "--type",
            "merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
        )
        env.kubectl("delete", "trainingjob", name, "-n", BRIDGE_NAMESPACE, "--timeout=60s")
        env.operator.start()
        row = _final_row(env, job_id)
        assert row.status == "cancelled" and "deleted" in (row.error or ""), row
        time.sleep(3)
        assert env.get(BRIDGE_NAMESPACE, name) is None, "the bridge made it again"
    finally:
        env.kubectl("delete", "resourcequota", "no-jobs", "-n", BRIDGE_NAMESPACE, check=False)


# -- item 5: cancelled rows are forwarded once ----------------------------------------
def test_a_cancelled_row_is_not_sent_to_the_api_again_at_every_start(env: OperatorEnv) -> None:
    job_id = env.store.submit(timeframe="15m", n_trials=400, train_ratio=0.8, source="ui")
    name = _row_name(env, job_id)
    env.wait_trials(BRIDGE_NAMESPACE, name, 1)
    env.store.request_cancel(job_id)
    status = env.wait_phase(BRIDGE_NAMESPACE, name, *FINAL, timeout=90)
    assert status["phase"] == "Cancelled", status
    line = f"row {job_id}: cancel requested in the table reached"
    assert env.operator.log_path.read_text().count(line) == 1
    for _ in range(2):
        env.operator.stop()
        env.operator.start()
        env.wait_for(
            "the bridge to start",
            lambda: env.operator.log_path.read_text().count("table bridge:") >= 1,
            timeout=30,
        )
        time.sleep(4)
    assert env.operator.log_path.read_text().count(line) == 1


# -- item 13: the bridge acts only on rows of its own namespace -----------------------
def test_a_table_cancel_never_reaches_a_trainingjob_of_another_namespace(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "not-the-bridges", **LONG)
    env.wait_trials(namespace, "not-the-bridges", 1)
    row_id = env.status(namespace, "not-the-bridges")["rowId"]
    env.store.request_cancel(row_id)  # the UI's Cancel button on that row
    time.sleep(6)  # several bridge passes
    body = env.get(namespace, "not-the-bridges")
    assert body is not None and not body["spec"].get("cancel"), body["spec"]
    assert body["status"]["phase"] == "Running"
    env.kubectl("delete", "trainingjob", "not-the-bridges", "-n", namespace, "--timeout=90s")


# -- smaller: one writer of status.phase ----------------------------------------------
def test_an_early_failure_stays_final(env: OperatorEnv, namespace: str) -> None:
    names = [f"refused-{i}" for i in range(4)]
    for name in names:
        env.apply(
            namespace,
            name,
            timeframe="15m",
            nTrials=2,
            resources={"requests": {"example.com/dongle": 1}, "limits": {"example.com/dongle": 2}},
        )
    for name in names:
        assert env.wait_phase(namespace, name, *FINAL, timeout=60)["phase"] == "Failed"
    time.sleep(3)
    for name in names:
        status = env.status(namespace, name)
        assert status["phase"] == "Failed", status
        failed = {c["type"]: c for c in status["conditions"]}["Failed"]
        assert failed["status"] == "True" and failed["reason"] == "JobRefused", status
        row = env.store.get(status["rowId"])
        assert row is not None and row.status == "failed"
