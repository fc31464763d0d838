"""The machinery of the platform's asset checks: which files a check run covers, reading them,
and three kinds of checks (schema, row rules, coverage) with their figures in metadata."""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetsDefinition,
    asset_check,
)

from spy_pipeline.defs.metadata import markdown_table
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import datasets
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import DatasetSchema
from spy_pipeline.io.storage import StorageError
from spy_pipeline.settings import load_settings

Rules = Callable[[pl.DataFrame, dt.date], dict[str, int]]


@dataclass(frozen=True)
class DailyFiles:
    """A registered dataset stored as {folder}/{date}.parquet under the data dir, and the asset writing it."""

    asset: AssetsDefinition
    name: str  # its name in spy_pipeline.domain.datasets, and the prefix of its checks' names
    optional_source: str | None = None  # vix, news: a day may lack its file (SPY_PIPELINE_OPTIONAL_SOURCES)

    @property
    def folder(self) -> tuple[str, ...]:
        return datasets.get(self.name).folder()

    @property
    def schema(self) -> DatasetSchema:
        return datasets.get(self.name).schema


def checked_days(
    context: AssetCheckExecutionContext, store: ParquetStoreResource, folder: tuple[str, ...]
) -> list[dt.date]:
    """The trading days a check run is about (run alone without partitions: the latest file of `folder`)."""
    run = context.op_execution_context
    if run.has_partition_key or run.has_partition_key_range:
        try:
            keys = run.partition_keys
        except Exception:  # a check-only run: Dagster gives the range but not the keys
            keys = trading_day_partitions.get_partition_keys_in_range(run.partition_key_range)
        return [cal.parse_date(key) for key in keys]
    return store.partition_days(*folder)[-1:]


def _read(context: AssetCheckExecutionContext, store: ParquetStoreResource, files: DailyFiles):
    """(frames, problems, unavailable days) of the checked days: a day of an optional source without a file is
    no problem but an unavailable day, which `_outcome` turns into a warning."""
    days = checked_days(context, store, files.folder)
    optional = load_settings().is_optional_source(files.optional_source)
    frames, problems, unavailable = [], [], []
    for day in days:
        path = store.partition_path(day, *files.folder)
        if optional and not store.exists(path):
            unavailable.append(str(day))
            continue
        try:
            frames.append((day, store.relative(path), store.read(path, files.schema)))
        except StorageError as exc:
            problems.append([store.relative(path), str(exc)])
    return frames, problems, unavailable


def _outcome(unavailable: list[str], passed: bool, metadata: dict,
             severity: AssetCheckSeverity = AssetCheckSeverity.ERROR) -> AssetCheckResult:
    """The check's result; days of an optional source without data make a passing check a warning."""
    if unavailable and (passed or not metadata.get("files_checked")):
        return AssetCheckResult(
            passed=False, severity=AssetCheckSeverity.WARN,
            description=f"optional source without data on {', '.join(unavailable)} (see source_unavailable)",
            metadata={**metadata, "unavailable_days": ", ".join(unavailable)},
        )
    return AssetCheckResult(passed=passed, severity=severity, metadata=metadata)


def schema_check(files: DailyFiles) -> AssetChecksDefinition:
    @asset_check(asset=files.asset, name=f"{files.name}_schema_matches_contract", blocking=True,
                 description=f"Every {'/'.join(files.folder)} file is readable and has exactly the "
                             f"{files.schema.name} columns and types.")
    def check(context: AssetCheckExecutionContext, store: ParquetStoreResource) -> AssetCheckResult:
        frames, problems, unavailable = _read(context, store, files)
        return _outcome(unavailable, not problems and bool(frames), {
            "files_checked": len(frames) + len(problems),
            "problems": markdown_table(["file", "problem"], problems or [["-", "none"]]),
        })

    return check


def rules_check(files: DailyFiles, rules: Rules, description: str) -> AssetChecksDefinition:
    @asset_check(asset=files.asset, name=f"{files.name}_rows_are_valid", blocking=True, description=description)
    def check(context: AssetCheckExecutionContext, store: ParquetStoreResource) -> AssetCheckResult:
        frames, problems, unavailable = _read(context, store, files)
        rows = []
        for day, relative, frame in frames:
            broken = {rule: count for rule, count in rules(frame, day).items() if count}
            rows.append([relative, frame.height, ", ".join(f"{k}: {v}" for k, v in broken.items()) or "ok"])
        failed = [row for row in rows if row[2] != "ok"]
        return _outcome(unavailable, not failed and not problems and bool(frames), {
            "files_checked": len(rows), "files_failing": len(failed) + len(problems),
            "violations": markdown_table(["file", "rows", "violations"], failed or rows[:5]),
            "unreadable_files": len(problems),
        })

    return check


def coverage_check(
    files: DailyFiles, measure: Callable[[pl.DataFrame, dt.date], dict], figure: str, minimum: float,
    severity: AssetCheckSeverity, description: str, suffix: str = "regular_session_coverage",
) -> AssetChecksDefinition:
    @asset_check(asset=files.asset, name=f"{files.name}_{suffix}", description=description)
    def check(context: AssetCheckExecutionContext, store: ParquetStoreResource) -> AssetCheckResult:
        frames, problems, unavailable = _read(context, store, files)
        figures = [(relative, measure(frame, day)) for day, relative, frame in frames]
        lowest = min((f[figure] for _, f in figures), default=0.0)
        header = ["file", *(figures[0][1] if figures else [])]
        return _outcome(unavailable, bool(figures) and not problems and lowest >= minimum, {
            "files_checked": len(figures), f"lowest_{figure}": lowest, "minimum": minimum,
            "coverage": markdown_table(header, [[rel, *f.values()] for rel, f in figures]),
        }, severity)

    return check
