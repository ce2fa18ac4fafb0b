"""``tjctl dashboard NAME``: optuna-dashboard (the ``dashboard`` extra) on the Optuna
studies of one TrainingJob, read-only, on loopback unless told otherwise.

The studies are the run folder's ``study.journal`` (Optuna's ``JournalStorage``, opened
by :func:`tjtrainer.studies.open_run_storage`: a write raises instead of happening; a
previous release's run folder not yet resumed shows its ``study.db``, opened with SQLite's
``mode=ro``), or, for a run whose studies live in PostgreSQL
(``TJ_STUDY_STORAGE_URL``, several workers), that database in read-only transactions,
showing only that run's studies.
"""

from __future__ import annotations

import argparse
import errno
import io
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tjcontract import checks
from tjcontract.layout import RUNS_FOLDER, STUDY_FILE
from tjcore.settings import Settings
from tjtrainer.config import STUDY_STORAGE_ENV
from tjtrainer.paths import UnsafePathError
from tjtrainer.progress import latest_run_dir

if TYPE_CHECKING:
    from optuna.storages import BaseStorage, RDBStorage

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class DashboardError(Exception):
    """Why the dashboard cannot be served (one line for the user)."""


def _read_only_sqlite(path: Path) -> RDBStorage:
    from optuna.storages import RDBStorage

    # SQLite's own read-only mode: a write (or a schema upgrade) fails instead of happening.
    return RDBStorage(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true", skip_table_creation=True)


def _read_only_postgres(url: str, prefix: str) -> RDBStorage:
    from optuna.storages import RDBStorage
    from optuna.study._frozen import FrozenStudy

    class RunStudies(RDBStorage):
        """The database's studies of one run only (others' runs share the database)."""

        def get_all_studies(self) -> list[FrozenStudy]:
            return [s for s in super().get_all_studies() if s.study_name.startswith(prefix)]

    return RunStudies(
        url,
        engine_kwargs={"connect_args": {"options": "-c default_transaction_read_only=on"}},
        skip_table_creation=True,
    )


def open_studies(
    data_root: Path, namespace: str, name: str, *, study_url: str | None
) -> tuple[BaseStorage, str]:
    """The read-only storage of the run ``namespace/name`` (its newest, if objects of that
    name ran more than once) and what to call it."""
    from tjtrainer.config import is_run_folder_storage
    from tjtrainer.shared_studies import storage_label, study_prefix
    from tjtrainer.studies import PREVIOUS_STUDY_FILE, open_run_storage

    try:
        run_dir = latest_run_dir(data_root, namespace, name)
    except UnsafePathError as err:
        raise DashboardError(str(err)) from None
    if run_dir is None:
        raise DashboardError(
            f"no TrainingJob {namespace}/{name} has run here (no run folder under "
            f"{data_root / RUNS_FOLDER / namespace}); `tjctl jobs` lists the jobs, -n names the "
            "namespace"
        )
    journal, previous = run_dir / STUDY_FILE, run_dir / PREVIOUS_STUDY_FILE
    try:
        if journal.is_file() and journal.stat().st_size > 0:
            return open_run_storage(run_dir), f"{journal}, read-only"
        if previous.is_file() and previous.stat().st_size > 0:
            return _read_only_sqlite(previous), f"{previous}, read-only"
        if study_url and not is_run_folder_storage(study_url):
            storage = _read_only_postgres(study_url, study_prefix(run_dir))
            return storage, f"{storage_label(study_url)}, read-only"
    except Exception as err:  # SQLAlchemy, sqlite3 or Optuna's own refusals
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()
        raise DashboardError(
            f"cannot read the study of {namespace}/{name}: {reason[0] if reason else err}"
        ) from None
    raise DashboardError(
        f"TrainingJob {namespace}/{name} has no study yet (no {journal}"
        + ("" if study_url else f", and no {STUDY_STORAGE_ENV}")
        + "): it has not started a trial"
    )


def read_only(app: Any) -> Any:
    """``app`` answering 405 to every request that could write (notes, new studies, …):
    the database refuses writes too, but with a stack trace in the log."""

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD", "OPTIONS"):
            return app(environ, start_response)
        body = b"tjctl dashboard serves the study read-only\n"
        start_response(
            "405 Method Not Allowed",
            [
                ("Content-Type", "text/plain"),
                ("Allow", "GET, HEAD"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    return guarded


class _QuietHandler(WSGIRequestHandler):
    timeout = 30  # a client that sends nothing does not hold the one serving thread

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_stderr(self) -> Any:
        assert isinstance(self.server, _Server)
        return _UnlessStopping(self.server.stop)


class _UnlessStopping(io.TextIOBase):
    """Standard error, silent once a signal asked the server to stop: the interrupt that
    cuts a reply short is then no error to print a traceback of."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def write(self, text: str) -> int:
        if not self.stop.is_set():
            sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _Server(WSGIServer):
    """One thread serving; ``stop`` is set by a signal (see :func:`cmd_dashboard`)."""

    timeout = 0.5  # how often the serving loop looks whether a signal asked it to stop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop = threading.Event()


def _listen(host: str, port: int, app: Any) -> _Server:
    try:
        return make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    except socket.gaierror:
        raise DashboardError(f"--host {host} is not an address or host name") from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise DashboardError(
                f"port {port} on {host} is taken (another server listens there); "
                "choose another with --port"
            ) from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise DashboardError(f"--host {host} is not an address of this machine") from None
        if err.errno == errno.EACCES:
            raise DashboardError(f"port {port} needs root; choose one above 1023") from None
        raise


def cmd_dashboard(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 1

    try:
        import optuna_dashboard
    except ModuleNotFoundError:
        return fail(
            "optuna-dashboard is not installed: pip install 'trainingjob-operator[dashboard]'"
        )
    import os

    settings = Settings.from_env()
    study_url = args.study_storage or os.environ.get(STUDY_STORAGE_ENV) or None
    try:
        storage, where = open_studies(
            settings.shared_data_path, args.namespace, args.name, study_url=study_url
        )
        server = _listen(args.host, args.port, read_only(optuna_dashboard.wsgi(storage)))
    except DashboardError as err:
        return fail(str(err))

    stop = server.stop

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        # wsgiref swallows an exception raised while it answers a request (its handler
        # catches everything to send a 500), so the flag ends the loop below as well.
        stop.set()
        raise KeyboardInterrupt

    # SIGINT too: a shell without job control starts background commands ignoring it.
    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)}
    address = f"[{args.host}]" if ":" in args.host else args.host
    try:  # a signal right after the line below is a stop too
        print(
            f"optuna-dashboard of {args.namespace}/{args.name} ({where}) on "
            f"http://{address}:{server.server_port}/ (Ctrl-C stops it)",
            flush=True,
        )
        while not stop.is_set():
            server.handle_request()
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.server_close()
        engine = getattr(storage, "engine", None)  # an RDBStorage's connections
        if engine is not None:
            engine.dispose()
    return 0


_port = checks.flag_type(checks.port(zero_for_any=True))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tjctl dashboard`` to ``tjctl``'s subcommands."""
    dashboard = sub.add_parser(
        "dashboard", help="serve optuna-dashboard on a TrainingJob's study (read-only)"
    )
    dashboard.add_argument("name", help="the TrainingJob's name (metadata.name)")
    dashboard.add_argument("-n", "--namespace", default="default", help="(default)")
    dashboard.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on ({DEFAULT_HOST})"
    )
    dashboard.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT}; 0: any free)"
    )
    dashboard.add_argument(
        "--study-storage",
        help=f"the studies' PostgreSQL URL for runs of several workers (${STUDY_STORAGE_ENV})",
    )
    dashboard.set_defaults(func=cmd_dashboard)
