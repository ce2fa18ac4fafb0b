"""`tjctl run`, `tjctl worker`, `tjctl submit` and `tjctl cancel` as a user runs them:
real processes, real XGBoost and Optuna on a small dataset, a real SQLite table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.core.local_runs_lib import TJCTL, manifest, shared_folder, store_of, tjctl
from tjcore.store import JobStore


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_folder(tmp_path_factory)


def test_run_writes_the_row_as_the_operator_does(shared: Path, tmp_path: Path) -> None:
    result = tjctl(shared, "run", "-f", str(manifest(tmp_path, "local-a")))
    assert result.returncode == 0, result.stderr
    assert "held-out test Spearman" in result.stdout
    assert "trial" in result.stderr  # the progress bar
    row = store_of(shared).get_by_name("default", "local-a")
    assert row is not None
    assert (row.status, row.current_trial, row.total_trials, row.progress_pct) == (
        "completed",
        4,
        4,
        100.0,
    )
    assert row.model_version and row.model_version in result.stdout
    assert row.started_at and row.completed_at and row.error is None
    assert [t["trial"] for t in row.trial_log] == [1, 2, 3, 4]
    assert row.best_score_long is not None and row.best_score_short is not None
    models = shared / "models"
    assert (models / row.model_version / "metadata.json").exists()
    latest = json.loads((models / "metadata_15m_latest.json").read_text())
    assert latest["version"] == row.model_version

    again = tjctl(shared, "run", "-f", str(manifest(tmp_path, "local-a")))
    assert again.returncode == 0 and "completed already" in again.stdout
    other = tjctl(shared, "run", "-f", str(manifest(tmp_path, "local-a", nTrials=3)))
    assert other.returncode == 1 and "another spec" in other.stderr
    renamed = tjctl(
        shared,
        "run",
        "-f",
        str(manifest(tmp_path, "local-a", nTrials=1)),
        "--name",
        "local-b",
        "--no-progress",
    )
    assert renamed.returncode == 0, renamed.stderr
    assert store_of(shared).get_by_name("default", "local-b") is not None
    bad_name = tjctl(shared, "run", "-f", str(manifest(tmp_path, "local-a")), "--name", "B!")
    assert bad_name.returncode == 1 and "--name: must be lower-case" in bad_name.stderr


def test_missing_dataset_fails_with_path_and_fix(shared: Path, tmp_path: Path) -> None:
    result = tjctl(shared, "run", "-f", str(manifest(tmp_path, "no-1h", timeframe="1h")))
    assert result.returncode == 1
    assert "datasets/1h" in result.stderr and "tjctl dataset synth" in result.stderr
    row = store_of(shared).get_by_name("default", "no-1h")
    assert row is not None and row.status == "failed" and "datasets/1h" in (row.error or "")


def test_invalid_resources_are_refused_before_anything_runs(shared: Path, tmp_path: Path) -> None:
    path = manifest(tmp_path, "bad-cpu", resources={"requests": {"cpu": "lots"}})
    result = tjctl(shared, "run", "-f", str(path))
    assert result.returncode == 1
    assert "spec.resources.requests.cpu: must be a quantity" in result.stderr
    assert "'lots'" in result.stderr and "Traceback" not in result.stderr
    assert store_of(shared).get_by_name("default", "bad-cpu") is None


def test_invalid_manifest_is_refused_before_anything_runs(shared: Path, tmp_path: Path) -> None:
    result = tjctl(shared, "run", "-f", str(manifest(tmp_path, "bad", nTrials=0)))
    assert result.returncode == 1
    assert "spec.nTrials: must be an integer from 1 to 10000, got 0" in result.stderr
    assert store_of(shared).get_by_name("default", "bad") is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--timeframe", "5m"], "--timeframe: must be one of '15m', '1h', got '5m'"),
        (["--timeframe", "15m", "--n-trials", "0"], "--n-trials: must be an integer from 1"),
        (["--timeframe", "15m", "--n-trials", "abc"], "invalid int value: 'abc'"),
        (["--timeframe", "15m", "--train-ratio", "0.99"], "--train-ratio: must be a number"),
    ],
)
def test_submit_validates_flags(shared: Path, flags: list[str], message: str) -> None:
    result = tjctl(shared, "submit", *flags)
    assert result.returncode != 0
    assert message in result.stderr


def test_worker_runs_pending_rows_oldest_first_and_honours_cancel(shared: Path) -> None:
    first = tjctl(shared, "submit", "--timeframe", "15m", "--n-trials", "2")
    second = tjctl(shared, "submit", "--timeframe", "15m", "--n-trials", "2", "--seed", "9")
    cancelled = tjctl(shared, "submit", "--timeframe", "15m", "--n-trials", "2")
    ids = [int(r.stdout.split()[1]) for r in (first, second, cancelled)]
    assert tjctl(shared, "cancel", str(ids[2])).returncode == 0
    result = tjctl(shared, "worker", "--once", "--no-progress")
    assert result.returncode == 0, result.stderr
    store = store_of(shared)
    rows = [store.get(i) for i in ids]
    assert [r.status for r in rows if r] == ["completed", "completed", "cancelled"]
    assert rows[0] and rows[1] and rows[0].started_at < rows[1].started_at  # type: ignore[operator]
    listing = tjctl(shared, "jobs").stdout
    assert f"{ids[0]}  " in listing and "completed" in listing


def test_cancel_from_the_table_stops_a_running_worker_job(shared: Path) -> None:
    submitted = tjctl(shared, "submit", "--timeframe", "15m", "--n-trials", "400")
    job_id = int(submitted.stdout.split()[1])
    env = {**os.environ, "SHARED_DATA_PATH": str(shared)}
    worker = subprocess.Popen(
        [TJCTL, "worker", "--once", "--no-progress", "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = store_of(shared)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        row = store.get(job_id)
        if row and row.current_trial >= 1:
            break
        time.sleep(0.2)
    assert tjctl(shared, "cancel", str(job_id)).returncode == 0
    _out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    row = store.get(job_id)
    assert row is not None and row.status == "cancelled"
    assert row.current_trial < 800 and row.model_version is None
    assert tjctl(shared, "cancel", str(job_id)).returncode == 1  # ended already


def fresh_shared(shared: Path, tmp_path: Path) -> Path:
    """A shared folder of this test alone, with the module's dataset."""
    folder = tmp_path / "own-shared"
    shutil.copytree(shared / "datasets", folder / "datasets")
    return folder


def remove_table(shared: Path) -> None:
    """Lose the table (a deleted or truncated database), keeping runs/ and models/."""
    for path in shared.glob("training_jobs.db*"):
        path.unlink()


def test_a_worker_job_never_returns_the_results_of_an_earlier_table(
    shared: Path, tmp_path: Path
) -> None:
    folder = fresh_shared(shared, tmp_path)
    tjctl(folder, "submit", "--timeframe", "15m", "--n-trials", "2")
    assert tjctl(folder, "worker", "--once", "--no-progress").returncode == 0
    first = store_of(folder).list_jobs()[0]
    assert first.status == "completed" and first.model_version
    remove_table(folder)

    submitted = tjctl(folder, "submit", "--timeframe", "15m", "--n-trials", "3")
    job_id = int(submitted.stdout.split()[1])
    result = tjctl(folder, "worker", "--once", "--no-progress")
    assert result.returncode == 0, result.stderr
    row = store_of(folder).get(job_id)
    assert row is not None and row.status == "completed", row
    assert (row.current_trial, row.total_trials, len(row.trial_log)) == (6, 6, 6)
    assert row.model_version and row.model_version != first.model_version
    assert row.name != first.name


def test_run_never_returns_the_results_of_an_earlier_table(shared: Path, tmp_path: Path) -> None:
    folder = fresh_shared(shared, tmp_path)
    first = tjctl(folder, "run", "--no-progress", "-f", str(manifest(tmp_path, "again", nTrials=1)))
    assert first.returncode == 0, first.stderr
    old = store_of(folder).get_by_name("default", "again")
    assert old is not None and old.model_version
    remove_table(folder)

    second = tjctl(
        folder, "run", "--no-progress", "-f", str(manifest(tmp_path, "again", nTrials=2))
    )
    assert second.returncode == 0, second.stderr
    assert "completed 4/4 trials" in second.stdout
    row = store_of(folder).get_by_name("default", "again")
    assert row is not None and row.status == "completed"
    assert (row.n_trials, row.total_trials, len(row.trial_log)) == (2, 4, 4)
    assert row.model_version and row.model_version != old.model_version


@pytest.mark.parametrize("name", ["../../../pwned", "a/../../../../pwned", "/tmp/pwned", ".."])
def test_a_row_whose_name_leaves_the_data_path_fails_and_writes_nothing(
    shared: Path, tmp_path: Path, name: str
) -> None:
    folder = fresh_shared(shared, tmp_path)
    store = store_of(folder)
    job_id = store.submit(
        timeframe="15m",
        n_trials=1,
        train_ratio=0.8,
        source="forged",
        namespace="local",
        name=name,
    )
    before = sorted(str(p) for p in tmp_path.rglob("*"))

    result = tjctl(folder, "worker", "--once", "--no-progress")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    row = store.get(job_id)
    assert row is not None and row.status == "failed", row
    assert name in (row.error or "") and "name" in (row.error or "")
    after = sorted(str(p) for p in tmp_path.rglob("*") if "training_jobs.db" not in p.name)
    assert [p for p in after if p not in before] == []
    assert not Path("/tmp/pwned").exists()


SECRET_URL = "postgresql://tj:s3cret-pw@127.0.0.1:9/jobs"


def test_the_worker_never_shows_the_database_password(tmp_path: Path) -> None:
    env = {**os.environ, "SHARED_DATA_PATH": str(tmp_path), "DATABASE_URL": SECRET_URL}
    result = subprocess.run(
        [TJCTL, "worker", "--once", "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert "s3cret-pw" not in output, output
    assert "postgresql://tj:***@127.0.0.1:9/jobs" in output, output


def _wait_for_trials(store: JobStore, job_id: int, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = store.get(job_id)
        if row and row.current_trial >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach {at_least} trials: {store.get(job_id)}")


def _lease_env(shared: Path, seconds: str = "2") -> dict[str, str]:
    env = {**os.environ, "SHARED_DATA_PATH": str(shared), "TRAINING_LEASE_SECONDS": seconds}
    env.pop("DATABASE_URL", None)
    return env


def test_the_job_of_a_killed_worker_is_resumed_by_the_next_worker(
    shared: Path, tmp_path: Path
) -> None:
    folder = fresh_shared(shared, tmp_path)
    submitted = tjctl(folder, "submit", "--timeframe", "15m", "--n-trials", "15")
    job_id = int(submitted.stdout.split()[1])
    worker = subprocess.Popen(
        [TJCTL, "worker", "--once", "--no-progress"],
        env=_lease_env(folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = store_of(folder)
    _wait_for_trials(store, job_id, 2)
    worker.kill()  # SIGKILL, as the OOM killer does
    worker.wait(timeout=10)
    killed = store.get(job_id)
    assert killed is not None and killed.status == "running" and killed.current_trial < 30
    time.sleep(2.5)  # the lease runs out

    result = subprocess.run(
        [TJCTL, "worker", "--once", "--no-progress"],
        env=_lease_env(folder),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = store.get(job_id)
    assert row is not None and row.status == "completed", row
    assert (row.current_trial, row.total_trials) == (30, 30)
    assert [t["trial"] for t in row.trial_log] == list(range(1, 31))
    assert row.name == killed.name  # the same run folder: resumed, not restarted


def test_a_worker_fails_the_stale_row_of_a_killed_tjctl_run(shared: Path, tmp_path: Path) -> None:
    folder = fresh_shared(shared, tmp_path)
    path = manifest(tmp_path, "killed-run", nTrials=15)
    run = subprocess.Popen(
        [TJCTL, "run", "--no-progress", "-f", str(path)],
        env=_lease_env(folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = store_of(folder)
    deadline = time.monotonic() + 60
    while store.get_by_name("default", "killed-run") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    row = store.get_by_name("default", "killed-run")
    assert row is not None
    _wait_for_trials(store, row.id, 1)
    run.kill()
    run.wait(timeout=10)
    time.sleep(2.5)

    result = subprocess.run(
        [TJCTL, "worker", "--once", "--no-progress"],
        env=_lease_env(folder),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    failed = store.get(row.id)
    assert failed is not None and failed.status == "failed", failed
    assert "run the same command again" in (failed.error or "")

    again = subprocess.run(
        [TJCTL, "run", "--no-progress", "-f", str(path)],
        env=_lease_env(folder),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "completed 30/30 trials" in again.stdout


def test_sigterm_of_tjctl_run_ends_the_row_as_ctrl_c_does(shared: Path, tmp_path: Path) -> None:
    folder = fresh_shared(shared, tmp_path)
    run = subprocess.Popen(
        [TJCTL, "run", "--no-progress", "-f", str(manifest(tmp_path, "termed", nTrials=300))],
        env=_lease_env(folder, "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = store_of(folder)
    deadline = time.monotonic() + 60
    while store.get_by_name("default", "termed") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    row = store.get_by_name("default", "termed")
    assert row is not None
    _wait_for_trials(store, row.id, 1)
    run.terminate()
    _out, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    assert "Traceback" not in err
    assert "error: interrupted by SIGTERM; run the same command again to resume" in err
    ended = store.get(row.id)
    assert ended is not None and ended.status == "failed", ended
    assert "run the same command again" in (ended.error or "")


@pytest.mark.parametrize(
    "table_on_the_full_disk", [False, True], ids=["table-elsewhere", "table-too"]
)
def test_a_full_disk_gives_one_error_line(
    shared: Path, tmp_path: Path, table_on_the_full_disk: bool
) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("this test needs util-linux's unshare (a private tmpfs as a small disk)")
    disk = tmp_path / "disk"
    disk.mkdir()
    table = (disk if table_on_the_full_disk else tmp_path) / "training_jobs.db"
    path = manifest(tmp_path, "no-space", nTrials=300)
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {disk} && "
        f"cp -r {shared / 'datasets'} {disk}/datasets && "
        # Leave about 420 kB: enough to start (a few trials), not enough to finish.
        f"head -c $(( $(df --output=avail -B1 {disk} | tail -1) - 420000 )) /dev/zero "
        f"> {disk}/filler; "
        f"exec {TJCTL} run --no-progress -f {path}"
    )
    env = {**_lease_env(disk, "60"), "DATABASE_URL": f"sqlite:///{table}"}
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "no space left" in errors[0], errors
    if not table_on_the_full_disk:
        row = JobStore(f"sqlite:///{table}").get_by_name("default", "no-space")
        assert row is not None and row.status == "failed", row
        assert "no space left" in (row.error or "")
