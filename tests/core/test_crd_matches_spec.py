"""The CRD files shipped in the repository are the ones the spec table builds."""

from __future__ import annotations

from pathlib import Path

import yaml

from tjcontract.spec import SPEC_FIELDS
from tjcore.crd import build_crd

ROOT = Path(__file__).resolve().parents[2]


def test_manifests_crd_is_generated_from_the_spec_table() -> None:
    shipped = yaml.safe_load((ROOT / "manifests" / "crd.yaml").read_text())
    assert shipped == build_crd(), "regenerate with: tjctl crd > manifests/crd.yaml"


def test_helm_chart_crd_is_the_same_file() -> None:
    charts = list((ROOT / "helm").glob("*/crds/*.yaml"))
    for chart_crd in charts:
        assert yaml.safe_load(chart_crd.read_text()) == build_crd(), chart_crd


def test_schema_limits_follow_the_spec_table() -> None:
    version = build_crd()["spec"]["versions"][0]
    props = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert set(props) == {f.name for f in SPEC_FIELDS}
    assert props["nTrials"]["minimum"] == 1 and props["nTrials"]["maximum"] == 10000
    assert props["trainRatio"]["minimum"] == 0.5 and props["trainRatio"]["maximum"] == 0.95
    assert props["timeframe"]["enum"] == ["15m", "1h"]
    columns = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
    assert columns == [
        "Phase",
        "Progress",
        "Trial",
        "ETA",
        "Best LONG",
        "Best SHORT",
        "Verdict LONG",
        "Verdict SHORT",
        "Version",
        "Age",
    ]
    assert props["cvFolds"] == {
        "type": "integer",
        "description": props["cvFolds"]["description"],
        "minimum": 1,
        "maximum": 10,
        "default": 3,
    }
    assert props["embargo"]["minimum"] == 0 and props["embargo"]["default"] == 16
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for key in ("verdictLong", "verdictShort", "significanceLevel", "testPValueLong"):
        assert key in status
    assert status["testCiLong"]["items"] == {"type": "number"}
