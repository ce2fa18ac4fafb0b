"""The trainer: Optuna + XGBoost for the LONG and SHORT models of one timeframe.

It knows nothing of Kubernetes or SQLite. It reads a dataset from the shared folder,
writes progress under ``runs/<namespace>/<name>/`` (see :mod:`tjtrainer.progress`) and
models under ``models/``. Heavy imports (xgboost, optuna, pandas) stay in submodules so
that readers of the progress format import nothing heavy.
"""
