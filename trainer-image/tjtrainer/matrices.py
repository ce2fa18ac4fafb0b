"""The run's feature matrices, scaled and built once for every trial of both models.

A :class:`Standardiser` (scikit-learn's ``StandardScaler``, without scikit-learn) is
fitted on the search part (the test tail is never looked at) and saved with the models,
which expect scaled features. Trees do not care about an affine
rescaling, so this only keeps the seed's inference path. Each fold's training window (on
large sets every ``stride``-th row of it, weighted: :mod:`tjtrainer.splits`) is
a ``QuantileDMatrix`` (what the ``hist`` method works on), each validation block a
``DMatrix``; switching from LONG to SHORT only swaps their labels.

Models are trained on **standardised** labels (:func:`standardised`: minus their mean, over
their standard deviation, both of the rows being trained on), so that training does not
depend on the labels' scale: XGBoost's split-gain floor and ``reg_lambda`` act on
absolute gradient sums, and FX-sized log returns (~1e-4) otherwise leave most trees a
single leaf. Scores are rank correlations with the raw labels, unchanged by this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import xgboost as xgb

from tjtrainer.dataset_reader import Dataset
from tjtrainer.metrics import RankTarget
from tjtrainer.search import MAX_BIN, FoldInput, Timings
from tjtrainer.splits import Fold, Splits


def standardised(labels: np.ndarray) -> np.ndarray:
    """``(labels - mean) / std`` (float64); labels that are all equal become zeros."""
    values = np.asarray(labels, dtype=np.float64)
    std = float(values.std())
    if not len(values) or np.ptp(values) == 0 or not np.isfinite(std):
        return np.zeros_like(values)
    standard: np.ndarray = (values - values.mean()) / std
    return standard


def label_scaling(labels: np.ndarray) -> dict[str, float]:
    """The mean and standard deviation :func:`standardised` divides out."""
    values = np.asarray(labels, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std())}


# Rows centred at a time by Standardiser.fit: a small buffer used again and again, where
# centring all rows at once made a float64 copy of them (43 MB at 280,000 rows, 0.13 s of
# this VM's page faults).
_CENTRED_ROWS = 4096


def _centred_sums(values: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The column sums of ``values - mean`` and of its squares, in float64, equal bit for
    bit to summing the whole centred matrix (NumPy adds the rows of a C-ordered matrix
    in order down each column; each block here starts from the sums so far, its row 0)."""
    block = np.empty((_CENTRED_ROWS + 1, values.shape[1]))
    squared = np.empty_like(block)
    sums = squares = None
    for start in range(0, len(values), _CENTRED_ROWS):
        rows = values[start : start + _CENTRED_ROWS]
        centred, powers = block[: len(rows) + 1], squared[: len(rows) + 1]
        np.subtract(rows, mean, out=centred[1:])
        np.square(centred[1:], out=powers[1:])
        if sums is None:
            sums, squares = centred[1:].sum(axis=0), powers[1:].sum(axis=0)
            continue
        centred[0], powers[0] = sums, squares
        sums, squares = centred.sum(axis=0), powers.sum(axis=0)
    assert sums is not None and squares is not None, "no rows to fit"
    return sums, squares


@dataclass(frozen=True)
class Standardiser:
    """Per-feature mean and scale, computed as scikit-learn's ``StandardScaler`` computes
    them (float64 sums, the corrected two-pass variance; a feature constant to rounding
    error is scaled by 1) and applied as it applies them (in the rows' float type,
    mean and scale rounded to it), so
    that a reader of the saved ``scaler.pkl`` gets the very features the models were
    trained on. Its attributes carry scikit-learn's names."""

    mean_: np.ndarray
    var_: np.ndarray
    scale_: np.ndarray
    n_samples_seen_: int

    @classmethod
    def fit(cls, rows: np.ndarray) -> Standardiser:
        values = np.asarray(rows)
        n = len(values)
        mean = values.sum(axis=0, dtype=np.float64) / n
        correction, squares = _centred_sums(values, mean)
        var = (squares - correction**2 / n) / n
        eps = np.finfo(np.float64).eps
        constant = var <= n * eps * var + (n * mean * eps) ** 2
        scale = np.sqrt(var)
        scale[constant] = 1.0
        return cls(mean, var, scale, n)

    def transform(self, rows: np.ndarray) -> np.ndarray:
        values = np.asarray(rows)
        scaled = np.array(values, dtype=values.dtype if values.dtype.kind == "f" else np.float64)
        scaled -= self.mean_.astype(scaled.dtype)
        scaled /= self.scale_.astype(scaled.dtype)
        return scaled


@dataclass
class Matrices:
    """Scaled features and the XGBoost matrices of every fold of one run."""

    dataset: Dataset
    splits: Splits
    scaler: Standardiser
    features: np.ndarray
    fits: list[xgb.QuantileDMatrix]  # one per fold, in fold order
    blocks: list[xgb.DMatrix]  # one per validation block B_0..B_k
    nthread: int

    def labels(self, model: str, part: slice) -> np.ndarray:
        values = self.dataset.y_long if model == "LONG" else self.dataset.y_short
        return values[part]

    def training_labels(self, model: str, part: slice) -> np.ndarray:
        """``model``'s labels of rows ``part``, standardised over those rows."""
        return standardised(self.labels(model, part))

    def scaled_like(self, model: str, part: slice, reference: slice) -> np.ndarray:
        """``model``'s labels of ``part`` in the standard units of the rows ``reference``."""
        scaling = label_scaling(self.labels(model, reference))
        std = scaling["std"] or 1.0
        return (self.labels(model, part) - scaling["mean"]) / std

    def use_labels(self, model: str, timings: Timings) -> None:
        """Make the fold matrices carry ``model``'s (standardised) labels."""
        started = time.perf_counter()
        for index, (fold, data) in enumerate(zip(self.splits.folds, self.fits, strict=True)):
            rows = self.splits.search_rows(fold)
            data.set_label(self.training_labels(model, rows))
            self.blocks[index].set_label(self.scaled_like(model, fold.early_stop, rows))
        timings.add_xgboost(time.perf_counter() - started, "matrix")

    def copy_for(self, model: str, timings: Timings) -> Matrices:
        """Fold matrices of the same rows and feature bins carrying ``model``'s labels,
        for a search of ``model`` that runs beside another model's."""
        started = time.perf_counter()
        fits = [
            _search_matrix(self.features, self.splits, fold, None, self.nthread, self.fits[0])
            for fold in self.splits.folds
        ]
        blocks = [xgb.DMatrix(self.features[b], nthread=self.nthread) for b in self.splits.blocks]
        timings.add_xgboost(time.perf_counter() - started, "matrix")
        copy = replace(self, fits=fits, blocks=blocks)
        copy.use_labels(model, timings)
        return copy

    def fold_inputs(self, model: str) -> list[FoldInput]:
        """What a trial of ``model`` trains and scores on (call :meth:`use_labels` first)."""
        targets = [RankTarget(self.labels(model, block)) for block in self.splits.blocks]
        return [
            FoldInput(
                fit=self.fits[i],
                early_stop=self.blocks[i],
                score=self.blocks[i + 1],
                score_target=targets[i + 1],
            )
            for i in range(len(self.splits.folds))
        ]

    def matrix(self, part: slice, *, model: str | None, timings: Timings) -> xgb.DMatrix:
        """A new matrix of rows ``part`` (quantised like training when labelled)."""
        started = time.perf_counter()
        data: xgb.DMatrix
        if model is None:
            data = xgb.DMatrix(self.features[part], nthread=self.nthread)
        else:
            data = xgb.QuantileDMatrix(
                self.features[part],
                label=self.training_labels(model, part),
                max_bin=MAX_BIN,
                nthread=self.nthread,
                ref=self.fits[0],  # the first fold's bins (see build_matrices)
            )
        timings.add_xgboost(time.perf_counter() - started, "matrix")
        return data


def _search_matrix(
    features: np.ndarray,
    splits: Splits,
    fold: Fold,
    labels: np.ndarray | None,
    nthread: int,
    reference: xgb.QuantileDMatrix | None,
) -> xgb.QuantileDMatrix:
    """The rows of ``fold``'s window the search trains on (:meth:`Splits.search_rows`),
    each weighted by the stride so that hessian sums are those of the whole window."""
    rows = features[splits.search_rows(fold)]
    weight = (
        np.full(len(rows), float(splits.stride), dtype=np.float32) if splits.stride > 1 else None
    )
    return xgb.QuantileDMatrix(
        rows, label=labels, weight=weight, max_bin=MAX_BIN, nthread=nthread, ref=reference
    )


def scale_features(dataset: Dataset, splits: Splits) -> tuple[Standardiser, np.ndarray]:
    """Fit the scaler on the search part; return it and every row scaled (float32)."""
    scaler = Standardiser.fit(dataset.x[splits.search])
    return scaler, np.ascontiguousarray(scaler.transform(dataset.x), dtype=np.float32)


def build_matrices(
    dataset: Dataset,
    splits: Splits,
    scaler: Standardiser,
    features: np.ndarray,
    nthread: int,
    timings: Timings,
) -> Matrices:
    """The trial matrices (XGBoost's work only: no GIL held)."""
    started = time.perf_counter()
    # Every training matrix uses the feature bins of the first fold's window (the earliest
    # rows, a prefix of every later window, so no fold's bins look at its future): the
    # quantile sketch is computed once instead of once per window.
    fits: list[xgb.QuantileDMatrix] = []
    for fold in splits.folds:
        labels = standardised(dataset.y_long[splits.search_rows(fold)])
        reference = fits[0] if fits else None
        fits.append(_search_matrix(features, splits, fold, labels, nthread, reference))
    blocks = [xgb.DMatrix(features[block], nthread=nthread) for block in splits.blocks]
    timings.add_xgboost(time.perf_counter() - started, "matrix")
    return Matrices(dataset, splits, scaler, features, fits, blocks, nthread)
