"""The trainer: Optuna + XGBoost for the LONG and SHORT models of one timeframe.

It knows nothing of Kubernetes or SQLite. It reads a dataset from the shared folder,
writes progress under ``runs/<namespace>/<name>/`` (see :mod:`tjtrainer.progress`) and
models under ``models/``. Heavy imports (xgboost, optuna, pandas) stay in submodules so
that readers of the progress format import nothing heavy.
"""

import os as _os

# XGBoost's OpenMP threads spin while waiting for work by default. On a shared or
# CPU-limited machine (a pod with a CPU limit, a CI runner) a spinning thread steals
# the core its peer needs and training slows down many times over; passive waiting costs
# little when the cores are free. Must be set before libgomp loads (first xgboost import).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
