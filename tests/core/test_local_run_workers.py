"""`tjctl run` of a manifest with spec.workers: refused on SQLite, run as several
trainers sharing the studies when the table is on a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import optuna
import pytest
from local_runs_lib import TJCTL, manifest, shared_folder
from optuna.trial import TrialState

from tjcontract.layout import STUDY_FILE
from tjcore.store import JobStore
from tjtrainer.progress import MODELS, RunState, latest_run_dir, read_progress
from tjtrainer.shared_studies import study_prefix


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_folder(tmp_path_factory)


def run(shared: Path, path: Path, database_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHARED_DATA_PATH": str(shared)}
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [TJCTL, "run", "-f", str(path), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_workers_on_the_sqlite_table_are_refused_saying_postgresql_is_needed(
    shared: Path, tmp_path: Path
) -> None:
    result = run(shared, manifest(tmp_path, "wide-sqlite", workers=2), None)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: spec.workers: 2 trainers share their Optuna studies in "
                           "PostgreSQL"), last  # fmt: skip
    assert "DATABASE_URL=postgresql" in last and "Traceback" not in result.stderr
    assert latest_run_dir(shared, "default", "wide-sqlite") is None


def test_workers_with_the_table_on_postgresql_finish_exactly_n_trials_per_model(
    shared: Path, tmp_path: Path, postgres_url: str
) -> None:
    result = run(shared, manifest(tmp_path, "wide", workers=2, nTrials=3), postgres_url)
    assert result.returncode == 0, result.stderr
    run_dir = latest_run_dir(shared, "default", "wide")
    assert run_dir is not None
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.COMPLETED
    assert progress.completed_trials == 6
    storage = optuna.storages.RDBStorage(postgres_url)
    try:
        for model in MODELS:
            name = f"{study_prefix(run_dir)}:{model}"
            study = optuna.load_study(study_name=name, storage=storage)
            states = [t.state for t in study.get_trials(deepcopy=False)]
            assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 3, states
    finally:
        storage.engine.dispose()
    store = JobStore(postgres_url)
    try:
        row = store.get_by_name("default", "wide")
        assert row is not None and row.status == "completed" and row.current_trial == 6
    finally:
        store.close()
    assert not (run_dir / STUDY_FILE).exists()
