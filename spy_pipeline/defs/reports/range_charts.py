"""range_charts: PNG charts over every materialized day (or a configured range) under reports/charts/range/."""

import time

import polars as pl
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from spy_pipeline.defs.metadata import markdown_table
from spy_pipeline.defs.processed.assets import consolidated
from spy_pipeline.defs.processed.scanner_assets import options_movement
from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.reports.charts import CHART_FOLDER, inline_image
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import CONSOLIDATED, MINUTE_BARS
from spy_pipeline.io import lake, storage

RANGE_FOLDER = (*CHART_FOLDER, "range")
NO_EVENTS = pl.DataFrame(schema={"trigger_hour_et": pl.Int32})


class RangeChartsConfig(Config):
    start: str | None = Field(default=None, description="First day, YYYY-MM-DD (default: the earliest materialized)")
    end: str | None = Field(default=None, description="Last day, YYYY-MM-DD (default: the latest materialized)")


@asset(
    group_name="reports",
    deps=[consolidated, options_movement, raw_spy_bars, raw_vix_bars],
    kinds={"matplotlib", "png"},
    metadata={"path": "reports/charts/range/{chart}.png"},
)
def range_charts(
    context: AssetExecutionContext, config: RangeChartsConfig, store: ParquetStoreResource
) -> MaterializeResult:
    """Charts over every day with a consolidated / options_movement partition (or config's start..end),
    1600x900 PNG: SPY's daily realized volatility (regular-session 1-minute log returns, x sqrt(252 x 390))
    against the near-the-money options' median IV and VIX close / 100; the scanner's events by trigger hour
    (ET). Rewritten under reports/charts/range/ on each materialization."""
    from spy_pipeline.domain.charts import render  # see DRAWING_MODULES
    from spy_pipeline.domain.range_charts import RANGE_CHARTS, day_volatility, range_figures, volatility_frame

    started = time.monotonic()
    root = store.data_root
    start = cal.parse_date(config.start) if config.start else None
    end = cal.parse_date(config.end) if config.end else None

    def materialized(dataset: str) -> list:
        days = store.partition_days(*lake.FOLDERS[dataset])
        return [d for d in days if (start is None or d >= start) and (end is None or d <= end)]

    days, scanned = materialized("consolidated"), materialized("options_movement")
    if not days:
        folder = root.uri(root.dataset_path(*lake.FOLDERS["consolidated"]))
        raise storage.StorageError(
            f"no consolidated days in {folder} between {start or 'the first'} and {end or 'the last'}: "
            "materialize consolidated first"
        )
    daily = volatility_frame([
        day_volatility(
            day,
            lake.read_day(root, "spy", day, MINUTE_BARS),
            lake.read_day(root, "vix", day, MINUTE_BARS),
            lake.read_day(root, "consolidated", day, CONSOLIDATED),
        )
        for day in days
    ])
    frames = [lake.read_day(root, "options_movement", d) for d in scanned]
    events = pl.concat(frames) if frames else NO_EVENTS
    metadata: dict = {
        "first_day": str(days[0]),
        "last_day": str(days[-1]),
        "days": len(days),
        "scanned_days": len(scanned),
        "events": events.height,
        "volatility_pct_per_year": markdown_table(
            ["day", "realized", "implied (near the money)", "VIX / 100"],
            [[str(row[0]), *(_pct(value) for value in row[1:])] for row in daily.rows()],
        ),
    }
    files = []
    for name, figure in range_figures(daily, events, scanned).items():
        path = f"{store.dataset_path(*RANGE_FOLDER)}/{name}.png"
        picture, thumbnail = render(figure)
        size = root.write_bytes(picture, path)
        files.append({"path": store.relative(path), "bytes": size})
        metadata[f"{name}_path"] = MetadataValue.path(store.uri(path))
        metadata[name] = inline_image(f"{RANGE_CHARTS[name]}, {days[0]} to {days[-1]}", thumbnail)
    metadata["written_files"] = MetadataValue.json(files)
    context.log.info(
        f"{len(files)} range charts over {len(days)} days under {store.uri(store.dataset_path(*RANGE_FOLDER))} "
        f"in {time.monotonic() - started:.1f} s"
    )
    return MaterializeResult(metadata=metadata)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f}"
