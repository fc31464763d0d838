"""The machinery of the platform's asset checks: one check step per asset (`asset_checks`), which files a check
run covers, reading them once per step, and three kinds of checks (schema, row rules, coverage) with their figures
in metadata."""

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    multi_asset_check,
)

from spy_pipeline.defs.metadata import markdown_table
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import datasets
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import DatasetSchema
from spy_pipeline.io.storage import StorageError
from spy_pipeline.logs import redact
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

    def check(self, name: str, evaluate: Callable[["CheckStep"], AssetCheckResult], **spec: Any) -> "Check":
        """A check of these files (they are read with the `store` resource)."""
        return Check.on(self.asset, name, evaluate, resources={"store"}, **spec)


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


class CheckStep:
    """What the checks of one step share: its context, its resources and each dataset's files, read once."""

    def __init__(self, context: AssetCheckExecutionContext) -> None:
        self.context = context
        self._files: dict[str, tuple[list, list, list[str]]] = {}

    def resource(self, key: str) -> Any:
        return getattr(self.context.resources, key)

    def read(self, files: "DailyFiles") -> tuple[list, list, list[str]]:
        """(frames, problems, unavailable days) of the checked days: a day of an optional source without a file
        is no problem but an unavailable day, which `_outcome` turns into a warning."""
        if files.name not in self._files:
            self._files[files.name] = _read(self.context, self.resource("store"), files)
        return self._files[files.name]


class CheckStepError(Exception):
    """Several checks of one step raised: each is named with its error (the first is the cause)."""

    def __init__(self, failures: list[tuple[str, Exception]]) -> None:
        super().__init__(redact(f"{len(failures)} checks raised: " + "; ".join(
            f"{name}: {type(exc).__name__}: {exc}" for name, exc in failures)))
        self.failures = failures


@dataclass(frozen=True)
class Check:
    """One asset check: its spec, how it is evaluated, and the resources it reads (`CheckStep.resource`)."""

    spec: AssetCheckSpec
    evaluate: Callable[[CheckStep], AssetCheckResult]
    resources: frozenset[str] = frozenset()

    @classmethod
    def on(cls, asset: AssetsDefinition, name: str, evaluate: Callable[[CheckStep], AssetCheckResult], *,
           resources: Iterable[str] = (), **spec: Any) -> "Check":
        """The check `name` of `asset` (`spec`: AssetCheckSpec's description, blocking)."""
        return cls(AssetCheckSpec(name, asset=asset, **spec), evaluate, frozenset(resources))

    @property
    def key(self) -> AssetCheckKey:
        return self.spec.key


def asset_checks(checks: Iterable[Check]) -> list[AssetChecksDefinition]:
    """The checks as one step per asset. A step costs Dagster tenths of a second whatever it does (a launched
    run makes each a process; in a partition-range run each lists every trading day once), and the checks of a
    dataset read its files once. The UI still shows, selects and runs each check by itself (can_subset)."""
    by_asset: dict[AssetKey, list[Check]] = {}
    for check in checks:
        by_asset.setdefault(check.key.asset_key, []).append(check)
    return [_step(asset_key, group) for asset_key, group in by_asset.items()]


def _step(asset_key: AssetKey, group: list[Check]) -> AssetChecksDefinition:
    @multi_asset_check(
        name=f"{asset_key.to_python_identifier()}_checks", specs=[check.spec for check in group], can_subset=True,
        required_resource_keys=set().union(*(check.resources for check in group)),
    )
    def step(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
        shared, failures = CheckStep(context), []
        for check in group:
            if check.key not in context.selected_asset_check_keys:
                continue
            try:
                result = check.evaluate(shared)
            except Exception as exc:  # the step's other checks still report; the step fails after them
                context.log.error(redact(f"check {check.key.name} raised {type(exc).__name__}: {exc}"))
                failures.append((check.key.name, exc))
                continue
            yield AssetCheckResult(
                passed=result.passed, asset_key=asset_key, check_name=check.key.name, metadata=result.metadata,
                severity=result.severity, description=result.description,
            )
        if len(failures) == 1:
            raise failures[0][1]
        if failures:
            raise CheckStepError(failures) from failures[0][1]

    return step


def _read(context: AssetCheckExecutionContext, store: ParquetStoreResource, files: "DailyFiles"):
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


def schema_check(files: DailyFiles) -> Check:
    def evaluate(step: CheckStep) -> AssetCheckResult:
        frames, problems, unavailable = step.read(files)
        return _outcome(unavailable, not problems and bool(frames), {
            "files_checked": len(frames) + len(problems),
            "problems": markdown_table(["file", "problem"], problems or [["-", "none"]]),
        })

    return files.check(f"{files.name}_schema_matches_contract", evaluate, blocking=True,
                       description=f"Every {'/'.join(files.folder)} file is readable and has exactly the "
                                   f"{files.schema.name} columns and types.")


def rules_check(files: DailyFiles, rules: Rules, description: str) -> Check:
    def evaluate(step: CheckStep) -> AssetCheckResult:
        frames, problems, unavailable = step.read(files)
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

    return files.check(f"{files.name}_rows_are_valid", evaluate, blocking=True, description=description)


def coverage_check(
    files: DailyFiles, measure: Callable[[pl.DataFrame, dt.date], dict], figure: str, minimum: float,
    severity: AssetCheckSeverity, description: str, suffix: str = "regular_session_coverage",
) -> Check:
    def evaluate(step: CheckStep) -> AssetCheckResult:
        frames, problems, unavailable = step.read(files)
        figures = [(relative, measure(frame, day)) for day, relative, frame in frames]
        lowest = min((f[figure] for _, f in figures), default=0.0)
        header = ["file", *(figures[0][1] if figures else [])]
        return _outcome(unavailable, bool(figures) and not problems and lowest >= minimum, {
            "files_checked": len(figures), f"lowest_{figure}": lowest, "minimum": minimum,
            "coverage": markdown_table(header, [[rel, *f.values()] for rel, f in figures]),
        }, severity)

    return files.check(f"{files.name}_{suffix}", evaluate, description=description)
