"""``python -m tjtrainer`` as a process, with the wall time XGBoost was busy in it noted.

Usage: ``python bench/trainer_process.py OUT.json train --timeframe 15m ...``: runs the
trainer's own entry point (``tjtrainer.__main__``) with those arguments and, at exit,
writes ``{"xgboost_s": ...}`` to ``OUT.json``: the wall time during which XGBoost calls
ran (``xgboost_wall_s`` of the run's ``tjtrainer.search.Timings``), so that the share of
the process outside XGBoost is taken from the same process, not from another run. The
spy only notes which timings the run used; the trainer runs as it does in a pod.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in main(), after XGBoost is (as tjtrainer.__main__ does)
    from tjtrainer.search import Timings


def main() -> None:
    out, arguments = Path(sys.argv[1]), sys.argv[2:]
    used: dict[int, Timings] = {}
    from tjtrainer.legacy import import_xgboost_without_sklearn

    import_xgboost_without_sklearn()
    from tjtrainer.search import Timings

    noted = Timings.add_xgboost

    def add_xgboost(self: Timings, seconds: float, what: str) -> None:
        noted(self, seconds, what)
        used[id(self)] = self

    def write() -> None:
        busy = sum(timings.xgboost_wall_s for timings in used.values())
        out.write_text(json.dumps({"xgboost_s": busy}))

    def exit_after_writing(code: int) -> None:
        write()
        leave(code)

    Timings.add_xgboost = add_xgboost  # type: ignore[method-assign]
    leave = os._exit  # how tjtrainer.__main__ ends a command that returned
    os._exit = exit_after_writing  # type: ignore[assignment]
    atexit.register(write)  # how it ends on an exception
    sys.argv = ["tjtrainer", *arguments]
    runpy.run_module("tjtrainer", run_name="__main__")


if __name__ == "__main__":
    main()
