"""Purged, embargoed walk-forward folds: no fold ever learns from or early-stops on rows
whose labels reach into the rows it is judged on, and the test tail stays apart."""

from __future__ import annotations

import itertools

import pytest

from tjtrainer.errors import DatasetError
from tjtrainer.splits import MIN_BLOCK_ROWS, MIN_TRAIN_ROWS, Splits, make_splits


def _rows(part: slice) -> range:
    return range(int(part.start), int(part.stop))


def _label_reach(part: slice, horizon: int) -> range:
    """Rows whose candles the labels of ``part`` look at: t .. t + h."""
    return range(int(part.start), int(part.stop) - 1 + horizon + 1)


def _disjoint(a: range, b: range) -> bool:
    return len(a) == 0 or len(b) == 0 or a.stop <= b.start or b.stop <= a.start


def test_the_overlap_check_catches_an_overlap() -> None:
    assert not _disjoint(_label_reach(slice(0, 100), 4), _rows(slice(103, 200)))
    assert _disjoint(_label_reach(slice(0, 100), 4), _rows(slice(104, 200)))


def test_the_layout_by_hand() -> None:
    # 10,000 rows, trainRatio 0.8: 8,000 search rows; gaps of 4 + 16 = 20 rows; 3 folds,
    # so 4 blocks of (4000 - 3 * 20) // 4 = 985 rows in the last half of the search part.
    splits = make_splits(10_000, train_ratio=0.8, horizon=4, folds=3, embargo=16)
    assert splits.blocks == (
        slice(4000, 4985),
        slice(5005, 5990),
        slice(6010, 6995),
        slice(7015, 8000),
    )
    fold = splits.folds[0]
    assert (fold.fit, fold.early_stop, fold.score) == (
        slice(0, 3980),
        slice(4000, 4985),
        slice(5005, 5990),
    )
    assert splits.folds[2].fit == slice(0, 5990) and splits.folds[2].score == slice(7015, 8000)
    assert splits.final.fit == slice(0, 6995) and splits.final.early_stop == slice(7015, 8000)
    assert splits.test == slice(8020, 10_000)
    assert splits.sizes() == {
        "search": 8000,
        "first_fit": 3980,
        "block": 985,
        "final_fit": 6995,
        "test": 1980,
    }


def _check_no_overlap(splits: Splits, horizon: int, embargo: int) -> None:
    gap = horizon + embargo
    judged_parts = [(f.fit, f.early_stop, f.score) for f in splits.folds]
    judged_parts.append((splits.final.fit, splits.final.early_stop, None))
    for fit, stop, score in judged_parts:
        # Learning rows end a whole gap before the rows that stop or score them, so no
        # label of a training row reaches into them, and the embargo lies between.
        assert int(stop.start) - int(fit.stop) >= gap
        assert _disjoint(_label_reach(fit, horizon), _rows(stop))
        purge_and_embargo = range(int(fit.stop), int(stop.start))
        assert len(purge_and_embargo) >= gap
        assert _disjoint(_rows(fit), purge_and_embargo)
        assert _disjoint(_rows(stop), purge_and_embargo)
        if score is not None:
            # Early stopping never watches the scored block, nor labels reaching into it.
            assert _disjoint(_rows(stop), _rows(score))
            assert int(score.start) - int(stop.stop) >= gap
            assert _disjoint(_label_reach(stop, horizon), _rows(score))
            assert _disjoint(_label_reach(fit, horizon), _rows(score))
        # Nothing of the search touches the test tail or its gap.
        for part in (fit, stop, score):
            if part is not None:
                assert int(part.stop) <= int(splits.search.stop)
    assert int(splits.test.start) - int(splits.search.stop) >= gap
    assert _disjoint(_label_reach(splits.search, horizon), _rows(splits.test))
    # Walk forward: each fold is scored on a later block than the one before, and learns
    # from more of the past.
    scores = [int(f.score.start) for f in splits.folds if f.score is not None]
    assert scores == sorted(scores)
    fits = [int(f.fit.stop) for f in splits.folds]
    assert fits == sorted(fits)


@pytest.mark.parametrize(
    "rows, ratio, horizon, embargo, folds",
    [
        (rows, ratio, horizon, embargo, folds)
        for rows, ratio, horizon, embargo, folds in itertools.product(
            (4000, 20_000, 70_000), (0.5, 0.8, 0.95), (1, 4, 16), (0, 16, 96), (1, 3, 5)
        )
        if not (rows == 4000 and (embargo == 96 or folds == 5 or ratio == 0.95))
    ],
)
def test_folds_never_overlap_their_purge_and_embargo_zones(
    rows: int, ratio: float, horizon: int, embargo: int, folds: int
) -> None:
    splits = make_splits(rows, train_ratio=ratio, horizon=horizon, folds=folds, embargo=embargo)
    assert len(splits.folds) == folds and len(splits.blocks) == folds + 1
    _check_no_overlap(splits, horizon, embargo)


def test_folds_that_do_not_fit_name_the_fields_and_values_that_would() -> None:
    with pytest.raises(DatasetError) as caught:
        make_splits(2500, train_ratio=0.8, horizon=4, folds=8, embargo=16)
    message = str(caught.value)
    assert "the walk-forward folds do not fit the data" in message
    assert "cvFolds 8" in message and f"(need >= {MIN_BLOCK_ROWS})" in message
    assert "purge 4 = the label horizon, embargo 16" in message
    fewer = int(message.split("cvFolds <= ")[1].split(",")[0].split()[0])
    rows = int(message.split("a dataset of at least ")[1].split()[0])
    make_splits(2500, train_ratio=0.8, horizon=4, folds=fewer, embargo=16)  # works
    make_splits(rows, train_ratio=0.8, horizon=4, folds=8, embargo=16)  # works
    with pytest.raises(DatasetError):
        make_splits(rows - 1, train_ratio=0.8, horizon=4, folds=8, embargo=16)
    with pytest.raises(DatasetError):
        make_splits(2500, train_ratio=0.8, horizon=4, folds=fewer + 1, embargo=16)


def test_an_embargo_too_large_for_the_data_names_the_largest_that_works() -> None:
    with pytest.raises(DatasetError) as caught:
        make_splits(3000, train_ratio=0.8, horizon=4, folds=3, embargo=400)
    message = str(caught.value)
    largest = int(message.split("embargo <= ")[1].split(",")[0].split()[0])
    make_splits(3000, train_ratio=0.8, horizon=4, folds=3, embargo=largest)
    with pytest.raises(DatasetError):
        make_splits(3000, train_ratio=0.8, horizon=4, folds=3, embargo=largest + 1)


def test_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(DatasetError) as caught:
        make_splits(300, train_ratio=0.8, horizon=4)
    message = str(caught.value)
    assert "300 rows" in message and "use a dataset of at least" in message
    assert f"validation blocks of 15 rows each (need >= {MIN_BLOCK_ROWS})" in message
    assert f"first training window of 100 rows (need >= {MIN_TRAIN_ROWS})" in message
    assert "a test tail of 40 rows (need >= 50)" in message


def test_a_test_tail_too_short_names_a_train_ratio_that_works() -> None:
    with pytest.raises(DatasetError) as caught:
        make_splits(1000, train_ratio=0.95, horizon=4)
    message = str(caught.value)
    assert "a test tail of 30 rows (need >= 50)" in message
    assert "validation blocks" not in message  # long enough: not the problem
    ratio = float(message.split("trainRatio <= ")[1].split(",")[0].split()[0])
    make_splits(1000, train_ratio=ratio, horizon=4)
    with pytest.raises(DatasetError):
        make_splits(1000, train_ratio=ratio + 0.01, horizon=4)


@pytest.mark.parametrize("folds, embargo", [(0, 16), (11, 16), (3, -1)])
def test_out_of_range_folds_and_embargo_are_refused(folds: int, embargo: int) -> None:
    with pytest.raises(DatasetError, match=r"cvFolds must be|embargo must be"):
        make_splits(20_000, train_ratio=0.8, horizon=4, folds=folds, embargo=embargo)
