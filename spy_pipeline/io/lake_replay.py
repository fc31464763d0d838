"""A day recorded in the data dir as a market to replay (`spy-pipeline simulate --from-lake`).

The raw partitions a backfill wrote (from Polygon's REST API or its Flat Files, or from the sandbox) are
served back as Polygon would serve them, so the streaming session, its compaction and the intraday refresh
rehearse the live path offline on recorded data:

- `RecordedDay.stream_bars` feeds the sandbox WebSocket (`BarSource`): the day's A and AM events;
- `RecordedDay.minute_bars` and `RecordedDay.news` answer the two REST calls a session and its compaction
  make (gap fills, news polls, the after-close reconciliation) the way `PolygonClient`'s methods of the
  same names do, from the lake, so a replay never calls Polygon whatever the key;
- `RecordedDay.contracts` are the contracts the replay streams: the recorded ones that traded that day.

`missing_inputs` says which raw partitions a replay needs and the data dir lacks.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import polars as pl

from spy_pipeline.domain import datasets
from spy_pipeline.domain.schemas import MINUTE_BARS, NEWS, OPTIONS_CONTRACTS
from spy_pipeline.io import lake
from spy_pipeline.io.storage import DataRoot

# What a replay reads, by registry name, as a person calls it; dividends: the intraday refresh's yield.
REPLAY_INPUTS = {
    "spy": "SPY bars", "vix": "VIX", "options": "options bars", "contracts": "option contracts", "news": "news",
    "dividends": "corporate actions",
}
_POLYGON_BARS = {"t": pl.Int64, "o": pl.Float64, "h": pl.Float64, "l": pl.Float64, "c": pl.Float64,
                 "v": pl.Float64, "vw": pl.Float64, "n": pl.Int64}
_INDEX_FIELDS = ("t", "o", "h", "l", "c")  # Polygon's index aggregates carry no volume, vwap or trades


@dataclass(frozen=True)
class MissingInput:
    label: str
    path: str  # as a person reads it (the data dir's URI form)


def missing_inputs(root: DataRoot, day: dt.date) -> list[MissingInput]:
    """The raw partitions a replay of `day` needs and `root` does not have, in REPLAY_INPUTS order."""
    missing = []
    for name, label in REPLAY_INPUTS.items():
        path = root.file_of(datasets.get(name), day)  # the one file of an unpartitioned dataset
        if not root.exists(path):
            missing.append(MissingInput(label, root.uri(path)))
    return missing


class MissingInputsError(FileNotFoundError):
    """One line: the day and every raw partition it lacks."""

    def __init__(self, day: dt.date, missing: list[MissingInput]) -> None:
        listed = ", ".join(f"{m.label} ({m.path})" for m in missing)
        super().__init__(f"{day} is not in the data dir: missing {listed}; backfill it first "
                         f"(spy-pipeline run --end {day} --days 1)")
        self.day, self.missing = day, missing


def _polygon_bars(frame: pl.DataFrame) -> pl.DataFrame:
    """MINUTE_BARS rows as Polygon's aggregates (t ms, o, h, l, c, v, vw, n), sorted by t."""
    return frame.sort("timestamp").select(
        t=pl.col("timestamp").dt.epoch("ms"), o="open", h="high", l="low", c="close", v="volume", vw="vwap",
        n="transactions",
    ).cast(_POLYGON_BARS)  # type: ignore[arg-type]


def _article(row: dict[str, Any]) -> dict[str, Any]:
    """A NEWS row as Polygon's article dict (what io.news.news_frame reads back to the same row)."""
    insights = []
    if row["sentiment_label"] is not None:
        insights.append({"ticker": row["sentiment_ticker"], "sentiment": row["sentiment_label"],
                         "sentiment_reasoning": row["sentiment_reasoning"]})
    published: dt.datetime = row["published_utc"]
    return {
        "id": row["article_id"], "published_utc": published.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "title": row["title"], "author": row["author"], "publisher": {"name": row["publisher"]},
        "article_url": row["article_url"], "description": row["description"], "tickers": row["tickers"],
        "keywords": row["keywords"], "insights": insights,
    }


class RecordedDay:
    """One trading day's raw partitions, read once; raises MissingInputsError when any is missing."""

    def __init__(self, root: DataRoot, day: dt.date) -> None:
        missing = missing_inputs(root, day)
        if missing:
            raise MissingInputsError(day, missing)
        self.day = day
        bars = pl.concat([lake.read_day(root, name, day, MINUTE_BARS) for name in ("spy", "vix", "options")])
        self._bars = {str(ticker): _polygon_bars(frame)
                      for (ticker,), frame in bars.partition_by("ticker", as_dict=True).items()}
        self._news = lake.read_day(root, "news", day, NEWS)
        self._contracts = lake.read_day(root, "contracts", day, OPTIONS_CONTRACTS)

    def minute_bars(self, ticker: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        """`ticker`'s bars on the recorded day if it is in [start, end] (no other day is recorded here)."""
        if start <= self.day <= end and ticker in self._bars:
            return self._bars[ticker]
        return pl.DataFrame(schema=_POLYGON_BARS)

    def stream_bars(self, symbol: str, day: dt.date) -> pl.DataFrame:
        """The sandbox WebSocket's BarSource: an index without volume, vwap and trades, as Polygon streams it."""
        frame = self.minute_bars(symbol, day, day)
        return frame.select(_INDEX_FIELDS) if symbol.startswith("I:") else frame

    def news(self, ticker: str, published_gte: dt.datetime, published_lt: dt.datetime) -> list[dict[str, Any]]:
        """Recorded articles mentioning `ticker` published in [published_gte, published_lt), oldest first."""
        found = self._news.filter(
            pl.col("tickers").list.contains(ticker)
            & pl.col("published_utc").is_between(published_gte, published_lt, closed="left")
        ).sort("published_utc", "article_id")
        return [_article(row) for row in found.iter_rows(named=True)]

    def contracts(self, limit: int) -> pl.DataFrame:
        """The recorded contracts with bars that day, the `limit` most traded (by volume, then ticker)."""
        traded = pl.DataFrame(
            {"ticker": list(self._bars), "volume": [float(f["v"].sum()) for f in self._bars.values()]},
            schema={"ticker": pl.String, "volume": pl.Float64},
        )
        chosen = (self._contracts.join(traded, on="ticker").sort(["volume", "ticker"], descending=[True, False])
                  .head(limit).drop("volume").sort("ticker"))
        return OPTIONS_CONTRACTS.conform(chosen)
