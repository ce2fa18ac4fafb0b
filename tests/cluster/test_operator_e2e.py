"""The operator end to end: real API server, real Job controller, the pod harness running
the real trainer, the real `tjctl operator` process and a real SQLite table."""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.cluster.operator_env import (
    OperatorEnv,
    OperatorProcess,
    running_operator,
)
from tjcore.store import JobStore

BRIDGE_NAMESPACE = "tj-bridge"
SMALL = {"timeframe": "15m", "nTrials": 2, "trainRatio": 0.8, "seed": 1}
# Long enough to act on a run in the middle (cancel, delete, kill the operator).
LONG = {"timeframe": "15m", "nTrials": 400, "trainRatio": 0.8, "seed": 1}


@pytest.fixture(scope="module")
def env(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorEnv]:
    with running_operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        env={"TJ_CANCEL_GRACE_SECONDS": "30"},
        args=("--bridge-namespace", BRIDGE_NAMESPACE),
        namespaces=(BRIDGE_NAMESPACE,),
    ) as env:
        yield env


def test_apply_runs_to_succeeded_with_models_and_a_completed_row(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "small", **SMALL)
    jobs = env.wait_for("the Job", lambda: env.jobs_of(namespace, "small"), timeout=30)
    assert [j["metadata"]["name"] for j in jobs] == ["small-train"]
    assert jobs[0]["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"
    status = env.wait_phase(namespace, "small", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status
    assert status["trial"] == "4/4" and status["progress"] == 100
    version = status["modelVersion"]
    assert version and version.startswith("15m_")
    models = env.shared / "models"
    assert (models / "model_long_15m_latest.pkl").exists()
    assert (models / "metadata_15m_latest.json").exists()
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True"
    assert conditions["Running"]["status"] == "False"
    # Each model's verdict on its test tail, in the status and as printer columns.
    for side in ("Long", "Short"):
        assert status[f"verdict{side}"] in ("Significant", "NotSignificant"), status
        low, high = status[f"testCi{side}"]
        assert low <= status[f"testScore{side}"] <= high
        assert 0 < status[f"testPValue{side}"] <= 1
    assert status["significanceLevel"] == 0.05 and status["promoted"] is True
    header, line = env.kubectl("get", "trainingjobs", "small", "-n", namespace).stdout.splitlines()
    assert "VERDICT LONG" in header and "VERDICT SHORT" in header
    assert status["verdictLong"] in line.split() and status["verdictShort"] in line.split()
    print(header, line, sep="\n")

    row = env.store.get_by_name(namespace, "small")
    assert row is not None and row.id == status["rowId"]
    assert (row.status, row.model_version, row.progress_pct) == ("completed", version, 100.0)
    assert len(row.trial_log) == 4 and {t["model"] for t in row.trial_log} == {"LONG", "SHORT"}

    def reasons() -> str:
        return str(
            env.kubectl(
                "get", "events", "-n", namespace, "-o", "jsonpath={.items[*].reason}"
            ).stdout
        )

    # Events are posted asynchronously: wait for the last transition's.
    events = env.wait_for(
        "the TrainingCompleted event",
        lambda: (lambda r: r if "TrainingCompleted" in r else None)(reasons()),
        timeout=30,
    )
    assert "JobCreated" in events and "Training" in events


def test_get_trainingjobs_prints_live_columns(env: OperatorEnv, namespace: str) -> None:
    env.apply(namespace, "watched", **{**LONG, "nTrials": 30})
    env.wait_trials(namespace, "watched", 2)
    table = env.kubectl("get", "trainingjobs", "-n", namespace).stdout
    header, line = table.splitlines()[:2]
    for column in (
        "NAME",
        "PHASE",
        "PROGRESS",
        "TRIAL",
        "ETA",
        "BEST LONG",
        "BEST SHORT",
        "VERSION",
        "AGE",
    ):
        assert column in header
    cells = line.split()
    assert cells[0] == "watched" and cells[1] == "Running"
    done, total = cells[3].split("/")
    assert int(done) >= 2 and total == "60"
    # Read the cell under its header: columns such as ETA may be empty (no whitespace cell).
    assert float(line[header.index("BEST LONG") :].split()[0])  # a best LONG score is shown
    env.kubectl("delete", "trainingjob", "watched", "-n", namespace)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"timeframe": "15m", "nTrials": 0}, "spec.nTrials"),
        ({"timeframe": "15m", "nTrials": "abc"}, "spec.nTrials"),
        ({"timeframe": "15m", "trainRatio": 1.5}, "spec.trainRatio"),
        ({"timeframe": "5m"}, "spec.timeframe"),
        ({"nTrials": 3}, "spec.timeframe"),
        ({"timeframe": "15m", "colour": "red"}, "colour"),
        ({"timeframe": "15m", "resources": {"requests": {"cpu": "lots"}}}, "spec.resources"),
        ({"timeframe": "15m", "resources": {"limits": {"memory": "4gb"}}}, "spec.resources"),
        ({"timeframe": "15m", "resources": {"limits": {"cpu": -1}}}, "spec.resources"),
        ({"timeframe": "15m", "resources": {"requests": {"cpu!": 1}}}, "spec.resources"),
        (
            {"timeframe": "15m", "resources": {"requests": {"cpu": 2}, "limits": {"cpu": "1"}}},
            "spec.resources",
        ),
    ],
)
def test_bad_manifests_are_refused_by_the_api_server(
    env: OperatorEnv, namespace: str, spec: dict[str, Any], field: str
) -> None:
    body = (
        "apiVersion: mltraining.dev/v1alpha1\nkind: TrainingJob\n"
        f"metadata: {{name: bad, namespace: {namespace}}}\nspec: {spec!r}\n"
    )
    result = env.kubectl("apply", "-f", "-", input=body.replace("'", '"'), check=False)
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
    assert env.get(namespace, "bad") is None


def test_cancel_stops_after_the_current_trial(env: OperatorEnv, namespace: str) -> None:
    env.apply(namespace, "to-cancel", **LONG)
    env.wait_trials(namespace, "to-cancel", 1)
    env.kubectl(
        "patch",
        "trainingjob",
        "to-cancel",
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        '{"spec":{"cancel":true}}',
    )
    status = env.wait_phase(namespace, "to-cancel", "Cancelled", "Failed", "Succeeded", timeout=60)
    assert status["phase"] == "Cancelled", status
    assert status["currentTrial"] < 800
    row = env.store.get_by_name(namespace, "to-cancel")
    assert row is not None and row.status == "cancelled" and row.model_version is None


def test_delete_mid_run_removes_job_and_pods_and_cancels_the_row(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "to-delete", **LONG)
    env.wait_trials(namespace, "to-delete", 1)
    row_id = env.status(namespace, "to-delete")["rowId"]
    env.kubectl("delete", "trainingjob", "to-delete", "-n", namespace, "--timeout=60s")
    env.wait_for("the Job to go", lambda: not env.jobs_of(namespace, "to-delete"), 60)
    env.wait_for("the pods to go", lambda: not env.pods_of(namespace, "to-delete"), 60)
    row = env.store.get(row_id)
    assert row is not None and row.status == "cancelled"


def test_operator_killed_mid_run_resumes_without_a_second_job(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "survivor", **{**LONG, "nTrials": 12})
    env.wait_trials(namespace, "survivor", 1)
    env.operator.kill()
    env.apply(namespace, "born-while-down", **SMALL)
    time.sleep(2)
    env.operator.start()
    for name in ("survivor", "born-while-down"):
        status = env.wait_phase(namespace, name, "Succeeded", "Failed", timeout=300)
        assert status["phase"] == "Succeeded", status
        assert len(env.jobs_of(namespace, name)) == 1
    row = env.store.get_by_name(namespace, "survivor")
    assert row is not None and len(row.trial_log) == 24


def test_two_jobs_at_once(env: OperatorEnv, namespace: str) -> None:
    env.apply(namespace, "first", **SMALL)
    env.apply(namespace, "second", **{**SMALL, "seed": 2})
    for name in ("first", "second"):
        assert env.wait_phase(namespace, name, "Succeeded", "Failed")["phase"] == "Succeeded"


def test_trainer_error_reaches_status_and_row(env: OperatorEnv, namespace: str) -> None:
    env.apply(namespace, "no-data", timeframe="1h", nTrials=2)
    status = env.wait_phase(namespace, "no-data", "Failed", "Succeeded")
    assert status["phase"] == "Failed"
    assert "datasets/1h" in status["message"] and "tjctl dataset" in status["message"]
    row = env.store.get_by_name(namespace, "no-data")
    assert row is not None and row.status == "failed" and "datasets/1h" in (row.error or "")


def test_a_row_submitted_through_the_table_runs_once_and_can_be_cancelled(
    env: OperatorEnv,
) -> None:
    job_id = env.store.submit(timeframe="15m", n_trials=2, train_ratio=0.8, seed=3, source="ui")
    name = _row_name(env, job_id)
    assert name.startswith(f"row-{job_id}-")
    status = env.wait_phase(BRIDGE_NAMESPACE, name, "Succeeded", "Failed")
    assert status["phase"] == "Succeeded" and status["rowId"] == job_id
    row = env.store.get(job_id)
    assert row is not None and row.status == "completed" and row.name == name
    assert len(env.jobs_of(BRIDGE_NAMESPACE, name)) == 1

    long_id = env.store.submit(timeframe="15m", n_trials=400, train_ratio=0.8, source="ui")
    long_name = _row_name(env, long_id)
    env.wait_trials(BRIDGE_NAMESPACE, long_name, 1)
    env.store.request_cancel(long_id)
    status = env.wait_phase(BRIDGE_NAMESPACE, long_name, "Cancelled", "Failed", timeout=60)
    assert status["phase"] == "Cancelled"
    assert env.store.get(long_id).status == "cancelled"  # type: ignore[union-attr]


def test_a_trainingjob_created_again_under_the_same_name_starts_afresh(
    env: OperatorEnv, namespace: str
) -> None:
    env.apply(namespace, "again", **SMALL)
    first = env.wait_phase(namespace, "again", "Succeeded", "Failed")
    assert first["phase"] == "Succeeded"
    env.kubectl("delete", "trainingjob", "again", "-n", namespace, "--timeout=60s")
    env.apply(namespace, "again", **{**SMALL, "seed": 8})
    second = env.wait_phase(namespace, "again", "Succeeded", "Failed")
    assert second["phase"] == "Succeeded"
    assert second["rowId"] != first["rowId"]
    assert second["modelVersion"] != first["modelVersion"]
    old_row, new_row = env.store.get(first["rowId"]), env.store.get(second["rowId"])
    assert old_row is not None and old_row.status == "completed"
    assert new_row is not None and new_row.status == "completed" and new_row.seed == 8


def test_deadline_fails_the_run_with_reason_deadline_exceeded(
    env: OperatorEnv, namespace: str
) -> None:
    # 60 s is the smallest deadline the CRD accepts; the run would need far longer.
    env.apply(namespace, "too-slow", **{**LONG, "nTrials": 5000, "activeDeadlineSeconds": 60})
    status = env.wait_phase(namespace, "too-slow", "Failed", "Succeeded", timeout=180)
    assert status["phase"] == "Failed", status
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["status"] == "True" and failed["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds" in status["message"]
    row = env.store.get_by_name(namespace, "too-slow")
    assert row is not None and row.status == "failed"
    assert "activeDeadlineSeconds" in (row.error or "")


# A policy of the cluster admin that refuses (403) bridge-made TrainingJobs of one seed.
REFUSED_SEED = 4031
REFUSING_POLICY = textwrap.dedent(
    f"""
    apiVersion: admissionregistration.k8s.io/v1
    kind: ValidatingAdmissionPolicy
    metadata: {{name: tj-test-refuse-seed}}
    spec:
      failurePolicy: Fail
      matchConstraints:
        resourceRules:
        - apiGroups: [mltraining.dev]
          apiVersions: ["*"]
          operations: [CREATE]
          resources: [trainingjobs]
      validations:
      - expression: "object.spec.seed != {REFUSED_SEED}"
        message: "seed {REFUSED_SEED} is not allowed here"
        reason: Forbidden
    ---
    apiVersion: admissionregistration.k8s.io/v1
    kind: ValidatingAdmissionPolicyBinding
    metadata: {{name: tj-test-refuse-seed}}
    spec:
      policyName: tj-test-refuse-seed
      validationActions: [Deny]
      matchResources:
        namespaceSelector:
          matchLabels: {{kubernetes.io/metadata.name: {BRIDGE_NAMESPACE}}}
    """
)


def _row_name(env: OperatorEnv, row_id: int) -> str:
    """The TrainingJob name the bridge gave a row."""

    def name() -> str | None:
        row = env.store.get(row_id)
        return row.name if row else None

    return str(env.wait_for(f"row {row_id} to be claimed by the bridge", name, timeout=30))


def _policy_refuses(env: OperatorEnv) -> bool:
    probe = {
        "apiVersion": "mltraining.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "policy-probe", "namespace": BRIDGE_NAMESPACE},
        "spec": {"timeframe": "15m", "nTrials": 1, "seed": REFUSED_SEED},
    }
    result = env.kubectl(
        "create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(probe), check=False
    )
    return result.returncode != 0 and "is not allowed here" in result.stderr


def test_refused_rows_fail_with_the_api_message_and_do_not_stall_the_bridge(
    env: OperatorEnv,
) -> None:
    env.kubectl("apply", "-f", "-", input=REFUSING_POLICY)
    try:
        env.wait_for("the admission policy to refuse", lambda: _policy_refuses(env), timeout=60)
        running = env.store.submit(timeframe="15m", n_trials=400, train_ratio=0.8, source="ui")
        running_name = _row_name(env, running)
        env.wait_trials(BRIDGE_NAMESPACE, running_name, 1)
        # The API refuses these two for good: 422 (nTrials above the CRD's maximum) and
        # 403 (the admission policy).
        invalid = env.store.submit(timeframe="15m", n_trials=999999, train_ratio=0.8, source="ui")
        forbidden = env.store.submit(
            timeframe="15m", n_trials=2, train_ratio=0.8, seed=REFUSED_SEED, source="ui"
        )
        env.store.request_cancel(running)
        later = env.store.submit(timeframe="15m", n_trials=2, train_ratio=0.8, seed=6, source="ui")

        status = env.wait_phase(BRIDGE_NAMESPACE, running_name, "Cancelled", "Failed", timeout=90)
        assert status["phase"] == "Cancelled", status
        later_name = _row_name(env, later)
        status = env.wait_phase(BRIDGE_NAMESPACE, later_name, "Succeeded", "Failed")
        assert status["phase"] == "Succeeded", status

        refused = {row_id: env.store.get(row_id) for row_id in (invalid, forbidden)}
        for row in refused.values():
            assert row is not None and row.status == "failed", row
            assert row.completed_at is not None
            assert env.get(BRIDGE_NAMESPACE, row.name or "-") is None
        assert "spec.nTrials" in (refused[invalid].error or "")  # type: ignore[union-attr]
        assert "10000" in (refused[invalid].error or "")  # type: ignore[union-attr]
        assert f"seed {REFUSED_SEED} is not allowed here" in (
            refused[forbidden].error or ""  # type: ignore[union-attr]
        )
    finally:
        env.kubectl(
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy",
            "tj-test-refuse-seed",
            "--ignore-not-found",
            check=False,
        )


def _lose_the_table(env: OperatorEnv) -> None:
    """Stop the operator and start a fresh, empty table (a lost or recreated database);
    the cluster keeps its TrainingJobs. The caller starts the operator again."""
    env.operator.stop()
    url = env.store.url
    env.store.close()
    for path in env.shared.glob("training_jobs.db*"):
        path.unlink()
    env.store = JobStore(url)


def test_a_new_table_never_takes_the_trainingjob_of_an_old_row(env: OperatorEnv) -> None:
    _lose_the_table(env)
    first = env.store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, seed=11, source="ui")
    env.operator.start()
    first_name = _row_name(env, first)
    assert env.wait_phase(BRIDGE_NAMESPACE, first_name, "Succeeded", "Failed")["phase"] == (
        "Succeeded"
    )

    _lose_the_table(env)
    second = env.store.submit(timeframe="15m", n_trials=2, train_ratio=0.8, seed=12, source="ui")
    assert second == first  # a new table gives out the same ids again
    env.operator.start()
    second_name = _row_name(env, second)
    assert second_name != first_name
    status = env.wait_phase(BRIDGE_NAMESPACE, second_name, "Succeeded", "Failed")
    assert status["phase"] == "Succeeded" and status["trial"] == "4/4", status

    def finished() -> Any:
        row = env.store.get(second)
        return row if row and row.is_final else None

    row = env.wait_for("the new row to finish", finished, timeout=30)
    assert (row.status, row.total_trials, len(row.trial_log)) == ("completed", 4, 4)
    assert row.seed == 12 and row.model_version == status["modelVersion"]


def test_the_row_id_annotation_cannot_take_over_another_row(
    env: OperatorEnv, namespace: str
) -> None:
    # A finished row of another namespace, and a row nobody bound to a TrainingJob yet.
    completed = env.store.submit(
        timeframe="15m",
        n_trials=3,
        train_ratio=0.8,
        source="kubectl",
        namespace="someone-else",
        name="victim",
        uid="uid-of-the-victim",
    )
    env.store.update_job(
        completed, status="completed", model_version="15m_20261101_120000", progress_pct=100.0
    )
    unbound = env.store.submit(
        timeframe="15m",
        n_trials=3,
        train_ratio=0.8,
        source="tjctl-run",
        namespace="default",
        name="local-job",
    )
    before = {row_id: env.store.get(row_id) for row_id in (completed, unbound)}
    for thief, row_id in (("thief-a", completed), ("thief-b", unbound)):
        body = {
            "apiVersion": "mltraining.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {
                "name": thief,
                "namespace": namespace,
                "annotations": {"mltraining.dev/row-id": str(row_id)},
            },
            "spec": {**SMALL, "nTrials": 1},
        }
        env.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    for thief, row_id in (("thief-a", completed), ("thief-b", unbound)):
        status = env.wait_phase(namespace, thief, "Succeeded", "Failed")
        assert status["phase"] == "Succeeded", status
        assert status["rowId"] != row_id
        own = env.store.get(status["rowId"])
        assert own is not None and (own.namespace, own.name) == (namespace, thief)
        assert own.status == "completed" and own.total_trials == 2
        assert env.store.get(row_id) == before[row_id], "the TrainingJob took over the row"


def test_the_operator_never_logs_the_database_password(
    cluster: Any, namespace: str, tmp_path: Any
) -> None:
    log_path = tmp_path / "operator.log"
    secret_url = "postgresql://tj:s3cret-pw@127.0.0.1:9/jobs"
    operator = OperatorProcess(
        env={
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "SHARED_DATA_PATH": str(tmp_path / "shared"),
            "DATABASE_URL": secret_url,
        },
        log_path=log_path,
        args=["--namespace", namespace, "--no-bridge"],
    )
    operator.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace") if log_path.exists() else ""
            if "cannot open the training_jobs table" in text:
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"the operator never said the table failed:\n{text}")
    finally:
        operator.stop()
    text = log_path.read_text(errors="replace")
    assert "s3cret-pw" not in text, text
    assert "postgresql://tj:***@127.0.0.1:9/jobs" in text, text


def test_a_trainingjob_whose_job_is_refused_fails_with_the_api_message(
    env: OperatorEnv, namespace: str
) -> None:
    # Valid quantities, but the API refuses the Job: an extended resource must be
    # requested and limited alike. The TrainingJob must not stay without a phase.
    env.apply(
        namespace,
        "refused-job",
        **SMALL,
        resources={"requests": {"example.com/dongle": 1}, "limits": {"example.com/dongle": 2}},
    )
    status = env.wait_phase(namespace, "refused-job", "Failed", "Succeeded", timeout=60)
    assert status["phase"] == "Failed", status
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert failed["reason"] == "JobRefused"
    assert "example.com/dongle" in status["message"]
    assert env.jobs_of(namespace, "refused-job") == []
    row = env.store.get_by_name(namespace, "refused-job")
    assert row is not None and row.status == "failed"
    assert "example.com/dongle" in (row.error or "")
