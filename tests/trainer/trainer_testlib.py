"""Helpers shared by the trainer tests (imported by name: pytest puts this folder on the path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tjtrainer.config import TrainConfig
from tjtrainer.datasets import Frame, label_spec, make_frame, write_dataset
from tjtrainer.progress import RunProgress, read_progress
from tjtrainer.train import run_training

ROWS = 2500
N_TRIALS = 3


def make_config(data_root: Path, name: str = "job", **overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "timeframe": "15m",
        "n_trials": N_TRIALS,
        "train_ratio": 0.8,
        "data_root": data_root,
        "run_dir": data_root / "runs" / "default" / name,
        "seed": 7,
        "parallelism": 1,
    }
    values.update(overrides)
    return TrainConfig(**values)  # type: ignore[arg-type]


@dataclass
class RecordedRun:
    """A finished run and what its on_progress callback saw."""

    config: TrainConfig
    final: RunProgress
    seen: list[RunProgress] = field(default_factory=list)
    on_disk: list[RunProgress | None] = field(default_factory=list)


def recorded_run(config: TrainConfig) -> RecordedRun:
    """Run ``config``, keeping every progress snapshot and the file as it was at the time."""
    seen: list[RunProgress] = []
    on_disk: list[RunProgress | None] = []

    def on_progress(progress: RunProgress) -> None:
        seen.append(progress)
        on_disk.append(read_progress(config.run_dir))

    final = run_training(config, on_progress=on_progress)
    return RecordedRun(config, final, seen, on_disk)


def random_walk_candles(n: int, seed: int, sigma: float = 0.0025) -> pd.DataFrame:
    """15m candles of a pure random walk: i.i.d. normal log returns of constant volatility,
    wicks and volume of independent noise. Nothing in them predicts anything."""
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.6 * sigma, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.6 * sigma, n)))
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2023-01-01", periods=n, freq="15min", tz="UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": np.exp(rng.normal(5.0, 0.3, n)),
        }
    )


def random_walk_dataset(root: Path, *, planted: bool) -> Path:
    """A random-walk dataset; with ``planted``, one more feature that knows a little of
    each row's future (a noisy copy of label_long - label_short): skill by construction."""
    frame = make_frame(random_walk_candles(3200, seed=21), label_spec(horizon=4))
    if planted:
        rows = frame.rows
        edge = rows["label_long"] - rows["label_short"]
        noise = np.random.default_rng(5).standard_normal(len(rows))
        rows["planted"] = (edge / edge.std() + 2.0 * noise).astype("float32")
        labels = ["label_long", "label_short"]
        rows = rows[[c for c in rows.columns if c not in labels] + labels]
        frame = Frame(rows=rows, labels=frame.labels, definition=frame.definition)
    write_dataset(frame, root, timeframe="15m", horizon=4, cost_bps=10.0, source={"kind": "test"})
    return root
