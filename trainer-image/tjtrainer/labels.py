"""Labels: what a trade opened at a candle's close would have earned, net of costs.

For candle ``t``, horizon ``h`` candles and round-trip cost ``c`` (a fraction, e.g.
0.001 = 10 bps for a taker fee of 4 bps per side plus 1 bp of slippage per side):

- ``label_long[t]  =  ln(close[t+h] / close[t]) - c``   (buy at the close of ``t``, sell
  at the close of ``t+h``);
- ``label_short[t] = -ln(close[t+h] / close[t]) - c``   (the mirror trade).

A label is positive only when the trade beats its costs. The last ``h`` candles have no
label (their exit lies in the future) and are dropped from a dataset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_HORIZON = {"15m": 4, "1h": 4}
DEFAULT_COST_BPS = 10.0
LABEL_COLUMNS = ("label_long", "label_short")


def forward_log_return(close: pd.Series, horizon: int) -> pd.Series:
    """``ln(close[t+h] / close[t])``, NaN for the last ``horizon`` rows."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 candle, got {horizon}")
    log_close = np.log(close.astype("float64"))
    return log_close.shift(-horizon) - log_close


def compute_labels(close: pd.Series, *, horizon: int, cost_bps: float) -> pd.DataFrame:
    """``label_long`` and ``label_short`` for each candle (NaN for the last ``horizon``)."""
    if cost_bps < 0:
        raise ValueError(f"cost must be >= 0 bps, got {cost_bps}")
    forward = forward_log_return(close, horizon)
    cost = cost_bps / 10_000.0
    return pd.DataFrame({"label_long": forward - cost, "label_short": -forward - cost})
