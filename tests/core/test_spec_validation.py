"""Bad TrainingJob input is refused before anything runs, naming the field and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tjcore.spec import SpecError, load_manifest, validate_manifest, validate_spec

ROOT = Path(__file__).resolve().parents[2]


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mltraining.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "t"},
        "spec": spec,
    }


def test_defaults_fill_a_minimal_spec() -> None:
    spec = validate_spec({"timeframe": "1h"})
    assert (spec.nTrials, spec.trainRatio, spec.cancel, spec.seed) == (30, 0.8, False, 42)
    assert spec.total_trials == 60


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"timeframe": "15m", "nTrials": 0}, "spec.nTrials: must be an integer from 1 to 10000"),
        ({"timeframe": "15m", "nTrials": -3}, "got -3"),
        ({"timeframe": "15m", "nTrials": "abc"}, "spec.nTrials: must be an integer"),
        ({"timeframe": "15m", "nTrials": 2.5}, "spec.nTrials: must be an integer"),
        ({"timeframe": "15m", "nTrials": True}, "spec.nTrials: must be an integer"),
        ({"timeframe": "15m", "trainRatio": 1.5}, "spec.trainRatio: must be a number from 0.5"),
        ({"timeframe": "15m", "trainRatio": 0.2}, "to 0.95, got 0.2"),
        ({"timeframe": "5m"}, "spec.timeframe: must be one of '15m', '1h', got '5m'"),
        ({"nTrials": 3}, "spec.timeframe: required"),
        ({"timeframe": "15m", "ntrials": 3}, "spec.ntrials: unknown field; known fields:"),
        (
            {"timeframe": "15m", "resources": {"limits": {"cpu": [1]}}},
            "spec.resources.limits.cpu: must be a quantity",
        ),
    ],
)
def test_bad_spec_is_refused_naming_the_field(spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as err:
        validate_manifest(manifest(**spec))
    assert expected in str(err.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as err:
        validate_spec({"nTrials": 0, "trainRatio": 2, "colour": "red"})
    message = str(err.value)
    for field in ("spec.timeframe", "spec.nTrials", "spec.trainRatio", "spec.colour"):
        assert field in message


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {
                "apiVersion": "v1",
                "kind": "TrainingJob",
                "metadata": {"name": "a"},
                "spec": {"timeframe": "1h"},
            },
            "apiVersion: must be 'mltraining.dev/v1alpha1'",
        ),
        (
            {
                "apiVersion": "mltraining.dev/v1alpha1",
                "kind": "Job",
                "metadata": {"name": "a"},
                "spec": {"timeframe": "1h"},
            },
            "kind: must be 'TrainingJob'",
        ),
        (
            {
                "apiVersion": "mltraining.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": "Bad_Name"},
                "spec": {"timeframe": "1h"},
            },
            "metadata.name",
        ),
        (
            {
                "apiVersion": "mltraining.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": "a" * 60},
                "spec": {"timeframe": "1h"},
            },
            "at most 52",
        ),
        (
            {
                "apiVersion": "mltraining.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": "job\n"},
                "spec": {"timeframe": "1h"},
            },
            "metadata.name",
        ),
        (
            {
                "apiVersion": "mltraining.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": "job", "namespace": "../../etc"},
                "spec": {"timeframe": "1h"},
            },
            "metadata.namespace",
        ),
        (
            {
                "apiVersion": "mltraining.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {"name": "job", "namespace": "n" * 64},
                "spec": {"timeframe": "1h"},
            },
            "metadata.namespace: at most 63 characters, got 64",
        ),
    ],
)
def test_bad_envelope_is_refused(doc: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError, match=expected):
        validate_manifest(doc)


def test_manifest_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match=r"nope\.yaml: no such file"):
        load_manifest(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: not valid YAML"):
        load_manifest(broken)
    two = tmp_path / "two.yaml"
    two.write_text(
        yaml.safe_dump(manifest(timeframe="1h"))
        + "---\n"
        + yaml.safe_dump(manifest(timeframe="1h"))
    )
    with pytest.raises(SpecError, match="exactly one TrainingJob document, found 2"):
        load_manifest(two)


@pytest.mark.parametrize("path", sorted((ROOT / "manifests" / "examples").glob("*.yaml")))
def test_every_example_manifest_is_valid(path: Path) -> None:
    loaded = load_manifest(path)
    assert loaded.namespace == "default"
    assert loaded.spec.timeframe in ("15m", "1h")


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"requests": {"cpu": "lots"}}, "spec.resources.requests.cpu: must be a quantity"),
        ({"limits": {"memory": "4 GB"}}, "spec.resources.limits.memory: must be a quantity"),
        ({"limits": {"memory": "4gb"}}, "got '4gb'"),
        ({"requests": {"cpu": "-1"}}, "spec.resources.requests.cpu: must be a quantity"),
        ({"requests": {"cpu": -2}}, "spec.resources.requests.cpu: must be a quantity"),
        ({"requests": {"cpu": ""}}, "spec.resources.requests.cpu: must be a quantity"),
        (
            {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}},
            "spec.resources.requests.cpu: 2 is more than its limit 1500m",
        ),
        (
            {"requests": {"memory": "2Gi"}, "limits": {"memory": "2G"}},
            "spec.resources.requests.memory: 2Gi is more than its limit 2G",
        ),
        ({"requests": {"cpu!": "1"}}, "spec.resources.requests.cpu!: not a resource name"),
    ],
)
def test_bad_resources_are_refused_with_a_clear_message(
    resources: dict[str, Any], expected: str
) -> None:
    with pytest.raises(SpecError) as err:
        validate_spec({"timeframe": "15m", "resources": resources})
    assert expected in str(err.value)


@pytest.mark.parametrize(
    "resources",
    [
        {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "4Gi"}},
        {"requests": {"cpu": "0.5", "memory": "1e9"}, "limits": {"memory": "1G"}},
        {"limits": {"cpu": "1.5", "memory": "512Mi", "ephemeral-storage": "10Gi"}},
        {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}},
        {"requests": {"cpu": "1"}, "limits": {"cpu": "1000m"}},
    ],
)
def test_good_resources_pass(resources: dict[str, Any]) -> None:
    assert validate_spec({"timeframe": "15m", "resources": resources}).resources == resources


def test_a_namespace_may_have_the_63_characters_kubernetes_allows() -> None:
    doc = {
        "apiVersion": "mltraining.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "job", "namespace": "n" * 63},
        "spec": {"timeframe": "1h"},
    }
    assert validate_manifest(doc).namespace == "n" * 63
