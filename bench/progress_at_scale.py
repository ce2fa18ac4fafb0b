"""How big do the progress file and the table's trial log get at 10,000 trials per model?

Simulates the trainer's progress writes on real files, without XGBoost: for every trial of both
models a real Optuna ``FrozenTrial`` (seven parameters, five fold scores) is counted by
``tjtrainer.records.TrialBook`` and ``progress.json`` is written by
``tjtrainer.progress.write_progress``, as the trainer does after every trial. Reports
the final size of ``progress.json`` and the bytes written over the run (every
``--sample``-th write is made and measured, the others counted as the mean of their
neighbours: use ``--sample 1`` to write every one). Then ``--rows`` table rows get that
run's ``tjcore.store.progress_columns`` and the UI's history query (``list_jobs`` +
``history_frame``) is measured with ``tracemalloc`` (peak Python memory).

Usage: ``python bench/progress_at_scale.py [--trials 10000] [--sample 1] [--rows 20]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from tjcore.store import JobStore, progress_columns
from tjtrainer.progress import PROGRESS_FILE, RunProgress, write_progress
from tjtrainer.records import TrialBook
from tjui.data import history_frame

PARAMS: dict[str, IntDistribution | FloatDistribution] = {
    "n_estimators": IntDistribution(100, 1000, step=50),
    "max_depth": IntDistribution(3, 8),
    "learning_rate": FloatDistribution(0.01, 0.3, log=True),
    "min_child_weight": FloatDistribution(1.0, 100.0, log=True),
    "subsample": FloatDistribution(0.5, 1.0),
    "colsample_bytree": FloatDistribution(0.5, 1.0),
    "reg_lambda": FloatDistribution(0.001, 100.0, log=True),
}


def fake_trial(
    number: int, start: dt.datetime, folds: list[float], state: TrialState
) -> optuna.trial.FrozenTrial:
    params: dict[str, float] = {}
    for i, (name, dist) in enumerate(PARAMS.items()):
        share = ((number + 1) * (0.618 + 0.1 * i)) % 1.0
        if isinstance(dist, IntDistribution):
            steps = (dist.high - dist.low) // dist.step
            params[name] = dist.low + int(share * steps) * dist.step
        else:
            params[name] = dist.low + share * (dist.high - dist.low)
    trial = optuna.trial.FrozenTrial(
        number=number,
        state=state,
        value=sum(folds) / len(folds) if state == TrialState.COMPLETE else None,
        datetime_start=start,
        datetime_complete=start + dt.timedelta(seconds=1.5),
        params=params,
        distributions=dict(PARAMS),
        user_attrs={"rounds": 120 + number % 50, "fold_scores": folds, "slot": number},
        system_attrs={},
        intermediate_values=dict(enumerate(folds)),
        trial_id=number,
    )
    return trial


def simulate(run_dir: Path, trials: int, sample: int) -> tuple[RunProgress, int, int, float]:
    """Returns the final progress, the final file size, the bytes written and seconds."""
    progress = RunProgress(timeframe="15m", n_trials=trials, total_trials=2 * trials)
    book = TrialBook(progress, trials)
    written = 0
    last_size = 0
    started = time.perf_counter()
    count = 0
    for model in ("LONG", "SHORT"):
        progress.current_model = model
        for number in range(trials):
            folds = [0.01 * ((number * 7 + k) % 13 - 6) for k in range(5)]
            state = TrialState.PRUNED if number % 4 == 3 else TrialState.COMPLETE
            start = dt.datetime(2026, 1, 1) + dt.timedelta(seconds=2 * number)
            book.add(model, fake_trial(number, start, folds, state))
            count += 1
            if count % sample == 0 or count == 2 * trials:
                write_progress(run_dir, progress)
                size = (run_dir / PROGRESS_FILE).stat().st_size
                written += size if sample == 1 else sample * (size + last_size) // 2
                last_size = size
    return (
        progress,
        (run_dir / PROGRESS_FILE).stat().st_size,
        written,
        time.perf_counter() - started,
    )


def history_memory(root: Path, progress: RunProgress, rows: int) -> tuple[int, int]:
    """Peak Python memory (bytes) of the UI's history of ``rows`` such rows, and the size
    of one row's trial_log text."""
    store = JobStore(f"sqlite:///{root / 'training_jobs.db'}")
    log_size = len(progress_columns(progress)["trial_log"])
    for _ in range(rows):
        job_id = store.submit(
            timeframe="15m", n_trials=progress.n_trials, train_ratio=0.8, source="bench"
        )
        store.apply_progress(job_id, progress)
    store.close()
    reader = JobStore(f"sqlite:///{root / 'training_jobs.db'}", readonly=True)
    tracemalloc.start()
    found = reader.list_jobs(limit=rows)
    frame = history_frame(found)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(frame) == rows
    reader.close()
    return peak, log_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000, help="trials per model")
    parser.add_argument("--sample", type=int, default=1, help="write every N-th trial")
    parser.add_argument("--rows", type=int, default=20, help="table rows for the history")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = root / "run"
        run_dir.mkdir()
        progress, size, written, seconds = simulate(run_dir, args.trials, args.sample)
        peak, log_size = history_memory(root, progress, args.rows)
    print(
        json.dumps(
            {
                "trials_per_model": args.trials,
                "trials_in_progress_json": len(progress.trials),
                "progress_json_bytes": size,
                "bytes_written_per_run": written,
                "simulation_s": round(seconds, 1),
                "trial_log_bytes_per_row": log_size,
                "history_rows": args.rows,
                "history_peak_bytes": peak,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
