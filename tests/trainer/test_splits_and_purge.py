"""Chronological splits with a purge gap of the label horizon between them."""

from __future__ import annotations

import pytest

from tjtrainer.errors import DatasetError
from tjtrainer.splits import VALIDATION_SHARE, make_splits


def test_splits_are_ordered_with_purge_gaps() -> None:
    splits = make_splits(10_000, train_ratio=0.8, horizon=4)
    assert splits.train == slice(0, 6396)
    assert splits.validation == slice(6400, 8000)
    assert splits.test == slice(8004, 10_000)
    assert splits.validation.start - splits.train.stop == 4
    assert splits.test.start - splits.validation.stop == 4
    assert splits.search == slice(0, 8000)
    assert splits.sizes() == {"train": 6396, "validation": 1600, "test": 1996}


@pytest.mark.parametrize("horizon", [1, 4, 16])
@pytest.mark.parametrize("ratio", [0.5, 0.8, 0.95])
def test_no_label_window_crosses_a_split_boundary(horizon: int, ratio: float) -> None:
    splits = make_splits(5000, train_ratio=ratio, horizon=horizon)
    # The label of row t looks at rows t..t+horizon.
    assert splits.train.stop - 1 + horizon < splits.validation.start
    assert splits.validation.stop - 1 + horizon < splits.test.start
    validation = splits.validation.stop - splits.validation.start
    assert validation == int(int(5000 * ratio) * VALIDATION_SHARE)


def test_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(DatasetError) as caught:
        make_splits(300, train_ratio=0.8, horizon=4)
    message = str(caught.value)
    assert "too few rows for the splits" in message
    assert "300 rows" in message and "train 188" in message and "need train >= 200" in message
