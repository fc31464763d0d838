"""The `retention` job: plan (and, when asked, apply) the data dir's retention; a weekly schedule runs it.

Dry run by default, in the job and in the schedule: it lists what it would remove in the run's metadata. To
delete for real, launch the job with `dry_run: false` (Launchpad), or wire the schedule with
`build_retention_schedule(dry_run=False)`; the schedule's config is code, so unattended deletion is a reviewed
change, not a toggle in the UI.
"""

import datetime as dt

from dagster import (
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from spy_pipeline.defs.metadata import markdown_table
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.io.retention import (
    DEFAULT_RETENTION_DAYS,
    apply_retention,
    plan_retention,
    resolve_retention_days,
    summarize,
)
from spy_pipeline.io.storage_report import format_bytes

RETENTION_OP = "apply_retention"
LISTED_FILES = 200  # the metadata lists at most this many paths; the summary covers all


class RetentionConfig(Config):
    dry_run: bool = Field(default=True, description="Only list what would be removed (default). false deletes.")
    raw_days: int = Field(default=DEFAULT_RETENTION_DAYS["raw"], ge=1, description="Keep raw/ partitions this long")
    stream_days: int = Field(default=DEFAULT_RETENTION_DAYS["stream"], ge=1, description="stream/ micro-batches")
    processed_days: int = Field(default=DEFAULT_RETENTION_DAYS["processed"], ge=1, description="processed/")
    reports_days: int = Field(default=DEFAULT_RETENTION_DAYS["reports"], ge=1, description="reports/, by mtime")
    logs_days: int = Field(default=DEFAULT_RETENTION_DAYS["logs"], ge=1, description="logs/ and extra log roots")
    extra_log_roots: list[str] = Field(
        default_factory=list,
        description="Folders of log files outside the data dir, e.g. $DAGSTER_HOME/storage (Dagster's local "
        "compute logs: *.out, *.err, *.complete); aged by mtime with logs_days.",
    )
    today: str | None = Field(
        default=None,
        description="YYYY-MM-DD to age files against; takes effect only when earlier than today in New York.",
    )

    def days(self) -> dict[str, int]:
        return resolve_retention_days({
            "raw": self.raw_days, "stream": self.stream_days, "processed": self.processed_days,
            "reports": self.reports_days, "logs": self.logs_days,
        })


@op(name=RETENTION_OP, description="Remove (or, in a dry run, list) data files past retention; see "
    "spy_pipeline.io.retention for what is never removed.")
def retention_op(context: OpExecutionContext, config: RetentionConfig, store: ParquetStoreResource) -> dict:
    real_today = dt.datetime.now(cal.NEW_YORK).date()
    today = min(cal.parse_date(config.today), real_today) if config.today else real_today
    days = config.days()
    data_dir = store.local_root("retention")
    plan = plan_retention(data_dir, today, days, extra_log_roots=config.extra_log_roots)
    done = apply_retention(plan, dry_run=config.dry_run)
    files = [r for r in done if r.kind == "file"]
    removed_bytes = sum(r.bytes for r in files)
    verb = "would remove" if config.dry_run else "removed"
    context.log.info(f"retention {verb} {len(files)} files ({format_bytes(removed_bytes)}) and "
                     f"{len(done) - len(files)} folders under {data_dir}")
    summary = summarize(done)
    listed = sorted(done, key=lambda r: (r.category, r.relative))[:LISTED_FILES]
    context.add_output_metadata({
        "dry_run": config.dry_run,
        "today": today.isoformat(),
        "data_dir": MetadataValue.path(str(data_dir)),
        "retention_days": MetadataValue.json(days),
        "files": len(files),
        "folders": len(done) - len(files),
        "bytes": removed_bytes,
        "planned": len(plan),
        "by_dataset": markdown_table(
            ["category", "dataset", "files", "folders", "bytes", "oldest day", "newest day"],
            [[row["category"], row["dataset"], row["files"], row["folders"], format_bytes(row["bytes"]),
              row["oldest_day"] or "-", row["newest_day"] or "-"] for row in summary] or [["-"] * 7],
        ),
        "paths": markdown_table(
            ["path", "kind", "day", "age (days)", "bytes"],
            [[r.relative if r.dataset != str(r.root) else str(r.path), r.kind,
              r.day.isoformat() if r.day else f"mtime ({r.basis})", r.age_days, format_bytes(r.bytes)]
             for r in listed] or [["-"] * 5],
        ),
        "paths_listed": f"{len(listed)} of {len(done)}",
    })
    return {"dry_run": config.dry_run, "files": len(files), "folders": len(done) - len(files), "bytes": removed_bytes}


@job(name="retention", description="Data-dir retention per category (raw, stream, processed, reports, logs); "
     "a dry run unless run with dry_run: false.")
def retention_job() -> None:
    retention_op()


def build_retention_schedule(
    dry_run: bool = True,
    retention_days: dict[str, int] | None = None,
    name: str = "weekly_retention",
    cron_schedule: str = "0 3 * * 0",
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
) -> ScheduleDefinition:
    """The retention job every Sunday 03:00 New York time (markets closed, no backfill expected)."""
    days = resolve_retention_days(retention_days)
    config = {"dry_run": dry_run, **{f"{category}_days": value for category, value in days.items()}}
    return ScheduleDefinition(
        name=name,
        job=retention_job,
        cron_schedule=cron_schedule,
        execution_timezone=str(cal.NEW_YORK),
        run_config={"ops": {RETENTION_OP: {"config": config}}},
        default_status=default_status,
        description=("Weekly retention, " + ("a dry run: lists what it would remove" if dry_run else "DELETING")
                     + " (see the run's metadata)."),
    )


retention_schedule = build_retention_schedule()
