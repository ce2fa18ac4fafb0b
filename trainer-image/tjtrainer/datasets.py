"""Datasets on the shared volume: making them (synthetic or from OHLCV candles) and
writing them atomically; :mod:`tjtrainer.dataset_reader` loads them for training.

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
from tjcontract.spec import DEFAULT_EMBARGO, DEFAULT_FOLDS, DEFAULT_TRAIN_RATIO
from tjcontract.times import utc_now
from tjtrainer.dataset_reader import (
    DATASET_FILE,
    DEFAULT_HORIZON,
    INFO_FILE,
    LABEL_COLUMNS,
    dataset_dir,
)
from tjtrainer.errors import DatasetError
from tjtrainer.features import FEATURES, WARMUP_ROWS, compute_features
from tjtrainer.labels import (
    DEFAULT_COST_BPS,
    DEFAULT_LABEL,
    DEFAULT_STOP_LOSS,
    DEFAULT_TAKE_PROFIT,
    LabelSpec,
    check_labels,
    label_candles,
    outcome_shares,
)
from tjtrainer.ohlcv import read_ohlcv_csv
from tjtrainer.splits import minimum_rows
from tjtrainer.synth import synth_candles

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
