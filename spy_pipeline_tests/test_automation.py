"""Unattended operation: the nightly schedule, the catch-up and reference sensors, failure logging."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from dagster import (
    AssetMaterialization,
    BackfillPolicy,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    MaterializeResult,
    RunRequest,
    SensorResult,
    SkipReason,
    asset,
    build_run_status_sensor_context,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
    job,
    materialize,
    op,
)
from dagster._core.events import DagsterEventType
from dagster._core.storage import tags as dagster_tags
from dagster._core.test_utils import freeze_time
from structlog.testing import capture_logs

from spy_pipeline.defs.automation import (
    POLYGON_RETRY_POLICY,
    SCHEDULES,
    SENSORS,
    after_close_schedule,
    build_catch_up_sensor,
    build_reference_sensor,
    catch_up_sensor,
    run_failure_logger,
)
from spy_pipeline.domain import backfill_planning as bp
from spy_pipeline.domain import trading_calendar as cal

NY = cal.NEW_YORK
START, END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def et(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


@pytest.fixture(scope="module")
def definitions() -> Definitions:
    """The code location's assets and jobs with this package's schedules and sensors (built from the parts, so
    that it keeps working once spy_pipeline.definitions wires them itself)."""
    from spy_pipeline import definitions as location

    return Definitions(
        assets=[*location.DAILY_ASSETS, *location.REFERENCE_ASSETS, *location.REPORT_ASSETS],
        jobs=[location.daily_backfill_job, location.reference_data_job, location.reports_job],
        resources=location.defs.resources,
        schedules=SCHEDULES,
        sensors=SENSORS,
    )


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


# --- the nightly schedule -------------------------------------------------------------------------------


def test_schedule_is_nightly_in_new_york_and_running() -> None:
    assert after_close_schedule.job_name == "daily_backfill"
    assert after_close_schedule.cron_schedule == "30 0 * * 2-6"
    assert after_close_schedule.execution_timezone == "America/New_York"
    assert after_close_schedule.default_status == DefaultScheduleStatus.RUNNING


@pytest.mark.parametrize(
    ("tick", "day"),
    [
        (et(2025, 1, 9, 0, 30), "2025-01-08"),  # Wednesday's data, the night after
        (et(2024, 11, 30, 0, 30), "2024-11-29"),  # early close (13:00) the day after Thanksgiving
        (et(2025, 1, 11, 0, 30), "2025-01-10"),  # the Saturday tick fetches Friday
    ],
)
def test_schedule_requests_exactly_the_day_that_ended(tick: dt.datetime, day: str) -> None:
    result = after_close_schedule(build_schedule_context(scheduled_execution_time=tick))
    assert isinstance(result, RunRequest)
    assert result.run_key == day
    assert result.tags[START] == result.tags[END] == day


@pytest.mark.parametrize(
    ("tick", "words"),
    [
        (et(2025, 1, 10, 0, 30), ["2025-01-09", "unscheduled closure"]),  # national day of mourning
        (et(2025, 1, 12, 0, 30), ["2025-01-11 is a Saturday"]),
        (et(2025, 12, 26, 0, 30), ["2025-12-25", "Christmas"]),
    ],
)
def test_schedule_skips_days_without_a_session_and_says_why(tick: dt.datetime, words: list[str]) -> None:
    result = after_close_schedule(build_schedule_context(scheduled_execution_time=tick))
    assert isinstance(result, SkipReason)
    assert all(word in result.skip_message for word in words)


def test_nightly_ticks_fetch_every_trading_day_exactly_once() -> None:
    requested = []
    day = dt.date(2024, 1, 1)
    while day <= dt.date(2025, 12, 31):
        if day.isoweekday() in (2, 3, 4, 5, 6):  # the cron's Tuesday to Saturday
            decision = bp.nightly_decision(dt.datetime.combine(day, dt.time(0, 30), tzinfo=NY))
            if decision.request:
                requested.append(decision.request.start)
        day += dt.timedelta(days=1)
    assert requested == cal.trading_days("2023-12-31", "2025-12-30")


def test_a_day_is_ready_only_once_its_partition_exists() -> None:
    assert bp.ready_at(dt.date(2025, 1, 8)) == et(2025, 1, 9, 0, 0)
    assert bp.ready_at(dt.date(2024, 11, 29)) == et(2024, 11, 30, 0, 0)  # after-hours ended at 17:00
    same_evening = bp.nightly_decision(et(2025, 1, 8, 20, 30))
    assert same_evening.day == dt.date(2025, 1, 7)  # never the day that has not ended


def _probe_asset(start_date: str):
    partitions = DailyPartitionsDefinition(start_date=start_date, timezone="America/New_York",
                                           exclusions=["0 0 * * 6,0"])

    @asset(partitions_def=partitions, backfill_policy=BackfillPolicy.single_run())
    def probe() -> MaterializeResult:
        return MaterializeResult()

    return probe


def test_dagster_records_no_partition_for_a_day_that_has_not_ended(instance: DagsterInstance) -> None:
    """Why the schedule runs after midnight: pins Dagster's behaviour. A distinct partitions definition for each
    moment, as Dagster caches partition keys per (equal) definition on first use."""
    day = {START: "2025-01-08", END: "2025-01-08"}
    with freeze_time(et(2025, 1, 8, 20, 30)):
        evening = materialize([_probe_asset("2025-01-02")], instance=instance, tags=day)
    with freeze_time(et(2025, 1, 9, 0, 30)):
        night = materialize([_probe_asset("2025-01-03")], instance=instance, tags=day)
    assert [m.partition for m in evening.asset_materializations_for_node("probe")] == [None]
    assert [m.partition for m in night.asset_materializations_for_node("probe")] == ["2025-01-08"]


# --- the catch-up sensor --------------------------------------------------------------------------------

# Friday 2025-01-17 at noon: the window is the 10 trading days up to Thursday 01-16 (01-09 was closed).
NOON = et(2025, 1, 17, 12, 0)
WINDOW = cal.last_trading_days("2025-01-16", 10)


def _materialize(instance: DagsterInstance, *days: str, asset_key: str = "consolidated") -> None:
    for day in days:
        instance.report_runless_asset_event(AssetMaterialization(asset_key=asset_key, partition=day))


def _with_reference(instance: DagsterInstance) -> None:
    instance.report_runless_asset_event(AssetMaterialization(asset_key="corporate_actions"))


def _tick(sensor, instance: DagsterInstance, definitions: Definitions, cursor: str | None = None) -> SensorResult:
    result = sensor(build_sensor_context(instance=instance, cursor=cursor, definitions=definitions))
    assert isinstance(result, SensorResult)
    return result


def _sensor_at(moment: dt.datetime, **kwargs):
    return build_catch_up_sensor(clock=lambda: moment, **kwargs)


def _run(
    instance: DagsterInstance,
    start: str | None,
    end: str | None,
    status: DagsterRunStatus,
    at: dt.datetime,
    run_key: str | None = None,
    job_name: str = "daily_backfill",
) -> str:
    """A run as the daemon would have created it, finished (or not) at `at`."""
    tags = {START: start, END: end} if start and end else {}
    tags |= {dagster_tags.RUN_KEY_TAG: run_key} if run_key else {}
    run = DagsterRun(job_name=job_name, run_id=str(uuid.uuid4()), tags=tags, status=DagsterRunStatus.NOT_STARTED)
    with freeze_time(at):
        instance.add_run(run)
        if status == DagsterRunStatus.STARTED:
            instance.handle_run_event(run.run_id, _event(DagsterEventType.RUN_START, job_name), at)
        elif status == DagsterRunStatus.FAILURE:
            instance.report_run_failed(run, "step raw_spy_bars failed: PolygonUnavailableError")
    return run.run_id


def _event(kind: DagsterEventType, job_name: str):
    from dagster._core.events import DagsterEvent

    return DagsterEvent(event_type_value=kind.value, job_name=job_name)


def test_catch_up_defaults() -> None:
    assert catch_up_sensor.job_name == "daily_backfill"
    assert catch_up_sensor.minimum_interval_seconds == 30 * 60
    assert catch_up_sensor.default_status == DefaultSensorStatus.RUNNING
    assert len(WINDOW) == 10 and WINDOW[0] == dt.date(2025, 1, 2)


def test_catch_up_requests_one_run_over_the_gap_then_not_again(instance, definitions) -> None:
    _with_reference(instance)
    _materialize(instance, "2025-01-02", "2025-01-03", "2025-01-06", "2025-01-07", "2025-01-08", "2025-01-10",
                 "2025-01-14")  # missing: 13, 15, 16

    first = _tick(_sensor_at(NOON), instance, definitions)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert (request.tags[START], request.tags[END]) == ("2025-01-13", "2025-01-16")
    assert request.run_key == "catch-up:2025-01-13..2025-01-16@2025-01-17T17:00Z"

    # the next tick, before the daemon's run shows up: nothing new
    again = _tick(_sensor_at(NOON + dt.timedelta(minutes=1)), instance, definitions, first.cursor)
    assert not again.run_requests and "still in flight" in again.skip_reason.skip_message

    # the daemon created the run and it is going: still nothing, and the cursor learns its id
    run_id = _run(instance, "2025-01-13", "2025-01-16", DagsterRunStatus.STARTED, NOON, run_key=request.run_key)
    later = _tick(_sensor_at(NOON + dt.timedelta(minutes=30)), instance, definitions, again.cursor)
    assert not later.run_requests and run_id in later.skip_reason.skip_message
    assert run_id in later.cursor


def test_a_failed_catch_up_run_is_requested_again_after_the_cool_down(instance, definitions) -> None:
    _with_reference(instance)
    _materialize(instance, *[d.isoformat() for d in WINDOW[:5]])  # missing: 01-10 .. 01-16
    first = _tick(_sensor_at(NOON), instance, definitions)
    request = first.run_requests[0]
    assert (request.tags[START], request.tags[END]) == ("2025-01-10", "2025-01-16")

    failed_at = NOON + dt.timedelta(minutes=20)
    run_id = _run(instance, "2025-01-10", "2025-01-16", DagsterRunStatus.FAILURE, failed_at, run_key=request.run_key)

    cooling = _tick(_sensor_at(failed_at + dt.timedelta(minutes=30)), instance, definitions, first.cursor)
    assert not cooling.run_requests
    assert "cooling down" in cooling.skip_reason.skip_message and run_id in cooling.skip_reason.skip_message

    retry = _tick(_sensor_at(failed_at + dt.timedelta(minutes=61)), instance, definitions, cooling.cursor)
    assert len(retry.run_requests) == 1
    # a day that failed before goes alone, so that one bad day cannot hold the week back
    assert (retry.run_requests[0].tags[START], retry.run_requests[0].tags[END]) == ("2025-01-10", "2025-01-10")
    assert retry.run_requests[0].run_key != request.run_key


def test_a_day_that_keeps_failing_is_paused(instance, definitions) -> None:
    _with_reference(instance)
    _materialize(instance, *[d.isoformat() for d in WINDOW if d != dt.date(2025, 1, 15)])
    for hours in (1, 3, 5):
        _run(instance, "2025-01-15", "2025-01-15", DagsterRunStatus.FAILURE, NOON - dt.timedelta(hours=hours))
    result = _tick(_sensor_at(NOON), instance, definitions)
    assert not result.run_requests and "3 failed runs" in result.skip_reason.skip_message
    # a day later those failures have aged out: tried again
    resumed = _tick(_sensor_at(NOON + dt.timedelta(hours=24)), instance, definitions)
    assert [r.tags[START] for r in resumed.run_requests] == ["2025-01-15"]


def test_no_gap_is_a_skip(instance, definitions) -> None:
    _with_reference(instance)
    _materialize(instance, *[d.isoformat() for d in WINDOW])
    result = _tick(_sensor_at(NOON), instance, definitions)
    assert not result.run_requests
    assert "no gap" in result.skip_reason.skip_message


def test_today_waits_for_its_partition_and_the_nightly_run(instance, definitions) -> None:
    _with_reference(instance)
    # only 01-16 missing (and the window is a day earlier before 01:30, from 2024-12-31)
    _materialize(instance, *[d.isoformat() for d in cal.last_trading_days("2025-01-15", 11)])
    # 01:00 ET on the 17th: 01-16 exists as a partition, but the nightly run (00:30) gets 90 minutes first
    early = _tick(_sensor_at(et(2025, 1, 17, 1, 0)), instance, definitions)
    assert not early.run_requests and "no gap" in early.skip_reason.skip_message
    late = _tick(_sensor_at(et(2025, 1, 17, 1, 31)), instance, definitions)
    assert [(r.tags[START], r.tags[END]) for r in late.run_requests] == [("2025-01-16", "2025-01-16")]


def test_days_in_flight_in_another_run_are_left_alone(instance, definitions) -> None:
    _with_reference(instance)
    _materialize(instance, *[d.isoformat() for d in WINDOW[:7]])  # missing: 01-14, 01-15, 01-16
    scheduled = _run(instance, "2025-01-16", "2025-01-16", DagsterRunStatus.STARTED, NOON, run_key="2025-01-16")
    result = _tick(_sensor_at(NOON), instance, definitions)
    assert [(r.tags[START], r.tags[END]) for r in result.run_requests] == [("2025-01-14", "2025-01-15")]
    assert scheduled not in result.cursor  # not this sensor's run


def test_a_fresh_instance_waits_for_reference_data(instance, definitions) -> None:
    result = _tick(_sensor_at(NOON), instance, definitions)
    assert not result.run_requests and "reference_data" in result.skip_reason.skip_message
    _with_reference(instance)
    result = _tick(_sensor_at(NOON), instance, definitions)
    assert [(r.tags[START], r.tags[END]) for r in result.run_requests] == [("2025-01-02", "2025-01-16")]


def test_the_window_is_a_knob(instance, definitions) -> None:
    _with_reference(instance)
    result = _tick(_sensor_at(NOON, lookback_days=3), instance, definitions)
    assert [(r.tags[START], r.tags[END]) for r in result.run_requests] == [("2025-01-14", "2025-01-16")]


def test_an_unreadable_cursor_is_a_fresh_start(instance, definitions) -> None:
    _with_reference(instance)
    _materialize(instance, *[d.isoformat() for d in WINDOW[:-1]])
    result = _tick(_sensor_at(NOON), instance, definitions, cursor="{not json")
    assert [r.tags[START] for r in result.run_requests] == ["2025-01-16"]
    assert bp.CatchUpCursor.from_json(result.cursor).requests[0].start == "2025-01-16"


def test_cursor_round_trips() -> None:
    cursor = bp.CatchUpCursor((bp.PendingRequest("k", "2025-01-02", "2025-01-03", NOON.isoformat(), "r1"),))
    assert bp.CatchUpCursor.from_json(cursor.to_json()) == cursor
    assert bp.CatchUpCursor.from_json('{"version": 99, "requests": []}') == bp.CatchUpCursor()
    garbled = bp.CatchUpCursor((bp.PendingRequest("k", "2025-01-02", "2025-01-03", "yesterday"),))
    plan = bp.plan_catch_up(NOON, materialized=[], runs=[], cursor=garbled)
    assert plan.run_key and plan.cursor.run_keys() == [plan.run_key]  # the unreadable request is dropped


# --- reference data -------------------------------------------------------------------------------------


def test_reference_data_is_due_weekly_on_sunday_noon() -> None:
    assert bp.reference_due_since(et(2025, 1, 19, 11, 59)) == et(2025, 1, 12, 12, 0)
    assert bp.reference_due_since(et(2025, 1, 19, 12, 0)) == et(2025, 1, 19, 12, 0)
    assert bp.reference_due_since(et(2025, 1, 22, 3, 0)) == et(2025, 1, 19, 12, 0)


def test_reference_sensor_refreshes_when_absent_or_stale(instance, definitions) -> None:
    sensor = build_reference_sensor(clock=lambda: et(2025, 1, 17, 12, 0))
    assert sensor.job_name == "reference_data"
    first = _tick(sensor, instance, definitions)
    assert [r.run_key for r in first.run_requests] == ["reference:2025-01-17T17:00Z"]
    # the next tick, before the daemon's run shows up: nothing new
    waiting = _tick(build_reference_sensor(clock=lambda: et(2025, 1, 17, 12, 1)), instance, definitions, first.cursor)
    assert not waiting.run_requests

    with freeze_time(et(2025, 1, 17, 12, 5)):
        _with_reference(instance)
    fresh = _tick(build_reference_sensor(clock=lambda: et(2025, 1, 18, 9, 0)), instance, definitions, first.cursor)
    assert not fresh.run_requests and "fresh" in fresh.skip_reason.skip_message
    stale = _tick(build_reference_sensor(clock=lambda: et(2025, 1, 19, 12, 30)), instance, definitions)
    assert len(stale.run_requests) == 1


def test_reference_sensor_cools_down_after_a_failure(instance, definitions) -> None:
    failed_at = et(2025, 1, 17, 11, 30)
    _run(instance, None, None, DagsterRunStatus.FAILURE, failed_at, job_name="reference_data")
    cooling = _tick(build_reference_sensor(clock=lambda: failed_at + dt.timedelta(minutes=10)), instance, definitions)
    assert not cooling.run_requests and "cooling down" in cooling.skip_reason.skip_message
    retry = _tick(build_reference_sensor(clock=lambda: failed_at + dt.timedelta(minutes=70)), instance, definitions)
    assert len(retry.run_requests) == 1


# --- failures and retries -------------------------------------------------------------------------------


def test_run_failure_logger_logs_job_range_and_the_first_line_of_the_error(instance) -> None:
    @op
    def fetch() -> None:
        raise RuntimeError("gave up on /v2/aggs after 7 attempts: last problem HTTP 503\nmore detail")

    @job
    def daily_backfill_probe() -> None:
        fetch()

    result = daily_backfill_probe.execute_in_process(
        instance=instance, raise_on_error=False, tags={START: "2025-01-13", END: "2025-01-16"}
    )
    run = instance.get_run_by_id(result.run_id)
    failure = instance.get_records_for_run(result.run_id, of_type=DagsterEventType.RUN_FAILURE).records[0]
    context = build_run_status_sensor_context(
        sensor_name="run_failure_logger",
        dagster_event=failure.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=run,
    ).for_run_failure()
    with capture_logs() as logs:
        run_failure_logger(context)
    line = next(entry for entry in logs if entry["event"] == "run_failed")
    assert line["job"] == "daily_backfill_probe" and line["partitions"] == "2025-01-13..2025-01-16"
    assert line["step"] == "fetch"
    assert line["error"] == "RuntimeError: gave up on /v2/aggs after 7 attempts: last problem HTTP 503"


def test_failure_fields_without_steps_use_the_run_message() -> None:
    fields = bp.failure_fields(job="reference_data", run_id="r", tags={}, step_errors=[],
                               run_message="\n  run worker died\n")
    assert fields == {"job": "reference_data", "run_id": "r", "partitions": "none", "error": "run worker died"}
    assert bp.failure_line(fields).startswith('run failed: job="reference_data"')


def test_polygon_retry_policy() -> None:
    assert POLYGON_RETRY_POLICY.max_retries == 3 and POLYGON_RETRY_POLICY.delay == 30
    assert POLYGON_RETRY_POLICY.backoff is not None and POLYGON_RETRY_POLICY.jitter is not None


def test_tag_names_are_dagsters() -> None:
    assert bp.RANGE_START_TAG == dagster_tags.ASSET_PARTITION_RANGE_START_TAG
    assert bp.RANGE_END_TAG == dagster_tags.ASSET_PARTITION_RANGE_END_TAG
    assert bp.PARTITION_TAG == dagster_tags.PARTITION_NAME_TAG


def test_the_jobs_resolve_in_definitions(definitions: Definitions) -> None:
    repository = definitions.get_repository_def()
    assert repository.get_schedule_def("after_close_schedule").job_name == "daily_backfill"
    assert {s.name for s in repository.sensor_defs} == {"catch_up_sensor", "reference_refresh_sensor",
                                                        "run_failure_logger"}
    assert repository.get_sensor_def("reference_refresh_sensor").job_name == "reference_data"
