"""An honest verdict on a model's held-out test score, and what trading it would have done.

The test tail's labels overlap (each looks ``h`` candles ahead) and its predictions are
serially dependent, so neither an i.i.d. bootstrap nor a shuffle of the labels gives the
right error bar: both treat neighbouring rows as independent and make the score look
surer than it is. Here:

- **Confidence interval**: a moving-block bootstrap of the (prediction, label) pairs, in
  blocks of :func:`block_rows` consecutive rows (at least twice the horizon, so that the
  overlap of labels stays inside a block); Spearman's rho of each resample is the
  correlation of the full-sample ranks over the resampled rows; the interval is the
  percentile interval.
- **Placebo p-value**: the labels are rotated against the predictions by every circular
  shift that moves them at least one block away (computed at once with an FFT); each
  rotation keeps both series' own serial structure but destroys any link between them.
  ``p = (1 + #{placebo rho >= observed rho}) / (1 + #placebos)``, one-sided: skill is a
  positive rank correlation.
- **Verdict**: ``Significant`` when ``p < level`` *and* the confidence interval lies above
  zero; ``NotSignificant`` otherwise. ``level`` is 0.05.

The **backtest** trades the model on the test tail, net of the cost already inside the
labels: enter a trade when the prediction is above :data:`ENTRY_QUANTILE` of the model's
predictions on the last validation block (its early-stopping block: no test information),
one position at a time, each held for the horizon (the longest a trade lasts). It reports
the net log return, the Sharpe ratio (per trade, annualised by the trades per year), the
hit rate, the turnover (round trips per day), the time in the market and a downsampled
equity curve.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from tjtrainer.metrics import average_ranks

SIGNIFICANCE_LEVEL = 0.05
CONFIDENCE = 0.95
RESAMPLES = 2000
ENTRY_QUANTILE = 0.8
EQUITY_POINTS = 200
SIGNIFICANT = "Significant"
NOT_SIGNIFICANT = "NotSignificant"


@dataclass(frozen=True)
class Verdict:
    """The test score with its error bar, its placebo p-value and the one word."""

    test_spearman: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    placebos: int
    block_rows: int
    level: float
    verdict: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def block_rows(rows: int, horizon: int) -> int:
    """Bootstrap block length: ``max(2 (h + 1), ceil(rows ** (1/3)))``, at most ``rows``."""
    return max(1, min(rows, max(2 * (horizon + 1), math.ceil(rows ** (1.0 / 3.0)))))


def _standard_ranks(values: np.ndarray) -> np.ndarray | None:
    ranks = average_ranks(np.asarray(values, dtype=np.float64))
    centred = ranks - ranks.mean()
    norm = float(np.sqrt(np.dot(centred, centred)))
    return None if norm == 0.0 else centred / norm


def _block_bootstrap(
    rp: np.ndarray, rl: np.ndarray, block: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Pearson correlation of ``rp`` and ``rl`` over ``resamples`` moving-block resamples
    of ``len(rp)`` rows (whole blocks of ``block`` rows, the last one cut to fit).

    A resample's sums (of x, y, xy, x², y²) are sums of its blocks' sums, taken from
    prefix sums, so a resample costs one addition per block, not one per row.
    """
    n = len(rp)
    per_resample = math.ceil(n / block)
    last = n - (per_resample - 1) * block  # rows taken from the last block
    series = np.stack([rp, rl, rp * rl, rp * rp, rl * rl])
    prefix = np.concatenate([np.zeros((5, 1)), np.cumsum(series, axis=1)], axis=1)
    whole = prefix[:, block:] - prefix[:, : n - block + 1]  # the sums of the block at each start
    starts = rng.integers(0, n - block + 1, size=(resamples, per_resample))
    inner, final = starts[:, :-1], starts[:, -1]
    # One series at a time: gathering all five at once makes a temporary 5 times larger.
    sums = np.stack([np.take(sums_at, inner).sum(axis=1) for sums_at in whole])
    sx, sy, sxy, sxx, syy = sums + prefix[:, final + last] - prefix[:, final]
    cov = sxy - sx * sy / n
    var = (sxx - sx * sx / n) * (syy - sy * sy / n)
    out = np.zeros(resamples)
    np.divide(cov, np.sqrt(np.clip(var, 0.0, None)), out=out, where=var > 0)
    return out


def judge(
    predictions: np.ndarray,
    labels: np.ndarray,
    *,
    horizon: int,
    seed: int,
    level: float = SIGNIFICANCE_LEVEL,
    resamples: int = RESAMPLES,
) -> Verdict:
    """The verdict on ``predictions`` of ``labels`` (in time order)."""
    n = len(labels)
    block = block_rows(n, horizon)
    rp, rl = _standard_ranks(predictions), _standard_ranks(labels)
    if rp is None or rl is None or n < 3:
        return Verdict(0.0, 0.0, 0.0, CONFIDENCE, 1.0, 0, block, level, NOT_SIGNIFICANT, n)
    rho = float(np.dot(rp, rl))

    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 11]))
    boot = _block_bootstrap(rp, rl, block, resamples, rng)
    tail = (1.0 - CONFIDENCE) / 2.0
    low, high = (float(v) for v in np.quantile(boot, [tail, 1.0 - tail]))

    # Every circular shift k of the labels: sum_t rp[t] * rl[(t + k) mod n].
    shifted = np.fft.irfft(np.conj(np.fft.rfft(rp)) * np.fft.rfft(rl), n)
    far = np.arange(block, n - block + 1)
    placebo = shifted[far]
    p_value = float((1 + np.count_nonzero(placebo >= rho - 1e-12)) / (1 + len(placebo)))
    significant = p_value < level and low > 0.0
    return Verdict(
        test_spearman=rho,
        ci_low=low,
        ci_high=high,
        confidence=CONFIDENCE,
        p_value=p_value,
        placebos=len(placebo),
        block_rows=block,
        level=level,
        verdict=SIGNIFICANT if significant else NOT_SIGNIFICANT,
        rows=n,
    )


def backtest(
    predictions: np.ndarray,
    labels: np.ndarray,
    timestamps: np.ndarray,
    *,
    threshold: float,
    horizon: int,
) -> dict[str, Any]:
    """Trade the predictions on the test tail (see the module's docstring)."""
    n = len(labels)
    taken: list[int] = []
    free = 0  # the first row not inside the open trade
    for t in np.flatnonzero(predictions > threshold).tolist():
        if t >= free:
            taken.append(t)
            free = t + max(1, horizon)
    returns = labels[taken] if taken else np.zeros(0)
    span_days = float((timestamps[-1] - timestamps[0]) / np.timedelta64(1, "D")) if n > 1 else 0.0
    trades = len(taken)
    std = float(returns.std(ddof=1)) if trades > 1 else 0.0
    per_year = trades / (span_days / 365.25) if span_days > 0 else 0.0
    sharpe = float(returns.mean() / std * math.sqrt(per_year)) if std > 0 else 0.0
    equity = np.cumsum(returns)
    keep = np.unique(np.linspace(0, trades - 1, min(trades, EQUITY_POINTS)).astype(int))
    return {
        "rule": f"enter when the prediction > {threshold:.6g} (the {ENTRY_QUANTILE:g} quantile "
        "of the last validation block's predictions), one position at a time, each held "
        f"{horizon} candles; returns net of the labels' cost",
        "threshold": float(threshold),
        "trades": trades,
        "net_return": float(returns.sum()),
        "mean_return": float(returns.mean()) if trades else 0.0,
        "sharpe": sharpe,
        "hit_rate": float((returns > 0).mean()) if trades else 0.0,
        "turnover_per_day": trades / span_days if span_days > 0 else 0.0,
        "time_in_market": min(1.0, trades * max(1, horizon) / n) if n else 0.0,
        "every_trade_mean_return": float(labels.mean()) if n else 0.0,
        "days": span_days,
        "equity": [
            [f"{np.datetime_as_string(timestamps[taken[i]], unit='s')}Z", float(equity[i])]
            for i in keep
        ],
    }


def entry_threshold(validation_predictions: np.ndarray) -> float:
    """The prediction above which the backtest trades."""
    return float(np.quantile(validation_predictions, ENTRY_QUANTILE))


_EULER_GAMMA = 0.5772156649015329


def deflated_selection(
    trial_scores: list[float], best_fold_scores: list[float], trials_run: int
) -> dict[str, Any]:
    """How much of the best walk-forward score survives the search that found it: the
    Deflated Sharpe Ratio's correction (Bailey & López de Prado) applied to the mean fold
    Spearman. Under the null that no trial has skill, the best of ``N = trials_run``
    scores spread like the completed trials' (standard deviation ``s``) is expected to
    reach ``s * ((1 - g) z(1 - 1/N) + g z(1 - 1/(N e)))`` (``g`` Euler's constant, ``z``
    the normal quantile); the deflated probability is ``Phi((best - that) / se)``, ``se``
    the standard error of the best trial's mean fold score. Near 1: the best score is
    more than selection from ``N`` tries explains; near 0.5 or below: it is not."""
    norm = NormalDist()  # the standard library's: scipy.stats would cost ~2 s to import
    best = float(np.mean(best_fold_scores)) if best_fold_scores else 0.0
    n = max(1, int(trials_run))
    spread = float(np.std(trial_scores, ddof=1)) if len(trial_scores) > 1 else 0.0
    if n > 1:
        expected = spread * (
            (1 - _EULER_GAMMA) * norm.inv_cdf(1 - 1 / n)
            + _EULER_GAMMA * norm.inv_cdf(1 - 1 / (n * math.e))
        )
    else:
        expected = 0.0
    folds = len(best_fold_scores)
    error = float(np.std(best_fold_scores, ddof=1)) / math.sqrt(folds) if folds > 1 else 0.0
    error = max(error, spread / math.sqrt(max(1, folds)), 1e-9)
    return {
        "trials": n,
        "best_walk_forward_spearman": best,
        "trial_spread": spread,
        "expected_best_without_skill": float(expected),
        "deflated_probability": float(norm.cdf((best - expected) / error)),
    }
