"""The trainer's process (``python -m tjtrainer train``) starts without the libraries it
does not use: pandas (only making a dataset needs it), SQLAlchemy (only PostgreSQL
studies) and scikit-learn (only readers of the seed's pickles). Together they were about
1.5 s of a start that every trainer pod and ``tjctl run`` pays (issue 11). Nor does it load
``pyarrow.compute`` (0.1 s), which PyArrow's casts would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

NOT_IMPORTED = ("pandas", "sqlalchemy", "sklearn")


def imported_modules(stderr: str) -> set[str]:
    """The modules ``python -X importtime`` reports as imported."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_a_whole_training_run_imports_neither_pandas_nor_sqlalchemy(data_root: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tjtrainer", "train", "--timeframe", "15m",
         "--n-trials", "2", "--seed", "3", "--data-root", str(data_root),
         "--run-dir", str(data_root / "runs" / "default" / "imports")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "completed: model version" in run.stdout
    modules = imported_modules(run.stderr)
    assert {"xgboost", "optuna", "pyarrow", "tjtrainer.train"} <= modules
    # Each of these packages loads submodules when it is imported; XGBoost's attempt at
    # scikit-learn, which the trainer hides (tjtrainer.legacy), fails at once and leaves
    # only the package's own name in the report.
    assert [m for m in modules if "." in m and m.split(".")[0] in NOT_IMPORTED] == []
    assert "pyarrow.compute" not in modules
