"""Helpers shared by the trainer tests (imported by name: pytest puts this folder on the path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tjtrainer.config import TrainConfig
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
