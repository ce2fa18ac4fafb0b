"""A run on a missing or broken dataset fails at once, says why, and records it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from trainer_testlib import make_config

from tjcontract.layout import STUDY_FILE
from tjtrainer.dataset_reader import DATASET_FILE, INFO_FILE, load_dataset
from tjtrainer.errors import DatasetError, DatasetMissingError, TrainingError
from tjtrainer.progress import RunState, read_progress
from tjtrainer.train import run_training


def write_broken(data_root: Path, spoil: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    """Replace the dataset by a spoilt copy without dataset.json (features inferred)."""
    folder = data_root / "datasets" / "15m"
    frame = spoil(pd.read_parquet(folder / DATASET_FILE))
    (folder / INFO_FILE).unlink()
    frame.to_parquet(folder / DATASET_FILE, index=False)
    return folder / DATASET_FILE


def failed_run(data_root: Path) -> tuple[str, Path]:
    config = make_config(data_root)
    with pytest.raises(TrainingError) as caught:
        run_training(config)
    progress = read_progress(config.run_dir)
    assert progress is not None and progress.state == RunState.FAILED
    assert progress.error == str(caught.value)
    assert progress.finished_at is not None and progress.trials == []
    assert not (data_root / "models").exists()
    return str(caught.value), config.run_dir


def test_missing_dataset_names_the_path_and_the_command(tmp_path: Path) -> None:
    message, _ = failed_run(tmp_path / "empty-root")
    expected = tmp_path / "empty-root" / "datasets" / "15m" / DATASET_FILE
    assert str(expected) in message
    assert "tjctl dataset synth --timeframe 15m" in message
    with pytest.raises(DatasetMissingError):
        load_dataset(tmp_path / "empty-root", "15m")


def _nan_feature(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[100, "ret_4"] = np.nan
    return frame


def _inf_label(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[200, "label_short"] = np.inf
    return frame


def _unsorted(frame: pd.DataFrame) -> pd.DataFrame:
    order = list(range(len(frame)))
    order[50], order[51] = order[51], order[50]
    return frame.iloc[order].reset_index(drop=True)


def _duplicate(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[60, "timestamp"] = frame.loc[59, "timestamp"]
    return frame


def _huge_feature(frame: pd.DataFrame) -> pd.DataFrame:
    frame["vol_16"] = frame["vol_16"].astype("float64")  # a float64 column, as users have
    frame.loc[10, "vol_16"] = 1e300
    return frame


def _text_feature(frame: pd.DataFrame) -> pd.DataFrame:
    frame["ret_1"] = frame["ret_1"].astype(str)
    return frame


CASES: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], list[str]]] = {
    "no label_short": (lambda f: f.drop(columns="label_short"), ["missing column(s) label_short"]),
    "no labels": (
        lambda f: f.drop(columns=["label_long", "label_short"]),
        ["missing column(s) label_long, label_short"],
    ),
    "no timestamp": (lambda f: f.drop(columns="timestamp"), ["missing column(s) timestamp"]),
    "NaN feature": (_nan_feature, ["NaN or infinite values in ret_4 (1 rows)", "row 100"]),
    "inf label": (_inf_label, ["label_short (1 rows)", "row 200"]),
    "unsorted": (_unsorted, ["row 51", "earlier than the row before"]),
    "duplicate": (_duplicate, ["row 60: duplicate timestamp"]),
    "too few rows": (
        lambda f: f.head(300),
        ["the walk-forward folds do not fit the data", "300 rows", "at least 1150 rows"],
    ),
    "text feature": (_text_feature, ["ret_1 are not numeric"]),
    "huge feature": (_huge_feature, ["too large for 32-bit floats in vol_16"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_dataset_fails_the_run_with_a_clear_error(data_root: Path, case: str) -> None:
    spoil, expected = CASES[case]
    path = write_broken(data_root, spoil)
    message, _ = failed_run(data_root)
    assert str(path) in message
    for part in expected:
        assert part in message


def _empty_values(data_root: Path, column: str, rows: list[int]) -> Path:
    """Store ``column`` with empty (null) values at ``rows``, as Arrow writers can."""
    path = data_root / "datasets" / "15m" / DATASET_FILE
    table = pq.read_table(path)
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[rows] = True
    index = table.column_names.index(column)
    emptied = pa.array(table.column(column).to_pandas(), mask=mask, type=table.schema[index].type)
    pq.write_table(table.set_column(index, column, emptied), path)
    (path.parent / INFO_FILE).unlink()
    return path


def test_empty_feature_values_are_named_like_nan(data_root: Path) -> None:
    path = _empty_values(data_root, "ret_8", [70, 90])
    with pytest.raises(DatasetError) as caught:
        load_dataset(data_root, "15m")
    assert str(caught.value).startswith(f"{path}: NaN or infinite values in ret_8 (2 rows)")
    assert "first at row 70" in str(caught.value)


def test_an_empty_timestamp_is_named(data_root: Path) -> None:
    path = _empty_values(data_root, "timestamp", [33])
    with pytest.raises(DatasetError, match="row 33: timestamp is empty"):
        load_dataset(data_root, "15m")
    assert path.is_file()


def test_other_timestamp_encodings_read_as_the_same_instants(data_root: Path) -> None:
    """Parquet timestamps without a zone are UTC; ISO text is parsed (by pandas, the one
    case the reader needs it); a pandas index stored beside the rows is no feature."""
    reference = load_dataset(data_root, "15m")
    folder = data_root / "datasets" / "15m"
    frame = pd.read_parquet(folder / DATASET_FILE)
    (folder / INFO_FILE).unlink()
    utc = frame["timestamp"]
    for encoding in (utc.dt.tz_localize(None), utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ")):
        frame["timestamp"] = encoding.to_numpy()
        frame.index = pd.RangeIndex(len(frame)) + 5  # stored as a column __index_level_0__
        frame.to_parquet(folder / DATASET_FILE, index=True)
        loaded = load_dataset(data_root, "15m")
        np.testing.assert_array_equal(loaded.timestamps, reference.timestamps)
        assert loaded.features == reference.features
        np.testing.assert_array_equal(loaded.x, reference.x)
        np.testing.assert_array_equal(loaded.y_short, reference.y_short)


def _retyped(data_root: Path, changes: dict[str, pa.Array]) -> Path:
    """Store the dataset with the given columns replaced, without dataset.json."""
    path = data_root / "datasets" / "15m" / DATASET_FILE
    table = pq.read_table(path)
    for name, column in changes.items():
        table = table.set_column(table.column_names.index(name), name, column)
    pq.write_table(table, path)
    (path.parent / INFO_FILE).unlink(missing_ok=True)
    return path


def test_other_column_types_read_as_the_same_values(data_root: Path) -> None:
    """Timestamps in seconds, milliseconds or microseconds, with or without a zone, are the
    same instants; integer and boolean features are read as their float values."""
    reference = load_dataset(data_root, "15m")
    table = pq.read_table(data_root / "datasets" / "15m" / DATASET_FILE)
    seconds = table.column("timestamp").to_numpy().astype("datetime64[s]")
    features = reference.features
    whole = np.round(reference.x[:, 0] * 1e4).astype(np.int32)
    signs = reference.x[:, 1] > 0
    for unit, zone in (("s", "UTC"), ("ms", None), ("us", "Europe/Paris")):
        stamps = pa.array(seconds.astype(f"datetime64[{unit}]"), type=pa.timestamp(unit, zone))
        _retyped(
            data_root,
            {"timestamp": stamps, features[0]: pa.array(whole), features[1]: pa.array(signs)},
        )
        loaded = load_dataset(data_root, "15m")
        np.testing.assert_array_equal(loaded.timestamps, reference.timestamps)
        np.testing.assert_array_equal(loaded.x[:, 0], whole.astype(np.float32))
        np.testing.assert_array_equal(loaded.x[:, 1], signs.astype(np.float32))
        np.testing.assert_array_equal(loaded.x[:, 2:], reference.x[:, 2:])


def test_a_file_of_many_row_groups_reads_as_one_of_one(data_root: Path) -> None:
    """A column of one row group is used as it is; of several, its chunks are joined."""
    reference = load_dataset(data_root, "15m")
    path = data_root / "datasets" / "15m" / DATASET_FILE
    pq.write_table(pq.read_table(path), path, row_group_size=257)
    (path.parent / INFO_FILE).unlink()  # it names the file's checksum
    assert pq.ParquetFile(path).metadata.num_row_groups > 1
    loaded = load_dataset(data_root, "15m")
    np.testing.assert_array_equal(loaded.timestamps, reference.timestamps)
    np.testing.assert_array_equal(loaded.x, reference.x)
    np.testing.assert_array_equal(loaded.y_long, reference.y_long)
    np.testing.assert_array_equal(loaded.y_short, reference.y_short)


def test_a_timestamp_beyond_nanoseconds_is_named(data_root: Path) -> None:
    table = pq.read_table(data_root / "datasets" / "15m" / DATASET_FILE)
    seconds = table.column("timestamp").to_numpy().astype("datetime64[s]").astype(np.int64)
    seconds[-3:] = np.datetime64("2300-01-01", "s").astype(np.int64) + np.arange(3)
    path = _retyped(data_root, {"timestamp": pa.array(seconds, type=pa.timestamp("s", "UTC"))})
    rows = table.num_rows
    with pytest.raises(DatasetError) as caught:
        load_dataset(data_root, "15m")
    assert str(caught.value).startswith(f"{path}: row {rows - 3}: timestamp is out of range")


def test_dataset_json_of_another_file_is_refused(data_root: Path) -> None:
    folder = data_root / "datasets" / "15m"
    frame = pd.read_parquet(folder / DATASET_FILE)
    frame.head(2000).to_parquet(folder / DATASET_FILE, index=False)
    message, _ = failed_run(data_root)
    assert "describes another file" in message


def test_unreadable_parquet(data_root: Path) -> None:
    (data_root / "datasets" / "15m" / DATASET_FILE).write_bytes(b"not parquet at all")
    message, _ = failed_run(data_root)
    assert "not a readable Parquet file" in message


def test_bad_config_is_rejected_and_recorded(data_root: Path) -> None:
    config = make_config(data_root, n_trials=0)
    with pytest.raises(TrainingError, match="n_trials must be an integer from 1 to 10000, got 0"):
        run_training(config)
    progress = read_progress(config.run_dir)
    assert progress is not None and progress.state == RunState.FAILED
    with pytest.raises(
        TrainingError, match=r"train_ratio must be a number from 0\.5 to 0\.95, got 0\.99"
    ):
        run_training(make_config(data_root, "ratio", train_ratio=0.99))
    with pytest.raises(TrainingError, match="timeframe must be one of 15m, 1h"):
        run_training(make_config(data_root, "tf", timeframe="5m"))


def test_dataset_error_is_a_training_error() -> None:
    assert issubclass(DatasetError, TrainingError)


@pytest.mark.parametrize("label", ["label_long", "label_short"])
def test_a_label_listed_as_a_feature_is_refused_before_training(
    data_root: Path, label: str
) -> None:
    info_path = data_root / "datasets" / "15m" / INFO_FILE
    info = json.loads(info_path.read_text())
    info["features"].append(label)
    info_path.write_text(json.dumps(info))
    message, run_dir = failed_run(data_root)  # no trial, no model
    assert f"column(s) {label} listed as feature(s) in {INFO_FILE}" in message
    assert not (run_dir / STUDY_FILE).exists()
