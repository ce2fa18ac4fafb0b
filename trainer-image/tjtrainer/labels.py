"""Labels: what a trade opened at a candle's close would have earned, net of costs.

Two kinds (``--label``, see docs/DATASETS.md):

- ``barrier`` (the default): a **triple-barrier** trade per side. A long trade opened at
  ``close[t]`` takes profit at the first close ``take_profit`` units above the entry,
  stops out at the first close ``stop_loss`` units below it, and otherwise closes at
  ``close[t+h]`` (the time barrier). A short trade is the same with the roles of up and
  down swapped: take-profit ``take_profit`` units *below*, stop-loss ``stop_loss`` units
  *above*. One unit is the recent volatility over the horizon,
  ``sigma[t] * sqrt(h)``, where ``sigma[t]`` is the standard deviation of the last
  :data:`VOL_WINDOW` one-candle log returns up to and including candle ``t`` (the past
  only). Barriers are checked at the closes of candles ``t+1 .. t+h`` and a trade exits
  at the close that crossed one. (Filled exactly at the barrier, every stopped trade
  would earn ``-stop_loss * u[t]``: a function of a feature, which rank scores read as
  skill even on a random walk.) The label is the trade's log return minus the round-trip
  cost ``c``. With ``take_profit != stop_loss`` (2 and 1 by default) the LONG and SHORT
  labels are different questions: neither is a function of the other.
- ``forward``: the plain forward return, ``label_long = ln(close[t+h]/close[t]) - c`` and
  ``label_short = -ln(close[t+h]/close[t]) - c`` (so ``label_long + label_short = -2c``:
  SHORT is LONG mirrored).

A label is positive only when the trade beats its costs. Rows whose label has no value are
dropped from a dataset: the last ``h`` candles (their exit lies after the end), the candles
whose horizon spans a gap in the candles (``timestamp[t+h] - timestamp[t]`` is not ``h``
candles), and, for barrier labels, the first :data:`VOL_WINDOW` candles (no volatility yet).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from tjtrainer.dataset_reader import LABEL_COLUMNS
from tjtrainer.errors import DatasetError

DEFAULT_COST_BPS = 10.0
LABEL_KINDS = ("barrier", "forward")
DEFAULT_LABEL = "barrier"
DEFAULT_TAKE_PROFIT = 2.0
DEFAULT_STOP_LOSS = 1.0
VOL_WINDOW = 96
# Refused: a side whose trades (nearly) all end at the same barrier, or (nearly) never beat
# their cost. The suggested values are those that leave SUGGESTED_SHARE of trades.
MAX_SAME_EXIT_SHARE = 0.99
MIN_WINNING_SHARE = 0.01
SUGGESTED_SHARE = 0.05
OUTCOMES = ("take_profit", "stop_loss", "time")
_TAKE, _STOP, _TIME = 0, 1, 2


@dataclass(frozen=True)
class LabelSpec:
    """How a dataset's labels are made (recorded in ``dataset.json``)."""

    kind: str = DEFAULT_LABEL
    horizon: int = 4
    cost_bps: float = DEFAULT_COST_BPS
    take_profit: float = DEFAULT_TAKE_PROFIT
    stop_loss: float = DEFAULT_STOP_LOSS
    vol_window: int = VOL_WINDOW

    def __post_init__(self) -> None:
        if self.kind not in LABEL_KINDS:
            raise DatasetError(
                f"--label must be one of {', '.join(LABEL_KINDS)}, got {self.kind!r}"
            )
        if self.horizon < 1:
            raise DatasetError(f"--horizon must be >= 1 candle, got {self.horizon}")
        if not (math.isfinite(self.cost_bps) and self.cost_bps >= 0):
            raise DatasetError(f"--cost-bps must be >= 0, got {self.cost_bps}")
        for name, value in (("--take-profit", self.take_profit), ("--stop-loss", self.stop_loss)):
            if not (math.isfinite(value) and value > 0):
                raise DatasetError(
                    f"{name} must be > 0 (in units of recent volatility), got {value}"
                )

    @property
    def cost(self) -> float:
        return self.cost_bps / 10_000.0

    @property
    def warmup(self) -> int:
        """Leading candles without a label (no volatility estimate yet)."""
        return self.vol_window if self.kind == "barrier" else 0

    def definition(self) -> str:
        if self.kind == "forward":
            return (
                "label_long = ln(close[t+h]/close[t]) - cost; label_short = "
                "-ln(close[t+h]/close[t]) - cost; cost = cost_bps / 10000 per round trip; "
                "h = horizon in candles"
            )
        return (
            "triple barrier per side, entry close[t], unit u = sigma[t]*sqrt(h) with sigma[t] "
            f"the std of the last {self.vol_window} 1-candle log returns up to t; long: take "
            "profit at the first close above +take_profit*u, stop at the first close below "
            "-stop_loss*u, else exit at close[t+h]; short: take profit below -take_profit*u, "
            "stop above +stop_loss*u, else exit at close[t+h]; barriers checked at the closes "
            "of candles t+1..t+h, exit at the crossing close; label = log return of the "
            "trade - cost; cost = cost_bps / 10000 per round trip"
        )

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        if self.kind == "forward":
            for key in ("take_profit", "stop_loss", "vol_window"):
                data.pop(key)
        return data


def forward_log_return(close: pd.Series, horizon: int) -> pd.Series:
    """``ln(close[t+h] / close[t])``, NaN for the last ``horizon`` rows."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 candle, got {horizon}")
    log_close = np.log(close.astype("float64"))
    return log_close.shift(-horizon) - log_close


def volatility_unit(close: pd.Series, *, horizon: int, window: int = VOL_WINDOW) -> np.ndarray:
    """``sigma[t] * sqrt(h)``: the std of the last ``window`` 1-candle log returns up to
    and including candle ``t`` (NaN before a full window), scaled to the horizon."""
    returns = np.log(close.astype("float64")).diff()
    sigma = returns.rolling(window).std().to_numpy(dtype=np.float64)
    return sigma * math.sqrt(horizon)


def spans_gap(timestamps: pd.Series, horizon: int) -> np.ndarray:
    """Rows whose ``horizon`` candles ahead are more than ``horizon`` typical steps away
    (the market was closed, or candles are missing); the last ``horizon`` rows are False."""
    stamps = pd.to_datetime(timestamps, utc=True)
    nanos = stamps.dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
    out = np.zeros(len(nanos), dtype=bool)
    if len(nanos) <= horizon:
        return out
    step = int(np.median(np.diff(nanos)))
    out[:-horizon] = (nanos[horizon:] - nanos[:-horizon]) > horizon * step
    return out


@dataclass(frozen=True)
class Labels:
    """The labels of every candle (NaN where there is none) and how the trades ended."""

    frame: pd.DataFrame  # label_long, label_short
    outcomes: dict[str, np.ndarray]  # model -> int8 per candle (take, stop, time; -1 none)
    gap_rows: np.ndarray  # bool per candle: the horizon spans a gap (label dropped)
    spec: LabelSpec


def compute_labels(
    close: pd.Series, *, horizon: int, cost_bps: float, kind: str = "forward"
) -> pd.DataFrame:
    """Forward-return ``label_long`` and ``label_short`` of each candle (NaN for the last
    ``horizon``); kept for callers that only have closes."""
    if cost_bps < 0:
        raise ValueError(f"cost must be >= 0 bps, got {cost_bps}")
    if kind != "forward":
        raise ValueError("compute_labels makes forward labels; use label_candles for barriers")
    forward = forward_log_return(close, horizon)
    cost = cost_bps / 10_000.0
    return pd.DataFrame({"label_long": forward - cost, "label_short": -forward - cost})


def label_candles(candles: pd.DataFrame, spec: LabelSpec) -> Labels:
    """Labels of ``candles`` (``timestamp, open, high, low, close``) under ``spec``."""
    h = spec.horizon
    n = len(candles)
    gap = spans_gap(candles["timestamp"], h)
    if spec.kind == "forward":
        frame = compute_labels(candles["close"], horizon=h, cost_bps=spec.cost_bps)
        none = np.full(n, -1, dtype=np.int8)
        none[: max(0, n - h)] = _TIME
        outcomes = {"LONG": none, "SHORT": none.copy()}
    else:
        frame, outcomes = _barrier_labels(candles, spec)
    frame.loc[gap, list(LABEL_COLUMNS)] = np.nan
    for model in outcomes:
        outcomes[model][gap] = -1
    return Labels(frame=frame, outcomes=outcomes, gap_rows=gap, spec=spec)


def _log(candles: pd.DataFrame, column: str) -> np.ndarray:
    return np.log(candles[column].to_numpy(dtype=np.float64))


def _barrier_labels(
    candles: pd.DataFrame, spec: LabelSpec
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    h, n = spec.horizon, len(candles)
    unit = volatility_unit(candles["close"], horizon=h, window=spec.vol_window)
    log_close = _log(candles, "close")
    rows = max(0, n - h)
    entry = log_close[:rows]
    width = unit[:rows]
    frame = pd.DataFrame(
        {"label_long": np.full(n, np.nan), "label_short": np.full(n, np.nan)},
        index=candles.index,
    )
    outcomes: dict[str, np.ndarray] = {}
    for model, column, sign in (("LONG", "label_long", 1.0), ("SHORT", "label_short", -1.0)):
        take_level = spec.take_profit * width
        stop_level = spec.stop_loss * width
        exit_move = np.full(rows, np.nan)
        outcome = np.full(rows, -1, dtype=np.int8)
        alive = np.isfinite(width)
        for k in range(1, h + 1):
            # The trade's gain so far, in its own direction, at the close of candle t+k.
            move = sign * (log_close[k : k + rows] - entry)
            stop = alive & (move < -stop_level)
            take = alive & (move > take_level)
            for hit, code in ((stop, _STOP), (take, _TAKE)):
                exit_move[hit] = move[hit]
                outcome[hit] = code
            alive &= ~(stop | take)
        last = sign * (log_close[h : h + rows] - entry)
        exit_move[alive] = last[alive]
        outcome[alive] = _TIME
        frame.iloc[:rows, frame.columns.get_loc(column)] = exit_move - spec.cost
        full = np.full(n, -1, dtype=np.int8)
        full[:rows] = outcome
        outcomes[model] = full
    return frame, outcomes


def outcome_shares(outcomes: np.ndarray) -> dict[str, float]:
    """Share of trades ending at each barrier (over the labelled rows)."""
    labelled = outcomes[outcomes >= 0]
    total = max(1, len(labelled))
    return {
        name: round(float((labelled == code).sum()) / total, 6)
        for code, name in enumerate(OUTCOMES)
    }


def check_labels(candles: pd.DataFrame, labels: Labels, keep: np.ndarray) -> None:
    """Refuse labels that cannot teach anything, naming the option and a value that works.

    ``keep`` marks the rows that go into the dataset.
    """
    spec = labels.spec
    columns = dict(zip(("LONG", "SHORT"), LABEL_COLUMNS, strict=True))
    for column in columns.values():
        values = labels.frame[column].to_numpy()[keep]
        if len(values) and np.ptp(values) == 0:
            raise DatasetError(
                f"every {column} is {values[0]:.6g}: the candles never move over the "
                f"horizon of {spec.horizon}; use more varied candles or a longer --horizon"
            )
    if spec.kind == "barrier":
        _check_barriers(candles, labels, keep)
    for model, column in columns.items():
        values = labels.frame[column].to_numpy()[keep]
        winning = float((values > 0).mean()) if len(values) else 0.0
        if not len(values) or winning >= MIN_WINNING_SHARE:
            continue
        gross = values + spec.cost
        most = math.floor(float(np.quantile(gross, 1 - SUGGESTED_SHARE)) * 10_000 * 10) / 10
        fix = (
            f"use --cost-bps <= {most:g} ({100 * SUGGESTED_SHARE:g} % of trades win then)"
            if most > 0
            else "too few trades would win even without costs: use a longer --horizon"
            + (" or a wider --take-profit" if spec.kind == "barrier" else "")
        )
        raise DatasetError(
            f"--cost-bps {spec.cost_bps:g} is larger than nearly every move: only "
            f"{100 * winning:.2f} % of {model} trades beat it (need "
            f"{100 * MIN_WINNING_SHARE:g} %); {fix}"
        )


def _check_barriers(candles: pd.DataFrame, labels: Labels, keep: np.ndarray) -> None:
    spec = labels.spec
    excursions = _excursions(candles, spec)
    for model in ("LONG", "SHORT"):
        shares = outcome_shares(labels.outcomes[model][keep])
        for name, option, value in (
            ("stop_loss", "--stop-loss", spec.stop_loss),
            ("take_profit", "--take-profit", spec.take_profit),
        ):
            if shares[name] < MAX_SAME_EXIT_SHARE:
                continue
            reach = excursions[(model, name == "stop_loss")][keep]
            reach = reach[np.isfinite(reach)]
            minimum = math.ceil(float(np.quantile(reach, SUGGESTED_SHARE)) * 100) / 100
            raise DatasetError(
                f"{option} {value:g}: {100 * shares[name]:.1f} % of {model} trades end at "
                f"their {name.replace('_', '-')}, so every label is about the same; use "
                f"{option} >= {max(minimum, 0.01):g} (in units of recent volatility)"
            )


def _excursions(candles: pd.DataFrame, spec: LabelSpec) -> dict[tuple[str, bool], np.ndarray]:
    """Per candle, the furthest close over the horizon in each direction, in volatility
    units: (model, adverse) -> array (NaN where unknown)."""
    h, n = spec.horizon, len(candles)
    unit = volatility_unit(candles["close"], horizon=h, window=spec.vol_window)
    log_close = _log(candles, "close")
    rows = max(0, n - h)
    entry = log_close[:rows]
    up = np.full(rows, -np.inf)
    down = np.full(rows, -np.inf)
    for k in range(1, h + 1):
        up = np.maximum(up, log_close[k : k + rows] - entry)
        down = np.maximum(down, entry - log_close[k : k + rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        up_units = np.divide(up, unit[:rows])
        down_units = np.divide(down, unit[:rows])
    pad = np.full(n - rows, np.nan)
    return {
        ("LONG", True): np.concatenate([down_units, pad]),
        ("LONG", False): np.concatenate([up_units, pad]),
        ("SHORT", True): np.concatenate([up_units, pad]),
        ("SHORT", False): np.concatenate([down_units, pad]),
    }
