"""PolygonClient: the official RESTClient with our transport, returning polars frames."""

from __future__ import annotations

import datetime as dt

import polars as pl
import urllib3
from polygon import RESTClient

from spy_pipeline.polygon.rate_limit import TokenBucket
from spy_pipeline.polygon.transport import RequestStats, RetryingTransport, RetryPolicy

AGGS_PAGE_LIMIT = 50_000
RAW_BAR_SCHEMA = {
    "t": pl.Int64, "o": pl.Float64, "h": pl.Float64, "l": pl.Float64, "c": pl.Float64,
    "v": pl.Float64, "vw": pl.Float64, "n": pl.Int64,
}


class PolygonClient:
    def __init__(
        self,
        api_key: str,
        base_url: str,
        requests_per_minute: int | None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        retry_policy: RetryPolicy | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        self.base_url = base_url
        self.stats = RequestStats()
        self._rest = RESTClient(api_key=api_key, base=base_url, retries=0, pagination=True)
        pool = self._rest.client
        pool.connection_pool_kw["maxsize"] = 16  # concurrent fetches share keep-alive connections
        self.transport = RetryingTransport(
            pool=pool,
            bucket=bucket or TokenBucket(requests_per_minute),
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            policy=retry_policy or RetryPolicy(),
            stats=self.stats,
        )
        self._rest.client = self.transport

    @property
    def rest(self) -> RESTClient:
        """The official client, for endpoints without a helper here yet."""
        return self._rest

    def minute_bars(self, ticker: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        """All one-minute bars (extended hours included) from start to end, both whole ET days.

        Columns are Polygon's: t (ms, bar start), o, h, l, c, v, vw, n; sorted by t.
        """
        rows = [
            (a.timestamp, a.open, a.high, a.low, a.close, a.volume, a.vwap, a.transactions)
            for a in self._rest.list_aggs(
                ticker, 1, "minute", start.isoformat(), end.isoformat(),
                adjusted=True, sort="asc", limit=AGGS_PAGE_LIMIT,
            )
        ]
        return pl.DataFrame(rows, schema=RAW_BAR_SCHEMA, orient="row").sort("t")

    def close(self) -> None:
        self.transport.clear()
