"""A deterministic synthetic equity market that looks like the real one.

Daily closes follow a trend plus a mean-reverting deviation (realistic SPY levels every year),
each day opens with a gap from the previous close, and the intraday path is a Brownian bridge
from open to close with U-shaped volatility and volume. Extended hours (04:00 ET to four hours
after the close) trade thinly; a minute without a trade has no bar. The same (ticker, day) gives
the same bars on any machine and in any process: every random draw is seeded from them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import polars as pl

from spy_pipeline.domain import trading_calendar as cal

STEPS_PER_MINUTE = 4
TRADING_DAYS_PER_YEAR = 252.0


@dataclass(frozen=True)
class EquityProfile:
    ticker: str
    price_on_first_day: float
    annual_drift: float
    annual_volatility: float
    mean_reversion_days: float
    shares_per_regular_minute: float
    trade_probability: dict[str, float]
    shares_per_trade: float


PROFILES: dict[str, EquityProfile] = {
    profile.ticker: profile
    for profile in (
        EquityProfile("SPY", 205.0, 0.105, 0.16, 120.0, 160_000.0, {"pre": 0.75, "regular": 0.998, "post": 0.6}, 110.0),
        EquityProfile("QQQ", 103.0, 0.155, 0.21, 120.0, 110_000.0, {"pre": 0.7, "regular": 0.997, "post": 0.55}, 95.0),
        EquityProfile("IWM", 119.0, 0.055, 0.21, 120.0, 70_000.0, {"pre": 0.5, "regular": 0.995, "post": 0.4}, 90.0),
    )
}


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))  # the same seed words as a list, sooner


@cache
def _daily_levels(ticker: str) -> tuple[dict[dt.date, int], np.ndarray, np.ndarray]:
    """Index of each trading day, regular-session closes and opening gaps (log) for a ticker."""
    profile = PROFILES[ticker]
    days = cal.trading_days(cal.FIRST_TRADING_DAY, cal.last_known_day())
    daily_sigma = profile.annual_volatility / np.sqrt(TRADING_DAYS_PER_YEAR)
    shocks = np.array([_rng(ticker, "day", d.isoformat()).standard_normal(2) for d in days])
    theta = 1.0 / profile.mean_reversion_days
    deviation = np.zeros(len(days))
    for i in range(1, len(days)):
        deviation[i] = (1.0 - theta) * deviation[i - 1] + daily_sigma * shocks[i, 0]
    years = np.arange(len(days)) / TRADING_DAYS_PER_YEAR
    closes = profile.price_on_first_day * np.exp(profile.annual_drift * years + deviation)
    gaps = 0.35 * daily_sigma * shocks[:, 1]  # the part of each day's move that happens overnight
    return {d: i for i, d in enumerate(days)}, closes, gaps


def regular_close(ticker: str, day: dt.date) -> float:
    index, closes, _ = _daily_levels(ticker)
    return float(closes[index[day]])


def _u_shape(fraction: np.ndarray) -> np.ndarray:
    """Intraday activity: high at the open, low at midday, rising into the close."""
    return 0.55 + 1.6 * (1.0 - fraction) ** 6 + 0.9 * fraction**8 + 0.35 * (1 - 2 * np.abs(fraction - 0.5))


def _bridge(rng: np.random.Generator, sigmas: np.ndarray, start: float, end: float) -> np.ndarray:
    """Log-price path from start to end (both log) with per-step volatilities `sigmas`."""
    steps = rng.standard_normal(len(sigmas)) * sigmas
    walk = np.cumsum(steps)
    variance = np.cumsum(sigmas**2)
    return start + walk - (variance / variance[-1]) * (walk[-1] - (end - start))


@dataclass(frozen=True)
class PricePath:
    """A trading day's price at every quarter minute, 04:00 ET to the end of after-hours."""

    day: dt.date
    start_ms: int
    previous_close: float
    prices: np.ndarray  # shape (minutes, STEPS_PER_MINUTE): the price at the end of each step
    minutes: dict[str, int]  # minutes in the pre, regular and post sessions

    def minute_index(self, t_ms: int) -> int:
        return (t_ms - self.start_ms) // 60_000


@lru_cache(maxsize=256)
def price_path(ticker: str, day: dt.date) -> PricePath:
    """The underlying continuous path of an equity on a trading day (trades or not)."""
    profile = PROFILES[ticker]
    index, closes, gaps = _daily_levels(ticker)
    i = index[day]
    previous_close = closes[i - 1] if i > 0 else profile.price_on_first_day * np.exp(-gaps[0])
    close = closes[i]
    open_ = previous_close * np.exp(gaps[i])
    bounds = cal.session_bounds(day)
    minutes = {
        "pre": int((bounds.open - bounds.pre_market_open).total_seconds() // 60),
        "regular": bounds.regular_minutes,
        "post": int((bounds.after_hours_close - bounds.close).total_seconds() // 60),
    }
    rng = _rng(ticker, "path", day.isoformat())
    minute_sigma = profile.annual_volatility / np.sqrt(TRADING_DAYS_PER_YEAR * 390)
    step_sigma = minute_sigma / np.sqrt(STEPS_PER_MINUTE)
    regular_steps = minutes["regular"] * STEPS_PER_MINUTE
    regular_sigmas = step_sigma * _u_shape((np.arange(regular_steps) + 0.5) / regular_steps)
    pre_sigmas = np.full(minutes["pre"] * STEPS_PER_MINUTE, 0.35 * step_sigma)
    post_sigmas = np.full(minutes["post"] * STEPS_PER_MINUTE, 0.3 * step_sigma)
    log_pre = _bridge(rng, pre_sigmas, np.log(previous_close), np.log(open_))
    log_regular = _bridge(rng, regular_sigmas, np.log(open_), np.log(close))
    log_post = np.log(close) + np.cumsum(rng.standard_normal(len(post_sigmas)) * post_sigmas)
    path = np.exp(np.concatenate([log_pre, log_regular, log_post]))
    return PricePath(
        day=day,
        start_ms=int(bounds.pre_market_open.timestamp() * 1000),
        previous_close=float(previous_close),
        prices=path.reshape(-1, STEPS_PER_MINUTE),
        minutes=minutes,
    )


def _empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "t": pl.Int64, "o": pl.Float64, "h": pl.Float64, "l": pl.Float64, "c": pl.Float64,
        "v": pl.Float64, "vw": pl.Float64, "n": pl.Int64,
    })


def _is_session(day: dt.date) -> bool:
    return cal.FIRST_TRADING_DAY <= day <= cal.last_known_day() and cal.is_trading_day(day)


@lru_cache(maxsize=256)
def minute_bars(ticker: str, day: dt.date) -> pl.DataFrame:
    """All minute bars of `ticker` on `day` (empty for unknown tickers and non-trading days).

    Columns follow Polygon's aggregate fields: t (ms, start of bar), o, h, l, c, v, vw, n; an
    index (I:VIX) has only t, o, h, l, c.
    """
    if ticker == VIX_TICKER:
        return vix_minute_bars(day)
    if ticker not in PROFILES or not _is_session(day):
        return _empty_bars()
    profile = PROFILES[ticker]
    path = price_path(ticker, day)
    minutes = path.minutes
    rng = _rng(ticker, "trades", day.isoformat())
    # Each minute's trades: the step prices inside it, rounded to cents like real prints.
    prices = np.round(path.prices, 2)
    prices[:, 0] = np.round(np.concatenate([[path.previous_close], path.prices[:-1, -1]]), 2)
    total = prices.shape[0]

    session = np.repeat(["pre", "regular", "post"], [minutes["pre"], minutes["regular"], minutes["post"]])
    activity = np.concatenate([
        np.full(minutes["pre"], 0.015),
        _u_shape((np.arange(minutes["regular"]) + 0.5) / minutes["regular"]),
        np.full(minutes["post"], 0.02),
    ])
    volume = np.round(profile.shares_per_regular_minute * activity * rng.lognormal(0.0, 0.45, total))
    volume = np.maximum(volume, 1.0)
    traded = rng.random(total) < np.vectorize(profile.trade_probability.get)(session)
    # The opening and closing auctions always print: the day's open and close are never missing.
    traded[[minutes["pre"], minutes["pre"] + minutes["regular"] - 1]] = True
    weights = rng.dirichlet(np.ones(STEPS_PER_MINUTE), total)
    vwap = np.round((prices * weights).sum(axis=1), 4)
    transactions = np.maximum(1, np.round(volume / profile.shares_per_trade * rng.uniform(0.7, 1.3, total)))
    frame = pl.DataFrame({
        "t": path.start_ms + np.arange(total, dtype=np.int64) * 60_000,
        "o": prices[:, 0],
        "h": prices.max(axis=1),
        "l": prices.min(axis=1),
        "c": prices[:, -1],
        "v": volume,
        "vw": vwap,
        "n": transactions.astype(np.int64),
    })
    return frame.filter(pl.Series(traded))


# VIX: mean-reverting in log, moving against SPY's returns (about +5% per -1% in SPY).
VIX_TICKER = "I:VIX"
VIX_LONG_RUN = 17.0
VIX_FIRST_DAY = 17.8
VIX_REVERSION_PER_DAY = 0.04
VIX_BETA_TO_SPY = -5.0
VIX_DAILY_NOISE = 0.045
VIX_AFTER_CLOSE = dt.timedelta(minutes=15)  # the index is published until 16:15 ET


@cache
def _vix_daily_closes() -> tuple[dict[dt.date, int], np.ndarray, np.ndarray]:
    index, spy_closes, _ = _daily_levels("SPY")
    days = sorted(index, key=index.get)
    spy_returns = np.diff(np.log(spy_closes), prepend=np.log(spy_closes[0]))
    noise = np.array([_rng(VIX_TICKER, "day", d.isoformat()).standard_normal() for d in days]) * VIX_DAILY_NOISE
    log_vix = np.empty(len(days))
    log_vix[0] = np.log(VIX_FIRST_DAY)
    for i in range(1, len(days)):
        pull = VIX_REVERSION_PER_DAY * (np.log(VIX_LONG_RUN) - log_vix[i - 1])
        log_vix[i] = log_vix[i - 1] + pull + VIX_BETA_TO_SPY * spy_returns[i] + noise[i]
    drift = np.diff(log_vix, prepend=log_vix[0]) - VIX_BETA_TO_SPY * spy_returns
    return index, np.exp(log_vix), drift


def vix_close(day: dt.date) -> float:
    index, closes, _ = _vix_daily_closes()
    return float(closes[index[day]])


@lru_cache(maxsize=256)
def vix_minute_bars(day: dt.date) -> pl.DataFrame:
    """I:VIX minute values from the open to 15 minutes after the close, every minute (o/h/l/c only)."""
    if not _is_session(day):
        return _empty_bars().select("t", "o", "h", "l", "c")
    index, closes, drift = _vix_daily_closes()
    i = index[day]
    previous = closes[i - 1] if i > 0 else VIX_FIRST_DAY
    spy = price_path("SPY", day)
    first = spy.minutes["pre"]
    last = first + spy.minutes["regular"] + int(VIX_AFTER_CLOSE.total_seconds() // 60)
    spy_steps = spy.prices[first:last]
    rng = _rng(VIX_TICKER, "intraday", day.isoformat())
    regular_steps = spy.minutes["regular"] * STEPS_PER_MINUTE
    sigmas = np.full(regular_steps, 0.01 / np.sqrt(regular_steps))
    drift_path = _bridge(rng, sigmas, 0.0, float(drift[i]))
    after = drift_path[-1] + np.cumsum(rng.standard_normal(spy_steps.size - regular_steps) * sigmas[0])
    log_vix = (
        np.log(previous)
        + VIX_BETA_TO_SPY * (np.log(spy_steps.ravel()) - np.log(spy.previous_close))
        + np.concatenate([drift_path, after])
    )
    values = np.round(np.exp(log_vix).reshape(-1, STEPS_PER_MINUTE), 2)
    opens = np.concatenate([[values[0, 0]], values[:-1, -1]])
    return pl.DataFrame({
        "t": spy.start_ms + (first + np.arange(values.shape[0], dtype=np.int64)) * 60_000,
        "o": opens,
        "h": np.maximum(values.max(axis=1), opens),
        "l": np.minimum(values.min(axis=1), opens),
        "c": values[:, -1],
    })


def session_of(day: dt.date, t_ms: np.ndarray) -> np.ndarray:
    bounds = cal.session_bounds(day)
    open_ms, close_ms = int(bounds.open.timestamp() * 1000), int(bounds.close.timestamp() * 1000)
    return np.where(t_ms < open_ms, "pre", np.where(t_ms < close_ms, "regular", "post"))
