"""The range report people read: the events CSV beside the summary, and `spy-pipeline report` in the terminal,
on a hand-made lake whose figures are counted by hand."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from dagster import DagsterInstance, materialize

from spy_pipeline.app.cli import main
from spy_pipeline.app.report import histogram_lines
from spy_pipeline.definitions import defs
from spy_pipeline.defs.processed.scanner_assets import options_movement_summary
from spy_pipeline.domain.scanner import movement_events
from spy_pipeline.domain.schemas import MINUTE_BARS
from spy_pipeline.domain.trading_calendar import session_bounds
from spy_pipeline.io import lake, storage

DAY1, DAY2 = dt.date(2025, 1, 7), dt.date(2025, 1, 8)  # EST: the open is 14:30 UTC
PATHS = {  # (day, contract) -> prices from the open, one a minute
    (DAY1, "O:SPY250117C00590000"): [1.0] * 60 + [1.3, 1.3, 1.0],  # event at minute 60 = 10:30 ET, 2 bars >= +20%
    (DAY1, "O:SPY250117P00580000"): [2.0] * 30,  # no event
    (DAY2, "O:SPY250117C00600000"): [1.0] * 300 + [1.25, 1.0],  # event at 14:30 ET, 1 bar
    (DAY2, "O:SPY250117P00570000"): [0.5] * 10 + [0.7, 0.5],  # event at 09:40 ET, 1 bar
}


def _bars(day: dt.date) -> pl.DataFrame:
    rows = [(ticker, session_bounds(day).open + dt.timedelta(minutes=i), price)
            for (d, ticker), prices in PATHS.items() if d == day for i, price in enumerate(prices)]
    frame = pl.DataFrame(rows, schema={"ticker": pl.String, "timestamp": pl.Datetime("us", "UTC"),
                                       "close": pl.Float64}, orient="row")
    return frame.with_columns(
        pl.lit("regular").alias("session"), pl.col("close").alias("open"), pl.col("close").alias("high"),
        pl.col("close").alias("low"), pl.lit(10.0).alias("volume"), pl.col("close").alias("vwap"),
        pl.lit(1, pl.Int64).alias("transactions"),
    ).select(list(MINUTE_BARS.columns))


@pytest.fixture
def lake_dir(data_dir: Path) -> Path:
    for day in (DAY1, DAY2):
        bars = _bars(day)
        storage.write_parquet_atomic(bars, lake.day_file(data_dir, "options", day))
        storage.write_parquet_atomic(movement_events(bars), lake.day_file(data_dir, "options_movement", day))
    return data_dir


def test_the_summary_asset_writes_one_csv_row_per_event_beside_the_summary(lake_dir: Path) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = materialize([options_movement_summary], resources=defs.resources, instance=instance)
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.step_materialization_data.materialization.metadata
    path = Path(metadata["events_csv"].value)
    assert path == lake_dir / "reports" / f"options_movement_events_{DAY1}_{DAY2}.csv"
    assert Path(metadata["csv"].value).parent == path.parent
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [(r["ticker"], r["trigger_time_et"], r["minutes_above_trigger"]) for r in rows] == [
        ("O:SPY250117C00590000", "2025-01-07 10:30", "2"),
        ("O:SPY250117P00570000", "2025-01-08 09:40", "1"),
        ("O:SPY250117C00600000", "2025-01-08 14:30", "1"),
    ]
    new_york = ZoneInfo("America/New_York")
    for row in rows:  # the ET column agrees with the UTC start converted independently
        start = dt.datetime.fromisoformat(row["start"])
        assert start.astimezone(new_york).strftime("%Y-%m-%d %H:%M") == row["trigger_time_et"]
    assert rows[0]["reference_price"] == "1.0" and rows[0]["trigger_price"] == "1.3"


def test_report_prints_the_eight_figures_and_the_histogram(lake_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--start", "2025-01-07", "--end", "2025-01-10"]) == 0
    out = capsys.readouterr().out.splitlines()
    # 2025-01-09 was a market holiday (not a trading day); 2025-01-10 was never scanned
    assert out[0] == ("Not scanned (1 of 3 trading days; materialize options_movement for them): 2025-01-10")
    assert out[1].startswith("Options movement scanner, 2025-01-07 to 2025-01-08 (2 trading day(s)")
    figures = {line.rsplit("  ", 1)[0].strip(): line.rsplit("  ", 1)[1] for line in out[2:10]}
    assert figures == {  # counted by hand from PATHS
        "Contract-days scanned": "4",
        "Minute bars": "407",  # 63 + 30 + 302 + 12
        "Events": "3",
        "Events per contract-day (min / median / max)": "0 / 1.0 / 1",
        "Minutes above +20%": "4",
        "Share of minutes above +20%": "0.98%",  # 4 / 407
        "Duration above +20%, median (minutes)": "1.0",
        "Duration above +20%, mean (minutes)": "1.3",  # (2 + 1 + 1) / 3
    }
    assert out[10] == "Events by trigger hour (ET):"
    counts = {line.split()[0]: int(line.split()[-1]) for line in out[11:]}
    assert counts == {"09h": 1, "10h": 1, "11h": 0, "12h": 0, "13h": 0, "14h": 1, "15h": 0}


def test_report_with_nothing_scanned_says_which_days_and_exits_1(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--start", "2025-01-07", "--end", "2025-01-08"]) == 1
    out = capsys.readouterr().out
    assert "Not scanned (2 of 2 trading days; materialize options_movement for them): 2025-01-07, 2025-01-08" in out


@pytest.mark.parametrize("args, message", [
    (["--start", "2025-13-01", "--end", "2025-01-08"], "2025-13-01"),
    (["--start", "2025-01-08", "--end", "2025-01-07"], "after --end"),
    (["--start", "2025-01-11", "--end", "2025-01-12"], "no trading days"),
])
def test_report_with_bad_dates_prints_one_line_and_exits_2(
    data_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["report", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and message in captured.err


def test_histogram_bars_scale_to_the_busiest_hour() -> None:
    by_hour = pl.DataFrame({"trigger_hour_et": [9, 10, 11], "events": [40, 1, 0]})
    lines = histogram_lines(by_hour)
    assert lines[0].count("█") == 40 and lines[1].count("█") == 1 and "█" not in lines[2]
    assert [line.split()[-1] for line in lines] == ["40", "1", "0"]
