"""`make run`: reference data, then one Dagster run over a range of trading days; then a summary.

While the runs go, `progress` (if given) gets a line per phase and per finished step (from an event listener on
the instance, called in-process as Dagster stores each event); afterwards `closing_lines` sums it up.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, EventLogEntry, ExecuteInProcessResult
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from spy_pipeline.domain import trading_calendar as cal

DEFAULT_DAGSTER_HOME = ".dagster_home"
SOURCE_CHECKOUT = Path(__file__).resolve().parents[2]  # spy_pipeline/app/runner.py -> the checkout
SUMMARY_FIGURES = ("dividends", "splits", "days", "contract_days", "events")
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
CHARTS_FOLDER = "reports/charts"
UI_HINT = "Browse them: make dev (http://127.0.0.1:3000)"
DAGSTER_FAILURE_PREFIX = "dagster._core.definitions.events.Failure: "


@dataclass(frozen=True)
class RunSummary:
    run_ids: list[str]
    success: bool
    partitions: list[str]
    seconds: float
    lines: list[str]
    # what the closing summary counts: the range run's daily assets, the other runs' assets, checks
    expected_daily_assets: list[str] = field(default_factory=list)
    daily_materialized: dict[str, set[str]] = field(default_factory=dict)  # asset -> partitions in the range
    other_assets: list[str] = field(default_factory=list)
    checks_passed: int = 0
    checks_failed: int = 0


def ensure_dagster_home(repo_root: Path) -> Path:
    """DAGSTER_HOME, defaulting to .dagster_home in the repo so `make dev` shows `make run`'s runs. A home without
    a dagster.yaml gets the project's (telemetry off, the Polygon pool, run monitoring): the one in `repo_root`,
    else the one of the checkout the package runs from (an editable install run from another folder), rather
    than Dagster's defaults and their banner on every run."""
    home = Path(os.environ.get("DAGSTER_HOME") or repo_root / DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    templates = (repo_root / "dagster.yaml", SOURCE_CHECKOUT / "dagster.yaml")
    template = next((path for path in templates if path.is_file()), None)
    if not config.exists() and template is not None:
        shutil.copyfile(template, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_backfill(
    end: dt.date, days: int, data_dir: Path | str, progress: Callable[[str], None] | None = None
) -> RunSummary:
    """`data_dir` (a local folder or an object-store URI) only labels the files in the summary; `progress`
    receives a line per phase and per finished step while the runs go. No warm-up run: `consolidated`
    reads the trading day before the range itself (from the lake, else from Polygon, not written)."""
    from spy_pipeline.definitions import daily_backfill_job, daily_charts_job, defs, reference_data_job, reports_job

    keys = [day.isoformat() for day in cal.last_trading_days(end, days)]
    started = time.monotonic()
    span = f"{keys[0]} to {keys[-1]}"
    runs = [
        # dividends and splits first: option pricing needs the dividend yield
        _Run(reference_data_job.name, "reference data (dividends, splits)"),
        _Run(daily_backfill_job.name, f"daily assets for {len(keys)} partitions, {span}, in one run",
             tags=_range(keys[0], keys[-1]), daily=True),
        # the charts after the data, in a run of their own: a chart never holds up or fails the data
        _Run(daily_charts_job.name, f"daily charts for {len(keys)} partitions, {span}",
             tags=_range(keys[0], keys[-1]), daily=True, needed_after=False),
        _Run(reports_job.name, f"reports over {span}", run_config={"ops": {
            name: {"config": {"start": keys[0], "end": keys[-1]}}
            for name in ("options_movement_summary", "range_charts")}}),
    ]
    results: list[tuple[_Run, ExecuteInProcessResult]] = []
    with DagsterInstance.get() as instance:
        for index, run in enumerate(runs):
            job_def = defs.resolve_job_def(run.job)
            run_id = str(uuid.uuid4())
            if progress is not None:
                progress(f"[{index + 1}/{len(runs)}] {run.phase}")
                instance.add_event_listener(run_id, _StepProgress(progress))
            result = job_def.execute_in_process(
                instance=instance, raise_on_error=False, run_config={**QUIET_CONSOLE, **run.run_config},
                tags=run.tags, run_id=run_id,
            )
            results.append((run, result))
            if not result.success and run.needed_after:
                break
    seconds = time.monotonic() - started
    lines = [line for _, result in results for line in _describe(result, data_dir)]
    daily: dict[str, set[str]] = {}
    others: list[str] = []
    for run, result in results:
        for event in result.get_asset_materialization_events():
            name = event.asset_key.to_user_string()
            if run.daily:
                daily.setdefault(name, set()).add(event.partition)
            elif name not in others:
                others.append(name)
    evaluations = [e for _, result in results for e in result.get_asset_check_evaluations()]
    graph = defs.resolve_asset_graph()
    return RunSummary(
        [result.run_id for _, result in results],
        len(results) == len(runs) and all(result.success for _, result in results), keys, seconds, lines,
        expected_daily_assets=sorted(
            key.to_user_string() for job in (daily_backfill_job, daily_charts_job)
            for key in job.selection.resolve(graph)
        ),
        daily_materialized=daily,
        other_assets=others,
        checks_passed=sum(e.passed for e in evaluations),
        checks_failed=sum(not e.passed for e in evaluations),
    )


@dataclass(frozen=True)
class _Run:
    """One Dagster run of `make run`: its job, the line announcing it, and how its outcome counts."""

    job: str
    phase: str
    tags: dict[str, str] = field(default_factory=dict)
    run_config: dict = field(default_factory=dict)
    daily: bool = False  # a range run of trading-day partitions (counted per partition in the summary)
    needed_after: bool = True  # the later runs need it: stop if it fails


class _StepProgress:
    """An instance event listener: a line when a step that materialized something finishes (with its partitions
    and time), and a line for each step or asset check that fails."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.materialized: Counter[str] = Counter()

    def __call__(self, entry: EventLogEntry) -> None:
        event = entry.dagster_event
        if event is None:
            return
        step = entry.step_key or ""
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            self.materialized[step] += 1 if event.partition else 0  # an unpartitioned asset counts 0, but counts
        elif event.event_type == DagsterEventType.STEP_SUCCESS and step in self.materialized:
            count = self.materialized[step]
            partitions = f"{count} partition{'s' if count != 1 else ''}, " if count else ""
            self.emit(f"    {step}: done ({partitions}{event.event_specific_data.duration_ms / 1000:.1f} s)")
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION and not event.event_specific_data.passed:
            data = event.event_specific_data
            self.emit(f"    check FAILED: {data.asset_key.to_user_string()}:{data.check_name}")
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            self.emit(f"    {step}: FAILED")


def closing_lines(summary: RunSummary, data_dir: Path | str, home: Path) -> list[str]:
    """The end of `make run`'s output: what was materialized, the checks, where everything is."""
    materialized = sum(len(parts) for parts in summary.daily_materialized.values())
    partitions, assets = len(summary.partitions), len(summary.expected_daily_assets)
    if materialized == partitions * assets:
        counted = f"materialized {partitions} partitions \N{MULTIPLICATION SIGN} {assets} assets"
    else:
        counted = (f"materialized {materialized} of {partitions * assets} asset partitions "
                   f"({partitions} partitions \N{MULTIPLICATION SIGN} {assets} assets)")
    extras = [*summary.other_assets]
    status = "succeeded" if summary.success else "FAILED (see the FAILED lines above)"
    lines = [
        f"Summary: {status} in {summary.seconds:.1f} s",
        f"  {counted} ({summary.partitions[0]} to {summary.partitions[-1]})",
        *([f"  also: {', '.join(extras)}"] if extras else []),
        f"  asset checks: {summary.checks_passed} passed, {summary.checks_failed} failed",
        f"  data:   {data_dir}",
        f"  charts: {_join(data_dir, CHARTS_FOLDER)} (a folder per day, range/ for the whole range)",
        f"  runs:   {home} (the Dagster instance)",
        UI_HINT,
    ]
    return lines


def _join(data_dir: Path | str, relative: str) -> str:
    """A file of the summary as a person finds it: under the local folder, or the URI without its query."""
    if isinstance(data_dir, Path):
        return str(data_dir / relative)
    return f"{data_dir.split('?', 1)[0].rstrip('/')}/{relative}"


def _range(start: str, end: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}


def _describe(result: ExecuteInProcessResult, data_dir: Path | str) -> list[str]:
    lines = []
    seen_assets: set[str] = set()
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        name = materialization.asset_key.to_user_string()
        if name in seen_assets:
            continue  # a range run repeats the same metadata for every partition
        seen_assets.add(name)
        meta = materialization.metadata
        requests = meta["polygon_requests"].value if "polygon_requests" in meta else 0
        if "written_files" not in meta:
            figures = ", ".join(f"{key} {meta[key].value}" for key in SUMMARY_FIGURES if key in meta)
            lines.append(f"  {name}: {figures}" + (f", {requests} Polygon requests" if requests else ""))
            lines += [f"    {meta[key].value}" for key in ("csv",) if key in meta]
            continue
        files = meta["written_files"].value
        rows = sum(int(f.get("rows", 0)) for f in files)  # a chart has bytes, not rows
        counted = f", {rows:,} rows" if any("rows" in f for f in files) else ""
        gets = meta["flat_file_gets"].value if "flat_file_gets" in meta else 0
        lines.append(
            f"  {name}: {len(files)} files{counted}" + (f", {requests} Polygon requests" if requests else "")
            + (f", {gets} flat-file downloads" if gets else "")
        )
        lines += [
            f"    {_join(data_dir, f['path'])}  ("
            + (f"{f['rows']:,} rows, " if "rows" in f else "")
            + f"{f['bytes'] / 1024:.0f} KiB"
            + (f", from {f['source'].replace('_', ' ')}" if "source" in f else "") + ")"
            for f in files
        ]
    evaluations = result.get_asset_check_evaluations()
    failed = [e for e in evaluations if not e.passed]
    if evaluations:
        lines.append(
            f"  asset checks: {len(evaluations) - len(failed)} passed, {len(failed)} failed"
            + "".join(f"\n    FAILED {e.asset_key.to_user_string()}:{e.check_name}" for e in failed)
        )
    return lines + step_failure_lines(result)


def step_failure_lines(result: ExecuteInProcessResult) -> list[str]:
    """One line per failed step: its key and the first line of the underlying error."""
    lines = []
    for failure in result.get_step_failure_events():
        error = failure.step_failure_data.error
        cause = error.cause or error if error else None
        message = cause.message.strip().splitlines()[0] if cause and cause.message.strip() else "unknown error"
        message = message.removeprefix(DAGSTER_FAILURE_PREFIX)  # a Failure's description is the message itself
        lines.append(f"  FAILED step {failure.step_key}: {message}")
    return lines
