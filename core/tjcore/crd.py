"""The TrainingJob CustomResourceDefinition, built from :data:`tjcontract.spec.SPEC_FIELDS`.

``tjctl crd`` prints it; ``manifests/crd.yaml`` and ``helm/trainingjob-operator/crds/``
hold the same text, and a test keeps them equal.
"""

from __future__ import annotations

from typing import Any

from tjcontract.names import GROUP, KIND, MAX_NAME_LENGTH, PLURAL, SHORT_NAME, VERSION
from tjcontract.spec import SPEC_FIELDS, SpecField
from tjcontract.words import Phase


def _field_schema(spec_field: SpecField) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": spec_field.type, "description": spec_field.description}
    if spec_field.enum:
        schema["enum"] = list(spec_field.enum)
    if spec_field.pattern:
        schema["pattern"] = f"^({spec_field.pattern})$"
    if spec_field.minimum is not None:
        schema["minimum"] = spec_field.minimum
    if spec_field.maximum is not None:
        schema["maximum"] = spec_field.maximum
    if spec_field.default is not None:
        schema["default"] = spec_field.default
    schema.update(spec_field.extra_schema)
    return schema


def _immutable_spec_rule() -> dict[str, str]:
    """A transition rule: no field but the mutable ones (``cancel``) may be set, changed
    or removed after create; the trainer already runs with them, an edit would be
    ignored without a word."""
    fixed = [f.name for f in SPEC_FIELDS if not f.mutable]
    mutable = ", ".join(f"spec.{f.name}" for f in SPEC_FIELDS if f.mutable)
    rule = " && ".join(
        f"has(self.{name}) == has(oldSelf.{name}) && (!has(self.{name}) || "
        f"self.{name} == oldSelf.{name})"
        for name in fixed
    )
    return {
        "rule": rule,
        "message": f"spec is immutable once created, except {mutable}: the run already "
        "uses it; to change it, delete the TrainingJob and create it again",
    }


def _status_schema() -> dict[str, Any]:
    number = {"type": "number", "nullable": True}
    string = {"type": "string", "nullable": True}
    interval = {
        "type": "array",
        "nullable": True,
        "items": {"type": "number"},
        "maxItems": 2,
        "description": "95 % block-bootstrap interval of the test Spearman.",
    }
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer"},
        },
    }
    trial = {
        "type": "object",
        "properties": {
            "trial": {"type": "integer"},
            "model": {"type": "string"},
            "state": {"type": "string"},
            "spearman": number,
            "bestSoFar": number,
            "durationSeconds": {"type": "number"},
        },
    }
    return {
        "type": "object",
        "description": "Observed state, written by the operator only.",
        "properties": {
            "phase": {"type": "string", "enum": [p.value for p in Phase]},
            "progress": {"type": "integer", "description": "Finished trials in percent."},
            "trial": {"type": "string", "description": "Finished trials as n/N."},
            "currentTrial": {"type": "integer"},
            "totalTrials": {"type": "integer"},
            "etaSeconds": {
                "type": "integer",
                "nullable": True,
                "description": "Estimated seconds left of the search while Running: "
                "ceil(trials left / parallelism) x the median duration of the latest "
                "finished trials, as of the last progress update (tjoperator.eta).",
            },
            "eta": {
                "type": "string",
                "nullable": True,
                "description": "etaSeconds as a short duration (3m20s).",
            },
            "etaAt": {
                "type": "string",
                "nullable": True,
                "format": "date-time",
                "description": "The projected end of the search (RFC 3339).",
            },
            "currentModel": string,
            "bestScoreLong": number,
            "bestScoreShort": number,
            "testScoreLong": number,
            "testScoreShort": number,
            "verdictLong": {
                "type": "string",
                "nullable": True,
                "description": "Significant or NotSignificant: the LONG model's test "
                "Spearman against a placebo, at significanceLevel.",
            },
            "verdictShort": {
                "type": "string",
                "nullable": True,
                "description": "The same for the SHORT model.",
            },
            "significanceLevel": number,
            "testPValueLong": number,
            "testPValueShort": number,
            "testCiLong": interval,
            "testCiShort": interval,
            "promoted": {
                "type": "boolean",
                "nullable": True,
                "description": "Whether the version became *_latest under spec.promotion.",
            },
            "promotionReason": string,
            "modelVersion": string,
            "jobName": string,
            "rowId": {"type": "integer", "nullable": True},
            "message": string,
            "startedAt": string,
            "completedAt": string,
            "observedGeneration": {"type": "integer"},
            "recentTrials": {"type": "array", "items": trial},
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
        # kopf keeps its own bookkeeping under status.kopf.
        "x-kubernetes-preserve-unknown-fields": True,
    }


def _printer_columns() -> list[dict[str, Any]]:
    def column(name: str, path: str, kind: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "type": kind, "jsonPath": path, **extra}

    return [
        column("Phase", ".status.phase", "string"),
        column("Progress", ".status.progress", "integer", description="percent of trials"),
        column("Trial", ".status.trial", "string"),
        column("ETA", ".status.eta", "string", description="estimated time left"),
        column("Best LONG", ".status.bestScoreLong", "number", format="float"),
        column("Best SHORT", ".status.bestScoreShort", "number", format="float"),
        column("Verdict LONG", ".status.verdictLong", "string"),
        column("Verdict SHORT", ".status.verdictShort", "string"),
        column("Version", ".status.modelVersion", "string"),
        column("Timeframe", ".spec.timeframe", "string", priority=1),
        column("Job", ".status.jobName", "string", priority=1),
        column("Test LONG", ".status.testScoreLong", "number", format="float", priority=1),
        column("Test SHORT", ".status.testScoreShort", "number", format="float", priority=1),
        column("Level", ".status.significanceLevel", "number", format="float", priority=1),
        column("Promoted", ".status.promoted", "boolean", priority=1),
        column("Age", ".metadata.creationTimestamp", "date"),
    ]


def build_crd() -> dict[str, Any]:
    """The CRD as a dict ready for YAML."""
    spec_schema: dict[str, Any] = {
        "type": "object",
        "description": "What to train.",
        "required": [f.name for f in SPEC_FIELDS if f.required],
        "properties": {f.name: _field_schema(f) for f in SPEC_FIELDS},
        "x-kubernetes-validations": [_immutable_spec_rule()],
    }
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": _status_schema(),
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters "
                "(the trainer Job's name adds a suffix)",
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["mltraining"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                }
            ],
        },
    }
