"""Indicators against independent oracles: plain-Python Wilder RSI and EMAs, numpy rolling statistics,
and published worked examples (StockCharts ChartSchool). pandas-ta is never checked against itself."""

from __future__ import annotations

import datetime as dt
import itertools
import sys
import types
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from pandas_ta.maps import Imports

from spy_pipeline.domain import indicators as ind
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox.market import minute_bars

NEW_YORK = ZoneInfo("America/New_York")
FULL_DAY = dt.date(2025, 6, 3)  # previous trading day: 2025-06-02
EARLY_CLOSE = dt.date(2024, 11, 29)  # day after Thanksgiving, closes 13:00 ET; previous: 2024-11-27
PRICE_COLUMNS = ("open", "high", "low", "close")


def spy_bars(day: dt.date) -> pl.DataFrame:
    """Synthetic SPY bars of a day as MINUTE_BARS (t in ms -> UTC timestamp, session by the clock)."""
    bounds = cal.session_bounds(day)
    return minute_bars("SPY", day).select(
        ticker=pl.lit("SPY"),
        timestamp=pl.from_epoch("t", time_unit="ms").dt.replace_time_zone("UTC"),
        session=pl.when(pl.col("t") < int(bounds.open.timestamp() * 1000)).then(pl.lit("pre"))
        .when(pl.col("t") < int(bounds.close.timestamp() * 1000)).then(pl.lit("regular"))
        .otherwise(pl.lit("post")),
        open="o", high="h", low="l", close="c", volume="v", vwap="vw", transactions="n",
    )


def two_day_grid(day: dt.date) -> pl.DataFrame:
    previous = cal.previous_trading_day(day)
    return pl.concat([ind.spy_minute_grid(spy_bars(previous), previous), ind.spy_minute_grid(spy_bars(day), day)])


def grid_of(closes) -> pl.DataFrame:
    """A minimal grid (timestamp, close) for a plain price series."""
    start = dt.datetime(2025, 6, 3, 13, 30, tzinfo=dt.UTC)
    return pl.DataFrame({
        "timestamp": [start + dt.timedelta(minutes=i) for i in range(len(closes))],
        "close": [float(c) for c in closes],
    }).with_columns(pl.col("timestamp").dt.cast_time_unit("us"))


# ---- independent oracles (plain Python / numpy) -------------------------------------------------

def wilder_rsi(closes, length: int = 14) -> list[float]:
    """Wilder's RSI as StockCharts/TA-Lib: seeded with the mean of the first `length` changes, then
    avg = (avg * (length - 1) + current) / length. NaN before row `length`."""
    out = [float("nan")] * len(closes)
    changes = [b - a for a, b in itertools.pairwise(closes)]
    gain = sum(max(c, 0.0) for c in changes[:length]) / length
    loss = sum(max(-c, 0.0) for c in changes[:length]) / length
    out[length] = 100.0 - 100.0 / (1.0 + gain / loss)
    for i in range(length, len(changes)):
        gain = (gain * (length - 1) + max(changes[i], 0.0)) / length
        loss = (loss * (length - 1) + max(-changes[i], 0.0)) / length
        out[i + 1] = 100.0 - 100.0 / (1.0 + gain / loss)
    return out


def ema(values, length: int, seed: str) -> np.ndarray:
    """EMA with alpha = 2 / (length + 1); seed "sma" (StockCharts/TA-Lib: the mean of the first `length`
    values, at row length - 1) or "first" (TradingView: the first value). Leading NaNs are skipped."""
    values = np.asarray(values, dtype=float)
    out = np.full(len(values), np.nan)
    first = int(np.argmax(~np.isnan(values)))
    alpha = 2.0 / (length + 1)
    start = first + length - 1 if seed == "sma" else first
    value = float(np.mean(values[first : start + 1]))
    out[start] = value
    for i in range(start + 1, len(values)):
        value = alpha * values[i] + (1.0 - alpha) * value
        out[i] = value
    return out


def rolling(values: np.ndarray, length: int, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    windows = np.lib.stride_tricks.sliding_window_view(values, length)
    pad = np.full(length - 1, np.nan)
    return np.concatenate([pad, windows.mean(axis=1)]), np.concatenate([pad, windows.std(axis=1, ddof=ddof)])


# ---- published worked examples ---------------------------------------------------------------

# StockCharts ChartSchool, "Relative Strength Index (RSI)", spreadsheet cs-rsi.xls: QQQQ daily closes. The
# page's table shows them rounded to 2 decimals (44.34, 44.09, ...) but the spreadsheet computes with these
# 4-decimal closes; with the 2-decimal ones the first RSI is 70.46, not the published 70.53.
STOCKCHARTS_RSI_CLOSES = [
    44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433, 46.0826, 45.8931,
    46.0328, 45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439, 46.2122, 46.2521,
    45.7137, 46.4515, 45.7835, 45.3548, 44.0288, 44.1783, 44.2181, 44.5672, 43.4205, 42.6628, 43.1314,
]
STOCKCHARTS_RSI = [  # rows 14.. of the RSI column, as published (2 decimals)
    70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42, 39.99, 41.46,
    41.87, 45.46, 37.30, 33.08, 37.77,
]
# StockCharts ChartSchool, "Bollinger Bands", spreadsheet cs-bbands.xls (SPY daily closes, 20, 2), as
# transcribed in a public test suite; the standard deviations match the population formula to 1e-6 and the
# sample formula (ddof=1) not at all (1.3255 against 1.2920 on the first row).
STOCKCHARTS_BB_CLOSES = [
    86.1557, 89.0867, 88.7829, 90.3228, 89.0671, 91.1453, 89.4397, 89.1750, 86.9302, 87.6752, 86.9596,
    89.4299, 89.3221, 88.7241, 87.4497, 87.2634, 89.4985, 87.9006, 89.1260, 90.7043, 92.9001, 92.9784,
]
STOCKCHARTS_BB = {  # row: (middle, upper, lower)
    19: (88.70794, 91.291862, 86.124018),
    20: (89.04516, 91.949268, 86.141052),
    21: (89.239745, 92.612595, 85.866895),
}


def test_wilder_oracle_reproduces_the_stockcharts_rsi_table():
    got = wilder_rsi(STOCKCHARTS_RSI_CLOSES)
    assert all(np.isnan(got[:14]))
    assert np.round(got[14:], 2).tolist() == STOCKCHARTS_RSI
    assert wilder_rsi(np.round(STOCKCHARTS_RSI_CLOSES, 2).tolist())[14] == pytest.approx(70.464, abs=1e-3)


def test_rsi_reproduces_the_stockcharts_worked_example():
    # Wilder's definition as StockCharts and TA-Lib: seeded with the mean of the first 14 changes.
    got = ind.indicators(grid_of(STOCKCHARTS_RSI_CLOSES))["rsi_14"].to_numpy()
    assert np.isnan(got[:14]).all()
    assert np.round(got[14:], 2).tolist() == STOCKCHARTS_RSI
    np.testing.assert_allclose(got[14:], wilder_rsi(STOCKCHARTS_RSI_CLOSES)[14:], rtol=0, atol=1e-10)
    # pandas-ta's native RSI (unseeded) is not that: 50.75 against the published 70.53 at row 14.
    unseeded = ind.ta.rsi(grid_of(STOCKCHARTS_RSI_CLOSES)["close"].to_pandas(), length=14, talib=False)
    assert unseeded.iloc[14] == pytest.approx(50.75, abs=0.01)


def test_rsi_is_the_seeded_wilder_rsi_from_its_first_value_on_a_real_looking_day():
    grid = two_day_grid(FULL_DAY)
    got = ind.indicators(grid)["rsi_14"].to_numpy()
    expected = np.array(wilder_rsi(grid["close"].to_list()))
    assert np.isnan(got[:14]).all() and not np.isnan(got[14:]).any()
    np.testing.assert_allclose(got[14:], expected[14:], rtol=0, atol=1e-9)


def test_rsi_of_an_input_without_any_move_is_neutral():
    got = ind.indicators(grid_of([500.0] * 20 + [500.5]))["rsi_14"].to_numpy()
    assert (got[14:20] == 50.0).all() and got[20] == 100.0


def test_macd_against_independent_emas():
    grid = two_day_grid(FULL_DAY)
    close = grid["close"].to_numpy()
    got = ind.indicators(grid)
    macd, signal, hist = (got[name].to_numpy() for name in ("macd", "macd_signal", "macd_hist"))

    # SMA-seeded EMAs (StockCharts): identical from the first value on.
    line = ema(close, 12, "sma") - ema(close, 26, "sma")
    line_signal = ema(line, 9, "sma")
    assert np.isnan(macd[:25]).all() and np.isnan(signal[:33]).all() and np.isnan(hist[:33]).all()
    np.testing.assert_allclose(macd[25:], line[25:], rtol=0, atol=1e-9)
    np.testing.assert_allclose(signal[33:], line_signal[33:], rtol=0, atol=1e-9)
    np.testing.assert_allclose(hist[33:], macd[33:] - signal[33:], rtol=0, atol=1e-12)

    # EMAs started from the first price (TradingView): different in the morning, the same after warm-up.
    line_tv = ema(close, 12, "first") - ema(close, 26, "first")
    signal_tv = ema(line_tv, 9, "first")
    assert abs(macd[25] - line_tv[25]) > 0.01
    assert np.abs(macd[390:] - line_tv[390:]).max() < 1e-6
    assert np.abs(signal[390:] - signal_tv[390:]).max() < 1e-6


def test_bollinger_against_numpy_population_std():
    grid = two_day_grid(FULL_DAY)
    close = grid["close"].to_numpy()
    got = ind.indicators(grid)
    mean, std = rolling(close, 20, ddof=0)
    lower, middle, upper = (got[name].to_numpy() for name in ("bb_lower", "bb_middle", "bb_upper"))
    for name, expected in (("bb_middle", mean), ("bb_upper", mean + 2 * std), ("bb_lower", mean - 2 * std)):
        assert np.isnan(got[name].to_numpy()[:19]).all()
        np.testing.assert_allclose(got[name].to_numpy()[19:], expected[19:], rtol=0, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(got["bb_percent_b"].to_numpy()[19:], ((close - lower) / (upper - lower))[19:])
    np.testing.assert_allclose(got["bb_bandwidth"].to_numpy()[19:], ((upper - lower) / middle)[19:])
    # The ddof choice matters by cents on SPY minute bars: the sample std puts the bands 2.6% further out.
    _, sample_std = rolling(close, 20, ddof=1)
    assert np.nanmax(np.abs(2 * sample_std - 2 * std)) > 0.01


def test_bollinger_reproduces_the_stockcharts_example():
    got = ind.indicators(grid_of(STOCKCHARTS_BB_CLOSES))
    for row, values in STOCKCHARTS_BB.items():
        assert [got[name][row] for name in ("bb_middle", "bb_upper", "bb_lower")] == pytest.approx(values, abs=1e-5)


def test_flat_window_gives_zero_bandwidth_and_middle_percent_b():
    got = ind.indicators(grid_of([500.0] * 40 + [500.5] * 30))
    assert (got["bb_bandwidth"][19:40] == 0.0).all() and (got["bb_percent_b"][19:40] == 0.5).all()
    assert got["bb_percent_b"][40] > 1.0  # a jump out of a flat window is above the upper band


def test_momentum_counts_grid_minutes():
    day = FULL_DAY
    bars = spy_bars(day)
    bounds = cal.session_bounds(day)
    gone = [bounds.open + dt.timedelta(minutes=m) for m in (3, 4, 5, 100, 200)]
    grid = ind.spy_minute_grid(bars.filter(~pl.col("timestamp").is_in(gone)), day)
    got = ind.indicators(grid)
    close = grid["close"].to_numpy()
    for k in (5, 30, 60):
        change, roc = got[f"change_{k}m"].to_numpy(), got[f"roc_{k}m"].to_numpy()
        assert np.isnan(change[:k]).all() and np.isnan(roc[:k]).all()
        np.testing.assert_allclose(change[k:], close[k:] - close[:-k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(roc[k:], 100 * (close[k:] / close[:-k] - 1), rtol=1e-9, atol=1e-12)
    # k rows back is k minutes back, by timestamp, even where bars were missing.
    back = got.join(
        got.select(pl.col("timestamp") + pl.duration(minutes=30), earlier=pl.col("close")), on="timestamp"
    )
    np.testing.assert_allclose(back["change_30m"].to_numpy(), (back["close"] - back["earlier"]).to_numpy())


# ---- the grid ---------------------------------------------------------------------------------

def session_minutes(day: dt.date, close: dt.time) -> list[dt.datetime]:
    """Independent of trading_calendar: 09:30 New York time to `close`, every minute, in UTC."""
    start = dt.datetime.combine(day, dt.time(9, 30), tzinfo=NEW_YORK)
    count = (dt.datetime.combine(day, close) - dt.datetime.combine(day, dt.time(9, 30))).seconds // 60
    return [(start + dt.timedelta(minutes=i)).astimezone(dt.UTC) for i in range(count)]


@pytest.mark.parametrize(
    ("day", "close", "first_utc"),
    [
        (dt.date(2024, 3, 8), dt.time(16), dt.time(14, 30)),  # EST
        (dt.date(2024, 3, 11), dt.time(16), dt.time(13, 30)),  # EDT, after the spring change
        (dt.date(2024, 11, 1), dt.time(16), dt.time(13, 30)),  # EDT
        (dt.date(2024, 11, 4), dt.time(16), dt.time(14, 30)),  # EST, after the autumn change
        (EARLY_CLOSE, dt.time(13), dt.time(14, 30)),
    ],
)
def test_grid_is_exactly_the_session_minutes(day, close, first_utc):
    grid = ind.spy_minute_grid(spy_bars(day), day)
    expected = session_minutes(day, close)
    assert grid.height == (210 if day == EARLY_CLOSE else 390) == len(expected)
    assert grid["timestamp"].to_list() == expected
    assert grid["timestamp"][0].time() == first_utc
    assert grid.columns == list(ind.GRID_COLUMNS)
    assert dict(grid.schema) == {
        "timestamp": pl.Datetime("us", "UTC"), **{c: pl.Float64() for c in (*PRICE_COLUMNS, "volume", "vwap")},
        "has_bar": pl.Boolean(),
    }


def test_grid_copies_real_bars_and_fills_missing_minutes():
    day = FULL_DAY
    bars = spy_bars(day)
    regular = bars.filter(pl.col("session") == "regular")
    open_ = cal.session_bounds(day).open
    gone = [open_ + dt.timedelta(minutes=m) for m in (0, 1, 50, 51, 52, 389)]
    grid = ind.spy_minute_grid(bars.filter(~pl.col("timestamp").is_in(gone)), day)
    assert grid["has_bar"].sum() == regular.height - len(gone)

    real = grid.filter("has_bar").join(regular, on="timestamp", suffix="_bar")
    assert real.height == regular.height - len(gone)
    for name in (*PRICE_COLUMNS, "volume", "vwap"):
        assert (real[name] == real[f"{name}_bar"]).all(), name

    # The first two minutes carry the last pre-market close; later gaps the last regular close.
    last_pre = bars.filter(pl.col("session") == "pre")["close"][-1]
    by_time = {row["timestamp"]: row for row in grid.iter_rows(named=True)}
    before = {0: last_pre, 1: last_pre, 50: by_time[open_ + dt.timedelta(minutes=49)]["close"]}
    before |= {51: before[50], 52: before[50], 389: by_time[open_ + dt.timedelta(minutes=388)]["close"]}
    for minute, price in before.items():
        row = by_time[open_ + dt.timedelta(minutes=minute)]
        assert [row[c] for c in PRICE_COLUMNS] == [price] * 4
        assert (row["volume"], row["vwap"], row["has_bar"]) == (0.0, None, False)


def test_grid_without_any_earlier_trade_uses_previous_close_or_stays_null():
    day = FULL_DAY
    open_ = cal.session_bounds(day).open
    bars = spy_bars(day).filter(pl.col("timestamp") > open_)  # no pre-market, no first minute
    assert ind.spy_minute_grid(bars, day, previous_close=600.0).row(0)[1:5] == (600.0,) * 4
    first = ind.spy_minute_grid(bars, day).row(0, named=True)
    assert [first[c] for c in PRICE_COLUMNS] == [None] * 4 and first["volume"] == 0.0
    with pytest.raises(ValueError, match="missing or non-finite"):
        ind.indicators(ind.spy_minute_grid(bars, day))


def test_grid_rejects_ambiguous_bars():
    day = FULL_DAY
    bars = spy_bars(day)
    with pytest.raises(ValueError, match="repeated"):
        ind.spy_minute_grid(pl.concat([bars, bars.head(1)]), day)
    with pytest.raises(ValueError, match="several tickers"):
        ind.spy_minute_grid(pl.concat([bars, bars.head(1).with_columns(ticker=pl.lit("QQQ"))]), day)
    shifted = bars.filter(pl.col("session") == "regular").head(1).with_columns(
        pl.col("timestamp") + pl.duration(seconds=30)
    )
    with pytest.raises(ValueError, match="start of a minute"):
        ind.spy_minute_grid(pl.concat([bars, shifted]), day)


# ---- warm-up and the day API -----------------------------------------------------------------

@pytest.mark.parametrize("day", [FULL_DAY, EARLY_CLOSE, dt.date(2024, 3, 11)])
def test_previous_day_warms_the_first_minute_up(day):
    previous = cal.previous_trading_day(day)
    warm = ind.day_indicators(spy_bars(previous), spy_bars(day), day)
    assert warm.height == cal.session_bounds(day).regular_minutes
    for name in ind.INDICATOR_COLUMNS:
        assert warm.schema[name] == pl.Float64()
        assert not warm[name].is_nan().any() and warm[name].null_count() == 0, name
    # day_indicators is indicators() on the two days' grids, cut to the day.
    assert warm.equals(ind.indicators(two_day_grid(day)).tail(warm.height))


@pytest.mark.parametrize("previous_bars", [None, "empty"])
def test_without_the_previous_day_values_needing_it_are_null_never_cold_started(previous_bars):
    day = FULL_DAY
    previous = spy_bars(cal.previous_trading_day(day)).clear() if previous_bars == "empty" else None
    cold = ind.day_indicators(previous, spy_bars(day), day)
    warm = ind.day_indicators(spy_bars(cal.previous_trading_day(day)), spy_bars(day), day)
    assert cold["timestamp"].to_list() == warm["timestamp"].to_list()
    for name in ind.INDICATOR_COLUMNS:
        assert not cold[name].is_nan().any(), name  # null, not NaN
        if name in ind.RECURSIVE_COLUMNS:  # every value depends on all earlier prices: null all day
            assert cold[name].null_count() == cold.height, name
            continue
        rows = ind.WARM_UP_ROWS[name]  # a window of the last rows: null only until the day fills it
        assert cold[name].null_count() == rows and cold[name][:rows].is_null().all(), name
        np.testing.assert_allclose(cold[name][rows:].to_numpy(), warm[name][rows:].to_numpy(), rtol=0, atol=1e-9)


def test_warm_up_on_an_early_close_day_is_enough():
    """2024-12-02 warms up on the 210 minutes of 2024-11-29; the conventions agree at the open anyway
    (measured: RSI 8.5e-6 points against pandas-ta's unseeded RSI, MACD 2e-7 USD)."""
    day = dt.date(2024, 12, 2)
    grid = two_day_grid(day)
    warm = ind.day_indicators(spy_bars(cal.previous_trading_day(day)), spy_bars(day), day)
    close = grid["close"].to_numpy()
    assert warm["rsi_14"][0] == pytest.approx(wilder_rsi(close.tolist())[210], abs=1e-9)
    unseeded = ind.ta.rsi(grid["close"].to_pandas(), length=14, talib=False).to_numpy()
    assert abs(warm["rsi_14"][0] - unseeded[210]) < 1e-4
    assert abs(warm["macd"][0] - (ema(close, 12, "first") - ema(close, 26, "first"))[210]) < 1e-5


def test_a_cold_start_would_be_wrong_for_two_hours():
    """Why a day without its previous day gets null RSI, not a cold-started one: even seeded as TA-Lib
    does, the cold RSI differs from the warm one by up to 14 points (measured 13.8) for about 120 minutes."""
    day = FULL_DAY
    warm = ind.day_indicators(spy_bars(cal.previous_trading_day(day)), spy_bars(day), day)["rsi_14"].to_numpy()
    cold = ind.indicators(ind.spy_minute_grid(spy_bars(day), day))["rsi_14"].to_numpy()
    off = np.abs(cold - warm) > 0.01
    assert np.nanmax(np.abs(cold - warm)) > 5 and 60 < np.flatnonzero(off).max() < 240


def test_day_starts_from_the_previous_close_when_its_first_minutes_have_no_trade():
    day = FULL_DAY
    previous = cal.previous_trading_day(day)
    bars = spy_bars(day).filter(pl.col("timestamp") >= cal.session_bounds(day).open + dt.timedelta(minutes=2))
    got = ind.day_indicators(spy_bars(previous), bars, day)
    last = ind.spy_minute_grid(spy_bars(previous), previous)["close"][-1]
    assert got["close"][:2].to_list() == [last, last] and not got["has_bar"][:2].any()


def test_indicators_rejects_unsorted_timestamps():
    grid = two_day_grid(FULL_DAY)
    with pytest.raises(ValueError, match="strictly increasing"):
        ind.indicators(grid.reverse())


def test_short_input_is_all_warm_up():
    got = ind.indicators(grid_of(np.linspace(500, 501, 10)))
    assert all(got[name].is_nan().all() for name in ind.INDICATOR_COLUMNS if name not in ("change_5m", "roc_5m"))


# ---- TA-Lib must never be used ---------------------------------------------------------------

def test_pandas_ta_never_switches_to_talib(monkeypatch):
    grid = two_day_grid(FULL_DAY)
    expected = ind.indicators(grid)

    calls: list[str] = []

    def fake(name):
        def function(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"TA-Lib {name} called")
        return function

    talib = types.ModuleType("talib")
    for name in ("RSI", "MACD", "BBANDS", "EMA", "SMA", "STDDEV", "VAR"):
        setattr(talib, name, fake(name))
    monkeypatch.setitem(sys.modules, "talib", talib)
    monkeypatch.setitem(Imports, "talib", True)  # what pandas-ta finds at import when TA-Lib is installed

    # The fake is live: pandas-ta's default would call it ...
    with pytest.raises(AssertionError, match="TA-Lib RSI"):
        ind.ta.rsi(grid["close"].to_pandas(), length=14)
    calls.clear()
    # ... but the module passes talib=False everywhere.
    assert ind.indicators(grid).equals(expected)
    assert calls == []
