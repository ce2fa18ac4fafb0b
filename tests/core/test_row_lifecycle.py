"""The table's lifecycle under abuse (issue 15, item 5 and the smaller ones): a second
`tjctl run` of a live job, rows with bad values, cancels forwarded once, bounded
messages. Real `tjctl` processes, real SQLite files (and, where the test takes
``any_store`` or ``database_url``, a real PostgreSQL database too), the real trainer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tjcore.messages import MESSAGE_LIMIT, bounded_message
from tjcore.schema import SCHEMA_VERSION
from tjcore.store import JobStore
from tjtrainer.progress import RunState, latest_run_dir
from tjui.data import history_frame

TJCTL = str(Path(sys.executable).with_name("tjctl"))


def _env(shared: Path) -> dict[str, str]:
    env = {**os.environ, "SHARED_DATA_PATH": str(shared)}
    env.pop("DATABASE_URL", None)
    return env


def tjctl(shared: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TJCTL, *args], env=_env(shared), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shared")
    made = tjctl(folder, "dataset", "synth", "--timeframe", "15m", "--rows", "3000")
    assert made.returncode == 0, made.stderr
    return folder


def store_of(shared: Path) -> JobStore:
    return JobStore(f"sqlite:///{shared / 'training_jobs.db'}")


def manifest(tmp_path: Path, name: str, **spec: object) -> Path:
    body = {"timeframe": "15m", "nTrials": 2, "trainRatio": 0.8, "seed": 3, **spec}
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        "apiVersion: mltraining.dev/v1alpha1\nkind: TrainingJob\n"
        f"metadata:\n  name: {name}\nspec: {json.dumps(body)}\n"
    )
    return path


def wait_for(what: str, predicate, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# -- a second `tjctl run` of the same name --------------------------------------------
def test_a_second_run_of_a_live_job_is_refused_and_leaves_its_row_alone(
    shared: Path, tmp_path: Path
) -> None:
    path = manifest(tmp_path, "live", nTrials=400)
    first = subprocess.Popen(
        [TJCTL, "run", "-f", str(path), "--no-progress"],
        env=_env(shared),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = store_of(shared)
        row = wait_for(
            "the first run's first trial",
            lambda: (lambda r: r if r and r.current_trial >= 1 else None)(
                store.get_by_name("default", "live")
            ),
        )
        second = tjctl(shared, "run", "-f", str(path), "--no-progress")
        assert second.returncode == 1, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), second.stderr
        assert f"running already as job {row.id}" in lines[0] and "tjctl cancel" in lines[0]
        after = store.get(row.id)
        assert after is not None and after.status == "running"
        assert after.lease_owner == row.lease_owner and after.error is None
        # A cancel asked for meanwhile is not dropped by another refused run. The first run
        # is held still (SIGSTOP) so that it cannot take the cancel before the second run.
        first.send_signal(signal.SIGSTOP)
        try:
            store.request_cancel(row.id)
            again = tjctl(shared, "run", "-f", str(path), "--no-progress")
            assert again.returncode == 1 and "running already" in again.stderr
            held = store.get(row.id)
            assert held is not None and held.cancel_requested and held.status == "running"
        finally:
            first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        assert "cancelled after" in out
        final = store.get(row.id)
        assert final is not None and final.status == "cancelled" and final.error is None
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGINT)
            first.wait(timeout=30)


# -- rows with bad values ---------------------------------------------------------------
def _spoil(db: Path, job_id: int, **values: object) -> None:
    """Write values behind the store's back, as a broken writer or an admin would."""
    with sqlite3.connect(db) as conn:
        for column, value in values.items():
            conn.execute(f"UPDATE training_jobs SET {column} = ? WHERE id = ?", (value, job_id))


def test_a_row_with_bad_values_shows_as_damaged_and_the_others_work(
    shared: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "datasets").symlink_to(shared / "datasets")
    db = folder / "training_jobs.db"
    store = JobStore(f"sqlite:///{db}")
    good = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    bad_log = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    store.update_job(bad_log, status="completed", progress_pct=100.0)
    bad_spec = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    _spoil(db, bad_log, trial_log="{not json", progress_pct="lots", best_score_long="x")
    _spoil(db, bad_spec, n_trials="many", trial_log="[1, 2]")

    rows = {r.id: r for r in store.list_jobs()}
    assert set(rows) == {good, bad_log, bad_spec}
    assert rows[good].damaged == ()
    assert rows[bad_log].trial_log == [] and rows[bad_log].progress_pct == 0.0
    assert any(d.startswith("trial_log:") for d in rows[bad_log].damaged)
    assert any(d.startswith("progress_pct:") for d in rows[bad_log].damaged)
    assert rows[bad_log].spec_damage is None
    assert rows[bad_spec].spec_damage and "n_trials" in rows[bad_spec].spec_damage

    # The UI's history keeps every row and marks the damaged ones.
    frame = history_frame(store.list_jobs())
    assert len(frame) == 3
    shown = dict(zip(frame["id"], frame["status"], strict=True))
    assert shown[good] == "pending" and "damaged" in shown[bad_log]

    listed = tjctl(folder, "jobs")
    assert listed.returncode == 0, listed.stderr
    assert "damaged" in listed.stdout and len(listed.stdout.strip().splitlines()) == 4
    as_json = tjctl(folder, "jobs", "-o", "json")
    assert as_json.returncode == 0 and len(json.loads(as_json.stdout)) == 3
    shown_one = tjctl(folder, "show", str(bad_log))
    assert shown_one.returncode == 0
    assert any("trial_log" in d for d in json.loads(shown_one.stdout)["damaged"])

    # The worker fails the row it cannot run, and runs the good one.
    worked = tjctl(folder, "worker", "--once", "--no-progress")
    assert worked.returncode == 0, worked.stderr
    assert "Traceback" not in worked.stderr
    failed = store.get(bad_spec)
    assert failed is not None and failed.status == "failed"
    assert "damaged" in (failed.error or "") and "n_trials" in (failed.error or "")
    done = store.get(good)
    assert done is not None and done.status == "completed"


# -- cancels are forwarded once; schema v7 -------------------------------------------
def test_a_forwarded_cancel_is_not_listed_again(any_store: JobStore) -> None:
    store = any_store
    ours = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="ui")
    assert store.claim(ours, namespace="bridge", name="row-1-abc", start=False)
    theirs = store.submit(
        timeframe="15m", n_trials=1, train_ratio=0.8, source="kubectl", namespace="team-b"
    )
    store.update_job(theirs, name="other", status=RunState.RUNNING.value)
    store.request_cancel(ours)  # a pending row: cancelled at once, still forwarded once
    store.request_cancel(theirs)
    assert [r.id for r in store.cancel_requests(namespace="bridge")] == [ours]
    assert [r.id for r in store.cancel_requests(namespace="team-b")] == [theirs]
    store.mark_cancel_forwarded(ours)
    assert store.cancel_requests(namespace="bridge") == []
    reopened = JobStore(store.url)  # a restart remembers it
    assert reopened.cancel_requests(namespace="bridge") == []


def test_a_version_6_table_gains_cancel_forwarded(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = JobStore(f"sqlite:///{path}")
    job = store.submit(timeframe="1h", n_trials=5, train_ratio=0.7, source="old")
    store.close()
    with sqlite3.connect(path) as conn:  # the table release 6 made
        conn.execute("ALTER TABLE training_jobs DROP COLUMN cancel_forwarded")
        conn.execute("UPDATE training_jobs_schema SET version = 6")
    upgraded = JobStore(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        names = {r[1] for r in conn.execute("PRAGMA table_info(training_jobs)")}
        (version,) = conn.execute("SELECT version FROM training_jobs_schema").fetchone()
    assert "cancel_forwarded" in names and version == SCHEMA_VERSION
    row = upgraded.get(job)
    assert row is not None and row.cancel_forwarded is False and row.n_trials == 5


# -- bounded messages ------------------------------------------------------------------
def test_messages_are_bounded_with_an_ellipsis(any_store: JobStore) -> None:
    assert bounded_message("short") == "short"
    long = "é" * 5000
    cut = bounded_message(long)
    assert cut is not None and cut.endswith("…")
    assert len(cut.encode()) <= MESSAGE_LIMIT
    store = any_store
    job = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    store.finish(job, RunState.FAILED, error="x" * 100_000)
    row = store.get(job)
    assert row is not None and row.error is not None
    assert len(row.error.encode()) <= MESSAGE_LIMIT and row.error.endswith("…")
    store.update_job(job, error="y" * 5000)
    row = store.get(job)
    assert row is not None and row.error is not None and len(row.error.encode()) <= MESSAGE_LIMIT


def test_rows_of_local_runners_are_never_the_bridges(any_store: JobStore) -> None:
    """`tjctl run -n <the bridge's namespace>`: its row has a uid and a name but no
    TrainingJob; the bridge must neither end it as deleted nor forward its cancel."""
    store = any_store
    local = store.submit(
        timeframe="15m",
        n_trials=1,
        train_ratio=0.8,
        source="tjctl-run",
        namespace="bridge",
        name="mine",
        uid="a-random-run-uid",
    )
    store.mark_running(local, total_trials=2, lease_owner="host/1/abc")
    worker = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="ui")
    assert store.claim(worker, namespace="bridge", name="job-2-abc", start=True)
    store.update_job(worker, uid="another-run-uid", lease_owner="host/2/def")
    for job in (local, worker):
        store.request_cancel(job)
    assert store.cancel_requests(namespace="bridge") == []
    assert store.unfinished_with_uid(namespace="bridge") == []


def test_tjctl_run_leaves_a_job_of_the_operator_alone(shared: Path, tmp_path: Path) -> None:
    store = store_of(shared)
    job = store.submit(
        timeframe="15m",
        n_trials=2,
        train_ratio=0.8,
        seed=3,
        source="kubectl",
        namespace="default",
        name="the-operators",
        uid="uid-of-a-trainingjob",
    )
    refused = tjctl(shared, "run", "-f", str(manifest(tmp_path, "the-operators")))
    assert refused.returncode == 1 and refused.stderr.startswith("error: "), refused.stderr
    assert f"is pending as job {job}, the TrainingJob operator's" in refused.stderr
    row = store.get(job)
    assert row is not None and (row.status, row.lease_owner) == ("pending", None)
    assert latest_run_dir(shared, "default", "the-operators") is None


# -- tjctl submit, worker and jobs on each backend ---------------------------------------
def test_tjctl_submit_worker_and_jobs_share_the_table(shared: Path, database_url: str) -> None:
    env = {**_env(shared), "DATABASE_URL": database_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([TJCTL, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        return done

    run("submit", "--timeframe", "15m", "--n-trials", "2", "--seed", "3")
    run("worker", "--once", "--no-progress")
    (row,) = json.loads(run("jobs", "-o", "json").stdout)
    assert (row["status"], row["current_trial"]) == ("completed", 4)
    store = JobStore(database_url)
    done = store.get(row["id"])
    store.close()
    assert done is not None and [t["trial"] for t in done.trial_log] == [1, 2, 3, 4]
    assert done.model_version and (shared / "models" / "metadata_15m_latest.json").exists()
