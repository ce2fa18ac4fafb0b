"""The seed's pickled model files, written without importing scikit-learn.

A version keeps ``model_<side>.pkl`` (a pickled ``xgboost.XGBRegressor``) and
``scaler.pkl`` (a pickled ``sklearn.preprocessing.StandardScaler``) for readers of the
seed's format, who unpickle them with scikit-learn installed. The trainer itself never
needs scikit-learn, and importing it (which XGBoost does whenever it is installed, for
its optional wrapper) costs about 0.9 s of a 1.2 s ``import xgboost``: the trainer's
process (``python -m tjtrainer``) imports XGBoost with scikit-learn hidden
(:func:`import_xgboost_without_sklearn`) and writes the two pickles itself.
"""

from __future__ import annotations

import json
import pickle
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tjtrainer.matrices import Standardiser

SCALER_CLASS = ("sklearn.preprocessing._data", "StandardScaler")


def import_xgboost_without_sklearn() -> None:
    """Import XGBoost as if scikit-learn were not installed (its wrapper classes then do
    not derive from scikit-learn's), unless either is already imported."""
    if "xgboost" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # import sklearn fails
    try:
        import xgboost  # noqa: F401
    finally:
        del sys.modules["sklearn"]


def sklearn_version() -> str | None:
    """The installed scikit-learn's version (None when it is not installed), read from
    its package metadata rather than by importing it."""
    import importlib.metadata  # 0.08 s, only when a version is saved

    try:
        return importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        return None


def scaler_pickle(scaler: Standardiser) -> bytes:
    """The pickle a fitted ``StandardScaler`` with these statistics would give: its class
    by name, then ``__setstate__`` with its attributes (what scikit-learn restores)."""
    state: dict[str, Any] = {
        "with_mean": True,
        "with_std": True,
        "copy": True,
        "n_features_in_": len(scaler.mean_),
        "n_samples_seen_": scaler.n_samples_seen_,
        "mean_": scaler.mean_,
        "var_": scaler.var_,
        "scale_": scaler.scale_,
    }
    version = sklearn_version()
    if version is not None:  # scikit-learn warns when it reads another version's pickle
        state["_sklearn_version"] = version
    module, name = SCALER_CLASS
    # Protocol 2 by hand: GLOBAL the class, EMPTY_TUPLE + NEWOBJ (cls.__new__(cls)), the
    # state dict as pickle writes it (its own memo starts empty: nothing before it is
    # memoised), BUILD (obj.__setstate__(state)), STOP.
    body = pickle.dumps(state, protocol=2)[2:-1]  # without PROTO 2 and STOP
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")\x81" + body + b"b."


def regressor_pickle(raw_booster: bytes) -> bytes:
    """A pickled ``xgboost.XGBRegressor`` holding this booster (UBJSON), as the seed wrote
    (``XGBRegressor().load_model(raw)``), with or without scikit-learn loaded."""
    import xgboost as xgb
    import xgboost.sklearn as wrapper

    # XGBoost refuses to build its wrapper without scikit-learn, and its load_model asks
    # scikit-learn whether the wrapper is a classifier; the object itself (its class and
    # attributes, which are all its pickle holds) does not depend on scikit-learn.
    installed = wrapper.SKLEARN_INSTALLED
    wrapper.SKLEARN_INSTALLED = True
    try:
        regressor = xgb.XGBRegressor()
    finally:
        wrapper.SKLEARN_INSTALLED = installed
    booster = xgb.Booster(model_file=bytearray(raw_booster))
    learner = json.loads(booster.save_config())["learner"]
    # What load_model sets (XGBModel._load_model_attributes), for a regressor without
    # categorical features.
    regressor._Booster = booster
    regressor.objective = learner["objective"]["name"]
    regressor.booster = learner["gradient_booster"]["name"]
    regressor.base_score = json.loads(learner["learner_model_param"]["base_score"])
    regressor.feature_types = booster.feature_types
    regressor.enable_categorical = False
    return pickle.dumps(regressor)
