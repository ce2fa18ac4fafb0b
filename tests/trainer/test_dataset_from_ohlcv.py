"""Datasets from OHLCV CSV files: the formats people have, and a clear error for the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tjtrainer.dataset_reader import DATASET_FILE
from tjtrainer.datasets import build_dataset_from_csv, build_frame
from tjtrainer.errors import DatasetError, OhlcvError
from tjtrainer.ohlcv import read_ohlcv_csv
from tjtrainer.synth import synth_candles

CANDLES = 1300  # 1200 rows: enough for a run with the default spec


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return synth_candles("15m", CANDLES, seed=21)


def write_csv(path: Path, candles: pd.DataFrame, **renames: str) -> Path:
    frame = candles.copy()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.rename(columns=renames).to_csv(path, index=False)
    return path


def edit_line(path: Path, line: int, column: str, value: str) -> None:
    """Set ``column`` on 1-based ``line`` of the CSV file (line 1 is the header)."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def test_build_from_csv_gives_the_same_rows_as_the_candles(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    csv = write_csv(tmp_path / "btc.csv", candles)
    path, info = build_dataset_from_csv(tmp_path / "shared", csv, "15m", horizon=4)
    assert path == tmp_path / "shared" / "datasets" / "15m" / DATASET_FILE
    built = pd.read_parquet(path)
    expected = build_frame(candles, horizon=4)
    assert info.rows == len(built) == CANDLES - 96 - 4
    assert info.source["kind"] == "ohlcv" and info.source["candles"] == CANDLES
    np.testing.assert_allclose(
        built.drop(columns="timestamp").to_numpy(),
        expected.drop(columns="timestamp").to_numpy(),
        rtol=1e-6,
    )


def test_headers_in_any_case_and_extra_columns(tmp_path: Path, candles: pd.DataFrame) -> None:
    csv = write_csv(
        tmp_path / "upper.csv",
        candles.assign(trades=7),
        timestamp="Timestamp",
        open="OPEN",
        high="High",
        low="low",
        close="Close",
        volume="Volume",
    )
    read = read_ohlcv_csv(csv, timeframe="15m")
    assert list(read.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    np.testing.assert_allclose(read["close"], candles["close"], rtol=1e-12)


def test_unnamed_index_column_as_timestamp(tmp_path: Path, candles: pd.DataFrame) -> None:
    csv = tmp_path / "indexed.csv"
    candles.set_index("timestamp").rename_axis(None).to_csv(csv)
    assert csv.read_text().startswith(",open,")
    read = read_ohlcv_csv(csv, timeframe="15m")
    assert (read["timestamp"] == candles["timestamp"]).all()


def test_date_column_with_epoch_milliseconds(tmp_path: Path, candles: pd.DataFrame) -> None:
    frame = candles.copy()
    frame["timestamp"] = frame["timestamp"].astype("int64") // 10**6
    csv = tmp_path / "epoch.csv"
    frame.rename(columns={"timestamp": "Date"}).to_csv(csv, index=False)
    read = read_ohlcv_csv(csv, timeframe="15m")
    assert (read["timestamp"] == candles["timestamp"]).all()


BAD_CASES = {
    "missing volume": (lambda p: _drop_column(p, "volume"), "missing column(s) volume"),
    "no timestamp": (
        lambda p: _rename_column(p, "timestamp", "when"),
        "missing column(s) timestamp",
    ),
    "bad timestamp": (
        lambda p: edit_line(p, 5, "timestamp", "yesterday"),
        "line 5: timestamp 'yesterday'",
    ),
    "bad number": (
        lambda p: edit_line(p, 7, "close", "abc"),
        "line 7: close 'abc' is not a finite number",
    ),
    "empty value": (
        lambda p: edit_line(p, 8, "high", ""),
        "line 8: high '' is not a finite number",
    ),
    "infinite value": (
        lambda p: edit_line(p, 8, "low", "inf"),
        "line 8: low 'inf' is not a finite",
    ),
    "zero price": (
        lambda p: edit_line(p, 9, "close", "0"),
        "line 9: close is 0.0; prices must be > 0",
    ),
    "negative price": (lambda p: edit_line(p, 10, "open", "-5"), "line 10: open is -5.0"),
    "negative volume": (lambda p: edit_line(p, 11, "volume", "-1"), "line 11: volume is negative"),
    "high below low": (lambda p: edit_line(p, 12, "high", "1"), "line 12: high 1.0 is below low"),
    "low above high": (
        lambda p: edit_line(p, 17, "low", "1000000"),
        "line 17: high",  # "... is below low 1000000.0"
    ),
    "open above high": (
        lambda p: edit_line(p, 13, "open", "1000000"),
        "line 13: open 1000000.0 is above high",
    ),
    "open below low": (lambda p: edit_line(p, 14, "open", "0.5"), "line 14: open 0.5 is below low"),
    "close above high": (
        lambda p: edit_line(p, 15, "close", "1000000"),
        "line 15: close 1000000.0 is above high",
    ),
    "close below low": (
        lambda p: edit_line(p, 16, "close", "0.5"),
        "line 16: close 0.5 is below low",
    ),
    "unsorted": (lambda p: _swap_lines(p, 20, 21), "line 21: timestamp"),
    "duplicate": (lambda p: _duplicate_line(p, 30), "line 31: duplicate timestamp"),
    "empty file": (lambda p: p.write_text(""), "the file is empty"),
    "header only": (lambda p: p.write_text("timestamp,open,high,low,close,volume\n"), "no candles"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_csv_gets_a_clear_error_and_writes_nothing(
    tmp_path: Path, candles: pd.DataFrame, case: str
) -> None:
    spoil, message = BAD_CASES[case]
    csv = write_csv(tmp_path / "bad.csv", candles)
    spoil(csv)
    with pytest.raises(OhlcvError) as caught:
        build_dataset_from_csv(tmp_path / "shared", csv, "15m")
    assert message in str(caught.value)
    assert str(csv) in str(caught.value)
    assert not (tmp_path / "shared" / "datasets").exists()


def test_unsorted_message_says_what_to_do(tmp_path: Path, candles: pd.DataFrame) -> None:
    csv = write_csv(tmp_path / "bad.csv", candles)
    _swap_lines(csv, 20, 21)
    with pytest.raises(OhlcvError, match="sorted by time, oldest first"):
        read_ohlcv_csv(csv)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OhlcvError, match="no such file"):
        build_dataset_from_csv(tmp_path, tmp_path / "nope.csv", "15m")


def test_timeframe_must_match_the_candles(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "hourly.csv", synth_candles("1h", 300, seed=1))
    with pytest.raises(OhlcvError, match=r"1h|0 days 01:00:00"):
        build_dataset_from_csv(tmp_path, csv, "15m")


def test_too_few_candles(tmp_path: Path, candles: pd.DataFrame) -> None:
    csv = write_csv(tmp_path / "short.csv", candles.head(60))
    with pytest.raises(DatasetError, match="60 candles are too few"):
        build_dataset_from_csv(tmp_path, csv, "15m")


def _drop_column(path: Path, column: str) -> None:
    pd.read_csv(path).drop(columns=column).to_csv(path, index=False)


def _rename_column(path: Path, old: str, new: str) -> None:
    pd.read_csv(path).rename(columns={old: new}).to_csv(path, index=False)


def _swap_lines(path: Path, first: int, second: int) -> None:
    lines = path.read_text().splitlines()
    lines[first - 1], lines[second - 1] = lines[second - 1], lines[first - 1]
    path.write_text("\n".join(lines) + "\n")


def _duplicate_line(path: Path, line: int) -> None:
    lines = path.read_text().splitlines()
    lines.insert(line, lines[line - 1])
    path.write_text("\n".join(lines) + "\n")


def test_the_first_candle_outside_its_range_is_named(tmp_path: Path, candles: pd.DataFrame) -> None:
    csv = write_csv(tmp_path / "bad.csv", candles)
    edit_line(csv, 40, "close", "1000000")
    edit_line(csv, 25, "open", "1000000")
    with pytest.raises(OhlcvError) as caught:
        build_dataset_from_csv(tmp_path / "shared", csv, "15m")
    assert "line 25: open 1000000.0 is above high" in str(caught.value)
    assert "must lie between its low and its high" in str(caught.value)


def test_a_csv_too_small_to_train_is_refused_unless_forced(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    csv = write_csv(tmp_path / "small.csv", candles.head(400))
    with pytest.raises(DatasetError, match="300 rows are too few to train with the default spec"):
        build_dataset_from_csv(tmp_path / "shared", csv, "15m")
    assert not (tmp_path / "shared" / "datasets").exists()
    _, info = build_dataset_from_csv(tmp_path / "shared", csv, "15m", force=True)
    assert info.rows == 300
