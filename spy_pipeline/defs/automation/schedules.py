"""The nightly schedule: one `daily_backfill` run for the trading day that just ended.

It ticks at 00:30 New York time, Tuesday to Saturday, not at 20:30 the same evening: a run over a day's
partition before 00:00 ET the next day records its materializations without a partition (the partition
does not exist yet for Dagster), so the day would look missing. See spy_pipeline.domain.backfill_planning.

Ticks missed while the daemon was down are not replayed one by one: Dagster evaluates only the latest missed
tick of a schedule that is not built from a partition set (dagster/_scheduler/scheduler.py, 1.13). The
catch-up sensor fetches the other missing days, in one run.
"""

from __future__ import annotations

import datetime as dt

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from spy_pipeline.domain.backfill_planning import NEW_YORK, NIGHTLY_CRON, nightly_decision

DAILY_JOB = "daily_backfill"
TRIGGER_TAG = "spy_pipeline/trigger"


def build_nightly_schedule(
    *,
    name: str = "after_close_schedule",
    cron_schedule: str = NIGHTLY_CRON,
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.RUNNING,
) -> ScheduleDefinition:
    """Each tick fetches the calendar day that ended at the last New York midnight, if it was a trading day
    (a SkipReason says why not otherwise). run_key = the date: a tick evaluated twice launches one run."""

    @schedule(
        name=name,
        job_name=DAILY_JOB,
        cron_schedule=cron_schedule,
        execution_timezone=str(NEW_YORK),
        default_status=default_status,
        description="Nightly (00:30 ET, Tue-Sat): one daily_backfill run for the trading day that just ended; "
        "skips weekends, holidays and unscheduled closures.",
    )
    def _nightly(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        decision = nightly_decision(tick)
        if decision.request is None:
            return SkipReason(decision.reason)
        return RunRequest(run_key=decision.run_key, tags={**decision.request.tags(), TRIGGER_TAG: name})

    return _nightly


after_close_schedule = build_nightly_schedule()
