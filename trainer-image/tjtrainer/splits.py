"""Chronological splits: a search part cut into purged, embargoed walk-forward folds, and a
held-out test tail.

Rows are in time order. With ``n`` rows, ``s = floor(n * train_ratio)`` search rows, the
label horizon ``h`` (the purge), an embargo of ``e`` rows and ``k`` folds, every boundary
between rows a model learns from and rows it is judged on is a *gap* of ``g = h + e``
rows that belong to neither: the labels of the ``h`` rows before a boundary look into the
rows after it (purge), and the ``e`` rows after that are kept out so that rows right after
a training window, which share most of its features' history, do not judge it (embargo).

The last :data:`CV_SHARE` of the search part holds ``k + 1`` *blocks* ``B_0 .. B_k`` of
``b`` rows each, separated by gaps, ``B_k`` ending at ``s``. Fold ``i`` (1..k):

    fit         = [0, start(B_{i-1}) - g)     the model is trained here (an expanding window)
    early stop  = B_{i-1}                     XGBoost's early stopping watches this block
    score       = B_i                         the fold's Spearman, never seen by early stopping

so no fold is scored on the rows its early stopping watched, and every fold predicts
the future of its training window. The final model is fitted the same way on
``[0, start(B_k) - g)``, early-stopped on ``B_k``. The test tail ``[s + g, n)`` is
scored once, by the final model, and never seen by the search.

On large data sets the search trains on every ``t``-th row of each fold's window (the
*stride*, :func:`search_stride`), weighted ``t`` so that XGBoost's hessian sums, hence
``min_child_weight`` and ``reg_lambda``, mean what they mean on every row. Labels that
look ``h`` rows ahead overlap their neighbours' by ``h - 1`` rows, so neighbouring rows
carry mostly the same outcome: thinning by at most ``h`` keeps nearly all of the
information at a ``t``-th of the cost of a round (the *average uniqueness* argument of
López de Prado, *Advances in Financial Machine Learning*, ch. 4). The validation blocks,
the final model and the test tail always use every row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tjcontract.spec import (
    DEFAULT_EMBARGO,
    DEFAULT_FOLDS,
    DEFAULT_TRAIN_RATIO,
    MAX_EMBARGO,
    MAX_FOLDS,
)
from tjtrainer.errors import DatasetError

CV_SHARE = 0.5
MIN_TRAIN_ROWS = 200
MIN_BLOCK_ROWS = 100
MIN_TEST_ROWS = 50
# The search's windows are thinned to every t-th row, t at most the label horizon, as long
# as the first window keeps at least this many rows. Measured with
# bench/train_throughput.py (docs/TRAINER.md, Speed): every 4th row of 70,000 and of
# 280,000-row sets (h = 4; first windows of 27,980 and 111,980 rows thinned to 6,995 and
# 27,995) kept the fresh-data skill of every row, in about half the time. Below 6,000
# thinned rows the windows stay whole (the demo's 20,000 rows: 7,980).
MIN_SEARCH_FIT_ROWS = 6_000


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: half-open row ranges."""

    fit: slice
    early_stop: slice
    score: slice | None  # None for the final model


@dataclass(frozen=True)
class Splits:
    """The search part's folds, the final model's fit, and the test tail."""

    search: slice
    test: slice
    folds: tuple[Fold, ...]
    final: Fold
    blocks: tuple[slice, ...]
    purge_gap: int
    embargo: int
    stride: int = 1  # the search trains on every stride-th row of a fold's window

    @property
    def gap(self) -> int:
        return self.purge_gap + self.embargo

    def search_rows(self, fold: Fold) -> slice:
        """The rows of ``fold``'s window the search trains on (every :attr:`stride`-th,
        the last row of the window kept)."""
        start, stop = int(fold.fit.start), int(fold.fit.stop)
        first = start + (stop - start - 1) % self.stride if stop > start else start
        return slice(first, stop, self.stride)

    def sizes(self) -> dict[str, int]:
        return {
            "search": _length(self.search),
            "first_fit": _length(self.folds[0].fit),
            "block": _length(self.blocks[0]),
            "final_fit": _length(self.final.fit),
            "test": _length(self.test),
        }


def _length(part: slice) -> int:
    return max(0, int(part.stop) - int(part.start))


def _layout(n_rows: int, train_ratio: float, horizon: int, embargo: int, folds: int) -> Splits:
    search_end = int(n_rows * train_ratio)
    gap = horizon + embargo
    block = max(0, int((CV_SHARE * search_end - folds * gap) // (folds + 1)))
    starts = [search_end - (folds + 1 - j) * block - (folds - j) * gap for j in range(folds + 1)]
    blocks = tuple(slice(start, start + block) for start in starts)

    def fit_before(part: slice) -> slice:
        return slice(0, max(0, int(part.start) - gap))

    made = tuple(
        Fold(fit=fit_before(blocks[i - 1]), early_stop=blocks[i - 1], score=blocks[i])
        for i in range(1, folds + 1)
    )
    return Splits(
        search=slice(0, search_end),
        test=slice(min(n_rows, search_end + gap), n_rows),
        folds=made,
        final=Fold(fit=fit_before(blocks[-1]), early_stop=blocks[-1], score=None),
        blocks=blocks,
        purge_gap=horizon,
        embargo=embargo,
    )


def _fits(splits: Splits) -> bool:
    return (
        _length(splits.blocks[0]) >= MIN_BLOCK_ROWS
        and _length(splits.folds[0].fit) >= MIN_TRAIN_ROWS
        and _length(splits.test) >= MIN_TEST_ROWS
        and int(splits.blocks[0].start) - splits.gap >= 0
    )


def make_splits(
    n_rows: int,
    *,
    train_ratio: float,
    horizon: int,
    folds: int = DEFAULT_FOLDS,
    embargo: int = DEFAULT_EMBARGO,
    stride: int | None = None,
) -> Splits:
    """Split ``n_rows`` rows in time order; raise :class:`DatasetError` naming the field
    to change (``cvFolds``, ``embargo``, the rows) when the folds do not fit the data.
    ``stride`` thins the search's windows (``None``: :func:`search_stride`)."""
    if not 0.0 < train_ratio < 1.0:
        raise ValueError(f"train_ratio must be between 0 and 1, got {train_ratio}")
    if horizon < 0:
        raise ValueError(f"horizon must be >= 0, got {horizon}")
    if not 1 <= folds <= MAX_FOLDS:
        raise DatasetError(f"cvFolds must be from 1 to {MAX_FOLDS}, got {folds}")
    if not 0 <= embargo <= MAX_EMBARGO:
        raise DatasetError(f"embargo must be from 0 to {MAX_EMBARGO} rows, got {embargo}")
    if stride is not None and stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    splits = _layout(n_rows, train_ratio, horizon, embargo, folds)
    if _fits(splits):
        first_window = _length(splits.folds[0].fit)
        chosen = stride if stride is not None else search_stride(first_window, horizon)
        return replace(splits, stride=chosen)
    raise DatasetError(_refusal(n_rows, train_ratio, horizon, embargo, folds, splits))


def search_stride(first_window_rows: int, horizon: int) -> int:
    """Every how many rows of a fold's window the search trains on: the label horizon
    (rows further apart than it share no outcome), less when the first window would keep
    fewer than :data:`MIN_SEARCH_FIT_ROWS` rows; 1 for small windows."""
    return max(1, min(horizon, first_window_rows // MIN_SEARCH_FIT_ROWS))


def _refusal(
    n_rows: int, train_ratio: float, horizon: int, embargo: int, folds: int, splits: Splits
) -> str:
    sizes = splits.sizes()
    gap = horizon + embargo
    problems = []
    if sizes["block"] < MIN_BLOCK_ROWS:
        problems.append(
            f"{folds + 1} validation blocks of {sizes['block']} rows each (need >= "
            f"{MIN_BLOCK_ROWS})"
        )
    if sizes["first_fit"] < MIN_TRAIN_ROWS:
        problems.append(
            f"a first training window of {sizes['first_fit']} rows (need >= {MIN_TRAIN_ROWS})"
        )
    if sizes["test"] < MIN_TEST_ROWS:
        problems.append(f"a test tail of {sizes['test']} rows (need >= {MIN_TEST_ROWS})")
    problem = " and ".join(problems)
    fixes = []
    fewer = next(
        (
            k
            for k in range(folds - 1, 0, -1)
            if _fits(_layout(n_rows, train_ratio, horizon, embargo, k))
        ),
        None,
    )
    if fewer is not None:
        fixes.append(f"cvFolds <= {fewer}")
    if embargo > 0 and _fits(_layout(n_rows, train_ratio, horizon, 0, folds)):
        low, high = 0, embargo  # low fits, high does not
        while high - low > 1:
            middle = (low + high) // 2
            if _fits(_layout(n_rows, train_ratio, horizon, middle, folds)):
                low = middle
            else:
                high = middle
        fixes.append(f"embargo <= {low}")
    if sizes["test"] < MIN_TEST_ROWS and sizes["block"] >= MIN_BLOCK_ROWS:
        smaller = next(
            (
                r / 100
                for r in range(int(train_ratio * 100) - 1, 49, -1)
                if _fits(_layout(n_rows, r / 100, horizon, embargo, folds))
            ),
            None,
        )
        if smaller is not None:
            fixes.append(f"trainRatio <= {smaller}")
    rows = _minimum_rows(train_ratio, horizon, embargo, folds)
    fixes.append(f"a dataset of at least {rows} rows")
    return (
        f"the walk-forward folds do not fit the data: {n_rows} rows with trainRatio "
        f"{train_ratio}, cvFolds {folds} and gaps of {gap} rows (purge {horizon} = the label "
        f"horizon, embargo {embargo}) give {problem}; use " + ", or ".join(fixes)
    )


def minimum_rows(
    *,
    horizon: int,
    train_ratio: float = DEFAULT_TRAIN_RATIO,
    folds: int = DEFAULT_FOLDS,
    embargo: int = DEFAULT_EMBARGO,
) -> int:
    """The fewest rows whose folds fit (by default, those of the default spec)."""
    return _minimum_rows(train_ratio, horizon, embargo, folds)


def _minimum_rows(train_ratio: float, horizon: int, embargo: int, folds: int) -> int:
    high = 1000
    while not _fits(_layout(high, train_ratio, horizon, embargo, folds)):
        high *= 2
    low = high // 2 if high > 1000 else 0
    while high - low > 1:
        middle = (low + high) // 2
        if _fits(_layout(middle, train_ratio, horizon, embargo, folds)):
            high = middle
        else:
            low = middle
    return high
