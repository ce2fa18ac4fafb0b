"""The walk-forward spec fields reach the trainer and the verdicts reach the row, `tjctl
show` and `tjctl jobs`, as a user runs them: real processes, real training, real SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.local_runs_lib import manifest, shared_folder, store_of, tjctl

WORDS = ("Significant", "NotSignificant")


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_folder(tmp_path_factory)


def test_folds_of_the_spec_train_and_the_verdicts_fill_the_row(
    shared: Path, tmp_path: Path
) -> None:
    result = tjctl(shared, "run", "-f", str(manifest(tmp_path, "folds", cvFolds=2, embargo=8)))
    assert result.returncode == 0, result.stderr
    for model in ("LONG", "SHORT"):
        assert any(line.strip().startswith(f"{model}: ") for line in result.stdout.splitlines())
    assert "at 0.05 (test Spearman" in result.stdout and "backtest" in result.stdout
    row = store_of(shared).get_by_name("default", "folds")
    assert row is not None and row.status == "completed"
    assert (row.cv_folds, row.embargo) == (2, 8)
    assert all(len(t["fold_scores"]) <= 2 for t in row.trial_log)
    assert row.significance_level == 0.05
    for side, test in (("long", row.test_score_long), ("short", row.test_score_short)):
        assert getattr(row, f"verdict_{side}") in WORDS
        assert 0 < getattr(row, f"test_p_{side}") <= 1
        assert test is not None
        assert getattr(row, f"test_ci_low_{side}") <= test <= getattr(row, f"test_ci_high_{side}")
    assert row.evaluation is not None and row.evaluation["LONG"]["verdict"] == row.verdict_long
    assert "sharpe" in row.evaluation["SHORT"]["backtest"]
    metadata = json.loads((shared / "models" / row.model_version / "metadata.json").read_text())
    assert metadata["splits"]["cv_folds"] == 2 and metadata["splits"]["embargo"] == 8

    shown = tjctl(shared, "show", str(row.id))
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["verdict_long"] == row.verdict_long and data["test_p_short"] == row.test_p_short
    assert data["evaluation"]["level"] == 0.05
    listing = tjctl(shared, "jobs")
    header, *lines = listing.stdout.splitlines()
    assert "VERDICT LONG" in header and "VERDICT SHORT" in header
    assert any(row.verdict_long in line and "folds" in line for line in lines)


def test_folds_that_do_not_fit_the_data_fail_before_any_trial(shared: Path, tmp_path: Path) -> None:
    result = tjctl(shared, "run", "-f", str(manifest(tmp_path, "too-many", cvFolds=10)))
    assert result.returncode == 1
    assert "the walk-forward folds do not fit the data" in result.stderr
    assert "cvFolds 10" in result.stderr and "use cvFolds <= " in result.stderr
    row = store_of(shared).get_by_name("default", "too-many")
    assert row is not None and row.status == "failed" and row.trial_log == []
    assert row.error is not None and "cvFolds <= " in row.error


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"cvFolds": 0}, "spec.cvFolds: must be an integer from 1 to 10, got 0"),
        ({"embargo": -1}, "spec.embargo: must be an integer from 0 to 10000, got -1"),
    ],
)
def test_out_of_range_folds_are_refused_like_the_crd_does(
    shared: Path, tmp_path: Path, spec: dict[str, object], words: str
) -> None:
    result = tjctl(shared, "run", "-f", str(manifest(tmp_path, "bad-folds", **spec)))
    assert result.returncode == 1 and words in result.stderr


def test_submit_and_the_worker_carry_the_folds(shared: Path) -> None:
    queued = tjctl(shared, "submit", "--timeframe", "15m", "--n-trials", "1", "--cv-folds", "1")
    assert queued.returncode == 0, queued.stderr
    job_id = int(queued.stdout.split()[1])
    store = store_of(shared)
    row = store.get(job_id)
    assert row is not None and (row.cv_folds, row.embargo) == (1, 16)
    worked = tjctl(shared, "worker", "--once", "--no-progress")
    assert worked.returncode == 0, worked.stderr
    row = store.get(job_id)
    assert row is not None and row.status == "completed", row
    assert all(len(t["fold_scores"]) == 1 for t in row.trial_log if t["fold_scores"])
    assert row.verdict_short in WORDS
    bad = tjctl(shared, "submit", "--timeframe", "15m", "--cv-folds", "11")
    assert bad.returncode == 1 and "--cv-folds: must be an integer from 1 to 10" in bad.stderr


def test_the_promotion_policy_reaches_the_trainer_and_its_decision_the_row(
    shared: Path, tmp_path: Path
) -> None:
    result = tjctl(
        shared, "run", "-f", str(manifest(tmp_path, "picky", promotion="ifBetterThanLatest"))
    )
    assert result.returncode == 0, result.stderr
    row = store_of(shared).get_by_name("default", "picky")
    assert row is not None and row.promotion == "ifBetterThanLatest"
    assert row.promoted is not None and row.promotion_reason is not None
    assert row.promotion_reason.split()[0] in ("promoted", "not")
    assert row.promotion_reason in result.stdout
    latest = json.loads((shared / "models" / "metadata_15m_latest.json").read_text())
    assert (latest["version"] == row.model_version) is row.promoted
    bad = tjctl(shared, "run", "-f", str(manifest(tmp_path, "bad-policy", promotion="never")))
    assert bad.returncode == 1
    assert "spec.promotion: must be one of 'always', 'ifSignificant', 'ifBetterThanLatest'" in (
        bad.stderr
    )
