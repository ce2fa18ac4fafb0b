"""Driver of the publish fault tests (run as a real process by test_atomic_publish.py).

``python publish_faults.py kill MODELS_DIR``: saves a first version, then for k = 1, 2, …
forks a process that saves another version with ``TJTRAINER_KILL_AT=k`` (it SIGKILLs
itself at its k-th fault point), and after each kill reads what ``*_latest`` holds. Ends
when a save runs through without reaching point k.

``python publish_faults.py enospc MODELS_DIR``: MODELS_DIR is on a small tmpfs; saves a
first version, then for each amount of free space left by a filler file tries to save
another one, which fails with ENOSPC somewhere, and reads what ``*_latest`` holds.

``python publish_faults.py once MODELS_DIR GO_FILE``: touches ``ready-<pid>`` next to
GO_FILE, waits for GO_FILE, saves once and prints ``{"version": …}`` (twenty of them at
once: the concurrent saves test).

Otherwise prints one JSON object: ``{"cases": [{"k" or "free": …, "outcome": …, "latest": …}]}``,
where ``latest`` is the version every ``*_latest`` name belongs to, or an error string
when they are mixed or unreadable.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.preprocessing import StandardScaler

from tjcontract.files import KILL_AT_ENV
from tjtrainer.models import save_models

TIMEFRAME = "15m"


def boosters(seed: int, rounds: int) -> dict[str, xgb.Booster]:
    rng = np.random.default_rng(seed)
    found = {}
    for model in ("LONG", "SHORT"):
        data = xgb.DMatrix(rng.normal(size=(200, 3)), label=rng.normal(size=200))
        params = {"max_depth": 4, "nthread": 1}
        found[model] = xgb.train(params, data, num_boost_round=rounds)
    return found


SCALER = StandardScaler().fit(np.arange(12.0).reshape(4, 3))


def save(models_dir: Path, seed: int, rounds: int = 3) -> str:
    """Save a version; later versions have more rounds (larger files) than the first, so
    that switching to them needs more space than the old files free."""
    return save_models(
        models_dir,
        timeframe=TIMEFRAME,
        boosters=boosters(seed, rounds),
        scaler=SCALER,
        metadata={"features": ["a", "b", "c"], "seed": seed},
    ).version


def latest_state(models_dir: Path) -> str:
    """The version all ``*_latest`` names hold, or what is wrong with them."""
    try:
        metadata = json.loads((models_dir / f"metadata_{TIMEFRAME}_latest.json").read_bytes())
    except (OSError, ValueError) as err:
        return f"error: metadata unreadable: {err}"
    for name, digest in metadata["latest_files"].items():
        try:
            found = hashlib.sha256((models_dir / name).read_bytes()).hexdigest()
        except OSError as err:
            return f"error: {name}: {err}"
        if found != digest:
            return f"error: mixed: {name} is not the file of {metadata['version']}"
    return str(metadata["version"])


def in_child(work: Any) -> tuple[str, int]:
    """Run ``work`` in a forked process; (``killed`` | ``ok`` | ``failed``, status)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            work()
        except OSError as err:
            code = 3 if err.errno in (errno.ENOSPC, errno.EFBIG) else 4
        except BaseException:
            code = 5
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed", status
    code = os.waitstatus_to_exitcode(status)
    return ("ok" if code == 0 else "enospc" if code == 3 else f"failed {code}"), status


def run_kills(models_dir: Path) -> list[dict[str, Any]]:
    previous = save(models_dir, 0)
    cases = []
    for k in range(1, 200):

        def work(k: int = k) -> None:
            os.environ[KILL_AT_ENV] = str(k)
            save(models_dir, k, rounds=5)

        outcome, _ = in_child(work)
        latest = latest_state(models_dir)
        cases.append({"k": k, "outcome": outcome, "latest": latest, "previous": previous})
        if not latest.startswith("error"):
            previous = latest
        if outcome != "killed":
            break
    return cases


def run_enospc(models_dir: Path) -> list[dict[str, Any]]:
    previous = save(models_dir, 0)
    filler = models_dir.parent / "filler"
    cases = []
    for pages in range(0, 80):

        def work(pages: int = pages) -> None:
            info = os.statvfs(models_dir)
            size = max(0, info.f_bavail * info.f_frsize - pages * info.f_frsize)
            with filler.open("wb") as out:
                out.truncate(0)
                out.write(b"\0" * size)
            save(models_dir, 100 + pages, rounds=12)

        outcome, _ = in_child(work)
        filler.unlink(missing_ok=True)
        for folder in models_dir.glob(f"{TIMEFRAME}_*"):  # the failed save's, if it left one
            if not (folder / "metadata.json").exists():
                shutil.rmtree(folder)
        latest = latest_state(models_dir)
        cases.append({"free": pages, "outcome": outcome, "latest": latest, "previous": previous})
        if not latest.startswith("error"):
            previous = latest
        if outcome == "ok":
            break
    return cases


def save_when_told(models_dir: Path, go: Path) -> None:
    """Wait for the file ``go``, then save one version and print its name."""
    chosen = boosters(os.getpid(), 3)
    (go.parent / f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.005)
    version = save_models(
        models_dir, timeframe=TIMEFRAME, boosters=chosen, scaler=SCALER, metadata={}
    ).version
    print(json.dumps({"version": version}))


def main() -> None:
    mode, models_dir = sys.argv[1], Path(sys.argv[2])
    models_dir.mkdir(parents=True, exist_ok=True)
    if mode == "once":
        save_when_told(models_dir, Path(sys.argv[3]))
        return
    cases = run_kills(models_dir) if mode == "kill" else run_enospc(models_dir)
    print(json.dumps({"cases": cases}))


if __name__ == "__main__":
    main()
