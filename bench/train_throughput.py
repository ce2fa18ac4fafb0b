"""Training throughput and true skill: our trainer against a competent Optuna + xgb.train
search (and, optionally, a naive loop).

Every side searches ``tjtrainer.search.SEARCH_SPACE`` with TPE for 30 trials per model
(LONG then SHORT) on the same synthetic 15m dataset (70,000 rows by default) with the
same XGBoost threads, and is judged on **true skill**: the mean Spearman of its final
LONG and SHORT models on *fresh* data from the same generator (another seed, 120,000 rows
by default), which no side has seen. The test tail's Spearman is printed beside it.

- **ours**: ``tjtrainer.train.run_training`` as the trainer pod runs it (walk-forward
  folds, pruning between folds, early stopping, progress file and SQLite study per trial,
  the final fit, verdicts, models written).
- **competent**: what an engineer who knows XGBoost would write: the training matrix
  (``QuantileDMatrix``) and the validation matrix built once per model; per trial
  ``xgb.train`` on the final model's training window with rmse early stopping on the last
  validation block (patience 50) and Optuna's ``MedianPruner`` fed the validation rmse
  every 10 rounds (after 5 trials); objective = Spearman of the best iteration on that
  block; the best trial's booster (at its best iteration) is the final model. Same splits
  as ours' final model, same space, TPE with the same seed.
- **naive** (``--naive``): an ``XGBRegressor`` per trial with all its rounds.

Printed per side: wall time, time inside XGBoost, boosting rounds fitted, the share of
wall time outside XGBoost, test and fresh-data Spearman. ``--whole-process`` also times
whole processes (start, imports and I/O included): ``python -m tjtrainer train``
(through ``bench/trainer_process.py``, which notes XGBoost's busy time in that very
process), the competent search as a script of its own, and the start every XGBoost
process pays before its first round: ``python -c "import xgboost"`` (which imports
scikit-learn and pandas when installed) and the same with scikit-learn hidden, as the
trainer imports it.

Usage: ``python bench/train_throughput.py [--rows 70000] [--fresh-rows 120000]
[--n-trials 30] [--seed 42] [--parallelism 1] [--naive] [--whole-process]``.
Target (issue 11): ours <= 0.5 x the competent wall time at >= its fresh-data Spearman,
and <= 3 % of the whole process outside XGBoost.
"""

from __future__ import annotations

import os

# As tjtrainer does on import: XGBoost's OpenMP threads wait passively, which matters a
# lot on a shared machine. Set before xgboost loads, for every side alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import optuna
import xgboost as xgb
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from tjtrainer.config import DEFAULT_PARALLELISM, TrainConfig
from tjtrainer.cpus import available_cpus
from tjtrainer.dataset_reader import Dataset, load_dataset
from tjtrainer.datasets import synth_dataset
from tjtrainer.matrices import standardised
from tjtrainer.metrics import spearman
from tjtrainer.progress import MODELS
from tjtrainer.search import SEARCH_SPACE, Timings, booster_params
from tjtrainer.splits import make_splits
from tjtrainer.train import run_training

PATIENCE = 50
EVAL_EVERY = 10
XGBOOST_MAX_BIN = 256  # XGBoost's default, which the competent search keeps


@dataclass
class Result:
    wall_s: float
    xgboost_s: float
    rounds: int
    test: dict[str, float]
    fresh: dict[str, float]
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def fresh_mean(self) -> float:
        return float(np.mean(list(self.fresh.values())))


def _labels(dataset: Dataset, model: str) -> np.ndarray:
    return dataset.y_long if model == "LONG" else dataset.y_short


def run_ours(
    data_root: Path,
    run_dir: Path,
    n_trials: int,
    seed: int,
    parallelism: int,
    fresh: Dataset,
    search_stride: int | None = None,
) -> Result:
    timings = Timings()
    config = TrainConfig(
        timeframe="15m",
        n_trials=n_trials,
        train_ratio=0.8,
        data_root=data_root,
        run_dir=run_dir,
        seed=seed,
        parallelism=parallelism,
        search_stride=search_stride,
    )
    started = time.perf_counter()
    progress = run_training(config, timings=timings)
    wall = time.perf_counter() - started
    assert progress.test_score_long is not None and progress.test_score_short is not None
    models = data_root / "models" / str(progress.model_version)
    scaler = pickle.loads((models / "scaler.pkl").read_bytes())
    rows = scaler.transform(fresh.x)
    fresh_scores = {}
    for model in MODELS:
        booster = xgb.Booster(model_file=str(models / f"model_{model.lower()}.ubj"))
        fresh_scores[model] = spearman(booster.inplace_predict(rows), _labels(fresh, model))
    return Result(
        wall_s=wall,
        xgboost_s=timings.xgboost_wall_s,  # the wall time XGBoost was busy (parallel trials)
        rounds=timings.rounds,
        test={"LONG": progress.test_score_long, "SHORT": progress.test_score_short},
        fresh=fresh_scores,
        extra={
            "storage_s": timings.storage_s,
            "progress_s": timings.progress_s,
            "callback_python_s": timings.callback_python_s,
            "pruned": sum(t.state == "pruned" for t in progress.trials),
        },
    )


class _RmsePruning(xgb.callback.TrainingCallback):
    """Reports the validation rmse to Optuna every EVAL_EVERY rounds; stops when pruned."""

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial = trial
        self.pruned = False

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        if (epoch + 1) % EVAL_EVERY:
            return False
        rmse = evals_log["valid"]["rmse"][-1]
        self.trial.report(-rmse, epoch + 1)
        self.pruned = self.trial.should_prune()
        return self.pruned


def run_competent(
    dataset: Dataset, fresh: Dataset | None, n_trials: int, seed: int, nthread: int
) -> Result:
    """The competent search; its final models are scored on ``fresh`` after the wall
    time is taken (not at all without ``fresh``, as in a process of its own)."""
    started = time.perf_counter()
    xgb_s = 0.0
    rounds = 0
    splits = make_splits(dataset.rows, train_ratio=0.8, horizon=dataset.horizon)
    scaler = StandardScaler().fit(dataset.x[splits.search])
    x = scaler.transform(dataset.x).astype(np.float32)
    fit, valid, test = splits.final.fit, splits.final.early_stop, splits.test
    result_test, finals, pruned = {}, {}, 0
    for index, model in enumerate(MODELS):
        y = _labels(dataset, model)
        t0 = time.perf_counter()
        dfit = xgb.QuantileDMatrix(
            x[fit], label=standardised(y[fit]), nthread=nthread, max_bin=XGBOOST_MAX_BIN
        )
        dvalid = xgb.DMatrix(x[valid], label=standardised(y[valid]), nthread=nthread)
        xgb_s += time.perf_counter() - t0
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed + 1000 * index, multivariate=True),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=EVAL_EVERY),
        )
        best: tuple[float, xgb.Booster | None, int] = (-np.inf, None, 0)
        for _ in range(n_trials):
            trial = study.ask(SEARCH_SPACE)
            pruning = _RmsePruning(trial)
            t0 = time.perf_counter()
            booster = xgb.train(
                {
                    **booster_params(trial.params, seed=seed + trial.number, nthread=nthread),
                    "max_bin": XGBOOST_MAX_BIN,
                },
                dfit,
                num_boost_round=int(trial.params["n_estimators"]),
                evals=[(dvalid, "valid")],
                early_stopping_rounds=PATIENCE,
                callbacks=[pruning],
                verbose_eval=False,
            )
            rounds += booster.num_boosted_rounds()
            best_iteration = int(
                getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1)
            )
            predicted = booster.predict(dvalid, iteration_range=(0, best_iteration + 1))
            xgb_s += time.perf_counter() - t0
            if pruning.pruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                pruned += 1
                continue
            score = spearman(predicted, y[valid])
            study.tell(trial, score)
            if score > best[0]:
                best = (score, booster, best_iteration + 1)
        _, final, cut = best
        assert final is not None
        t0 = time.perf_counter()
        result_test[model] = spearman(
            final.inplace_predict(x[test], iteration_range=(0, cut)), y[test]
        )
        xgb_s += time.perf_counter() - t0
        finals[model] = (final, cut)
    wall = time.perf_counter() - started
    result_fresh = {}
    if fresh is not None:
        fresh_x = scaler.transform(fresh.x).astype(np.float32)
        result_fresh = {
            model: spearman(
                booster.inplace_predict(fresh_x, iteration_range=(0, cut)), _labels(fresh, model)
            )
            for model, (booster, cut) in finals.items()
        }
    return Result(
        wall_s=wall,
        xgboost_s=xgb_s,
        rounds=rounds,
        test=result_test,
        fresh=result_fresh,
        extra={"pruned": pruned},
    )


def run_naive(dataset: Dataset, fresh: Dataset, n_trials: int, seed: int, nthread: int) -> Result:
    started = time.perf_counter()
    xgb_s, rounds = 0.0, 0
    splits = make_splits(dataset.rows, train_ratio=0.8, horizon=dataset.horizon)
    scaler = StandardScaler().fit(dataset.x[splits.search])
    x = scaler.transform(dataset.x)
    fit, valid, test = splits.final.fit, splits.final.early_stop, splits.test
    result_test, finals = {}, {}
    for index, model in enumerate(MODELS):
        y = _labels(dataset, model)
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed + 1000 * index, multivariate=True),
        )
        best: tuple[float, xgb.XGBRegressor | None] = (-np.inf, None)
        for _ in range(n_trials):
            trial = study.ask(SEARCH_SPACE)
            regressor = xgb.XGBRegressor(
                **trial.params, tree_method="hist", n_jobs=nthread, random_state=seed
            )
            t0 = time.perf_counter()
            regressor.fit(x[fit], standardised(y[fit]))
            predicted = regressor.predict(x[valid])
            xgb_s += time.perf_counter() - t0
            rounds += int(trial.params["n_estimators"])
            score = spearman(predicted, y[valid])
            study.tell(trial, score)
            if score > best[0]:
                best = (score, regressor)
        final = best[1]
        assert final is not None
        result_test[model] = spearman(final.predict(x[test]), y[test])
        finals[model] = final
    wall = time.perf_counter() - started
    fresh_x = scaler.transform(fresh.x)
    result_fresh = {m: spearman(f.predict(fresh_x), _labels(fresh, m)) for m, f in finals.items()}
    return Result(wall, xgb_s, rounds, result_test, result_fresh)


def process_wall(command: list[str]) -> float:
    """Wall time of ``command`` run as a process of its own (start, imports, I/O)."""
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


@dataclass
class Processes:
    """Whole processes on one dataset, in seconds."""

    ours: float  # python -m tjtrainer train
    ours_xgboost: float  # the wall time XGBoost was busy in that process
    competent: float  # this file's competent search as a script of its own
    import_xgboost: float  # python -c "import xgboost", as a plain script pays it
    least_import: float  # importing XGBoost with scikit-learn hidden, as ours does


def whole_processes(root: Path, n_trials: int, seed: int, parallelism: int) -> Processes:
    noted = root / "runs" / "bench" / "process-xgboost.json"
    ours = process_wall(
        [sys.executable, str(Path(__file__).with_name("trainer_process.py")), str(noted),
         "train", "--timeframe", "15m", "--n-trials", str(n_trials), "--seed", str(seed),
         "--parallelism", str(parallelism), "--run-dir", str(root / "runs" / "bench" / "process"),
         "--data-root", str(root)]
    )  # fmt: skip
    competent = process_wall(
        [sys.executable, __file__, "--competent-process", str(root),
         "--n-trials", str(n_trials), "--seed", str(seed)]
    )  # fmt: skip
    least = "from tjtrainer.legacy import import_xgboost_without_sklearn as i; i()"
    return Processes(
        ours=ours,
        ours_xgboost=float(json.loads(noted.read_text())["xgboost_s"]),
        competent=competent,
        import_xgboost=min(process_wall([sys.executable, "-c", "import xgboost"]) for _ in "123"),
        least_import=min(process_wall([sys.executable, "-c", least]) for _ in "123"),
    )


def _competent_process(root: Path, n_trials: int, seed: int) -> None:
    """The competent search as a script an engineer would run: read the dataset, search,
    score the test tail (its imports include pandas and scikit-learn, as such a script's
    would; the dataset is read as ours reads it)."""
    with threadpool_limits(limits=1, user_api="blas"):
        run_competent(load_dataset(root, "15m"), None, n_trials, seed, available_cpus())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=70_000)
    parser.add_argument("--fresh-rows", type=int, default=120_000)
    parser.add_argument("--n-trials", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--data-seeds", default="7", help="comma-separated dataset seeds, one pair of runs each"
    )
    parser.add_argument("--parallelism", type=int, default=DEFAULT_PARALLELISM)
    parser.add_argument(
        "--search-stride",
        type=int,
        help="ours trains its search on every N-th row of a fold's window (default: chosen "
        "from the data's size, tjtrainer.splits.search_stride)",
    )
    parser.add_argument("--skip-competent", action="store_true")
    parser.add_argument("--naive", action="store_true", help="also run the naive loop")
    parser.add_argument("--whole-process", action="store_true")
    parser.add_argument("--competent-process", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.competent_process is not None:
        _competent_process(args.competent_process, args.n_trials, args.seed)
        return
    nthread = available_cpus()
    pairs: list[tuple[Result, Result | None, Processes | None]] = []
    with tempfile.TemporaryDirectory(prefix="tj-bench-") as tmp:
        _warm_up(Path(tmp) / "warm-up", nthread)
        for data_seed in (int(v) for v in args.data_seeds.split(",")):
            folder = Path(tmp) / f"seed-{data_seed}"
            pairs.append(_one_dataset(args, folder, data_seed, nthread))
    if len(pairs) > 1 and all(b is not None for _, b, _ in pairs):
        ratios = [o.wall_s / b.wall_s for o, b, _ in pairs if b is not None]
        ours_skill = np.mean([o.fresh_mean for o, _, _ in pairs])
        base_skill = np.mean([b.fresh_mean for _, b, _ in pairs if b is not None])
        print(
            f"over {len(pairs)} datasets: wall ratio ours/competent median {np.median(ratios):.2f} "
            f"(range {min(ratios):.2f}-{max(ratios):.2f}; target <= 0.5); mean fresh-data "
            f"Spearman ours {ours_skill:+.4f} vs competent {base_skill:+.4f}",
            flush=True,
        )
        processes = [p.ours / p.competent for _, _, p in pairs if p is not None]
        if processes:
            print(
                f"  whole processes: ratio ours/competent median {np.median(processes):.2f} "
                f"(range {min(processes):.2f}-{max(processes):.2f})",
                flush=True,
            )


def _one_dataset(
    args: argparse.Namespace, folder: Path, data_seed: int, nthread: int
) -> tuple[Result, Result | None, Processes | None]:
    """Every side on one synthetic dataset (and its fresh data); print each line."""
    root, fresh_root = folder / "data", folder / "fresh"
    _, info = synth_dataset(root, "15m", rows=args.rows, seed=data_seed)
    synth_dataset(fresh_root, "15m", rows=args.fresh_rows, seed=data_seed + 1000)
    dataset, fresh = load_dataset(root, "15m"), load_dataset(fresh_root, "15m")
    print(
        f"dataset seed {data_seed}: synthetic 15m, {info.rows} rows, {len(info.features)} "
        f"features; fresh data: {fresh.rows} rows of another seed; {args.n_trials} + "
        f"{args.n_trials} trials; {nthread} CPUs; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    ours = run_ours(
        root,
        root / "runs" / "bench" / "ours",
        args.n_trials,
        args.seed,
        args.parallelism,
        fresh,
        args.search_stride,
    )
    _print(f"ours (parallelism {args.parallelism})", ours)
    print(
        f"  the journal's trial ends {ours.extra['storage_s']:.2f} s (on the trial path), "
        f"publishing: fsync + progress.json {ours.extra['progress_s']:.2f} s (off it); "
        f"{int(ours.extra['pruned'])} of {2 * args.n_trials} trials pruned",
        flush=True,
    )
    processes = None
    if args.whole_process:
        processes = whole_processes(root, args.n_trials, args.seed, args.parallelism)
        outside = processes.ours - processes.ours_xgboost
        print(
            f"  whole processes: ours (`python -m tjtrainer train`) {processes.ours:.1f} s, "
            f"competent {processes.competent:.1f} s, ratio "
            f"{processes.ours / processes.competent:.2f}; ours outside XGBoost "
            f"{outside:.2f} s = {100 * outside / processes.ours:.1f} %, of which starting "
            f"Python and importing XGBoost (scikit-learn hidden) {processes.least_import:.2f} s "
            f"= {100 * processes.least_import / processes.ours:.1f} % (a plain "
            f"`import xgboost` takes {processes.import_xgboost:.2f} s)",
            flush=True,
        )
    baseline = None
    if not args.skip_competent:
        with threadpool_limits(limits=1, user_api="blas"):
            baseline = run_competent(dataset, fresh, args.n_trials, args.seed, nthread)
        _print("competent", baseline)
    if args.naive:
        with threadpool_limits(limits=1, user_api="blas"):
            _print("naive", run_naive(dataset, fresh, args.n_trials, args.seed, nthread))
    if baseline is not None:
        print(
            f"wall ratio ours/competent {ours.wall_s / baseline.wall_s:.2f} (target <= 0.5); "
            f"fresh-data Spearman ours {ours.fresh_mean:+.4f} vs competent "
            f"{baseline.fresh_mean:+.4f}; rounds ratio {ours.rounds / baseline.rounds:.2f}; "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    return ours, baseline, processes


def _warm_up(root: Path, nthread: int) -> None:
    """One tiny run of each side, so that the timings leave out one-time imports and lazy
    initialisation (SQLAlchemy, Alembic, XGBoost's scikit-learn wrapper)."""
    synth_dataset(root, "15m", rows=3000, seed=1)
    run_training(
        TrainConfig(
            timeframe="15m", n_trials=1, train_ratio=0.8, data_root=root, run_dir=root / "run"
        )
    )
    dataset = load_dataset(root, "15m")
    xgb.XGBRegressor(n_estimators=5, n_jobs=nthread).fit(dataset.x, dataset.y_long)


def _print(name: str, result: Result) -> None:
    outside = result.wall_s - result.xgboost_s
    print(
        f"{name}: wall {result.wall_s:.1f} s, XGBoost {result.xgboost_s:.1f} s, outside "
        f"{100 * outside / result.wall_s:.1f} %, {result.rounds} rounds fitted; test Spearman "
        f"LONG {result.test['LONG']:+.4f} SHORT {result.test['SHORT']:+.4f}; fresh-data "
        f"Spearman LONG {result.fresh['LONG']:+.4f} SHORT {result.fresh['SHORT']:+.4f} "
        f"(mean {result.fresh_mean:+.4f})",
        flush=True,
    )


if __name__ == "__main__":
    main()
