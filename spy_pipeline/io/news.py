"""Market news as a dataset: the window each trading day covers, and sentiment as a number."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import NEWS

SENTIMENT_SCORES = {"positive": 1, "neutral": 0, "negative": -1}


def news_window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC of the news that belongs to a trading day's partition.

    From the end of the previous trading day's after-hours to the end of this day's, so that
    weekend and holiday news lands in the next trading day and consecutive partitions neither
    overlap nor leave gaps.
    """
    end = cal.session_bounds(day).after_hours_close
    if day == cal.FIRST_TRADING_DAY:
        return end - dt.timedelta(days=1), end
    return cal.session_bounds(cal.previous_trading_day(day)).after_hours_close, end


def _sentiment(article: dict[str, Any], tickers: Sequence[str]) -> tuple[str | None, str | None, str | None]:
    insights = {i.get("ticker"): i for i in article.get("insights") or [] if i.get("sentiment") in SENTIMENT_SCORES}
    for ticker in tickers:
        if ticker in insights:
            return ticker, insights[ticker]["sentiment"], insights[ticker].get("sentiment_reasoning")
    return None, None, None


def news_frame(articles: Sequence[dict[str, Any]], tickers: Sequence[str]) -> pl.DataFrame:
    """Polygon news dicts to the NEWS dataset: one row per article id, sorted by publication time."""
    rows = []
    for article in articles:
        ticker, label, reasoning = _sentiment(article, tickers)
        rows.append({
            "article_id": article["id"],
            "published_utc": dt.datetime.fromisoformat(article["published_utc"].replace("Z", "+00:00")),
            "title": article.get("title"),
            "author": article.get("author"),
            "publisher": (article.get("publisher") or {}).get("name"),
            "article_url": article.get("article_url"),
            "description": article.get("description"),
            "tickers": list(article.get("tickers") or []),
            "keywords": list(article.get("keywords") or []),
            "sentiment_ticker": ticker,
            "sentiment": SENTIMENT_SCORES.get(label) if label else None,
            "sentiment_label": label,
            "sentiment_reasoning": reasoning,
        })
    if not rows:
        return pl.DataFrame(schema=NEWS.polars_schema)
    frame = pl.DataFrame(rows, schema=NEWS.polars_schema)
    unique = frame.unique("article_id", keep="first", maintain_order=True)
    return NEWS.conform(unique.sort("published_utc", "article_id"))
