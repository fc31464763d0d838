"""Unattended operation: the automation conditions of the daily and reference assets, evaluated at a set clock
on an ephemeral instance the way the automation condition sensor evaluates them; failure logging; retries."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    BackfillPolicy,
    DagsterInstance,
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    Definitions,
    MaterializeResult,
    RunRequest,
    asset,
    build_run_status_sensor_context,
    evaluate_automation_conditions,
    job,
    materialize,
    op,
)
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.definitions.automation_tick_evaluation_context import AutomationTickEvaluationContext
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.events import DagsterEventType
from dagster._core.execution.asset_backfill import AssetBackfillData, execute_asset_backfill_iteration_inner
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.storage import tags as dagster_tags
from dagster._core.test_utils import freeze_time, mock_workspace_from_repos
from dagster_shared.serdes import deserialize_value, serialize_value
from structlog.testing import capture_logs

from spy_pipeline import definitions as location
from spy_pipeline.defs.automation import (
    DAILY_CONDITION,
    POLYGON_RETRY_POLICY,
    REFERENCE_CONDITION,
    SENSORS,
    automation_condition_sensor,
    run_failure_logger,
)
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource
from spy_pipeline.domain import run_failures as rf
from spy_pipeline.domain import trading_calendar as cal

NY = cal.NEW_YORK
START, END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
DAILY = [key for assets_def in location.DAILY_ASSETS for key in assets_def.keys]
REFERENCE = AssetKey("corporate_actions")
SPY = AssetKey("raw_spy_bars")
DEFS = Definitions(assets=[*location.DAILY_ASSETS, *location.REFERENCE_ASSETS, *location.REPORT_ASSETS],
                   resources=location.defs.resources, sensors=SENSORS)

# Friday 2025-01-17 at noon: the latest partition is Thursday 01-16 (it ended at midnight); the window is the
# trading days of the 14 days before that midnight: 01-03 .. 01-16, nine of them as 01-09 was closed.
NOON = dt.datetime(2025, 1, 17, 12, 0, tzinfo=NY)
WINDOW = ["2025-01-03", "2025-01-06", "2025-01-07", "2025-01-08", "2025-01-10", "2025-01-13", "2025-01-14",
          "2025-01-15", "2025-01-16"]


def et(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance


# --- a tick of the automation condition sensor, as the daemon runs it ---------------------------------------


@dataclass
class Tick:
    requests: list[RunRequest]
    cursor: AssetDaemonCursor

    def requested(self, key: AssetKey = SPY) -> list[str | None]:
        """The partitions of `key` this tick requested, in a run or in a backfill."""
        found: set[str | None] = set()
        for request in self.requests:
            if request.asset_graph_subset is not None:
                subset = request.asset_graph_subset
                if key in subset.non_partitioned_asset_keys:
                    found.add(None)
                if key in subset.partitions_subsets_by_asset_key:
                    found |= set(subset.partitions_subsets_by_asset_key[key].get_partition_keys())
            elif key in (request.asset_selection or []):
                found.add(request.partition_key)
        return sorted(found, key=str)

    @property
    def backfills(self) -> list[RunRequest]:
        return [r for r in self.requests if r.requires_backfill_daemon()]


def tick(instance: DagsterInstance, at: dt.datetime, cursor: AssetDaemonCursor | None = None) -> Tick:
    """One evaluation of automation_condition_sensor at `at` (the daemon's code path: its asset selection, its
    emit_backfills), the cursor round-tripped through its serialized form as the daemon stores it."""
    cursor = deserialize_value(serialize_value(cursor), AssetDaemonCursor) if cursor else AssetDaemonCursor.empty()
    context = AutomationTickEvaluationContext(
        evaluation_id=cursor.evaluation_id + 1,
        instance=instance,
        asset_graph=DEFS.resolve_asset_graph(),
        cursor=cursor,
        materialize_run_tags=automation_condition_sensor.run_tags,
        observe_run_tags={},
        auto_observe_asset_keys=set(),
        asset_selection=automation_condition_sensor.asset_selection,
        logger=logging.getLogger("automation_condition_sensor"),
        emit_backfills=automation_condition_sensor.emit_backfills,
        evaluation_time=at,
    )
    requests, new_cursor, _ = context.evaluate()
    return Tick(list(requests), new_cursor)


def submit_backfill(instance: DagsterInstance, request: RunRequest, at: dt.datetime) -> PartitionBackfill:
    """What the daemon does with a tick's backfill request."""
    backfill = PartitionBackfill.from_asset_graph_subset(
        backfill_id=f"automation-{int(at.timestamp())}", dynamic_partitions_store=instance,
        backfill_timestamp=at.timestamp(), asset_graph_subset=request.asset_graph_subset, tags=dict(request.tags),
        title="automation", description=None, run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill


def first_backfill_runs(instance: DagsterInstance, request: RunRequest, at: dt.datetime) -> list[RunRequest]:
    """The runs the backfill daemon launches first for a backfill request (its own planning code)."""
    with partition_loading_context(effective_dt=at, dynamic_partitions_store=instance):
        data = AssetBackfillData.from_asset_graph_subset(request.asset_graph_subset, instance, at.timestamp())
    graph = mock_workspace_from_repos([DEFS.get_repository_def()]).asset_graph
    latest = instance.event_log_storage.get_maximum_record_id()
    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=at, last_event_id=latest),
                          instance=instance, asset_graph=graph)
    result = execute_asset_backfill_iteration_inner("b", data, view, at.timestamp(), logging.getLogger("b"), None)
    return list(result.run_requests)


def materialized(instance: DagsterInstance, *days: str, keys: list[AssetKey] = DAILY) -> None:
    for day in days:
        for key in keys:
            instance.report_runless_asset_event(AssetMaterialization(asset_key=key, partition=day))


def with_reference(instance: DagsterInstance) -> None:
    instance.report_runless_asset_event(AssetMaterialization(asset_key=REFERENCE))


# --- definitions ---------------------------------------------------------------------------------------------


def test_the_sensor_runs_by_default_emits_backfills_and_the_assets_carry_the_conditions() -> None:
    assert automation_condition_sensor.default_status == DefaultSensorStatus.RUNNING
    assert automation_condition_sensor.emit_backfills
    graph = location.defs.resolve_asset_graph()
    for key in DAILY:
        assert graph.get(key).automation_condition == DAILY_CONDITION, key
        assert graph.get(key).partitions_def == trading_day_partitions, key
        assert graph.get(key).backfill_policy == BackfillPolicy.single_run(), key
    assert graph.get(REFERENCE).automation_condition == REFERENCE_CONDITION
    # summaries over a configured range, and the intraday view, are not automated by conditions
    for name in ("options_movement_summary", "range_charts", "intraday_consolidated"):
        assert graph.get(AssetKey(name)).automation_condition is None, name
    # the sensor covers every asset that has a condition: Dagster adds no (stopped) default sensor
    selected = automation_condition_sensor.asset_selection.resolve(graph)
    assert {key for key in graph.get_all_asset_keys() if graph.get(key).automation_condition} <= selected


def test_the_location_has_the_sensor_and_no_backfill_schedule() -> None:
    repository = location.defs.get_repository_def()
    names = {s.name for s in repository.sensor_defs}
    assert {"automation_condition_sensor", "run_failure_logger"} <= names
    assert not names & {"catch_up_sensor", "reference_refresh_sensor"}
    assert "after_close_schedule" not in {s.name for s in repository.schedule_defs}
    # `spy-pipeline run` launches these jobs directly
    assert repository.get_job("daily_backfill") and repository.get_job("reference_data")


# --- the nightly run -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        (et(2025, 1, 9, 0, 0, 30), "2025-01-08"),  # Wednesday's data, just after midnight
        (et(2024, 11, 30, 0, 30), "2024-11-29"),  # early close (13:00) the day after Thanksgiving
        (et(2025, 1, 11, 0, 30), "2025-01-10"),  # Saturday night fetches Friday
    ],
)
def test_after_the_close_the_day_that_ended_is_requested_in_one_run(
    instance: DagsterInstance, moment: dt.datetime, day: str
) -> None:
    with_reference(instance)
    before = cal.last_trading_days(cal.previous_trading_day(day), 10)
    materialized(instance, *[d.isoformat() for d in before])
    result = tick(instance, moment)
    assert not result.backfills  # one partition: a plain run, no backfill
    (request,) = result.requests
    assert request.partition_key == day
    assert set(request.asset_selection or []) == set(DAILY)  # every daily asset in the same run


def test_a_day_is_requested_only_once_its_partition_exists(instance: DagsterInstance) -> None:
    with_reference(instance)
    materialized(instance, *[d.isoformat() for d in cal.last_trading_days("2025-01-07", 10)])
    assert tick(instance, et(2025, 1, 8, 23, 59)).requests == []  # the session is over, the day not yet
    assert tick(instance, et(2025, 1, 9, 0, 1)).requested() == ["2025-01-08"]


@pytest.mark.parametrize(
    "moment",
    [
        et(2025, 1, 10, 0, 30),  # 2025-01-09: national day of mourning, NYSE closed
        et(2025, 1, 12, 0, 30),  # Saturday
        et(2025, 12, 26, 0, 30),  # Christmas
        et(2025, 7, 5, 9, 0),  # Independence Day
    ],
)
def test_nothing_is_requested_after_a_day_without_session(instance: DagsterInstance, moment: dt.datetime) -> None:
    with_reference(instance)
    last = cal.previous_trading_day(moment.date())
    materialized(instance, *[d.isoformat() for d in cal.last_trading_days(last, 10)])
    assert tick(instance, moment).requests == []


def _probe(partitions: DailyPartitionsDefinition):
    @asset(name="probe", partitions_def=partitions, backfill_policy=BackfillPolicy.single_run(),
           automation_condition=DAILY_CONDITION)
    def probe() -> MaterializeResult:
        return MaterializeResult()

    return probe


def test_nightly_evaluations_request_every_trading_day_exactly_once(instance: DagsterInstance) -> None:
    """Every night of two months with every kind of closure (Thanksgiving and the early close after it, Christmas
    Eve's early close, Christmas, New Year, the unscheduled closure of 2025-01-09, Martin Luther King Day): the
    condition on the trading-day partitions against the calendar's trading days."""
    probe = _probe(trading_day_partitions)
    requested: list[str] = []
    night = dt.date(2024, 11, 20)
    with_cursor = None
    while night <= dt.date(2025, 1, 25):
        result = evaluate_automation_conditions(
            defs=[probe], instance=instance, cursor=with_cursor,
            evaluation_time=dt.datetime.combine(night, dt.time(0, 5), tzinfo=NY),
        )
        with_cursor = result.cursor
        days = sorted(key for key in result.get_requested_partitions(probe.key) if key)
        materialized(instance, *days, keys=[probe.key])
        requested += days
        night += dt.timedelta(days=1)
    # the first evaluation catches up the two weeks up to 2024-11-19; then one trading day a night
    assert requested == [d.isoformat() for d in cal.trading_days("2024-11-06", "2025-01-24")]


def test_dagster_records_no_partition_for_a_day_that_has_not_ended(instance: DagsterInstance) -> None:
    """Why a day is only requested after midnight: pins Dagster's behaviour. A distinct partitions definition for
    each moment, as Dagster caches partition keys per (equal) definition on first use."""

    def probe(start_date: str):
        return _probe(DailyPartitionsDefinition(start_date=start_date, timezone="America/New_York",
                                                exclusions=["0 0 * * 6,0"]))

    day = {START: "2025-01-08", END: "2025-01-08"}
    with freeze_time(et(2025, 1, 8, 20, 30)):
        evening = materialize([probe("2025-01-02")], instance=instance, tags=day)
    with freeze_time(et(2025, 1, 9, 0, 30)):
        night = materialize([probe("2025-01-03")], instance=instance, tags=day)
    assert [m.partition for m in evening.asset_materializations_for_node("probe")] == [None]
    assert [m.partition for m in night.asset_materializations_for_node("probe")] == ["2025-01-08"]


# --- catching up ---------------------------------------------------------------------------------------------


def test_a_missing_week_is_one_backfill_and_one_run(instance: DagsterInstance) -> None:
    with_reference(instance)
    materialized(instance, *WINDOW[:4])  # missing: Friday 01-10, Monday 01-13 .. Thursday 01-16
    result = tick(instance, NOON)
    (backfill,) = result.backfills
    assert result.requests == [backfill]
    for key in DAILY:
        assert result.requested(key) == WINDOW[4:], key
    (run,) = first_backfill_runs(instance, backfill, NOON)
    assert (run.tags[START], run.tags[END]) == ("2025-01-10", "2025-01-16")
    assert set(run.asset_selection or []) == set(DAILY)


def test_a_gap_with_a_present_day_in_it_is_one_run_per_range(instance: DagsterInstance) -> None:
    """By design: the present day in between is not fetched again (the old catch-up re-fetched it)."""
    with_reference(instance)
    materialized(instance, *WINDOW[:5], "2025-01-14")  # missing: 01-13, 01-15, 01-16
    result = tick(instance, NOON)
    (backfill,) = result.backfills
    assert result.requested() == ["2025-01-13", "2025-01-15", "2025-01-16"]
    runs = first_backfill_runs(instance, backfill, NOON)
    assert sorted((r.tags[START], r.tags[END]) for r in runs) == [("2025-01-13", "2025-01-13"),
                                                                   ("2025-01-15", "2025-01-16")]


def test_requested_days_are_not_requested_again_while_in_flight(instance: DagsterInstance) -> None:
    with_reference(instance)
    materialized(instance, *WINDOW[:6])  # missing: 01-14, 01-15, 01-16
    first = tick(instance, NOON)
    submit_backfill(instance, first.backfills[0], NOON)
    assert tick(instance, NOON + dt.timedelta(minutes=1), first.cursor).requests == []
    # the state is the instance's: a lost cursor (sensor reset) changes nothing
    assert tick(instance, NOON + dt.timedelta(minutes=2)).requests == []
    # the first day done, the others still in flight: nothing new either
    materialized(instance, "2025-01-14")
    assert tick(instance, NOON + dt.timedelta(minutes=3), first.cursor).requests == []


def test_no_gap_no_request_and_days_before_the_window_are_left_alone(instance: DagsterInstance) -> None:
    with_reference(instance)
    materialized(instance, *WINDOW)  # 2024-12-31 and before: never materialized
    assert tick(instance, NOON).requests == []


def test_the_window_is_two_weeks_of_trading_days(instance: DagsterInstance) -> None:
    with_reference(instance)
    assert tick(instance, NOON).requested() == WINDOW
    # Tuesday after Martin Luther King Day: the latest partition is Friday 01-17, two weeks back from its end
    assert tick(instance, et(2025, 1, 21, 9, 0)).requested() == [
        "2025-01-06", "2025-01-07", "2025-01-08", "2025-01-10", "2025-01-13", "2025-01-14", "2025-01-15",
        "2025-01-16", "2025-01-17"]


def test_a_fresh_instance_fetches_reference_data_before_processing(instance: DagsterInstance) -> None:
    first = tick(instance, NOON)
    assert first.requested(REFERENCE) == [None]
    assert first.requested(AssetKey("raw_spy_bars")) == WINDOW
    # consolidated needs dividends (and its downstream needs consolidated): they wait
    for name in ("consolidated", "training_dataset", "features", "daily_charts"):
        assert first.requested(AssetKey(name)) == [], name
    # the raw days and the reference data landed: the processed days follow, as one range
    with_reference(instance)
    materialized(instance, *WINDOW, keys=[k for k in DAILY if k.path[0].startswith(("raw_", "options_"))])
    later = tick(instance, NOON + dt.timedelta(minutes=30), first.cursor)
    assert later.requested(AssetKey("consolidated")) == WINDOW
    assert later.requested(AssetKey("raw_spy_bars")) == []
    (run,) = first_backfill_runs(instance, later.backfills[0], NOON + dt.timedelta(minutes=30))
    assert (run.tags[START], run.tags[END]) == (WINDOW[0], WINDOW[-1])


# --- failures ------------------------------------------------------------------------------------------------


@pytest.fixture
def failing_polygon(sandbox_env, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Resources whose Polygon answers 401 (a wrong key): the raw steps fail at once (no retry, see
    POLYGON_RETRY_POLICY), their downstream steps are skipped."""
    monkeypatch.setenv("POLYGON_API_KEY", "wrong-key")
    return {"polygon": PolygonResource(), "store": ParquetStoreResource()}


def test_a_failed_day_is_not_requested_again_and_does_not_hold_the_others(
    instance: DagsterInstance, failing_polygon: dict
) -> None:
    with_reference(instance)
    materialized(instance, *WINDOW[:5])  # missing: 01-13 .. 01-16
    with freeze_time(NOON):
        failed = materialize(location.DAILY_ASSETS, instance=instance, resources=failing_polygon,
                             tags={START: "2025-01-15", END: "2025-01-16"}, raise_on_error=False)
    assert not failed.success
    for later in (dt.timedelta(minutes=5), dt.timedelta(hours=2), dt.timedelta(hours=11)):
        result = tick(instance, NOON + later)
        for key in DAILY:  # raw assets failed, processed ones were skipped: none of them again
            assert result.requested(key) == ["2025-01-13", "2025-01-14"], (key, later)
    # days later, with a new day to fetch: still not
    assert tick(instance, et(2025, 1, 21, 9, 0)).requested() == ["2025-01-13", "2025-01-14", "2025-01-17"]
    # a run by hand that succeeds makes them ordinary days again
    materialized(instance, "2025-01-13", "2025-01-14", "2025-01-15", "2025-01-16", "2025-01-17")
    assert tick(instance, et(2025, 1, 21, 9, 0)).requests == []


def test_a_failed_raw_day_holds_back_its_processed_day(instance: DagsterInstance, failing_polygon: dict) -> None:
    with_reference(instance)
    materialized(instance, *WINDOW[:-1])  # missing: 01-16
    raw_spy_bars = next(a for a in location.DAILY_ASSETS if AssetKey("raw_spy_bars") in a.keys)
    with freeze_time(NOON):
        assert not materialize([raw_spy_bars], instance=instance, resources=failing_polygon,
                               partition_key="2025-01-16", raise_on_error=False).success
    result = tick(instance, NOON + dt.timedelta(minutes=5))
    assert result.requested(AssetKey("raw_spy_bars")) == []
    # the other raw assets of the day are fetched, but nothing that needs SPY's bars of that day
    assert result.requested(AssetKey("raw_vix_bars")) == ["2025-01-16"]
    for name in ("options_contracts", "consolidated", "training_dataset", "daily_charts"):
        assert result.requested(AssetKey(name)) == [], name


# --- reference data ------------------------------------------------------------------------------------------


def test_reference_data_when_missing_then_weekly_on_sunday_noon(instance: DagsterInstance) -> None:
    materialized(instance, *WINDOW)
    first = tick(instance, et(2025, 1, 17, 12, 0))
    assert first.requested(REFERENCE) == [None]
    with freeze_time(et(2025, 1, 17, 12, 5)):
        with_reference(instance)
    cursor = first.cursor
    for moment in (et(2025, 1, 18, 9, 0), et(2025, 1, 19, 11, 59)):  # fresh until Sunday noon
        result = tick(instance, moment, cursor)
        assert result.requested(REFERENCE) == [], moment
        cursor = result.cursor
    due = tick(instance, et(2025, 1, 19, 12, 0, 30), cursor)
    assert due.requested(REFERENCE) == [None]
    assert tick(instance, et(2025, 1, 19, 12, 1), due.cursor).requested(REFERENCE) == []  # once


def test_a_missed_sunday_is_made_up_at_the_first_evaluation_after(instance: DagsterInstance) -> None:
    with_reference(instance)
    saturday = tick(instance, et(2025, 1, 18, 9, 0))
    assert saturday.requested(REFERENCE) == []
    # the daemon was off from Saturday to Monday night
    assert tick(instance, et(2025, 1, 20, 23, 0), saturday.cursor).requested(REFERENCE) == [None]


def test_failed_reference_data_waits_for_the_next_sunday(instance: DagsterInstance, failing_polygon: dict) -> None:
    reference = location.REFERENCE_ASSETS
    with freeze_time(et(2025, 1, 17, 11, 30)):
        assert not materialize(reference, instance=instance, resources=failing_polygon, raise_on_error=False).success
    friday = tick(instance, et(2025, 1, 17, 12, 0))
    assert friday.requested(REFERENCE) == []
    saturday = tick(instance, et(2025, 1, 18, 12, 0), friday.cursor)
    assert saturday.requested(REFERENCE) == []
    assert tick(instance, et(2025, 1, 19, 12, 1), saturday.cursor).requested(REFERENCE) == [None]


# --- failures and retries ------------------------------------------------------------------------------------


def test_run_failure_logger_logs_job_range_and_the_first_line_of_the_error(instance: DagsterInstance) -> None:
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
    fields = rf.failure_fields(job="reference_data", run_id="r", tags={}, step_errors=[],
                               run_message="\n  run worker died\n")
    assert fields == {"job": "reference_data", "run_id": "r", "partitions": "none", "error": "run worker died"}
    assert rf.failure_line(fields).startswith('run failed: job="reference_data"')
    assert rf.run_partitions({rf.PARTITION_TAG: "2025-01-08"}) == "2025-01-08"
    assert rf.run_partitions({START: "2025-01-08", END: "2025-01-08"}) == "2025-01-08"


def test_polygon_retry_policy() -> None:
    assert POLYGON_RETRY_POLICY.max_retries == 3 and POLYGON_RETRY_POLICY.delay == 30
    assert POLYGON_RETRY_POLICY.backoff is not None and POLYGON_RETRY_POLICY.jitter is not None


def test_tag_names_are_dagsters() -> None:
    assert rf.RANGE_START_TAG == dagster_tags.ASSET_PARTITION_RANGE_START_TAG
    assert rf.RANGE_END_TAG == dagster_tags.ASSET_PARTITION_RANGE_END_TAG
    assert rf.PARTITION_TAG == dagster_tags.PARTITION_NAME_TAG
