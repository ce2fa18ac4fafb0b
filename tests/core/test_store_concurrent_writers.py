"""Several real processes write the table at once: nothing is lost, nothing is locked."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

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


def test_concurrent_writer_processes_lose_no_row(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    url = f"sqlite:///{db}"
    JobStore(url).close()
    writers, per_writer = 6, 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(w), str(per_writer)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
        assert out.strip() == "ok"
    rows = JobStore(url).list_jobs(limit=1000)
    assert len(rows) == writers * per_writer
    assert {r.error for r in rows} == {
        f"{w}-{i}" for w in range(writers) for i in range(per_writer)
    }
    assert all(r.status == "running" and r.current_trial == 2 for r in rows)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
