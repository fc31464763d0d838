"""daily_charts: the PNG charts of each trading day under reports/charts/{date}/, shown on the asset's page."""

import base64
import time

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from spy_pipeline.defs.automation.conditions import DAILY_CONDITION
from spy_pipeline.defs.partial_ranges import finish_range
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.processed.assets import consolidated
from spy_pipeline.defs.processed.scanner_assets import options_movement
from spy_pipeline.defs.raw.assets import partition_days
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain.schemas import CONSOLIDATED
from spy_pipeline.io import lake
from spy_pipeline.settings import load_settings

CHART_FOLDER = ("reports", "charts")
# Imported by the chart steps only: matplotlib takes ~0.75 s to import, which every process loading the code
# location (code servers, run workers, the CLI) would pay otherwise.
DRAWING_MODULES = ("spy_pipeline.domain.charts", "spy_pipeline.domain.chart_rendering",
                   "spy_pipeline.domain.range_charts")


def chart_path(store: ParquetStoreResource, day, name: str) -> str:
    return f"{store.dataset_path(*CHART_FOLDER)}/{day.isoformat()}/{name}.png"


def inline_image(title: str, thumbnail: bytes) -> MetadataValue:
    """A Markdown image with a chart's thumbnail (`charts.thumbnail`) as a base64 data URI."""
    return MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(thumbnail).decode('ascii')})")


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    automation_condition=DAILY_CONDITION,
    group_name="reports",
    kinds={"matplotlib", "png"},
    deps=[consolidated, options_movement],
    metadata={"path": "reports/charts/{date}/{chart}.png"},
)
def daily_charts(context: AssetExecutionContext, store: ParquetStoreResource) -> MaterializeResult:
    """Charts of each trading day, 1600x900 PNG, times in ET: SPY with Bollinger bands, RSI and MACD; SPY
    and VIX; the implied-volatility smile by strike per expiration (the day's median IV per strike, calls
    and puts); delta and gamma by strike (day's medians); the options scanner's events on a timeline."""
    from spy_pipeline.domain import chart_rendering, charts  # see DRAWING_MODULES

    days = partition_days(context)
    root = store.data_root
    metadata: dict = {"partitions": len(days)}
    files, by_day = [], {}
    processes = chart_rendering.process_count(load_settings().chart_processes, len(days))
    inputs = ((lake.read_day(root, "consolidated", day, CONSOLIDATED), lake.read_day(root, "options_movement", day),
               day) for day in days)
    started = time.monotonic()
    for day, rendered in chart_rendering.render_days(inputs, processes):
        by_day[day] = {"partitions": 1}
        for name, (picture, thumbnail) in rendered.items():
            path = chart_path(store, day, name)
            size = root.write_bytes(picture, path)
            files.append({"path": store.relative(path), "bytes": size})
            # each day's charts on its own materialization's page, whether run alone or in a range
            by_day[day][f"{name}_path"] = MetadataValue.path(store.uri(path))
            by_day[day][name] = inline_image(f"{charts.DAILY_CHARTS[name][0]} {day}", thumbnail)
        folder = f"{store.dataset_path(*CHART_FOLDER)}/{day.isoformat()}"
        context.log.info(f"{day}: {len(rendered)} charts under {store.uri(folder)}")
    seconds = time.monotonic() - started
    metadata["seconds_per_chart"] = round(seconds / max(len(files), 1), 3)
    context.log.info(f"{len(files)} charts of {len(days)} days in {seconds:.1f} s with {processes} process"
                     f"{'es' if processes > 1 else ''} ({metadata['seconds_per_chart']} s a chart)")
    metadata["written_files"] = MetadataValue.json(files)
    return finish_range(context, days, metadata, by_day)
