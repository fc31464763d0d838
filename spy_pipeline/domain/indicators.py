"""Technical indicators on SPY's regular-session minute grid (pure: polars in and out, pandas-ta inside).

Three steps:

1. `spy_minute_grid` turns one day's SPY MINUTE_BARS into the complete regular-session grid (390
   minutes, 210 on a 13:00 early close). Polygon has no bar for a minute without a trade, and every
   indicator here counts *rows* (RSI over 14 rows, a 60-minute change as 60 rows back): on sparse bars
   "14 rows" would silently mean "14 or more minutes". On the grid a row is always a minute.
2. `indicators` computes RSI, MACD, Bollinger bands and momentum on a grid, usually the previous
   trading day's grid followed by the current day's, so that the current day starts warm.
3. `day_indicators` does both and returns only the current day's rows.

Conventions (the numbers depend on them; the constants below are the single source):

- pandas-ta is always called with ``talib=False``. Without that argument pandas-ta silently switches to
  TA-Lib whenever the TA-Lib package is importable, and TA-Lib's RSI/MACD/BBANDS use other warm-up
  conventions (and ignore ``ddof``): the same code would give other numbers on another machine.
- RSI (`RSI_LENGTH` = 14): Wilder's definition as TA-Lib and StockCharts compute it. The first average
  gain (loss) is the simple mean of the first 14 gains (losses), at row 14; after that Wilder smoothing,
  avg = (avg * 13 + current) / 14; RSI = 100 * avg gain / (avg gain + avg loss). It reproduces
  StockCharts' published worked example (cs-rsi.xls). pandas-ta's native RSI is not used: it starts the
  smoothing from the first change without that seed, which differed by 10-35 points at row 14 and
  for hours after (the difference decays as (13/14)^n). One deliberate difference from TA-Lib: an input
  without a single up or down move so far (avg gain = avg loss = 0) gets 50, not TA-Lib's 0, which
  reads as "oversold". With the previous day's grid as warm-up, the seed's weight at the open is
  (13/14)^376 ≈ 8e-13 after a full day, ≈ 5e-7 after a 210-minute early close.
- MACD (12, 26, 9): pandas-ta's native EMAs (alpha = 2/(n+1), ``adjust=False``) are seeded with the
  simple mean of their first n values, as TA-Lib and StockCharts do; ``macd`` starts at row 25 and
  ``macd_signal``/``macd_hist`` at row 33. TradingView-style EMAs started from the first price give
  another MACD; the difference decays as (25/27)^n: measured 0.1-0.4 USD at row 25 of a cold start,
  below 1e-6 after 175-200 rows, ≈ 2e-7 USD at the open after an early-close warm-up day, ≈ 1e-13 after
  a full one. ``macd_hist`` = ``macd`` - ``macd_signal`` (not scaled). An input shorter than 34 rows has
  no MACD at all (pandas-ta returns nothing; the columns are NaN), likewise RSI below 15 rows and the
  bands below 20.
- Bollinger bands (`BB_LENGTH` = 20, `BB_STD` = 2): middle = 20-row simple mean of the close; the bands
  use the *population* standard deviation, ``BB_DDOF`` = 0, as John Bollinger, StockCharts and TA-Lib do
  (pandas-ta's own default is ddof=1, and so is polars' ``rolling_std``: those bands are sqrt(20/19) =
  2.6% wider; measured on synthetic SPY days, each band moves by a median 2-3 cents, at most 6-10
  cents, and %b by up to 0.02). StockCharts' published worked example (cs-bbands.xls) matches ddof=0.
  ``bb_percent_b`` = (close - lower) / (upper - lower), 0.5 when the 20 closes are all equal (the bands
  collapse onto the close); ``bb_bandwidth`` = (upper - lower) / middle as a *fraction* (pandas-ta's BBB
  column is the same times 100). We compute
  %b and bandwidth ourselves rather than take pandas-ta's BBP/BBB, which add machine epsilon to
  *every* row's width once any row of the input has zero width.
- Momentum: ``change_{k}m`` = close - close k rows (minutes of the grid) earlier, USD; ``roc_{k}m`` =
  100 * change / earlier close, percent. With a warm-up day the first rows of the day reach back into
  the previous session, so they include the overnight gap.

`indicators` follows TA-Lib: every indicator column is float64 and NaN (not null) exactly during its
warm-up rows, counted from the first row of the input (`WARM_UP_ROWS`); the input's closes must all be
present. `day_indicators`, which the datasets use, never publishes a value computed from missing
history: with the previous trading day it has a value for every minute; without it (the first trading
day of the calendar, a previous day Polygon has no data for) the values that need it are null (not NaN):
RSI and MACD, whose every value depends on all earlier prices, for the whole day; the Bollinger bands
and momentum only for their first rows.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pandas_ta as ta
import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import MOMENTUM_MINUTES, UTC_TIMESTAMP

RSI_LENGTH = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_LENGTH = 20
BB_STD = 2.0
BB_DDOF = 0  # population standard deviation, as Bollinger, StockCharts and TA-Lib; pandas-ta's default is 1

GRID_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "vwap", "has_bar")

# Rows at the start of the input for which each column is NaN.
WARM_UP_ROWS: dict[str, int] = {
    "rsi_14": RSI_LENGTH,
    "macd": MACD_SLOW - 1,
    "macd_signal": MACD_SLOW + MACD_SIGNAL - 2,
    "macd_hist": MACD_SLOW + MACD_SIGNAL - 2,
    **{name: BB_LENGTH - 1 for name in ("bb_lower", "bb_middle", "bb_upper", "bb_percent_b", "bb_bandwidth")},
    **{f"{kind}_{k}m": k for k in MOMENTUM_MINUTES for kind in ("change", "roc")},
}
INDICATOR_COLUMNS = tuple(WARM_UP_ROWS)
# Recursive: every value depends on all earlier closes, so without earlier history no value is exact.
RECURSIVE_COLUMNS = ("rsi_14", "macd", "macd_signal", "macd_hist")

def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC)


def spy_minute_grid(bars: pl.DataFrame, day: dt.date | str, previous_close: float | None = None) -> pl.DataFrame:
    """The regular-session 1-minute grid of one trading day, from that day's SPY MINUTE_BARS.

    One row per minute from the open (inclusive) to the close (exclusive), timestamps in UTC: 390 rows,
    210 on an early close. The grid exists because indicators count rows: on Polygon's sparse bars (no
    bar for a minute without a trade) "the last 14 rows" would not be "the last 14 minutes".

    Columns: timestamp, open, high, low, close, volume, vwap, has_bar. A minute with a bar copies it
    (has_bar true). A minute without one (has_bar false) carries the previous close forward as its
    open, high, low and close, with volume 0 and vwap null. "Previous close" is the last earlier bar of
    the day, pre-market bars included; if the day has none before the minute, `previous_close` (for
    example the previous day's last close); if that is None too, the prices stay null.

    Bars outside the regular session are ignored (except as the pre-market carry-in). Raises ValueError
    for bars of more than one ticker, repeated timestamps, or a regular-session timestamp that is not
    the start of a minute.
    """
    day = cal.require_trading_day(day)
    bounds = cal.session_bounds(day)
    open_, close_ = _utc(bounds.open), _utc(bounds.close)
    if "ticker" in bars.columns and bars.height and bars["ticker"].n_unique() > 1:
        raise ValueError(f"spy_minute_grid: bars of several tickers {sorted(bars['ticker'].unique())}")
    prices = bars.select(
        pl.col("timestamp").cast(UTC_TIMESTAMP),
        *(pl.col(name).cast(pl.Float64) for name in ("open", "high", "low", "close", "volume", "vwap")),
    ).filter(pl.col("timestamp") >= _utc(bounds.pre_market_open), pl.col("timestamp") < close_)
    if prices["timestamp"].is_duplicated().any():
        raise ValueError(f"spy_minute_grid: repeated bar timestamps on {day}")
    regular = prices.filter(pl.col("timestamp") >= open_)
    off_minute = regular.filter(pl.col("timestamp").dt.truncate("1m") != pl.col("timestamp"))
    if off_minute.height:
        raise ValueError(f"spy_minute_grid: {off_minute.height} bar(s) on {day} not at the start of a minute")
    pre_market = prices.filter(pl.col("timestamp") < open_).sort("timestamp")
    carry = pre_market["close"][-1] if pre_market.height else previous_close

    minutes = pl.datetime_range(
        open_, close_, interval="1m", closed="left", time_unit="us", time_zone="UTC", eager=True
    ).alias("timestamp")
    grid = pl.DataFrame(minutes).join(regular.with_columns(has_bar=pl.lit(True)), on="timestamp", how="left")
    last_close = pl.coalesce(pl.col("close").forward_fill(), pl.lit(carry, dtype=pl.Float64))
    return grid.with_columns(
        *(pl.coalesce(pl.col(name), last_close).alias(name) for name in ("open", "high", "low", "close")),
        volume=pl.col("volume").fill_null(0.0),
        has_bar=pl.col("has_bar").fill_null(False),
    ).select(GRID_COLUMNS)


def _column(result: pd.DataFrame | None, prefix: str, rows: int) -> np.ndarray:
    """A pandas-ta output column by name prefix; all NaN when pandas-ta had too few rows (it returns None)."""
    if result is None:
        return np.full(rows, np.nan)
    (name,) = [c for c in result.columns if c.startswith(prefix)]
    return result[name].to_numpy(dtype=np.float64)


def _wilder_average(values: np.ndarray, length: int) -> np.ndarray:
    """Wilder's running average of `values` from index length - 1 on: seeded with the mean of the first
    `length` values, then avg = (avg * (length - 1) + value) / length, which is an exponential average
    with alpha = 1/length (adjust=False) started at the seed."""
    seeded = np.concatenate([[values[:length].mean()], values[length:]])
    return pd.Series(seeded).ewm(alpha=1.0 / length, adjust=False).mean().to_numpy()


def wilder_rsi(close: np.ndarray, length: int = RSI_LENGTH) -> np.ndarray:
    """RSI by Wilder's definition (see the module docstring): NaN for the first `length` rows."""
    out = np.full(len(close), np.nan)
    if len(close) <= length:
        return out
    change = np.diff(close)
    gain = _wilder_average(np.clip(change, 0.0, None), length)
    loss = _wilder_average(np.clip(-change, 0.0, None), length)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        out[length:] = np.where(total > 0, 100.0 * gain / total, 50.0)
    return out


def indicators(grid: pl.DataFrame) -> pl.DataFrame:
    """The grid's rows with RSI, MACD, Bollinger and momentum columns (see the module docstring).

    `grid` is one or more consecutive days' `spy_minute_grid` outputs, concatenated in time order (the
    previous trading day first, to warm the current day up). Only `timestamp` and `close` are read;
    all input columns are kept. Raises ValueError for unsorted or repeated timestamps and for missing
    closes.
    """
    for name in ("timestamp", "close"):
        if name not in grid.columns:
            raise ValueError(f"indicators: the grid has no {name!r} column")
    timestamps = grid["timestamp"]
    if grid.height > 1 and not (timestamps.diff().drop_nulls() > dt.timedelta(0)).all():
        raise ValueError("indicators: timestamps must be strictly increasing")
    close = grid["close"].cast(pl.Float64).to_numpy()
    if not np.isfinite(close).all():
        raise ValueError(f"indicators: {int((~np.isfinite(close)).sum())} missing or non-finite close(s)")

    rows = grid.height
    series = pd.Series(close, dtype="float64")
    rsi = wilder_rsi(close)
    macd = ta.macd(series, fast=MACD_FAST, slow=MACD_SLOW, signal=MACD_SIGNAL, talib=False)
    bands = ta.bbands(
        series, length=BB_LENGTH, lower_std=BB_STD, upper_std=BB_STD, ddof=BB_DDOF, mamode="sma", talib=False
    )
    lower, middle, upper = (_column(bands, prefix, rows) for prefix in ("BBL_", "BBM_", "BBU_"))
    width = upper - lower
    with np.errstate(invalid="ignore", divide="ignore"):
        percent_b = np.where(width > 0, (close - lower) / width, 0.5)
    percent_b[np.isnan(width)] = np.nan

    columns: dict[str, np.ndarray] = {
        "rsi_14": rsi,
        "macd": _column(macd, "MACD_", rows),
        "macd_signal": _column(macd, "MACDs_", rows),
        "macd_hist": _column(macd, "MACDh_", rows),
        "bb_lower": lower,
        "bb_middle": middle,
        "bb_upper": upper,
        "bb_percent_b": percent_b,
        "bb_bandwidth": width / middle,
    }
    for k in MOMENTUM_MINUTES:
        earlier = np.full(rows, np.nan)
        earlier[k:] = close[: max(rows - k, 0)]
        columns[f"change_{k}m"] = close - earlier
        columns[f"roc_{k}m"] = 100.0 * (close - earlier) / earlier
    return grid.with_columns(pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items())


def day_indicators(
    previous_day_bars: pl.DataFrame | None, day_bars: pl.DataFrame, day: dt.date | str
) -> pl.DataFrame:
    """The current day's grid rows with indicators, warmed up on the previous trading day's grid.

    `previous_day_bars` are SPY MINUTE_BARS of `previous_trading_day(day)`, `day_bars` those of `day`.
    With the warm-up every indicator has a value from the first minute of the day. Without it (None,
    or no bars: the history cannot be had) a value that would need it is null, never a cold-started
    number: RECURSIVE_COLUMNS for the whole day, the others for their WARM_UP_ROWS first rows.
    Minutes before the day's first trade carry the previous day's last close.
    """
    day = cal.require_trading_day(day)
    warm_up = None
    if previous_day_bars is not None and previous_day_bars.height:
        warm_up = spy_minute_grid(previous_day_bars, cal.previous_trading_day(day))
        warm_up = warm_up.filter(pl.col("close").is_not_null())  # only leading minutes before any trade
    if warm_up is None or warm_up.height == 0:
        cold = indicators(spy_minute_grid(day_bars, day))
        return cold.with_columns(
            *(pl.lit(None, pl.Float64).alias(name) for name in RECURSIVE_COLUMNS),
            *(pl.col(name).fill_nan(None) for name in INDICATOR_COLUMNS if name not in RECURSIVE_COLUMNS),
        )
    current = spy_minute_grid(day_bars, day, previous_close=warm_up["close"][-1])
    first = current["timestamp"][0]
    return indicators(pl.concat([warm_up, current])).filter(pl.col("timestamp") >= first)
