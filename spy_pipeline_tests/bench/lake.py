"""Lake write and read: each candidate Parquet setting (codec and level, row-group size) on a day and a month.

The data is the `consolidated` day of the consolidation bench's largest size (2,000 contracts nearest the open,
≈516k rows x 47 columns; inputs prepared and consolidated untimed), written for each of 21 trading days with
its timestamps moved to that day. For each candidate (`storage.ParquetSettings`), in one run:
- write: `storage.write_parquet_atomic` of the day's frame (temp file, fsync, rename), median of the 21 days
  (wall seconds, and the process's CPU seconds, which a loaded machine inflates less);
- bytes per row of a day's file;
- read a day: `spy_pipeline.scan("consolidated", day, day).collect()`, every column (median of REPEATS);
- read a month filtered to one contract: `spy_pipeline.scan(...)` over the 21 days, `.filter(ticker == one
  contract).collect()` (REPEATS, median), and the same through a bare `pl.scan_parquet` (what scan adds is
  its footer schema checks), with the row groups the ticker statistics leave to read, counted from pyarrow's
  metadata, out of all.
Ratios are against the setting before this bench (zstd level 3, polars' default row groups). The files are
in the page cache when read (just written): this is the CPU cost of a read, not the disk's. For the lake's
setting, scan_parquet's `parallel` strategies are compared on the month's filtered read. The sort-order
check `DataRoot.write_parquet` makes before writing a file of a sorted dataset is timed once.
Figures are merged into bench/results.json under "lake".
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

import spy_pipeline
from spy_pipeline.domain import datasets
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.io import lake, storage
from spy_pipeline.io.storage import LAKE_PARQUET, ParquetSettings
from spy_pipeline_tests.bench import consolidation
from spy_pipeline_tests.bench.results import cpu_seconds, merge_results

DAY = consolidation.DAY
CONTRACTS = 2_000
MONTH_DAYS = 21
REPEATS = 5
PREVIOUS = ParquetSettings("zstd")  # the lake's setting before this bench
CANDIDATES = (
    PREVIOUS,
    ParquetSettings("zstd", 1),
    ParquetSettings("zstd", 1, row_group_size=16_384),
    ParquetSettings("snappy", row_group_size=16_384),
    ParquetSettings("lz4"),
    ParquetSettings("lz4", row_group_size=65_536),
    ParquetSettings("lz4", row_group_size=16_384),
    ParquetSettings("lz4", row_group_size=8_192),
    ParquetSettings("uncompressed", row_group_size=16_384),
)
SCAN_STRATEGIES = ("auto", "row_groups", "prefiltered", "columns", "none")
GOAL_MONTH_FILTERED_SECONDS = 0.2


def _timed(run: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of one call."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    run()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def consolidated_day(root: Path) -> pl.DataFrame:
    """The consolidated rows of DAY for CONTRACTS contracts, from the consolidation bench's raw layer."""
    from spy_pipeline.domain.consolidate import consolidate_day

    data_dir = consolidation._prepare(root, sizes=(CONTRACTS,))[CONTRACTS]
    frame = consolidate_day(lake.consolidation_inputs(data_dir, DAY, consolidation.RISK_FREE_RATE))
    shutil.rmtree(data_dir)
    return frame


def _groups_to_read(files: list[Path], ticker: str) -> tuple[int, int]:
    """Row groups whose ticker statistics may hold `ticker` (what a reader using them reads), and all."""
    kept = total = 0
    for path in files:
        metadata = pq.read_metadata(path)
        column = metadata.schema.names.index("ticker")
        for index in range(metadata.num_row_groups):
            stats = metadata.row_group(index).column(column).statistics
            total += 1
            kept += stats is None or not stats.has_min_max or stats.min <= ticker <= stats.max
    return kept, total


def _measure(frame: pl.DataFrame, days: list[dt.date], settings: ParquetSettings, data_dir: Path,
             ticker: str) -> dict[str, object]:
    writes, files = [], []
    for day in days:
        path = Path(lake.day_file(data_dir, "consolidated", day))
        shifted = frame.with_columns(pl.col("timestamp") + (day - DAY))
        writes.append(_timed(lambda: storage.write_parquet_atomic(shifted, path, settings)))  # noqa: B023
        files.append(path)
    first, last = days[0], days[-1]
    day_reads = [_timed(lambda: spy_pipeline.scan("consolidated", first, first, data_dir).collect())
                 for _ in range(REPEATS)]
    one_contract = pl.col("ticker") == ticker
    month = [_timed(lambda: spy_pipeline.scan("consolidated", first, last, data_dir).filter(one_contract).collect())
             for _ in range(REPEATS)]
    bare = [_timed(lambda: pl.scan_parquet(files).filter(one_contract).collect()) for _ in range(REPEATS)]
    rows = spy_pipeline.scan("consolidated", first, last, data_dir).filter(one_contract).collect().height
    kept, total = _groups_to_read(files, ticker)
    (write_s, write_cpu), (day_s, day_cpu) = _median(writes), _median(day_reads)
    (month_s, month_cpu), (bare_s, _) = _median(month), _median(bare)
    return {
        "setting": settings.label, "compression": settings.compression,
        "compression_level": settings.compression_level, "row_group_size": settings.row_group_size,
        "write_seconds": write_s, "write_cpu_seconds": write_cpu,
        "bytes_per_row": files[0].stat().st_size / frame.height, "day_bytes": files[0].stat().st_size,
        "row_groups_per_day": pq.read_metadata(files[0]).num_row_groups,
        "read_day_seconds": day_s, "read_day_cpu_seconds": day_cpu,
        "month_one_contract_seconds": month_s, "month_one_contract_cpu_seconds": month_cpu,
        "month_one_contract_polars_seconds": bare_s, "month_one_contract_rows": rows,
        "month_row_groups_read": kept, "month_row_groups": total,
    }


def _scan_strategies(files: list[Path], ticker: str) -> dict[str, float]:
    one_contract = pl.col("ticker") == ticker
    return {
        strategy: _median([
            _timed(lambda: pl.scan_parquet(files, parallel=strategy).filter(one_contract).collect())  # noqa: B023
            for _ in range(REPEATS)
        ])[0]
        for strategy in SCAN_STRATEGIES
    }


def main() -> None:
    days = cal.trading_days(DAY, DAY + dt.timedelta(days=45))[:MONTH_DAYS]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        frame = consolidated_day(Path(tmp) / "inputs")
        prepare_s = time.perf_counter() - started
        tickers = frame["ticker"].unique().sort()
        ticker = tickers[len(tickers) // 2]  # a contract in the middle of the order: no edge row group
        sort_check_s = min(_timed(lambda: datasets.sorted_by(frame, datasets.BY_CONTRACT_AND_MINUTE))[0]
                           for _ in range(REPEATS))
        results = []
        for index, settings in enumerate(CANDIDATES):
            data_dir = Path(tmp) / f"candidate_{index}"
            results.append(_measure(frame, days, settings, data_dir, ticker))
            if settings == LAKE_PARQUET:
                files = [Path(lake.day_file(data_dir, "consolidated", day)) for day in days]
                strategies = _scan_strategies(files, ticker)
            shutil.rmtree(data_dir)
    load = os.getloadavg()
    previous = results[CANDIDATES.index(PREVIOUS)]
    print(f"lake Parquet settings: consolidated {DAY}, {CONTRACTS:,} contracts, {frame.height:,} rows x "
          f"{frame.width} columns, written for {MONTH_DAYS} trading days ({days[0]} to {days[-1]}); medians; "
          f"ratio = previous setting / this one (>1: better); load average {load[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  {'setting':40s} {'write s':>8s} {'cpu s':>6s} {'ratio':>6s} {'B/row':>6s} {'ratio':>6s} "
          f"{'day read s':>10s} {'ratio':>6s} {'month 1 contract s':>18s} {'cpu s':>6s} {'ratio':>6s} {'polars s':>8s} "
          f"{'groups read':>12s}")
    for r in results:
        chosen = " <- lake" if r["setting"] == LAKE_PARQUET.label else ""
        print(f"  {r['setting']:40s} {r['write_seconds']:8.3f} {r['write_cpu_seconds']:6.2f} "
              f"{previous['write_seconds'] / r['write_seconds']:5.1f}x {r['bytes_per_row']:6.1f} "
              f"{previous['bytes_per_row'] / r['bytes_per_row']:5.2f}x {r['read_day_seconds']:10.3f} "
              f"{previous['read_day_seconds'] / r['read_day_seconds']:5.1f}x {r['month_one_contract_seconds']:18.3f} "
              f"{r['month_one_contract_cpu_seconds']:6.3f} "
              f"{previous['month_one_contract_seconds'] / r['month_one_contract_seconds']:5.1f}x "
              f"{r['month_one_contract_polars_seconds']:8.3f} "
              f"{r['month_row_groups_read']:>5d}/{r['month_row_groups']:<6d}{chosen}")
    ours = next(r for r in results if r["setting"] == LAKE_PARQUET.label)
    met = ours["month_one_contract_seconds"] <= GOAL_MONTH_FILTERED_SECONDS
    print(f"  one contract ({ticker}, {ours['month_one_contract_rows']:,} rows in the month); sort-order check of "
          f"the sorted day before a write: {sort_check_s:.3f} s; inputs prepared in {prepare_s:.0f} s, not timed")
    print("  scan_parquet parallel= on the month, one contract, lake setting: "
          + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in strategies.items()))
    print(f"  goal: a month's scan filtered to one contract <= {GOAL_MONTH_FILTERED_SECONDS} s: "
          f"{ours['month_one_contract_seconds']:.3f} s ({ours['month_one_contract_cpu_seconds']:.3f} CPU s, the wall "
          f"time's bound on an idle machine) -> {'met' if met else 'MISSED'}")
    print("  cpu s: the process's CPU seconds (all threads), which a loaded machine inflates less than wall seconds")
    merge_results("lake", {
        "day": DAY.isoformat(), "contracts": CONTRACTS, "rows": frame.height, "columns": frame.width,
        "month_days": MONTH_DAYS, "ticker": ticker, "repeats": REPEATS, "lake_setting": LAKE_PARQUET.label,
        "previous_setting": PREVIOUS.label, "candidates": results, "scan_parallel_seconds": strategies,
        "sort_check_seconds": sort_check_s, "load_average": load[0],
        "goal": {"month_one_contract_seconds": GOAL_MONTH_FILTERED_SECONDS, "met": met},
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": {"python": sys.version.split()[0], "polars": pl.__version__},
    })


if __name__ == "__main__":
    main()
