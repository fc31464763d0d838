"""The Dagster code location: every asset, check, resource and job of spy_pipeline."""

from dagster import AssetSelection, Definitions, define_asset_job, multiprocess_executor

from spy_pipeline.defs.alerts import ALERT_ASSETS, ALERT_SENSORS, NotifierResource
from spy_pipeline.defs.automation import SENSORS
from spy_pipeline.defs.automation.held_back import held_back_days_sensor
from spy_pipeline.defs.operations import OPERATIONS_ASSETS, OPERATIONS_JOBS, OPERATIONS_SCHEDULES
from spy_pipeline.defs.processed.assets import consolidated
from spy_pipeline.defs.processed.checks import PROCESSED_CHECKS
from spy_pipeline.defs.processed.ml_assets import features, training_dataset
from spy_pipeline.defs.processed.scanner_assets import options_movement, options_movement_summary
from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.checks import RAW_CHECKS
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.raw.reference_assets import corporate_actions, raw_news
from spy_pipeline.defs.reports import REPORT_CHART_ASSETS, range_charts
from spy_pipeline.defs.reports.charts import DRAWING_MODULES
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource
from spy_pipeline.defs.streaming import STREAMING_ASSETS, STREAMING_JOBS, STREAMING_SCHEDULES, STREAMING_SENSORS

RAW_DAILY_ASSETS = [raw_spy_bars, raw_vix_bars, options_contracts, raw_options_bars, raw_news]
PROCESSED_DAILY_ASSETS = [consolidated, training_dataset, features, options_movement]
DAILY_DATA_ASSETS = [*RAW_DAILY_ASSETS, *PROCESSED_DAILY_ASSETS]
DAILY_ASSETS = [*DAILY_DATA_ASSETS, *REPORT_CHART_ASSETS]
REFERENCE_ASSETS = [corporate_actions]
REPORT_ASSETS = [options_movement_summary, range_charts]

daily_backfill_job = define_asset_job(
    name="daily_backfill",
    selection=AssetSelection.assets(*DAILY_DATA_ASSETS),
    description="Every trading-day-partitioned data asset, raw to processed, for a range of days in one run "
    "(launched by `spy-pipeline run` or by hand; automation_condition_sensor requests the assets themselves). "
    "The charts are a run of their own (daily_charts_backfill): a slow or failing chart never holds up the data.",
)
daily_charts_job = define_asset_job(
    name="daily_charts_backfill",
    selection=AssetSelection.assets(*REPORT_CHART_ASSETS),
    description="The daily charts for a range of days in one run, drawn by several processes side by side "
    "(SPY_PIPELINE_CHART_PROCESSES); `spy-pipeline run` launches it after daily_backfill.",
)
reference_data_job = define_asset_job(
    name="reference_data",
    selection=AssetSelection.assets(*REFERENCE_ASSETS),
    description="Reference data that is not partitioned by day: dividends and splits.",
)
reports_job = define_asset_job(
    name="reports",
    selection=AssetSelection.assets(*REPORT_ASSETS),
    description="Summaries over a range of days: the scanner's figures and the range charts.",
)

# Each step of a launched run is a process; forked from a server that has imported the code location once, it
# starts in a fraction of the seconds a fresh interpreter takes to import Dagster, polars and the pipeline.
# Every step process also opens the Dagster instance: its storage modules (SQLAlchemy, Alembic, the SQLite and
# PostgreSQL storages) are imported by the server too, or each step would import them again (~0.9 s a step).
# The forkserver skips a module that does not import: test_smoke_definitions imports each.
STEP_PRELOAD_MODULES = [
    "spy_pipeline.definitions",
    "dagster._core.instance.factory",
    "dagster._core.secrets.env_file",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
    "dagster._core.storage.local_compute_log_manager",
    "dagster_postgres",  # the production instance (spy_pipeline/deploy/postgres)
    "upath",
    *DRAWING_MODULES,  # matplotlib: the chart steps' own imports, which the code location leaves out
]
STEP_EXECUTOR = multiprocess_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": STEP_PRELOAD_MODULES}}}, name="forkserver_multiprocess"
)

defs = Definitions(
    executor=STEP_EXECUTOR,
    assets=[*DAILY_ASSETS, *REFERENCE_ASSETS, *REPORT_ASSETS, *OPERATIONS_ASSETS, *STREAMING_ASSETS, *ALERT_ASSETS],
    asset_checks=[*RAW_CHECKS, *PROCESSED_CHECKS],
    jobs=[daily_backfill_job, daily_charts_job, reference_data_job, reports_job, *OPERATIONS_JOBS, *STREAMING_JOBS],
    schedules=[*OPERATIONS_SCHEDULES, *STREAMING_SCHEDULES],
    sensors=[
        *SENSORS, held_back_days_sensor(daily_backfill_job, DAILY_DATA_ASSETS), *STREAMING_SENSORS, *ALERT_SENSORS,
    ],
    resources={"polygon": PolygonResource(), "store": ParquetStoreResource(), "notifier": NotifierResource()},
)
