"""Chronological splits with purge gaps.

Rows are in time order. The first ``train_ratio`` of them are the *search* part, which is
split again into *train* (models are fitted on it) and *validation* (the Optuna objective
is measured on it, last ``VALIDATION_SHARE`` of the search part). The rest is the *test*
tail, scored once at the end and never seen by the search.

A label at row ``t`` looks ``horizon`` rows ahead, so the last ``horizon`` rows before
each boundary would leak the future of the next split into the previous one's labels:
they are dropped (the *purge gap*). With ``n`` rows, ``s = floor(n * train_ratio)``,
``v = floor(s * VALIDATION_SHARE)`` and ``h = horizon``::

    train      = [0,     s - v - h)
    validation = [s - v, s)
    test       = [s + h, n)
"""

from __future__ import annotations

from dataclasses import dataclass

from tjtrainer.errors import DatasetError

VALIDATION_SHARE = 0.2
MIN_TRAIN_ROWS = 200
MIN_EVAL_ROWS = 50


@dataclass(frozen=True)
class Splits:
    """Row ranges (half-open) of each split; ``search`` is train + gap + validation."""

    train: slice
    validation: slice
    test: slice
    search: slice
    purge_gap: int

    def sizes(self) -> dict[str, int]:
        return {
            name: _length(part)
            for name, part in (
                ("train", self.train),
                ("validation", self.validation),
                ("test", self.test),
            )
        }


def _length(part: slice) -> int:
    return max(0, int(part.stop) - int(part.start))


def make_splits(n_rows: int, *, train_ratio: float, horizon: int) -> Splits:
    """Split ``n_rows`` rows in time order; raise :class:`DatasetError` if a part is too small."""
    if not 0.0 < train_ratio < 1.0:
        raise ValueError(f"train_ratio must be between 0 and 1, got {train_ratio}")
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0, got {horizon}")
    search_end = int(n_rows * train_ratio)
    validation_rows = int(search_end * VALIDATION_SHARE)
    validation_start = search_end - validation_rows
    splits = Splits(
        train=slice(0, max(0, validation_start - horizon)),
        validation=slice(validation_start, search_end),
        test=slice(min(n_rows, search_end + horizon), n_rows),
        search=slice(0, search_end),
        purge_gap=horizon,
    )
    sizes = splits.sizes()
    minimum = {"train": MIN_TRAIN_ROWS, "validation": MIN_EVAL_ROWS, "test": MIN_EVAL_ROWS}
    short = [name for name, rows in sizes.items() if rows < minimum[name]]
    if short:
        detail = ", ".join(f"{name} {rows}" for name, rows in sizes.items())
        need = ", ".join(f"{name} >= {rows}" for name, rows in minimum.items())
        raise DatasetError(
            f"too few rows for the splits: {n_rows} rows with trainRatio {train_ratio} and a "
            f"purge gap of {horizon} give {detail} rows (need {need}); use a longer dataset "
            "(`tjctl dataset synth --rows N` or more candles) or another trainRatio"
        )
    return splits
