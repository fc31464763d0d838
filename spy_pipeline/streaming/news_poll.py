"""News during a streaming session: Polygon has no news stream, so the REST endpoint is polled.

Each poll asks for articles published in [window start, market now) — the day's news window (news.py)
limited to what has been published so far — minus an overlap, de-duplicates by article id against what
already landed, and lands the new ones as one NEWS file ``stream/news/{date}/{seq}.parquet`` (atomic).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence

import polars as pl

from spy_pipeline.domain import datasets
from spy_pipeline.domain.schemas import NEWS
from spy_pipeline.io.news import news_frame, news_window
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.polygon.client import PolygonClient

OVERLAP = dt.timedelta(minutes=5)  # late-indexed articles: ask again for a few minutes back


def news_folder(root: DataRoot, day: dt.date) -> str:
    return root.dataset_path(*datasets.get("stream_news").folder(), day.isoformat())


def news_files(root: DataRoot, day: dt.date) -> list[str]:
    return sorted(root.list_files(news_folder(root, day), ".parquet"))


def landed_news(root: DataRoot, day: dt.date) -> pl.DataFrame:
    """Every article polled so far on `day`, one row per id, by publication time."""
    frames = [root.read_partition(path, NEWS) for path in news_files(root, day)]
    if not frames:
        return NEWS.conform(pl.DataFrame(schema=NEWS.polars_schema))
    return NEWS.conform(pl.concat(frames).unique("article_id", keep="first").sort("published_utc", "article_id"))


class NewsPoller:
    """Polls `tickers`' news for `day`; thread-safe, `poll(now)` returns the number of new articles landed."""

    def __init__(self, client: PolygonClient, root: DataRoot, day: dt.date, tickers: Sequence[str]) -> None:
        self.client, self.root, self.day, self.tickers = client, root, day, tuple(tickers)
        self.window_start, self.window_end = news_window(day)
        self._lock = threading.Lock()
        existing = landed_news(root, day)  # a restarted session continues where the last one stopped
        self.seen: set[str] = set(existing["article_id"].to_list())
        self.polled_until = existing["published_utc"].max() if existing.height else self.window_start
        self._seq = len(news_files(root, day))
        self.polls = 0
        self.landed = 0

    def poll(self, now: dt.datetime) -> int:
        with self._lock:
            until = min(now.astimezone(dt.UTC), self.window_end)
            since = max(self.window_start, self.polled_until - OVERLAP)
            if until <= since:
                return 0
            articles = [a for t in self.tickers for a in self.client.news(t, since, until)]
            self.polls += 1
            frame = news_frame(articles, self.tickers)
            fresh = frame.filter(~pl.col("article_id").is_in(list(self.seen)))
            self.polled_until = until
            if fresh.height == 0:
                return 0
            self._seq += 1
            path = f"{news_folder(self.root, self.day)}/{self._seq:06d}.parquet"
            self.root.write_parquet(fresh, path)
            self.seen.update(fresh["article_id"].to_list())
            self.landed += fresh.height
            return fresh.height
