"""The streaming sensors on a set market clock: one session per trading day, stalled sessions, intraday refresh."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, SensorResult, build_sensor_context

from spy_pipeline import trading_calendar as cal
from spy_pipeline.defs.streaming.sensors import (
    build_intraday_sensor,
    build_market_open_sensor,
    build_stream_health_sensor,
)
from spy_pipeline.defs.streaming.session_job import STREAM_DAY_TAG, stream_session_job
from spy_pipeline.storage import DataRoot
from spy_pipeline.streaming.batches import MicroBatcher
from spy_pipeline.streaming.planning import IntradayCursor, plan_intraday, plan_session_start, stall_reason
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


def tick(sensor, instance: DagsterInstance, cursor: str | None = None) -> SensorResult:
    result = sensor(build_sensor_context(instance=instance, cursor=cursor))
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
    assert plan_session_start(moment, None, 0).day == expected


def test_market_open_sensor_requests_exactly_one_session_per_day(instance: DagsterInstance) -> None:
    sensor = build_market_open_sensor(clock=lambda: et(TRADING_DAY, "09:21"))
    first = tick(sensor, instance)
    (request,) = first.run_requests
    assert request.run_key == f"stream-session-{TRADING_DAY}" and request.tags[STREAM_DAY_TAG] == str(TRADING_DAY)
    assert request.run_config["ops"]["stream_market_session"]["config"]["date"] == str(TRADING_DAY)
    assert first.cursor == str(TRADING_DAY)
    assert not tick(sensor, instance, first.cursor).run_requests  # the next tick: already started

    # a daemon restart with a lost cursor: the run tagged with the day is enough
    instance.create_run_for_job(stream_session_job, run_config=request.run_config, tags=request.tags)
    restarted = tick(sensor, instance, None)
    assert "already started" in skipped(restarted)


def test_market_open_sensor_starts_a_new_session_after_a_failed_one(instance: DagsterInstance) -> None:
    run = instance.create_run_for_job(stream_session_job, tags={STREAM_DAY_TAG: str(TRADING_DAY)},
                                      status=DagsterRunStatus.FAILURE)
    assert run.status == DagsterRunStatus.FAILURE
    sensor = build_market_open_sensor(clock=lambda: et(TRADING_DAY, "11:00"))
    assert len(tick(sensor, instance).run_requests) == 1


def test_market_open_sensor_is_silent_on_holidays(instance: DagsterInstance) -> None:
    for day in (dt.date(2025, 1, 9), dt.date(2025, 7, 4), dt.date(2025, 1, 12)):
        result = tick(build_market_open_sensor(clock=lambda d=day: et(d, "09:25")), instance)
        assert "not a trading day" in skipped(result)


def _beat(data_dir: Path, day: dt.date, updated: dt.datetime, state: str = "streaming") -> None:
    root = DataRoot.from_location(data_dir)
    beat = {"day": day.isoformat(), "state": state, "messages": 42, "last_event_time": "x",
            "updated_at": updated.astimezone(dt.UTC).isoformat()}
    root.write_bytes(json.dumps(beat).encode(), heartbeat_path(root, day))


def test_health_sensor_fails_and_restarts_a_stalled_session(instance: DagsterInstance, data_dir: Path) -> None:
    now = et(TRADING_DAY, "11:00")
    run = instance.create_run_for_job(stream_session_job, tags={STREAM_DAY_TAG: str(TRADING_DAY)},
                                      status=DagsterRunStatus.STARTED)
    _beat(data_dir, TRADING_DAY, now - dt.timedelta(seconds=30))
    sensor = build_stream_health_sensor(clock=lambda: now)
    assert not tick(sensor, instance).run_requests  # 30 s old: healthy
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED

    _beat(data_dir, TRADING_DAY, now - dt.timedelta(minutes=5))
    (restart,) = tick(sensor, instance).run_requests
    failed = instance.get_run_by_id(run.run_id)
    assert failed.status == DagsterRunStatus.FAILURE
    assert restart.run_key == f"stream-session-{TRADING_DAY}-restart-{run.run_id}"
    assert restart.run_config["ops"]["stream_market_session"]["config"]["date"] == str(TRADING_DAY)
    messages = [r.dagster_event.message or "" for r in instance.all_logs(run.run_id) if r.dagster_event]
    assert any("stalled: no heartbeat for 300 s (limit 120 s)" in m for m in messages), messages


def test_health_sensor_does_not_restart_after_the_close(instance: DagsterInstance, data_dir: Path) -> None:
    now = et(TRADING_DAY, "16:30")
    instance.create_run_for_job(stream_session_job, tags={STREAM_DAY_TAG: str(TRADING_DAY)},
                                status=DagsterRunStatus.STARTED)
    _beat(data_dir, TRADING_DAY, now - dt.timedelta(minutes=10))
    assert not tick(build_stream_health_sensor(clock=lambda: now), instance).run_requests
    assert instance.get_runs()[0].status == DagsterRunStatus.FAILURE


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
    nothing = tick(sensor, instance)
    assert "no new micro-batch" in skipped(nothing)

    _land(data_dir, TRADING_DAY, 0)
    first = tick(sensor, instance, nothing.cursor)
    (request,) = first.run_requests
    assert request.job_name == "intraday_refresh" and request.run_key == f"intraday-{TRADING_DAY}-1"
    assert request.run_config["ops"]["intraday_consolidated"]["config"]["date"] == str(TRADING_DAY)

    _land(data_dir, TRADING_DAY, 1)
    clock["now"] += dt.timedelta(minutes=2)
    waiting = tick(sensor, instance, first.cursor)
    assert "next refresh in 180 s" in skipped(waiting)

    clock["now"] += dt.timedelta(minutes=3)
    (second,) = tick(sensor, instance, waiting.cursor).run_requests
    assert second.run_key == f"intraday-{TRADING_DAY}-2"


def test_intraday_plan_starts_over_each_day() -> None:
    cursor = IntradayCursor(str(TRADING_DAY), files=9, requested_at=et(TRADING_DAY, "15:59").isoformat())
    next_day = dt.date(2025, 1, 10)
    plan = plan_intraday(et(next_day, "09:31"), next_day, 2, cursor)
    assert plan.run_key == f"intraday-{next_day}-2" and plan.cursor.files == 2
    assert plan_intraday(et(next_day, "09:31"), dt.date(2025, 1, 9), 2, cursor).day is None  # closed day
