"""PolygonClient: the official RESTClient with our transport, returning polars frames."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import polars as pl
import urllib3
from polygon import RESTClient

from spy_pipeline.logs import get_logger
from spy_pipeline.polygon.errors import PolygonPayloadError
from spy_pipeline.polygon.rate_limit import TokenBucket
from spy_pipeline.polygon.source_schema import SchemaRecorder
from spy_pipeline.polygon.transport import RequestStats, RetryingTransport, RetryPolicy

log = get_logger(__name__)
T = TypeVar("T")
AGGS_PAGE_LIMIT = 50_000
MAX_LISTINGS = 3  # a paginated list is fetched until two answers agree, at most this many times
CONTRACTS_PAGE_LIMIT = 1_000
NEWS_PAGE_LIMIT = 1_000
REFERENCE_PAGE_LIMIT = 1_000
RAW_CONTRACT_SCHEMA = {
    "ticker": pl.String, "underlying_ticker": pl.String, "contract_type": pl.String, "strike_price": pl.Float64,
    "expiration_date": pl.String, "exercise_style": pl.String, "shares_per_contract": pl.Float64,
}
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
        self.schemas = SchemaRecorder()  # `with client.schemas.capture() as seen:` notes the fields Polygon sent
        self._rest = RESTClient(api_key=api_key, base=base_url, retries=0, pagination=True)
        pool = self._rest.client
        pool.connection_pool_kw["maxsize"] = 16  # concurrent fetches share keep-alive connections
        self.transport = RetryingTransport(
            pool=pool,
            bucket=bucket or TokenBucket(requests_per_minute),
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            policy=retry_policy or RetryPolicy(),
            stats=self.stats,
            schemas=self.schemas,
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
        rows = self._verified_list(f"{ticker} minute bars {start}..{end}", lambda: [
            (a.timestamp, a.open, a.high, a.low, a.close, a.volume, a.vwap, a.transactions)
            for a in self._rest.list_aggs(
                ticker, 1, "minute", start.isoformat(), end.isoformat(),
                adjusted=True, sort="asc", limit=AGGS_PAGE_LIMIT,
            )
        ])
        return pl.DataFrame(rows, schema=RAW_BAR_SCHEMA, orient="row").sort("t")

    def options_contracts(
        self,
        underlying: str,
        as_of: dt.date,
        *,
        expiration_gte: dt.date | None = None,
        expiration_lte: dt.date | None = None,
        strike_gte: float | None = None,
        strike_lte: float | None = None,
        contract_type: str | None = None,
    ) -> pl.DataFrame:
        """The chain as it stood on `as_of` (Polygon's as_of: no `expired` flag needed), all pages."""
        rows = self._verified_list(f"{underlying} contracts as of {as_of}", lambda: [
            (c.ticker, c.underlying_ticker, c.contract_type, c.strike_price, c.expiration_date,
             c.exercise_style, c.shares_per_contract)
            for c in self._rest.list_options_contracts(
                underlying_ticker=underlying, as_of=as_of.isoformat(), contract_type=contract_type,
                expiration_date_gte=_iso(expiration_gte), expiration_date_lte=_iso(expiration_lte),
                strike_price_gte=strike_gte, strike_price_lte=strike_lte,
                limit=CONTRACTS_PAGE_LIMIT, sort="ticker", order="asc",
            )
        ])
        return pl.DataFrame(rows, schema=RAW_CONTRACT_SCHEMA, orient="row").unique("ticker").sort("ticker")

    def news(self, ticker: str, published_gte: dt.datetime, published_lt: dt.datetime) -> list[dict[str, Any]]:
        """Articles mentioning `ticker` published in [published_gte, published_lt), as Polygon's dicts."""
        return self._verified_list(f"{ticker} news", lambda: [
            _as_dict(article) for article in self._rest.list_ticker_news(
                ticker=ticker, published_utc_gte=_rfc3339(published_gte), published_utc_lt=_rfc3339(published_lt),
                limit=NEWS_PAGE_LIMIT, sort="published_utc", order="asc",
            )
        ])

    def _verified_list(self, what: str, fetch: Callable[[], list[T]]) -> list[T]:
        """`fetch()`, and when its answer came in several pages, again until two answers agree.

        Polygon's pages carry no total, so a `next_url` that skips a page would lose its items without a
        trace; two listings that agree are taken as complete (a one-page answer has no next_url to skip).
        """
        pages_before = self.transport.pages_in_thread
        answer = fetch()
        if self.transport.pages_in_thread - pages_before <= 1:
            return answer
        for _ in range(MAX_LISTINGS - 1):
            again = fetch()
            if _same_items(again, answer):
                return answer
            log.warning("polygon_listing_changed", what=what, items=len(answer), items_again=len(again))
            answer = again
        raise PolygonPayloadError(
            f"{what}: {MAX_LISTINGS} paginated listings disagreed ({len(answer)} items in the last): "
            "pages are being lost or repeated; refusing to write a partial list"
        )

    def dividends(self, ticker: str) -> list[dict[str, Any]]:
        return [_as_dict(d) for d in self._rest.list_dividends(ticker=ticker, limit=REFERENCE_PAGE_LIMIT)]

    def splits(self, ticker: str) -> list[dict[str, Any]]:
        return [_as_dict(s) for s in self._rest.list_splits(ticker=ticker, limit=REFERENCE_PAGE_LIMIT)]

    def close(self) -> None:
        self.transport.clear()


def _same_items(first: list[Any], second: list[Any]) -> bool:
    """The same items whatever their order and repetition (a repeated page adds no new item)."""
    return {repr(item) for item in first} == {repr(item) for item in second}


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_dict(model: object) -> dict[str, Any]:
    """The client's model objects are dataclasses: back to plain (nested) dicts."""
    return dataclasses.asdict(model)  # type: ignore[call-overload]
