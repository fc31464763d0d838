"""SPY options listed like the real ones, with minute bars priced off the synthetic SPY path.

Listing. Every trading day is an expiration (dailies, Monday to Friday); the last trading day of each
week is a weekly and, in the week of the month's third Friday, the monthly. A Friday holiday moves
the weekly/monthly to the previous trading day (Good Friday 2025: the April monthly expires on
Thursday 2025-04-17); a weekday holiday simply has no expiration. Dailies are listed two weeks
(10 trading days) before they expire, weeklies six weeks (30 trading days), monthlies a year
(371 days). Strikes are $1 apart within 10% of the underlying and $5 apart out to 30%, around every
close from the day before the listing to the day before `as_of`: a strike, once listed, stays
listed, and new ones are added as the underlying moves. A contract exists from the first day its
strike is in that set until its expiration day (inclusive); it has expired once `as_of` is after it.

Prices. Black-Scholes-Merton (European, r = 4.5%, q = 1.3%) on the SPY quarter-minute path of the
regular session, time to expiry in calendar years to the expiration day's close, and volatility
= I:VIX/100 times a smile in standardized log-moneyness (higher for OTM puts), times a small noise
shared by the call and the put of a strike (so put-call parity holds to a few cents). A minute has
a bar with a probability that falls with distance from the money and with time to expiry.
Everything is seeded from (ticker, day): the same contract and day give the same bars anywhere.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, lru_cache

import numpy as np
import polars as pl

from spy_pipeline.domain import black_scholes, occ
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.rates import DEFAULT_RISK_FREE_RATE
from spy_pipeline.sandbox import market

UNDERLYINGS = ("SPY",)
RISK_FREE_RATE = DEFAULT_RISK_FREE_RATE  # the pipeline's default: its IV recovers the sandbox's
DIVIDEND_YIELD = 0.013
PRIMARY_EXCHANGE = "BATO"
SHARES_PER_CONTRACT = 100
CFI = {"call": "OCASPS", "put": "OPASPS"}  # option, call/put, American, stock, physical, standardized

DAILY_LISTING_SESSIONS = 10
WEEKLY_LISTING_SESSIONS = 30
MONTHLY_LISTING_DAYS = 371
FINE_BAND, FINE_STEP = 0.10, 1
WIDE_BAND, WIDE_STEP = 0.30, 5

MS_PER_YEAR = 365.0 * 24 * 3600 * 1000
POINTS_PER_MINUTE = market.STEPS_PER_MINUTE + 1  # the minute's start and the end of each quarter minute
BarColumns = dict[str, np.ndarray]  # Polygon's bar fields (t, o, h, l, c, v, vw, n), one row per traded minute
SMILE_SKEW, SMILE_CURVATURE, SMILE_Z_LIMIT = -0.10, 0.025, 4.0
PAIR_NOISE, PAIR_MINUTE_NOISE, CONTRACT_MINUTE_NOISE = 0.015, 0.003, 0.0005


@dataclass(frozen=True)
class Expiration:
    date: dt.date
    kind: str  # "daily", "weekly" or "monthly"
    listed: dt.date
    index: int  # position in the trading calendar's sessions


@cache
def _sessions() -> tuple[tuple[dt.date, ...], dict[dt.date, int]]:
    days = tuple(cal.trading_days(cal.FIRST_TRADING_DAY, cal.last_known_day()))
    return days, {d: i for i, d in enumerate(days)}


def _first_session_index(day: dt.date) -> int:
    """Index of the first session on or after `day` (len(sessions) when after the calendar)."""
    days, _ = _sessions()
    lo, hi = 0, len(days)
    while lo < hi:
        mid = (lo + hi) // 2
        if days[mid] < day:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cache
def expirations(underlying: str = "SPY") -> tuple[Expiration, ...]:
    """Every expiration the calendar can hold, in date order (empty for an underlying without options)."""
    if underlying not in UNDERLYINGS:
        return ()
    days, _ = _sessions()
    result = []
    for i, day in enumerate(days):
        last_of_week = i + 1 == len(days) or days[i + 1].isocalendar()[:2] != day.isocalendar()[:2]
        friday = day + dt.timedelta(days=4 - day.weekday())
        if last_of_week and 15 <= friday.day <= 21:
            kind = "monthly"
            listed = days[_first_session_index(day - dt.timedelta(days=MONTHLY_LISTING_DAYS))]
        elif last_of_week:
            kind, listed = "weekly", days[max(i - WEEKLY_LISTING_SESSIONS, 0)]
        else:
            kind, listed = "daily", days[max(i - DAILY_LISTING_SESSIONS, 0)]
        result.append(Expiration(day, kind, listed, i))
    return tuple(result)


def expiration_on(day: dt.date, underlying: str = "SPY") -> Expiration | None:
    _, index = _sessions()
    i = index.get(day)
    return None if i is None or underlying not in UNDERLYINGS else expirations(underlying)[i]


def listed_expirations(as_of: dt.date, underlying: str = "SPY", expired: bool = False) -> list[Expiration]:
    """Expirations with contracts on `as_of`: listed and not expired, or (expired=True) expired before it."""
    stop = _first_session_index(as_of)
    every = expirations(underlying)
    if expired:
        return list(every[:stop])
    return [e for e in every[stop:] if e.listed <= as_of]


@lru_cache(maxsize=8192)
def _strike_grid(underlying: str, expiration_index: int, as_of_index: int) -> np.ndarray:
    expiration = expirations(underlying)[expiration_index]
    _, closes, _ = market._daily_levels(underlying)
    _, index = _sessions()
    start = max(index[expiration.listed] - 1, 0)
    stop = max(min(as_of_index, expiration_index), start + 1)
    window = closes[start:stop]
    low, high = float(window.min()), float(window.max())
    fine = np.arange(math.ceil(low * (1 - FINE_BAND)), math.floor(high * (1 + FINE_BAND)) + 1, FINE_STEP)
    wide = WIDE_STEP * np.arange(
        math.ceil(low * (1 - WIDE_BAND) / WIDE_STEP), math.floor(high * (1 + WIDE_BAND) / WIDE_STEP) + 1
    )
    strikes = np.union1d(fine, wide).astype(np.float64)
    strikes.setflags(write=False)
    return strikes


def strikes(expiration: Expiration, as_of: dt.date, underlying: str = "SPY") -> np.ndarray:
    """Sorted strikes of an expiration listed on `as_of` (for an expired one: all it ever had)."""
    return _strike_grid(underlying, expiration.index, _first_session_index(as_of))


def listed_contracts(as_of: dt.date, underlying: str = "SPY", expired: bool = False) -> pl.DataFrame:
    """The contracts listed on `as_of` (or those expired before it), in ticker order."""
    frames = []
    for expiration in listed_expirations(as_of, underlying, expired):
        grid = strikes(expiration, as_of, underlying)
        for contract_type in ("call", "put"):
            frames.append(
                pl.DataFrame(
                    {
                        "underlying_ticker": underlying,
                        "contract_type": contract_type,
                        "expiration_date": expiration.date,
                        "strike_price": grid,
                    }
                )
            )
    if not frames:
        return pl.DataFrame(
            schema={
                "ticker": pl.String,
                "underlying_ticker": pl.String,
                "contract_type": pl.String,
                "expiration_date": pl.Date,
                "strike_price": pl.Float64,
            }
        )
    frame = pl.concat(frames)
    tickers = [
        ticker_for(underlying, e, t, k)
        for e, t, k in zip(frame["expiration_date"], frame["contract_type"], frame["strike_price"], strict=True)
    ]
    return frame.select(pl.Series("ticker", tickers), pl.all())


def ticker_for(underlying: str, expiration: dt.date, contract_type: str, strike: float) -> str:
    return occ.build_ticker(underlying, expiration, contract_type, Decimal(str(strike)))


def is_listed(contract: occ.OptionContract, day: dt.date) -> bool:
    """Whether the contract can trade on `day`: listed by then, not yet expired, and the strike on the grid."""
    if not (cal.FIRST_TRADING_DAY <= day <= cal.last_known_day()) or contract.underlying not in UNDERLYINGS:
        return False
    expiration = expiration_on(contract.expiration, contract.underlying)
    if expiration is None or not expiration.listed <= day <= expiration.date:
        return False
    grid = strikes(expiration, day, contract.underlying)
    strike = float(contract.strike)
    i = int(np.searchsorted(grid, strike))
    return i < len(grid) and grid[i] == strike


# --- minute bars ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DayGrid:
    """What every contract on a day shares: the regular session's minutes, spot, time and ATM volatility."""

    bar_ms: np.ndarray  # (M,) bar starts
    point_ms: np.ndarray  # (M, POINTS_PER_MINUTE) times of the price points inside each minute
    spot: np.ndarray  # (M, POINTS_PER_MINUTE) the underlying at those points
    atm_vol: np.ndarray  # (M, POINTS_PER_MINUTE) VIX/100 at those points
    activity: np.ndarray  # (M,) intraday activity, mean 1


@lru_cache(maxsize=16)
def _day_grid(underlying: str, day: dt.date) -> _DayGrid:
    path = market.price_path(underlying, day)
    first, count = path.minutes["pre"], path.minutes["regular"]
    steps = path.prices[first - 1 : first + count]  # the last pre-market minute gives the first start point
    spot = np.column_stack([steps[:-1, -1], steps[1:]])
    bar_ms = path.start_ms + (first + np.arange(count, dtype=np.int64)) * 60_000
    offsets = np.arange(POINTS_PER_MINUTE, dtype=np.int64) * (60_000 // market.STEPS_PER_MINUTE)
    vix = market.vix_minute_bars(day)
    vix_open, vix_close = vix["o"].to_numpy()[:count], vix["c"].to_numpy()[:count]
    weights = np.arange(POINTS_PER_MINUTE) / (POINTS_PER_MINUTE - 1)
    atm_vol = (vix_open[:, None] + (vix_close - vix_open)[:, None] * weights) / 100.0
    activity = market._u_shape((np.arange(count) + 0.5) / count)
    grid = _DayGrid(bar_ms, bar_ms[:, None] + offsets, spot, atm_vol, activity / activity.mean())
    for array in (grid.bar_ms, grid.point_ms, grid.spot, grid.atm_vol, grid.activity):
        array.setflags(write=False)
    return grid


@cache
def _close_ms(day: dt.date) -> int:
    return int(cal.session_bounds(day).close.timestamp() * 1000)


def smile(atm_vol: np.ndarray, log_moneyness: np.ndarray, years: np.ndarray) -> np.ndarray:
    """Implied volatility: ATM level times a skewed smile in log(K/S) per ATM standard deviation.

    The standard deviation uses at least one day to expiry so that 0DTE wings stay sane.
    """
    z = np.clip(log_moneyness / (atm_vol * np.sqrt(np.maximum(years, 1.0 / 365.0))), -SMILE_Z_LIMIT, SMILE_Z_LIMIT)
    return atm_vol * (1.0 + SMILE_SKEW * z + SMILE_CURVATURE * z**2)


def trade_probability(z: np.ndarray, years: np.ndarray, activity: np.ndarray) -> np.ndarray:
    """Chance that a minute has a trade: ~92-96% for near-dated at-the-money contracts, a few % far out."""
    base = 0.985 / (1.0 + 2.0 * years)
    p = base * (0.02 + 0.98 * np.exp(-0.5 * (z / 2.0) ** 2))
    return 1.0 - (1.0 - p) ** activity


def option_minute_bars(option_ticker: str, day: dt.date) -> pl.DataFrame:
    """Polygon-shaped minute bars (t, o, h, l, c, v, vw, n) of an option contract on a trading day.

    Regular session only; empty for a malformed, unknown, unlisted or expired contract and on a
    non-trading day.
    """
    columns = option_bar_columns(option_ticker, day)
    return market._empty_bars() if columns is None else pl.DataFrame(columns)


def option_bar_columns(option_ticker: str, day: dt.date) -> BarColumns | None:
    """`option_minute_bars` as read-only numpy columns (None where it is empty for want of a listing)."""
    contract = _listed(option_ticker, day)
    if contract is None or not cal.is_trading_day(day):
        return None
    return _priced_bars(option_ticker, contract, day)


def _listed(option_ticker: str, day: dt.date) -> occ.OptionContract | None:
    """The contract of a well-formed ticker listed on `day`, else None."""
    try:
        contract = occ.parse_ticker(option_ticker)
    except occ.OccTickerError:
        return None
    return contract if is_listed(contract, day) else None


def chain_bar_columns(option_tickers: list[str], day: dt.date) -> list[tuple[str, BarColumns]]:
    """`option_bar_columns` of many contracts of one day, the tickers without a listing left out: a day file
    prices its two hundred contracts as one array, the same numbers as one contract at a time."""
    if not cal.is_trading_day(day):
        return []
    listed: dict[str, list[tuple[str, occ.OptionContract]]] = {}
    for ticker in option_tickers:
        if (contract := _listed(ticker, day)) is not None:
            listed.setdefault(contract.underlying, []).append((ticker, contract))
    priced = {ticker: bars for contracts in listed.values()
              for (ticker, _), bars in zip(contracts, _priced_chain(contracts, day), strict=True)}
    return [(ticker, priced[ticker]) for ticker in option_tickers if ticker in priced]


@lru_cache(maxsize=1024)
def _priced_bars(option_ticker: str, contract: occ.OptionContract, day: dt.date) -> BarColumns:
    return _priced_chain([(option_ticker, contract)], day)[0]


def _priced_chain(contracts: list[tuple[str, occ.OptionContract]], day: dt.date) -> list[BarColumns]:
    """The bars of contracts of one underlying on `day`: each contract's random draws from its own seeds, the
    arithmetic on (contract, minute, point) arrays. Elementwise, so a contract's bars do not depend on the
    others priced with it."""
    grid = _day_grid(contracts[0][1].underlying, day)
    shape = (len(contracts), *grid.spot.shape)
    minutes = grid.bar_ms.size
    strike = np.array([float(contract.strike) for _, contract in contracts])[:, None, None]
    is_call = np.array([contract.contract_type == "call" for _, contract in contracts])[:, None, None]
    close_ms = np.array([_close_ms(contract.expiration) for _, contract in contracts], dtype=np.int64)
    years = np.maximum(close_ms[:, None, None] - grid.point_ms, 0) / MS_PER_YEAR
    log_moneyness = np.log(strike / grid.spot)

    # Noise shared by the call and the put of a strike keeps put-call parity; a little is the contract's own.
    pair_level, pair_minute, own_minute = np.empty((shape[0], 1, 1)), np.empty(shape), np.empty(shape)
    uniform, size_draw, trade_size_draw = np.empty((3, shape[0], minutes))
    weights = np.empty(shape)
    for i, (option_ticker, contract) in enumerate(contracts):
        pair_rng = market._rng("option-pair", contract.underlying, contract.expiration, float(contract.strike),
                               day.isoformat())
        own_rng = market._rng("option", option_ticker, day.isoformat())
        pair_level[i] = pair_rng.standard_normal()
        pair_minute[i] = pair_rng.standard_normal(grid.spot.shape)
        own_minute[i] = own_rng.standard_normal(grid.spot.shape)
        uniform[i] = own_rng.random(minutes)
        size_draw[i] = own_rng.lognormal(0.0, 1.0, minutes)
        trade_size_draw[i] = own_rng.lognormal(1.3, 0.6, minutes)
        weights[i] = own_rng.dirichlet(np.ones(POINTS_PER_MINUTE), minutes)
    vol_noise = 1.0 + PAIR_NOISE * pair_level + PAIR_MINUTE_NOISE * pair_minute + CONTRACT_MINUTE_NOISE * own_minute
    sigma = smile(grid.atm_vol, log_moneyness, years) * vol_noise
    values = black_scholes.price(grid.spot, strike, years, RISK_FREE_RATE, DIVIDEND_YIELD, sigma, is_call)
    prices = np.maximum(np.round(values, 2), 0.01)

    # Liquidity falls with distance from the money in standard deviations of one day to one month.
    first_years = years[:, :, 0]
    z = np.abs(log_moneyness[:, :, 0]) / (grid.atm_vol[:, 0] * np.sqrt(np.clip(first_years, 1.0 / 365.0,
                                                                                 30.0 / 365.0)))
    p = trade_probability(z, first_years, grid.activity)
    traded = uniform < p
    volume = np.maximum(1.0, np.round(400.0 * p**3 * grid.activity * size_draw))
    transactions = np.clip(np.round(volume / trade_size_draw), 1, volume).astype(np.int64)

    opens, closes = prices[:, :, 0], prices[:, :, -1]
    highs, lows = prices.max(axis=2), prices.min(axis=2)
    vwap = np.clip(np.round((prices * weights).sum(axis=2), 4), lows, highs)
    single = transactions == 1  # one trade: a single price
    columns = {
        "t": np.broadcast_to(grid.bar_ms, closes.shape),
        "o": np.where(single, closes, opens),
        "h": np.where(single, closes, highs),
        "l": np.where(single, closes, lows),
        "c": closes,
        "v": volume,
        "vw": np.where(single, closes, vwap),
        "n": transactions,
    }
    chain = []
    for i in range(len(contracts)):
        traded_columns = {name: values[i][traded[i]] for name, values in columns.items()}  # minutes with a trade
        for values in traded_columns.values():
            values.setflags(write=False)  # cached: shared by every caller
        chain.append(traded_columns)
    return chain
