"""The previous trading day's data, fetched from Polygon into memory when the lake does not have it.

A day's values depend on the trading day before it: the indicators warm up on its SPY bars, and the
news sentiment looks back 24 hours, into its news. `lake.day_inputs` reads that day from the lake when
its partition was materialized; otherwise it asks a `HistorySource`. `PolygonHistory` fetches the day
with the same requests the raw assets make (one aggregates request, one news query per ticker) and hands
the frames over without writing them: history read for a computation is not a partition Dagster
materialized, so it never lands in the lake where it would pretend to be one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol

import polars as pl

from spy_pipeline.io.bars import minute_bars_by_day
from spy_pipeline.io.news import news_frame, news_window
from spy_pipeline.polygon.client import PolygonClient


class HistorySource(Protocol):
    def spy_bars(self, day: dt.date) -> pl.DataFrame:
        """SPY MINUTE_BARS of `day`; empty when there are none."""
        ...

    def news(self, day: dt.date) -> pl.DataFrame:
        """NEWS of `day`'s window (`news.news_window`); empty when there are none."""
        ...


class PolygonHistory:
    """A HistorySource asking Polygon (or the sandbox). Errors other than an empty answer propagate:
    a failed request is not proof that the history does not exist."""

    def __init__(self, client: PolygonClient, news_tickers: Sequence[str]) -> None:
        self.client = client
        self.news_tickers = list(news_tickers)

    def spy_bars(self, day: dt.date) -> pl.DataFrame:
        return minute_bars_by_day("SPY", self.client.minute_bars("SPY", day, day), [day])[0].frame

    def news(self, day: dt.date) -> pl.DataFrame:
        start, end = news_window(day)
        articles = [article for ticker in self.news_tickers for article in self.client.news(ticker, start, end)]
        return news_frame(articles, self.news_tickers)
