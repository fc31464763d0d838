"""`make run`: reference data, then one Dagster run over a range of trading days; then a summary."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from spy_pipeline import trading_calendar as cal

DEFAULT_DAGSTER_HOME = ".dagster_home"
SUMMARY_FIGURES = ("dividends", "splits", "days", "contract_days", "events")
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass(frozen=True)
class RunSummary:
    run_ids: list[str]
    success: bool
    partitions: list[str]
    seconds: float
    lines: list[str]


def ensure_dagster_home(repo_root: Path) -> Path:
    """DAGSTER_HOME, defaulting to .dagster_home in the repo so `make dev` shows `make run`'s runs."""
    home = Path(os.environ.get("DAGSTER_HOME") or repo_root / DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    template = repo_root / "dagster.yaml"
    if not config.exists() and template.exists():
        shutil.copyfile(template, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_backfill(end: dt.date, days: int, data_dir: Path | str) -> RunSummary:
    """`data_dir` (a local folder or an object-store URI) only labels the files in the summary."""
    from spy_pipeline.definitions import daily_backfill_job, defs, reference_data_job, reports_job

    warmup, *rest = cal.last_trading_days(end, days + 1)
    keys = [day.isoformat() for day in rest]
    started = time.monotonic()
    runs = [
        # dividends and splits first: option pricing needs the dividend yield
        (reference_data_job.name, {}, QUIET_CONSOLE),
        # the trading day before the range: SPY bars to warm the indicators up
        (daily_backfill_job.name, _range(warmup.isoformat(), warmup.isoformat()), {**QUIET_CONSOLE}),
        (daily_backfill_job.name, _range(keys[0], keys[-1]), QUIET_CONSOLE),
        (
            reports_job.name,
            {},
            {**QUIET_CONSOLE, "ops": {name: {"config": {"start": keys[0], "end": keys[-1]}}
                                      for name in ("options_movement_summary", "range_charts")}},
        ),
    ]
    results = []
    with DagsterInstance.get() as instance:
        for index, (job, tags, run_config) in enumerate(runs):
            job_def = defs.resolve_job_def(job)
            if index == 1:  # warm-up: SPY bars only
                job_def = job_def.get_subset(asset_selection={AssetKey("raw_spy_bars")})
            results.append(
                job_def.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config, tags=tags)
            )
            if not results[-1].success:
                break
    seconds = time.monotonic() - started
    lines = [line for result in results for line in _describe(result, data_dir)]
    return RunSummary([r.run_id for r in results], all(r.success for r in results), keys, seconds, lines)


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
        lines.append(
            f"  {name}: {len(files)} files{counted}" + (f", {requests} Polygon requests" if requests else "")
        )
        lines += [
            f"    {_join(data_dir, f['path'])}  ("
            + (f"{f['rows']:,} rows, " if "rows" in f else "")
            + f"{f['bytes'] / 1024:.0f} KiB)"
            for f in files
        ]
    evaluations = result.get_asset_check_evaluations()
    failed = [e for e in evaluations if not e.passed]
    if evaluations:
        lines.append(
            f"  asset checks: {len(evaluations) - len(failed)} passed, {len(failed)} failed"
            + "".join(f"\n    FAILED {e.asset_key.to_user_string()}:{e.check_name}" for e in failed)
        )
    for failure in result.get_step_failure_events():
        error = failure.step_failure_data.error
        cause = error.cause or error if error else None
        message = cause.message.strip().splitlines()[0] if cause and cause.message.strip() else "unknown error"
        lines.append(f"  FAILED step {failure.step_key}: {message}")
    return lines
