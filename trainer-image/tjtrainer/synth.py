"""Synthetic candles that look like a liquid crypto pair, for demos, tests and benchmarks.

The generator is a small market model, not white noise, so that the trainer has something
real to find and something hard to fit:

- **heavy tails**: innovations are Student-t with 4 degrees of freedom;
- **volatility clusters**: the variance follows a GARCH(1,1) recursion, times an
  intraday pattern (busier in the afternoon UTC);
- **volume** rises with volatility and with the size of the move, plus its own
  autocorrelated noise;
- **weak predictable structure**: a slow latent trend (momentum, visible through
  returns over the last hours) and a latent order-flow pressure that both nudges the next
  few returns and shapes the current candle's wicks (visible through where the candle
  closes inside its range). Both are small next to the noise: a good model reaches a
  rank correlation of a few hundredths to about a tenth with the forward return.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TIMEFRAME_MINUTES = {"15m": 15, "1h": 60}
# Typical per-candle volatility of BTC/USDT for each timeframe.
BASE_VOLATILITY = {"15m": 0.0025, "1h": 0.005}
START = pd.Timestamp("2023-01-01T00:00:00Z")
START_PRICE = 30_000.0

_T_DOF = 4.0
_GARCH_ALPHA = 0.08
_GARCH_BETA = 0.90
_TREND_PERSISTENCE = 0.995
_TREND_WEIGHT = 0.06
_PRESSURE_WEIGHT = 0.10
_PRESSURE_DECAY = 0.6
_REVERSAL = 0.04


def synth_candles(timeframe: str, n_candles: int, *, seed: int = 0) -> pd.DataFrame:
    """``n_candles`` consecutive candles of ``timeframe`` with the columns of an OHLCV file:
    ``timestamp`` (UTC), ``open``, ``high``, ``low``, ``close``, ``volume``.

    The same ``seed`` always gives the same candles.
    """
    if timeframe not in TIMEFRAME_MINUTES:
        raise ValueError(f"timeframe must be one of {sorted(TIMEFRAME_MINUTES)}, got {timeframe!r}")
    if n_candles < 2:
        raise ValueError(f"need at least 2 candles, got {n_candles}")
    rng = np.random.default_rng(seed)
    minutes = TIMEFRAME_MINUTES[timeframe]
    timestamps = pd.date_range(START, periods=n_candles, freq=f"{minutes}min")
    hours = timestamps.hour.to_numpy() + timestamps.minute.to_numpy() / 60.0
    season = 1.0 + 0.3 * np.cos(2.0 * np.pi * (hours - 15.0) / 24.0)

    shocks = rng.standard_t(_T_DOF, n_candles) / np.sqrt(_T_DOF / (_T_DOF - 2.0))
    trend = _ar1(rng.standard_normal(n_candles), _TREND_PERSISTENCE)
    pressure = rng.standard_normal(n_candles)
    returns, sigma = _returns(shocks, trend, pressure, season, BASE_VOLATILITY[timeframe])

    close = START_PRICE * np.exp(np.cumsum(returns))
    open_ = np.empty(n_candles)
    open_[0] = START_PRICE
    open_[1:] = close[:-1]
    # Buying pressure closes a candle near its high: short upper wick, long lower wick.
    upper = sigma * np.abs(rng.standard_normal(n_candles)) * 0.6 * np.exp(-0.5 * pressure)
    lower = sigma * np.abs(rng.standard_normal(n_candles)) * 0.6 * np.exp(0.5 * pressure)
    high = np.maximum(open_, close) * np.exp(upper)
    low = np.minimum(open_, close) * np.exp(-lower)

    log_volume = (
        np.log(250.0 * minutes / 15.0)
        + np.log(sigma / BASE_VOLATILITY[timeframe])
        + 0.4 * np.abs(shocks)
        + 0.2 * np.abs(pressure)
        + _ar1(0.3 * rng.standard_normal(n_candles), 0.7)
    )
    return pd.DataFrame(
        {
            "timestamp": timestamps,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": np.exp(log_volume),
        }
    )


def _ar1(noise: np.ndarray, phi: float) -> np.ndarray:
    """A stationary AR(1) series with unit-variance innovations scaled to unit variance."""
    out = np.empty_like(noise)
    level = 0.0
    scale = np.sqrt(1.0 - phi * phi)
    for i, value in enumerate(noise):
        level = phi * level + scale * value
        out[i] = level
    return out


def _returns(
    shocks: np.ndarray,
    trend: np.ndarray,
    pressure: np.ndarray,
    season: np.ndarray,
    base_vol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Log returns and their conditional volatility under GARCH(1,1) with a small mean."""
    n = len(shocks)
    returns = np.empty(n)
    sigma = np.empty(n)
    omega = base_vol**2 * (1.0 - _GARCH_ALPHA - _GARCH_BETA)
    variance = base_vol**2
    last_return = 0.0
    last_innovation = 0.0
    flow = 0.0
    for i in range(n):
        variance = omega + _GARCH_ALPHA * last_innovation**2 + _GARCH_BETA * variance
        vol = np.sqrt(variance) * season[i]
        drift = vol * (_TREND_WEIGHT * trend[i] + _PRESSURE_WEIGHT * flow) - _REVERSAL * last_return
        innovation = vol * shocks[i]
        last_return = drift + innovation
        last_innovation = innovation / season[i]
        returns[i] = last_return
        sigma[i] = vol
        # The pressure seen in candle i pushes the next few candles, fading out.
        flow = _PRESSURE_DECAY * flow + pressure[i]
    return returns, sigma
