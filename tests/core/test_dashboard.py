"""`tjctl dashboard NAME` serves optuna-dashboard on a finished local run's study over
loopback, read-only (the study file's SHA-256 is the same afterwards), and says in one
line what is wrong when it cannot (unknown job, no study yet, port taken)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from local_runs_lib import TJCTL, manifest, shared_folder, tjctl

from tjcontract.layout import STUDY_FILE
from tjtrainer.progress import latest_run_dir, run_dir_for

NAME = "dash-run"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared folder holding one completed run of 3 trials per model."""
    shared = shared_folder(tmp_path_factory)
    folder = tmp_path_factory.mktemp("manifests")
    done = tjctl(shared, "run", "-f", str(manifest(folder, NAME, nTrials=3)), "--no-progress")
    assert done.returncode == 0, done.stderr
    return shared


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.loads(answer.read())


def stop(server: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    """Stop the dashboard with ``signum``; killed (and the test failed) if it stays."""
    server.send_signal(signum)
    try:
        return server.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        _, err = server.communicate()
        pytest.fail(f"tjctl dashboard did not stop on signal {signum}: {err[-2000:]}")


def _start(shared: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "SHARED_DATA_PATH": str(shared)}
    env.pop("DATABASE_URL", None)
    env.pop("TJ_STUDY_STORAGE_URL", None)
    server = subprocess.Popen(
        [TJCTL, "dashboard", NAME, "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    found = re.search(r"http://\S+/", line)
    if found is None:
        server.kill()
        pytest.fail(f"no URL in {line!r}; stderr: {server.communicate()[1]}")
    return server, found.group(0)


def test_the_dashboard_serves_the_runs_trials_read_only(finished_run: Path) -> None:
    run_dir = latest_run_dir(finished_run, "default", NAME)
    assert run_dir is not None
    study = run_dir / STUDY_FILE
    before = _sha256(study)
    server, url = _start(finished_run)
    try:
        assert url.startswith("http://127.0.0.1:")  # loopback by default
        summaries = _get(f"{url}api/studies")["study_summaries"]
        assert sorted(s["study_name"] for s in summaries) == ["LONG", "SHORT"]
        for summary in summaries:
            detail = _get(f"{url}api/studies/{summary['study_id']}?after=0")
            trials = detail["trials"]
            assert len(trials) == 3
            assert {p["name"] for p in trials[0]["params"]} >= {"max_depth", "learning_rate"}
            assert all(t["state"] in ("Complete", "Pruned") for t in trials)
        write = urllib.request.Request(
            f"{url}api/studies",
            data=json.dumps({"study_name": "x", "directions": ["maximize"]}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(write, timeout=30)
        assert refused.value.code == 405
        assert len(_get(f"{url}api/studies")["study_summaries"]) == 2
    finally:
        _, err = stop(server, signal.SIGINT)
    assert server.returncode == 0, err
    assert _sha256(study) == before


def test_unknown_jobs_missing_studies_and_taken_ports_are_one_error_line(
    finished_run: Path,
) -> None:
    run_dir_for(finished_run, "default", "not-started", str(uuid.uuid4())).mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for args, words in [
            (("nobody",), "no TrainingJob default/nobody has run here"),
            (("not-started",), "has no study yet"),
            ((NAME, "-n", "Bad_NS"), "namespace"),
            ((NAME, "--port", port), f"port {port} on 127.0.0.1 is taken"),
            ((NAME, "--host", "203.0.113.7"), "not an address of this machine"),
        ]:
            done = tjctl(finished_run, "dashboard", *args, timeout=60)
            assert done.returncode == 1, (args, done.stdout)
            (line,) = done.stderr.strip().splitlines()
            assert line.startswith("error: ") and words in line, (args, line)


def test_a_run_whose_studies_are_in_postgresql_shows_only_its_own(
    tmp_path: Path, postgres_url: str
) -> None:
    import optuna

    from tjtrainer.shared_studies import study_prefix

    shared = tmp_path / "shared"
    run_dir = run_dir_for(shared, "default", NAME, str(uuid.uuid4()))
    run_dir.mkdir(parents=True)
    storage = optuna.storages.RDBStorage(postgres_url)
    mine = optuna.create_study(storage=storage, study_name=f"{study_prefix(run_dir)}:LONG")
    mine.enqueue_trial({"x": 1.0})
    mine.optimize(lambda t: t.suggest_float("x", 0, 2), n_trials=2)
    optuna.create_study(storage=storage, study_name="tj:uid-of-another-run:LONG")
    storage.engine.dispose()

    server, url = _start(shared, "--study-storage", postgres_url)
    try:
        (summary,) = _get(f"{url}api/studies")["study_summaries"]
        assert summary["study_name"] == f"{study_prefix(run_dir)}:LONG"
        trials = _get(f"{url}api/studies/{summary['study_id']}?after=0")["trials"]
        assert [t["params"][0]["param_external_value"] for t in trials][:1] == ["1.0"]
    finally:
        _, err = stop(server, signal.SIGTERM)
    assert server.returncode == 0, err
    assert "password" not in err and postgres_url not in err


def test_a_signal_while_a_reply_is_being_sent_still_stops_the_dashboard(
    finished_run: Path,
) -> None:
    """SIGTERM while the dashboard is blocked sending its 6 MB bundle to a client that
    reads nothing: wsgiref catches the interrupt as a failed request, and before the
    stop flag the server then went on serving."""
    server, url = _start(finished_run)
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect((host, int(port)))
        client.sendall(
            b"GET /static/bundle.js HTTP/1.0\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n"
        )
        client.recv(1)  # the reply has started; the rest waits in the full buffers
        time.sleep(1)
        _, err = stop(server, signal.SIGTERM)
    assert server.returncode == 0, err
    assert "Traceback" not in err, err
