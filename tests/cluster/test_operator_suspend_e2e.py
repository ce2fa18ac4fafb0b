"""Suspend and resume (issue 13 item 1) end to end: the real `tjctl operator`, the real
kube-controller-manager Job controller (it deletes a suspended Job's pods and makes a
new one on resume), the pod harness running the real trainer (SIGTERM when its pod is
deleted) and the real run folder and study."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from tests.cluster.operator_env import OperatorEnv, running_operator
from tjtrainer.studies import open_run_storage

# Long enough to be suspended in the middle, short enough to run to its end.
RUN = {"timeframe": "15m", "nTrials": 12, "trainRatio": 0.8, "seed": 3}
LONG = {"timeframe": "15m", "nTrials": 400, "trainRatio": 0.8, "seed": 3}
FINAL = ("Succeeded", "Failed", "Cancelled")


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    # A short cancel grace and image-pull timeout: neither may fire while suspended.
    with running_operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        env={"TJ_CANCEL_GRACE_SECONDS": "5", "TJ_IMAGE_PULL_TIMEOUT_SECONDS": "5"},
    ) as env:
        yield env


def _progress(env: OperatorEnv, namespace: str, name: str) -> dict[str, Any]:
    return env.progress(namespace, name)


def _patch(env: OperatorEnv, namespace: str, name: str, **spec: Any) -> None:
    env.kubectl(
        "patch", "trainingjob", name, "-n", namespace, "--type", "merge",
        "-p", json.dumps({"spec": spec}),
    )  # fmt: skip


def _reasons(env: OperatorEnv, namespace: str, name: str) -> list[str]:
    result = env.kubectl(
        "get", "events", "-n", namespace,
        "--field-selector", f"involvedObject.name={name},involvedObject.kind=TrainingJob",
        "-o", "json",
    )  # fmt: skip
    return [str(e.get("reason")) for e in json.loads(result.stdout)["items"]]


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return {c["type"]: c for c in status.get("conditions") or []}[kind]


def _job_spec(env: OperatorEnv, namespace: str, name: str) -> dict[str, Any]:
    jobs = env.jobs_of(namespace, name)
    assert len(jobs) == 1, jobs
    return dict(jobs[0]["spec"])


def _live_pods(env: OperatorEnv, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in env.pods_of(namespace, name)
        if not p["metadata"].get("deletionTimestamp")
        and p["status"].get("phase") in ("Pending", "Running")
    ]


def _finished_trials(run_dir: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    storage = open_run_storage(run_dir)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return {
        model: [
            t
            for t in optuna.load_study(study_name=model, storage=storage).get_trials(deepcopy=False)
            if t.state in finished
        ]
        for model in ("LONG", "SHORT")
    }


def test_suspend_stops_the_pod_keeps_the_trials_and_resume_finishes_the_same_study(
    env: OperatorEnv, namespace: str
) -> None:
    name = "suspended-mid-run"
    env.apply(namespace, name, **RUN)
    env.wait_trials(namespace, name, 2)
    _patch(env, namespace, name, suspend=True)
    status = env.wait_phase(namespace, name, "Suspended", *FINAL, timeout=90)
    assert status["phase"] == "Suspended", status
    assert _condition(status, "Suspended")["status"] == "True"
    assert _condition(status, "Running")["status"] == "False"
    row_id = status["rowId"]
    env.wait_for(  # the table's word: not ended
        "the row to say running",
        lambda: getattr(env.store.get(row_id), "status", None) == "running",
        30,
    )
    assert _job_spec(env, namespace, name)["suspend"] is True
    env.wait_for("the trainer pod to go", lambda: not _live_pods(env, namespace, name), 30)
    kept = _progress(env, namespace, name)
    assert kept["state"] == "running" and kept["completed_trials"] >= 2
    before = {(t["model"], t["number"]): t["spearman"] for t in kept["trials"]}
    assert status["currentTrial"] == kept["completed_trials"]
    # Nothing runs while suspended, and no limit of the operator fires (5 s each here).
    time.sleep(12)
    assert _progress(env, namespace, name)["completed_trials"] == kept["completed_trials"]
    assert env.status(namespace, name)["phase"] == "Suspended"
    assert not _live_pods(env, namespace, name)
    row = env.store.get(status["rowId"])
    assert row is not None and row.status == "running" and not row.is_final
    assert "Suspended" in _reasons(env, namespace, name)

    _patch(env, namespace, name, suspend=False)
    env.wait_for("a new trainer pod", lambda: _live_pods(env, namespace, name), timeout=60)
    assert env.wait_phase(namespace, name, "Running", *FINAL, timeout=60)["phase"] in (
        "Running",
        "Succeeded",
    )
    status = env.wait_phase(namespace, name, *FINAL, timeout=300)
    assert status["phase"] == "Succeeded", status
    assert status["trial"] == "24/24"
    assert _condition(status, "Suspended")["status"] == "False"
    assert "Resumed" in _reasons(env, namespace, name)
    final = _progress(env, namespace, name)
    # Every trial exactly once: the trial log counts 1..24, each finished trial of
    # before the suspend is still there with its score, and the study holds nTrials
    # finished trials per model (the one in flight at the SIGTERM was redone, not kept).
    assert [t["trial"] for t in final["trials"]] == list(range(1, 25))
    after = {(t["model"], t["number"]): t["spearman"] for t in final["trials"]}
    assert all(after[key] == score for key, score in before.items())
    run_dir = env.run_dir(namespace, name)
    assert run_dir is not None
    finished = _finished_trials(run_dir)
    assert {m: len(ts) for m, ts in finished.items()} == {"LONG": 12, "SHORT": 12}
    row = env.store.get(status["rowId"])
    assert row is not None and row.status == "completed"
    assert [t["trial"] for t in row.trial_log] == list(range(1, 25))


def test_a_trainingjob_created_suspended_runs_no_pod_until_resumed(
    env: OperatorEnv, namespace: str
) -> None:
    name = "born-suspended"
    env.apply(namespace, name, suspend=True, **RUN)
    status = env.wait_phase(namespace, name, "Suspended", *FINAL, timeout=60)
    assert status["phase"] == "Suspended", status
    assert "before it started" in status["message"]
    row_id = status["rowId"]
    env.wait_for(  # the table's word: not started
        "the row to say pending",
        lambda: getattr(env.store.get(row_id), "status", None) == "pending",
        30,
    )
    assert _job_spec(env, namespace, name)["suspend"] is True
    time.sleep(8)
    assert env.pods_of(namespace, name) == []
    assert _progress(env, namespace, name) == {}
    assert env.status(namespace, name)["phase"] == "Suspended"
    row = env.store.get(status["rowId"])
    assert row is not None and row.status == "pending"

    _patch(env, namespace, name, suspend=False)
    status = env.wait_phase(namespace, name, *FINAL, timeout=300)
    assert status["phase"] == "Succeeded", status
    assert status["trial"] == "24/24"


def test_a_cancel_while_suspended_ends_cancelled_for_good(env: OperatorEnv, namespace: str) -> None:
    name = "cancelled-while-suspended"
    env.apply(namespace, name, **LONG)
    env.wait_trials(namespace, name, 1)
    _patch(env, namespace, name, suspend=True)
    assert env.wait_phase(namespace, name, "Suspended", *FINAL, timeout=90)["phase"] == (
        "Suspended"
    )
    done = _progress(env, namespace, name)["completed_trials"]
    _patch(env, namespace, name, cancel=True)
    status = env.wait_phase(namespace, name, *FINAL, timeout=60)
    assert status["phase"] == "Cancelled", status
    cancelled = _condition(status, "Cancelled")
    assert cancelled["reason"] == "CancelRequested" and "while suspended" in cancelled["message"]
    assert _condition(status, "Suspended")["status"] == "False"
    assert status["currentTrial"] == done
    env.wait_for("the Job to go", lambda: not env.jobs_of(namespace, name), timeout=60)
    row = env.store.get(status["rowId"])
    assert row is not None and row.status == "cancelled" and row.model_version is None
    # Stop for good: resuming a cancelled TrainingJob starts nothing.
    _patch(env, namespace, name, suspend=False)
    time.sleep(5)
    assert env.jobs_of(namespace, name) == [] and env.pods_of(namespace, name) == []
    assert env.status(namespace, name)["phase"] == "Cancelled"


def test_a_suspend_set_while_the_operator_is_down_is_applied_when_it_starts(
    env: OperatorEnv, namespace: str
) -> None:
    name = "suspended-while-down"
    env.apply(namespace, name, **LONG)
    env.wait_trials(namespace, name, 1)
    env.operator.kill()
    try:
        _patch(env, namespace, name, suspend=True)
        time.sleep(2)
        assert _job_spec(env, namespace, name)["suspend"] is False  # nobody acted on it
    finally:
        env.operator.start()
    status = env.wait_phase(namespace, name, "Suspended", *FINAL, timeout=90)
    assert status["phase"] == "Suspended", status
    assert _job_spec(env, namespace, name)["suspend"] is True
    assert not _live_pods(env, namespace, name)
    env.kubectl("delete", "trainingjob", name, "-n", namespace, "--timeout=90s")
