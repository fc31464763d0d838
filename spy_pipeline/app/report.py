"""`spy-pipeline report`: the scanner's figures over a range of days, printed in the terminal from the lake, as the
predecessor's scan command did: eight summary figures and the events-by-hour histogram (ET)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.scanner import movement_summary
from spy_pipeline.domain.schemas import MINUTE_BARS
from spy_pipeline.io import lake, storage

BAR_WIDTH = 40


@dataclass(frozen=True)
class RangeReport:
    trading_days: list[dt.date]
    scanned: list[dt.date]  # trading days with an options_movement partition
    summary: dict[str, Any] | None  # movement_summary over the scanned days; None when there are none

    @property
    def missing(self) -> list[dt.date]:
        return [day for day in self.trading_days if day not in self.scanned]


def load_range(data_dir: Path | str, start: dt.date, end: dt.date, trigger_pct: float = 20.0) -> RangeReport:
    """The scanner's summary over the trading days from `start` to `end` that have been scanned."""
    if start > end:
        raise cal.TradingCalendarError(f"--start {start} is after --end {end}")
    days = cal.trading_days(start, end)
    if not days:
        raise cal.TradingCalendarError(f"no trading days between {start} and {end}")
    root = storage.as_data_root(data_dir)
    scanned = [day for day in days if root.exists(lake.day_file(root, "options_movement", day))]
    if not scanned:
        return RangeReport(days, [], None)
    bars = pl.concat([lake.read_day(root, "options", day, MINUTE_BARS) for day in scanned])
    events = pl.concat([root.read_frame(lake.day_file(root, "options_movement", day)) for day in scanned])
    return RangeReport(days, scanned, movement_summary(bars, events, trigger_pct))


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The eight figures, one a line."""
    above = f"+{summary['trigger_pct']:g}%"
    share = summary["share_minutes_above_trigger"]
    figures = [
        ("Contract-days scanned", f"{summary['contract_days']:,}"),
        ("Minute bars", f"{summary['minute_bars']:,}"),
        ("Events", f"{summary['events']:,}"),
        ("Events per contract-day (min / median / max)",
         f"{summary['events_per_contract_day_min']} / {_number(summary['events_per_contract_day_median'])} / "
         f"{summary['events_per_contract_day_max']}"),
        (f"Minutes above {above}", f"{summary['minutes_above_trigger']:,}"),
        (f"Share of minutes above {above}", "n/a" if share is None else f"{share:.2%}"),
        (f"Duration above {above}, median (minutes)", _number(summary["duration_above_trigger_median_minutes"])),
        (f"Duration above {above}, mean (minutes)", _number(summary["duration_above_trigger_mean_minutes"])),
    ]
    width = max(len(label) for label, _ in figures)
    return [f"  {label:<{width}}  {value}" for label, value in figures]


def histogram_lines(by_hour: pl.DataFrame) -> list[str]:
    """One line per ET hour: a bar scaled to the busiest hour, and the count."""
    rows = by_hour.rows()
    busiest = max((count for _, count in rows), default=0)
    lines = []
    for hour, count in rows:
        bar = "█" * (round(count / busiest * BAR_WIDTH) if busiest else 0)
        if count and not bar:
            bar = "▏"  # a non-zero hour is never drawn empty
        lines.append(f"  {hour:02d}h  {bar:<{BAR_WIDTH}}  {count:,}")
    return lines


def render(report: RangeReport, data_dir: str) -> str:
    first, last = report.trading_days[0], report.trading_days[-1]
    lines = []
    if report.missing:
        lines.append(
            f"Not scanned ({len(report.missing)} of {len(report.trading_days)} trading days; materialize "
            f"options_movement for them): {', '.join(str(day) for day in report.missing)}"
        )
    if report.summary is None:
        lines.append(f"No scanned day between {first} and {last} in {data_dir}.")
        return "\n".join(lines)
    lines.append(f"Options movement scanner, {report.scanned[0]} to {report.scanned[-1]} "
                 f"({len(report.scanned)} trading day(s), {data_dir}):")
    lines += summary_lines(report.summary)
    lines.append("Events by trigger hour (ET):")
    lines += histogram_lines(report.summary["events_by_trigger_hour"])
    return "\n".join(lines)
