"""Several real processes write the table at once: nothing is lost, nothing is locked,
each row is claimed once; on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import sqlalchemy as sa

from tjcore.store import JobStore

WRITER = """
import sys
from tjcore.store import JobStore
from tjtrainer.progress import RunProgress
store = JobStore(sys.argv[1])
worker = int(sys.argv[2])
for i in range(int(sys.argv[3])):
    job = store.submit(timeframe="15m", n_trials=2, train_ratio=0.8, source=f"w{worker}")
    store.mark_running(job, total_trials=4)
    store.apply_progress(job, RunProgress(timeframe="15m", n_trials=2, total_trials=4,
                                          completed_trials=2, current_model="LONG"))
    store.update_job(job, error=f"{worker}-{i}")
print("ok")
"""


CLAIMER = """
import sys
from tjcore.store import JobStore
store = JobStore(sys.argv[1])
won = [str(row.id) for row in store.pending()
       if store.claim(row.id, namespace="ns", name=f"{sys.argv[2]}-{row.id}", start=True)]
print(",".join(won))
"""


def _run_all(argvs: list[list[str]]) -> list[str]:
    """Start every process at once; their outputs (each must exit 0, never "locked")."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for argv in argvs
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
    return [out.strip() for out, _err in outputs]


def test_concurrent_writer_processes_lose_no_row(database_url: str) -> None:
    url = database_url
    JobStore(url).close()
    writers, per_writer = 6, 25
    outputs = _run_all([[WRITER, url, str(w), str(per_writer)] for w in range(writers)])
    assert outputs == ["ok"] * writers
    rows = JobStore(url).list_jobs(limit=1000)
    assert len(rows) == writers * per_writer
    assert {r.error for r in rows} == {
        f"{w}-{i}" for w in range(writers) for i in range(per_writer)
    }
    assert all(r.status == "running" and r.current_trial == 2 for r in rows)
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_concurrent_claimer_processes_win_each_row_exactly_once(any_store: JobStore) -> None:
    ids = [
        any_store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
        for _ in range(40)
    ]
    outputs = _run_all([[CLAIMER, any_store.url, f"c{n}"] for n in range(5)])
    won = [int(i) for out in outputs for i in out.split(",") if i]
    assert sorted(won) == ids, "a row was claimed twice, or by nobody"
    for row in any_store.list_jobs(limit=100):
        assert row.status == "running" and row.name == f"{row.name.split('-')[0]}-{row.id}"


def test_a_cancel_waits_for_a_claim_in_flight_and_stays_a_request(any_store: JobStore) -> None:
    """A cancel reads the row's status and then writes: a claim that starts the row
    between the two must not be overwritten by "cancelled" (the runner runs it)."""
    job = any_store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    claimer = sa.create_engine(any_store.url)
    result: list[str] = []
    with claimer.connect() as conn:
        if any_store.is_sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
        conn.execute(
            sa.text("UPDATE training_jobs SET status = 'running' WHERE id = :id"), {"id": job}
        )
        cancel = threading.Thread(
            target=lambda: result.append(any_store.request_cancel(job).status)
        )
        cancel.start()
        time.sleep(1.0)  # the cancel is now waiting for the claim's transaction
        conn.exec_driver_sql("COMMIT")
    cancel.join(timeout=60)
    claimer.dispose()
    row = any_store.get(job)
    assert row is not None
    assert result == ["running"] and row.status == "running" and row.cancel_requested
