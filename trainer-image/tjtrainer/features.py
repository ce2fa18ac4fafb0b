"""Features of a candle computed from that candle and the ones before it, never after.

Every feature of row ``t`` is a function of candles ``0..t`` only: trailing windows,
lags and recursive (exponential) averages, all of which pandas evaluates left to right.
``tests/trainer/test_features.py`` checks it by changing future candles. Scale-free forms
(log returns, ratios, z-scores) keep the features comparable across price levels and
volatility regimes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RETURN_LAGS = (1, 2, 4, 8, 16, 32, 96)
SHORT_WINDOW = 16
LONG_WINDOW = 96
RSI_PERIOD = 14
# Rows before this one lack a full window for some feature and are dropped.
WARMUP_ROWS = LONG_WINDOW

FEATURES = (
    *(f"ret_{lag}" for lag in RETURN_LAGS),
    "mom_z_16",
    "mom_z_96",
    "vol_16",
    "vol_96",
    "vol_ratio",
    "rsi_14",
    "range_z",
    "range_ratio",
    "clv",
    "clv_mean_4",
    "upper_wick_z",
    "lower_wick_z",
    "volume_z_16",
    "volume_z_96",
    "dist_sma_32_z",
    "hour_sin",
    "hour_cos",
)


def compute_features(candles: pd.DataFrame) -> pd.DataFrame:
    """The feature columns :data:`FEATURES` for each candle (``NaN`` during warm-up).

    ``candles`` has ``timestamp``, ``open``, ``high``, ``low``, ``close``, ``volume``.
    """
    open_ = candles["open"].astype("float64")
    high = candles["high"].astype("float64")
    low = candles["low"].astype("float64")
    close = candles["close"].astype("float64")
    log_close = pd.Series(np.log(close.to_numpy()), index=candles.index)
    ret_1 = log_close.diff()
    out: dict[str, pd.Series] = {}
    for lag in RETURN_LAGS:
        out[f"ret_{lag}"] = log_close.diff(lag)
    vol_short = ret_1.rolling(SHORT_WINDOW).std()
    vol_long = ret_1.rolling(LONG_WINDOW).std()
    out["mom_z_16"] = _ratio(out["ret_16"], vol_long * np.sqrt(16))
    out["mom_z_96"] = _ratio(out["ret_96"], vol_long * np.sqrt(96))
    out["vol_16"] = vol_short
    out["vol_96"] = vol_long
    out["vol_ratio"] = _ratio(vol_short, vol_long)
    out["rsi_14"] = _rsi(ret_1, RSI_PERIOD)

    log_range = pd.Series(np.log(high.to_numpy() / low.to_numpy()), index=candles.index)
    out["range_z"] = _ratio(log_range, vol_long)
    out["range_ratio"] = _ratio(log_range, log_range.rolling(LONG_WINDOW).mean())
    span = (high - low).to_numpy()
    clv_values = np.divide(
        (close - low).to_numpy() - (high - close).to_numpy(),
        span,
        out=np.zeros(len(candles)),
        where=span > 0,
    )
    clv = pd.Series(clv_values, index=candles.index)
    out["clv"] = clv
    out["clv_mean_4"] = clv.rolling(4).mean()
    body_top = np.maximum(open_.to_numpy(), close.to_numpy())
    body_bottom = np.minimum(open_.to_numpy(), close.to_numpy())
    upper = pd.Series(np.log(high.to_numpy() / body_top), index=candles.index)
    lower = pd.Series(np.log(body_bottom / low.to_numpy()), index=candles.index)
    out["upper_wick_z"] = _ratio(upper, vol_long)
    out["lower_wick_z"] = _ratio(lower, vol_long)

    log_volume = pd.Series(np.log1p(candles["volume"].to_numpy(dtype="float64")))
    log_volume.index = candles.index
    out["volume_z_16"] = _zscore(log_volume, SHORT_WINDOW)
    out["volume_z_96"] = _zscore(log_volume, LONG_WINDOW)
    sma = close.rolling(32).mean()
    out["dist_sma_32_z"] = _ratio(np.log(close / sma), vol_long * np.sqrt(32))

    stamps = pd.DatetimeIndex(candles["timestamp"])
    hours = stamps.hour.to_numpy() + stamps.minute.to_numpy() / 60.0
    out["hour_sin"] = pd.Series(np.sin(2 * np.pi * hours / 24.0), index=candles.index)
    out["hour_cos"] = pd.Series(np.cos(2 * np.pi * hours / 24.0), index=candles.index)

    frame = pd.DataFrame(out, index=candles.index)
    frame.iloc[:WARMUP_ROWS] = np.nan
    return frame[list(FEATURES)]


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """``numerator / denominator``, 0 where the denominator is 0, NaN where either is NaN."""
    num = numerator.to_numpy(dtype="float64")
    den = denominator.to_numpy(dtype="float64")
    result = np.full(len(num), np.nan)
    known = ~(np.isnan(num) | np.isnan(den))
    result[known] = 0.0
    usable = known & (den != 0)
    result[usable] = num[usable] / den[usable]
    return pd.Series(result, index=numerator.index)


def _zscore(values: pd.Series, window: int) -> pd.Series:
    mean = values.rolling(window).mean()
    std = values.rolling(window).std()
    return _ratio(values - mean, std)


def _rsi(returns: pd.Series, period: int) -> pd.Series:
    """Wilder's RSI on log returns, 0..100 (50 when nothing moved)."""
    gains = returns.clip(lower=0.0).ewm(alpha=1.0 / period, adjust=False).mean()
    losses = (-returns).clip(lower=0.0).ewm(alpha=1.0 / period, adjust=False).mean()
    total = (gains + losses).to_numpy()
    rsi = np.divide(100.0 * gains.to_numpy(), total, out=np.full(len(total), 50.0), where=total > 0)
    rsi[np.isnan(total)] = np.nan
    return pd.Series(rsi, index=returns.index)
