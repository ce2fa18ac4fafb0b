"""``tjctl ui`` serves the app headless, on the address and port asked, without
telemetry."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tjctl.main import build_parser
from tjui import APP_PATH
from tjui.cli import cmd_ui, streamlit_command


def test_tjctl_has_a_ui_command_with_loopback_defaults() -> None:
    args = build_parser().parse_args(["ui"])
    assert args.func is cmd_ui
    assert (args.port, args.address) == (8501, "127.0.0.1")


def test_the_command_runs_the_app_headless_without_telemetry() -> None:
    command = streamlit_command(port=9123, address="0.0.0.0")
    assert command[1:5] == ["-m", "streamlit", "run", str(APP_PATH)]
    assert APP_PATH.is_file()
    for option in (
        "--server.headless=true",
        "--server.port=9123",
        "--server.address=0.0.0.0",
        "--browser.gatherUsageStats=false",
        "--client.showErrorDetails=none",
    ):
        assert option in command


@pytest.mark.parametrize("port", ["0", "70000", "http"])
def test_a_bad_port_is_refused(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ui", "--port", port])
    assert "--port" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_sigterm_stops_the_streamlit_server_too(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["SHARED_DATA_PATH"] = str(tmp_path / "shared")
    ui = subprocess.Popen(
        [sys.executable, "-m", "tjctl", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    servers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert ui.poll() is None and time.monotonic() < deadline, "the UI never listened"
            time.sleep(0.2)
        servers = _children(ui.pid)
        assert servers, "tjctl ui runs Streamlit as its child"
        ui.send_signal(signal.SIGTERM)
        code = ui.wait(timeout=30)
        deadline = time.monotonic() + 15
        while (_listening(port) or any(_alive(p) for p in servers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(port), "the Streamlit server still listens after SIGTERM"
        assert not any(_alive(p) for p in servers)
        assert code == 128 + signal.SIGTERM
    finally:
        if ui.poll() is None:
            ui.kill()
            ui.wait()
        for pid in servers:  # the leaked server of a failed run, started by this test
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
