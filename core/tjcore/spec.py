"""Validation of a TrainingJob manifest against the contract's field table.

One table of fields (:data:`tjcontract.spec.SPEC_FIELDS`) feeds both the Python validation
here, used by ``tjctl run``, the UI and the operator, and the CRD's OpenAPI schema
(:mod:`tjcore.crd`), so the command line and ``kubectl apply`` accept and refuse the same
manifests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from tjcontract.names import API_VERSION, KIND, LABEL, MAX_NAME_LENGTH, MAX_NAMESPACE_LENGTH
from tjcontract.spec import (
    DEFAULT_ACTIVE_DEADLINE_SECONDS,
    DEFAULT_BACKOFF_LIMIT,
    DEFAULT_EMBARGO,
    DEFAULT_FOLDS,
    DEFAULT_PARALLELISM,
    DEFAULT_PROMOTION,
    DEFAULT_SEED,
    DEFAULT_TTL_SECONDS_AFTER_FINISHED,
    DEFAULT_WARM_START,
    DEFAULT_WORKERS,
    FIELDS_BY_NAME,
    MAX_QUANTITY_LENGTH,
    MAX_RESOURCES,
    QUANTITY,
    RESOURCE_NAME,
    SPEC_FIELDS,
    SpecField,
    total_trials,
)
from tjcore import strict_yaml

# A DNS-1123 label (the whole string: a trailing newline is no part of a name).
NAME_PATTERN = LABEL


class SpecError(ValueError):
    """A manifest that cannot run; the message names every wrong field and the fix.

    Raised for several fields at once, it keeps them as ``problems`` (``(where, what)``,
    such as ``("spec.nTrials", "must be ...")``) so that each front end can name them as
    its user typed them (:meth:`describe`: flags for ``tjctl submit``, the form's labels
    for the UI).
    """

    def __init__(self, message: str = "", *, problems: Sequence[tuple[str, str]] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(message or self.describe())

    def describe(
        self, headline: str = "invalid TrainingJob", names: Mapping[str, str] | None = None
    ) -> str:
        """The problems under ``headline``, each field named by ``names`` where it has one
        (by its spec name: ``{"nTrials": "--n-trials"}``)."""
        if not self.problems:
            return str(self)
        names = names or {}
        lines = [
            f"{names.get(where.removeprefix('spec.'), where)}: {what}"
            for where, what in self.problems
        ]
        return f"{headline}:\n  " + "\n  ".join(lines)


def _invalid(problems: list[str]) -> SpecError:
    """A :class:`SpecError` of several ``"where: what"`` problems."""
    return SpecError(problems=[problem.partition(": ")[::2] for problem in problems])


_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
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


@dataclass(frozen=True)
class TrainingJobSpec:
    """A validated TrainingJob spec with defaults filled in (field names in the CRD's
    camelCase)."""

    timeframe: str
    nTrials: int
    trainRatio: float
    cancel: bool = False
    suspend: bool = False
    seed: int = DEFAULT_SEED
    parallelism: int = DEFAULT_PARALLELISM
    cvFolds: int = DEFAULT_FOLDS
    embargo: int = DEFAULT_EMBARGO
    promotion: str = DEFAULT_PROMOTION
    workers: int = DEFAULT_WORKERS
    warmStart: str = DEFAULT_WARM_START
    image: str | None = None
    resources: dict[str, Any] | None = None
    activeDeadlineSeconds: int = DEFAULT_ACTIVE_DEADLINE_SECONDS
    backoffLimit: int = DEFAULT_BACKOFF_LIMIT
    ttlSecondsAfterFinished: int = DEFAULT_TTL_SECONDS_AFTER_FINISHED

    @property
    def total_trials(self) -> int:
        return total_trials(self.nTrials)


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
        raise _invalid(problems)
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
        raise _invalid(problems)
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
