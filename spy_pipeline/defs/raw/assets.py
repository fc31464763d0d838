"""Raw-layer assets. Each one fetches a range of trading days in one run and writes its own files."""

import datetime as dt
import time
from collections.abc import Sequence

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from spy_pipeline.defs.automation.conditions import DAILY_CONDITION
from spy_pipeline.defs.automation.retries import POLYGON_RETRY_POLICY
from spy_pipeline.defs.errors import no_retry_on_permanent_errors
from spy_pipeline.defs.metadata import (
    dataset_metadata,
    markdown_table,
    request_metadata,
    timing,
    written_table_schema,
)
from spy_pipeline.defs.partial_ranges import fetch_day_by_day, finish_range, written_by_day
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.raw import optional_source
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource, settings_with_logging
from spy_pipeline.defs.source_schema import observed_source_schema, source_schema_metadata
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import MINUTE_BARS, DatasetSchema
from spy_pipeline.io import flat_ingest, ingest
from spy_pipeline.io.flatfiles import BAD_ROW_KINDS
from spy_pipeline.io.ingest import PartitionWritten
from spy_pipeline.settings import TICKER_PATTERN

POLYGON_POOL = "polygon_api"
RAW_ASSET_ARGS = {
    "partitions_def": trading_day_partitions,
    "backfill_policy": BackfillPolicy.single_run(),
    "group_name": "raw",
    "pool": POLYGON_POOL,
    "kinds": {"polygon", "parquet"},
    "retry_policy": POLYGON_RETRY_POLICY,
    "automation_condition": DAILY_CONDITION,
}


class EquityBarsConfig(Config):
    tickers: list[str] | None = Field(
        default=None, description="Equity tickers to fetch (default: SPY_PIPELINE_EQUITY_TICKERS)."
    )


def partition_days(context: AssetExecutionContext) -> list:
    return [cal.require_trading_day(key) for key in context.partition_keys]


def written_metadata(
    store: ParquetStoreResource, written: Sequence[PartitionWritten], days: list, declared: DatasetSchema
) -> dict:
    """What a user wants to see on a raw asset's materialization: files, rows, bars' time span, and the columns
    as written (`dagster/column_schema`, none when an unavailable optional source wrote no file)."""
    rows = sum(w.rows for w in written)
    metadata = {
        "partitions": len(days),
        "first_partition": str(days[0]),
        "last_partition": str(days[-1]),
        "rows": rows,
        "files": markdown_table(
            ["file", "rows", "bytes", "first bar (UTC)", "last bar (UTC)", "duplicates dropped", "source"],
            [[store.relative(w.path), w.rows, w.bytes, w.first_bar, w.last_bar, w.duplicates_dropped, w.source]
             for w in written],
        ),
        "written_files": MetadataValue.json(
            [{"path": store.relative(w.path), "rows": w.rows, "bytes": w.bytes, "source": w.source}
             for w in written]
        ),
    }
    bars = [w for w in written if w.first_bar is not None]
    if bars:
        metadata["first_bar"] = MetadataValue.timestamp(min(w.first_bar for w in bars))
        metadata["last_bar"] = MetadataValue.timestamp(max(w.last_bar for w in bars))
    if written:
        metadata["dagster/column_schema"] = written_table_schema(store.data_root, written[-1].path, declared)
    return metadata


def source_metadata(written: Sequence[PartitionWritten], flat_before: dict, flat_after: dict) -> dict:
    """Which source each partition came from, and for flat files the object (key, ETag, size) and its bad rows."""
    sources = sorted({w.source for w in written})
    flat = [w for w in written if w.flat_file is not None]
    metadata: dict = {
        "source": sources[0] if len(sources) == 1 else "mixed",
        "partition_sources": MetadataValue.json({str(w.day): w.source for w in written}),
        "flat_file_gets": flat_after["gets"] - flat_before["gets"],
        "flat_file_heads": flat_after["heads"] - flat_before["heads"],
        "flat_file_bytes_received": flat_after["bytes_received"] - flat_before["bytes_received"],
    }
    if flat:
        objects = {w.flat_file["key"]: w.flat_file for w in flat}  # type: ignore[index]
        bad = sum(int(o[f"bad_{kind}"]) for o in objects.values() for kind in BAD_ROW_KINDS)
        metadata["flat_files"] = MetadataValue.json(list(objects.values()))
        metadata["flat_file_bad_rows"] = bad
        metadata["flat_file_bad_row_share"] = round(bad / max(bad + sum(w.rows for w in flat), 1), 6)
    return metadata


def _minute_bars_result(
    context: AssetExecutionContext, polygon: PolygonResource, store: ParquetStoreResource, tickers: list[str],
    source: str | None = None,
) -> MaterializeResult:
    """Fetch and write the bars of `tickers`; `source` names an optional source (vix) the day can do without."""
    started = time.monotonic()
    days = partition_days(context)
    before, flat_before = polygon.client.stats.snapshot(), polygon.flat_stats()
    root = store.data_root
    optional = settings_with_logging().is_optional_source(source)
    written: list[PartitionWritten] = []
    without_data: dict[dt.date, Exception] = {}  # optional source: unavailable; required: failed days
    with observed_source_schema(polygon.client) as seen:
        for ticker in tickers:
            def fetch(days: Sequence[dt.date], ticker: str = ticker) -> list[PartitionWritten]:
                return flat_ingest.ingest_minute_bars(polygon.client, polygon.flat_files, root, ticker, days)
            fetched, missing = fetch_day_by_day(fetch, days)
            written += fetched
            without_data.update(missing)
    unavailable, failed = ({d: str(e) for d, e in without_data.items()}, {}) if optional else ({}, without_data)
    after = polygon.client.stats.snapshot()
    context.log.info(f"wrote {len(written)} files, {sum(w.rows for w in written)} bars, for {len(days)} day(s)")
    metadata = {
        **written_metadata(store, written, days, MINUTE_BARS),
        **source_metadata(written, flat_before, polygon.flat_stats()),
        **source_schema_metadata(seen),
        **optional_source.unavailable_metadata(source, unavailable, context),
        **request_metadata(before, after),
        "polygon_requests_per_partition": round((after["requests"] - before["requests"]) / len(days), 3),
        **timing(started, sum(w.rows for w in written)),
    }
    return finish_range(context, days, metadata, written_by_day(root, written), failed)


@asset(**RAW_ASSET_ARGS, metadata=dataset_metadata("spy"))
@no_retry_on_permanent_errors
def raw_spy_bars(
    context: AssetExecutionContext,
    config: EquityBarsConfig,
    polygon: PolygonResource,
    store: ParquetStoreResource,
) -> MaterializeResult:
    """One-minute bars of SPY (and any other configured equity), 04:00-20:00 ET, UTC timestamps.

    A range of partitions is fetched with one paginated request per ticker and 40 days, then
    written as one file per ticker and day: raw/spy/2025-01-08.parquet (raw/qqq/... for others).
    """
    tickers = config.tickers or list(settings_with_logging().equity_tickers)
    bad = [t for t in tickers if not TICKER_PATTERN.match(t)]
    if bad:
        raise ValueError(f"not uppercase tickers such as SPY: {bad}")
    return _minute_bars_result(context, polygon, store, tickers)


@asset(**RAW_ASSET_ARGS, metadata=dataset_metadata("vix"))
@no_retry_on_permanent_errors
def raw_vix_bars(
    context: AssetExecutionContext, polygon: PolygonResource, store: ParquetStoreResource
) -> MaterializeResult:
    """I:VIX index minute values, 09:30 to 16:15 ET: open/high/low/close only (volume, vwap and
    transactions are null: an index does not trade). One request per 40 days.

    Optional with SPY_PIPELINE_OPTIONAL_SOURCES=vix: a day the plan does not include (HTTP 403) or without
    values gets no file, its reason in `source_unavailable`, and consolidated's VIX column stays null."""
    return _minute_bars_result(context, polygon, store, [ingest.VIX_TICKER], source="vix")
