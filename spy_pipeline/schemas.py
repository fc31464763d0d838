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
