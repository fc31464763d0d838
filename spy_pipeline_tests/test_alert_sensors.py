"""The sensors that send alerts, evaluated against a real instance and a loopback JSON webhook: a failed run, a
failed blocking check, scanner events with IV and delta, Polygon's error rate, a trading day still missing after
the catch-up window; each once; recorded in Dagster."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetCheckResult,
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    SkipReason,
    asset,
    asset_check,
    build_run_status_sensor_context,
    build_sensor_context,
    materialize,
)

from spy_pipeline.defs.alerts import (
    ALERT_DELIVERIES,
    ALERT_SENSORS,
    NotifierResource,
    build_partition_missing_sensor,
    build_polygon_error_rate_sensor,
    failed_check_alerts,
    run_failure_alerts,
    scanner_event_alerts,
)
from spy_pipeline.defs.automation.conditions import LOOKBACK
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import CONSOLIDATED
from spy_pipeline.io import lake, storage
from spy_pipeline_tests.alert_receiver import AlertReceiver

NOTIFIER = NotifierResource(digest_window_s=0.0, wait_s=10.0)
DAY = dt.date(2025, 1, 8)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AlertReceiver]:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("SPY_PIPELINE_UI_URL", "http://ui.example:3000")
    with AlertReceiver() as server:
        monkeypatch.setenv("SPY_PIPELINE_ALERT_URLS", server.url("hook"))
        yield server


@pytest.fixture
def instance(receiver: AlertReceiver) -> Iterator[DagsterInstance]:
    with DagsterInstance.get() as dagster_instance:  # DAGSTER_HOME: the ledger lives beside it
        yield dagster_instance


@asset
def fragile() -> None:
    raise ValueError("the planted failure")


@asset
def checked() -> None:
    return None


@asset_check(asset=checked, blocking=True)
def checked_rows_are_valid() -> AssetCheckResult:
    return AssetCheckResult(passed=False, description="3 rows with a negative price")


@asset_check(asset=checked, blocking=False)
def checked_is_fresh() -> AssetCheckResult:
    return AssetCheckResult(passed=False, description="a warning, not an alert")


def test_a_failed_run_is_alerted_once_with_its_run_id_and_error(
    instance: DagsterInstance, receiver: AlertReceiver
) -> None:
    result = materialize([fragile], instance=instance, raise_on_error=False)
    assert not result.success
    for _ in range(2):  # the daemon evaluating the same failure again (a restart) sends nothing new
        context = build_run_status_sensor_context(
            sensor_name="run_failure_alerts", dagster_event=result.get_run_failure_event(),
            dagster_instance=instance, dagster_run=result.dagster_run, resources={"notifier": NOTIFIER},
        ).for_run_failure()
        run_failure_alerts(context)
    [payload] = receiver.wait_for(1)
    assert payload["type"] == "failure"
    assert payload["title"] == f"Run of {result.dagster_run.job_name} failed"
    assert payload["message"] == (
        f"run {result.run_id}: fragile: ValueError: the planted failure\nhttp://ui.example:3000/runs/{result.run_id}"
    )
    [observation] = instance.fetch_observations(ALERT_DELIVERIES, limit=10).records
    metadata = observation.asset_observation.metadata
    assert metadata["channels"].value == "json #1" and metadata["sent"].value == 1
    assert "json #1: sent" in metadata["deliveries"].value


def test_a_failed_blocking_check_is_alerted_and_a_warning_is_not(
    instance: DagsterInstance, receiver: AlertReceiver
) -> None:
    result = materialize([checked, checked_rows_are_valid, checked_is_fresh], instance=instance,
                         raise_on_error=False)
    assert {e.check_name for e in result.get_asset_check_evaluations() if not e.passed} == {
        "checked_rows_are_valid", "checked_is_fresh"}
    definitions = Definitions(assets=[checked], asset_checks=[checked_rows_are_valid, checked_is_fresh],
                              sensors=[failed_check_alerts], resources={"notifier": NOTIFIER})

    def tick(cursor: str | None) -> tuple[object, str | None]:
        context = build_sensor_context(instance=instance, cursor=cursor, definitions=definitions,
                                       resources={"notifier": NOTIFIER})
        return failed_check_alerts(context), context.cursor

    _, cursor = tick(None)
    assert isinstance(tick(cursor)[0], SkipReason)  # nothing new after the cursor
    tick(None)  # a lost cursor re-reads the failure: the ledger still sends it only once
    time.sleep(0.3)
    [payload] = receiver.wait_for(1)
    assert payload["title"] == "Blocking check checked_rows_are_valid failed on checked"
    assert payload["message"].startswith(f"run {result.run_id}: 3 rows with a negative price")


def _consolidated_minute(ticker: str, minute: dt.datetime, iv: float, delta: float) -> pl.DataFrame:
    row = {name: None for name in CONSOLIDATED.columns} | {"ticker": ticker, "timestamp": minute, "iv": iv,
                                                            "delta": delta}
    return pl.DataFrame([row], schema=CONSOLIDATED.polars_schema)


def test_scanner_events_are_alerted_with_iv_and_delta_at_the_trigger(
    instance: DagsterInstance, receiver: AlertReceiver, data_dir: Path
) -> None:
    start = dt.datetime(2025, 1, 8, 15, 7, tzinfo=dt.UTC)
    events = pl.DataFrame({
        "ticker": ["O:SPY250110C00590000"], "start": [start], "end": [start + dt.timedelta(minutes=4)],
        "duration_minutes": [5], "reference_price": [2.0], "trigger_price": [2.5], "peak_price": [2.8],
        "peak_gain_pct": [40.0], "minutes_above_trigger": [3], "trigger_hour_et": [10],
    })
    storage.write_parquet_atomic(events, lake.day_file(data_dir, "options_movement", DAY))
    storage.write_parquet_atomic(
        _consolidated_minute("O:SPY250110C00590000", start, iv=0.1875, delta=0.3125),
        lake.day_file(data_dir, "consolidated", DAY),
    )
    instance.report_runless_asset_event(AssetMaterialization("options_movement", partition=DAY.isoformat()))
    resources = {"notifier": NOTIFIER, "store": ParquetStoreResource()}
    context = build_sensor_context(instance=instance, resources=resources)
    scanner_event_alerts(context)
    scanner_event_alerts(build_sensor_context(instance=instance, resources=resources))  # cursor lost: no resend
    [payload] = receiver.wait_for(1)
    assert payload["title"] == "O:SPY250110C00590000 +25% at 10:07 ET"
    assert payload["message"].startswith(
        "O:SPY250110C00590000 at 2025-01-08 10:07 ET: 2.50 from a reference of 2.00 (+25.0%), IV 0.188, delta 0.312"
    )
    assert context.cursor  # read up to the materialization


def test_polygon_error_rate_alerts_once_per_episode(instance: DagsterInstance, receiver: AlertReceiver) -> None:
    sensor = build_polygon_error_rate_sensor(threshold=0.01, window_requests=200, min_requests=100)
    cursor = None

    def land(requests: int, retries: int) -> None:
        instance.report_runless_asset_event(AssetMaterialization(
            "raw_spy_bars", metadata={"polygon_requests": requests, "polygon_retries": retries}))

    def tick() -> None:
        nonlocal cursor
        context = build_sensor_context(instance=instance, cursor=cursor, resources={"notifier": NOTIFIER})
        sensor(context)
        cursor = context.cursor

    land(100, 0)
    tick()  # 0% of 100
    land(100, 5)
    tick()  # 5 of the last 200 = 2.5% > 1%: alert
    land(50, 0)
    tick()  # 5 of 250 (the window holds at least 200): still the same episode, no new alert
    land(200, 1)
    tick()  # 1 of the last 200 = 0.5%: the episode ends
    land(100, 9)
    tick()  # 10 of the last 300: a new episode, a new alert
    first, second = receiver.wait_for(2)
    assert first["title"] == "Polygon error rate 2.5% (threshold 1.0%)"
    assert first["message"] == "5 failed attempts (retried) in the last 200 requests to Polygon"
    assert second["title"] == "Polygon error rate 3.3% (threshold 1.0%)"
    assert len(receiver.payloads) == 2


@asset(partitions_def=trading_day_partitions)
def nightly_bars() -> None:
    return None


@asset(partitions_def=trading_day_partitions)
def nightly_features() -> None:
    return None


def test_a_trading_day_still_missing_after_the_catch_up_window_is_alerted_once(
    instance: DagsterInstance, receiver: AlertReceiver
) -> None:
    # 2025-01-22 lost both assets, 2025-01-23 one of them: both are older than the 14-day window on 2025-02-14.
    # 2025-02-05 is missing too, but inside the window: the automation may still catch it up.
    holes = {"2025-01-22": ("nightly_bars", "nightly_features"), "2025-01-23": ("nightly_features",),
             "2025-02-05": ("nightly_bars", "nightly_features")}
    for day in cal.trading_days(dt.date(2025, 1, 2), dt.date(2025, 2, 13)):
        for name in ("nightly_bars", "nightly_features"):
            if name not in holes.get(day.isoformat(), ()):
                instance.report_runless_asset_event(AssetMaterialization(name, partition=day.isoformat()))
    clock = {"now": dt.datetime(2025, 2, 14, 12, tzinfo=cal.NEW_YORK)}
    sensor = build_partition_missing_sensor(lookback=LOOKBACK, now=lambda: clock["now"])
    definitions = Definitions(assets=[nightly_bars, nightly_features], sensors=[sensor],
                              resources={"notifier": NOTIFIER})

    def tick(cursor: str | None) -> tuple[object, str | None]:
        context = build_sensor_context(instance=instance, cursor=cursor, definitions=definitions,
                                       resources={"notifier": NOTIFIER})
        return sensor(context), context.cursor

    result, cursor = tick(None)
    assert result is None and cursor == "2025-01-30"  # the window starts at 2025-01-31 00:00 ET
    first, second = receiver.wait_for(2)
    assert first["title"] == "Trading day 2025-01-22 still missing"
    assert first["message"] == ("nightly_bars, nightly_features not materialized for 2025-01-22 "
                                "(expected since 2025-01-23 00:00 ET)")
    assert second["title"] == "Trading day 2025-01-23 still missing"
    assert second["message"].startswith("nightly_features not materialized for 2025-01-23")

    assert isinstance(tick(cursor)[0], SkipReason)  # nothing left the window since
    tick(None)  # a lost cursor (or a restart) examines the same days again: the ledger sends nothing twice
    assert len(instance.fetch_observations(ALERT_DELIVERIES, limit=10).records) == 1  # one send, one record

    clock["now"] = dt.datetime(2025, 2, 20, 12, tzinfo=cal.NEW_YORK)  # 2025-02-05 has now left the window
    result, cursor = tick(cursor)
    assert cursor == "2025-02-05"
    assert receiver.wait_for(3)[2]["title"] == "Trading day 2025-02-05 still missing"
    assert len(receiver.payloads) == 3


def test_every_alert_sensor_is_in_the_code_location() -> None:
    from spy_pipeline.definitions import defs

    names = {sensor.name for sensor in defs.get_repository_def().sensor_defs}
    assert {sensor.name for sensor in ALERT_SENSORS} == {
        "run_failure_alerts", "failed_check_alerts", "scanner_event_alerts", "polygon_error_rate_alerts",
        "partition_missing_alerts"}
    assert names >= {sensor.name for sensor in ALERT_SENSORS} | {"stream_health_sensor"}
