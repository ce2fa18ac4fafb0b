"""Rank correlation between predictions and labels, computed cheaply and often.

The Optuna objective is Spearman's rank correlation on the validation split. The ranks of
the labels never change during a search, so :class:`RankTarget` computes them once; a
Spearman then costs one ranking of the predictions. While a model trains, a cheaper
proxy (Pearson correlation of raw predictions with the label ranks, no sorting) decides
early stopping and pruning; the proxy orders models almost like Spearman does.
"""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank (``scipy.stats.rankdata``'s
    default), by one sort; about three times faster than scipy on tree predictions."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks: np.ndarray = (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]
    return ranks


def _standardized(values: np.ndarray) -> np.ndarray | None:
    centered = values - values.mean()
    scale = float(np.sqrt(np.dot(centered, centered)))
    if scale == 0.0 or not np.isfinite(scale):
        return None
    return centered / scale


class RankTarget:
    """The labels of one split, ranked and standardised once."""

    def __init__(self, labels: np.ndarray) -> None:
        if len(labels) < 2:
            raise ValueError("need at least 2 labels to rank")
        standardized = _standardized(average_ranks(labels))
        if standardized is None:
            raise ValueError("all labels are equal: nothing to rank")
        self._ranks = standardized
        # The proxy runs every few rounds on XGBoost's float32 predictions: single
        # precision is plenty to compare models and avoids a conversion each time.
        self._ranks32 = standardized.astype(np.float32)

    def __len__(self) -> int:
        return len(self._ranks)

    def spearman(self, predictions: np.ndarray) -> float:
        """Spearman's rho of ``predictions`` with the labels; 0.0 for constant predictions."""
        ranks = _standardized(average_ranks(predictions))
        if ranks is None:
            return 0.0
        return float(np.dot(ranks, self._ranks))

    def proxy(self, predictions: np.ndarray) -> float:
        """Pearson correlation of raw ``predictions`` with the label ranks (no sorting)."""
        values = np.asarray(predictions, dtype=np.float32)
        centered = values - values.mean(dtype=np.float32)
        scale = float(np.sqrt(np.dot(centered, centered)))
        if scale == 0.0 or not np.isfinite(scale):
            return 0.0
        return float(np.dot(centered, self._ranks32)) / scale


def spearman(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Spearman's rho; 0.0 when either side is constant."""
    return RankTarget(labels).spearman(predictions) if np.ptp(labels) > 0 else 0.0
