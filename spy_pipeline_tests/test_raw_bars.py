"""raw_spy_bars materialized through Dagster against a real sandbox, files checked on disk."""

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import MINUTE_BARS
from spy_pipeline.sandbox import market
from spy_pipeline.sandbox.server import SandboxServer

RESOURCES = {"polygon": PolygonResource(), "store": ParquetStoreResource()}


def _materialize(
    instance: DagsterInstance,
    partition_key: str | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    raise_on_error: bool = True,
):
    return materialize(
        [raw_spy_bars],
        resources=RESOURCES,
        instance=instance,
        partition_key=partition_key,
        tags=tags,
        run_config=run_config,
        raise_on_error=raise_on_error,
    )


@pytest.fixture
def instance() -> DagsterInstance:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def _failure(result) -> str:
    """The user code's own exception line (Dagster wraps it in a step execution error)."""
    error = result.get_step_failure_events()[0].step_failure_data.error
    cause = error.cause or error
    return f"{cause.cls_name}: {cause.message}"


def _file(data_dir: Path, day: str) -> Path:
    return data_dir / "raw" / "spy" / f"{day}.parquet"


def test_two_partitions_land_as_sorted_unique_utc_files(data_dir: Path, instance: DagsterInstance) -> None:
    for day in ("2025-01-07", "2025-01-08"):
        assert _materialize(instance, day).success
        frame = pl.read_parquet(_file(data_dir, day))
        assert dict(frame.schema) == MINUTE_BARS.columns
        assert frame["timestamp"].is_sorted() and frame["timestamp"].n_unique() == frame.height
        assert frame["timestamp"].dtype == pl.Datetime("us", "UTC")
        bounds = cal.session_bounds(day)
        assert frame["timestamp"].min() >= bounds.pre_market_open
        assert frame["timestamp"].max() < bounds.after_hours_close
        expected = market.minute_bars("SPY", dt.date.fromisoformat(day))
        assert frame.height == expected.height
        assert frame["close"].to_list() == expected["c"].to_list()
        regular = frame.filter(pl.col("session") == "regular")
        assert regular["timestamp"].min() >= bounds.open and regular["timestamp"].max() < bounds.close
    assert sorted(p.name for p in (data_dir / "raw" / "spy").iterdir()) == ["2025-01-07.parquet", "2025-01-08.parquet"]


def test_rematerializing_a_partition_gives_identical_content(data_dir: Path, instance: DagsterInstance) -> None:
    _materialize(instance, "2025-01-08")
    first = pl.read_parquet(_file(data_dir, "2025-01-08"))
    digest = hashlib.sha256(_file(data_dir, "2025-01-08").read_bytes()).hexdigest()
    _materialize(instance, "2025-01-08")
    assert pl.read_parquet(_file(data_dir, "2025-01-08")).equals(first)
    assert hashlib.sha256(_file(data_dir, "2025-01-08").read_bytes()).hexdigest() == digest
    assert not list((data_dir / "raw" / "spy").glob(".*"))  # no temp files left


def test_materialization_metadata_reports_rows_bars_requests_and_schema(
    data_dir: Path, instance: DagsterInstance, sandbox_env: SandboxServer
) -> None:
    result = _materialize(instance, "2025-01-08")
    [event] = result.get_asset_materialization_events()
    meta = event.step_materialization_data.materialization.metadata
    rows = pl.read_parquet(_file(data_dir, "2025-01-08")).height
    assert meta["dagster/row_count"].value == rows == meta["rows"].value
    assert meta["polygon_requests"].value == sandbox_env.request_count("/v2/aggs") == 1
    assert meta["polygon_bytes_received"].value > 10_000
    assert [c.name for c in meta["dagster/column_schema"].schema.columns] == list(MINUTE_BARS.columns)
    bounds = cal.session_bounds("2025-01-08")
    assert bounds.pre_market_open.timestamp() <= meta["first_bar"].value < meta["last_bar"].value
    assert meta["last_bar"].value < bounds.after_hours_close.timestamp()


def test_range_run_fetches_a_week_in_one_request_and_writes_each_day(
    data_dir: Path, instance: DagsterInstance, sandbox_env: SandboxServer
) -> None:
    tags = {ASSET_PARTITION_RANGE_START_TAG: "2025-01-02", ASSET_PARTITION_RANGE_END_TAG: "2025-01-10"}
    result = _materialize(instance, tags=tags)
    assert result.success
    days = ["2025-01-02", "2025-01-03", "2025-01-06", "2025-01-07", "2025-01-08", "2025-01-10"]
    assert sorted(p.stem for p in (data_dir / "raw" / "spy").iterdir()) == days
    assert sandbox_env.request_count("/v2/aggs") == 1
    materialized = {e.partition for e in result.get_asset_materialization_events()}
    assert materialized == set(days)


def test_several_tickers_each_get_their_own_files(data_dir: Path, instance: DagsterInstance) -> None:
    _materialize(
        instance, "2025-01-08", run_config={"ops": {"raw_spy_bars": {"config": {"tickers": ["SPY", "QQQ"]}}}}
    )
    qqq = pl.read_parquet(data_dir / "raw" / "qqq" / "2025-01-08.parquet")
    assert set(qqq["ticker"]) == {"QQQ"} and qqq.height == market.minute_bars("QQQ", dt.date(2025, 1, 8)).height
    assert _file(data_dir, "2025-01-08").exists()


def test_an_empty_answer_on_a_trading_day_fails_and_writes_nothing(data_dir: Path, instance: DagsterInstance) -> None:
    result = _materialize(
        instance,
        "2025-01-08",
        raise_on_error=False,
        run_config={"ops": {"raw_spy_bars": {"config": {"tickers": ["ZZZZ"]}}}},
    )
    assert not result.success
    assert "EmptyDataError: Polygon returned no ZZZZ minute bars for trading day(s) 2025-01-08" in _failure(result)
    assert not (data_dir / "raw" / "zzzz").exists()


def test_path_like_ticker_in_config_is_refused(data_dir: Path, instance: DagsterInstance) -> None:
    result = _materialize(
        instance,
        "2025-01-08",
        raise_on_error=False,
        run_config={"ops": {"raw_spy_bars": {"config": {"tickers": ["../../etc"]}}}},
    )
    assert not result.success
    assert "not uppercase tickers such as SPY: ['../../etc']" in _failure(result)
    assert not any(data_dir.parent.rglob("*.parquet"))


def test_a_non_trading_day_is_not_a_partition(instance: DagsterInstance) -> None:
    with pytest.raises(Exception, match="2025-01-09"):
        _materialize(instance, "2025-01-09")


def test_vix_bars_are_index_values_with_null_volume(data_dir: Path, instance: DagsterInstance) -> None:
    assert materialize([raw_vix_bars], resources=RESOURCES, instance=instance, partition_key="2025-01-08").success
    frame = pl.read_parquet(data_dir / "raw" / "vix" / "2025-01-08.parquet")
    assert dict(frame.schema) == MINUTE_BARS.columns
    assert set(frame["ticker"]) == {"I:VIX"}
    assert frame["volume"].null_count() == frame["vwap"].null_count() == frame["transactions"].null_count() == 405
    bounds = cal.session_bounds("2025-01-08")
    assert frame["timestamp"].min() == bounds.open
    assert frame["timestamp"].max() == bounds.close + dt.timedelta(minutes=14)
    assert frame["close"].to_list() == market.minute_bars("I:VIX", dt.date(2025, 1, 8))["c"].to_list()


def test_a_month_backfill_costs_one_aggregate_query_per_ticker(
    data_dir: Path, instance: DagsterInstance, sandbox_env: SandboxServer
) -> None:
    tags = {ASSET_PARTITION_RANGE_START_TAG: "2025-01-02", ASSET_PARTITION_RANGE_END_TAG: "2025-01-31"}
    result = materialize([raw_spy_bars, raw_vix_bars], resources=RESOURCES, instance=instance, tags=tags)
    assert result.success
    days = cal.trading_days("2025-01-02", "2025-01-31")
    assert len(days) == 20  # 2025-01-09 and 2025-01-20 closed
    assert sandbox_env.request_count("/v2/aggs/ticker/SPY/") == 1
    assert sandbox_env.request_count("/v2/aggs/ticker/I:VIX/") == 1
    for folder in ("spy", "vix"):
        assert sorted(p.stem for p in (data_dir / "raw" / folder).glob("*.parquet")) == [d.isoformat() for d in days]
    per_partition = {
        e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata[
            "polygon_requests_per_partition"].value
        for e in result.get_asset_materialization_events()
    }
    assert per_partition == {"raw_spy_bars": 0.05, "raw_vix_bars": 0.05}
