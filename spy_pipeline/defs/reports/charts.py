"""daily_charts: the PNG charts of each trading day under reports/charts/{date}/, shown on the asset's page."""

import base64

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from spy_pipeline.defs.automation.conditions import DAILY_CONDITION
from spy_pipeline.defs.partial_ranges import finish_range
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.processed.assets import consolidated
from spy_pipeline.defs.processed.scanner_assets import options_movement
from spy_pipeline.defs.raw.assets import partition_days
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import charts
from spy_pipeline.domain.schemas import CONSOLIDATED
from spy_pipeline.io import lake

CHART_FOLDER = ("reports", "charts")
MAX_INLINE_BYTES = 150_000  # a Markdown data-URI image in the run's event log: keep it a thumbnail


def chart_path(store: ParquetStoreResource, day, name: str) -> str:
    return f"{store.dataset_path(*CHART_FOLDER)}/{day.isoformat()}/{name}.png"


def inline_image(title: str, figure) -> MetadataValue:
    """A Markdown image with the chart as a base64 data URI, downscaled until it fits MAX_INLINE_BYTES."""
    for dpi in (charts.THUMBNAIL_DPI, 30, 20):
        data = charts.png(figure, dpi=dpi)
        if len(data) <= MAX_INLINE_BYTES:
            break
    return MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})")


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
    days = partition_days(context)
    root = store.data_root
    metadata: dict = {"partitions": len(days)}
    files, by_day = [], {}
    for day in days:
        by_day[day] = {"partitions": 1}
        frame = lake.read_day(root, "consolidated", day, CONSOLIDATED)
        events = lake.read_day(root, "options_movement", day)
        for name, figure in charts.daily_figures(frame, events, day).items():
            title = charts.DAILY_CHARTS[name][0]
            path = chart_path(store, day, name)
            size = root.write_bytes(charts.png(figure), path)
            files.append({"path": store.relative(path), "bytes": size})
            # each day's charts on its own materialization's page, whether run alone or in a range
            by_day[day][f"{name}_path"] = MetadataValue.path(store.uri(path))
            by_day[day][name] = inline_image(f"{title} {day}", figure)
        folder = f"{store.dataset_path(*CHART_FOLDER)}/{day.isoformat()}"
        context.log.info(f"{day}: {len(charts.DAILY_CHARTS)} charts under {store.uri(folder)}")
    metadata["written_files"] = MetadataValue.json(files)
    return finish_range(context, days, metadata, by_day)
