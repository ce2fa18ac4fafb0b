"""Datasets on the shared volume: making them (synthetic or from OHLCV candles), writing
them atomically, and loading them for training with every check that matters.

Layout (see docs/DATASETS.md): ``<data_root>/datasets/<timeframe>/dataset.parquet`` with
``timestamp``, the feature columns, ``label_long`` and ``label_short``, and beside it
``dataset.json`` describing it (horizon, cost, features, rows, source, checksum).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tjcontract.files import atomic_output, atomic_write_bytes, sha256_file
from tjcontract.layout import datasets_dir
from tjcontract.names import TIMEFRAMES
from tjcontract.spec import DEFAULT_EMBARGO, DEFAULT_FOLDS, DEFAULT_TRAIN_RATIO
from tjcontract.times import utc_now
from tjtrainer.errors import DatasetError, DatasetMissingError
from tjtrainer.features import FEATURES, WARMUP_ROWS, compute_features
from tjtrainer.labels import (
    DEFAULT_COST_BPS,
    DEFAULT_HORIZON,
    DEFAULT_LABEL,
    DEFAULT_STOP_LOSS,
    DEFAULT_TAKE_PROFIT,
    LABEL_COLUMNS,
    LabelSpec,
    check_labels,
    label_candles,
    outcome_shares,
)
from tjtrainer.ohlcv import order_problem, read_ohlcv_csv, utc_nanoseconds
from tjtrainer.splits import minimum_rows
from tjtrainer.synth import synth_candles

DATASET_FILE = "dataset.parquet"
INFO_FILE = "dataset.json"
INFO_FORMAT = 1
DEFAULT_ROWS = {"15m": 70_000, "1h": 20_000}


@dataclass
class DatasetInfo:
    """What ``dataset.json`` says about ``dataset.parquet``."""

    timeframe: str
    horizon: int
    cost_bps: float
    features: list[str]
    rows: int
    first_timestamp: str
    last_timestamp: str
    source: dict[str, Any]
    checksum: str
    created_at: str = field(default_factory=utc_now)
    label_definition: str = LabelSpec(kind="forward").definition()
    labels: dict[str, Any] = field(default_factory=dict)
    format: int = INFO_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


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


@dataclass(frozen=True)
class Frame:
    """The rows of a dataset and what its labels are."""

    rows: pd.DataFrame
    labels: dict[str, Any]
    definition: str


def label_spec(
    *,
    horizon: int,
    cost_bps: float = DEFAULT_COST_BPS,
    label: str = DEFAULT_LABEL,
    take_profit: float = DEFAULT_TAKE_PROFIT,
    stop_loss: float = DEFAULT_STOP_LOSS,
) -> LabelSpec:
    return LabelSpec(
        kind=label,
        horizon=horizon,
        cost_bps=cost_bps,
        take_profit=take_profit,
        stop_loss=stop_loss,
    )


def build_frame(
    candles: pd.DataFrame,
    *,
    horizon: int,
    cost_bps: float = DEFAULT_COST_BPS,
    label: str = DEFAULT_LABEL,
    take_profit: float = DEFAULT_TAKE_PROFIT,
    stop_loss: float = DEFAULT_STOP_LOSS,
) -> pd.DataFrame:
    """Features (float32) and labels (float64) for ``candles``, without the warm-up rows,
    the last ``horizon`` rows (whose labels would need candles after the end) and the rows
    whose horizon spans a gap in the candles."""
    spec = label_spec(
        horizon=horizon,
        cost_bps=cost_bps,
        label=label,
        take_profit=take_profit,
        stop_loss=stop_loss,
    )
    return make_frame(candles, spec).rows


def make_frame(candles: pd.DataFrame, spec: LabelSpec) -> Frame:
    """:func:`build_frame` with the description of its labels for ``dataset.json``."""
    horizon = spec.horizon
    warmup = max(WARMUP_ROWS, spec.warmup)
    needed = warmup + horizon + 1
    if len(candles) < needed:
        raise DatasetError(
            f"{len(candles)} candles are too few: features need {warmup} candles of "
            f"history and labels {horizon} after, so at least {needed} candles"
        )
    features = compute_features(candles)
    labels = label_candles(candles, spec)
    frame = pd.concat([candles[["timestamp"]], features, labels.frame], axis=1)
    keep = np.zeros(len(frame), dtype=bool)
    keep[warmup : len(frame) - horizon] = True
    in_range = keep.copy()
    keep &= ~labels.gap_rows
    if not keep.any():
        raise DatasetError(
            f"no candle has a label: every horizon of {horizon} candles spans a gap in the "
            "candles; use a shorter --horizon or candles without gaps"
        )
    check_labels(candles, labels, keep)
    description = {
        **spec.describe(),
        "dropped_rows": {
            "warmup": warmup,
            "end": min(horizon, len(frame)),
            "gap": int((in_range & labels.gap_rows).sum()),
        },
        "outcomes": {
            model: outcome_shares(labels.outcomes[model][keep]) for model in labels.outcomes
        },
    }
    frame = frame.loc[keep].reset_index(drop=True)
    values = frame[[*FEATURES, *LABEL_COLUMNS]].to_numpy()
    if not np.isfinite(values).all():
        bad = [c for c in (*FEATURES, *LABEL_COLUMNS) if not np.isfinite(frame[c]).all()]
        raise DatasetError(f"features came out NaN/inf in column(s) {', '.join(bad)}")
    # XGBoost works in 32-bit floats: storing features so halves the file and its
    # loading time at no loss. Labels keep 64 bits (they are ranked and reported).
    rows = frame.astype(dict.fromkeys(FEATURES, "float32"))
    return Frame(rows=rows, labels=description, definition=spec.definition())


def write_dataset(
    made: Frame | pd.DataFrame,
    data_root: Path,
    *,
    timeframe: str,
    horizon: int,
    cost_bps: float,
    source: dict[str, Any],
) -> tuple[Path, DatasetInfo]:
    """Write the rows as the dataset of ``timeframe``, parquet first, then its description
    (a bare frame is described as forward-return labels)."""
    if isinstance(made, Frame):
        frame, labels, definition = made.rows, made.labels, made.definition
    else:
        spec = LabelSpec(kind="forward", horizon=horizon, cost_bps=cost_bps)
        frame, labels, definition = made, spec.describe(), spec.definition()
    folder = dataset_dir(data_root, timeframe)
    target = folder / DATASET_FILE
    try:
        with atomic_output(target) as tmp:
            frame.to_parquet(tmp, index=False)
    except OSError as exc:
        raise DatasetError(
            f"cannot write the dataset in {folder}: {exc.strerror or exc}"
            f"{f' ({exc.filename})' if exc.filename else ''}; the dataset in place, if any, "
            "is unchanged"
        ) from None
    info = DatasetInfo(
        timeframe=timeframe,
        horizon=horizon,
        cost_bps=cost_bps,
        features=[c for c in frame.columns if c != "timestamp" and c not in LABEL_COLUMNS],
        rows=len(frame),
        first_timestamp=_iso(frame["timestamp"].iloc[0]),
        last_timestamp=_iso(frame["timestamp"].iloc[-1]),
        source=source,
        checksum=f"sha256:{sha256_file(target)}",
        label_definition=definition,
        labels=labels,
    )
    try:
        atomic_write_bytes(folder / INFO_FILE, info.to_json().encode())
    except OSError as exc:
        raise DatasetError(
            f"cannot write {folder / INFO_FILE}: {exc.strerror or exc}; write the dataset again"
        ) from None
    return target, info


def check_trainable(rows: int, horizon: int, *, force: bool, fix: str) -> None:
    """Refuse (unless ``force``) a dataset of ``rows`` rows that no run with the default
    spec could train on, before anything is written."""
    needed = minimum_rows(horizon=horizon)
    if rows < needed and not force:
        raise DatasetError(
            f"{rows} rows are too few to train with the default spec (trainRatio "
            f"{DEFAULT_TRAIN_RATIO}, cvFolds {DEFAULT_FOLDS}, embargo {DEFAULT_EMBARGO}, "
            f"horizon {horizon} need at least {needed} rows); {fix}, or add --force to write "
            "it anyway; the dataset in place, if any, is unchanged"
        )


def synth_dataset(
    data_root: Path,
    timeframe: str,
    *,
    rows: int | None = None,
    seed: int = 0,
    horizon: int | None = None,
    cost_bps: float = DEFAULT_COST_BPS,
    label: str = DEFAULT_LABEL,
    take_profit: float = DEFAULT_TAKE_PROFIT,
    stop_loss: float = DEFAULT_STOP_LOSS,
    force: bool = False,
) -> tuple[Path, DatasetInfo]:
    """Make a synthetic dataset with exactly ``rows`` rows (default per timeframe); fewer
    than a default run needs only with ``force``."""
    dataset_dir(data_root, timeframe)  # refuses a timeframe it does not know
    rows = DEFAULT_ROWS[timeframe] if rows is None else rows
    horizon = DEFAULT_HORIZON[timeframe] if horizon is None else horizon
    if rows < 1:
        raise DatasetError(f"rows must be >= 1, got {rows}")
    if seed < 0:
        raise DatasetError(f"--seed must be an integer >= 0, got {seed}")
    check_trainable(
        rows, horizon, force=force, fix=f"ask for --rows {minimum_rows(horizon=horizon)} or more"
    )
    spec = label_spec(
        horizon=horizon,
        cost_bps=cost_bps,
        label=label,
        take_profit=take_profit,
        stop_loss=stop_loss,
    )
    warmup = max(WARMUP_ROWS, spec.warmup)
    candles = synth_candles(timeframe, rows + warmup + horizon, seed=seed)
    frame = make_frame(candles, spec)
    source = {"kind": "synth", "seed": seed, "candles": len(candles)}
    return write_dataset(
        frame, data_root, timeframe=timeframe, horizon=horizon, cost_bps=cost_bps, source=source
    )


def build_dataset_from_csv(
    data_root: Path,
    csv_path: Path,
    timeframe: str,
    *,
    horizon: int | None = None,
    cost_bps: float = DEFAULT_COST_BPS,
    label: str = DEFAULT_LABEL,
    take_profit: float = DEFAULT_TAKE_PROFIT,
    stop_loss: float = DEFAULT_STOP_LOSS,
    force: bool = False,
) -> tuple[Path, DatasetInfo]:
    """Make the dataset of ``timeframe`` from the candles in an OHLCV CSV file; one too
    small for a default run only with ``force``."""
    dataset_dir(data_root, timeframe)  # refuses a timeframe it does not know
    horizon = DEFAULT_HORIZON[timeframe] if horizon is None else horizon
    spec = label_spec(
        horizon=horizon,
        cost_bps=cost_bps,
        label=label,
        take_profit=take_profit,
        stop_loss=stop_loss,
    )
    candles = read_ohlcv_csv(csv_path, timeframe=timeframe)
    try:
        frame = make_frame(candles, spec)
        check_trainable(len(frame.rows), horizon, force=force, fix="use more candles")
    except DatasetError as exc:
        raise DatasetError(f"{csv_path}: {exc}") from None
    source = {
        "kind": "ohlcv",
        "path": str(csv_path.resolve()),
        "sha256": sha256_file(csv_path),
        "candles": len(candles),
    }
    return write_dataset(
        frame, data_root, timeframe=timeframe, horizon=horizon, cost_bps=cost_bps, source=source
    )


def _iso(value: Any) -> str:
    """ISO-8601 UTC with a ``Z``, seconds precision."""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_utc(value: np.datetime64) -> str:
    return f"{np.datetime_as_string(value, unit='s')}Z"


def missing_dataset_message(path: Path, timeframe: str) -> str:
    return (
        f"no dataset for timeframe {timeframe}: {path} does not exist; create one with "
        f"`tjctl dataset synth --timeframe {timeframe}` (synthetic candles) or "
        f"`tjctl dataset build --ohlcv FILE.csv --timeframe {timeframe}` (your candles)"
    )


def load_dataset(data_root: Path, timeframe: str) -> Dataset:
    """Load and check the dataset of ``timeframe``; raise :class:`DatasetError` if unusable."""
    folder = dataset_dir(data_root, timeframe)
    path = folder / DATASET_FILE
    if not path.is_file():
        raise DatasetMissingError(missing_dataset_message(path, timeframe))
    checksum = f"sha256:{sha256_file(path)}"
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:
        raise DatasetError(f"{path}: not a readable Parquet file ({exc})") from None
    info = _read_info(folder / INFO_FILE, checksum)
    missing = [c for c in ("timestamp", *LABEL_COLUMNS) if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; a dataset needs timestamp, "
            "the feature columns, label_long and label_short (see docs/DATASETS.md)"
        )
    features = _feature_columns(path, frame, info)
    timestamps = _checked_timestamps(path, frame["timestamp"])
    _check_finite(path, frame, [*features, *LABEL_COLUMNS], timestamps)
    horizon = int(info["horizon"]) if info else DEFAULT_HORIZON[timeframe]
    with np.errstate(over="ignore"):
        x = np.ascontiguousarray(frame[features].to_numpy(dtype=np.float32))
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
        y_long=frame["label_long"].to_numpy(dtype=np.float64),
        y_short=frame["label_short"].to_numpy(dtype=np.float64),
        horizon=horizon,
        checksum=checksum,
    )


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


def _feature_columns(path: Path, frame: pd.DataFrame, info: dict[str, Any] | None) -> list[str]:
    if info is not None:
        features = [str(c) for c in info.get("features", [])]
        absent = [c for c in features if c not in frame.columns]
        if absent:
            raise DatasetError(f"{path}: feature column(s) {', '.join(absent)} are missing")
    else:
        features = [c for c in frame.columns if c != "timestamp" and c not in LABEL_COLUMNS]
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
    wrong = [c for c in [*features, *LABEL_COLUMNS] if not pd.api.types.is_numeric_dtype(frame[c])]
    if wrong:
        raise DatasetError(f"{path}: column(s) {', '.join(wrong)} are not numeric")
    return features


def _checked_timestamps(path: Path, column: pd.Series) -> np.ndarray:
    try:
        stamps = pd.to_datetime(column, utc=True)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: timestamp column is not made of dates ({exc})") from None
    if stamps.isna().any():
        row = int(np.argmax(stamps.isna().to_numpy()))
        raise DatasetError(f"{path}: row {row}: timestamp is empty")
    values = utc_nanoseconds(stamps)
    problem = order_problem(values)
    if problem is not None:
        row, repeated = problem
        stamp = stamps.iloc[row].isoformat()
        if repeated:
            raise DatasetError(
                f"{path}: row {row}: duplicate timestamp {stamp}; each candle must appear once"
            )
        raise DatasetError(
            f"{path}: row {row}: timestamp {stamp} is earlier than the row before; rows "
            "must be sorted by time, oldest first"
        )
    return values.astype("datetime64[ns]")


def _check_finite(path: Path, frame: pd.DataFrame, columns: list[str], stamps: np.ndarray) -> None:
    problems = []
    first_row: int | None = None
    for name in columns:
        bad = ~np.isfinite(frame[name].to_numpy(dtype=np.float64))
        if bad.any():
            problems.append(f"{name} ({int(bad.sum())} rows)")
            row = int(np.argmax(bad))
            first_row = row if first_row is None else min(first_row, row)
    if problems:
        when = pd.Timestamp(stamps[first_row]).isoformat()
        raise DatasetError(
            f"{path}: NaN or infinite values in {', '.join(problems)}, first at row "
            f"{first_row} ({when}); drop or fill those rows and write the dataset again"
        )
