"""The after-close compaction of a streaming day: one file per source, reconciled with REST, and a last news poll.

REST only holds a day's after-hours once they are over, so a live session's compaction waits for
`stream_compaction_schedule` (20:15 ET on trading days); a replayed past day is compacted by the
stream_session run itself.
"""

import datetime as dt
import time

from dagster import (
    Config,
    DefaultScheduleStatus,
    OpExecutionContext,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    job,
    op,
    schedule,
)
from pydantic import Field

from spy_pipeline.defs.metadata import markdown_table, timing
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import OPTIONS_CONTRACTS
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.streaming.intraday import compact_session_day, contracts_path
from spy_pipeline.streaming.news_poll import NewsPoller

COMPACTION_JOB = "stream_compaction"
NEWS_TICKERS = ("SPY",)


def rest_day_complete(day: dt.date, now: dt.datetime | None = None) -> bool:
    """True once the day's after-hours session is over (REST then has the whole day)."""
    return (now or dt.datetime.now(dt.UTC)) >= cal.session_bounds(day).after_hours_close


def compact_and_report(
    context: OpExecutionContext, client: PolygonClient, store: ParquetStoreResource, day: dt.date
) -> None:
    started = time.monotonic()
    root = store.data_root
    contracts = tuple(root.read_partition(contracts_path(root, day), OPTIONS_CONTRACTS)["ticker"].to_list())
    late_news = NewsPoller(client, root, day, NEWS_TICKERS).poll(cal.session_bounds(day).after_hours_close)
    compacted = compact_session_day(root, client, day, contracts)
    rows = [[c.source, store.relative(c.path), c.rows, c.landed, c.missing, c.mismatched, c.extra]
            for c in compacted]
    context.log.info(f"{day}: compacted {len(compacted)} sources, {late_news} late news articles")
    context.add_output_metadata({
        "day": day.isoformat(),
        "reconciliation": markdown_table(
            ["source", "file", "rows (= REST)", "landed by the session", "not landed", "revised by REST", "extra"], rows
        ),
        "landed_share": round(sum(c.landed for c in compacted) / max(1, sum(c.rows for c in compacted)), 4),
        "late_news_articles": late_news,
        **timing(started, sum(c.rows for c in compacted)),
    })


class CompactionConfig(Config):
    date: str = Field(description="The streamed trading day to compact, YYYY-MM-DD")


@op(description="One file per source of a streamed day, reconciled with REST; a last news poll.")
def compact_streamed_day(
    context: OpExecutionContext, config: CompactionConfig, polygon: PolygonResource, store: ParquetStoreResource
) -> None:
    day = cal.require_trading_day(cal.parse_date(config.date))
    if not rest_day_complete(day):
        raise ValueError(f"{day}'s after-hours session is not over yet: REST does not have the whole day")
    compact_and_report(context, polygon.client, store, day)


@job(name=COMPACTION_JOB, description="After a streamed day's after-hours: compaction reconciled with REST.")
def stream_compaction_job() -> None:
    compact_streamed_day()


@schedule(
    name="stream_compaction_schedule",
    job_name=COMPACTION_JOB,
    cron_schedule="15 20 * * 1-5",
    execution_timezone="America/New_York",
    default_status=DefaultScheduleStatus.RUNNING,
    description="20:15 ET on trading days that were streamed: compact the day's micro-batches, reconciled with REST.",
)
def stream_compaction_schedule(
    context: ScheduleEvaluationContext, store: ParquetStoreResource
) -> RunRequest | SkipReason:
    tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    day = cal.new_york_date(tick)
    if not cal.is_trading_day(day):
        return SkipReason(f"{day} is not a trading day")
    root = store.data_root  # where the sessions and the compaction op write, not necessarily the env's data dir
    if not root.exists(contracts_path(root, day)):
        return SkipReason(f"{day} was not streamed")
    return RunRequest(run_key=f"stream-compaction-{day}",
                      run_config={"ops": {"compact_streamed_day": {"config": {"date": day.isoformat()}}}})
