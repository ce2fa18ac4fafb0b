"""A finished run's verdicts reach the CR status, rounded, and its printer columns."""

from __future__ import annotations

from tjcore.crd import build_crd
from tjoperator.status import Observation, Phase, Verdict, build_status
from tjtrainer.progress import RunProgress, RunState

EVALUATION = {
    "level": 0.05,
    "LONG": {
        "verdict": "Significant",
        "test_spearman": 0.123456,
        "ci": [0.051234, 0.198765],
        "p_value": 0.0021234,
        "backtest": {"trades": 40, "net_return": 0.05},
    },
    "SHORT": {
        "verdict": "NotSignificant",
        "test_spearman": 0.01,
        "ci": [-0.05, 0.07],
        "p_value": 0.41,
        "backtest": {"trades": 35, "net_return": -0.02},
    },
}


def _status(evaluation: dict | None) -> dict:
    progress = RunProgress(
        timeframe="15m",
        n_trials=2,
        total_trials=4,
        state=RunState.COMPLETED,
        completed_trials=4,
        model_version="15m_x",
        evaluation=evaluation,
    )
    verdict = Verdict(Phase.SUCCEEDED, "TrainingCompleted", "models 15m_x written")
    return build_status(
        Observation(progress, {"succeeded": 1}), verdict, total_trials=4, previous={}, generation=1
    )


def test_the_status_carries_each_models_verdict() -> None:
    status = _status(EVALUATION)
    assert status["verdictLong"] == "Significant" and status["verdictShort"] == "NotSignificant"
    assert status["significanceLevel"] == 0.05
    assert status["testPValueLong"] == 0.0021 and status["testPValueShort"] == 0.41
    assert status["testCiLong"] == [0.0512, 0.1988] and status["testCiShort"] == [-0.05, 0.07]


def test_a_run_without_a_verdict_has_no_verdict_fields() -> None:
    status = _status(None)
    assert "verdictLong" not in status and "significanceLevel" not in status


def test_the_printer_columns_show_the_verdicts_and_the_schema_knows_them() -> None:
    version = build_crd()["spec"]["versions"][0]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Verdict LONG"]["jsonPath"] == ".status.verdictLong"
    assert columns["Verdict SHORT"]["jsonPath"] == ".status.verdictShort"
    assert "priority" not in columns["Verdict LONG"]
    assert columns["Level"]["jsonPath"] == ".status.significanceLevel"
    status_schema = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for key in _status(EVALUATION):
        assert key in status_schema, key  # nothing the API server would prune


def test_the_trainer_pod_is_asked_the_folds_of_the_spec() -> None:
    from tjcore.spec import validate_spec
    from tjoperator.job_builder import build_trainingjob_for_row, trainer_args
    from tjtrainer.cli import build_parser

    spec = validate_spec({"timeframe": "1h", "cvFolds": 5, "embargo": 0})
    args = build_parser().parse_args(trainer_args(spec, "/shared/runs/ns/x", "/shared"))
    assert (args.cv_folds, args.embargo, args.timeframe) == (5, 0, "1h")
    body = build_trainingjob_for_row(
        row_id=1,
        name="row-1-abc",
        namespace="ns",
        timeframe="1h",
        n_trials=3,
        train_ratio=0.8,
        seed=1,
        parallelism=1,
        cv_folds=5,
        embargo=0,
    )
    assert validate_spec(body["spec"]) == validate_spec(
        {"timeframe": "1h", "nTrials": 3, "seed": 1, "parallelism": 1, "cvFolds": 5, "embargo": 0}
    )


def test_a_version_not_promoted_says_why_in_the_status() -> None:
    from tjoperator.status import judge

    progress = RunProgress(
        timeframe="15m",
        n_trials=2,
        total_trials=4,
        state=RunState.COMPLETED,
        model_version="15m_y",
        promoted=False,
        promotion_reason="not promoted (policy ifSignificant): LONG is NotSignificant (p = 0.4)",
    )
    verdict = judge(Observation(progress, {"succeeded": 1}))
    assert verdict.phase == Phase.SUCCEEDED
    assert verdict.message == (
        "models 15m_y written; not promoted (policy ifSignificant): LONG is NotSignificant "
        "(p = 0.4)"
    )
    status = build_status(
        Observation(progress, {"succeeded": 1}), verdict, total_trials=4, previous={}, generation=1
    )
    assert status["promoted"] is False and status["promotionReason"].startswith("not promoted")
