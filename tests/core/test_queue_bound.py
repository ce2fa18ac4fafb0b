"""A bound on queued jobs (TJ_MAX_QUEUED_JOBS): whoever reaches `tjctl submit` or the
UI's Start button cannot queue without end. Real `tjctl` processes, a real SQLite file or
a real PostgreSQL database, and the UI's own write path; several submitters at once never
pass the bound."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tjcore.settings import DEFAULT_MAX_QUEUED_JOBS, Settings, SettingsError
from tjcore.spec import validate_spec
from tjcore.store import JobStore
from tjui.db import DataError, submit_job

TJCTL = str(Path(sys.executable).with_name("tjctl"))


def submit(shared: Path, limit: str | None, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHARED_DATA_PATH": str(shared), "DATABASE_URL": url}
    env.pop("TJ_MAX_QUEUED_JOBS", None)
    if limit is not None:
        env["TJ_MAX_QUEUED_JOBS"] = limit
    return subprocess.run(
        [TJCTL, "submit", "--timeframe", "15m", "--n-trials", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def pending(url: str) -> int:
    store = JobStore(url)
    try:
        return len(store.list_jobs(limit=1000, status="pending"))
    finally:
        store.close()


def test_tjctl_submit_refuses_past_the_bound_with_one_error_line(
    shared_dir: Path, database_url: str
) -> None:
    for _ in range(3):
        assert submit(shared_dir, "3", database_url).returncode == 0
    refused = submit(shared_dir, "3", database_url)
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: 3 jobs are queued already")
    assert "TJ_MAX_QUEUED_JOBS" in refused.stderr and "tjctl cancel" in refused.stderr
    assert pending(database_url) == 3


def test_concurrent_submitters_never_pass_the_bound(shared_dir: Path, database_url: str) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: submit(shared_dir, "4", database_url), range(8)))
    assert sorted(r.returncode for r in results) == [0] * 4 + [1] * 4
    assert pending(database_url) == 4


def test_the_ui_start_button_path_is_bounded_too(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TJ_MAX_QUEUED_JOBS", "2")
    url = database_url
    spec = validate_spec({"timeframe": "1h"})
    submit_job(url, spec)
    submit_job(url, spec)
    with pytest.raises(DataError, match="2 jobs are queued already"):
        submit_job(url, spec)
    assert pending(url) == 2


def test_the_bound_defaults_and_is_checked(tmp_path: Path) -> None:
    env = {"SHARED_DATA_PATH": str(tmp_path)}
    assert Settings.from_env(env).max_queued_jobs == DEFAULT_MAX_QUEUED_JOBS == 20
    assert Settings.from_env({**env, "TJ_MAX_QUEUED_JOBS": "5"}).max_queued_jobs == 5
    for bad in ("0", "-1", "lots", "1.5"):
        with pytest.raises(SettingsError, match="TJ_MAX_QUEUED_JOBS must be an integer >= 1"):
            Settings.from_env({**env, "TJ_MAX_QUEUED_JOBS": bad})
