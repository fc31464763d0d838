"""The streaming sensors on a set market clock: one session per trading day, stalled sessions, intraday refresh."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, SensorResult, build_sensor_context

from spy_pipeline.defs.alerts import ALERT_DELIVERIES, NotifierResource
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.defs.streaming.sensors import (
    STALLED_TAG,
    build_intraday_sensor,
    build_market_open_sensor,
    build_stream_health_sensor,
)
from spy_pipeline.defs.streaming.session_job import STREAM_DAY_TAG, stream_session_job
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.streaming.batches import MicroBatcher
from spy_pipeline.streaming.planning import (
    IntradayCursor,
    dump_day_cursors,
    load_day_cursors,
    plan_intraday,
    plan_session_start,
    stall_reason,
)
from spy_pipeline.streaming.session import heartbeat_path

TRADING_DAY = dt.date(2025, 1, 8)


def et(day: dt.date, hhmm: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(hhmm), tzinfo=cal.NEW_YORK)


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance


def skipped(result: SensorResult) -> str:
    assert not result.run_requests
    return result.skip_reason.skip_message if result.skip_reason else ""


def tick(
    sensor, instance: DagsterInstance, cursor: str | None = None, store: ParquetStoreResource | None = None
) -> SensorResult:
    """One evaluation, with the `store` resource as Definitions gives it (default: SPY_PIPELINE_DATA_DIR)."""
    resources = {"store": store or ParquetStoreResource(), "notifier": NotifierResource(wait_s=0)}
    result = sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
    assert isinstance(result, SensorResult)
    return result


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (et(TRADING_DAY, "09:25"), TRADING_DAY),
        (et(TRADING_DAY, "15:59"), TRADING_DAY),  # late start: still worth streaming the rest of the day
        (et(TRADING_DAY, "09:10"), None),  # before open - lead
        (et(TRADING_DAY, "16:00"), None),  # closed
        (et(dt.date(2025, 1, 9), "09:25"), None),  # national day of mourning: NYSE closed
        (et(dt.date(2025, 12, 25), "09:25"), None),  # Christmas
        (et(dt.date(2025, 1, 11), "09:25"), None),  # Saturday
        (et(dt.date(2025, 11, 28), "12:59"), dt.date(2025, 11, 28)),  # early close at 13:00 ...
        (et(dt.date(2025, 11, 28), "13:00"), None),  # ... is the end
    ],
)
def test_session_start_follows_the_nyse_calendar(moment: dt.datetime, expected: dt.date | None) -> None:
    assert plan_session_start(moment, []).day == expected


def test_market_open_sensor_requests_exactly_one_session_per_day(instance: DagsterInstance) -> None:
    sensor = build_market_open_sensor(clock=lambda: et(TRADING_DAY, "09:21"))
    (request,) = tick(sensor, instance).run_requests
    assert request.run_key == f"stream-session-{TRADING_DAY}-1" and request.tags[STREAM_DAY_TAG] == str(TRADING_DAY)
    assert request.run_config["ops"]["stream_market_session"]["config"]["date"] == str(TRADING_DAY)

    # what the daemon does with the request; from then on the run tagged with the day is the state (no cursor
    # to lose in a daemon restart)
    instance.create_run_for_job(stream_session_job, run_config=request.run_config, tags=request.tags)
    assert "a session is running or queued" in skipped(tick(sensor, instance))
    instance.create_run_for_job(stream_session_job, tags=request.tags, status=DagsterRunStatus.STARTED)
    assert "a session is running or queued" in skipped(tick(sensor, instance))


@pytest.mark.parametrize(
    ("status", "tags", "expected"),
    [
        (DagsterRunStatus.SUCCESS, {}, "already ran"),  # streamed to the close
        (DagsterRunStatus.CANCELED, {}, "already ran (or a user stopped it)"),  # terminated from the UI: stays off
    ],
)
def test_market_open_sensor_leaves_a_finished_or_user_stopped_day_alone(
    instance: DagsterInstance, status: DagsterRunStatus, tags: dict[str, str], expected: str
) -> None:
    instance.create_run_for_job(stream_session_job, tags={STREAM_DAY_TAG: str(TRADING_DAY), **tags}, status=status)
    assert expected in skipped(tick(build_market_open_sensor(clock=lambda: et(TRADING_DAY, "11:00")), instance))


def test_market_open_sensor_restarts_failed_and_stalled_sessions_up_to_a_limit(instance: DagsterInstance) -> None:
    sensor = build_market_open_sensor(clock=lambda: et(TRADING_DAY, "11:00"), max_attempts=3)
    tags = {STREAM_DAY_TAG: str(TRADING_DAY)}
    instance.create_run_for_job(stream_session_job, tags=tags, status=DagsterRunStatus.FAILURE)
    (second,) = tick(sensor, instance).run_requests
    assert second.run_key == f"stream-session-{TRADING_DAY}-2"  # a new key: the first attempt's key is spent
    # stopped by the health sensor (tagged stalled), not by a user: started again
    instance.create_run_for_job(stream_session_job, tags={**tags, STALLED_TAG: "no heartbeat"},
                                status=DagsterRunStatus.CANCELED)
    (third,) = tick(sensor, instance).run_requests
    assert third.run_key == f"stream-session-{TRADING_DAY}-3"
    instance.create_run_for_job(stream_session_job, tags=tags, status=DagsterRunStatus.FAILURE)
    assert "3 sessions failed; not starting another" in skipped(tick(sensor, instance))


def test_market_open_sensor_is_silent_on_holidays(instance: DagsterInstance) -> None:
    for day in (dt.date(2025, 1, 9), dt.date(2025, 7, 4), dt.date(2025, 1, 12)):
        result = tick(build_market_open_sensor(clock=lambda d=day: et(d, "09:25")), instance)
        assert "not a trading day" in skipped(result)


def _beat(data_dir: Path, day: dt.date, updated: dt.datetime, state: str = "streaming") -> None:
    root = DataRoot.from_location(data_dir)
    beat = {"day": day.isoformat(), "state": state, "messages": 42, "last_event_time": "x",
            "updated_at": updated.astimezone(dt.UTC).isoformat()}
    root.write_bytes(json.dumps(beat).encode(), heartbeat_path(root, day))


def test_health_sensor_stops_a_stalled_session_with_the_reason(instance: DagsterInstance, data_dir: Path) -> None:
    run = instance.create_run_for_job(stream_session_job, tags={STREAM_DAY_TAG: str(TRADING_DAY)},
                                      status=DagsterRunStatus.STARTED)
    started = instance.get_run_record_by_id(run.run_id).create_timestamp
    now = started + dt.timedelta(minutes=10)
    sensor = build_stream_health_sensor(clock=lambda: now)
    _beat(data_dir, TRADING_DAY, now - dt.timedelta(seconds=30))
    assert "1 running session(s), 0 stalled" in skipped(tick(sensor, instance))  # 30 s old: healthy
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED

    _beat(data_dir, TRADING_DAY, now - dt.timedelta(minutes=5))
    assert "1 stalled" in skipped(tick(sensor, instance))
    stopped = instance.get_run_by_id(run.run_id)
    # the test instance's launcher cannot terminate (no process): the sensor records the failure itself
    assert stopped.status == DagsterRunStatus.FAILURE
    assert stopped.tags[STALLED_TAG].startswith("no heartbeat for 300 s (limit 120 s)")
    messages = [r.dagster_event.message or "" for r in instance.all_logs(run.run_id) if r.dagster_event]
    assert any("stalled: no heartbeat for 300 s (limit 120 s)" in m for m in messages), messages
    # ... an alert goes out (logged only here: no SPY_PIPELINE_ALERT_URLS), recorded on alert_deliveries
    (observed,) = [e.asset_observation for e in _observations(instance, ALERT_DELIVERIES)]
    assert observed.metadata["keys"].value == [f"session-stalled:{run.run_id}"]
    # ... and market_open_sensor starts the next attempt
    (restart,) = tick(build_market_open_sensor(clock=lambda: et(TRADING_DAY, "11:00")), instance).run_requests
    assert restart.run_key == f"stream-session-{TRADING_DAY}-2"


def _observations(instance: DagsterInstance, key):
    records = instance.fetch_observations(key, limit=10).records
    return [record.event_log_entry for record in records]


def test_a_restarted_session_is_not_judged_by_the_previous_heartbeat(
    instance: DagsterInstance, data_dir: Path
) -> None:
    run = instance.create_run_for_job(stream_session_job, tags={STREAM_DAY_TAG: str(TRADING_DAY)},
                                      status=DagsterRunStatus.STARTED)
    started = instance.get_run_record_by_id(run.run_id).create_timestamp
    _beat(data_dir, TRADING_DAY, started - dt.timedelta(minutes=30))  # the killed session's last beat
    sensor = build_stream_health_sensor(clock=lambda: started + dt.timedelta(seconds=60))
    assert "0 stalled" in skipped(tick(sensor, instance))
    late = build_stream_health_sensor(clock=lambda: started + dt.timedelta(seconds=150))
    assert "1 stalled" in skipped(tick(late, instance))
    assert "after the run started" in instance.get_run_by_id(run.run_id).tags[STALLED_TAG]


def test_stall_reason_counts_from_the_run_start_without_heartbeat() -> None:
    started = et(TRADING_DAY, "09:20")
    assert stall_reason(None, started, started + dt.timedelta(seconds=119)) is None
    assert "after the run started" in (stall_reason(None, started, started + dt.timedelta(seconds=121)) or "")


def _land(data_dir: Path, day: dt.date, minute: int) -> None:
    s = int(et(day, "10:00").timestamp() * 1000) + minute * 60_000
    batcher = MicroBatcher(DataRoot.from_location(data_dir), day)
    batcher.add({"ev": "AM", "sym": "SPY", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "vw": 1, "s": s, "e": s + 60_000})
    assert len(batcher.close()) == 1


def test_intraday_sensor_requests_on_new_batches_at_most_once_per_interval(
    instance: DagsterInstance, data_dir: Path
) -> None:
    clock = {"now": et(TRADING_DAY, "10:05")}
    sensor = build_intraday_sensor(clock=lambda: clock["now"], interval=dt.timedelta(minutes=5))
    store = ParquetStoreResource(data_dir=str(data_dir))
    nothing = tick(sensor, instance, store=store)
    assert "no new micro-batch" in skipped(nothing)

    _land(data_dir, TRADING_DAY, 0)
    elsewhere = ParquetStoreResource(data_dir=str(data_dir.parent / "elsewhere"))
    assert "no new micro-batch" in skipped(tick(sensor, instance, nothing.cursor, store=elsewhere))  # the store's dir
    first = tick(sensor, instance, nothing.cursor, store=store)
    (request,) = first.run_requests
    assert request.job_name == "intraday_refresh" and request.run_key == f"intraday-{TRADING_DAY}-1"
    assert request.partition_key == str(TRADING_DAY) and not request.run_config  # the day is the partition

    _land(data_dir, TRADING_DAY, 1)
    clock["now"] += dt.timedelta(minutes=2)
    waiting = tick(sensor, instance, first.cursor, store=store)
    assert "next refresh in 180 s" in skipped(waiting)

    clock["now"] += dt.timedelta(minutes=3)
    (second,) = tick(sensor, instance, waiting.cursor, store=store).run_requests
    assert second.run_key == f"intraday-{TRADING_DAY}-2" and second.partition_key == str(TRADING_DAY)


def test_the_streamed_day_is_an_intraday_partition_during_its_session() -> None:
    """The daily assets' partition for a day exists only from the next midnight; the intraday one during the day."""
    from dagster._core.test_utils import freeze_time

    from spy_pipeline.defs.partitions import trading_day_partitions
    from spy_pipeline.defs.streaming.intraday_assets import intraday_consolidated, intraday_partitions

    assert intraday_consolidated.partitions_def == intraday_partitions
    with freeze_time(et(TRADING_DAY, "09:31")):
        assert intraday_partitions.has_partition_key(str(TRADING_DAY))
        assert not trading_day_partitions.has_partition_key(str(TRADING_DAY))
        assert not intraday_partitions.has_partition_key("2025-01-09")  # closed: never a partition
        assert intraday_partitions.get_last_partition_key() == str(TRADING_DAY)
    with freeze_time(et(dt.date(2025, 11, 28), "12:00")):  # early close day, after Thanksgiving
        keys = intraday_partitions.get_partition_keys()
        assert keys[-2:] == ["2025-11-26", "2025-11-28"]


def test_intraday_plan_starts_over_each_day() -> None:
    cursors = load_day_cursors(dump_day_cursors(
        {str(TRADING_DAY): IntradayCursor(files=9, requested_at=et(TRADING_DAY, "15:59").isoformat())}
    ))
    assert cursors[str(TRADING_DAY)].files == 9  # the cursor round-trips
    next_day = dt.date(2025, 1, 10)
    cursor = cursors.get(str(next_day), IntradayCursor())  # a day the sensor has not seen starts from nothing
    plan = plan_intraday(et(next_day, "09:31"), next_day, 2, cursor)
    assert plan.run_key == f"intraday-{next_day}-2" and plan.cursor.files == 2
    assert plan_intraday(et(next_day, "09:31"), dt.date(2025, 1, 9), 2, cursor).day is None  # closed day


def test_intraday_sensor_follows_today_and_every_running_session(instance: DagsterInstance, data_dir: Path) -> None:
    """A simulation replaying a past day runs while today's live session lands batches: both are refreshed."""
    replayed = dt.date(2025, 1, 7)
    instance.create_run_for_job(stream_session_job, tags={STREAM_DAY_TAG: str(replayed)},
                                status=DagsterRunStatus.STARTED)
    _land(data_dir, TRADING_DAY, 0)
    _land(data_dir, replayed, 0)
    _land(data_dir, replayed, 1)
    sensor = build_intraday_sensor(clock=lambda: et(TRADING_DAY, "10:05"))
    store = ParquetStoreResource(data_dir=str(data_dir))
    result = tick(sensor, instance, store=store)
    assert sorted(r.run_key for r in result.run_requests) == [f"intraday-{replayed}-2", f"intraday-{TRADING_DAY}-1"]
    assert sorted(r.partition_key for r in result.run_requests) == [str(replayed), str(TRADING_DAY)]
    assert "no new micro-batch" in skipped(tick(sensor, instance, result.cursor, store=store)).split(";")[0]


def _schedule_tick(instance: DagsterInstance, moment: dt.datetime, store: ParquetStoreResource | None = None):
    from dagster import build_schedule_context

    from spy_pipeline.defs.streaming.compaction import stream_compaction_schedule

    context = build_schedule_context(instance=instance, scheduled_execution_time=moment,
                                     resources={"store": store or ParquetStoreResource()})
    return stream_compaction_schedule(context)


def test_compaction_schedule_runs_for_streamed_trading_days_only(instance: DagsterInstance, data_dir: Path) -> None:
    from dagster import RunRequest, SkipReason

    from spy_pipeline.defs.streaming.compaction import rest_day_complete
    from spy_pipeline.streaming.intraday import contracts_path

    evening = et(TRADING_DAY, "20:15")
    assert "was not streamed" in _schedule_tick(instance, evening).skip_message
    root = DataRoot.from_location(data_dir)
    root.write_bytes(b"placeholder", contracts_path(root, TRADING_DAY))  # what a session writes first
    request = _schedule_tick(instance, evening)
    assert isinstance(request, RunRequest) and request.run_key == f"stream-compaction-{TRADING_DAY}"
    assert request.run_config["ops"]["compact_streamed_day"]["config"]["date"] == str(TRADING_DAY)
    holiday = _schedule_tick(instance, et(dt.date(2025, 1, 9), "20:15"))
    assert isinstance(holiday, SkipReason) and "not a trading day" in holiday.skip_message
    # REST has the whole day only after the after-hours session (20:00 ET; 17:00 on an early close)
    assert not rest_day_complete(TRADING_DAY, et(TRADING_DAY, "19:59"))
    assert rest_day_complete(TRADING_DAY, et(TRADING_DAY, "20:00"))
    assert rest_day_complete(dt.date(2025, 11, 28), et(dt.date(2025, 11, 28), "17:00"))


# --- the data dir is the store resource's ---------------------------------------------------------------


def test_health_sensor_reads_the_heartbeat_of_the_configured_store(
    instance: DagsterInstance, data_dir: Path, tmp_path: Path
) -> None:
    """SPY_PIPELINE_DATA_DIR names one folder, the store resource another: the session writes its heartbeat
    where the store points, so that is where the sensor must look."""
    store_dir = tmp_path / "store"
    store = ParquetStoreResource(data_dir=str(store_dir))
    run = instance.create_run_for_job(stream_session_job, tags={STREAM_DAY_TAG: str(TRADING_DAY)},
                                      status=DagsterRunStatus.STARTED)
    now = instance.get_run_record_by_id(run.run_id).create_timestamp + dt.timedelta(minutes=10)
    sensor = build_stream_health_sensor(clock=lambda: now)
    _beat(store_dir, TRADING_DAY, now - dt.timedelta(seconds=30))  # the session, healthy, in the store
    _beat(data_dir, TRADING_DAY, now - dt.timedelta(minutes=9))  # a stale leftover in the env's folder
    assert "1 running session(s), 0 stalled" in skipped(tick(sensor, instance, store=store))
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED

    _beat(store_dir, TRADING_DAY, now - dt.timedelta(minutes=5))
    _beat(data_dir, TRADING_DAY, now - dt.timedelta(seconds=10))  # fresh, but not the session's
    assert "1 stalled" in skipped(tick(sensor, instance, store=store))
    assert instance.get_run_by_id(run.run_id).tags[STALLED_TAG].startswith("no heartbeat for 300 s")


def test_compaction_schedule_looks_for_streamed_contracts_in_the_configured_store(
    instance: DagsterInstance, data_dir: Path, tmp_path: Path
) -> None:
    from dagster import RunRequest

    from spy_pipeline.streaming.intraday import contracts_path

    store = ParquetStoreResource(data_dir=str(tmp_path / "store"))
    evening = et(TRADING_DAY, "20:15")
    env_root = DataRoot.from_location(data_dir)
    env_root.write_bytes(b"placeholder", contracts_path(env_root, TRADING_DAY))  # streamed elsewhere
    assert "was not streamed" in _schedule_tick(instance, evening, store).skip_message
    assert isinstance(_schedule_tick(instance, evening), RunRequest)  # the default store is the env's folder

    store_root = store.data_root
    store_root.write_bytes(b"placeholder", contracts_path(store_root, TRADING_DAY))
    request = _schedule_tick(instance, evening, store)
    assert isinstance(request, RunRequest) and request.run_key == f"stream-compaction-{TRADING_DAY}"
