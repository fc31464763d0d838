"""The streaming sensors: start a session before each open, watch its heartbeat, refresh the intraday view.

Thin shells over spy_pipeline.streaming.planning; each takes a `clock` so tests can set the market time.
intraday_sensor stays a sensor, not an automation condition: a landed micro-batch file is not a Dagster event
(the session writes files, not materializations), so something has to look at the files.
Both the health and intraday sensors read the `store` resource's data dir, the one the session writes to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)
from dagster._core.storage.dagster_run import RunRecord

from spy_pipeline.defs.alerts import NotifierResource
from spy_pipeline.defs.automation.sensors import utc_now
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.defs.streaming.intraday_assets import INTRADAY_JOB
from spy_pipeline.defs.streaming.session_job import STREAM_DAY_TAG, STREAM_JOB
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.io.alerts import Alert, session_stalled_alert
from spy_pipeline.logs import get_logger
from spy_pipeline.settings import load_settings
from spy_pipeline.streaming.intraday import landed_sources
from spy_pipeline.streaming.planning import (
    DEFAULT_INTRADAY_INTERVAL,
    DEFAULT_LEAD,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_STALL,
    IntradayCursor,
    RunState,
    dump_day_cursors,
    load_day_cursors,
    plan_intraday,
    plan_session_start,
    stall_reason,
)
from spy_pipeline.streaming.session import read_heartbeat

log = get_logger(__name__)
TRIGGER_TAG = "spy_pipeline/trigger"
STALLED_TAG = "spy_pipeline/stalled"
ACTIVE_STATUSES = {DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                   DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}


def session_request(day: dt.date, run_key: str, trigger: str) -> RunRequest:
    return RunRequest(
        run_key=run_key, job_name=STREAM_JOB,
        run_config={"ops": {"stream_market_session": {"config": {"date": day.isoformat()}}}},
        tags={STREAM_DAY_TAG: day.isoformat(), TRIGGER_TAG: trigger},
    )


def run_state(run: DagsterRun) -> RunState:
    if run.status in ACTIVE_STATUSES:
        return "active"
    if run.status == DagsterRunStatus.FAILURE or STALLED_TAG in run.tags:
        return "failed"
    return "done"  # succeeded, or canceled by a user


def build_market_open_sensor(
    *,
    name: str = "market_open_sensor",
    lead: dt.timedelta = DEFAULT_LEAD,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    minimum_interval_seconds: int = 60,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    clock: Callable[[], dt.datetime] = utc_now,
) -> SensorDefinition:
    @sensor(
        name=name, job_name=STREAM_JOB, minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"One stream_session run per trading day, from {lead.seconds // 60} min before the open until "
        f"the close (none on weekends and holidays); a failed or stalled session is started again, up to "
        f"{max_attempts} times. State: the runs tagged {STREAM_DAY_TAG}, run keys per attempt.",
    )
    def _market_open(context: SensorEvaluationContext) -> SensorResult:
        now = clock()
        day = cal.new_york_date(now).isoformat()
        runs = context.instance.get_runs(RunsFilter(job_name=STREAM_JOB, tags={STREAM_DAY_TAG: day}))
        plan = plan_session_start(now, [run_state(run) for run in runs], lead, max_attempts)
        context.log.info(plan.reason)
        if plan.day is None or plan.run_key is None:
            return SensorResult(skip_reason=plan.reason)
        return SensorResult(run_requests=[session_request(plan.day, plan.run_key, name)])

    return _market_open


def running_sessions(instance: DagsterInstance) -> list[RunRecord]:
    return list(instance.get_run_records(RunsFilter(job_name=STREAM_JOB, statuses=[DagsterRunStatus.STARTED]),
                                         limit=50))


def _session_day(record: RunRecord) -> dt.date:
    run = record.dagster_run
    tagged = run.tags.get(STREAM_DAY_TAG)
    configured = (run.run_config or {}).get("ops", {}).get("stream_market_session", {}).get("config", {}).get("date")
    if tagged or configured:
        return dt.date.fromisoformat(tagged or configured)
    return cal.new_york_date(_run_started(record))


def build_stream_health_sensor(
    *,
    name: str = "stream_health_sensor",
    stall: dt.timedelta = DEFAULT_STALL,
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    clock: Callable[[], dt.datetime] = utc_now,
) -> SensorDefinition:
    @sensor(
        name=name, minimum_interval_seconds=minimum_interval_seconds, default_status=default_status,
        description=f"A running stream_session without a heartbeat for {stall.total_seconds():.0f} s is tagged "
        f"{STALLED_TAG} with the reason and terminated (marked failed if its process is gone); "
        "market_open_sensor then starts a new one while the market is open.",
    )
    def _health(
        context: SensorEvaluationContext, store: ParquetStoreResource, notifier: NotifierResource
    ) -> SensorResult:
        now = clock()
        instance = context.instance
        root = store.data_root
        running = running_sessions(instance)
        stalled: list[Alert] = []
        for record in running:
            day = _session_day(record)
            started = _run_started(record)
            reason = stall_reason(read_heartbeat(root, day), started, now, stall)
            if reason is None:
                continue
            run = record.dagster_run
            stalled.append(session_stalled_alert(day=day.isoformat(), run_id=run.run_id, reason=reason,
                                                 ui_url=load_settings().ui_url))
            message = f"stream session {day} stalled: {reason}"
            context.log.warning(f"{run.run_id}: {message}")
            log.warning("stream_session_stalled", run=run.run_id, day=day.isoformat(), reason=reason)
            instance.add_run_tags(run.run_id, {STALLED_TAG: reason})
            instance.report_engine_event(message, run)
            if not _terminate(instance, run.run_id):  # no process to stop: record the failure ourselves
                instance.report_run_failed(run, message=message)
        if stalled:
            notifier.send(instance, stalled, context.log)
        return SensorResult(skip_reason=f"{len(running)} running session(s), {len(stalled)} stalled")

    return _health


def _run_started(record: RunRecord) -> dt.datetime:
    if record.start_time:
        return dt.datetime.fromtimestamp(record.start_time, dt.UTC)
    created = record.create_timestamp
    return created if created.tzinfo else created.replace(tzinfo=dt.UTC)


def _terminate(instance: DagsterInstance, run_id: str) -> bool:
    try:
        return bool(instance.run_launcher.terminate(run_id))
    except Exception as exc:  # a launcher that cannot terminate (or a run without a process)
        log.warning("stream_session_terminate_failed", run=run_id, error=repr(exc))
        return False


def build_intraday_sensor(
    *,
    name: str = "intraday_sensor",
    interval: dt.timedelta = DEFAULT_INTRADAY_INTERVAL,
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    clock: Callable[[], dt.datetime] = utc_now,
) -> SensorDefinition:
    @sensor(
        name=name, job_name=INTRADAY_JOB, minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Refreshes intraday_consolidated (partition: the day) when a session landed new micro-batches, "
        f"at most every {interval.total_seconds() / 60:g} min per day (today's, and the day of every running "
        "session: a simulation replays a past day).",
    )
    def _intraday(context: SensorEvaluationContext, store: ParquetStoreResource) -> SensorResult:
        now = clock()
        running = running_sessions(context.instance)
        # today, and the day of every running session (a simulation replays a past day)
        days = sorted({cal.new_york_date(now), *(_session_day(record) for record in running)})
        cursors = load_day_cursors(context.cursor)
        root = store.data_root
        requests, reasons, kept = [], [], {}
        for day in days:
            files = sum(landed_sources(root, day).values()) if cal.is_trading_day(day) else 0
            plan = plan_intraday(now, day, files, cursors.get(day.isoformat(), IntradayCursor()), interval)
            kept[day.isoformat()] = plan.cursor
            reasons.append(plan.reason)
            if plan.day is not None and plan.run_key is not None:
                requests.append(RunRequest(run_key=plan.run_key, job_name=INTRADAY_JOB,
                                           partition_key=plan.day.isoformat(), tags={TRIGGER_TAG: name}))
        context.log.info("; ".join(reasons))
        cursor = dump_day_cursors(kept)
        if not requests:
            return SensorResult(skip_reason="; ".join(reasons), cursor=cursor)
        return SensorResult(run_requests=requests, cursor=cursor)

    return _intraday


market_open_sensor = build_market_open_sensor()
stream_health_sensor = build_stream_health_sensor()
intraday_sensor = build_intraday_sensor()
