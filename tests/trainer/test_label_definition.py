"""Labels: forward log return over the horizon net of round-trip costs, and its mirror."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tjtrainer.datasets import build_frame
from tjtrainer.features import WARMUP_ROWS
from tjtrainer.labels import compute_labels, forward_log_return
from tjtrainer.synth import synth_candles


def test_long_and_short_labels_by_hand() -> None:
    close = pd.Series([100.0, 101.0, 99.0, 102.0, 103.0])
    labels = compute_labels(close, horizon=2, cost_bps=10)
    cost = 0.001
    assert labels["label_long"].iloc[0] == pytest.approx(np.log(99.0 / 100.0) - cost)
    assert labels["label_short"].iloc[0] == pytest.approx(-np.log(99.0 / 100.0) - cost)
    assert labels["label_long"].iloc[2] == pytest.approx(np.log(103.0 / 99.0) - cost)
    assert labels.iloc[3:].isna().all().all()  # no candle h steps ahead


def test_long_plus_short_is_minus_twice_the_cost() -> None:
    close = synth_candles("1h", 300, seed=2)["close"]
    labels = compute_labels(close, horizon=4, cost_bps=7.5).dropna()
    np.testing.assert_allclose(labels["label_long"] + labels["label_short"], -2 * 7.5e-4)


@pytest.mark.parametrize("horizon", [1, 4, 12])
def test_horizon_is_configurable(horizon: int) -> None:
    close = synth_candles("15m", 200, seed=3)["close"]
    forward = forward_log_return(close, horizon)
    assert forward.iloc[:-horizon].notna().all() and forward.iloc[-horizon:].isna().all()
    assert forward.iloc[10] == pytest.approx(np.log(close.iloc[10 + horizon] / close.iloc[10]))


def test_dataset_drops_rows_whose_label_needs_candles_past_the_end() -> None:
    candles = synth_candles("15m", 400, seed=4)
    frame = build_frame(candles, horizon=6, cost_bps=0)
    assert len(frame) == 400 - WARMUP_ROWS - 6
    assert frame["timestamp"].iloc[-1] == candles["timestamp"].iloc[400 - 6 - 1]
    last = 400 - 6 - 1
    expected = np.log(candles["close"].iloc[last + 6] / candles["close"].iloc[last])
    assert frame["label_long"].iloc[-1] == pytest.approx(expected)
