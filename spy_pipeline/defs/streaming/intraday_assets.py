"""intraday_consolidated: today's consolidated dataset from what the streaming session has landed so far.

The same consolidation as the daily `consolidated` asset (spy_pipeline.domain.consolidate), fed by the session's
micro-batches instead of the raw partitions; requested by intraday_sensor as new batches land.
"""


import time

from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset, define_asset_job
from pydantic import Field

from spy_pipeline.defs.metadata import dataset_metadata, timing
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.consolidate import consolidate_day
from spy_pipeline.streaming.intraday import intraday_inputs, landed_sources

INTRADAY_JOB = "intraday_refresh"


class IntradayConfig(Config):
    date: str | None = Field(default=None, description="Trading day YYYY-MM-DD (default: today in New York)")
    risk_free_rate: float = Field(default=0.045, description="Continuously compounded risk-free rate, per year")


@asset(
    group_name="streaming",
    kinds={"polars", "parquet"},
    metadata=dataset_metadata("intraday_consolidated"),
)
def intraday_consolidated(
    context: AssetExecutionContext, config: IntradayConfig, store: ParquetStoreResource
) -> MaterializeResult:
    """Option minute bars of today's streaming session joined to SPY's minutes, with indicators, VIX, news,
    IV and greeks: the daily consolidation on the data landed so far (replaced at every refresh)."""
    started = time.monotonic()
    day = cal.require_trading_day(cal.parse_date(config.date) if config.date else cal.new_york_date())
    root = store.data_root
    inputs = intraday_inputs(root, day, config.risk_free_rate)
    frame = consolidate_day(inputs)
    written = store.write_day(frame, day, "intraday_consolidated")
    last = frame["timestamp"].max() if frame.height else None
    context.log.info(f"{day}: {frame.height:,} rows up to {last}")
    return MaterializeResult(metadata={
        "day": day.isoformat(),
        "rows": frame.height,
        "contracts": frame["ticker"].n_unique() if frame.height else 0,
        "last_minute": str(last),
        "micro_batches": MetadataValue.json(landed_sources(root, day)),
        "written_files": MetadataValue.json([written]),
        "dagster/row_count": frame.height,
        **timing(started, frame.height),
    })


intraday_refresh_job = define_asset_job(
    name=INTRADAY_JOB, selection=[intraday_consolidated],
    description="Refresh today's intraday consolidated dataset from the streaming session's micro-batches.",
)
