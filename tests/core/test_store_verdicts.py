"""Schema versions 5 and 6: the folds and promotion policy of a spec, each model's verdict
and the promotion decision, as table columns; a version-4 table gains them in place. On
SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from sqlalchemy import inspect, text

from tjcore.schema import SCHEMA_VERSION
from tjcore.spec import validate_spec
from tjcore.store import JobStore, progress_columns
from tjtrainer.progress import RunProgress, RunState

V5_COLUMNS = (
    "cv_folds",
    "embargo",
    "verdict_long",
    "verdict_short",
    "significance_level",
    "test_p_long",
    "test_p_short",
    "test_ci_low_long",
    "test_ci_high_long",
    "test_ci_low_short",
    "test_ci_high_short",
    "evaluation",
)
V6_COLUMNS = ("promotion", "promoted", "promotion_reason")
EVALUATION = {
    "level": 0.05,
    "LONG": {"verdict": "Significant", "test_spearman": 0.2, "ci": [0.1, 0.3], "p_value": 0.002},
    "SHORT": {"verdict": "NotSignificant", "test_spearman": 0.0, "ci": [-0.1, 0.1], "p_value": 0.5},
}


def test_progress_with_a_verdict_fills_the_verdict_columns(any_store: JobStore) -> None:
    store = any_store
    job_id = store.submit_spec(
        validate_spec({"timeframe": "15m", "cvFolds": 4, "embargo": 0}), source="test"
    )
    row = store.get(job_id)
    assert row is not None and (row.cv_folds, row.embargo) == (4, 0)
    assert row.verdict_long is None and row.evaluation is None
    progress = RunProgress(
        timeframe="15m", n_trials=1, total_trials=2, state=RunState.COMPLETED, evaluation=EVALUATION
    )
    columns = progress_columns(progress)
    assert columns["verdict_long"] == "Significant" and columns["test_ci_high_short"] == 0.1
    store.apply_progress(job_id, progress)
    row = store.get(job_id)
    assert row is not None
    assert (row.verdict_long, row.verdict_short) == ("Significant", "NotSignificant")
    assert (row.test_p_long, row.test_p_short, row.significance_level) == (0.002, 0.5, 0.05)
    assert (row.test_ci_low_long, row.test_ci_high_long) == (0.1, 0.3)
    assert row.evaluation == EVALUATION


def test_a_version_4_table_gains_the_columns_and_keeps_its_rows(any_store: JobStore) -> None:
    store = any_store
    job_id = store.submit(timeframe="1h", n_trials=5, train_ratio=0.7, source="old")
    with store.engine.begin() as conn:  # make it the table release 4 had
        for column in (*V5_COLUMNS, *V6_COLUMNS, "cancel_forwarded"):
            conn.execute(text(f"ALTER TABLE training_jobs DROP COLUMN {column}"))
        conn.execute(text("UPDATE training_jobs_schema SET version = 4"))
    store.close()
    upgraded = JobStore(store.url)
    with upgraded.engine.connect() as conn:
        names = {c["name"] for c in inspect(conn).get_columns("training_jobs")}
        version = conn.execute(text("SELECT version FROM training_jobs_schema")).scalar_one()
    assert set(V5_COLUMNS) | set(V6_COLUMNS) <= names and version == SCHEMA_VERSION
    row = upgraded.get(job_id)
    assert row is not None and (row.timeframe, row.n_trials, row.source) == ("1h", 5, "old")
    assert (row.cv_folds, row.embargo, row.verdict_long) == (3, 16, None)
    assert (row.promotion, row.promoted, row.promotion_reason) == ("always", None, None)


def test_an_unreadable_evaluation_is_no_error(any_store: JobStore) -> None:
    store = any_store
    job_id = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    store.update_job(job_id, evaluation="{not json")
    row = store.get(job_id)
    assert row is not None and row.evaluation is None
