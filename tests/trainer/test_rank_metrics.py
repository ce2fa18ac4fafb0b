"""The rank metrics match SciPy's definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, rankdata, spearmanr

from tjtrainer.metrics import RankTarget, average_ranks, spearman


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    labels = rng.standard_t(3, 3000) * 0.01
    # Tree ensembles predict few distinct values: plenty of ties.
    predictions = np.round(labels + rng.normal(0, 0.03, 3000), 2).astype(np.float32)
    return predictions, labels


def test_average_ranks_equal_scipy(data: tuple[np.ndarray, np.ndarray]) -> None:
    predictions, labels = data
    np.testing.assert_allclose(average_ranks(predictions), rankdata(predictions))
    np.testing.assert_allclose(average_ranks(labels), rankdata(labels))


def test_spearman_equals_scipy(data: tuple[np.ndarray, np.ndarray]) -> None:
    predictions, labels = data
    expected = spearmanr(predictions, labels).statistic
    assert spearman(predictions, labels) == pytest.approx(expected, abs=1e-12)
    assert RankTarget(labels).spearman(predictions) == pytest.approx(expected, abs=1e-12)


def test_proxy_is_pearson_with_label_ranks(data: tuple[np.ndarray, np.ndarray]) -> None:
    predictions, labels = data
    expected = pearsonr(predictions.astype(np.float64), rankdata(labels)).statistic
    assert RankTarget(labels).proxy(predictions) == pytest.approx(expected, abs=1e-5)


def test_constant_predictions_score_zero(data: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = data
    target = RankTarget(labels)
    assert target.spearman(np.zeros(len(labels))) == 0.0
    assert target.proxy(np.ones(len(labels), dtype=np.float32)) == 0.0
    assert spearman(labels, np.full(len(labels), 0.5)) == 0.0
