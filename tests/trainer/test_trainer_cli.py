"""`python -m tjtrainer` and the dataset commands that tjctl mounts."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tjtrainer.cli import add_dataset_parser, main
from tjtrainer.exitcodes import EXIT_PERMANENT
from tjtrainer.progress import RunState, read_progress
from tjtrainer.synth import synth_candles


@pytest.fixture(autouse=True)
def keep_sigterm_handler() -> Iterator[None]:
    """`train` installs a SIGTERM handler; give pytest its own back."""
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def test_dataset_synth_prints_where_and_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["dataset", "synth", "--timeframe", "1h", "--rows", "1200", "--seed", "3",
                 "--horizon", "2", "--data-root", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    path = tmp_path / "datasets" / "1h" / "dataset.parquet"
    assert code == 0
    assert f"dataset written to {path}: 1200 rows" in out
    assert "horizon 2" in out
    assert len(pd.read_parquet(path)) == 1200


def test_data_root_defaults_to_shared_data_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SHARED_DATA_PATH", str(tmp_path / "from-env"))
    assert main(["dataset", "synth", "--timeframe", "15m", "--rows", "1200"]) == 0
    assert (tmp_path / "from-env" / "datasets" / "15m" / "dataset.parquet").exists()
    monkeypatch.delenv("SHARED_DATA_PATH")
    monkeypatch.chdir(tmp_path)
    assert main(["dataset", "synth", "--timeframe", "15m", "--rows", "1200"]) == 0
    assert (tmp_path / "shared-data" / "datasets" / "15m" / "dataset.parquet").exists()


def test_dataset_build_from_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "candles.csv"
    synth_candles("15m", 1300, seed=1).to_csv(csv, index=False)
    code = main(["dataset", "build", "--ohlcv", str(csv), "--timeframe", "15m",
                 "--cost-bps", "5", "--data-root", str(tmp_path)])  # fmt: skip
    assert code == 0
    assert "1200 rows of 15m candles" in capsys.readouterr().out  # 1300 - 96 warm-up - 4


def test_dataset_build_error_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "candles.csv"
    synth_candles("15m", 500, seed=1).drop(columns="volume").to_csv(csv, index=False)
    code = main(["dataset", "build", "--ohlcv", str(csv), "--timeframe", "15m",
                 "--data-root", str(tmp_path)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: ") and "missing column(s) volume" in err[-1]


def test_dataset_parser_mounts_into_another_cli(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="tjctl")
    add_dataset_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["dataset", "synth", "--timeframe", "15m", "--rows", "1200", "--data-root", str(tmp_path)]
    )
    assert args.func(args) == 0
    assert (tmp_path / "datasets" / "15m" / "dataset.json").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--n-trials", "0"], "--n-trials must be an integer from 1 to 10000, got 0"),
        (["--n-trials", "two"], "--n-trials must be an integer from 1 to 10000, got 'two'"),
        (["--train-ratio", "0.3"], "--train-ratio must be a number from 0.5 to 0.95, got 0.3"),
        (["--train-ratio", "x"], "--train-ratio must be a number"),
        (["--timeframe", "5m"], "invalid choice: '5m'"),
        (["--parallelism", "0"], "--parallelism must be an integer from 1 to 16"),
        (["--parallelism", "17"], "--parallelism must be an integer from 1 to 16, got 17"),
    ],
)
def test_bad_train_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    base = {"--timeframe": "15m", "--run-dir": str(tmp_path / "run")}
    argv = ["train"]
    for key, value in base.items():
        if key not in arguments:
            argv += [key, value]
    with pytest.raises(SystemExit) as caught:
        main(argv + arguments)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_failed_train_exits_permanent_error_last_on_stderr_and_in_termination_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    termination = tmp_path / "termination-log"
    run_dir = tmp_path / "run"
    code = main(["train", "--timeframe", "15m", "--n-trials", "2", "--run-dir", str(run_dir),
                 "--data-root", str(tmp_path / "nothing-here"),
                 "--termination-log", str(termination)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_PERMANENT
    assert err[-1].startswith("error: no dataset for timeframe 15m")
    assert "tjctl dataset synth --timeframe 15m" in err[-1]
    assert termination.read_text().strip() == err[-1].removeprefix("error: ")
    progress = read_progress(run_dir)
    assert progress is not None and progress.state == RunState.FAILED


def test_train_prints_one_line_per_trial(
    data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--timeframe", "15m", "--n-trials", "2", "--seed", "1",
                 "--run-dir", str(data_root / "runs" / "cli"),
                 "--data-root", str(data_root)])  # fmt: skip
    out = capsys.readouterr().out
    trial_lines = [line for line in out.splitlines() if line.startswith("trial ")]
    assert code == 0
    assert [line.split()[1] for line in trial_lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert "completed: model version 15m_" in out


def _tjctl_dataset(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tjctl", "dataset", *args, "--data-root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_synth_with_too_few_rows_keeps_the_usable_dataset(tmp_path: Path) -> None:
    assert (
        _tjctl_dataset("synth", "--timeframe", "15m", "--rows", "1200", root=tmp_path).returncode
        == 0
    )
    path = tmp_path / "datasets" / "15m" / "dataset.parquet"
    before = path.read_bytes()
    line = _error_line(_tjctl_dataset("synth", "--timeframe", "15m", "--rows", "10", root=tmp_path))
    assert "10 rows are too few to train with the default spec" in line
    assert "ask for --rows 1150 or more, or add --force" in line
    assert path.read_bytes() == before
    forced = _tjctl_dataset("synth", "--timeframe", "15m", "--rows", "10", "--force", root=tmp_path)
    assert forced.returncode == 0 and len(pd.read_parquet(path)) == 10


def test_synth_with_a_negative_seed_is_one_error_line(tmp_path: Path) -> None:
    line = _error_line(_tjctl_dataset("synth", "--timeframe", "1h", "--seed", "-1", root=tmp_path))
    assert "--seed must be an integer >= 0, got -1" in line


def test_a_dataset_on_a_read_only_volume_is_one_error_line(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=16m", "tmpfs", str(volume)]
    ).returncode:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        done = _tjctl_dataset("synth", "--timeframe", "15m", "--rows", "1200", root=volume)
        line = _error_line(done)
        assert f"cannot write the dataset in {volume / 'datasets' / '15m'}" in line
        assert "Read-only file system" in line
    finally:
        subprocess.run(["umount", str(volume)], check=True)
