"""spec.workers: one pod as before, or an Indexed Job of N pods sharing PostgreSQL studies."""

from __future__ import annotations

import json

import pytest

from tjcore.spec import SpecError, validate_spec
from tjoperator.config import OperatorConfig
from tjoperator.job_builder import build_job, check_job_allowed

URL = "postgresql+psycopg://tj:pw-in-secret@db.example:5432/tj"
POSTGRES = OperatorConfig(
    database_url=URL, database_secret_name="tj-database", database_secret_key="database-url"
)
SQLITE = OperatorConfig(database_url="sqlite:////shared/training_jobs.db")


def build(config: OperatorConfig, **spec: object) -> dict:
    parsed = validate_spec({"timeframe": "15m", **spec})
    return build_job(name="tj-a", namespace="ml", uid="uid-1", spec=parsed, config=config)


def env_of(job: dict) -> dict[str, dict]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {var["name"]: var for var in container["env"]}


def test_one_worker_keeps_the_one_pod_job_and_its_studies_in_the_run_folder() -> None:
    for config in (SQLITE, POSTGRES):
        job = build(config)
        assert "completionMode" not in job["spec"] and "completions" not in job["spec"]
        assert "TJ_STUDY_STORAGE_URL" not in env_of(job)
        assert "--workers" not in job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert build(POSTGRES) == build(SQLITE)


def test_three_workers_are_an_indexed_job_given_the_database_url_by_its_secret() -> None:
    job = build(POSTGRES, workers=3)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    container = spec["template"]["spec"]["containers"][0]
    assert container["args"][-2:] == ["--workers", "3"]
    assert env_of(job)["TJ_STUDY_STORAGE_URL"] == {
        "name": "TJ_STUDY_STORAGE_URL",
        "valueFrom": {"secretKeyRef": {"name": "tj-database", "key": "database-url"}},
    }
    assert "pw-in-secret" not in json.dumps(job) and "postgresql" not in json.dumps(job)


def test_workers_without_postgresql_are_refused_saying_how_to_configure_it() -> None:
    parsed = validate_spec({"timeframe": "15m", "workers": 2})
    with pytest.raises(SpecError) as refused:
        check_job_allowed(parsed, SQLITE)
    message = str(refused.value)
    assert message.startswith(
        "spec.workers: 2 trainer pods share their Optuna studies in PostgreSQL"
    )
    assert "database.url" in message and "database.existingSecret" in message
    with pytest.raises(SpecError):
        build(SQLITE, workers=2)
    check_job_allowed(parsed, POSTGRES)
