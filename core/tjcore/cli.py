"""Core's commands of ``tjctl`` (the ``tjctl`` package puts them together with the others).

``run``, ``submit``, ``jobs``, ``show``, ``cancel``, ``worker``, ``crd``, plus ``models`` and
``dashboard`` from their modules; heavy imports happen only when a command runs, so
``tjctl --help`` and ``tjctl jobs`` stay fast.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from tjcontract import checks
from tjcontract.names import flag_name, python_name
from tjcontract.spec import FIELDS_BY_NAME
from tjcontract.words import RunState
from tjcore.settings import (
    Settings,
    SettingsError,
    check_database_driver,
    redact_text,
    redact_url,
)
from tjcore.spec import SpecError, load_manifest, validate_name, validate_spec
from tjcore.store import JobRow, JobStore, QueueFullError

# The spec fields `tjctl submit` takes as flags (those of the UI's form).
SUBMIT_FIELDS = (
    "timeframe",
    "nTrials",
    "trainRatio",
    "seed",
    "parallelism",
    "cvFolds",
    "embargo",
    "promotion",
)


# The largest id or count SQLite's INTEGER holds.
MAX_INT = 2**63 - 1


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _read_only(path: Path) -> bool:
    """Whether the nearest existing folder of ``path`` is on a read-only filesystem."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _explain(err: SQLAlchemyError | OSError) -> str:
    """One line about a database or file error that reached the command line."""
    from tjcore.runner import failure_message

    settings = Settings.from_env()
    database = make_url(settings.database_url).database
    places = [Path(database)] if settings.database_url.startswith("sqlite") and database else []
    places.append(settings.shared_data_path)
    filename = getattr(err, "filename", None)
    if isinstance(err, OSError) and err.errno == errno.EROFS and filename:
        places.insert(0, Path(filename))
    for place in places:
        if _read_only(place):
            return (
                f"{place} is on a read-only filesystem, and tjctl writes the training_jobs "
                "table and the run folders there; mount it read-write or point "
                "SHARED_DATA_PATH (or DATABASE_URL) at a writable place"
            )
    message = failure_message(err, where=settings.shared_data_path)
    if isinstance(err, SQLAlchemyError):
        message = (
            f"cannot use the training_jobs table at {redact_url(settings.database_url)}: {message}"
        )
    return redact_text(message, settings.database_url)


def _open_store(url: str, *, readonly: bool = False) -> JobStore:
    """The store of ``url``; a missing driver is a :class:`SettingsError`."""
    check_database_driver(url)
    return JobStore(url, readonly=readonly)


def _store(*, readonly: bool = False) -> JobStore:
    return _open_store(Settings.from_env().database_url, readonly=readonly)


def cmd_run(args: argparse.Namespace) -> int:
    """``tjctl run``: SIGTERM stops it as Ctrl-C does (the row ends ``failed`` and the
    same command resumes); a full disk or a broken table is one ``error:`` line."""

    settings = Settings.from_env()
    terminated: list[int] = []

    def on_term(signum: int, _frame: FrameType | None) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        return _run_manifest(args, settings)
    except KeyboardInterrupt:
        if terminated:
            _fail("interrupted by SIGTERM; run the same command again to resume")
            return 128 + signal.SIGTERM
        _fail("interrupted; run the same command again to resume")
        return 130
    except (SQLAlchemyError, OSError) as err:
        return _fail(_explain(err))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_manifest(args: argparse.Namespace, settings: Settings) -> int:
    from tjcore.runner import new_run_uid, run_row, running_elsewhere, workers_refusal

    try:
        manifest = load_manifest(Path(args.file), default_namespace=args.namespace)
    except SpecError as err:
        return _fail(str(err))
    if args.name:
        try:
            manifest = replace(manifest, name=validate_name(args.name, where="--name"))
        except SpecError as err:
            return _fail(str(err))
    if manifest.spec.cancel:
        return _fail(f"{args.file}: spec.cancel is true; nothing to run")
    if manifest.spec.suspend:
        return _fail(f"{args.file}: spec.suspend is true; set it to false to run it")
    spec = manifest.spec
    refusal = workers_refusal(spec.workers, settings.database_url)
    if refusal:
        return _fail(refusal)
    store = _open_store(settings.database_url)
    row = store.get_by_name(manifest.namespace, manifest.name)
    if row is None:
        job_id = store.submit_spec(
            spec,
            source="tjctl-run",
            namespace=manifest.namespace,
            name=manifest.name,
            uid=new_run_uid(),
        )
        row = store.get(job_id)
        assert row is not None
    else:
        wanted = (
            spec.timeframe,
            spec.nTrials,
            spec.trainRatio,
            spec.seed,
            spec.cvFolds,
            spec.embargo,
            spec.promotion,
        )
        found = (
            row.timeframe,
            row.n_trials,
            row.train_ratio,
            row.seed,
            row.cv_folds,
            row.embargo,
            row.promotion,
        )
        if wanted != found:
            return _fail(
                f"TrainingJob {manifest.namespace}/{manifest.name} ran before with another spec "
                f"(timeframe, nTrials, trainRatio, seed, cvFolds, embargo, promotion = {found}); "
                "give this one another metadata.name"
            )
        busy = running_elsewhere(
            row, data_root=settings.shared_data_path, lease_seconds=settings.lease_seconds
        )
        if busy:
            return _fail(busy)
        if row.status == RunState.COMPLETED:
            print(
                f"TrainingJob {manifest.namespace}/{manifest.name} completed already "
                f"(job {row.id}, model {row.model_version}); nothing to do"
            )
            return 0
    print(
        f"TrainingJob {manifest.namespace}/{manifest.name}: job {row.id}, {spec.timeframe}, "
        f"{spec.nTrials} trials per model, trainRatio {spec.trainRatio}",
        file=sys.stderr,
    )
    outcome = run_row(
        store,
        row,
        data_root=settings.shared_data_path,
        show_progress=not args.no_progress,
        lease_seconds=settings.lease_seconds,
        workers=spec.workers,
        study_storage=settings.database_url,
        warm_start=spec.warmStart,
    )
    if outcome.exit_code:
        return _fail(outcome.message)
    print(outcome.message)
    return 0


def _flag_message(err: SpecError) -> str:
    return err.describe("invalid options", {name: flag_name(name) for name in SUBMIT_FIELDS})


def cmd_submit(args: argparse.Namespace) -> int:
    try:
        spec = validate_spec({name: getattr(args, python_name(name)) for name in SUBMIT_FIELDS})
    except SpecError as err:
        return _fail(_flag_message(err))
    settings = Settings.from_env()
    try:
        job_id = _store().submit_spec(
            spec, source="tjctl-submit", max_pending=settings.max_queued_jobs
        )
    except QueueFullError as err:
        return _fail(str(err))
    print(
        f"job {job_id} pending: {spec.timeframe}, {spec.nTrials} trials per model; "
        "a running operator or `tjctl worker` picks it up"
    )
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def cmd_jobs(args: argparse.Namespace) -> int:
    rows = _store().list_jobs(limit=args.limit, status=args.status)
    if args.output == "json":
        print(json.dumps([vars(r) | {"trial_log": len(r.trial_log)} for r in rows], indent=2))
        return 0
    header = (
        "ID",
        "STATUS",
        "TF",
        "TRIAL",
        "PROGRESS",
        "BEST LONG",
        "BEST SHORT",
        "VERDICT LONG",
        "VERDICT SHORT",
        "VERSION",
        "NAME",
        "REQUESTED",
    )
    lines = [header] + [
        (
            str(r.id),
            f"{r.status} (damaged)" if r.damaged else r.status,
            r.timeframe,
            f"{r.current_trial}/{r.total_trials}",
            f"{r.progress_pct:.0f}%",
            _fmt(r.best_score_long),
            _fmt(r.best_score_short),
            r.verdict_long or "-",
            r.verdict_short or "-",
            r.model_version or "-",
            f"{r.namespace}/{r.name}" if r.name else "-",
            r.requested_at,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    row = _store().get(args.id)
    if row is None:
        return _fail(f"no training job with id {args.id}; `tjctl jobs` lists them")
    print(json.dumps(vars(row), indent=2))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    try:
        row: JobRow = _store().request_cancel(args.id)
    except (LookupError, ValueError) as err:
        return _fail(str(err.args[0]))
    if row.status == RunState.CANCELLED:
        print(f"job {row.id} cancelled before it started")
    else:
        print(f"job {row.id}: cancel requested; it stops after its current trial")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from tjcore.worker import serve

    settings = Settings.from_env()
    interval = args.interval if args.interval is not None else settings.poll_interval
    if not math.isfinite(interval) or interval <= 0:
        return _fail(f"--interval must be a finite number of seconds > 0, got {interval}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    where = redact_url(settings.database_url)
    logging.getLogger(__name__).info("worker polling %s every %.1f s", where, interval)
    store = _open_store(settings.database_url)  # main() explains a failure in one line
    try:
        return serve(
            store,
            data_root=settings.shared_data_path,
            interval=interval,
            once=args.once,
            show_progress=not args.no_progress,
            lease_seconds=settings.lease_seconds,
        )
    except (SQLAlchemyError, OSError) as err:
        return _fail(_explain(err))


def cmd_crd(_args: argparse.Namespace) -> int:
    import yaml

    from tjcore.crd import build_crd

    print(yaml.safe_dump(build_crd(), sort_keys=False), end="")
    return 0


# A row id or a count the table can hold (SQLite's INTEGER).
_positive_int = checks.flag_type(checks.integer(1, MAX_INT))


def register(sub: argparse._SubParsersAction) -> None:
    """Add core's commands (the table, local runs, the CRD, models, the dashboard)."""
    run = sub.add_parser("run", help="train a TrainingJob manifest in this process")
    run.add_argument("-f", "--file", required=True, help="TrainingJob manifest (YAML)")
    run.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace when the manifest has none (default: default)",
    )
    run.add_argument("--name", help="run under this name instead of metadata.name")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    submit = sub.add_parser("submit", help="queue a pending job, as the UI's Start button does")
    for name in SUBMIT_FIELDS:
        spec_field = FIELDS_BY_NAME[name]
        default = "" if spec_field.default is None else f" (default: {spec_field.default})"
        submit.add_argument(
            flag_name(name),
            type={"integer": int, "number": float}.get(spec_field.type, str),
            default=spec_field.default,
            required=spec_field.required,
            help=f"spec.{name}: {spec_field.allowed()}{default}",
        )
    submit.set_defaults(func=cmd_submit)

    jobs = sub.add_parser("jobs", help="list training jobs, newest first")
    jobs.add_argument("--limit", type=_positive_int, default=20)
    jobs.add_argument("--status", choices=[s.value for s in RunState])
    jobs.add_argument("-o", "--output", choices=["table", "json"], default="table")
    jobs.set_defaults(func=cmd_jobs)

    show = sub.add_parser("show", help="one job with its whole trial log, as JSON")
    show.add_argument("id", type=_positive_int)
    show.set_defaults(func=cmd_show)

    cancel = sub.add_parser("cancel", help="ask a job to stop after its current trial")
    cancel.add_argument("id", type=_positive_int)
    cancel.set_defaults(func=cmd_cancel)

    worker = sub.add_parser("worker", help="run pending jobs one at a time (no cluster)")
    worker.add_argument(
        "--interval",
        type=float,
        default=None,
        help="seconds between looks for pending rows (default: TRAINING_POLL_INTERVAL or 5)",
    )
    worker.add_argument("--once", action="store_true", help="exit when no job is pending")
    worker.add_argument("--no-progress", action="store_true", help="no progress bar")
    worker.set_defaults(func=cmd_worker)

    crd = sub.add_parser("crd", help="print the TrainingJob CustomResourceDefinition")
    crd.set_defaults(func=cmd_crd)

    from tjcore import dashboard, models_cli

    models_cli.register(sub)
    dashboard.register(sub)


# Errors a command may end with that are the user's or the environment's to fix.
USER_ERRORS = (SettingsError, SQLAlchemyError, OSError)


def explain(err: SettingsError | SQLAlchemyError | OSError) -> str:
    """One line for an error of :data:`USER_ERRORS` that reached the command line."""
    return str(err) if isinstance(err, SettingsError) else _explain(err)
