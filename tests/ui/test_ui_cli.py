"""``tjctl ui`` serves the app headless, on the address and port asked, without
telemetry."""

from __future__ import annotations

import pytest

from tjcore.cli import build_parser
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
