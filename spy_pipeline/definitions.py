"""The Dagster code location: every asset, resource and job of spy_pipeline."""

from dagster import AssetSelection, Definitions, define_asset_job

from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.checks import RAW_BAR_CHECKS
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource

daily_backfill_job = define_asset_job(
    name="daily_backfill",
    selection=AssetSelection.all(),
    partitions_def=trading_day_partitions,
    description="Every daily-partitioned asset for a range of trading days, in one run.",
)

defs = Definitions(
    assets=[raw_spy_bars, raw_vix_bars],
    asset_checks=RAW_BAR_CHECKS,
    jobs=[daily_backfill_job],
    resources={"polygon": PolygonResource(), "store": ParquetStoreResource()},
)
