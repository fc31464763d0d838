"""Each dataset's columns, declared once: the writer enforces them, checks and docs read them."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

UTC_TIMESTAMP = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class DatasetSchema:
    name: str
    columns: dict[str, pl.DataType]
    descriptions: dict[str, str]
    key: tuple[str, ...]

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema(self.columns)

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Select and cast to the declared columns; a missing column is an error, not a null."""
        missing = [name for name in self.columns if name not in frame.columns]
        if missing:
            raise ValueError(f"{self.name}: missing columns {missing}")
        return frame.select([pl.col(name).cast(dtype, strict=True) for name, dtype in self.columns.items()])

    def matches(self, schema: pl.Schema) -> bool:
        return dict(schema) == self.columns


MINUTE_BARS = DatasetSchema(
    name="minute_bars",
    columns={
        "ticker": pl.String(),
        "timestamp": UTC_TIMESTAMP,
        "session": pl.String(),
        "open": pl.Float64(),
        "high": pl.Float64(),
        "low": pl.Float64(),
        "close": pl.Float64(),
        "volume": pl.Float64(),
        "vwap": pl.Float64(),
        "transactions": pl.Int64(),
    },
    descriptions={
        "ticker": "Polygon ticker: SPY, I:VIX, O:SPY250108C00590000",
        "timestamp": "Start of the one-minute bar, UTC",
        "session": "pre (04:00 ET to the open), regular, or post (the close to four hours after), ET",
        "open": "First trade price in the minute, USD",
        "high": "Highest trade price in the minute, USD",
        "low": "Lowest trade price in the minute, USD",
        "close": "Last trade price in the minute, USD",
        "volume": "Shares (options: contracts) traded in the minute; null for an index",
        "vwap": "Volume-weighted average price in the minute, USD; null for an index",
        "transactions": "Number of trades in the minute; null for an index",
    },
    key=("ticker", "timestamp"),
)


OPTIONS_CONTRACTS = DatasetSchema(
    name="options_contracts",
    columns={
        "ticker": pl.String(),
        "underlying": pl.String(),
        "contract_type": pl.String(),
        "strike": pl.Float64(),
        "expiration": pl.Date(),
        "exercise_style": pl.String(),
        "shares_per_contract": pl.Int64(),
    },
    descriptions={
        "ticker": "OCC option ticker, e.g. O:SPY250108C00590000",
        "underlying": "Underlying ticker, e.g. SPY",
        "contract_type": "call or put",
        "strike": "Strike price, USD",
        "expiration": "Expiration day (the contract trades until that day's close, ET)",
        "exercise_style": "american, european or bermudan",
        "shares_per_contract": "Shares delivered per contract, usually 100",
    },
    key=("ticker",),
)

NEWS = DatasetSchema(
    name="news",
    columns={
        "article_id": pl.String(),
        "published_utc": UTC_TIMESTAMP,
        "title": pl.String(),
        "author": pl.String(),
        "publisher": pl.String(),
        "article_url": pl.String(),
        "description": pl.String(),
        "tickers": pl.List(pl.String()),
        "keywords": pl.List(pl.String()),
        "sentiment_ticker": pl.String(),
        "sentiment": pl.Int8(),
        "sentiment_label": pl.String(),
        "sentiment_reasoning": pl.String(),
    },
    descriptions={
        "article_id": "Polygon's article id (unique)",
        "published_utc": "Publication time, UTC",
        "title": "Headline",
        "author": "Author",
        "publisher": "Publisher's name",
        "article_url": "Link to the article",
        "description": "Summary",
        "tickers": "Every ticker the article mentions",
        "keywords": "Polygon's keywords",
        "sentiment_ticker": "The configured ticker the sentiment is about (the first configured one with an insight)",
        "sentiment": "Polygon insight for sentiment_ticker: positive 1, neutral 0, negative -1; null without insight",
        "sentiment_label": "positive, neutral or negative, as Polygon gives it",
        "sentiment_reasoning": "Polygon's reasoning for the sentiment",
    },
    key=("article_id",),
)

DIVIDENDS = DatasetSchema(
    name="dividends",
    columns={
        "ticker": pl.String(),
        "ex_dividend_date": pl.Date(),
        "pay_date": pl.Date(),
        "record_date": pl.Date(),
        "declaration_date": pl.Date(),
        "cash_amount": pl.Float64(),
        "frequency": pl.Int64(),
        "dividend_type": pl.String(),
    },
    descriptions={
        "ticker": "Equity ticker",
        "ex_dividend_date": "First day the shares trade without the dividend",
        "pay_date": "Payment day",
        "record_date": "Record day",
        "declaration_date": "Announcement day",
        "cash_amount": "Dividend per share, USD",
        "frequency": "Payments per year (4 = quarterly)",
        "dividend_type": "CD regular cash, SC special cash, LT/ST capital gains",
    },
    key=("ticker", "ex_dividend_date", "dividend_type"),
)

SPLITS = DatasetSchema(
    name="splits",
    columns={
        "ticker": pl.String(),
        "execution_date": pl.Date(),
        "split_from": pl.Float64(),
        "split_to": pl.Float64(),
    },
    descriptions={
        "ticker": "Equity ticker",
        "execution_date": "Day the split takes effect",
        "split_from": "Shares before (the 1 of a 1-for-2)",
        "split_to": "Shares after (the 2 of a 1-for-2)",
    },
    key=("ticker", "execution_date"),
)


# The indicators of SPY's 1-minute closes (spy_pipeline.domain.indicators computes them).
MOMENTUM_MINUTES = (5, 30, 60)
INDICATOR_DESCRIPTIONS: dict[str, str] = {
    "rsi_14": "Wilder RSI over 14 minutes, seeded with the mean of the first 14 changes (TA-Lib, StockCharts), "
              "0-100; null without the previous trading day's bars",
    "macd": "EMA(12) - EMA(26) of the close (SMA-seeded EMAs), USD",
    "macd_signal": "EMA(9) of macd, USD",
    "macd_hist": "macd - macd_signal, USD",
    "bb_lower": "Bollinger lower band: 20-minute mean - 2 population standard deviations, USD",
    "bb_middle": "Bollinger middle band: 20-minute simple mean of the close, USD",
    "bb_upper": "Bollinger upper band: 20-minute mean + 2 population standard deviations, USD",
    "bb_percent_b": "(close - bb_lower) / (bb_upper - bb_lower); 0.5 when the bands have zero width",
    "bb_bandwidth": "(bb_upper - bb_lower) / bb_middle, a fraction (not percent)",
    **{f"change_{k}m": f"close - close {k} grid minutes earlier, USD" for k in MOMENTUM_MINUTES},
    **{f"roc_{k}m": f"100 * change_{k}m / close {k} grid minutes earlier, percent" for k in MOMENTUM_MINUTES},
}

CONSOLIDATED = DatasetSchema(
    name="consolidated",
    columns={
        "ticker": pl.String(),
        "timestamp": UTC_TIMESTAMP,
        "contract_type": pl.String(),
        "strike": pl.Float64(),
        "expiration": pl.Date(),
        "time_to_expiry_years": pl.Float64(),
        "option_open": pl.Float64(),
        "option_high": pl.Float64(),
        "option_low": pl.Float64(),
        "option_close": pl.Float64(),
        "option_volume": pl.Float64(),
        "option_vwap": pl.Float64(),
        "option_transactions": pl.Int64(),
        "spy_open": pl.Float64(),
        "spy_high": pl.Float64(),
        "spy_low": pl.Float64(),
        "spy_close": pl.Float64(),
        "spy_volume": pl.Float64(),
        "spy_vwap": pl.Float64(),
        "spy_has_bar": pl.Boolean(),
        "vix": pl.Float64(),
        **dict.fromkeys(INDICATOR_DESCRIPTIONS, pl.Float64()),
        "news_sentiment": pl.Float64(),
        "news_articles_last_hour": pl.Int32(),
        "risk_free_rate": pl.Float64(),
        "dividend_yield": pl.Float64(),
        "iv": pl.Float64(),
        "delta": pl.Float64(),
        "gamma": pl.Float64(),
        "theta_per_day": pl.Float64(),
        "vega_per_point": pl.Float64(),
        "rho_per_point": pl.Float64(),
        "iv_reason": pl.Int8(),
    },
    descriptions={
        "ticker": "OCC option ticker",
        "timestamp": "Start of the minute, UTC (a regular-session minute of the day)",
        "contract_type": "call or put",
        "strike": "Strike price, USD",
        "expiration": "Expiration day",
        "time_to_expiry_years": "From the minute's start to the expiration day's close (13:00 ET on early closes), "
                                "in years of 365 days",
        "option_open": "Option minute bar open, USD",
        "option_high": "Option minute bar high, USD",
        "option_low": "Option minute bar low, USD",
        "option_close": "Option minute bar close, USD: the price implied volatility is computed from",
        "option_volume": "Contracts traded in the minute",
        "option_vwap": "Option volume-weighted average price in the minute, USD",
        "option_transactions": "Option trades in the minute",
        "spy_open": "SPY minute open, USD (carried from the previous close when SPY had no bar)",
        "spy_high": "SPY minute high, USD",
        "spy_low": "SPY minute low, USD",
        "spy_close": "SPY minute close, USD: the underlying price of the greeks",
        "spy_volume": "SPY shares traded in the minute (0 without a bar)",
        "spy_vwap": "SPY volume-weighted average price in the minute, USD (null without a bar)",
        "spy_has_bar": "Whether SPY traded in that minute",
        "vix": "I:VIX, the last value at or before the minute (backward as-of)",
        **INDICATOR_DESCRIPTIONS,
        "news_sentiment": "Sentiment of the latest scored article published in the 24 hours before the minute's "
                          "end, the end excluded: an article at exactly the end belongs to the next minute "
                          "(1, 0, -1; null when none)",
        "news_articles_last_hour": "Articles published in the hour before the minute's end, the end excluded "
                                   "(the minute and the 59 before it)",
        "risk_free_rate": "Continuously compounded risk-free rate used, per year",
        "dividend_yield": "SPY's trailing 12-month dividend yield used, per year",
        "iv": "Black-Scholes-Merton implied volatility of option_close, per year (NaN when iv_reason != 0)",
        "delta": "Delta at iv",
        "gamma": "Gamma at iv, per USD",
        "theta_per_day": "Theta at iv, USD per calendar day",
        "vega_per_point": "Vega at iv, USD per volatility point (0.01)",
        "rho_per_point": "Rho at iv, USD per rate point (0.01)",
        "iv_reason": "0 ok, 1 below intrinsic value, 2 at or above the no-arbitrage bound, 3 invalid input, "
                     "4 no convergence",
    },
    key=("ticker", "timestamp"),
)
