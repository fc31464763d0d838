"""The options movement scanner: daily events, and a summary over a range of days."""

import csv
import io

import polars as pl
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from spy_pipeline.defs.metadata import dataset_metadata, markdown_table
from spy_pipeline.defs.processed.assets import PROCESSED_ASSET_ARGS
from spy_pipeline.defs.raw.assets import partition_days
from spy_pipeline.defs.raw.options_assets import raw_options_bars
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.scanner import NEW_YORK, movement_events, movement_summary
from spy_pipeline.io import lake, storage
from spy_pipeline.settings import load_settings


class ScannerConfig(Config):
    window_minutes: int = Field(default=120, ge=1, description="Reference: the minimum over this many minutes")
    trigger_pct: float = Field(default=20.0, gt=0, description="An event starts this % above the reference")
    sustain_pct: float = Field(default=10.0, gt=0, description="and lasts while the price stays this % above it")
    min_price: float | None = Field(
        default=None, ge=0, description="Scan only bars priced at least this, USD "
        "(default: SPY_PIPELINE_SCANNER_MIN_PRICE)"
    )
    min_volume: float | None = Field(
        default=None, ge=0, description="Scan only bars with at least this volume "
        "(default: SPY_PIPELINE_SCANNER_MIN_VOLUME)"
    )

    def floors(self) -> tuple[float, float]:
        """(min_price, min_volume): the config's, else the settings' (the live scanner uses the same)."""
        settings = load_settings()
        return (settings.scanner_min_price if self.min_price is None else self.min_price,
                settings.scanner_min_volume if self.min_volume is None else self.min_volume)


class SummaryConfig(Config):
    trigger_pct: float = Field(default=20.0, gt=0, description="The trigger options_movement used")
    start: str | None = Field(default=None, description="First day, YYYY-MM-DD (default: the earliest scanned)")
    end: str | None = Field(default=None, description="Last day, YYYY-MM-DD (default: the latest scanned)")


@asset(**PROCESSED_ASSET_ARGS, deps=[raw_options_bars], metadata=dataset_metadata("options_movement"))
def options_movement(
    context: AssetExecutionContext, config: ScannerConfig, store: ParquetStoreResource
) -> MaterializeResult:
    """Per contract-day: events where an option's price rose >= 20% above its 120-minute minimum and
    stayed >= 10% above it (start, end, duration, peak gain, trigger hour ET); bars under the price and volume
    floors (SPY_PIPELINE_SCANNER_MIN_PRICE / _MIN_VOLUME) are left out."""
    days = partition_days(context)
    min_price, min_volume = config.floors()
    files, events = [], 0
    for day in days:
        bars = lake.read_day(store.data_root, "options", day)
        frame = movement_events(bars, config.window_minutes, config.trigger_pct, config.sustain_pct,
                                min_price=min_price, min_volume=min_volume)
        files.append(store.write_day(frame, day, "options_movement"))
        events += frame.height
    return MaterializeResult(
        metadata={
            "partitions": len(days),
            "events": events,
            "min_price": min_price,
            "min_volume": min_volume,
            "written_files": MetadataValue.json(files),
        }
    )


@asset(
    group_name="reports",
    deps=[options_movement],
    kinds={"polars", "csv"},
    metadata={"path": "reports/options_movement_{summary,events}_{start}_{end}.csv"},
)
def options_movement_summary(config: SummaryConfig, store: ParquetStoreResource) -> MaterializeResult:
    """The scanner's figures over a range of days: contract-days, bars, events per contract-day,
    minutes and share above the trigger, durations, events by trigger hour (ET); also as CSV, with the events
    themselves (one row per event) in a second CSV beside it."""
    root = store.data_root
    folder = root.uri(root.dataset_path(*lake.FOLDERS["options_movement"]))
    scanned = store.partition_days(*lake.FOLDERS["options_movement"])
    start = cal.parse_date(config.start) if config.start else (scanned[0] if scanned else None)
    end = cal.parse_date(config.end) if config.end else (scanned[-1] if scanned else None)
    days = [d for d in scanned if start and end and start <= d <= end]
    if not days:
        raise storage.StorageError(
            f"no scanned days in {folder} between {start} and {end}: materialize options_movement first"
        )
    bars = pl.concat([lake.read_day(root, "options", d) for d in days])
    events = pl.concat([lake.read_day(root, "options_movement", d) for d in days])
    summary = movement_summary(bars, events, config.trigger_pct)
    figures = {k: v for k, v in summary.items() if not isinstance(v, pl.DataFrame)}
    by_hour = summary["events_by_trigger_hour"]
    report = f"{root.dataset_path('reports')}/options_movement_summary_{days[0]}_{days[-1]}.csv"
    root.write_bytes(_csv(figures, by_hour), report)
    events_report = f"{root.dataset_path('reports')}/options_movement_events_{days[0]}_{days[-1]}.csv"
    root.write_bytes(events_csv(events), events_report)
    return MaterializeResult(
        metadata={
            "first_day": str(days[0]),
            "last_day": str(days[-1]),
            "days": len(days),
            "contract_days": summary["contract_days"],
            "events": summary["events"],
            "figures": markdown_table(["figure", "value"], [[k, v] for k, v in figures.items()]),
            "events_by_trigger_hour_et": markdown_table(by_hour.columns, by_hour.rows()),
            "events_per_contract_day": markdown_table(
                summary["events_per_contract_day"].columns, summary["events_per_contract_day"].rows()
            ),
            "csv": MetadataValue.path(root.uri(report)),
            "events_csv": MetadataValue.path(root.uri(events_report)),
        }
    )


def _csv(figures: dict, by_hour: pl.DataFrame) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["figure", "value"])
    writer.writerows(figures.items())
    writer.writerows([f"events_at_{hour:02d}h_et", count] for hour, count in by_hour.rows())
    return text.getvalue().encode()


def events_csv(events: pl.DataFrame) -> bytes:
    """One row per event, sorted by start: times as ISO 8601 UTC plus the trigger time in New York."""
    return (
        events.sort("start", "ticker")
        .with_columns(
            pl.col("start").dt.convert_time_zone(NEW_YORK).dt.strftime("%Y-%m-%d %H:%M").alias("trigger_time_et")
        )
        .select("ticker", "trigger_time_et", pl.exclude("ticker", "trigger_time_et"))
        .write_csv(datetime_format="%Y-%m-%dT%H:%M:%S%:z")
        .encode()
    )
