"""Raw-layer assets. Each one fetches a range of trading days in one run and writes its own files."""


from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from spy_pipeline import ingest
from spy_pipeline import trading_calendar as cal
from spy_pipeline.defs.metadata import markdown_table, request_metadata, table_schema
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource, settings_with_logging
from spy_pipeline.schemas import EQUITY_BARS
from spy_pipeline.settings import TICKER_PATTERN

POLYGON_POOL = "polygon_api"


class EquityBarsConfig(Config):
    tickers: list[str] | None = Field(
        default=None, description="Equity tickers to fetch (default: SPY_PIPELINE_EQUITY_TICKERS)."
    )


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="raw",
    pool=POLYGON_POOL,
    kinds={"polygon", "parquet"},
    metadata={"dagster/column_schema": table_schema(EQUITY_BARS), "path": "raw/{ticker}/{date}.parquet"},
)
def raw_spy_bars(
    context: AssetExecutionContext,
    config: EquityBarsConfig,
    polygon: PolygonResource,
    store: ParquetStoreResource,
) -> MaterializeResult:
    """One-minute bars of SPY (and any other configured equity), 04:00-20:00 ET, UTC timestamps.

    A range of partitions is fetched with one paginated request per ticker and 40 days, then
    written as one file per ticker and day: raw/spy/2025-01-08.parquet.
    """
    tickers = config.tickers or list(settings_with_logging().equity_tickers)
    bad = [t for t in tickers if not TICKER_PATTERN.fullmatch(t)]
    if bad:
        raise ValueError(f"not uppercase tickers such as SPY: {bad}")
    days = [cal.require_trading_day(key) for key in context.partition_keys]
    before = polygon.client.stats.snapshot()
    written = ingest.ingest_equity_bars(polygon.client, store.root, tickers, days)
    rows = sum(w.rows for w in written)
    context.log.info(f"wrote {len(written)} files, {rows} bars, for {len(days)} trading day(s)")
    metadata = {
        "partitions": len(days),
        "first_partition": str(days[0]),
        "last_partition": str(days[-1]),
        "rows": rows,
        "files": markdown_table(
            ["file", "rows", "bytes", "first bar (UTC)", "last bar (UTC)", "duplicates dropped"],
            [[store.relative(w.path), w.rows, w.bytes, w.first_bar, w.last_bar, w.duplicates_dropped]
             for w in written],
        ),
        "written_files": MetadataValue.json(
            [{"path": store.relative(w.path), "rows": w.rows, "bytes": w.bytes} for w in written]
        ),
        "first_bar": MetadataValue.timestamp(min(w.first_bar for w in written if w.first_bar)),
        "last_bar": MetadataValue.timestamp(max(w.last_bar for w in written if w.last_bar)),
        "dagster/column_schema": table_schema(EQUITY_BARS),
        **request_metadata(before, polygon.client.stats.snapshot()),
    }
    if len(days) == 1:
        metadata["dagster/row_count"] = rows
        metadata["path"] = MetadataValue.path(str(written[0].path))
    return MaterializeResult(metadata=metadata)
