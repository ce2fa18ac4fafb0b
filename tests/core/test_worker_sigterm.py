"""SIGTERM always stops ``tjctl worker``, wherever it lands in the idle loop.

A signal handler that calls ``threading.Event.set()`` deadlocks when the signal arrives
while the main thread holds that Event's lock inside ``Event.wait`` (a window of a few
bytecodes, too small to hit by chance). The worker here runs in a real process with a
trace hook that delivers a real SIGTERM exactly there, if the idle loop ever passes
through ``Event.wait``; otherwise it is delivered after a short while.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WORKER_WITH_SIGTERM_IN_EVENT_WAIT = r"""
import linecache, os, signal, sys, threading

sent = []

def term():
    if not sent:
        sent.append(True)
        os.kill(os.getpid(), signal.SIGTERM)

def local(frame, event, arg):
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    if event == "line" and line == "return signaled":
        term()  # the Event's lock is held right here
    return local

def hook(frame, event, arg):
    if frame.f_code.co_qualname == "Event.wait":
        return local
    return None

threading.Timer(10.0, term).start()  # a fallback: long enough for a loaded machine
sys.settrace(hook)
from tjctl.main import main
code = main(["worker", "--interval", "0.05", "--no-progress"])
print("worker exited", code, flush=True)
sys.exit(code)
"""


def test_sigterm_inside_the_idle_wait_stops_the_worker(shared_dir: Path, database_url: str) -> None:
    """On SQLite and on PostgreSQL (the worker polls the table there)."""
    env = {**os.environ, "SHARED_DATA_PATH": str(shared_dir), "DATABASE_URL": database_url}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_WITH_SIGTERM_IN_EVENT_WAIT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        out, err = worker.communicate()
        raise AssertionError(f"the worker hung after SIGTERM:\n{err}") from None
    assert worker.returncode == 0, err
    assert "worker exited 0" in out
    assert "worker stopped" in err
