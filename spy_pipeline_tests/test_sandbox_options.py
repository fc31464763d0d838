"""The sandbox's SPY options: a listing like the real one and minute bars priced off the synthetic SPY path.

Listing and bar-generation rules are checked in-process; the bars are also read back through the
unmodified official client (`list_aggs` of `O:SPY...` tickers) and held to no-arbitrage bounds and
put-call parity against the SPY minute closes the same sandbox serves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import polygon
import pytest

from spy_pipeline.domain import occ
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import catalog, market, options
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline_tests.conftest import REPO_ROOT

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # py_vollib asks to be imported as vollib
    from py_vollib.black_scholes_merton.implied_volatility import implied_volatility

NEW_YORK = ZoneInfo("America/New_York")
DAY = dt.date(2025, 1, 8)  # a Wednesday
SPEED_DAY = dt.date(2024, 6, 12)  # used by nothing else here, so its caches start cold
R, Q = options.RISK_FREE_RATE, options.DIVIDEND_YIELD
BAR_COLUMNS = {
    "t": pl.Int64,
    "o": pl.Float64,
    "h": pl.Float64,
    "l": pl.Float64,
    "c": pl.Float64,
    "v": pl.Float64,
    "vw": pl.Float64,
    "n": pl.Int64,
}

DIGEST_SCRIPT = """
import datetime as dt, hashlib, sys
from spy_pipeline.sandbox import options
frame = options.option_minute_bars(sys.argv[1], dt.date.fromisoformat(sys.argv[2]))
print(hashlib.sha256(frame.write_csv().encode()).hexdigest())
"""


def previous_close(day: dt.date) -> float:
    return market.regular_close("SPY", cal.previous_trading_day(day))


def ticker(expiration: dt.date, kind: str, strike: float) -> str:
    return occ.build_ticker("SPY", expiration, kind, strike)


def years_to_close(expiration: dt.date, t_ms: np.ndarray) -> np.ndarray:
    close_ms = cal.session_bounds(expiration).close.timestamp() * 1000
    return (close_ms - t_ms) / (365 * 24 * 3600 * 1000)


# --- listing -------------------------------------------------------------------------------------


def test_every_trading_day_is_an_expiration_and_no_holiday_or_weekend_is() -> None:
    start, end = dt.date(2024, 1, 1), dt.date(2026, 12, 31)
    sessions = set(cal.trading_days(start, end))
    day = start
    while day <= end:
        expiration = options.expiration_on(day)
        assert (expiration is not None) == (day in sessions), day
        day += dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("holiday", "shifted", "kind"),
    [
        (dt.date(2025, 4, 18), dt.date(2025, 4, 17), "monthly"),  # Good Friday, the April third Friday
        (dt.date(2026, 6, 19), dt.date(2026, 6, 18), "monthly"),  # Juneteenth, the June third Friday
        (dt.date(2026, 7, 3), dt.date(2026, 7, 2), "weekly"),  # Independence Day observed
        (dt.date(2025, 12, 25), dt.date(2025, 12, 24), "daily"),  # a Thursday: the Friday keeps the weekly
    ],
)
def test_a_holiday_expiration_moves_to_the_previous_trading_day(holiday: dt.date, shifted: dt.date, kind: str) -> None:
    assert options.expiration_on(holiday) is None
    expiration = options.expiration_on(shifted)
    assert expiration is not None and expiration.kind == kind


def test_monthlies_are_third_fridays_and_listed_about_a_year_ahead() -> None:
    listed = options.listed_expirations(DAY)
    monthlies = [e for e in listed if e.kind == "monthly"]
    assert 12 <= len(monthlies) <= 13
    assert monthlies[-1].date > DAY + dt.timedelta(days=330)
    for expiration in monthlies:
        friday = expiration.date + dt.timedelta(days=4 - expiration.date.weekday())
        assert 15 <= friday.day <= 21
    dailies = [e.date for e in listed if e.kind == "daily"]
    assert DAY in dailies and max(dailies) <= DAY + dt.timedelta(days=21), "dailies go out about two weeks"
    weeklies = [e for e in listed if e.kind == "weekly"]
    assert all(e.date.weekday() == 4 for e in weeklies)
    assert max(e.date for e in weeklies) > DAY + dt.timedelta(days=28)


def test_a_daily_is_listed_two_weeks_before_it_expires_and_not_after() -> None:
    expiration = options.expiration_on(DAY)
    assert expiration is not None and expiration.kind == "daily"
    sessions = cal.last_trading_days(DAY, 11)
    assert expiration.listed == sessions[0]
    at_the_money = float(round(previous_close(expiration.listed)))
    contract = occ.parse_ticker(ticker(DAY, "call", at_the_money))
    assert not options.is_listed(contract, cal.previous_trading_day(expiration.listed))
    assert all(options.is_listed(contract, day) for day in sessions)
    assert not options.is_listed(contract, DAY + dt.timedelta(days=1))


def test_strikes_are_dollar_apart_near_the_money_and_five_dollars_further_out() -> None:
    spot = previous_close(DAY)
    for expiration in options.listed_expirations(DAY):
        strikes = options.strikes(expiration, DAY)
        assert (strikes == np.round(strikes)).all()
        near = strikes[np.abs(strikes / spot - 1) <= 0.09]
        assert np.array_equal(near, np.arange(near[0], near[-1] + 1)), expiration
        assert near[0] <= spot * 0.915 and near[-1] >= spot * 1.085
        if expiration.kind == "daily":  # listed two weeks ago: the $1 band is still around today's price
            far = strikes[np.abs(strikes / spot - 1) > 0.16]
            assert far.size > 10 and (far % 5 == 0).all()
        assert strikes.min() < spot * 0.75 and strikes.max() > spot * 1.25
        assert strikes.min() > spot * 0.55 and strikes.max() < spot * 1.5


def test_strikes_are_added_as_the_underlying_moves_and_never_removed() -> None:
    expiration = options.expiration_on(dt.date(2025, 12, 19))
    assert expiration is not None
    earlier = options.strikes(expiration, dt.date(2025, 1, 2))
    later = options.strikes(expiration, dt.date(2025, 9, 2))
    assert set(earlier) <= set(later)
    assert len(later) > len(earlier)


def test_contract_counts_per_day_are_sane() -> None:
    contracts = options.listed_contracts(DAY)
    spot = previous_close(DAY)
    near = contracts.filter(
        ((pl.col("strike_price") / spot - 1).abs() <= 0.05) & (pl.col("expiration_date") <= DAY + dt.timedelta(days=31))
    )
    assert 4_000 <= contracts.height <= 15_000
    assert 500 <= near.height <= 2_500
    assert contracts["ticker"].is_unique().all()
    assert contracts["ticker"].to_list() == sorted(contracts["ticker"].to_list())
    assert options.listed_contracts(dt.date(2014, 6, 2)).height == 0


# --- minute bars ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedDay:
    contracts: pl.DataFrame  # ticker, contract_type, expiration_date, strike_price, bars
    spot: float


@pytest.fixture(scope="module")
def near_money_day() -> GeneratedDay:
    """Every near-the-money contract of a day (within 5%, expiring within 31 days) from cold caches."""
    spot = previous_close(SPEED_DAY)
    listed = options.listed_contracts(SPEED_DAY).filter(
        ((pl.col("strike_price") / spot - 1).abs() <= 0.05)
        & (pl.col("expiration_date") <= SPEED_DAY + dt.timedelta(days=31))
    )
    for cached in (options._priced_bars, options._day_grid, market.price_path, market.vix_minute_bars):
        cached.cache_clear()
    frames = [options.option_minute_bars(t, SPEED_DAY) for t in listed["ticker"]]
    return GeneratedDay(listed.with_columns(bars=pl.Series(frames)), spot)


def test_a_day_lists_over_a_thousand_near_the_money_contracts(near_money_day: GeneratedDay) -> None:
    # how fast they generate is a figure of `make bench` (bench/sandbox.py), not a timed test
    assert near_money_day.contracts.height >= 1_000


def test_bars_have_polygon_columns_and_consistent_ohlc(near_money_day: GeneratedDay) -> None:
    frames = near_money_day.contracts["bars"].to_list()
    assert all(dict(frame.schema) == BAR_COLUMNS for frame in frames)
    bars = pl.concat(frames)
    assert bars.height > 100_000
    violations = bars.filter(
        ~(
            (pl.col("l") <= pl.col("o"))
            & (pl.col("o") <= pl.col("h"))
            & (pl.col("l") <= pl.col("c"))
            & (pl.col("c") <= pl.col("h"))
            & (pl.col("l") <= pl.col("vw"))
            & (pl.col("vw") <= pl.col("h"))
            & (pl.col("l") >= 0.01)
            & (pl.col("v") >= 1)
            & (pl.col("n") >= 1)
            & (pl.col("n") <= pl.col("v"))
        )
    )
    assert violations.height == 0, violations.head()
    for column in ("o", "h", "l", "c"):
        cents = bars[column].to_numpy() * 100
        assert np.allclose(cents, np.round(cents), atol=1e-6), column


def test_bars_are_regular_session_minutes_only(near_money_day: GeneratedDay) -> None:
    bounds = cal.session_bounds(SPEED_DAY)
    open_ms, close_ms = bounds.open.timestamp() * 1000, bounds.close.timestamp() * 1000
    for frame in near_money_day.contracts["bars"].to_list()[::50]:
        t = frame["t"].to_numpy()
        assert (t >= open_ms).all() and (t < close_ms).all()
        assert (t % 60_000 == 0).all() and (np.diff(t) > 0).all()


def test_trades_are_sparse_and_sparser_away_from_the_money(near_money_day: GeneratedDay) -> None:
    regular = cal.session_bounds(SPEED_DAY).regular_minutes
    frame = near_money_day.contracts.with_columns(
        coverage=pl.col("bars").map_elements(lambda b: b.height / regular, return_dtype=pl.Float64),
        distance=(pl.col("strike_price") / near_money_day.spot - 1).abs(),
    )
    liquid = frame.filter((pl.col("distance") < 0.004) & (pl.col("expiration_date") <= SPEED_DAY + dt.timedelta(7)))
    assert liquid.height >= 8
    assert 0.85 <= liquid["coverage"].mean() <= 0.97, "liquid contracts miss a few percent of minutes"
    edge = frame.filter(pl.col("distance") > 0.04)
    assert edge["coverage"].mean() < liquid["coverage"].mean() - 0.2
    far = [
        options.option_minute_bars(ticker(e, kind, k), SPEED_DAY).height / regular
        for e in (dt.date(2024, 6, 14), dt.date(2024, 9, 20))
        for kind, k in (
            ("put", 5 * round(near_money_day.spot * 0.75 / 5)),
            ("call", 5 * round(near_money_day.spot * 1.2 / 5)),
        )
    ]
    assert max(far) < 0.15, "far strikes miss most minutes"


def test_zero_dte_contract_trades_until_the_early_close_and_not_the_next_day() -> None:
    expiration = dt.date(2024, 11, 29)  # the day after Thanksgiving: closes at 13:00 ET
    spot = previous_close(expiration)
    call = ticker(expiration, "call", float(round(spot)))
    bars = options.option_minute_bars(call, expiration)
    times = [dt.datetime.fromtimestamp(t / 1000, NEW_YORK).time() for t in bars["t"]]
    assert len(times) > 150
    assert min(times) >= dt.time(9, 30) and max(times) < dt.time(13, 0)
    assert options.option_minute_bars(call, dt.date(2024, 12, 2)).height == 0


@pytest.mark.parametrize(
    ("option_ticker", "day"),
    [
        ("O:SPY250108C00590000", dt.date(2025, 1, 9)),  # expired (and a market closure)
        ("O:SPY250108C00590000", dt.date(2025, 1, 10)),  # expired
        ("O:SPY250108C00590000", dt.date(2024, 12, 20)),  # before the daily was listed
        ("O:SPY250110C00590500", DAY),  # strike not on the grid
        ("O:SPY250110C01500000", DAY),  # strike far beyond the listed range
        ("O:SPY250111C00590000", DAY),  # Saturday: no such expiration
        ("O:QQQ250110C00500000", DAY),  # no QQQ options in the sandbox
        ("O:SPY250117C00590000", dt.date(2025, 1, 11)),  # a Saturday
        ("SPY250117C00590000", DAY),  # not an OCC ticker
        ("O:SPY991317C00590000", DAY),  # impossible date
    ],
)
def test_unknown_unlisted_or_expired_contracts_have_no_bars(option_ticker: str, day: dt.date) -> None:
    bars = catalog.minute_bars(option_ticker, day)
    assert bars.height == 0
    assert dict(bars.schema) == BAR_COLUMNS


def test_catalog_dispatches_option_tickers() -> None:
    option_ticker = ticker(dt.date(2025, 1, 17), "put", 580.0)
    assert catalog.minute_bars(option_ticker, DAY).equals(options.option_minute_bars(option_ticker, DAY))
    assert catalog.minute_bars("SPY", DAY).equals(market.minute_bars("SPY", DAY))


def test_contracts_priced_together_get_the_bars_each_gets_alone() -> None:
    # a day file prices its chain as one array: each contract's bars must not depend on its neighbours
    near = [ticker(expiration, kind, float(strike)) for expiration in (DAY, dt.date(2025, 1, 10), dt.date(2025, 1, 17))
            for kind in ("call", "put") for strike in range(580, 596, 3)]
    unlisted, malformed = ticker(dt.date(2025, 1, 9), "call", 590.0), "O:SPY../../etc"  # 01-09: market closed
    together = options.chain_bar_columns([unlisted, *near, malformed], DAY)
    assert [name for name, _ in together] == near
    for name, columns in together:
        alone = options.option_minute_bars(name, DAY)
        assert alone.height > 0 and pl.DataFrame(columns).equals(alone), name
    assert options.chain_bar_columns(near, dt.date(2025, 1, 9)) == []  # not a trading day


def test_bars_are_deterministic_across_caches_and_processes() -> None:
    option_ticker = ticker(dt.date(2025, 1, 17), "call", 585.0)
    first = options.option_minute_bars(option_ticker, DAY)
    options._priced_bars.cache_clear()
    options._day_grid.cache_clear()
    second = options.option_minute_bars(option_ticker, DAY)
    assert first is not second and first.equals(second)
    assert not first.equals(options.option_minute_bars(ticker(dt.date(2025, 1, 17), "call", 586.0), DAY))
    result = subprocess.run(
        [sys.executable, "-c", DIGEST_SCRIPT, option_ticker, DAY.isoformat()],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONHASHSEED": "977"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == hashlib.sha256(first.write_csv().encode()).hexdigest()


def implied_vol(price: float, spot: float, strike: float, years: float, flag: str) -> float:
    return float(implied_volatility(price, spot, strike, years, R, Q, flag))


def test_implied_volatility_follows_vix_with_a_put_skew() -> None:
    """Implied vols from minute closes: about VIX/100 at the money, higher for OTM puts, lower for OTM calls."""
    expiration = dt.date(2025, 2, 7)  # about a month out
    spot_at = dict(zip(*market.minute_bars("SPY", DAY).select("t", "c"), strict=True))
    vix_at = dict(zip(*market.vix_minute_bars(DAY).select("t", "c"), strict=True))
    atm = float(round(previous_close(DAY)))
    contracts = {"put": ("put", round(atm * 0.95)), "atm": ("call", atm), "call": ("call", round(atm * 1.05))}
    vols: dict[str, list[float]] = {}
    for name, (kind, strike) in contracts.items():
        bars = options.option_minute_bars(ticker(expiration, kind, float(strike)), DAY)
        sample = bars.filter(pl.col("t").is_in(list(spot_at)))[::10]
        assert sample.height >= 5, name
        vols[name] = []
        for t, price in zip(sample["t"], sample["c"], strict=True):
            years = float(years_to_close(expiration, np.array([t + 60_000]))[0])
            vol = implied_vol(price, spot_at[t], float(strike), years, kind[0])
            vols[name].append(vol)
            if name == "atm":
                assert vol == pytest.approx(vix_at[t] / 100, rel=0.12)
    assert np.median(vols["put"]) > np.median(vols["atm"]) + 0.01
    assert np.median(vols["atm"]) > np.median(vols["call"]) + 0.005


# --- through the official client ------------------------------------------------------------------


def closes(client: polygon.RESTClient, symbol: str, day: dt.date) -> dict[int, float]:
    return {a.timestamp: a.close for a in client.list_aggs(symbol, 1, "minute", day, day, limit=50_000)}


@pytest.mark.integration
def test_option_aggs_over_http_are_sparse_and_within_no_arbitrage_bounds(
    sandbox: SandboxServer, client: polygon.RESTClient
) -> None:
    spot_close = closes(client, "SPY", DAY)
    atm = round(previous_close(DAY))
    checked = 0
    for expiration in (DAY, dt.date(2025, 1, 10), dt.date(2025, 1, 17), dt.date(2025, 3, 21)):
        for strike in (atm - 40, atm - 10, atm - 1, atm, atm + 2, atm + 10, atm + 30):
            for kind in ("call", "put"):
                before = sandbox.request_count("/v2/aggs/ticker/O:SPY")
                bars = list(client.list_aggs(ticker(expiration, kind, strike), 1, "minute", DAY, DAY, limit=50_000))
                assert sandbox.request_count("/v2/aggs/ticker/O:SPY") == before + 1
                assert len(bars) < cal.session_bounds(DAY).regular_minutes
                if not bars:
                    continue
                t = np.array([b.timestamp for b in bars if b.timestamp in spot_close])
                price = np.array([b.close for b in bars if b.timestamp in spot_close])
                spot = np.array([spot_close[x] for x in t])
                years = years_to_close(expiration, t + 60_000)
                forward_value = spot * np.exp(-Q * years) - strike * np.exp(-R * years)
                bound = np.maximum(0.0, forward_value if kind == "call" else -forward_value)
                assert (price >= bound - 0.01).all(), (expiration, kind, strike)
                assert (price <= (spot if kind == "call" else strike)).all()
                checked += len(t)
    assert checked > 5_000


@pytest.mark.integration
def test_put_call_parity_roughly_holds_for_near_the_money_pairs(client: polygon.RESTClient) -> None:
    spot_close = closes(client, "SPY", DAY)
    atm = round(previous_close(DAY))
    errors = []
    for expiration in (DAY, dt.date(2025, 1, 14), dt.date(2025, 1, 31), dt.date(2025, 2, 21)):
        for strike in (atm - 5, atm, atm + 5):
            call = closes(client, ticker(expiration, "call", strike), DAY)
            put = closes(client, ticker(expiration, "put", strike), DAY)
            for t in sorted(set(call) & set(put) & set(spot_close)):
                years = float(years_to_close(expiration, np.array([t + 60_000]))[0])
                parity = spot_close[t] * math.exp(-Q * years) - strike * math.exp(-R * years)
                errors.append(abs(call[t] - put[t] - parity))
    assert len(errors) > 2_000
    assert np.median(errors) < 0.03
    assert np.max(errors) < 0.25


@pytest.mark.integration
def test_option_aggs_of_an_unlisted_day_are_empty_over_http(client: polygon.RESTClient) -> None:
    option_ticker = ticker(dt.date(2025, 1, 10), "call", 590.0)
    assert list(client.list_aggs(option_ticker, 1, "minute", "2025-01-13", "2025-01-14")) == []
    days = client.get_aggs(option_ticker, 1, "day", "2025-01-06", "2025-01-14")
    assert [dt.datetime.fromtimestamp(d.timestamp / 1000, NEW_YORK).date() for d in days] == [
        dt.date(2025, 1, 6),
        dt.date(2025, 1, 7),
        dt.date(2025, 1, 8),
        dt.date(2025, 1, 10),
    ]
