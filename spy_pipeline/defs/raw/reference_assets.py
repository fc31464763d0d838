"""Raw news (daily) and corporate actions (not partitioned)."""

import time

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, asset

from spy_pipeline.defs.automation.conditions import REFERENCE_CONDITION
from spy_pipeline.defs.automation.retries import POLYGON_RETRY_POLICY
from spy_pipeline.defs.errors import no_retry_on_permanent_errors
from spy_pipeline.defs.metadata import (
    dataset_metadata,
    markdown_table,
    request_metadata,
    table_schema,
    timing,
)
from spy_pipeline.defs.partial_ranges import finish_range, written_by_day
from spy_pipeline.defs.raw import optional_source
from spy_pipeline.defs.raw.assets import POLYGON_POOL, RAW_ASSET_ARGS, partition_days, written_metadata
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource, settings_with_logging
from spy_pipeline.defs.source_schema import observed_source_schema, source_schema_metadata
from spy_pipeline.domain import datasets
from spy_pipeline.domain.schemas import DIVIDENDS, NEWS, SPLITS
from spy_pipeline.io.corporate_actions import dividends_frame, splits_frame
from spy_pipeline.io.ingest import PartitionWritten
from spy_pipeline.io.news import news_frame, news_window
from spy_pipeline.polygon.errors import PolygonEntitlementError


@asset(**RAW_ASSET_ARGS, metadata=dataset_metadata("news"))
@no_retry_on_permanent_errors
def raw_news(
    context: AssetExecutionContext, polygon: PolygonResource, store: ParquetStoreResource
) -> MaterializeResult:
    """News mentioning the configured tickers, with Polygon's sentiment insight as a number.

    A trading day's file holds what was published after the previous trading day's after-hours
    ended, up to the end of its own (weekend news lands on Monday). One paginated query per
    ticker covers a whole range of days.
    """
    started = time.monotonic()
    settings = settings_with_logging()
    tickers = list(settings.equity_tickers)
    days = partition_days(context)
    start, end = news_window(days[0])[0], news_window(days[-1])[1]
    before = polygon.client.stats.snapshot()
    unavailable: dict = {}
    with observed_source_schema(polygon.client) as seen:
        try:
            articles = [article for ticker in tickers for article in polygon.client.news(ticker, start, end)]
        except PolygonEntitlementError as exc:
            if not settings.is_optional_source("news"):
                raise
            articles, unavailable = [], dict.fromkeys(days, str(exc))
        news = news_frame(articles, tickers)  # inside: a field it cannot parse is named as drift
    written = []
    for day in days if not unavailable else []:
        window_start, window_end = news_window(day)
        frame = news.filter(pl.col("published_utc").is_between(window_start, window_end, closed="left"))
        path = store.data_root.file_of(datasets.get("news"), day)
        written.append(PartitionWritten(
            dataset="raw/news", day=day, path=path, rows=frame.height, bytes=store.write(frame, path),
            first_bar=frame["published_utc"].min(), last_bar=frame["published_utc"].max(),
        ))
    with_sentiment = news.filter(pl.col("sentiment").is_not_null())
    schema_metadata = source_schema_metadata(seen)
    metadata = {
        **written_metadata(store, written, days, NEWS),
        "articles": news.height,
        "articles_with_sentiment": with_sentiment.height,
        "mean_sentiment": round(float(with_sentiment["sentiment"].mean() or 0.0), 3),
        **schema_metadata,
        **optional_source.unavailable_metadata("news", unavailable, context),
        **request_metadata(before, polygon.client.stats.snapshot()),
        **timing(started, news.height),
    }
    by_day = written_by_day(store.data_root, written)
    for entry in by_day.values():
        entry["articles"] = entry["rows"]
    return finish_range(context, days, metadata, by_day)


@asset(group_name="raw", pool=POLYGON_POOL, kinds={"polygon", "parquet"}, retry_policy=POLYGON_RETRY_POLICY,
       automation_condition=REFERENCE_CONDITION,
       metadata=dataset_metadata("dividends", "splits"))
@no_retry_on_permanent_errors
def corporate_actions(
    context: AssetExecutionContext, polygon: PolygonResource, store: ParquetStoreResource
) -> MaterializeResult:
    """Dividends and splits of the configured tickers (all history Polygon has), rewritten whole.
    Option pricing takes its dividend yield from here."""
    tickers = list(settings_with_logging().equity_tickers)
    before = polygon.client.stats.snapshot()
    with observed_source_schema(polygon.client) as seen:
        dividends = dividends_frame([d for t in tickers for d in polygon.client.dividends(t)])
        splits = splits_frame([s for t in tickers for s in polygon.client.splits(t)])
    schema_metadata = source_schema_metadata(seen)
    sizes = {name: store.write(frame, store.data_root.file_of(datasets.get(name)))
             for name, frame in (("dividends", dividends), ("splits", splits))}
    latest = dividends.sort("ex_dividend_date").tail(8)
    return MaterializeResult(metadata={
        "dividends": dividends.height,
        "splits": splits.height,
        "bytes": sum(sizes.values()),
        "latest_dividends": markdown_table(["ticker", "ex-dividend date", "cash amount"], latest.select(
            "ticker", "ex_dividend_date", "cash_amount").rows()),
        "dividends_schema": table_schema(DIVIDENDS),
        "splits_schema": table_schema(SPLITS),
        **schema_metadata,
        **request_metadata(before, polygon.client.stats.snapshot()),
    })
