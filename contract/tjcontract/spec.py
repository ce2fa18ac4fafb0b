"""The TrainingJob spec's fields: their types, bounds and defaults, stated once.

``tjcore.spec`` validates manifests against :data:`SPEC_FIELDS` and ``tjcore.crd`` turns
the same table into the CRD's schema; the trainer's flags and ``TrainConfig``, the table's
column defaults, the UI's form and the operator read their bounds and defaults here.

One quantity, three spellings: ``spec.nTrials`` (the CRD's camelCase), ``n_trials`` (Python
and the ``training_jobs`` column) and ``--n-trials`` (the flags) all name the Optuna trials
*per model*; a run has :func:`total_trials` of them in all. The same holds for the other
fields (``trainRatio`` / ``train_ratio`` / ``--train-ratio``, ``cvFolds`` / ``cv_folds`` /
``--cv-folds``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tjcontract import checks
from tjcontract.names import MODELS, TIMEFRAMES, VERSION_NAME

DEFAULT_N_TRIALS = 30
MAX_N_TRIALS = 10_000
DEFAULT_TRAIN_RATIO = 0.8
MIN_TRAIN_RATIO = 0.5
MAX_TRAIN_RATIO = 0.95
DEFAULT_SEED = 42
MAX_SEED = 2**31 - 1
# Trials evaluated at once in one trainer process.
MAX_PARALLELISM = 16
# Two trials at once, each with half the CPUs: on 2 cores 1.5x the trials per second of
# one trial with both (XGBoost's threads scale poorly on these small matrices), measured
# with bench/train_throughput.py (docs/TRAINER.md).
DEFAULT_PARALLELISM = 2
DEFAULT_FOLDS = 3
MAX_FOLDS = 10
DEFAULT_EMBARGO = 16
MAX_EMBARGO = 10_000
PROMOTIONS = ("always", "ifSignificant", "ifBetterThanLatest")
DEFAULT_PROMOTION = "always"
# Trainer processes of one run sharing its studies (spec.workers).
DEFAULT_WORKERS = 1
MAX_WORKERS = 32
DEFAULT_WARM_START = "none"
# spec.warmStart: none, latest, or a version folder's name.
WARM_START_PATTERN = f"none|latest|{VERSION_NAME.pattern}"
DEFAULT_ACTIVE_DEADLINE_SECONDS = 86400
DEFAULT_BACKOFF_LIMIT = 2
DEFAULT_TTL_SECONDS_AFTER_FINISHED = 3600


def total_trials(n_trials: int) -> int:
    """The trials of a whole run: ``n_trials`` for each of the models."""
    return len(MODELS) * n_trials


@dataclass(frozen=True)
class SpecField:
    """One field of ``spec``: its JSON type, limits and default."""

    name: str
    type: str  # "string" | "integer" | "number" | "boolean" | "object"
    description: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] | None = None
    # A regular expression the whole string must match (strings only; also in the CRD).
    pattern: str | None = None
    required: bool = False
    extra_schema: dict[str, Any] = field(default_factory=dict)
    # Words for ``pattern`` in error messages ("none, latest or a version such as ...").
    pattern_words: str | None = None
    # Whether it may change after create (the CRD refuses an edit of any other field).
    mutable: bool = False

    def allowed(self) -> str:
        """Words for the allowed values, used in every error message."""
        if self.enum:
            return "one of " + ", ".join(repr(v) for v in self.enum)
        if self.pattern_words:
            return self.pattern_words
        kind = {"integer": "an integer", "number": "a number", "boolean": "true or false"}.get(
            self.type, f"a {self.type}"
        )
        return checks.bounds_words(kind, self.minimum, self.maximum)

    def check(self) -> checks.Check[Any]:
        """The check of a value typed for this field (a flag, a form): its type and limits."""
        if self.enum:
            return checks.choice(self.enum)
        if self.pattern:
            return checks.matching(self.pattern, self.pattern_words or f"matching {self.pattern}")
        low, high = self.minimum, self.maximum
        if self.type == "integer":
            return checks.integer(
                None if low is None else int(low), None if high is None else int(high)
            )
        if self.type == "number":
            return checks.number(low, high)
        raise TypeError(f"spec.{self.name} ({self.type}) is not typed on a command line")


# A Kubernetes resource quantity that a container may ask for: a plain or decimal number
# with an optional SI, binary or exponent suffix ("2", "500m", "1.5", "4Gi", "1e9"); no
# sign (negative resources are refused when the Job is made).
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY = re.compile(QUANTITY_PATTERN)
# A resource name: cpu, memory, ephemeral-storage, hugepages-2Mi, nvidia.com/gpu, ...
# (No backslashes: the pattern also goes into a CEL rule of the CRD.)
RESOURCE_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
RESOURCE_NAME = re.compile(RESOURCE_NAME_PATTERN)
MAX_RESOURCES = 16
MAX_QUANTITY_LENGTH = 32  # also bounds the cost of the CRD's CEL rules
_QUANTITIES = {
    "type": "object",
    "maxProperties": MAX_RESOURCES,
    "additionalProperties": {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "minimum": 0,  # applies to integers only, as the pattern to strings only
        "maxLength": MAX_QUANTITY_LENGTH,
        "pattern": QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    },
    "x-kubernetes-validations": [
        {
            "rule": f"self.all(name, name.matches('{RESOURCE_NAME_PATTERN}'))",
            "message": "resource names are such as cpu, memory, ephemeral-storage or "
            "nvidia.com/gpu",
        }
    ],
}

SPEC_FIELDS: tuple[SpecField, ...] = (
    SpecField(
        "timeframe",
        "string",
        "Candle timeframe of the dataset and models.",
        enum=TIMEFRAMES,
        required=True,
    ),
    SpecField(
        "nTrials",
        "integer",
        "Optuna trials per model (LONG and SHORT each).",
        default=DEFAULT_N_TRIALS,
        minimum=1,
        maximum=MAX_N_TRIALS,
    ),
    SpecField(
        "trainRatio",
        "number",
        "Share of rows used for the search; the rest is the held-out test tail.",
        default=DEFAULT_TRAIN_RATIO,
        minimum=MIN_TRAIN_RATIO,
        maximum=MAX_TRAIN_RATIO,
    ),
    SpecField(
        "cancel",
        "boolean",
        "Set to true to stop after the current trial.",
        default=False,
        mutable=True,
    ),
    SpecField(
        "suspend",
        "boolean",
        "Set to true to suspend the run: its Job is suspended and the trainer pod stopped, "
        "finished trials are kept; set it back to false to resume the same study.",
        default=False,
        mutable=True,
    ),
    SpecField(
        "seed",
        "integer",
        "Random seed; the same seed and data give the same run.",
        default=DEFAULT_SEED,
        minimum=0,
        maximum=MAX_SEED,
    ),
    SpecField(
        "parallelism",
        "integer",
        "Optuna trials evaluated at once in the trainer, each with its share of the CPUs.",
        default=DEFAULT_PARALLELISM,
        minimum=1,
        maximum=MAX_PARALLELISM,
    ),
    SpecField(
        "cvFolds",
        "integer",
        "Purged, embargoed walk-forward folds of the search part; a trial's value is their "
        "mean Spearman.",
        default=DEFAULT_FOLDS,
        minimum=1,
        maximum=MAX_FOLDS,
    ),
    SpecField(
        "embargo",
        "integer",
        "Rows kept out after the purge gap (the label horizon) at every boundary between "
        "rows a model learns from and rows it is judged on.",
        default=DEFAULT_EMBARGO,
        minimum=0,
        maximum=MAX_EMBARGO,
    ),
    SpecField(
        "promotion",
        "string",
        "When a new model version becomes *_latest: always; ifSignificant (both models' "
        "verdicts Significant); ifBetterThanLatest (mean test Spearman above the latest's). "
        "A version not promoted is kept as a version.",
        default=DEFAULT_PROMOTION,
        enum=PROMOTIONS,
    ),
    SpecField(
        "workers",
        "integer",
        "Trainer pods that share the search: one Optuna study per model in PostgreSQL, "
        "nTrials finished trials per model in all. More than 1 needs the operator's "
        "database to be PostgreSQL.",
        default=DEFAULT_WORKERS,
        minimum=1,
        maximum=MAX_WORKERS,
    ),
    SpecField(
        "warmStart",
        "string",
        "Enqueue the best trials of an earlier version's study as the first trials of this "
        "search (same search space only): none, latest, or a version name.",
        default=DEFAULT_WARM_START,
        pattern=WARM_START_PATTERN,
        pattern_words="none, latest or a model version such as 15m_20260101_120000",
    ),
    SpecField("image", "string", "Trainer image; empty means the operator's default."),
    SpecField(
        "resources",
        "object",
        "CPU and memory requests and limits of the trainer.",
        extra_schema={
            # Unknown keys are refused by kubectl's strict field validation (a
            # structural schema may not combine properties with additionalProperties).
            "properties": {"requests": _QUANTITIES, "limits": _QUANTITIES},
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.requests) || !has(self.limits) || self.requests.all(r, "
                    "!(r in self.limits) || quantity(string(self.requests[r]))"
                    ".compareTo(quantity(string(self.limits[r]))) <= 0)",
                    "message": "a request may be at most its limit",
                }
            ],
        },
    ),
    SpecField(
        "activeDeadlineSeconds",
        "integer",
        "Seconds before the run is stopped as failed.",
        default=DEFAULT_ACTIVE_DEADLINE_SECONDS,
        minimum=60,
        maximum=30 * 86400,
    ),
    SpecField(
        "backoffLimit",
        "integer",
        "Pod retries before the run fails (it resumes).",
        default=DEFAULT_BACKOFF_LIMIT,
        minimum=0,
        maximum=10,
    ),
    SpecField(
        "ttlSecondsAfterFinished",
        "integer",
        "Seconds a finished Job and its pods are kept.",
        default=DEFAULT_TTL_SECONDS_AFTER_FINISHED,
        minimum=0,
        maximum=30 * 86400,
    ),
)
FIELDS_BY_NAME = {f.name: f for f in SPEC_FIELDS}
