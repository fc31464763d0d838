"""Asset checks on raw minute bars: schema (blocking), validity (blocking), regular-session coverage.

Each check reads the files of the partitions the run materialized (or, run alone, the partition
range it was given, else the latest file) and attaches its figures per file as metadata.
"""

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

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
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.schemas import MINUTE_BARS
from spy_pipeline.storage import StorageError, read_partition


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


def _files(store: ParquetStoreResource, dataset: str, days: Sequence[dt.date]) -> list[tuple[dt.date, Path]]:
    return [(day, store.partition_path(day, "raw", dataset)) for day in days]


def minute_bar_checks(
    asset: AssetsDefinition, dataset: str, min_coverage: float
) -> list[AssetChecksDefinition]:
    """The three checks of one minute-bar dataset (raw/{dataset}/{date}.parquet)."""

    def read_all(context: AssetCheckExecutionContext, store: ParquetStoreResource) -> tuple[list, list]:
        days = checked_days(context, store.root / "raw" / dataset)
        frames, problems = [], []
        for day, path in _files(store, dataset, days):
            try:
                frames.append((day, path, read_partition(path, MINUTE_BARS)))
            except StorageError as exc:
                problems.append([store.relative(path) if path.is_relative_to(store.root) else path, str(exc)])
        return frames, problems

    @asset_check(asset=asset, name=f"{dataset}_schema_matches_contract", blocking=True,
                 description=f"Every raw/{dataset} file is readable and has exactly the minute_bars columns.")
    def schema_check(context: AssetCheckExecutionContext, store: ParquetStoreResource) -> AssetCheckResult:
        frames, problems = read_all(context, store)
        return AssetCheckResult(
            passed=not problems and bool(frames),
            metadata={"files_checked": len(frames) + len(problems),
                      "problems": markdown_table(["file", "problem"], problems or [["-", "none"]])},
        )

    @asset_check(asset=asset, name=f"{dataset}_bars_are_valid", blocking=True,
                 description="OHLC consistent, prices positive, timestamps in the day's extended session, "
                             "keys (ticker, timestamp) unique and sorted.")
    def validity_check(context: AssetCheckExecutionContext, store: ParquetStoreResource) -> AssetCheckResult:
        frames, problems = read_all(context, store)
        rows = []
        for day, path, frame in frames:
            violations = quality.minute_bar_violations(frame, day)
            bad = {rule: count for rule, count in violations.items() if count}
            rows.append([store.relative(path), frame.height, ", ".join(f"{k}: {v}" for k, v in bad.items()) or "ok"])
        failed = [row for row in rows if row[2] != "ok"]
        return AssetCheckResult(
            passed=not failed and not problems and bool(frames),
            metadata={"files_checked": len(rows), "files_failing": len(failed) + len(problems),
                      "violations": markdown_table(["file", "rows", "violations"], failed or rows[:5]),
                      "unreadable_files": len(problems)},
        )

    @asset_check(asset=asset, name=f"{dataset}_regular_session_coverage",
                 description=f"At least {min_coverage:.0%} of the regular session's minutes have a bar "
                             "(early closes count 210 minutes).")
    def coverage_check(context: AssetCheckExecutionContext, store: ParquetStoreResource) -> AssetCheckResult:
        frames, problems = read_all(context, store)
        rows = [[store.relative(path), *quality.regular_session_coverage(frame, day).values()]
                for day, path, frame in frames]
        lowest = min((row[3] for row in rows), default=0.0)
        return AssetCheckResult(
            passed=bool(rows) and not problems and lowest >= min_coverage,
            severity=AssetCheckSeverity.ERROR,
            metadata={"lowest_coverage": lowest, "min_coverage": min_coverage,
                      "coverage": markdown_table(["file", "session minutes", "minutes with bars", "coverage"], rows)},
        )

    return [schema_check, validity_check, coverage_check]


RAW_BAR_CHECKS: list[AssetChecksDefinition] = [
    *minute_bar_checks(raw_spy_bars, "spy", min_coverage=0.95),
    *minute_bar_checks(raw_vix_bars, "vix", min_coverage=0.99),
    *build_column_schema_change_checks(assets=[raw_spy_bars, raw_vix_bars]),
]

