"""``tjctl ui``: serve the Streamlit UI headless (no browser, no telemetry)."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from types import FrameType

from tjcontract import checks
from tjui import APP_PATH

DEFAULT_PORT = 8501
DEFAULT_ADDRESS = "127.0.0.1"
STOP_GRACE_SECONDS = 10.0


_port = checks.flag_type(checks.port())


def streamlit_command(*, port: int, address: str) -> list[str]:
    """The ``streamlit run`` command line of the UI."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.headless=true",
        f"--server.port={port}",
        f"--server.address={address}",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
        # An unexpected error shows a short message, never a traceback.
        "--client.showErrorDetails=none",
        "--client.toolbarMode=minimal",
        "--global.developmentMode=false",
    ]


class _Terminated(Exception):
    """SIGTERM reached ``tjctl ui``."""


def _on_term(_signum: int, _frame: FrameType | None) -> None:
    raise _Terminated


def _stop(server: subprocess.Popen[bytes]) -> None:
    """End the Streamlit server (SIGTERM, then SIGKILL after a grace period)."""
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def cmd_ui(args: argparse.Namespace) -> int:
    """Run the UI until interrupted (Ctrl-C or SIGTERM, which also stop the Streamlit
    server); Streamlit's exit code."""
    command = streamlit_command(port=args.port, address=args.address)
    print(f"UI on http://{args.address}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    server: subprocess.Popen[bytes] | None = None
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        server = subprocess.Popen(command)
        return server.wait()
    except KeyboardInterrupt:
        return 130
    except _Terminated:
        return 128 + signal.SIGTERM
    finally:
        if server is not None:
            _stop(server)
        signal.signal(signal.SIGTERM, previous)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tjctl ui`` to ``tjctl``'s subcommands."""
    ui = sub.add_parser("ui", help="serve the Streamlit UI (start, watch, compare, cancel jobs)")
    ui.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port to listen on ({DEFAULT_PORT})"
    )
    ui.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help=f"address to listen on ({DEFAULT_ADDRESS}; 0.0.0.0 for all interfaces)",
    )
    ui.set_defaults(func=cmd_ui)
