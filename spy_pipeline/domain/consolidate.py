"""One trading day's consolidated dataset: one row per option contract per minute (pure, no I/O).

Every row joins the option's minute bar with the SPY minute it traded in (price, indicators warmed
up on the previous trading day), the VIX value and the news sentiment known at that minute, the
contract's terms, and Black-Scholes-Merton implied volatility and greeks computed from the option's
close. Nothing is looked up from the future: VIX and news are backward as-of joins.

News and minutes share one rule: a minute is the half-open interval [start, start + 1 min), and an
article belongs to the minute its publication time falls in. So an article published exactly at a
minute's end (12:01:00.000) belongs to the next minute: neither `news_sentiment` nor
`news_articles_last_hour` of the 12:00 minute sees it; both of the 12:01 minute do. The last hour of a
minute is its own minute and the 59 before it, [end - 1 h, end); the 24-hour look-back is [end - 24 h, end).

Nothing is computed from missing history: without the previous trading day's SPY bars the indicators
that need them are null (`indicators.day_indicators`), and a news look-back reaching before the news the
inputs cover (`DayInputs.news_since`) leaves `news_sentiment` null when no article was found in what is
covered. `missing_history_rows` counts both.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.black_scholes import implied_vol_and_greeks
from spy_pipeline.domain.datasets import BY_CONTRACT_AND_MINUTE, sorted_by
from spy_pipeline.domain.indicators import INDICATOR_COLUMNS, day_indicators
from spy_pipeline.domain.schemas import CONSOLIDATED

SECONDS_PER_YEAR = 365.0 * 24 * 3600
NEWS_TOLERANCE = dt.timedelta(hours=24)
MINUTE = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class DayInputs:
    day: dt.date
    spy: pl.DataFrame  # MINUTE_BARS of the day
    spy_previous: pl.DataFrame | None  # MINUTE_BARS of the previous trading day (indicator warm-up)
    vix: pl.DataFrame  # MINUTE_BARS of I:VIX
    option_bars: pl.DataFrame  # MINUTE_BARS of the day's contracts
    contracts: pl.DataFrame  # OPTIONS_CONTRACTS
    news: pl.DataFrame  # NEWS of the day and the previous trading day (for the 24 h look-back)
    risk_free_rate: float
    dividend_yield: float
    # The earliest publication time `news` is complete from (None: complete for any look-back).
    news_since: dt.datetime | None = None
    # Where the previous trading day's data came from, per dataset: for the asset's metadata.
    history: dict[str, str] = field(default_factory=dict)
    unavailable: frozenset[str] = frozenset()  # optional sources without data that day (vix, news): null columns


def expiry_close(expiration: dt.date) -> dt.datetime:
    """The moment a contract stops trading: its expiration day's close (13:00 ET on an early close)."""
    try:
        return cal.session_bounds(expiration).close
    except cal.TradingCalendarError:  # beyond the calendar or not a session: the regular 16:00 ET
        return dt.datetime.combine(expiration, dt.time(16, 0), tzinfo=cal.NEW_YORK).astimezone(dt.UTC)


def _expiry_closes(expirations: pl.Expr, among: pl.Series) -> pl.Expr:
    """Each expiration's `expiry_close`, looked up once per distinct day of `among` (which holds them all)."""
    closes = {day: expiry_close(day) for day in among.unique().drop_nulls().to_list()}
    return expirations.replace_strict(closes, return_dtype=pl.Datetime("us", "UTC"))


def _years_until(close: pl.Expr, timestamps: pl.Expr) -> pl.Expr:
    return (close - timestamps).dt.total_microseconds() / 1e6 / SECONDS_PER_YEAR


def time_to_expiry_years(timestamps: pl.Expr, expirations: pl.Series) -> pl.Expr:
    """Years from each bar's start to its contract's expiry close (a 0DTE bar at 15:59 has 1 minute)."""
    return _years_until(_expiry_closes(pl.col("expiration"), expirations), timestamps)


def spy_minutes(inputs: DayInputs) -> pl.DataFrame:
    """The SPY regular-session grid of the day with indicators, VIX and news joined in."""
    grid = day_indicators(inputs.spy_previous, inputs.spy, inputs.day).rename(
        {
            "open": "spy_open",
            "high": "spy_high",
            "low": "spy_low",
            "close": "spy_close",
            "volume": "spy_volume",
            "vwap": "spy_vwap",
            "has_bar": "spy_has_bar",
        }
    )
    vix = inputs.vix.select("timestamp", vix="close").sort("timestamp")
    grid = grid.sort("timestamp").join_asof(vix, on="timestamp", strategy="backward")
    grid = _with_news(grid, inputs.news)
    if "news" in inputs.unavailable:  # no news is not "no articles": unknown, not 0
        grid = grid.with_columns(
            news_sentiment=pl.lit(None, pl.Float64), news_articles_last_hour=pl.lit(None, pl.Int32)
        )
    if "vix" in inputs.unavailable:
        grid = grid.with_columns(vix=pl.lit(None, pl.Float64))
    return grid


def _with_news(grid: pl.DataFrame, news: pl.DataFrame) -> pl.DataFrame:
    """Latest sentiment published before each minute's end (24 h look-back), articles in its last hour.

    Both follow the module's rule: published in [end - look-back, end), the end itself excluded.
    """
    known_at = grid["timestamp"] + MINUTE
    scored = (
        news.filter(pl.col("sentiment").is_not_null())
        .select(published=pl.col("published_utc"), news_sentiment=pl.col("sentiment").cast(pl.Float64))
        .sort("published")
    )
    grid = (
        grid.with_columns(known_at=known_at)
        .join_asof(
            scored, left_on="known_at", right_on="published", strategy="backward",
            tolerance=NEWS_TOLERANCE, allow_exact_matches=False,
        )
        .drop("published")
    )
    published = np.sort(news["published_utc"].dt.epoch("us").to_numpy())
    end = grid["known_at"].dt.epoch("us").to_numpy()
    hour = int(3_600 * 1e6)
    # Articles published in [end - 1 h, end): a count from two binary searches, no loop.
    counts = np.searchsorted(published, end, side="left") - np.searchsorted(published, end - hour, side="left")
    return grid.with_columns(news_articles_last_hour=pl.Series(counts, dtype=pl.Int32)).drop("known_at")


def missing_history_rows(rows: pl.DataFrame, inputs: DayInputs) -> dict[str, int]:
    """How many consolidated `rows` lack a value because history before the day could not be had:
    an indicator (null: no previous trading day's SPY bars) or the news sentiment (null, and the 24 h
    look-back reaches before `inputs.news_since`). Zero and zero when the previous day was at hand."""
    indicators_missing = rows.select(pl.any_horizontal(pl.col(INDICATOR_COLUMNS).is_null()).sum()).item()
    news_missing = 0
    if inputs.news_since is not None:
        reaches_before = pl.col("timestamp") + MINUTE - NEWS_TOLERANCE < inputs.news_since
        news_missing = rows.select((reaches_before & pl.col("news_sentiment").is_null()).sum()).item()
    return {"indicators": int(indicators_missing), "news_sentiment": int(news_missing)}


def _contract_terms(contracts: pl.DataFrame) -> pl.DataFrame:
    """The contracts' columns the rows need, with each contract's expiry close (computed per contract, not per row)."""
    terms = contracts.select("ticker", "contract_type", "strike", "expiration")
    return terms.with_columns(expiry_close=_expiry_closes(pl.col("expiration"), terms["expiration"]))


def _with_terms_and_minutes(options: pl.DataFrame, terms: pl.DataFrame, minutes: pl.DataFrame) -> pl.DataFrame:
    """`options` inner-joined with its contract's `terms` on ticker, then with `minutes` on timestamp, in the
    order of `options`.

    Bars sorted by ticker come in one run per contract and the minute grid is regular, so instead of two hash
    joins over every bar (half of the joins' time is spent keeping the order) each bar takes its contract's
    terms by run and its minute by position: one lookup per contract, two gathers. The result is the joins'
    (same rows, order and columns); when its conditions do not hold (a contract listed twice, a grid with a
    gap) the joins are used.
    """
    step = minutes["timestamp"].diff().drop_nulls()
    if terms["ticker"].is_duplicated().any() or minutes.height == 0 or (step != MINUTE).any():
        return options.join(terms, on="ticker", how="inner", maintain_order="left").join(
            minutes, on="timestamp", how="inner", maintain_order="left"
        )
    run = options["ticker"].rle_id()
    per_run = pl.DataFrame({"ticker": options["ticker"].rle().struct.field("value")}).join(
        terms.with_columns(_listed=pl.lit(True)), on="ticker", how="left", maintain_order="left"
    )
    slot = (options["timestamp"] - minutes["timestamp"][0]).dt.total_minutes()
    position = slot.clip(0, minutes.height - 1).cast(pl.UInt32)
    matched = (
        per_run["_listed"].gather(run).is_not_null()
        & (slot >= 0)
        & (slot < minutes.height)
        & (minutes["timestamp"].gather(position) == options["timestamp"])  # a bar starting on the minute
    )
    joined = pl.concat(
        [options, per_run.drop("ticker", "_listed")[run], minutes.drop("timestamp")[position]], how="horizontal"
    )
    return joined.filter(matched)


def consolidate_day(inputs: DayInputs) -> pl.DataFrame:
    """The CONSOLIDATED rows of one day: option bars inner-joined to the SPY minute grid.

    Rows come sorted by (ticker, timestamp): the option bars are put in that order first (a no-op for raw
    files, which are written so) and the joins keep the bars' order, so the wide joined frame is never sorted.
    """
    minutes = spy_minutes(inputs)
    options = sorted_by(
        inputs.option_bars.select(
            "ticker",
            "timestamp",
            option_open="open",
            option_high="high",
            option_low="low",
            option_close="close",
            option_volume="volume",
            option_vwap="vwap",
            option_transactions="transactions",
        ),
        BY_CONTRACT_AND_MINUTE,
    )
    rows = (
        _with_terms_and_minutes(options, _contract_terms(inputs.contracts), minutes)
        .with_columns(time_to_expiry_years=_years_until(pl.col("expiry_close"), pl.col("timestamp")))
    )
    greeks = implied_vol_and_greeks(
        rows["option_close"].to_numpy(),
        rows["spy_close"].to_numpy(),
        rows["strike"].to_numpy(),
        rows["time_to_expiry_years"].to_numpy(),
        inputs.risk_free_rate,
        inputs.dividend_yield,
        (rows["contract_type"] == "call").to_numpy(),
    )
    rows = rows.with_columns(
        risk_free_rate=pl.lit(inputs.risk_free_rate),
        dividend_yield=pl.lit(inputs.dividend_yield),
        iv=greeks.iv,
        delta=greeks.delta,
        gamma=greeks.gamma,
        theta_per_day=greeks.theta_per_day,
        vega_per_point=greeks.vega_per_point,
        rho_per_point=greeks.rho_per_point,
        iv_reason=pl.Series(greeks.reason, dtype=pl.Int8),
    )
    return CONSOLIDATED.conform(rows)
