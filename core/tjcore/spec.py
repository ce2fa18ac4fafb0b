"""The TrainingJob spec: its fields, their limits, and validation of a manifest.

One table of fields (:data:`SPEC_FIELDS`) feeds both the Python validation used by
``tjctl run`` and the CRD's OpenAPI schema (:mod:`tjcore.crd`), so the command line and
``kubectl apply`` accept and refuse the same manifests.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from tjcore import strict_yaml
from tjtrainer.config import DEFAULT_PARALLELISM, MAX_PARALLELISM, MAX_WORKERS, PROMOTIONS
from tjtrainer.paths import LABEL, MAX_LABEL_LENGTH
from tjtrainer.splits import DEFAULT_EMBARGO, DEFAULT_FOLDS, MAX_EMBARGO, MAX_FOLDS
from tjtrainer.versions import VERSION_NAME

GROUP = "mltraining.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingJob"
PLURAL = "trainingjobs"
SHORT_NAME = "tj"
# spec.warmStart: none, latest, or a version folder's name (tjtrainer.versions.VERSION_NAME).
WARM_START_PATTERN = f"none|latest|{VERSION_NAME.pattern}"
# The Job is named "<name>-train": keep room for the suffix in Kubernetes' 63 characters.
MAX_NAME_LENGTH = 52
# A namespace is a DNS-1123 label; nothing derived from it has a length limit of its own
# (it is a folder of runs/ and a label value, both allowed 63).
MAX_NAMESPACE_LENGTH = MAX_LABEL_LENGTH
# A DNS-1123 label (the whole string: a trailing newline is no part of a name).
NAME_PATTERN = LABEL


class SpecError(ValueError):
    """A manifest that cannot run; the message names every wrong field and the fix."""


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
        if self.minimum is not None and self.maximum is not None:
            return f"{kind} from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
        if self.minimum is not None:
            return f"{kind} of at least {_fmt(self.minimum)}"
        return kind


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


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
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
}
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


def parse_quantity(value: object) -> Decimal | None:
    """The amount a Kubernetes quantity stands for, or ``None`` if ``value`` is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value) if value >= 0 else None
    if not isinstance(value, str) or not QUANTITY.fullmatch(value):
        return None
    number = re.match(r"[0-9.]+", value)
    assert number is not None
    digits, suffix = number.group(), value[number.end() :]
    try:
        if suffix[:1] in ("e", "E") and len(suffix) > 1:
            return Decimal(digits) * Decimal(10) ** Decimal(suffix[1:])
        return Decimal(digits) * _SUFFIXES[suffix]
    except ArithmeticError:  # an exponent beyond any machine
        return None


SPEC_FIELDS: tuple[SpecField, ...] = (
    SpecField(
        "timeframe",
        "string",
        "Candle timeframe of the dataset and models.",
        enum=("15m", "1h"),
        required=True,
    ),
    SpecField(
        "nTrials",
        "integer",
        "Optuna trials per model (LONG and SHORT each).",
        default=30,
        minimum=1,
        maximum=10000,
    ),
    SpecField(
        "trainRatio",
        "number",
        "Share of rows used for the search; the rest is the held-out test tail.",
        default=0.8,
        minimum=0.5,
        maximum=0.95,
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
        default=42,
        minimum=0,
        maximum=2**31 - 1,
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
        default="always",
        enum=PROMOTIONS,
    ),
    SpecField(
        "workers",
        "integer",
        "Trainer pods that share the search: one Optuna study per model in PostgreSQL, "
        "nTrials finished trials per model in all. More than 1 needs the operator's "
        "database to be PostgreSQL.",
        default=1,
        minimum=1,
        maximum=MAX_WORKERS,
    ),
    SpecField(
        "warmStart",
        "string",
        "Enqueue the best trials of an earlier version's study as the first trials of this "
        "search (same search space only): none, latest, or a version name.",
        default="none",
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
        default=86400,
        minimum=60,
        maximum=30 * 86400,
    ),
    SpecField(
        "backoffLimit",
        "integer",
        "Pod retries before the run fails (it resumes).",
        default=2,
        minimum=0,
        maximum=10,
    ),
    SpecField(
        "ttlSecondsAfterFinished",
        "integer",
        "Seconds a finished Job and its pods are kept.",
        default=3600,
        minimum=0,
        maximum=30 * 86400,
    ),
)
FIELDS_BY_NAME = {f.name: f for f in SPEC_FIELDS}


@dataclass(frozen=True)
class TrainingJobSpec:
    """A validated TrainingJob spec with defaults filled in (field names in the CRD's
    camelCase)."""

    timeframe: str
    nTrials: int
    trainRatio: float
    cancel: bool = False
    suspend: bool = False
    seed: int = 42
    parallelism: int = DEFAULT_PARALLELISM
    cvFolds: int = DEFAULT_FOLDS
    embargo: int = DEFAULT_EMBARGO
    promotion: str = "always"
    workers: int = 1
    warmStart: str = "none"
    image: str | None = None
    resources: dict[str, Any] | None = None
    activeDeadlineSeconds: int = 86400
    backoffLimit: int = 2
    ttlSecondsAfterFinished: int = 3600

    @property
    def total_trials(self) -> int:
        return 2 * self.nTrials


@dataclass(frozen=True)
class TrainingJobManifest:
    """A whole validated manifest: where it lives and what it asks."""

    name: str
    namespace: str
    spec: TrainingJobSpec


def _check_value(spec_field: SpecField, value: Any) -> str | None:
    """The problem with ``value`` for ``spec_field``, or ``None`` if it is fine."""
    path = f"spec.{spec_field.name}"
    if spec_field.type == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec_field.type == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
    elif spec_field.type == "boolean":
        ok = isinstance(value, bool)
    elif spec_field.type == "string":
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, dict)
    if not ok:
        return f"{path}: must be {spec_field.allowed()}, got {value!r}"
    if spec_field.enum and value not in spec_field.enum:
        return f"{path}: must be {spec_field.allowed()}, got {value!r}"
    if spec_field.pattern and not re.fullmatch(spec_field.pattern, value):
        return f"{path}: must be {spec_field.allowed()}, got {value!r}"
    too_low = spec_field.minimum is not None and value < spec_field.minimum
    too_high = spec_field.maximum is not None and value > spec_field.maximum
    if too_low or too_high:
        return f"{path}: must be {spec_field.allowed()}, got {value!r}"
    if spec_field.name == "resources":
        return _check_resources(value)
    return None


def _check_resources(value: dict[str, Any]) -> str | None:
    amounts: dict[str, dict[str, Decimal]] = {}
    for key, quantities in value.items():
        if key not in ("requests", "limits"):
            return f"spec.resources.{key}: unknown field; allowed: requests, limits"
        if not isinstance(quantities, dict):
            return f"spec.resources.{key}: must be a map such as {{cpu: '2', memory: 4Gi}}"
        if len(quantities) > MAX_RESOURCES:
            return f"spec.resources.{key}: at most {MAX_RESOURCES} resources"
        amounts[key] = {}
        for resource, amount in quantities.items():
            where = f"spec.resources.{key}.{resource}"
            if not isinstance(resource, str) or not RESOURCE_NAME.fullmatch(resource):
                return f"{where}: not a resource name (such as cpu, memory or nvidia.com/gpu)"
            parsed = parse_quantity(amount)
            if parsed is None or len(str(amount)) > MAX_QUANTITY_LENGTH:
                return (
                    f"{where}: must be a quantity such as 2, '500m', '1.5' or 4Gi "
                    f"(a number with an optional suffix m, k, M, G, Ki, Mi, Gi, ...), "
                    f"got {amount!r}"
                )
            amounts[key][resource] = parsed
    for resource, request in amounts.get("requests", {}).items():
        limit = amounts.get("limits", {}).get(resource)
        if limit is not None and request > limit:
            asked, most = value["requests"][resource], value["limits"][resource]
            return (
                f"spec.resources.requests.{resource}: {asked} is more than its limit {most}; "
                "a request may be at most its limit"
            )
    return None


def validate_spec(raw: Any) -> TrainingJobSpec:
    """Validate a ``spec`` mapping and fill in defaults.

    Raises:
        SpecError: naming every wrong, missing or unknown field and the allowed values.
    """
    if not isinstance(raw, dict):
        raise SpecError(f"spec: must be a mapping of fields, got {raw!r}")
    problems: list[str] = []
    for key in raw:
        if key not in FIELDS_BY_NAME:
            known = ", ".join(FIELDS_BY_NAME)
            problems.append(f"spec.{key}: unknown field; known fields: {known}")
    values: dict[str, Any] = {}
    for spec_field in SPEC_FIELDS:
        if spec_field.name not in raw or raw[spec_field.name] is None:
            if spec_field.required:
                problems.append(
                    f"spec.{spec_field.name}: required; set it to {spec_field.allowed()}"
                )
            elif spec_field.default is not None:
                values[spec_field.name] = spec_field.default
            continue
        problem = _check_value(spec_field, raw[spec_field.name])
        if problem:
            problems.append(problem)
        else:
            values[spec_field.name] = raw[spec_field.name]
    if problems:
        raise SpecError("invalid TrainingJob:\n  " + "\n  ".join(problems))
    values["trainRatio"] = float(values["trainRatio"])
    return TrainingJobSpec(**values)


def validate_name(
    name: Any, *, where: str = "metadata.name", max_length: int = MAX_NAME_LENGTH
) -> str:
    """A TrainingJob name: a DNS-1123 label short enough for the Job's suffix (a
    namespace: ``max_length=MAX_NAMESPACE_LENGTH``)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SpecError(
            f"{where}: must be lower-case letters, digits and '-', starting and ending "
            f"with a letter or digit, got {name!r}"
        )
    if len(name) > max_length:
        raise SpecError(f"{where}: at most {max_length} characters, got {len(name)}")
    return name


def validate_manifest(doc: Any, *, default_namespace: str = "default") -> TrainingJobManifest:
    """Validate a whole TrainingJob document as read from YAML."""
    if not isinstance(doc, dict):
        raise SpecError("the manifest must be a YAML mapping with apiVersion, kind, metadata, spec")
    problems = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: must be {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        problems.append(f"kind: must be {KIND!r}, got {doc.get('kind')!r}")
    for key in doc:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            problems.append(f"{key}: unknown top-level field")
    if problems:
        raise SpecError("invalid TrainingJob:\n  " + "\n  ".join(problems))
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise SpecError("metadata: must be a mapping with at least a name")
    name = validate_name(metadata.get("name"))
    namespace = metadata.get("namespace") or default_namespace
    validate_name(namespace, where="metadata.namespace", max_length=MAX_NAMESPACE_LENGTH)
    return TrainingJobManifest(name=name, namespace=namespace, spec=validate_spec(doc.get("spec")))


def load_manifest(path: Path, *, default_namespace: str = "default") -> TrainingJobManifest:
    """Read and validate a TrainingJob manifest file (exactly one document)."""
    if path.is_dir():
        raise SpecError(f"{path}: is a folder; -f takes one manifest file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise SpecError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
            "save the manifest as UTF-8"
        ) from None
    except OSError as err:
        raise SpecError(f"{path}: cannot read it ({err.strerror or err})") from None
    try:
        docs = [d for d in strict_yaml.load_all(text) if d is not None]
    except strict_yaml.DuplicateKeyError as err:
        raise SpecError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    if len(docs) != 1:
        raise SpecError(f"{path}: expected exactly one TrainingJob document, found {len(docs)}")
    try:
        return validate_manifest(docs[0], default_namespace=default_namespace)
    except SpecError as err:
        raise SpecError(f"{path}: {err}") from None
