"""Labels: triple-barrier trades per side (the default) or the forward return, net of
costs; never a look into the future beyond the trade; no label across a gap."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from trainer_testlib import random_walk_candles

from tjtrainer.dataset_reader import INFO_FILE
from tjtrainer.datasets import build_frame, synth_dataset
from tjtrainer.errors import DatasetError
from tjtrainer.features import FEATURES, WARMUP_ROWS
from tjtrainer.labels import (
    LabelSpec,
    compute_labels,
    forward_log_return,
    label_candles,
    volatility_unit,
)
from tjtrainer.synth import synth_candles


def _candles(close: list[float], high: list[float], low: list[float]) -> pd.DataFrame:
    stamps = pd.date_range("2024-01-01", periods=len(close), freq="15min", tz="UTC")
    open_ = [close[0], *close[:-1]]
    return pd.DataFrame(
        {
            "timestamp": stamps,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": 1.0,
        }
    )


# -- forward labels (the option) ----------------------------------------------------------
def test_forward_labels_by_hand() -> None:
    close = pd.Series([100.0, 101.0, 99.0, 102.0, 103.0])
    labels = compute_labels(close, horizon=2, cost_bps=10)
    cost = 0.001
    assert labels["label_long"].iloc[0] == pytest.approx(np.log(99.0 / 100.0) - cost)
    assert labels["label_short"].iloc[0] == pytest.approx(-np.log(99.0 / 100.0) - cost)
    assert labels["label_long"].iloc[2] == pytest.approx(np.log(103.0 / 99.0) - cost)
    assert labels.iloc[3:].isna().all().all()  # no candle h steps ahead


def test_forward_short_is_long_mirrored() -> None:
    candles = synth_candles("1h", 400, seed=2)
    frame = build_frame(candles, horizon=4, cost_bps=7.5, label="forward")
    np.testing.assert_allclose(frame["label_long"] + frame["label_short"], -2 * 7.5e-4)


@pytest.mark.parametrize("horizon", [1, 4, 12])
def test_horizon_is_configurable(horizon: int) -> None:
    close = synth_candles("15m", 200, seed=3)["close"]
    forward = forward_log_return(close, horizon)
    assert forward.iloc[:-horizon].notna().all() and forward.iloc[-horizon:].isna().all()
    assert forward.iloc[10] == pytest.approx(np.log(close.iloc[10 + horizon] / close.iloc[10]))


# -- barrier labels (the default) ---------------------------------------------------------
def test_volatility_unit_is_the_std_of_past_returns_over_the_horizon() -> None:
    close = synth_candles("15m", 300, seed=5)["close"]
    unit = volatility_unit(close, horizon=4, window=96)
    returns = np.diff(np.log(close.to_numpy()))
    # unit[t] uses the returns ending at candle t: r[t-95..t] (r[i] = ln c[i]/c[i-1]).
    t = 200
    assert unit[t] == pytest.approx(np.std(returns[t - 96 : t], ddof=1) * 2.0)
    assert np.isnan(unit[95]) and np.isfinite(unit[96])


def test_barrier_trades_by_hand() -> None:
    # Window 4: candles 0..4 set the volatility at candle 4, the entry. Returns
    # +1 %, -1 %, +1 %, -1 % (in logs) have a standard deviation of 0.011547.
    r = 0.01
    logs = [0.0, r, 0.0, r, 0.0]
    base = [100 * math.exp(x) for x in logs]
    spec = LabelSpec(kind="barrier", horizon=3, cost_bps=0, take_profit=1.0, stop_loss=0.5)
    spec = LabelSpec(**{**spec.describe(), "vol_window": 4})
    u = np.std([r, -r, r, -r], ddof=1) * math.sqrt(3)
    entry = base[-1]

    def trade(*moves: float, high: float = 0.0) -> tuple[float, float, int, int]:
        """Labels and outcomes of the trade at candle 4, closes at entry * e^(move * u)."""
        close = [*base, *(entry * math.exp(m * u) for m in moves)]
        top = [*base, *(entry * math.exp((m + high) * u) for m in moves)]
        labels = label_candles(_candles(close, top, close), spec)
        frame = labels.frame.iloc[4]
        return (
            frame["label_long"],
            frame["label_short"],
            int(labels.outcomes["LONG"][4]),
            int(labels.outcomes["SHORT"][4]),
        )

    # Up 0.3u (inside both trades' barriers), then 1.2u: at that close the long trade
    # takes its profit (+1.2u, above +1u) and the short one is stopped (-1.2u).
    long, short, out_long, out_short = trade(0.3, 1.2, 0.0)
    assert long == pytest.approx(1.2 * u) and short == pytest.approx(-1.2 * u)
    assert (out_long, out_short) == (0, 1)  # take-profit, stop-loss
    # Up 0.6u: the short trade is stopped at that close (above +0.5u); then down 0.7u:
    # the long trade is stopped there (below -0.5u), not at the first close.
    long, short, out_long, out_short = trade(0.6, -0.7, 0.1)
    assert short == pytest.approx(-0.6 * u) and out_short == 1
    assert long == pytest.approx(-0.7 * u) and out_long == 1
    # Nothing crossed: both exit at the last close (the time barrier), net of the cost.
    spec = LabelSpec(**{**spec.describe(), "cost_bps": 5.0})
    long, short, out_long, out_short = trade(0.1, -0.2, 0.3)
    assert long == pytest.approx(0.3 * u - 5e-4) and short == pytest.approx(-0.3 * u - 5e-4)
    assert out_long == out_short == 2
    # Highs far above the barrier do not count: barriers are checked at closes.
    long, _, out_long, _ = trade(0.1, -0.2, 0.3, high=5.0)
    assert out_long == 2 and long == pytest.approx(0.3 * u - 5e-4)


def test_long_and_short_barrier_labels_are_different_questions() -> None:
    candles = synth_candles("15m", 3000, seed=6)
    frame = build_frame(candles, horizon=4)
    total = frame["label_long"] + frame["label_short"]
    assert total.std() > 1e-3  # not -2c on every row, as forward labels would be
    mirror = np.corrcoef(frame["label_long"], -frame["label_short"])[0, 1]
    assert mirror < 0.95
    forward = build_frame(candles, horizon=4, label="forward")
    assert np.corrcoef(forward["label_long"], -forward["label_short"])[0, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("side", ["label_long", "label_short"])
def test_on_a_random_walk_no_feature_predicts_the_barrier_labels(side: str) -> None:
    """Exits at closes: a stopped trade's loss is not a function of the volatility unit
    (filled at the barrier price it would be -sl * u, and vol_96 "predicted" it)."""
    frame = build_frame(random_walk_candles(40_000, seed=1), horizon=4)
    for feature in FEATURES:
        rho = spearmanr(frame[feature], frame[side]).statistic
        assert abs(rho) < 0.035, (feature, rho)


@pytest.mark.parametrize("cut", [300, 1200])
def test_labels_look_only_at_the_past_and_the_trade(cut: int) -> None:
    """The barrier width of candle t uses candles up to t; the label of t uses candles up
    to t + h, nothing after."""
    candles = synth_candles("15m", 1500, seed=8)
    spec = LabelSpec(horizon=4)
    changed = candles.copy()
    later = changed.index > cut
    scale = np.random.default_rng(cut).uniform(0.8, 1.25, later.sum())
    for column in ("open", "high", "low", "close"):
        changed.loc[later, column] = changed.loc[later, column] * scale
    changed["high"] = changed[["open", "high", "close"]].max(axis=1)
    changed["low"] = changed[["open", "low", "close"]].min(axis=1)
    unit_before = volatility_unit(candles["close"], horizon=4)
    unit_after = volatility_unit(changed["close"], horizon=4)
    np.testing.assert_array_equal(unit_before[: cut + 1], unit_after[: cut + 1])
    before = label_candles(candles, spec).frame
    after = label_candles(changed, spec).frame
    # Trades that end by candle `cut` are untouched; those still open after it changed.
    pd.testing.assert_frame_equal(before.iloc[: cut - 4 + 1], after.iloc[: cut - 4 + 1])
    assert not np.allclose(before.iloc[cut:-4].to_numpy(), after.iloc[cut:-4].to_numpy())


def test_labels_whose_horizon_spans_a_gap_are_dropped() -> None:
    candles = synth_candles("15m", 800, seed=9)
    gapped = candles.drop(index=range(400, 420)).reset_index(drop=True)  # 5 hours missing
    frame = build_frame(gapped, horizon=4)
    stamps = frame["timestamp"]
    ends = stamps + pd.Timedelta(minutes=15 * 4)
    positions = gapped["timestamp"].searchsorted(ends)
    # every kept label's exit candle exists exactly h candles of time later
    assert (gapped["timestamp"].iloc[positions].to_numpy() == ends.to_numpy()).all()
    # the 4 candles before the gap lost their labels; everything else is kept
    assert len(frame) == len(gapped) - WARMUP_ROWS - 4 - 4
    assert gapped["timestamp"].iloc[399] not in set(stamps)
    assert gapped["timestamp"].iloc[395] in set(stamps)


def test_dataset_json_records_the_labels(tmp_path: Path) -> None:
    path, _ = synth_dataset(tmp_path, "15m", rows=1500, seed=2, take_profit=3, stop_loss=1.5)
    described = json.loads((path.parent / INFO_FILE).read_text())
    labels = described["labels"]
    assert labels["kind"] == "barrier" and labels["horizon"] == 4 and labels["cost_bps"] == 10.0
    assert (labels["take_profit"], labels["stop_loss"], labels["vol_window"]) == (3.0, 1.5, 96)
    assert labels["dropped_rows"] == {"warmup": 96, "end": 4, "gap": 0}
    for model in ("LONG", "SHORT"):
        shares = labels["outcomes"][model]
        assert sum(shares.values()) == pytest.approx(1.0)
        assert shares["stop_loss"] > shares["take_profit"] > 0  # wider take-profit, rarer
    assert described["label_definition"].startswith("triple barrier")
    path, _ = synth_dataset(tmp_path, "15m", rows=1500, seed=2, label="forward")
    described = json.loads((path.parent / INFO_FILE).read_text())
    assert described["labels"]["kind"] == "forward"
    assert "take_profit" not in described["labels"]
    assert described["label_definition"].startswith("label_long = ln(close[t+h]/close[t])")


# -- refused before anything is written ----------------------------------------------------
def test_a_cost_larger_than_any_move_is_refused_with_a_cost_that_works() -> None:
    candles = synth_candles("15m", 2000, seed=10)
    with pytest.raises(DatasetError) as caught:
        build_frame(candles, horizon=4, cost_bps=500)
    message = str(caught.value)
    assert "--cost-bps 500" in message and "use --cost-bps <=" in message
    suggested = float(message.split("use --cost-bps <= ")[1].split()[0])
    assert 1 < suggested < 500
    frame = build_frame(candles, horizon=4, cost_bps=suggested)
    assert (frame["label_long"] > 0).mean() >= 0.01


def test_barriers_that_end_every_trade_alike_are_refused_with_values_that_work() -> None:
    # A market falling steadily, by far more than its noise: every long trade is stopped
    # at its first close and every short trade takes its profit there.
    rng = np.random.default_rng(11)
    close = list(100 * np.exp(np.cumsum(-0.002 + rng.normal(0, 0.0002, 600))))
    falling = _candles(close, close, close)
    with pytest.raises(DatasetError) as caught:
        build_frame(falling, horizon=4)
    message = str(caught.value)
    assert "--stop-loss 1: 100.0 % of LONG trades end at their stop-loss" in message
    suggested = float(message.split("use --stop-loss >= ")[1].split()[0])
    assert suggested > 10  # the drop over the horizon, in units of the noise
    with pytest.raises(DatasetError) as caught:
        build_frame(falling, horizon=4, stop_loss=suggested)
    # LONG is fine now; SHORT's take-profit is the next thing to widen.
    assert "--take-profit 2: 100.0 % of SHORT trades end at their take-profit" in str(caught.value)


def test_flat_candles_make_every_label_equal_and_are_refused() -> None:
    flat = _candles([100.0] * 300, [100.0] * 300, [100.0] * 300)
    with pytest.raises(DatasetError, match="every label_long is"):
        build_frame(flat, horizon=4)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"take_profit": 0}, "--take-profit must be > 0"),
        ({"stop_loss": -1}, "--stop-loss must be > 0"),
        ({"label": "sideways"}, "--label must be one of barrier, forward"),
    ],
)
def test_bad_label_options_are_refused(options: dict[str, object], words: str) -> None:
    with pytest.raises(DatasetError, match=words):
        build_frame(synth_candles("15m", 300, seed=1), horizon=4, **options)  # type: ignore[arg-type]


def test_dataset_drops_rows_whose_label_needs_candles_past_the_end() -> None:
    candles = synth_candles("15m", 400, seed=4)
    frame = build_frame(candles, horizon=6, cost_bps=0, label="forward")
    assert len(frame) == 400 - WARMUP_ROWS - 6
    assert frame["timestamp"].iloc[-1] == candles["timestamp"].iloc[400 - 6 - 1]
    last = 400 - 6 - 1
    expected = np.log(candles["close"].iloc[last + 6] / candles["close"].iloc[last])
    assert frame["label_long"].iloc[-1] == pytest.approx(expected)
