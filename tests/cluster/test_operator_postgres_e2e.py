"""The operator with its table on a real PostgreSQL server: the real control plane and Job
controller, the pod harness running the real trainer, the real `tjctl operator` process;
rows written through the UI's own write path become TrainingJobs (the bridge) and their
progress reaches the row; a database restarted mid-run is waited out; an unreachable one
is one log line naming its host and port, never its password."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.operator_env import OperatorEnv, OperatorProcess, running_operator
from tjcore.spec import validate_spec
from tjcore.store import JobStore
from tjdevcluster.postgres import PostgresServer
from tjdevcluster.procs import free_ports
from tjui.db import cancel_job, open_reader, submit_job

NAMESPACE = "tj-pg-bridge"
LATE_NAMESPACE = "tj-pg-late"
CLAIM = "tj-pg-shared"


@pytest.fixture(scope="module")
def database(postgres_server: PostgresServer) -> Iterator[str]:
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(scope="module")
def env(
    cluster: Any, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorEnv]:
    with running_operator(
        cluster,
        tmp_path_factory.mktemp("operator-pg"),
        claim=CLAIM,
        env={"DATABASE_URL": database, "TJ_CANCEL_GRACE_SECONDS": "30"},
        args=("--namespace", NAMESPACE, "--bridge-namespace", NAMESPACE),
        namespaces=(NAMESPACE,),
    ) as running:
        running.store.close()
        running.store = JobStore(database)  # the operator's table, not the SQLite default
        yield running


def _row_name(env: OperatorEnv, row_id: int) -> str:
    def name() -> str | None:
        row = env.store.get(row_id)
        return row.name if row else None

    return str(env.wait_for(f"row {row_id} to be claimed by the bridge", name, timeout=30))


def test_a_row_from_the_ui_runs_through_the_bridge_and_can_be_cancelled(
    env: OperatorEnv, database: str
) -> None:
    job_id = submit_job(database, validate_spec({"timeframe": "15m", "nTrials": 2, "seed": 3}))
    name = _row_name(env, job_id)
    assert name.startswith(f"row-{job_id}-")
    status = env.wait_phase(NAMESPACE, name, "Succeeded", "Failed", timeout=300)
    assert status["phase"] == "Succeeded" and status["rowId"] == job_id, status
    row = env.store.get(job_id)
    assert row is not None
    assert (row.status, row.name, row.model_version) == ("completed", name, status["modelVersion"])
    assert [t["trial"] for t in row.trial_log] == [1, 2, 3, 4]
    assert len(env.jobs_of(NAMESPACE, name)) == 1
    (shown,) = [r for r in open_reader(database).recent(limit=10) if r.id == job_id]
    assert shown.status == "completed" and shown.progress_pct == 100.0

    long_id = submit_job(database, validate_spec({"timeframe": "15m", "nTrials": 400}))
    long_name = _row_name(env, long_id)
    env.wait_trials(NAMESPACE, long_name, 1)
    assert cancel_job(database, long_id).cancel_requested
    status = env.wait_phase(NAMESPACE, long_name, "Cancelled", "Failed", timeout=90)
    assert status["phase"] == "Cancelled", status
    assert env.store.get(long_id).status == "cancelled"  # type: ignore[union-attr]


def test_a_database_restarted_mid_run_is_waited_out_and_every_trial_reaches_the_row(
    env: OperatorEnv, postgres_server: PostgresServer
) -> None:
    n_trials = 30
    env.apply(NAMESPACE, "through-restart", timeframe="15m", nTrials=n_trials, seed=4)
    before = env.wait_trials(NAMESPACE, "through-restart", 2, timeout=180)
    assert before["phase"] == "Running" and before["currentTrial"] < 2 * n_trials, before
    postgres_server.restart(down_for=3.0)
    status = env.wait_phase(NAMESPACE, "through-restart", "Succeeded", "Failed", timeout=400)
    assert status["phase"] == "Succeeded", status
    row = env.store.get_by_name(NAMESPACE, "through-restart")
    assert row is not None and row.status == "completed"
    assert [t["trial"] for t in row.trial_log] == list(range(1, 2 * n_trials + 1))
    log = env.operator.log_path.read_text(errors="replace")
    assert "Traceback" not in log, env.operator.log_tail(80)
    assert postgres_server.password not in log


def test_an_unreachable_database_is_one_log_line_with_host_port_and_the_fix(
    cluster: Any, namespace: str, tmp_path: Any
) -> None:
    (port,) = free_ports(1)
    operator = OperatorProcess(
        env={
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "SHARED_DATA_PATH": str(tmp_path / "shared"),
            "DATABASE_URL": f"postgresql://tj:s3cret-pw@127.0.0.1:{port}/jobs",
        },
        log_path=tmp_path / "operator.log",
        args=["--namespace", namespace, "--no-bridge"],
    )
    operator.start()
    try:
        env = OperatorEnv(cluster, tmp_path, operator, None)  # type: ignore[arg-type]
        line = env.wait_for(
            "the operator to say the table cannot be opened",
            lambda: next(
                (
                    line
                    for line in operator.log_tail(200).splitlines()
                    if "cannot open the training_jobs table" in line
                ),
                None,
            ),
            timeout=60,
        )
    finally:
        operator.stop()
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in line
    assert "check the host and port in DATABASE_URL" in line
    text = operator.log_path.read_text(errors="replace")
    assert "s3cret-pw" not in text and "Traceback" not in text, text


def test_a_database_that_comes_up_after_the_operator_is_opened_and_the_bridge_starts(
    cluster: Any, tmp_path: Any
) -> None:
    (port,) = free_ports(1)
    late = PostgresServer(port=port, password="late-pw")
    with running_operator(
        cluster,
        tmp_path,
        claim="tj-pg-late",
        env={"DATABASE_URL": late.url},
        args=("--namespace", LATE_NAMESPACE, "--bridge-namespace", LATE_NAMESPACE),
        namespaces=(LATE_NAMESPACE,),
    ) as env:
        env.store.close()
        env.wait_for(
            "the operator to say it keeps trying",
            lambda: "until it can be reached" in env.operator.log_tail(200),
            timeout=60,
        )
        with late:
            env.store = JobStore(late.url)
            job_id = submit_job(
                late.url, validate_spec({"timeframe": "15m", "nTrials": 1, "seed": 8})
            )
            name = _row_name(env, job_id)
            status = env.wait_phase(LATE_NAMESPACE, name, "Succeeded", "Failed", timeout=300)
            assert status["phase"] == "Succeeded" and status["rowId"] == job_id, status
            assert env.store.get(job_id).status == "completed"  # type: ignore[union-attr]
            env.store.close()
    log = env.operator.log_path.read_text(errors="replace")
    assert "the training_jobs table at postgresql+psycopg://tj:***@" in log and "is open now" in log
    assert "late-pw" not in log and "Traceback" not in log
