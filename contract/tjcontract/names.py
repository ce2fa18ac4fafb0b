"""Names every component agrees on: the API's group and kind, Kubernetes name rules, the
timeframes, the two models and the name of a model version."""

from __future__ import annotations

import re

GROUP = "mltraining.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingJob"
PLURAL = "trainingjobs"
SHORT_NAME = "tj"

# Kubernetes names: a DNS-1123 label (namespaces) and subdomain (object names); neither can
# be "." or "..", hold a "/" or start with one.
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
LABEL = re.compile(_LABEL)
SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
MAX_LABEL_LENGTH = 63
MAX_SUBDOMAIN_LENGTH = 253
# The Job is named "<name>-train": keep room for the suffix in Kubernetes' 63 characters.
MAX_NAME_LENGTH = 52
# A namespace is a DNS-1123 label; nothing derived from it has a length limit of its own
# (it is a folder of runs/ and a label value, both allowed 63).
MAX_NAMESPACE_LENGTH = MAX_LABEL_LENGTH

# Candle timeframes of the datasets and models (spec.timeframe, --timeframe).
TIMEFRAMES = ("15m", "1h")
# The two models of every run, searched in this order; a run has nTrials trials of each.
MODELS = ("LONG", "SHORT")
# A model version folder: <timeframe>_<YYYYMMDD>_<HHMMSS>, and _<n> when one second held two.
VERSION_NAME = re.compile(r"[A-Za-z0-9]+_[0-9]{8}_[0-9]{6}(_[0-9]{3,})?")


def python_name(field_name: str) -> str:
    """A spec field's name in Python and in the ``training_jobs`` table: ``nTrials`` →
    ``n_trials`` (one quantity, spelled as each layer spells names)."""
    return re.sub(r"[A-Z]", lambda upper: "_" + upper.group().lower(), field_name)


def flag_name(field_name: str) -> str:
    """A spec field's command-line flag: ``nTrials`` → ``--n-trials``."""
    return "--" + python_name(field_name).replace("_", "-")
