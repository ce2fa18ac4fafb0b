"""The honest verdict: a block-bootstrap interval and a placebo p-value that respect
overlapping labels; NotSignificant on a random walk, Significant where skill is planted;
a backtest of the test tail net of costs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from trainer_testlib import make_config, random_walk_dataset

from tjtrainer.evaluation import (
    NOT_SIGNIFICANT,
    SIGNIFICANT,
    _block_bootstrap,
    backtest,
    block_rows,
    judge,
)
from tjtrainer.metrics import spearman
from tjtrainer.train import run_training


def _overlapping(rng: np.random.Generator, n: int, h: int) -> np.ndarray:
    """Sums of h consecutive i.i.d. draws: neighbours share h - 1 of them, as labels do."""
    noise = rng.standard_normal(n + h)
    return np.convolve(noise, np.ones(h), mode="valid")[:n]


def test_the_placebos_are_the_rotations_of_the_labels() -> None:
    rng = np.random.default_rng(0)
    predictions, labels = rng.standard_normal(300), rng.standard_normal(300)
    verdict = judge(predictions, labels, horizon=4, seed=1)
    assert verdict.test_spearman == pytest.approx(spearman(predictions, labels))
    assert verdict.placebos == 300 - 2 * verdict.block_rows + 1
    # The p-value counts the rotations (at least a block away) that score as high.
    rotated = [
        spearman(predictions, np.roll(labels, -k))
        for k in range(verdict.block_rows, 300 - verdict.block_rows + 1)
    ]
    expected = (1 + sum(r >= verdict.test_spearman - 1e-12 for r in rotated)) / (1 + len(rotated))
    assert verdict.p_value == pytest.approx(expected)


def test_with_overlapping_labels_the_false_alarm_rate_stays_at_the_level() -> None:
    """Null pairs whose labels overlap (h = 8) and whose predictions are as smooth: an
    i.i.d. shuffle calls a quarter of them skilful, the placebo rotations about 5 %."""
    rng = np.random.default_rng(42)
    ours, naive = [], []
    for _ in range(200):
        predictions, labels = _overlapping(rng, 600, 8), _overlapping(rng, 600, 8)
        verdict = judge(
            predictions, labels, horizon=8, seed=int(rng.integers(1 << 30)), resamples=200
        )
        ours.append(verdict.p_value < 0.05)
        shuffled = [spearman(predictions, rng.permutation(labels)) for _ in range(100)]
        naive.append(np.mean(np.array(shuffled) >= verdict.test_spearman) < 0.05)
    assert np.mean(ours) < 0.1
    assert np.mean(naive) > 0.15  # why the placebo must keep the labels' serial structure


def test_the_block_bootstrap_interval_is_wider_than_an_iid_one() -> None:
    rng = np.random.default_rng(3)
    predictions, labels = _overlapping(rng, 2000, 8), _overlapping(rng, 2000, 8)
    verdict = judge(predictions, labels, horizon=8, seed=5)
    iid = [
        spearman(predictions[rows], labels[rows])
        for rows in (rng.integers(0, 2000, 2000) for _ in range(300))
    ]
    low, high = np.quantile(iid, [0.025, 0.975])
    assert verdict.ci_high - verdict.ci_low > 1.5 * (high - low)
    assert verdict.ci_low < verdict.test_spearman < verdict.ci_high
    assert block_rows(2000, 8) == 18


def test_each_bootstrap_resample_is_the_correlation_of_its_rows() -> None:
    """The prefix-sum shortcut gives, per resample, the Pearson correlation of the rows its
    blocks (the last one cut to fit) select, computed here row by row."""
    rng = np.random.default_rng(11)
    n, block, resamples = 103, 10, 50
    x, y = rng.standard_normal(n), rng.standard_normal(n) + 0.3 * np.arange(n) / n
    fast = _block_bootstrap(x, y, block, resamples, np.random.default_rng(4))
    starts = np.random.default_rng(4).integers(0, n - block + 1, size=(resamples, 11))
    for resample, row_starts in zip(fast, starts, strict=True):
        rows = np.concatenate([np.arange(s, s + block) for s in row_starts])[:n]
        assert resample == pytest.approx(np.corrcoef(x[rows], y[rows])[0, 1], abs=1e-12)


def test_real_skill_is_significant_and_none_is_not() -> None:
    rng = np.random.default_rng(7)
    labels = _overlapping(rng, 1000, 4)
    skilled = judge(labels + 2.0 * _overlapping(rng, 1000, 4), labels, horizon=4, seed=1)
    assert skilled.verdict == SIGNIFICANT and skilled.p_value < 0.01 and skilled.ci_low > 0.2
    flat = judge(np.zeros(1000), labels, horizon=4, seed=1)
    assert flat.verdict == NOT_SIGNIFICANT and flat.p_value == 1.0
    opposite = judge(-labels, labels, horizon=4, seed=1)
    assert opposite.verdict == NOT_SIGNIFICANT and opposite.p_value > 0.9


def test_backtest_by_hand() -> None:
    stamps = np.array(
        pd.date_range("2024-01-01", periods=8, freq="6h").to_numpy(), dtype="datetime64[ns]"
    )
    predictions = np.array([0.9, 0.9, 0.1, 0.8, 0.0, 0.0, 0.7, 0.9])
    labels = np.array([0.01, 0.5, 0.5, -0.02, 0.5, 0.5, 0.03, 0.5])
    result = backtest(predictions, labels, stamps, threshold=0.5, horizon=2)
    # Enter at 0 (held 2 candles: 1 is skipped), at 3 (4 skipped), at 6 (7 skipped).
    assert result["trades"] == 3
    assert result["net_return"] == pytest.approx(0.01 - 0.02 + 0.03)
    assert result["hit_rate"] == pytest.approx(2 / 3)
    assert result["days"] == pytest.approx(42 / 24)
    assert result["turnover_per_day"] == pytest.approx(3 / (42 / 24))
    assert result["time_in_market"] == pytest.approx(6 / 8)
    returns = np.array([0.01, -0.02, 0.03])
    per_year = 3 / (42 / 24 / 365.25)
    assert result["sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1) * per_year**0.5)
    assert [value for _, value in result["equity"]] == pytest.approx([0.01, -0.01, 0.02])
    assert result["equity"][0][0] == "2024-01-01T00:00:00Z"


def test_the_backtest_takes_every_signal_outside_an_open_trade() -> None:
    rng = np.random.default_rng(3)
    predictions, labels = rng.random(5000), rng.normal(size=5000)
    stamps = np.array(
        pd.date_range("2024-01-01", periods=5000, freq="15min").to_numpy(), dtype="datetime64[ns]"
    )
    for horizon in (0, 1, 4, 9):
        taken, t = [], 0
        while t < len(labels):  # the rule, row by row
            if predictions[t] > 0.7:
                taken.append(t)
                t += max(1, horizon)
            else:
                t += 1
        result = backtest(predictions, labels, stamps, threshold=0.7, horizon=horizon)
        assert result["trades"] == len(taken), horizon
        assert result["net_return"] == pytest.approx(labels[taken].sum()), horizon


# -- on small real runs ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_walk_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = random_walk_dataset(tmp_path_factory.mktemp("rw") / "shared", planted=False)
    return root, run_training(make_config(root, "random-walk"))


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = random_walk_dataset(tmp_path_factory.mktemp("planted") / "shared", planted=True)
    return root, run_training(make_config(root, "planted"))


def test_a_random_walk_gets_not_significant_for_both_models(random_walk_run) -> None:  # type: ignore[no-untyped-def]
    _, progress = random_walk_run
    evaluation = progress.evaluation
    assert evaluation["level"] == 0.05
    for model in ("LONG", "SHORT"):
        assert evaluation[model]["verdict"] == NOT_SIGNIFICANT, evaluation[model]
        low, _ = evaluation[model]["ci"]
        # No skill is claimed: the interval does not lie above zero. (Whether it holds
        # zero is a 95 % event per model, so asserting it would only test one seed's luck.)
        assert low <= 0


def test_planted_skill_gets_significant_for_both_models(planted_run) -> None:  # type: ignore[no-untyped-def]
    _, progress = planted_run
    for model in ("LONG", "SHORT"):
        verdict = progress.evaluation[model]
        assert verdict["verdict"] == SIGNIFICANT, verdict
        assert verdict["p_value"] < 0.05 and verdict["ci"][0] > 0
        assert verdict["test_spearman"] == pytest.approx(
            progress.test_score_long if model == "LONG" else progress.test_score_short
        )
        # The trades the model picks do better than taking every trade, net of costs.
        trades = verdict["backtest"]
        assert trades["trades"] > 10
        assert trades["mean_return"] > trades["every_trade_mean_return"] + 3e-4
        assert trades["hit_rate"] > 0.5


def test_the_metadata_keeps_the_verdict_and_the_equity_curve(planted_run) -> None:  # type: ignore[no-untyped-def]
    root, progress = planted_run
    metadata = json.loads((root / "models" / "metadata_15m_latest.json").read_text())
    for model in ("LONG", "SHORT"):
        verdict = metadata["models"][model]["verdict"]
        assert verdict["verdict"] == progress.evaluation[model]["verdict"]
        assert verdict["level"] == 0.05 and verdict["confidence"] == 0.95
        assert verdict["block_rows"] >= 10 and verdict["placebos"] > 400
        trades = metadata["models"][model]["backtest"]
        assert len(trades["equity"]) == min(trades["trades"], 200)
        assert trades["equity"][-1][1] == pytest.approx(trades["net_return"])
        assert "enter when the prediction" in trades["rule"]


def test_the_deflated_probability_corrects_for_the_trials_run() -> None:
    from tjtrainer.evaluation import deflated_selection

    rng = np.random.default_rng(9)
    noise = list(rng.normal(0.0, 0.02, 60))  # 60 skill-less trials' walk-forward scores
    best = max(noise)
    lucky = deflated_selection(noise, [best - 0.005, best, best + 0.005], trials_run=60)
    assert lucky["expected_best_without_skill"] == pytest.approx(0.02 * 2.32, rel=0.25)
    assert lucky["deflated_probability"] < 0.9  # the best of 60 tries is what 60 tries give
    one_try = deflated_selection(noise[:2], [best - 0.005, best, best + 0.005], trials_run=2)
    assert one_try["deflated_probability"] > lucky["deflated_probability"]
    skilled = deflated_selection(noise, [0.19, 0.2, 0.21], trials_run=60)
    assert skilled["deflated_probability"] > 0.99


def test_the_run_records_the_deflated_selection(planted_run) -> None:  # type: ignore[no-untyped-def]
    root, progress = planted_run
    metadata = json.loads((root / "models" / "metadata_15m_latest.json").read_text())
    selection = metadata["models"]["LONG"]["selection"]
    assert selection["trials"] == 3
    assert 0 <= selection["deflated_probability"] <= 1
    assert progress.evaluation["LONG"]["deflated_probability"] == selection["deflated_probability"]
