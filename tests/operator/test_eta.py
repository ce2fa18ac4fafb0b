"""The ETA of a running TrainingJob (tjoperator.eta): from the trials so far, computed
by hand here."""

from __future__ import annotations

from tjoperator.eta import RECENT_TRIALS, eta_status, human_duration
from tjtrainer.progress import RunProgress, RunState, TrialRecord

UPDATED = "2026-01-02T10:00:00.000000Z"


def _trial(number: int, duration: float, state: str = "complete") -> TrialRecord:
    return TrialRecord(
        trial=number,
        model="LONG",
        number=number - 1,
        state=state,
        spearman=0.1,
        best_so_far=0.1,
        params={},
        duration_s=duration,
        finished_at=UPDATED,
    )


def _progress(
    durations: list[float], *, total: int = 60, state: RunState = RunState.RUNNING, **kinds: str
) -> RunProgress:
    trials = [_trial(i + 1, d, kinds.get(f"t{i + 1}", "complete")) for i, d in enumerate(durations)]
    return RunProgress(
        timeframe="15m",
        n_trials=total // 2,
        total_trials=total,
        state=state,
        completed_trials=len(trials),
        trials=trials,
        trials_recorded=len(trials),
        updated_at=UPDATED,
    )


def test_trials_left_times_the_median_duration_over_the_parallelism() -> None:
    # 10 of 60 done, median of 1..10 s (one outlier of 500 s does not move it much): 5.5 s;
    # 50 left at 2 at once = 25 rounds of 5.5 s = 137.5 s -> 138 s.
    progress = _progress([1, 2, 3, 4, 5, 6, 7, 8, 9, 500])
    assert eta_status(progress, parallelism=2) == {
        "etaSeconds": 138,
        "eta": "2m18s",
        "etaAt": "2026-01-02T10:02:18Z",
    }
    # One at a time: 50 x 5.5 s.
    assert eta_status(progress, parallelism=1)["etaSeconds"] == 275


def test_only_the_recent_complete_or_pruned_trials_count() -> None:
    # 30 slow trials long ago, then RECENT_TRIALS quick ones: the quick ones decide.
    progress = _progress([60.0] * 30 + [2.0] * RECENT_TRIALS, total=100)
    assert eta_status(progress, parallelism=1)["etaSeconds"] == 50 * 2
    # A failed trial (an instant error) is no measure of time; pruned ones are (shorter).
    progress = _progress([10.0, 0.01, 4.0], total=5, t2="failed", t3="pruned")
    assert eta_status(progress, parallelism=1)["etaSeconds"] == 2 * 7


def test_fewer_trials_left_than_parallel_slots_take_one_whole_trial() -> None:
    progress = _progress([10.0] * 59)
    assert eta_status(progress, parallelism=4)["etaSeconds"] == 10


def test_no_eta_before_the_first_trial_or_once_the_run_ended() -> None:
    none = {"etaSeconds": None, "eta": None, "etaAt": None}
    assert eta_status(None, parallelism=2) == none
    assert eta_status(_progress([]), parallelism=2) == none
    assert (
        eta_status(
            _progress([0.5] * 3, total=4, t1="failed", t2="failed", t3="failed"), parallelism=1
        )
        == none
    )
    for state in (RunState.COMPLETED, RunState.CANCELLED, RunState.FAILED):
        assert eta_status(_progress([3.0] * 60, state=state), parallelism=2) == none


def test_eta_decreases_as_trials_finish_at_a_steady_pace() -> None:
    seen = [eta_status(_progress([3.0] * n), parallelism=2)["etaSeconds"] for n in range(1, 60)]
    assert seen == sorted(seen, reverse=True) and seen[-1] == 3


def test_human_durations_show_the_two_largest_units() -> None:
    assert [human_duration(s) for s in (0, 45, 200, 3600, 7500, 90061)] == [
        "0s",
        "45s",
        "3m20s",
        "1h00m",
        "2h05m",
        "1d1h",
    ]
