"""Command line of the trainer: ``python -m tjtrainer {dataset synth|dataset build|train}``.

:func:`add_dataset_parser` is also mounted by ``tjctl`` (``tjctl dataset …``). Exit codes:
``dataset``: 0 done, 1 failed, 2 bad arguments. ``train``: the contract of
:mod:`tjtrainer.exitcodes` (0 done or cancelled, 2 bad arguments, 3 a permanent failure,
75 a transient one). A failure's reason is the last line on stderr and, for ``train``,
the Kubernetes termination message.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from tjcontract import checks
from tjcontract.layout import DEFAULT_SHARED_DATA_PATH, SHARED_DATA_ENV, STUDY_FILE
from tjcontract.names import MODELS, TIMEFRAMES, flag_name
from tjcontract.spec import FIELDS_BY_NAME, MAX_WORKERS
from tjcontract.words import RunState
from tjtrainer.config import STUDY_STORAGE_ENV, WORKER_INDEX_ENV, TrainConfig
from tjtrainer.errors import TrainingError
from tjtrainer.exitcodes import EXIT_OK, exit_code_for
from tjtrainer.progress import RunProgress, verdict_lines

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
TERMINATION_ENV = "TERMINATION_MESSAGE_PATH"
log = logging.getLogger("tjtrainer")


def _default(name: str) -> Any:
    return FIELDS_BY_NAME[name].default


def _add_spec_flag(parser: argparse.ArgumentParser, name: str, help: str | None = None) -> None:
    """The flag of spec field ``name`` (``nTrials``: ``--n-trials``), checked as the
    field and defaulting to its default."""
    flag = flag_name(name)
    parser.add_argument(
        flag,
        type=checks.flag_type(FIELDS_BY_NAME[name].check(), flag),
        default=_default(name),
        help=help,
    )


def _barrier(flag: str) -> Callable[[str], float]:
    """A barrier distance, in units of recent volatility."""
    return checks.flag_type(checks.number(above=0, high=1000, unit="volatility units"), flag)


def default_data_root() -> Path:
    return Path(os.environ.get(SHARED_DATA_ENV) or DEFAULT_SHARED_DATA_PATH)


def _add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help=f"the shared folder (default: ${SHARED_DATA_ENV}, else {DEFAULT_SHARED_DATA_PATH})",
    )


def _add_label_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeframe", required=True, choices=TIMEFRAMES)
    parser.add_argument(
        "--horizon",
        type=checks.flag_type(checks.integer(1, 10_000), "--horizon"),
        default=None,
        help="label horizon in candles (default: 4)",
    )
    parser.add_argument(
        "--cost-bps",
        type=checks.flag_type(checks.number(0, below=10_000), "--cost-bps"),
        default=None,
        help="round-trip trading cost in basis points, subtracted from the labels (default: 10; "
        "about 1 for liquid FX)",
    )
    parser.add_argument(
        "--label",
        choices=("barrier", "forward"),
        default=None,
        help="barrier: triple-barrier trades per side (default); forward: the forward "
        "log return over the horizon (SHORT is then LONG mirrored)",
    )
    parser.add_argument(
        "--take-profit",
        type=_barrier("--take-profit"),
        default=None,
        help="barrier labels: take-profit distance in units of recent volatility over the "
        "horizon (default: 2)",
    )
    parser.add_argument(
        "--stop-loss",
        type=_barrier("--stop-loss"),
        default=None,
        help="barrier labels: stop-loss distance in the same units (default: 1)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write the dataset even if it has too few rows for a run with the default spec",
    )
    _add_data_root(parser)


def add_dataset_parser(subparsers: Any) -> None:
    """Add ``dataset synth`` and ``dataset build`` to an argparse ``subparsers`` object."""
    dataset = subparsers.add_parser(
        "dataset",
        help="make a training dataset (synthetic or from OHLCV candles)",
        description="Writes <data-root>/datasets/<timeframe>/dataset.parquet "
        "(see docs/DATASETS.md).",
    )
    commands = dataset.add_subparsers(dest="dataset_command", metavar="{synth,build}")
    commands.required = True
    synth = commands.add_parser(
        "synth",
        help="synthetic candles (heavy tails, volatility clusters, volume, weak signal)",
    )
    _add_label_options(synth)
    synth.add_argument(
        "--rows",
        type=checks.flag_type(checks.integer(1, 10_000_000), "--rows"),
        default=None,
        help="dataset rows (default: 70000 for 15m, 20000 for 1h)",
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.set_defaults(func=_dataset_synth)
    build = commands.add_parser("build", help="from an OHLCV CSV file")
    build.add_argument(
        "--ohlcv", required=True, type=Path, help="CSV with timestamp,open,high,low,close,volume"
    )
    _add_label_options(build)
    build.set_defaults(func=_dataset_build)


def _label_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"horizon": args.horizon, "force": args.force}
    for name in ("cost_bps", "label", "take_profit", "stop_loss"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    return kwargs


def _dataset_synth(args: argparse.Namespace) -> int:
    from tjtrainer.datasets import synth_dataset

    root = args.data_root or default_data_root()
    return _report_dataset(
        lambda: synth_dataset(
            root, args.timeframe, rows=args.rows, seed=args.seed, **_label_kwargs(args)
        )
    )


def _dataset_build(args: argparse.Namespace) -> int:
    from tjtrainer.datasets import build_dataset_from_csv

    root = args.data_root or default_data_root()
    return _report_dataset(
        lambda: build_dataset_from_csv(root, args.ohlcv, args.timeframe, **_label_kwargs(args))
    )


def _report_dataset(make: Callable[[], Any]) -> int:
    try:
        path, info = make()
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"dataset written to {path}: {info.rows} rows of {info.timeframe} candles "
        f"({info.first_timestamp} .. {info.last_timestamp}), {len(info.features)} features, "
        f"horizon {info.horizon}, cost {info.cost_bps:g} bps, {_labels_text(info.labels)}"
    )
    return 0


def _labels_text(labels: dict[str, Any]) -> str:
    if labels.get("kind") != "barrier":
        return "forward-return labels"
    gaps = labels.get("dropped_rows", {}).get("gap", 0)
    shares = labels.get("outcomes", {})
    ends = "; ".join(
        f"{model} "
        + "/".join(f"{100 * shares[model][k]:.0f}" for k in ("take_profit", "stop_loss", "time"))
        for model in MODELS
        if model in shares
    )
    return (
        f"barrier labels (take-profit {labels['take_profit']:g}, stop-loss "
        f"{labels['stop_loss']:g}; % ending at take-profit/stop-loss/time: {ends}), "
        f"{gaps} rows spanning a gap dropped"
    )


def add_train_parser(subparsers: Any) -> None:
    """Add ``train``: the trainer pod's entry point."""
    train = subparsers.add_parser("train", help="run (or resume) one training run")
    train.add_argument("--timeframe", required=True, choices=TIMEFRAMES)
    _add_spec_flag(
        train,
        "nTrials",
        f"Optuna trials per model, spec.nTrials (default: {_default('nTrials')})",
    )
    _add_spec_flag(train, "trainRatio")
    _add_spec_flag(train, "seed")
    _add_spec_flag(train, "parallelism")
    _add_spec_flag(
        train,
        "cvFolds",
        f"walk-forward folds of the search part (default: {_default('cvFolds')})",
    )
    _add_spec_flag(
        train,
        "embargo",
        "rows kept out after the purge gap at every train/judge boundary "
        f"(default: {_default('embargo')})",
    )
    train.add_argument(
        "--promotion",
        choices=FIELDS_BY_NAME["promotion"].enum,
        default=_default("promotion"),
        help=f"when the new version becomes *_latest (default: {_default('promotion')})",
    )
    train.add_argument(
        "--run-dir", type=Path, required=True, help="progress, study and cancel marker"
    )
    _add_spec_flag(
        train,
        "warmStart",
        "none, latest or a model version: its best trials are the first trials of "
        f"this search (default: {_default('warmStart')})",
    )
    _add_spec_flag(
        train,
        "workers",
        "trainer processes sharing the run's studies (more than 1 needs PostgreSQL)",
    )
    train.add_argument(
        "--worker-index",
        type=checks.flag_type(checks.integer(0, MAX_WORKERS - 1), "--worker-index"),
        default=None,
        help=f"this process's place among the workers (default: ${WORKER_INDEX_ENV}, the "
        "Indexed Job's, else 0); worker 0 writes the progress and saves the models",
    )
    train.add_argument(
        "--study-storage",
        default=None,
        metavar="URL",
        help=f"the database of the Optuna studies (default: ${STUDY_STORAGE_ENV}, else the "
        f"run folder's {STUDY_FILE}); postgresql+psycopg://user:password@host/db for "
        "several workers",
    )
    _add_data_root(train)
    train.add_argument(
        "--termination-log",
        default=None,
        help=f"where to write the failure reason (default: ${TERMINATION_ENV}, else "
        f"{DEFAULT_TERMINATION_LOG} when it exists)",
    )
    train.set_defaults(func=_train)


class _TrialPrinter:
    """Prints one line per new trial and the run's state changes."""

    def __init__(self) -> None:
        self.seen: int | None = None

    def __call__(self, progress: RunProgress) -> None:
        if self.seen is None:
            self.seen = progress.trials_recorded
            if self.seen:
                print(f"resuming with {progress.completed_trials} finished trials", flush=True)
        new = min(len(progress.trials), progress.trials_recorded - self.seen)
        for record in progress.trials[len(progress.trials) - new :] if new > 0 else []:
            score = "-" if record.spearman is None else f"{record.spearman:+.4f}"
            best = "-" if record.best_so_far is None else f"{record.best_so_far:+.4f}"
            extra = f" error={record.error}" if record.error else ""
            print(
                f"trial {record.trial}/{progress.total_trials} {record.model} "
                f"#{record.number} {record.state} spearman={score} best={best} "
                f"rounds={record.rounds} {record.duration_s:.2f}s{extra}",
                flush=True,
            )
        self.seen = progress.trials_recorded


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Finished trials are safe in study.journal and the next start resumes; the trial in
    # flight is lost either way, so leave now rather than after it.
    print("SIGTERM: stopping now; finished trials are kept and the run resumes", flush=True)
    os._exit(128 + signum)


def _train(args: argparse.Namespace) -> int:
    from tjtrainer.train import run_training

    config = TrainConfig(
        timeframe=args.timeframe,
        n_trials=args.n_trials,
        train_ratio=args.train_ratio,
        data_root=(args.data_root or default_data_root()).resolve(),
        run_dir=args.run_dir.resolve(),
        seed=args.seed,
        parallelism=args.parallelism,
        cv_folds=args.cv_folds,
        embargo=args.embargo,
        promotion=args.promotion,
        study_storage=args.study_storage or os.environ.get(STUDY_STORAGE_ENV) or None,
        workers=args.workers,
        worker_index=_worker_index(args.worker_index),
        warm_start=args.warm_start,
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    print(
        f"training {config.timeframe}: {config.n_trials} trials per model, train ratio "
        f"{config.train_ratio}, seed {config.seed}, parallelism {config.parallelism}, "
        f"{config.cv_folds} walk-forward folds, embargo {config.embargo}, "
        f"data {config.data_root}, run folder {config.run_dir}" + _workers_text(config),
        flush=True,
    )
    try:
        progress = run_training(config, on_progress=_TrialPrinter())
    except Exception as exc:  # TrainingError, or anything it did not wrap: one line each
        message = (
            str(exc)
            if isinstance(exc, TrainingError)
            else f"unexpected {type(exc).__name__}: {exc}"
        )
        _write_termination_message(args.termination_log, message)
        print(f"error: {message}", file=sys.stderr, flush=True)
        return exit_code_for(exc)
    if progress.state == RunState.COMPLETED:
        print(
            f"completed: model version {progress.model_version} in {progress.models_dir}; "
            f"test Spearman LONG {progress.test_score_long:+.4f}, "
            f"SHORT {progress.test_score_short:+.4f}",
            flush=True,
        )
        for line in verdict_lines(progress):
            print(line, flush=True)
        if progress.promotion_reason:
            print(f"  {progress.promotion_reason}", flush=True)
    else:
        print(f"{progress.state} after {progress.completed_trials} trials", flush=True)
    return EXIT_OK


def _worker_index(given: int | None) -> int:
    if given is not None:
        return given
    text = os.environ.get(WORKER_INDEX_ENV, "")
    return int(text) if text.isdigit() else 0


def _workers_text(config: TrainConfig) -> str:
    """The workers and the study database (without its password) for the first line."""
    if not config.shares_studies:
        return ""
    from tjtrainer.shared_studies import storage_label  # SQLAlchemy: only with workers

    where = STUDY_FILE if config.study_storage is None else storage_label(config.study_storage)
    return f", worker {config.worker_index} of {config.workers}, studies in {where}"


def _write_termination_message(explicit: str | None, message: str) -> None:
    """Kubernetes shows this file's content as the container's termination message."""
    path = explicit or os.environ.get(TERMINATION_ENV)
    target = Path(path) if path else Path(DEFAULT_TERMINATION_LOG)
    if not path and not target.exists():
        return
    with contextlib.suppress(OSError):
        target.write_text(message[:4000] + "\n", encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tjtrainer", description="Datasets and training runs of the trainer."
    )
    commands = parser.add_subparsers(dest="command", metavar="{dataset,train}")
    commands.required = True
    add_dataset_parser(commands)
    add_train_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s"
    )
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
