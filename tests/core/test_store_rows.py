"""The row life cycle: submit, claim exactly once, progress, cancel; on SQLite and on a
real PostgreSQL server."""

from __future__ import annotations

import time

import pytest

from tjcore.store import JobStore, progress_columns
from tjtrainer.progress import RunProgress, RunState, TrialRecord


@pytest.fixture
def store(any_store: JobStore) -> JobStore:
    """Each test of this file on both backends."""
    return any_store


def trial(n: int, model: str, score: float) -> TrialRecord:
    return TrialRecord(
        trial=n,
        model=model,
        number=n - 1,
        state="complete",
        spearman=score,
        best_so_far=score,
        params={"max_depth": 3},
        duration_s=0.5,
        finished_at="2026-11-26T12:00:00.000000Z",
    )


def test_a_row_is_claimed_exactly_once(store: JobStore) -> None:
    job = store.submit(timeframe="15m", n_trials=2, train_ratio=0.8, source="ui")
    assert store.claim(job, namespace="ml", name="row-1", start=False)
    assert not store.claim(job, namespace="other", name="row-1", start=False)
    assert store.pending(claimable_by="local") == []
    # The claimer itself may claim again (a restarted bridge).
    assert store.claim(job, namespace="ml", name="row-1", start=False)


def test_one_row_per_kubernetes_object(store: JobStore) -> None:
    first = store.submit(
        timeframe="15m",
        n_trials=2,
        train_ratio=0.8,
        source="t",
        namespace="a",
        name="x",
        uid="uid-1",
    )
    with pytest.raises(ValueError, match=r"a/x \(uid uid-1\) exists already"):
        store.submit(
            timeframe="1h",
            n_trials=2,
            train_ratio=0.8,
            source="t",
            namespace="a",
            name="x",
            uid="uid-1",
        )
    # The same name again, as a new object: a new row, and the name finds the newest.
    second = store.submit(
        timeframe="1h",
        n_trials=2,
        train_ratio=0.8,
        source="t",
        namespace="a",
        name="x",
        uid="uid-2",
    )
    assert store.get_by_uid("uid-1").id == first  # type: ignore[union-attr]
    assert store.get_by_name("a", "x").id == second  # type: ignore[union-attr]


def test_pending_rows_come_oldest_first(store: JobStore) -> None:
    ids = [store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t") for _ in range(3)]
    assert [r.id for r in store.pending()] == ids


def test_progress_reaches_the_seed_columns(store: JobStore) -> None:
    job = store.submit(timeframe="15m", n_trials=2, train_ratio=0.8, source="t")
    progress = RunProgress(
        timeframe="15m",
        n_trials=2,
        total_trials=4,
        completed_trials=3,
        current_model="SHORT",
        best_score_long=0.12,
        best_score_short=0.05,
        trials=[trial(1, "LONG", 0.1), trial(2, "LONG", 0.12), trial(3, "SHORT", 0.05)],
    )
    store.apply_progress(job, progress)
    row = store.get(job)
    assert row is not None
    assert (row.status, row.current_trial, row.total_trials, row.current_model) == (
        "running",
        3,
        4,
        "SHORT",
    )
    assert row.progress_pct == pytest.approx(75.0)
    assert row.best_score_long == pytest.approx(0.12)
    assert [t["model"] for t in row.trial_log] == ["LONG", "LONG", "SHORT"]
    assert row.trial_log[0]["params"] == {"max_depth": 3}
    assert row.completed_at is None

    progress.state, progress.model_version = RunState.COMPLETED, "15m_20261126_120000"
    store.apply_progress(job, progress)
    row = store.get(job)
    assert row is not None
    assert (row.status, row.progress_pct, row.model_version) == (
        "completed",
        100.0,
        "15m_20261126_120000",
    )
    assert row.completed_at is not None


def test_failed_progress_carries_its_error() -> None:
    progress = RunProgress(
        timeframe="1h", n_trials=1, total_trials=2, state=RunState.FAILED, error="dataset missing"
    )
    assert progress_columns(progress)["error"] == "dataset missing"


def test_cancel_of_pending_row_ends_it_and_of_a_final_row_is_refused(store: JobStore) -> None:
    job = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    assert store.request_cancel(job).status == "cancelled"
    with pytest.raises(ValueError, match="has ended already"):
        store.request_cancel(job)
    with pytest.raises(LookupError, match="no training job with id 999"):
        store.request_cancel(999)


def test_cancel_of_running_row_is_a_request(store: JobStore) -> None:
    job = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    store.mark_running(job, total_trials=2)
    row = store.request_cancel(job)
    assert row.status == "running" and row.cancel_requested


def test_readonly_store_cannot_write(store: JobStore) -> None:
    reader = JobStore(store.url, readonly=True)
    job = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    assert reader.get(job) is not None
    with pytest.raises(Exception, match=r"readonly|read-only"):
        reader.update_job(job, status="failed")


def test_only_the_claimed_object_gets_a_claimed_row(store: JobStore) -> None:
    job = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="ui")
    assert not store.bind_claimed(job, namespace="ml", name="row-1-abc123", uid="u-0")  # unclaimed
    assert store.claim(job, namespace="ml", name="row-1-abc123", start=False)
    assert not store.bind_claimed(job, namespace="other", name="row-1-abc123", uid="u-1")
    assert not store.bind_claimed(job, namespace="ml", name="row-1-zzz", uid="u-2")
    assert store.bind_claimed(job, namespace="ml", name="row-1-abc123", uid="u-3")
    assert not store.bind_claimed(job, namespace="ml", name="row-1-abc123", uid="u-4")
    assert store.get(job).uid == "u-3"  # type: ignore[union-attr]


def test_a_running_row_whose_lease_ran_out_is_stale_and_taken_over_once(
    store: JobStore,
) -> None:
    job = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    store.mark_running(job, total_trials=2, lease_owner="host/1/a")
    operator_row = store.submit(timeframe="15m", n_trials=1, train_ratio=0.8, source="t")
    store.mark_running(operator_row, total_trials=2)  # no lease: never stale
    assert store.stale_running(lease_seconds=60) == []
    assert store.renew_lease(job, "host/1/a") and not store.renew_lease(job, "host/2/b")
    time.sleep(0.05)
    (stale,) = store.stale_running(lease_seconds=0.01)
    assert stale.id == job and stale.lease_owner == "host/1/a"
    assert store.take_over(stale, "worker 9")
    assert not store.take_over(stale, "worker 10")  # the second worker loses
    assert not store.renew_lease(job, "host/1/a")  # the old owner's lease is gone
    assert store.get(job).lease_owner == "worker 9"  # type: ignore[union-attr]
