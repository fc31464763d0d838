"""The Dagster code location: every asset, check, resource and job of spy_pipeline."""

from dagster import AssetSelection, Definitions, define_asset_job

from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.checks import RAW_CHECKS
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.raw.reference_assets import corporate_actions, raw_news
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource

DAILY_ASSETS = [raw_spy_bars, raw_vix_bars, options_contracts, raw_options_bars, raw_news]
REFERENCE_ASSETS = [corporate_actions]

daily_backfill_job = define_asset_job(
    name="daily_backfill",
    selection=AssetSelection.assets(*DAILY_ASSETS),
    description="Every trading-day-partitioned asset for a range of trading days, in one run.",
)

reference_data_job = define_asset_job(
    name="reference_data",
    selection=AssetSelection.assets(*REFERENCE_ASSETS),
    description="Reference data that is not partitioned by day: dividends and splits.",
)

defs = Definitions(
    assets=[*DAILY_ASSETS, *REFERENCE_ASSETS],
    asset_checks=RAW_CHECKS,
    jobs=[daily_backfill_job, reference_data_job],
    resources={"polygon": PolygonResource(), "store": ParquetStoreResource()},
)
