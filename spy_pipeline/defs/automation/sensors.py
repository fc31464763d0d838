"""Sensors: catch up missing trading days, keep reference data fresh, log failed runs in one line.

Thin shells: they read the instance (materialized partitions, a few run queries) and leave every decision to
spy_pipeline.domain.backfill_planning. A tick makes at most five small storage queries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence

from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    run_failure_sensor,
    sensor,
)
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES, RunRecord
from dagster._core.storage.tags import RUN_KEY_TAG

from spy_pipeline.defs.automation.schedules import DAILY_JOB, TRIGGER_TAG
from spy_pipeline.domain.backfill_planning import (
    DEFAULT_CATCH_UP_GRACE,
    DEFAULT_CATCH_UP_INTERVAL,
    DEFAULT_COOL_DOWN,
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_MAX_FAILURES,
    FAILURE_MEMORY,
    CatchUpCursor,
    DayRange,
    RunInfo,
    failure_fields,
    failure_line,
    plan_catch_up,
    plan_reference_refresh,
)
from spy_pipeline.logs import get_logger, redact

log = get_logger(__name__)

REFERENCE_JOB = "reference_data"
REFERENCE_ASSET = "corporate_actions"
# A day is complete when these assets have its partition: consolidated is the end of the raw -> processed chain.
COMPLETION_ASSETS = ("consolidated",)
FAILED_STATUSES = [DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]
INTERVAL_SECONDS = int(DEFAULT_CATCH_UP_INTERVAL.total_seconds())


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _run_info(record: RunRecord) -> RunInfo:
    run = record.dagster_run
    if run.status == DagsterRunStatus.SUCCESS:
        state = "succeeded"
    elif run.status in FAILED_STATUSES:
        state = "failed"
    else:
        state = "in_flight"
    ended = dt.datetime.fromtimestamp(record.end_time, dt.UTC) if record.end_time else record.update_timestamp
    return RunInfo(run.run_id, state, DayRange.from_tags(run.tags), run.tags.get(RUN_KEY_TAG), ended)


def job_runs(instance: DagsterInstance, job: str, now: dt.datetime, run_keys: Sequence[str] = ()) -> list[RunInfo]:
    """The job's runs in flight, those that failed within FAILURE_MEMORY, and those with one of `run_keys`."""
    queries = [
        RunsFilter(job_name=job, statuses=NOT_FINISHED_STATUSES),
        RunsFilter(job_name=job, statuses=FAILED_STATUSES, updated_after=now - FAILURE_MEMORY),
    ]
    if run_keys:
        queries.append(RunsFilter(job_name=job, tags={RUN_KEY_TAG: list(run_keys)}))
    records = {r.dagster_run.run_id: r for query in queries for r in instance.get_run_records(query, limit=200)}
    return [_run_info(record) for record in records.values()]


def complete_partitions(instance: DagsterInstance, assets: Iterable[str]) -> set[str]:
    """Partition keys materialized for every one of `assets`."""
    sets = [instance.get_materialized_partitions(AssetKey(name)) for name in assets]
    return set.intersection(*sets) if sets else set()


def build_catch_up_sensor(
    *,
    name: str = "catch_up_sensor",
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    minimum_interval_seconds: int = INTERVAL_SECONDS,
    grace: dt.timedelta = DEFAULT_CATCH_UP_GRACE,
    cool_down: dt.timedelta = DEFAULT_COOL_DOWN,
    max_failures: int = DEFAULT_MAX_FAILURES,
    completion_assets: Sequence[str] = COMPLETION_ASSETS,
    require_reference: bool = True,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    clock: Callable[[], dt.datetime] = utc_now,
) -> SensorDefinition:
    """The safety net: one daily_backfill run over the missing days of the last `lookback_days` trading
    days (a laptop off for a week gets one run for the week). See backfill_planning.plan_catch_up."""
    if lookback_days < 1:
        raise ValueError(f"lookback_days must be at least 1, got {lookback_days}")

    @sensor(
        name=name,
        job_name=DAILY_JOB,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Every {minimum_interval_seconds // 60} min: one daily_backfill run over the days of the "
        f"last {lookback_days} trading days that lack {', '.join(completion_assets)} (not in flight, not "
        "cooling down after a failure).",
    )
    def _catch_up(context: SensorEvaluationContext) -> SensorResult:
        now = clock()
        instance = context.instance
        cursor = CatchUpCursor.from_json(context.cursor)
        reference_ready = (
            not require_reference or instance.get_latest_materialization_event(AssetKey(REFERENCE_ASSET)) is not None
        )
        plan = plan_catch_up(
            now,
            materialized=complete_partitions(instance, completion_assets),
            runs=job_runs(instance, DAILY_JOB, now, cursor.run_keys()),
            cursor=cursor,
            lookback_days=lookback_days,
            grace=grace,
            cool_down=cool_down,
            max_failures=max_failures,
            reference_ready=reference_ready,
        )
        context.log.info(plan.reason)
        if plan.request is None or plan.run_key is None:
            return SensorResult(skip_reason=plan.reason, cursor=plan.cursor.to_json())
        request = RunRequest(run_key=plan.run_key, tags={**plan.request.tags(), TRIGGER_TAG: name})
        return SensorResult(run_requests=[request], cursor=plan.cursor.to_json())

    return _catch_up


def build_reference_sensor(
    *,
    name: str = "reference_refresh_sensor",
    minimum_interval_seconds: int = INTERVAL_SECONDS,
    cool_down: dt.timedelta = DEFAULT_COOL_DOWN,
    max_failures: int = DEFAULT_MAX_FAILURES,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    clock: Callable[[], dt.datetime] = utc_now,
) -> SensorDefinition:
    """reference_data once a week: when corporate_actions is older than the latest Sunday 12:00 ET, or was
    never materialized (a fresh instance: the catch-up sensor waits for it). Cursor: last request time."""

    @sensor(
        name=name,
        job_name=REFERENCE_JOB,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Weekly reference_data refresh (dividends, splits): Sunday 12:00 ET or the first tick after; "
        "at once when corporate_actions was never materialized.",
    )
    def _reference(context: SensorEvaluationContext) -> SensorResult:
        now = clock()
        instance = context.instance
        event = instance.get_latest_materialization_event(AssetKey(REFERENCE_ASSET))
        try:
            last_requested = dt.datetime.fromisoformat(context.cursor) if context.cursor else None
        except ValueError:
            last_requested = None
        plan = plan_reference_refresh(
            now,
            last_materialized=dt.datetime.fromtimestamp(event.timestamp, dt.UTC) if event else None,
            runs=job_runs(instance, REFERENCE_JOB, now),
            last_requested=last_requested,
            cool_down=cool_down,
            max_failures=max_failures,
        )
        context.log.info(plan.reason)
        if not plan.request or plan.run_key is None:
            return SensorResult(skip_reason=plan.reason, cursor=context.cursor)
        request = RunRequest(run_key=plan.run_key, tags={TRIGGER_TAG: name})
        return SensorResult(run_requests=[request], cursor=now.isoformat())

    return _reference


@run_failure_sensor(
    name="run_failure_logger",
    default_status=DefaultSensorStatus.RUNNING,
    description="Logs every failed run of this code location in one structured line: job, partitions, the "
    "first failing step and the first line of its error.",
)
def run_failure_logger(context: RunFailureSensorContext) -> None:
    run = context.dagster_run
    step_errors = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        cause = (error.cause or error) if error else None  # the user's exception, not Dagster's wrapper
        step_errors.append((event.step_key or "?", cause.message if cause else ""))
    fields = failure_fields(
        job=run.job_name,
        run_id=run.run_id,
        tags=run.tags,
        step_errors=step_errors,
        run_message=context.failure_event.message,
    )
    fields = {key: redact(value) for key, value in fields.items()}
    context.log.error(failure_line(fields))
    log.error("run_failed", **fields)


catch_up_sensor = build_catch_up_sensor()
reference_refresh_sensor = build_reference_sensor()
