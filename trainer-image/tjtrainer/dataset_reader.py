"""Reading a dataset for training: ``dataset.parquet`` and ``dataset.json`` checked with
every test that matters, into the arrays XGBoost takes.

The file is read with PyArrow alone, and its columns reach NumPy through DLPack: the
trainer's process never imports pandas (0.3-0.5 s of its start), which only making a
dataset (:mod:`tjtrainer.datasets`) needs. PyArrow's own ``to_numpy`` imports pandas, so it
serves only the exceptions, where a message is due or the data are unusual: empty values,
and a ``timestamp`` column stored as text or numbers rather than as a Parquet timestamp,
which pandas parses as it always did.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tjcontract.files import sha256_file
from tjcontract.layout import datasets_dir
from tjcontract.names import TIMEFRAMES
from tjtrainer.errors import DatasetError, DatasetMissingError

DATASET_FILE = "dataset.parquet"
INFO_FILE = "dataset.json"
LABEL_COLUMNS = ("label_long", "label_short")
# Candles a label looks ahead when dataset.json does not say (it sets the purge gap).
DEFAULT_HORIZON = {"15m": 4, "1h": 4}


@dataclass(frozen=True)
class Dataset:
    """A loaded, checked dataset, as arrays ready for XGBoost."""

    path: Path
    timeframe: str
    features: list[str]
    timestamps: np.ndarray
    x: np.ndarray
    y_long: np.ndarray
    y_short: np.ndarray
    horizon: int
    checksum: str

    @property
    def rows(self) -> int:
        return len(self.timestamps)


def dataset_dir(data_root: Path, timeframe: str) -> Path:
    """``<data_root>/datasets/<timeframe>``; a timeframe is one of :data:`TIMEFRAMES`, never
    a path of its own."""
    if timeframe not in TIMEFRAMES:
        raise DatasetError(f"timeframe must be one of {', '.join(TIMEFRAMES)}, got {timeframe!r}")
    return datasets_dir(data_root) / timeframe


def iso_utc(value: np.datetime64) -> str:
    return f"{np.datetime_as_string(value, unit='s')}Z"


def missing_dataset_message(path: Path, timeframe: str) -> str:
    return (
        f"no dataset for timeframe {timeframe}: {path} does not exist; create one with "
        f"`tjctl dataset synth --timeframe {timeframe}` (synthetic candles) or "
        f"`tjctl dataset build --ohlcv FILE.csv --timeframe {timeframe}` (your candles)"
    )


def order_problem(nanoseconds: np.ndarray) -> tuple[int, bool] | None:
    """The first row whose timestamp (ns since the epoch) is not later than the row
    before, and whether it repeats it (else it goes back); ``None`` if time only rises.
    Candles and dataset rows must be in strictly rising time order."""
    steps = np.diff(nanoseconds)
    bad = steps <= 0
    if not bad.any():
        return None
    row = int(np.argmax(bad))
    return row + 1, bool(steps[row] == 0)


def load_dataset(data_root: Path, timeframe: str) -> Dataset:
    """Load and check the dataset of ``timeframe``; raise :class:`DatasetError` if unusable."""
    folder = dataset_dir(data_root, timeframe)
    path = folder / DATASET_FILE
    if not path.is_file():
        raise DatasetMissingError(missing_dataset_message(path, timeframe))
    # Hashed while it is parsed: both release the GIL (~40 ms of 280,000 rows' start).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataset-hash") as hashing:
        digest = hashing.submit(sha256_file, path)
        try:
            with pq.ParquetFile(path) as parquet:
                table = _without_pandas_index(parquet.read())
        except Exception as exc:
            raise DatasetError(f"{path}: not a readable Parquet file ({exc})") from None
        checksum = f"sha256:{digest.result()}"
    info = _read_info(folder / INFO_FILE, checksum)
    missing = [c for c in ("timestamp", *LABEL_COLUMNS) if c not in table.column_names]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; a dataset needs timestamp, "
            "the feature columns, label_long and label_short (see docs/DATASETS.md)"
        )
    features = _feature_columns(path, table, info)
    timestamps = _checked_timestamps(path, table.column("timestamp"))
    values = {name: _numbers(table.column(name)) for name in features}
    values.update({name: _float64(table.column(name)) for name in LABEL_COLUMNS})
    _check_finite(path, values, timestamps)
    horizon = int(info["horizon"]) if info else DEFAULT_HORIZON[timeframe]
    x = np.empty((table.num_rows, len(features)), dtype=np.float32)
    with np.errstate(over="ignore"):
        for index, name in enumerate(features):
            x[:, index] = values[name]
    if not np.isfinite(x).all():
        too_big = [f for i, f in enumerate(features) if not np.isfinite(x[:, i]).all()]
        raise DatasetError(
            f"{path}: values too large for 32-bit floats in {', '.join(too_big)}; "
            "rescale those features"
        )
    return Dataset(
        path=path,
        timeframe=timeframe,
        features=features,
        timestamps=timestamps,
        x=x,
        y_long=values["label_long"],
        y_short=values["label_short"],
        horizon=horizon,
        checksum=checksum,
    )


def _without_pandas_index(table: pa.Table) -> pa.Table:
    """The table without the index columns pandas may have stored beside the rows (a
    frame written with ``index=True``), which are no features."""
    metadata = table.schema.pandas_metadata or {}
    stored = [c for c in metadata.get("index_columns", []) if isinstance(c, str)]
    return table.drop_columns([c for c in stored if c in table.column_names])


def _read_info(path: Path, checksum: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not readable JSON ({exc})") from None
    if info.get("checksum") != checksum:
        raise DatasetError(
            f"{path} describes another file than {DATASET_FILE} beside it (checksum "
            f"{info.get('checksum')} != {checksum}); rebuild the dataset or delete {path.name}"
        )
    return info


def _feature_columns(path: Path, table: pa.Table, info: dict[str, Any] | None) -> list[str]:
    columns = table.column_names
    if info is not None:
        features = [str(c) for c in info.get("features", [])]
        absent = [c for c in features if c not in columns]
        if absent:
            raise DatasetError(f"{path}: feature column(s) {', '.join(absent)} are missing")
    else:
        features = [c for c in columns if c != "timestamp" and c not in LABEL_COLUMNS]
    if not features:
        raise DatasetError(f"{path}: no feature columns besides timestamp and the labels")
    leaky = [c for c in features if c in (*LABEL_COLUMNS, "timestamp")]
    if leaky:
        raise DatasetError(
            f"{path}: column(s) {', '.join(leaky)} listed as feature(s) in "
            f"{INFO_FILE}; a model that sees what it predicts scores perfectly in every test "
            f"and is useless on new candles: remove them from the features in {INFO_FILE} "
            "or write the dataset again"
        )
    wrong = [c for c in [*features, *LABEL_COLUMNS] if not _numeric(table.schema.field(c).type)]
    if wrong:
        raise DatasetError(f"{path}: column(s) {', '.join(wrong)} are not numeric")
    return features


def _numeric(kind: pa.DataType) -> bool:
    """What pandas calls a numeric column: integers, floats and booleans."""
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk as it is (a file of one row group), else
    its chunks joined (``combine_chunks`` copies even one chunk: 83 ms at 280,000 rows)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """The column's numbers (Arrow's own memory, read-only, when it has no empty value),
    an empty value as NaN. Without a cast: PyArrow's casts load ``pyarrow.compute`` (0.1 s
    of the trainer's start)."""
    values = _one_array(column)
    if values.null_count or pa.types.is_boolean(values.type):  # no DLPack for either
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.from_dlpack(values)


def _float64(column: pa.ChunkedArray) -> np.ndarray:
    """The column as float64, a copy of its own (an empty value as NaN)."""
    return np.array(_numbers(column), dtype=np.float64)


def _checked_timestamps(path: Path, column: pa.ChunkedArray) -> np.ndarray:
    """Nanoseconds since the epoch, UTC (a time without a zone is UTC), in rising order."""
    stamps = _one_array(column)
    if not pa.types.is_timestamp(stamps.type):
        empty, values = _parsed_by_pandas(path, column)
    elif stamps.null_count:
        empty = stamps.is_null().to_numpy(zero_copy_only=False)
    else:
        empty, values = np.zeros(len(stamps), dtype=bool), _nanoseconds(path, stamps)
    if empty.any():
        raise DatasetError(f"{path}: row {int(np.argmax(empty))}: timestamp is empty")
    values = np.array(values, dtype=np.int64)
    problem = order_problem(values)
    if problem is not None:
        row, repeated = problem
        stamp = _iso_text(values[row])
        if repeated:
            raise DatasetError(
                f"{path}: row {row}: duplicate timestamp {stamp}; each candle must appear once"
            )
        raise DatasetError(
            f"{path}: row {row}: timestamp {stamp} is earlier than the row before; rows "
            "must be sorted by time, oldest first"
        )
    return values.astype("datetime64[ns]")


_NANOSECONDS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def _nanoseconds(path: Path, stamps: pa.TimestampArray) -> np.ndarray:
    """A Parquet timestamp column (no empty value) as nanoseconds since the epoch, by
    its unit, without PyArrow's casts (see :func:`_float64`)."""
    factor = _NANOSECONDS_PER[stamps.type.unit]
    counts = np.from_dlpack(stamps.view(pa.int64()))
    limit = np.iinfo(np.int64).max // factor
    outside = (counts > limit) | (counts < -limit)
    if outside.any():
        row = int(np.argmax(outside))
        raise DatasetError(
            f"{path}: row {row}: timestamp is out of range (after 2262 or before 1677 in "
            "nanoseconds); write times between those years"
        )
    return counts * factor


def _parsed_by_pandas(path: Path, column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are empty, and nanoseconds since the epoch, of timestamps stored as text
    or numbers, read as pandas reads them (``to_datetime(..., utc=True)``)."""
    import pandas as pd  # only for a timestamp column that is not a Parquet timestamp

    try:
        stamps = pd.to_datetime(column.to_pandas(), utc=True)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: timestamp column is not made of dates ({exc})") from None
    empty = stamps.isna().to_numpy()
    naive = stamps.dt.tz_localize(None).to_numpy().astype("datetime64[ns]")
    return empty, naive.astype(np.int64)


def _iso_text(nanoseconds: np.int64) -> str:
    """A timestamp for a message, as ``2024-01-31T15:45:00+00:00``."""
    seconds, rest = divmod(int(nanoseconds), 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest // 1000)
    return moment.isoformat()


def _check_finite(path: Path, values: dict[str, np.ndarray], stamps: np.ndarray) -> None:
    problems = []
    first_row: int | None = None
    for name, column in values.items():
        bad = ~np.isfinite(column)
        if bad.any():
            problems.append(f"{name} ({int(bad.sum())} rows)")
            row = int(np.argmax(bad))
            first_row = row if first_row is None else min(first_row, row)
    if problems:
        assert first_row is not None
        when = _iso_text(stamps[first_row].astype(np.int64))
        raise DatasetError(
            f"{path}: NaN or infinite values in {', '.join(problems)}, first at row "
            f"{first_row} ({when}); drop or fill those rows and write the dataset again"
        )
