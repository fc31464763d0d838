"""Each dataset's columns, declared once, each with its type and description: writers conform to them, readers,
checks and docs read them. Where they are stored (paths, partitioning) is `spy_pipeline.domain.datasets`.

Most schemas are fixed. Two depend on the writer's configuration: `training` ends with one target column per
minute ahead (`target_{k}`, k = 1 … horizon) and `features` has one column per lag (`iv_change_{k}m`); such a
set of columns is a `ColumnFamily` (a name pattern with a whole number k), matched by name when conforming or
checking a frame, and expanded for given k by `DatasetSchema.schema_for`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import polars as pl

UTC_TIMESTAMP = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    description: str


@dataclass(frozen=True)
class ColumnFamily:
    """Columns named `pattern` with `{k}` a positive whole number (`target_{k}`); which k are present depends
    on the writer's configuration, which `rule` names. A frame holds at least one, consecutively, k increasing."""

    pattern: str
    dtype: pl.DataType
    description: str
    rule: str

    def __post_init__(self) -> None:
        if self.pattern.count("{k}") != 1:
            raise ValueError(f"a column family pattern needs exactly one {{k}}, got {self.pattern!r}")

    @cached_property
    def regex(self) -> re.Pattern[str]:
        before, after = self.pattern.split("{k}")
        return re.compile(f"{re.escape(before)}([1-9][0-9]*){re.escape(after)}")

    def names(self, ks: Iterable[int]) -> list[str]:
        return [self.pattern.replace("{k}", str(k)) for k in ks]


@dataclass(frozen=True)
class DatasetSchema:
    """A dataset's columns in order (`entries`: columns and column families) and its unique key."""

    name: str
    key: tuple[str, ...]
    entries: tuple[Column | ColumnFamily, ...]

    @property
    def families(self) -> tuple[ColumnFamily, ...]:
        return tuple(entry for entry in self.entries if isinstance(entry, ColumnFamily))

    @property
    def columns(self) -> dict[str, pl.DataType]:
        """The fixed columns (every column of a schema without families), in order, with their types."""
        return {entry.name: entry.dtype for entry in self.entries if isinstance(entry, Column)}

    @property
    def descriptions(self) -> dict[str, str]:
        return {entry.name: entry.description for entry in self.entries if isinstance(entry, Column)}

    @property
    def polars_schema(self) -> pl.Schema:
        if self.families:
            patterns = ", ".join(family.pattern for family in self.families)
            raise ValueError(f"{self.name}'s columns {patterns} depend on configuration: use schema_for(k)")
        return pl.Schema(self.columns)

    def schema_for(self, ks: Iterable[int]) -> pl.Schema:
        """The columns with every family expanded for `ks` (the horizon's minutes, the lags)."""
        ks = list(ks)
        columns: dict[str, pl.DataType] = {}
        for entry in self.entries:
            if isinstance(entry, Column):
                columns[entry.name] = entry.dtype
            else:
                columns.update(dict.fromkeys(entry.names(ks), entry.dtype))
        return pl.Schema(columns)

    def _resolve(self, names: list[str]) -> Iterator[tuple[str, pl.DataType]]:
        """(column, declared type) for each entry in order: a fixed column by name, a family as every name of
        `names` it matches, by increasing k (none is an error). ValueError when a column is missing."""
        missing = [name for name in self.columns if name not in names]
        if missing:
            raise ValueError(f"{self.name}: missing columns {missing}")
        for entry in self.entries:
            if isinstance(entry, Column):
                yield entry.name, entry.dtype
                continue
            ks = sorted(int(found[1]) for name in names if (found := entry.regex.fullmatch(name)))
            if not ks:
                raise ValueError(f"{self.name}: no {entry.pattern} column ({entry.rule})")
            yield from ((name, entry.dtype) for name in entry.names(ks))

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Select and cast to the declared columns; a missing column is an error, not a null."""
        return frame.select([pl.col(name).cast(dtype, strict=True) for name, dtype in self._resolve(frame.columns)])

    def matches(self, schema: pl.Schema) -> bool:
        """Whether `schema` has exactly the declared columns, in order, with their types."""
        try:
            expected = list(self._resolve(list(schema.names())))
        except ValueError:
            return False
        return list(schema.items()) == expected


MINUTE_BARS = DatasetSchema("minute_bars", ("ticker", "timestamp"), (
    Column("ticker", pl.String(), "Polygon ticker: SPY, I:VIX, O:SPY250108C00590000"),
    Column("timestamp", UTC_TIMESTAMP, "Start of the one-minute bar, UTC"),
    Column("session", pl.String(), "pre (04:00 ET to the open), regular, or post (the close to four hours after), ET"),
    Column("open", pl.Float64(), "First trade price in the minute, USD"),
    Column("high", pl.Float64(), "Highest trade price in the minute, USD"),
    Column("low", pl.Float64(), "Lowest trade price in the minute, USD"),
    Column("close", pl.Float64(), "Last trade price in the minute, USD"),
    Column("volume", pl.Float64(), "Shares (options: contracts) traded in the minute; null for an index"),
    Column("vwap", pl.Float64(), "Volume-weighted average price in the minute, USD; null for an index and for "
           "bars from Flat Files (they carry none)"),
    Column("transactions", pl.Int64(), "Number of trades in the minute; null for an index"),
))

OPTIONS_CONTRACTS = DatasetSchema("options_contracts", ("ticker",), (
    Column("ticker", pl.String(), "OCC option ticker, e.g. O:SPY250108C00590000"),
    Column("underlying", pl.String(), "Underlying ticker, e.g. SPY"),
    Column("contract_type", pl.String(), "call or put"),
    Column("strike", pl.Float64(), "Strike price, USD"),
    Column("expiration", pl.Date(), "Expiration day (the contract trades until that day's close, ET)"),
    Column("exercise_style", pl.String(), "american, european or bermudan"),
    Column("shares_per_contract", pl.Int64(), "Shares delivered per contract, usually 100"),
))

NEWS = DatasetSchema("news", ("article_id",), (
    Column("article_id", pl.String(), "Polygon's article id (unique)"),
    Column("published_utc", UTC_TIMESTAMP, "Publication time, UTC"),
    Column("title", pl.String(), "Headline"),
    Column("author", pl.String(), "Author"),
    Column("publisher", pl.String(), "Publisher's name"),
    Column("article_url", pl.String(), "Link to the article"),
    Column("description", pl.String(), "Summary"),
    Column("tickers", pl.List(pl.String()), "Every ticker the article mentions"),
    Column("keywords", pl.List(pl.String()), "Polygon's keywords"),
    Column("sentiment_ticker", pl.String(),
           "The configured ticker the sentiment is about (the first configured one with an insight)"),
    Column("sentiment", pl.Int8(),
           "Polygon insight for sentiment_ticker: positive 1, neutral 0, negative -1; null without insight"),
    Column("sentiment_label", pl.String(), "positive, neutral or negative, as Polygon gives it"),
    Column("sentiment_reasoning", pl.String(), "Polygon's reasoning for the sentiment"),
))

DIVIDENDS = DatasetSchema("dividends", ("ticker", "ex_dividend_date", "dividend_type"), (
    Column("ticker", pl.String(), "Equity ticker"),
    Column("ex_dividend_date", pl.Date(), "First day the shares trade without the dividend"),
    Column("pay_date", pl.Date(), "Payment day"),
    Column("record_date", pl.Date(), "Record day"),
    Column("declaration_date", pl.Date(), "Announcement day"),
    Column("cash_amount", pl.Float64(), "Dividend per share, USD"),
    Column("frequency", pl.Int64(), "Payments per year (4 = quarterly)"),
    Column("dividend_type", pl.String(), "CD regular cash, SC special cash, LT/ST capital gains"),
))

SPLITS = DatasetSchema("splits", ("ticker", "execution_date"), (
    Column("ticker", pl.String(), "Equity ticker"),
    Column("execution_date", pl.Date(), "Day the split takes effect"),
    Column("split_from", pl.Float64(), "Shares before (the 1 of a 1-for-2)"),
    Column("split_to", pl.Float64(), "Shares after (the 2 of a 1-for-2)"),
))


# The indicators of SPY's 1-minute closes (spy_pipeline.domain.indicators computes them).
MOMENTUM_MINUTES = (5, 30, 60)
INDICATORS: tuple[Column, ...] = (
    Column("rsi_14", pl.Float64(), "Wilder RSI over 14 minutes, seeded with the mean of the first 14 changes "
           "(TA-Lib, StockCharts), 0-100; null without the previous trading day's bars"),
    Column("macd", pl.Float64(), "EMA(12) - EMA(26) of the close (SMA-seeded EMAs), USD"),
    Column("macd_signal", pl.Float64(), "EMA(9) of macd, USD"),
    Column("macd_hist", pl.Float64(), "macd - macd_signal, USD"),
    Column("bb_lower", pl.Float64(), "Bollinger lower band: 20-minute mean - 2 population standard deviations, USD"),
    Column("bb_middle", pl.Float64(), "Bollinger middle band: 20-minute simple mean of the close, USD"),
    Column("bb_upper", pl.Float64(), "Bollinger upper band: 20-minute mean + 2 population standard deviations, USD"),
    Column("bb_percent_b", pl.Float64(),
           "(close - bb_lower) / (bb_upper - bb_lower); 0.5 when the bands have zero width"),
    Column("bb_bandwidth", pl.Float64(), "(bb_upper - bb_lower) / bb_middle, a fraction (not percent)"),
    *(Column(f"change_{k}m", pl.Float64(), f"close - close {k} grid minutes earlier, USD") for k in MOMENTUM_MINUTES),
    *(Column(f"roc_{k}m", pl.Float64(), f"100 * change_{k}m / close {k} grid minutes earlier, percent")
      for k in MOMENTUM_MINUTES),
)
INDICATOR_DESCRIPTIONS: dict[str, str] = {column.name: column.description for column in INDICATORS}

OPTION_TICKER = Column("ticker", pl.String(), "OCC option ticker")
MINUTE = Column("timestamp", UTC_TIMESTAMP, "Start of the minute, UTC (a regular-session minute of the day)")
IV = Column("iv", pl.Float64(),
            "Black-Scholes-Merton implied volatility of option_close, per year (NaN when iv_reason != 0)")

CONSOLIDATED = DatasetSchema("consolidated", ("ticker", "timestamp"), (
    OPTION_TICKER,
    MINUTE,
    Column("contract_type", pl.String(), "call or put"),
    Column("strike", pl.Float64(), "Strike price, USD"),
    Column("expiration", pl.Date(), "Expiration day"),
    Column("time_to_expiry_years", pl.Float64(),
           "From the minute's start to the expiration day's close (13:00 ET on early closes), in years of 365 days"),
    Column("option_open", pl.Float64(), "Option minute bar open, USD"),
    Column("option_high", pl.Float64(), "Option minute bar high, USD"),
    Column("option_low", pl.Float64(), "Option minute bar low, USD"),
    Column("option_close", pl.Float64(), "Option minute bar close, USD: the price implied volatility is computed from"),
    Column("option_volume", pl.Float64(), "Contracts traded in the minute"),
    Column("option_vwap", pl.Float64(), "Option volume-weighted average price in the minute, USD (null from "
           "Flat Files)"),
    Column("option_transactions", pl.Int64(), "Option trades in the minute"),
    Column("spy_open", pl.Float64(), "SPY minute open, USD (carried from the previous close when SPY had no bar)"),
    Column("spy_high", pl.Float64(), "SPY minute high, USD"),
    Column("spy_low", pl.Float64(), "SPY minute low, USD"),
    Column("spy_close", pl.Float64(), "SPY minute close, USD: the underlying price of the greeks"),
    Column("spy_volume", pl.Float64(), "SPY shares traded in the minute (0 without a bar)"),
    Column("spy_vwap", pl.Float64(), "SPY volume-weighted average price in the minute, USD (null without a bar, "
           "and from Flat Files)"),
    Column("spy_has_bar", pl.Boolean(), "Whether SPY traded in that minute"),
    Column("vix", pl.Float64(), "I:VIX, the last value at or before the minute (backward as-of)"),
    *INDICATORS,
    Column("news_sentiment", pl.Float64(),
           "Sentiment of the latest scored article published in the 24 hours before the minute's end, the end "
           "excluded: an article at exactly the end belongs to the next minute (1, 0, -1; null when none)"),
    Column("news_articles_last_hour", pl.Int32(), "Articles published in the hour before the minute's end, the end "
           "excluded (the minute and the 59 before it)"),
    Column("risk_free_rate", pl.Float64(), "Continuously compounded risk-free rate used, per year"),
    Column("dividend_yield", pl.Float64(), "SPY's trailing 12-month dividend yield used, per year"),
    IV,
    Column("delta", pl.Float64(), "Delta at iv"),
    Column("gamma", pl.Float64(), "Gamma at iv, per USD"),
    Column("theta_per_day", pl.Float64(), "Theta at iv, USD per calendar day"),
    Column("vega_per_point", pl.Float64(), "Vega at iv, USD per volatility point (0.01)"),
    Column("rho_per_point", pl.Float64(), "Rho at iv, USD per rate point (0.01)"),
    Column("iv_reason", pl.Int8(),
           "0 ok, 1 below intrinsic value, 2 at or above the no-arbitrage bound, 3 invalid input, 4 no convergence"),
))

# Every consolidated column, then one target per minute ahead (spy_pipeline.domain.targets.target_columns).
TRAINING = DatasetSchema("training", ("ticker", "timestamp"), (
    *CONSOLIDATED.entries,
    ColumnFamily("target_{k}", pl.Float32(),
                 "option_close of the same contract k minutes later, same day; null without a bar there unless "
                 "forward-filled", "k = 1 … horizon_minutes of training_dataset, 120 by default"),
))

# spy_pipeline.domain.features.build_features; k runs over the configured lags, in their order.
_LAGS = "k = each of lags_minutes of features, 1, 5, 15, 30, 60 by default"
FEATURES = DatasetSchema("features", ("ticker", "timestamp"), (
    OPTION_TICKER,
    MINUTE,
    ColumnFamily("spy_pct_change_{k}m", pl.Float64(),
                 "SPY close's change over the last k minutes, percent (null before k minutes of the session)", _LAGS),
    Column("iv", pl.Float64(), "The consolidated iv, null where it is NaN (no solution)"),
    ColumnFamily("iv_change_{k}m", pl.Float64(),
                 "iv minus the same contract's iv k minutes earlier (null when it had no bar or iv then)", _LAGS),
    Column("atm_iv", pl.Float64(),
           "Mean iv of the nearest expiration's contracts with the strike closest to SPY's close in that minute"),
    Column("iv_minus_atm", pl.Float64(), "iv - atm_iv"),
))

# spy_pipeline.domain.scanner.movement_events: one row per event.
OPTIONS_MOVEMENT = DatasetSchema("options_movement", ("ticker", "start"), (
    Column("ticker", pl.String(), "Option ticker"),
    Column("start", UTC_TIMESTAMP, "Trigger bar: first minute of the event, UTC"),
    Column("end", UTC_TIMESTAMP, "Last minute of the event still at or above the sustain level, UTC"),
    Column("duration_minutes", pl.Int64(), "Minutes from start to end, both included (end - start + 1)"),
    Column("reference_price", pl.Float64(),
           "Reference at the trigger bar: minimum price over the window ending there, USD"),
    Column("trigger_price", pl.Float64(), "Price of the trigger bar, USD"),
    Column("peak_price", pl.Float64(), "Highest price from start to end, USD"),
    Column("peak_gain_pct", pl.Float64(), "peak_price over reference_price, minus 1, in percent"),
    Column("minutes_above_trigger", pl.Int64(),
           "Bars of the event at or above reference_price x (1 + trigger_pct/100)"),
    Column("trigger_hour_et", pl.Int32(), "Hour of start in America/New_York (9 for 09:xx)"),
))
