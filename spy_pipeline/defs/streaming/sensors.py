"""The streaming sensors: start a session before each open, watch its heartbeat, refresh the intraday view.

Thin shells over spy_pipeline.streaming.planning; each takes a `clock` so tests can set the market time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable

from dagster import (
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

from spy_pipeline import trading_calendar as cal
from spy_pipeline.defs.automation.sensors import utc_now
from spy_pipeline.defs.streaming.intraday_assets import INTRADAY_JOB
from spy_pipeline.defs.streaming.session_job import STREAM_DAY_TAG, STREAM_JOB
from spy_pipeline.logs import get_logger
from spy_pipeline.settings import load_settings
from spy_pipeline.streaming.intraday import landed_sources
from spy_pipeline.streaming.planning import (
    DEFAULT_INTRADAY_INTERVAL,
    DEFAULT_LEAD,
    DEFAULT_STALL,
    IntradayCursor,
    plan_intraday,
    plan_session_start,
    stall_reason,
)
from spy_pipeline.streaming.session import read_heartbeat

log = get_logger(__name__)
TRIGGER_TAG = "spy_pipeline/trigger"
# A session counts as started for the day unless its run failed or was canceled (then a new one may start).
STARTED_STATUSES = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                    DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS]


def new_york_day(now: dt.datetime) -> dt.date:
    return now.astimezone(cal.NEW_YORK).date()


def session_request(day: dt.date, run_key: str, trigger: str) -> RunRequest:
    return RunRequest(
        run_key=run_key, job_name=STREAM_JOB,
        run_config={"ops": {"stream_market_session": {"config": {"date": day.isoformat()}}}},
        tags={STREAM_DAY_TAG: day.isoformat(), TRIGGER_TAG: trigger},
    )


def build_market_open_sensor(
    *,
    name: str = "market_open_sensor",
    lead: dt.timedelta = DEFAULT_LEAD,
    minimum_interval_seconds: int = 60,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    clock: Callable[[], dt.datetime] = utc_now,
) -> SensorDefinition:
    @sensor(
        name=name, job_name=STREAM_JOB, minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"One stream_session run per trading day, from {lead.seconds // 60} min before the open until "
        "the close (none on weekends and holidays, none twice: cursor, run tags and run key).",
    )
    def _market_open(context: SensorEvaluationContext) -> SensorResult:
        now = clock()
        last = dt.date.fromisoformat(context.cursor) if context.cursor else None
        started = context.instance.get_runs_count(RunsFilter(
            job_name=STREAM_JOB, tags={STREAM_DAY_TAG: new_york_day(now).isoformat()}, statuses=STARTED_STATUSES,
        ))
        plan = plan_session_start(now, last, started, lead)
        context.log.info(plan.reason)
        if plan.day is None or plan.run_key is None:
            return SensorResult(skip_reason=plan.reason, cursor=context.cursor)
        return SensorResult(run_requests=[session_request(plan.day, plan.run_key, name)],
                            cursor=plan.day.isoformat())

    return _market_open


def _session_day(record: RunRecord) -> dt.date:
    run = record.dagster_run
    tagged = run.tags.get(STREAM_DAY_TAG)
    configured = (run.run_config or {}).get("ops", {}).get("stream_market_session", {}).get("config", {}).get("date")
    if tagged or configured:
        return dt.date.fromisoformat(tagged or configured)
    return new_york_day(dt.datetime.fromtimestamp(record.start_time or record.create_timestamp.timestamp(), dt.UTC))


def build_stream_health_sensor(
    *,
    name: str = "stream_health_sensor",
    stall: dt.timedelta = DEFAULT_STALL,
    restart: bool = True,
    minimum_interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING,
    clock: Callable[[], dt.datetime] = utc_now,
) -> SensorDefinition:
    @sensor(
        name=name, job_name=STREAM_JOB, minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"A running stream_session without a heartbeat for {stall.total_seconds():.0f} s is terminated "
        "and marked failed with the reason" + (", and restarted while the market is open." if restart else "."),
    )
    def _health(context: SensorEvaluationContext) -> SensorResult:
        now = clock()
        instance = context.instance
        root = load_settings().data_root
        requests = []
        running = instance.get_run_records(RunsFilter(job_name=STREAM_JOB, statuses=[DagsterRunStatus.STARTED]))
        for record in running:
            day = _session_day(record)
            started = dt.datetime.fromtimestamp(record.start_time, dt.UTC) if record.start_time else now
            reason = stall_reason(read_heartbeat(root, day), started, now, stall)
            if reason is None:
                continue
            run = record.dagster_run
            message = f"stream session {day} stalled: {reason}"
            context.log.warning(f"{run.run_id}: {message}")
            log.warning("stream_session_stalled", run=run.run_id, day=day.isoformat(), reason=reason)
            with contextlib.suppress(Exception):  # the process may be gone already: the failure is still recorded
                instance.run_launcher.terminate(run.run_id)
            instance.report_run_failed(run, message=message)
            if restart and now < cal.session_bounds(day).close:
                requests.append(session_request(day, f"stream-session-{day}-restart-{run.run_id}", name))
        if not requests:
            return SensorResult(skip_reason=f"{len(running)} running session(s), none stalled")
        return SensorResult(run_requests=requests)

    return _health


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
        description=f"Refreshes intraday_consolidated when today's session landed new micro-batches, at most every "
        f"{interval.total_seconds() / 60:g} min (today's, or the day a running simulated session replays).",
    )
    def _intraday(context: SensorEvaluationContext) -> SensorResult:
        now = clock()
        running = context.instance.get_run_records(
            RunsFilter(job_name=STREAM_JOB, statuses=[DagsterRunStatus.STARTED]), limit=1
        )
        day = _session_day(running[0]) if running else new_york_day(now)  # a simulation replays a past day
        files = sum(landed_sources(load_settings().data_root, day).values()) if cal.is_trading_day(day) else 0
        plan = plan_intraday(now, day, files, IntradayCursor.from_json(context.cursor), interval)
        context.log.info(plan.reason)
        if plan.day is None or plan.run_key is None:
            return SensorResult(skip_reason=plan.reason, cursor=plan.cursor.to_json())
        request = RunRequest(
            run_key=plan.run_key, job_name=INTRADAY_JOB, tags={TRIGGER_TAG: name},
            run_config={"ops": {"intraday_consolidated": {"config": {"date": plan.day.isoformat()}}}},
        )
        return SensorResult(run_requests=[request], cursor=plan.cursor.to_json())

    return _intraday


market_open_sensor = build_market_open_sensor()
stream_health_sensor = build_stream_health_sensor()
intraday_sensor = build_intraday_sensor()
