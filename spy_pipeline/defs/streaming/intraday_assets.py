"""intraday_consolidated: a trading day's consolidated dataset from what its streaming session has landed so far.

The same consolidation as the daily `consolidated` asset (spy_pipeline.domain.consolidate), fed by the session's
micro-batches instead of the raw partitions; requested by intraday_sensor as new batches land.

Partitioned by NYSE trading day like the daily assets, but the day being streamed must already be a partition:
`trading_day_partitions` only has a day from the following midnight, so these partitions run one ahead
(end_offset=1). With exclusions Dagster then also shows the next trading day on a weekend or holiday
(dagster#33551); harmless here, as nothing lands for a day before its session.
"""


import time

from dagster import (
    AssetExecutionContext,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)
from pydantic import Field

from spy_pipeline.defs.metadata import dataset_metadata, timing
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.consolidate import consolidate_day
from spy_pipeline.domain.rates import MAX_RISK_FREE_RATE, MIN_RISK_FREE_RATE
from spy_pipeline.settings import load_settings
from spy_pipeline.streaming.intraday import intraday_inputs, landed_sources

INTRADAY_JOB = "intraday_refresh"

intraday_partitions = DailyPartitionsDefinition(
    start_date=cal.FIRST_TRADING_DAY.isoformat(),
    timezone=str(cal.NEW_YORK),
    exclusions=list(trading_day_partitions.exclusions),
    end_offset=1,  # today is a partition during its session
)


class IntradayConfig(Config):
    risk_free_rate: float | None = Field(
        default=None, ge=MIN_RISK_FREE_RATE, le=MAX_RISK_FREE_RATE,
        description="Continuously compounded risk-free rate per year (default: SPY_PIPELINE_RISK_FREE_RATE)",
    )


@asset(
    partitions_def=intraday_partitions,
    group_name="streaming",
    kinds={"polars", "parquet"},
    metadata=dataset_metadata("intraday_consolidated"),
)
def intraday_consolidated(
    context: AssetExecutionContext, config: IntradayConfig, store: ParquetStoreResource
) -> MaterializeResult:
    """Option minute bars of the day's streaming session joined to SPY's minutes, with indicators, VIX, news,
    IV and greeks: the daily consolidation on the data landed so far (replaced at every refresh)."""
    started = time.monotonic()
    day = cal.require_trading_day(cal.parse_date(context.partition_key))
    root = store.data_root
    rate = config.risk_free_rate if config.risk_free_rate is not None else load_settings().risk_free_rate
    inputs = intraday_inputs(root, day, rate)
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
    description="Refresh a day's intraday consolidated dataset (partition: the streamed day) from its session's "
    "micro-batches.",
)
