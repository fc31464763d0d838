"""Asset checks on every raw dataset: schema (blocking), validity rules (blocking), coverage.

Each check reads the files of the partitions the run materialized (or, run alone, the partition
range it was given, else the latest file) and attaches its figures per file as metadata, so a user
sees why a check failed.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetsDefinition,
    asset_check,
    build_column_schema_change_checks,
)

from spy_pipeline import quality
from spy_pipeline import trading_calendar as cal
from spy_pipeline.defs.metadata import markdown_table
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.raw.reference_assets import raw_news
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.news import news_window
from spy_pipeline.schemas import MINUTE_BARS, NEWS, OPTIONS_CONTRACTS, DatasetSchema
from spy_pipeline.storage import StorageError, read_partition

Rules = Callable[[pl.DataFrame, dt.date], dict[str, int]]


@dataclass(frozen=True)
class DailyFiles:
    """A dataset stored as {folder}/{date}.parquet under the data dir."""

    asset: AssetsDefinition
    name: str  # prefix of the check names: spy, vix, options, contracts, news
    folder: tuple[str, ...]
    schema: DatasetSchema


def checked_days(context: AssetCheckExecutionContext, folder: Path) -> list[dt.date]:
    """The trading days a check run is about."""
    run = context.op_execution_context
    if run.has_partition_key or run.has_partition_key_range:
        try:
            keys = run.partition_keys
        except Exception:  # a check-only run: Dagster gives the range but not the keys
            keys = trading_day_partitions.get_partition_keys_in_range(run.partition_key_range)
        return [cal.parse_date(key) for key in keys]
    latest = sorted(folder.glob("*.parquet"))[-1:] if folder.exists() else []
    return [cal.parse_date(path.stem) for path in latest]


def _read(context: AssetCheckExecutionContext, store: ParquetStoreResource, files: DailyFiles):
    days = checked_days(context, store.root.joinpath(*files.folder))
    frames, problems = [], []
    for day in days:
        path = store.partition_path(day, *files.folder)
        try:
            frames.append((day, store.relative(path), read_partition(path, files.schema)))
        except StorageError as exc:
            problems.append([store.relative(path), str(exc)])
    return frames, problems


def schema_check(files: DailyFiles) -> AssetChecksDefinition:
    @asset_check(asset=files.asset, name=f"{files.name}_schema_matches_contract", blocking=True,
                 description=f"Every {'/'.join(files.folder)} file is readable and has exactly the "
                             f"{files.schema.name} columns and types.")
    def check(context: AssetCheckExecutionContext, store: ParquetStoreResource) -> AssetCheckResult:
        frames, problems = _read(context, store, files)
        return AssetCheckResult(
            passed=not problems and bool(frames),
            metadata={"files_checked": len(frames) + len(problems),
                      "problems": markdown_table(["file", "problem"], problems or [["-", "none"]])},
        )

    return check


def rules_check(files: DailyFiles, rules: Rules, description: str) -> AssetChecksDefinition:
    @asset_check(asset=files.asset, name=f"{files.name}_rows_are_valid", blocking=True, description=description)
    def check(context: AssetCheckExecutionContext, store: ParquetStoreResource) -> AssetCheckResult:
        frames, problems = _read(context, store, files)
        rows = []
        for day, relative, frame in frames:
            broken = {rule: count for rule, count in rules(frame, day).items() if count}
            rows.append([relative, frame.height, ", ".join(f"{k}: {v}" for k, v in broken.items()) or "ok"])
        failed = [row for row in rows if row[2] != "ok"]
        return AssetCheckResult(
            passed=not failed and not problems and bool(frames),
            metadata={"files_checked": len(rows), "files_failing": len(failed) + len(problems),
                      "violations": markdown_table(["file", "rows", "violations"], failed or rows[:5]),
                      "unreadable_files": len(problems)},
        )

    return check


def coverage_check(
    files: DailyFiles, measure: Callable[[pl.DataFrame, dt.date], dict], figure: str, minimum: float,
    severity: AssetCheckSeverity, description: str,
) -> AssetChecksDefinition:
    @asset_check(asset=files.asset, name=f"{files.name}_regular_session_coverage", description=description)
    def check(context: AssetCheckExecutionContext, store: ParquetStoreResource) -> AssetCheckResult:
        frames, problems = _read(context, store, files)
        figures = [(relative, measure(frame, day)) for day, relative, frame in frames]
        lowest = min((f[figure] for _, f in figures), default=0.0)
        header = ["file", *(figures[0][1] if figures else [])]
        return AssetCheckResult(
            passed=bool(figures) and not problems and lowest >= minimum,
            severity=severity,
            metadata={f"lowest_{figure}": lowest, "minimum": minimum,
                      "coverage": markdown_table(header, [[rel, *f.values()] for rel, f in figures])},
        )

    return check


def _bar_checks(files: DailyFiles, minimum: float) -> list[AssetChecksDefinition]:
    return [
        schema_check(files),
        rules_check(files, quality.minute_bar_violations,
                    "OHLC consistent, prices positive, timestamps in the day's extended session, "
                    "keys (ticker, timestamp) unique and sorted."),
        coverage_check(files, quality.regular_session_coverage, "coverage", minimum, AssetCheckSeverity.ERROR,
                       f"At least {minimum:.0%} of the regular session's minutes have a bar "
                       "(early closes count 210 minutes)."),
    ]


SPY = DailyFiles(raw_spy_bars, "spy", ("raw", "spy"), MINUTE_BARS)
VIX = DailyFiles(raw_vix_bars, "vix", ("raw", "vix"), MINUTE_BARS)
CONTRACTS = DailyFiles(options_contracts, "contracts", ("raw", "options", "contracts"), OPTIONS_CONTRACTS)
OPTION_BARS = DailyFiles(raw_options_bars, "options", ("raw", "options"), MINUTE_BARS)
NEWS_FILES = DailyFiles(raw_news, "news", ("raw", "news"), NEWS)

RAW_CHECKS: list[AssetChecksDefinition] = [
    *_bar_checks(SPY, minimum=0.95),
    *_bar_checks(VIX, minimum=0.99),
    schema_check(CONTRACTS),
    rules_check(CONTRACTS, lambda frame, _day: quality.contract_violations(frame),
                "Every ticker parses as OCC and agrees with its type, strike, expiration; tickers unique."),
    schema_check(OPTION_BARS),
    rules_check(OPTION_BARS, quality.minute_bar_violations,
                "OHLC consistent, prices positive, timestamps in the session, keys (ticker, timestamp) unique."),
    coverage_check(OPTION_BARS, quality.per_ticker_coverage, "median_coverage", 0.5, AssetCheckSeverity.WARN,
                   "Option bars are sparse: a warning (not a failure) when the median contract has bars in "
                   "fewer than half of the regular session's minutes."),
    schema_check(NEWS_FILES),
    rules_check(NEWS_FILES, lambda frame, day: quality.news_violations(frame, news_window(day)),
                "Article ids unique, published inside the partition's news window, sentiment in {-1, 0, 1}."),
    *build_column_schema_change_checks(assets=[raw_spy_bars, raw_vix_bars, options_contracts, raw_options_bars,
                                               raw_news]),
]
