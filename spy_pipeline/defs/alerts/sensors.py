"""The sensors that send alerts. Each reads the event log from its cursor (a storage id: how far it has read),
turns what it finds into `Alert`s and hands them to the `notifier` resource; whether an alert was already sent
is the ledger's business (under DAGSTER_HOME), so a cursor lost or rewound never sends twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence

import polars as pl
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    partition_loading_context,
    run_failure_sensor,
    sensor,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from spy_pipeline.defs.alerts.resources import NotifierResource
from spy_pipeline.defs.automation.conditions import LOOKBACK
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import CONSOLIDATED
from spy_pipeline.io import lake
from spy_pipeline.io.alerts import (
    Alert,
    check_failed_alert,
    partition_missing_alert,
    polygon_error_rate_alert,
    run_failed_alert,
    scanner_event_alert,
)
from spy_pipeline.logs import redact
from spy_pipeline.settings import load_settings

MOVEMENT = AssetKey("options_movement")
POLYGON_ASSETS = ("raw_spy_bars", "raw_vix_bars", "options_contracts", "raw_options_bars", "raw_news",
                  "corporate_actions")
RUNNING = {DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
           DagsterRunStatus.STARTED}


def _ui_url() -> str:
    return load_settings().ui_url


@run_failure_sensor(
    name="run_failure_alerts",
    default_status=DefaultSensorStatus.RUNNING,
    description="Alerts on every failed run (a failed stream_session is 'streaming session failed'): job, "
    "partition, run id, the first failing step's error and a link to the run.",
)
def run_failure_alerts(context: RunFailureSensorContext, notifier: NotifierResource) -> None:
    run = context.dagster_run
    errors = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        cause = (error.cause or error) if error else None  # the user's exception, not Dagster's wrapper
        if cause is not None:
            errors.append(f"{event.step_key}: {cause.message.strip().splitlines()[0]}")
    error = errors[0] if errors else (context.failure_event.message or "failed")
    partition = run.tags.get("dagster/partition") or run.tags.get("spy_pipeline/stream_day") or "...".join(
        key for key in (run.tags.get("dagster/asset_partition_range_start"),
                        run.tags.get("dagster/asset_partition_range_end")) if key) or None
    alert = run_failed_alert(job=run.job_name, run_id=run.run_id, error=redact(error), partition=partition,
                             ui_url=_ui_url())
    notifier.send(context.instance, [alert], context.log)


@sensor(name="failed_check_alerts", minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="Alerts on every failed blocking asset check of this code location (from the instance's "
        "check executions; cursor: the last execution id seen per check).")
def failed_check_alerts(context: SensorEvaluationContext, notifier: NotifierResource) -> SkipReason | None:
    # The per-check execution index, not a scan of all events: the default SQLite event log is sharded by run,
    # where a global event cursor does not exist.
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    storage = context.instance.event_log_storage
    alerts = []
    for check_key in sorted(context.repository_def.asset_graph.asset_check_keys, key=str):
        if not context.repository_def.asset_graph.get_check_spec(check_key).blocking:
            continue
        name = check_key.to_user_string()
        records = storage.get_asset_check_execution_history(
            check_key, limit=100, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        for record in records:
            evaluation = record.event.dagster_event.asset_check_evaluation_data if record.event else None
            if record.id <= seen.get(name, 0) or evaluation is None or evaluation.passed:
                continue
            alerts.append(check_failed_alert(
                asset=check_key.asset_key.to_user_string(), check=check_key.name, partition=evaluation.partition,
                run_id=record.run_id, description=redact(evaluation.description or ""), ui_url=_ui_url(),
            ))
        if records:
            seen[name] = max(seen.get(name, 0), records[0].id)  # newest first
    if alerts:
        notifier.send(context.instance, alerts, context.log)
    context.update_cursor(json.dumps(seen, sort_keys=True))
    return None if alerts else SkipReason("no new failed blocking check")


def _greeks_at_triggers(store: ParquetStoreResource, day: str, events: pl.DataFrame) -> pl.DataFrame:
    """(ticker, start, iv, delta) from the day's consolidated file; nulls when it is not there (yet)."""
    consolidated = lake.read_day_if_present(store.data_root, "consolidated", cal.parse_date(day), CONSOLIDATED)
    keys = events.select("ticker", "start")
    if consolidated is None:
        return keys.with_columns(iv=pl.lit(None, pl.Float64), delta=pl.lit(None, pl.Float64))
    minutes = consolidated.select("ticker", pl.col("timestamp").alias("start"), "iv", "delta")
    return keys.join(minutes.with_columns(pl.col("start").cast(keys.schema["start"])), on=["ticker", "start"],
                     how="left")


@sensor(name="scanner_event_alerts", minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="Alerts on each options_movement event once its day is materialized: contract, trigger time "
        "ET, reference and trigger prices, gain, IV and delta at the trigger (from consolidated), run link.")
def scanner_event_alerts(
    context: SensorEvaluationContext, notifier: NotifierResource, store: ParquetStoreResource
) -> SkipReason | None:
    after = int(context.cursor) if context.cursor else None
    result = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=MOVEMENT, after_storage_id=after), limit=50, ascending=True
    )
    alerts: list[Alert] = []
    done, ui_url = after, _ui_url()
    for record in result.records:
        day, run_id = record.partition_key, record.run_id
        path = lake.day_file(store.data_root, "options_movement", cal.parse_date(day)) if day else None
        if path is None or not store.data_root.exists(path):
            done = record.storage_id
            continue
        run = context.instance.get_run_by_id(run_id)
        has_consolidated = store.data_root.exists(lake.day_file(store.data_root, "consolidated", cal.parse_date(day)))
        if not has_consolidated and run is not None and run.status in RUNNING:
            break  # consolidated (IV, delta) comes later in the same run: next tick
        events = store.read_frame(path)
        if events.height:
            greeks = _greeks_at_triggers(store, day, events)
            for event, extra in zip(events.iter_rows(named=True), greeks.iter_rows(named=True), strict=True):
                alerts.append(scanner_event_alert(event, iv=extra["iv"], delta=extra["delta"], run_id=run_id,
                                                  ui_url=ui_url))
        done = record.storage_id
    if alerts:
        notifier.send(context.instance, alerts, context.log)
    if done is not None and done != after:
        context.update_cursor(str(done))
    return None if alerts else SkipReason("no new scanner events")


def _window(entries: Sequence[list[int]], window_requests: int) -> list[list[int]]:
    """The newest (storage id, requests, errors) entries holding at least `window_requests` requests."""
    kept, total = [], 0
    for entry in reversed(entries):
        kept.append(entry)
        total += entry[1]
        if total >= window_requests:
            break
    return kept[::-1]


def build_polygon_error_rate_sensor(
    *, threshold: float = 0.01, window_requests: int = 1000, min_requests: int = 100,
    name: str = "polygon_error_rate_alerts",
) -> SensorDefinition:
    """An alert when more than `threshold` of the last `window_requests` Polygon requests failed (an attempt that
    was retried: a 429, a 5xx, a timeout, a dropped connection, malformed JSON), from the request counters every
    Polygon-bound materialization publishes (polygon_requests, polygon_retries). One alert per episode: another
    only after the rate went back under the threshold."""

    @sensor(name=name, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
            description=f"Alerts when Polygon's error rate over the last {window_requests} requests exceeds "
            f"{threshold:.1%} (at least {min_requests} requests seen).")
    def _error_rate(context: SensorEvaluationContext, notifier: NotifierResource) -> SkipReason | None:
        state = json.loads(context.cursor) if context.cursor else {"after": {}, "window": [], "episode": None}
        entries: list[list[int]] = list(state["window"])
        for asset in POLYGON_ASSETS:
            result = context.instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(asset), after_storage_id=state["after"].get(asset)),
                limit=1000, ascending=True,
            )
            for record in result.records:
                metadata = record.asset_materialization.metadata if record.asset_materialization else {}
                requests, retries = metadata.get("polygon_requests"), metadata.get("polygon_retries")
                if requests is not None and retries is not None and requests.value:
                    entries.append([record.storage_id, int(requests.value), int(retries.value)])
                state["after"][asset] = record.storage_id
        entries.sort()
        state["window"] = _window(entries, window_requests)
        requests = sum(entry[1] for entry in state["window"])
        errors = sum(entry[2] for entry in state["window"])
        rate = errors / requests if requests else 0.0
        reason = f"Polygon error rate {rate:.2%} over the last {requests} requests (threshold {threshold:.1%})"
        if requests < min_requests or rate <= threshold:
            state["episode"] = None
            context.update_cursor(json.dumps(state))
            return SkipReason(reason)
        if state["episode"] is not None:
            context.update_cursor(json.dumps(state))
            return SkipReason(f"{reason}: already alerted for this episode")
        state["episode"] = str(state["window"][-1][0])  # the alert's key: a new episode is a new alert
        alert = polygon_error_rate_alert(errors=errors, requests=requests, threshold=threshold,
                                         since_key=state["episode"])
        notifier.send(context.instance, [alert], context.log)
        context.update_cursor(json.dumps(state))
        return None

    return _error_rate


polygon_error_rate_alerts = build_polygon_error_rate_sensor()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _window_boundary(now: dt.datetime, lookback: dt.timedelta) -> dt.datetime | None:
    """Where the automation's catch-up window begins at `now`: the latest trading-day partition's end minus
    `lookback`, as AutomationCondition.in_latest_time_window computes it; None before the first partition."""
    with partition_loading_context(effective_dt=now):
        latest = trading_day_partitions.get_last_partition_window()
    return None if latest is None else latest.end - lookback


def _left_window(first: dt.date, boundary: dt.datetime) -> list[dt.date]:
    """Trading days from `first` whose partition (which ends at the next midnight, ET) ends by `boundary`."""
    last = boundary.astimezone(cal.NEW_YORK).date() - dt.timedelta(days=1)
    return cal.trading_days(first, last) if first <= last else []


def build_partition_missing_sensor(
    *, lookback: dt.timedelta = LOOKBACK, now: Callable[[], dt.datetime] = _now,
    name: str = "partition_missing_alerts",
) -> SensorDefinition:
    """An alert per trading day that left the catch-up window (`lookback`, the automation's LOOKBACK) with a
    nightly (trading-day partitioned) asset still not materialized: the automation no longer requests it (nor a
    day whose latest run failed), so only a person can. The cursor is the last day examined, so each day is
    examined once; the ledger never sends a day's alert twice, should the cursor be lost. The first evaluation
    examines the days that left the window in the last `lookback`, not the whole history (an instance that
    backfilled a few days long ago has no nightly history to miss). `now` is for tests."""

    @sensor(name=name, minimum_interval_seconds=300, default_status=DefaultSensorStatus.RUNNING,
            description=f"Alerts once per trading day still missing a nightly asset after the automation's "
            f"{lookback.days}-day catch-up window (cursor: the last day examined).")
    def _partition_missing(context: SensorEvaluationContext, notifier: NotifierResource) -> SkipReason | None:
        boundary = _window_boundary(now(), lookback)
        nightly = sorted((node.key for node in context.repository_def.asset_graph.asset_nodes
                          if node.partitions_def == trading_day_partitions), key=AssetKey.to_user_string)
        if boundary is None or not nightly:
            return SkipReason("no nightly asset or no trading-day partition yet")
        if context.cursor:
            first = cal.parse_date(context.cursor) + dt.timedelta(days=1)
        else:
            first = max((boundary - lookback).astimezone(cal.NEW_YORK).date(), cal.FIRST_TRADING_DAY)
        days = _left_window(first, boundary)
        if not days:
            return SkipReason(f"no trading day left the catch-up window since {first}")
        materialized = {key: context.instance.get_materialized_partitions(key) for key in nightly}
        alerts = []
        for day in days:
            missing = [key.to_user_string() for key in nightly if day.isoformat() not in materialized[key]]
            if missing:
                expected = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), cal.NEW_YORK)
                alerts.append(partition_missing_alert(day=day.isoformat(), assets=missing,
                                                      since=f"{expected:%Y-%m-%d %H:%M} ET"))
        if alerts:
            notifier.send(context.instance, alerts, context.log)
        context.update_cursor(days[-1].isoformat())
        if alerts:
            return None
        return SkipReason(f"every nightly asset is materialized for {days[0]} to {days[-1]}")

    return _partition_missing


partition_missing_alerts = build_partition_missing_sensor()
