"""`spy-pipeline status`: what the Dagster instance (DAGSTER_HOME) knows about the platform.

Per asset of the code location: partitions materialized (count, first, last) and when it was last
materialized; the asset checks whose latest evaluation failed; the last run of every job (the code
location's jobs, and any other job name among the recent runs, such as ad-hoc `materialize` runs).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterInstance, Definitions, RunsFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

RECENT_RUNS = 500


@dataclass(frozen=True)
class AssetStatus:
    asset: str
    partitioned: bool
    partitions: int  # materialized partitions; for an unpartitioned asset 1 if ever materialized
    first: str | None
    last: str | None
    last_materialized: dt.datetime | None


@dataclass(frozen=True)
class FailedCheck:
    asset: str
    check: str
    severity: str
    partition: str | None
    run_id: str
    at: dt.datetime
    description: str | None


@dataclass(frozen=True)
class LastRun:
    job: str
    run_id: str | None  # None: the job never ran
    status: str
    started: dt.datetime | None
    ended: dt.datetime | None


@dataclass(frozen=True)
class InstanceStatus:
    home: str | None
    assets: list[AssetStatus]
    checks: int  # asset checks of the code location
    checks_evaluated: int  # of which have an evaluation
    failed_checks: list[FailedCheck]
    runs: list[LastRun]


def _time(timestamp: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC) if timestamp else None


def collect_status(instance: DagsterInstance, definitions: Definitions | None = None) -> InstanceStatus:
    """Query `instance` about the assets, checks and jobs of `definitions` (default: spy_pipeline's)."""
    if definitions is None:
        from spy_pipeline.definitions import defs as definitions
    graph = definitions.resolve_asset_graph()
    assets = []
    for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
        latest = instance.get_latest_materialization_event(key)
        if graph.get(key).partitions_def is not None:
            keys = sorted(instance.get_materialized_partitions(key))
            assets.append(AssetStatus(key.to_user_string(), True, len(keys), keys[0] if keys else None,
                                      keys[-1] if keys else None, _time(latest.timestamp if latest else None)))
        else:
            assets.append(AssetStatus(key.to_user_string(), False, int(latest is not None), None, None,
                                      _time(latest.timestamp if latest else None)))
    check_keys = sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    latest_checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    evaluated = {k: r for k, r in latest_checks.items() if k in set(check_keys)}
    failed = []
    for key in check_keys:
        record = evaluated.get(key)
        if record is None or record.status != AssetCheckExecutionRecordStatus.FAILED:
            continue
        evaluation = record.event.asset_check_evaluation if record.event else None
        failed.append(FailedCheck(
            asset=key.asset_key.to_user_string(), check=key.name,
            severity=evaluation.severity.value if evaluation else "?",
            partition=record.partition or (evaluation.partition if evaluation else None),
            run_id=record.run_id, at=_time(record.create_timestamp) or dt.datetime.now(dt.UTC),
            description=evaluation.description if evaluation else None,
        ))
    return InstanceStatus(
        home=instance.root_directory if instance.is_persistent else None,
        assets=assets,
        checks=len(check_keys),
        checks_evaluated=sum(1 for r in evaluated.values() if r.status != AssetCheckExecutionRecordStatus.PLANNED),
        failed_checks=failed,
        runs=_last_runs(instance, definitions),
    )


def _last_runs(instance: DagsterInstance, definitions: Definitions) -> list[LastRun]:
    names = [job.name for job in definitions.resolve_all_job_defs() if not job.name.startswith("__")]
    latest = {}
    for name in names:
        records = instance.get_run_records(filters=RunsFilter(job_name=name), limit=1)
        latest[name] = records[0] if records else None
    for record in instance.get_run_records(limit=RECENT_RUNS):  # newest first
        latest.setdefault(record.dagster_run.job_name, record)
    runs = []
    for name, record in latest.items():
        if record is None:
            runs.append(LastRun(name, None, "never run", None, None))
        else:
            runs.append(LastRun(name, record.dagster_run.run_id, record.dagster_run.status.value,
                                _time(record.start_time), _time(record.end_time)))
    return runs


def _when(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    return ["  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def format_status(status: InstanceStatus) -> str:
    lines = [f"Dagster instance: {status.home or '(ephemeral)'}", "", "Assets (partitions materialized):"]
    lines += _table(
        ["asset", "partitions", "first", "last", "last materialized"],
        [[a.asset, str(a.partitions) if a.partitioned else "unpartitioned", a.first or "-", a.last or "-",
          _when(a.last_materialized) if a.last_materialized else "never"] for a in status.assets],
    )
    lines += ["", f"Asset checks: {status.checks_evaluated} of {status.checks} evaluated; latest evaluation failed "
                  f"for {len(status.failed_checks)}" + (":" if status.failed_checks else ".")]
    lines += _table(
        ["asset", "check", "severity", "partition", "run", "at"],
        [[f.asset, f.check, f.severity, f.partition or "-", f.run_id[:8], _when(f.at)] for f in status.failed_checks],
    ) if status.failed_checks else []
    lines += ["", "Last run per job:"]
    lines += _table(
        ["job", "status", "run", "started", "ended"],
        [[r.job, r.status, r.run_id[:8] if r.run_id else "-", _when(r.started), _when(r.ended)] for r in status.runs],
    ) if status.runs else ["  no jobs"]
    return "\n".join(lines)


def report_status(repo_root: Path) -> str:
    """The status of the instance in DAGSTER_HOME (default: .dagster_home under `repo_root`, as `run` uses)."""
    from spy_pipeline.app.runner import ensure_dagster_home

    ensure_dagster_home(repo_root)
    with DagsterInstance.get() as instance:
        return format_status(collect_status(instance))
