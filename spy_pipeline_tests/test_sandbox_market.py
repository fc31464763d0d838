"""The sandbox's synthetic market: deterministic, internally consistent, and shaped like real SPY minute data.

Session times are checked in America/New_York against hard-coded clock times where the brief fixes them
(04:00 pre-market, 20:00 end of after-hours, 13:00/17:00 on early closes); elsewhere the regular session
comes from the trading calendar, whose DST and early-close handling the early-close tests pin down.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import market
from spy_pipeline_tests.conftest import REPO_ROOT

NEW_YORK = ZoneInfo("America/New_York")
PRE_MARKET_OPEN = dt.time(4, 0)
AFTER_HOURS_CLOSE = dt.time(20, 0)
REFERENCE_DAY = dt.date(2025, 1, 8)

# One script for both sides of the cross-process comparison, so both hash exactly the same way.
DIGEST_SCRIPT = """
import datetime as dt, hashlib, sys
from spy_pipeline.sandbox import market
frame = market.minute_bars(sys.argv[1], dt.date.fromisoformat(sys.argv[2]))
print(hashlib.sha256(frame.write_csv().encode()).hexdigest())
"""


def frame_digest(frame: pl.DataFrame) -> str:
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()


def et_times(frame: pl.DataFrame) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(t / 1000, NEW_YORK) for t in frame["t"].to_list()]


def regular_session(ticker: str, day: dt.date) -> pl.DataFrame:
    """Bars from the calendar's open (inclusive) to its close (exclusive)."""
    bounds = cal.session_bounds(day)
    open_ms, close_ms = int(bounds.open.timestamp() * 1000), int(bounds.close.timestamp() * 1000)
    return market.minute_bars(ticker, day).filter((pl.col("t") >= open_ms) & (pl.col("t") < close_ms))


def sampled_days(start: dt.date, end: dt.date, every: int) -> list[dt.date]:
    return cal.trading_days(start, end)[::every]


# --- determinism ---------------------------------------------------------------------------------


def test_minute_bars_identical_in_a_separate_process() -> None:
    ticker, day = "SPY", dt.date(2024, 3, 15)
    in_process = frame_digest(market.minute_bars(ticker, day))
    env = {**os.environ, "PYTHONHASHSEED": "4242"}  # a different str-hash seed must not matter
    result = subprocess.run(
        [sys.executable, "-c", DIGEST_SCRIPT, ticker, day.isoformat()],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == in_process


def test_minute_bars_identical_across_calls_after_clearing_caches() -> None:
    first = market.minute_bars("QQQ", REFERENCE_DAY)
    market.minute_bars.cache_clear()
    market._daily_levels.cache_clear()
    second = market.minute_bars("QQQ", REFERENCE_DAY)
    assert first is not second
    assert first.equals(second)


def test_minute_bars_differ_between_days_and_tickers() -> None:
    spy = market.minute_bars("SPY", REFERENCE_DAY)
    assert not spy.equals(market.minute_bars("SPY", dt.date(2025, 1, 7)))
    assert not spy.equals(market.minute_bars("QQQ", REFERENCE_DAY))


# --- bar consistency -----------------------------------------------------------------------------


@pytest.mark.parametrize("ticker", sorted(market.PROFILES))
def test_ohlc_vwap_volume_and_transactions_are_consistent(ticker: str) -> None:
    days = sampled_days(cal.FIRST_TRADING_DAY, dt.date(2026, 12, 31), every=9)
    frame = pl.concat([market.minute_bars(ticker, day) for day in days])
    assert frame.height > 200 * len(days)
    violations = frame.filter(
        ~(
            (pl.col("l") <= pl.col("o"))
            & (pl.col("o") <= pl.col("h"))
            & (pl.col("l") <= pl.col("c"))
            & (pl.col("c") <= pl.col("h"))
            & (pl.col("l") <= pl.col("vw"))
            & (pl.col("vw") <= pl.col("h"))
            & (pl.col("l") > 0)
            & (pl.col("v") > 0)
            & (pl.col("n") >= 1)
        )
    )
    assert violations.height == 0, violations.head(5)


@pytest.mark.parametrize("ticker", sorted(market.PROFILES))
def test_timestamps_strictly_increasing_on_whole_minutes(ticker: str) -> None:
    for day in sampled_days(cal.FIRST_TRADING_DAY, dt.date(2026, 12, 31), every=31):
        t = market.minute_bars(ticker, day)["t"].to_numpy()
        assert (np.diff(t) > 0).all(), day
        assert (t % 60_000 == 0).all(), day


# --- sessions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [dt.date(2025, 1, 8), dt.date(2024, 7, 15), dt.date(2016, 3, 14), dt.date(2021, 11, 8)])
def test_bars_span_04_00_to_before_20_00_eastern(day: dt.date) -> None:
    """Winter and summer days, including the Mondays right after the DST switches."""
    times = et_times(market.minute_bars("SPY", day))
    assert all(ts.date() == day for ts in times)
    assert all(PRE_MARKET_OPEN <= ts.time() < AFTER_HOURS_CLOSE for ts in times)
    assert min(times).time() < dt.time(4, 30), "pre-market starts at 04:00 ET"
    assert max(times).time() >= dt.time(19, 30), "after-hours runs to 20:00 ET"
    assert any(ts.time() == dt.time(9, 30) for ts in times)


@pytest.mark.parametrize("day", [dt.date(2024, 11, 29), dt.date(2024, 7, 3)])
def test_early_close_day_regular_session_ends_13_00_and_after_hours_17_00(day: dt.date) -> None:
    frame = market.minute_bars("SPY", day)
    times = et_times(frame)
    volume = frame["v"].to_numpy()
    last_half_hour = np.array([dt.time(12, 30) <= ts.time() < dt.time(13, 0) for ts in times])
    after_close = np.array([ts.time() >= dt.time(13, 0) for ts in times])
    assert PRE_MARKET_OPEN <= min(times).time() < dt.time(4, 30)
    assert max(times).time() < dt.time(17, 0), "after-hours ends four hours after the 13:00 close"
    assert max(times).time() >= dt.time(16, 30)
    # Regular-session activity up to 12:59, thin after-hours trading from 13:00 on.
    assert last_half_hour.sum() >= 28
    assert volume[after_close].max() < volume[last_half_hour].min()
    assert after_close.sum() < 0.8 * 240
    last_regular = frame.filter(pl.Series(last_half_hour))[-1]
    assert et_times(last_regular)[0].time() == dt.time(12, 59)
    assert last_regular["c"][0] == round(market.regular_close("SPY", day), 2)


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2024, 12, 25),  # Christmas
        dt.date(2024, 11, 28),  # Thanksgiving
        dt.date(2024, 7, 4),  # Independence Day
        dt.date(2025, 1, 4),  # Saturday
        dt.date(2025, 1, 5),  # Sunday
        dt.date(2025, 1, 9),  # unscheduled closure (national day of mourning)
        dt.date(2018, 12, 5),  # unscheduled closure (national day of mourning)
    ],
)
def test_closed_days_have_no_bars(day: dt.date) -> None:
    for ticker in sorted(market.PROFILES):
        assert market.minute_bars(ticker, day).height == 0


@pytest.mark.parametrize("ticker", ["AAPL", "spy", ""])
def test_unknown_ticker_has_no_bars(ticker: str) -> None:
    assert market.minute_bars(ticker, REFERENCE_DAY).height == 0


def test_days_outside_the_calendar_have_no_bars() -> None:
    assert market.minute_bars("SPY", dt.date(2014, 12, 31)).height == 0
    assert market.minute_bars("SPY", cal.last_known_day() + dt.timedelta(days=3)).height == 0


# --- missing minutes -----------------------------------------------------------------------------


def test_some_regular_minutes_without_trades_have_no_bar() -> None:
    days = cal.trading_days("2025-01-06", "2025-01-17")
    missing = sum(390 - regular_session("SPY", day).height for day in days)
    assert 0 < missing < 0.02 * 390 * len(days)


def test_extended_hours_trade_much_more_sparsely_than_regular_hours() -> None:
    days = cal.trading_days("2025-01-06", "2025-01-17")
    regular_bars = extended_bars = 0
    regular_volume: list[float] = []
    extended_volume: list[float] = []
    for day in days:
        frame = market.minute_bars("SPY", day)
        regular = regular_session("SPY", day)
        extended = frame.filter(~pl.col("t").is_in(regular["t"].implode()))
        regular_bars += regular.height
        extended_bars += extended.height
        regular_volume += regular["v"].to_list()
        extended_volume += extended["v"].to_list()
    regular_fill = regular_bars / (len(days) * 390)
    extended_fill = extended_bars / (len(days) * (330 + 240))  # 04:00-09:30 and 16:00-20:00 ET
    assert regular_fill > 0.99
    assert extended_fill < 0.85 * regular_fill
    assert np.median(extended_volume) < 0.1 * np.median(regular_volume)


# --- intraday shape ------------------------------------------------------------------------------


def _intraday_profile(days: list[dt.date]) -> dict[str, dict[str, float]]:
    """Mean volume and mean |ln(c/o)| per window: first/last 30 regular minutes and 12:00-14:00 ET."""
    windows: dict[str, tuple[dt.time, dt.time]] = {
        "open": (dt.time(9, 30), dt.time(10, 0)),
        "midday": (dt.time(12, 0), dt.time(14, 0)),
        "close": (dt.time(15, 30), dt.time(16, 0)),
    }
    volume: dict[str, list[float]] = {name: [] for name in windows}
    moves: dict[str, list[float]] = {name: [] for name in windows}
    for day in days:
        frame = regular_session("SPY", day)
        abs_returns = np.abs(np.log(frame["c"].to_numpy() / frame["o"].to_numpy()))
        for i, ts in enumerate(et_times(frame)):
            for name, (start, end) in windows.items():
                if start <= ts.time() < end:
                    volume[name].append(float(frame["v"][i]))
                    moves[name].append(float(abs_returns[i]))
    return {
        "volume": {name: float(np.mean(values)) for name, values in volume.items()},
        "move": {name: float(np.mean(values)) for name, values in moves.items()},
    }


def test_regular_session_volume_is_u_shaped() -> None:
    profile = _intraday_profile(cal.trading_days("2024-02-01", "2024-02-29"))["volume"]
    assert profile["open"] > 1.3 * profile["midday"]
    assert profile["close"] > 1.1 * profile["midday"]


def test_regular_session_volatility_is_u_shaped() -> None:
    profile = _intraday_profile(cal.trading_days("2024-02-01", "2024-02-29"))["move"]
    assert profile["open"] > 1.3 * profile["midday"]
    assert profile["close"] > 1.1 * profile["midday"]


# --- across days ---------------------------------------------------------------------------------


def test_each_open_is_near_the_previous_close_with_overnight_gaps() -> None:
    days = cal.trading_days(cal.FIRST_TRADING_DAY, dt.date(2026, 12, 31))
    pairs = [(days[i - 1], days[i]) for i in range(1, len(days), 13)]
    gaps = []
    for previous, day in pairs:
        previous_close = regular_session("SPY", previous)["c"][-1]
        today_open = regular_session("SPY", day)["o"][0]
        gaps.append(today_open / previous_close - 1)
    gaps_array = np.array(gaps)
    assert np.abs(gaps_array).max() < 0.03
    assert np.mean(gaps_array != 0) > 0.5, "most days open away from the previous close"


def test_spy_price_levels_are_realistic_2015_to_2026() -> None:
    for day in sampled_days(cal.FIRST_TRADING_DAY, dt.date(2026, 12, 31), every=21):
        frame = market.minute_bars("SPY", day)
        assert 150 < frame["l"].min() <= frame["h"].max() < 900, day


@pytest.mark.parametrize("ticker", sorted(market.PROFILES))
def test_regular_session_close_equals_regular_close(ticker: str) -> None:
    """The last regular-session bar closes at the market's official close, every day of 2023-2024."""
    mismatches = []
    for day in cal.trading_days("2023-01-01", "2024-12-31"):
        session = regular_session(ticker, day)
        official = round(market.regular_close(ticker, day), 2)
        if session["c"][-1] != official:
            last_bar = et_times(session[-1:])[0].strftime("%H:%M")
            mismatches.append(f"{day}: last regular bar {last_bar} ET c={session['c'][-1]}, regular_close={official}")
    assert not mismatches, "\n".join(mismatches)


VIX_DAYS = [dt.date(2025, 1, 6), dt.date(2025, 1, 8), dt.date(2024, 11, 29), dt.date(2024, 3, 11)]


@pytest.mark.parametrize("day", VIX_DAYS)
def test_vix_is_an_index_with_a_value_every_minute_until_15_minutes_after_the_close(day: dt.date) -> None:
    bars = market.minute_bars("I:VIX", day)
    assert bars.columns == ["t", "o", "h", "l", "c"]  # Polygon's index aggregates: no volume, vwap, trades
    bounds = cal.session_bounds(day)
    assert bars["t"][0] == int(bounds.open.timestamp() * 1000)
    assert bars["t"][-1] == int(bounds.close.timestamp() * 1000) + 14 * 60_000
    assert bars["t"].diff().drop_nulls().unique().to_list() == [60_000]
    consistent = (pl.col("l") <= pl.min_horizontal("o", "c")) & (pl.col("h") >= pl.max_horizontal("o", "c"))
    assert bars.select(consistent).to_series().all()
    regular_last = bars.filter(pl.col("t") < int(bounds.close.timestamp() * 1000))["c"][-1]
    assert regular_last == pytest.approx(market.vix_close(day), abs=0.006)


def test_vix_moves_against_spy_and_stays_in_a_realistic_range() -> None:
    days = cal.trading_days("2015-01-02", "2026-06-30")
    vix = np.array([market.vix_close(d) for d in days])
    spy = np.array([market.regular_close("SPY", d) for d in days])
    correlation = np.corrcoef(np.diff(np.log(spy)), np.diff(np.log(vix)))[0, 1]
    assert correlation < -0.5
    assert vix.min() > 8 and vix.max() < 60 and 12 < np.median(vix) < 25
    # mean reversion: a level far from the long-run mean is followed by moves back toward it
    high = vix[:-20] > 24
    assert (vix[20:][high] < vix[:-20][high]).mean() > 0.6


def test_vix_minute_moves_mirror_spy_minute_moves() -> None:
    day = dt.date(2025, 1, 8)
    vix = market.minute_bars("I:VIX", day).select("t", vix="c")
    spy = market.minute_bars("SPY", day).select("t", spy="c")
    joined = vix.join(spy, on="t").sort("t")
    correlation = np.corrcoef(np.diff(np.log(joined["spy"])), np.diff(np.log(joined["vix"])))[0, 1]
    assert correlation < -0.5
