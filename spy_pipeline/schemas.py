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
