"""spec.promotion: a version that fails its policy is kept as a version, *_latest is not
switched, and the run says why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from trainer_testlib import make_config, random_walk_dataset

from tjtrainer.errors import TrainingError
from tjtrainer.train import run_training


def _latest_version(root: Path) -> str | None:
    path = root / "models" / "metadata_15m_latest.json"
    return json.loads(path.read_text())["version"] if path.exists() else None


def test_if_significant_keeps_a_random_walks_models_out_of_latest(tmp_path: Path) -> None:
    root = random_walk_dataset(tmp_path / "shared", planted=False)
    progress = run_training(make_config(root, "rw", promotion="ifSignificant"))
    assert progress.state == "completed" and progress.promoted is False
    assert progress.promotion_reason is not None
    assert progress.promotion_reason.startswith("not promoted (policy ifSignificant): LONG is")
    assert "SHORT is NotSignificant" in progress.promotion_reason
    version = root / "models" / str(progress.model_version)
    metadata = json.loads((version / "metadata.json").read_text())
    assert metadata["promotion"] == {
        "policy": "ifSignificant",
        "promoted": False,
        "reason": progress.promotion_reason,
    }
    assert (version / "model_long.ubj").exists()  # kept as a version
    assert _latest_version(root) is None  # but not the latest
    assert not list((root / "models").glob("*_latest.*"))


def test_if_significant_promotes_planted_skill(tmp_path: Path) -> None:
    root = random_walk_dataset(tmp_path / "shared", planted=True)
    progress = run_training(make_config(root, "planted", promotion="ifSignificant"))
    assert progress.promoted is True
    assert progress.promotion_reason == (
        "promoted (policy ifSignificant): both models are Significant"
    )
    assert _latest_version(root) == progress.model_version


def test_if_better_than_latest_keeps_a_worse_version_out(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    random_walk_dataset(root, planted=True)
    first = run_training(make_config(root, "first"))  # always: becomes the latest
    assert first.promoted is True and _latest_version(root) == first.model_version
    shutil.rmtree(root / "datasets")
    random_walk_dataset(root, planted=False)
    second = run_training(make_config(root, "second", promotion="ifBetterThanLatest"))
    assert second.promoted is False and second.model_version != first.model_version
    reason = second.promotion_reason or ""
    assert reason.startswith("not promoted (policy ifBetterThanLatest): mean test Spearman")
    assert f"of the latest version {first.model_version}" in reason
    assert _latest_version(root) == first.model_version
    assert (root / "models" / str(second.model_version) / "metadata.json").exists()


def test_an_unknown_policy_is_refused_before_training(tmp_path: Path) -> None:
    root = random_walk_dataset(tmp_path / "shared", planted=False)
    with pytest.raises(TrainingError, match="promotion must be one of always, ifSignificant"):
        run_training(make_config(root, "bad", promotion="sometimes"))
