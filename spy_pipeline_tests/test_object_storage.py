"""SPY_PIPELINE_DATA_DIR as an object-store URI: fsspec's in-memory filesystem stands in for s3://.

The same day as test_processed_assets (raw assets, consolidated, training, features, options_movement and
every check, then the summary report), with nothing touching a local folder; the files are read back
through DataRoot.
"""

import uuid
from pathlib import Path

import fsspec
import polars as pl
import pytest
from dagster import AssetSelection, DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

import spy_pipeline
from spy_pipeline.definitions import DAILY_ASSETS, defs
from spy_pipeline.defs.operations.storage_report import storage_report
from spy_pipeline.defs.processed.checks import PROCESSED_CHECKS
from spy_pipeline.defs.processed.scanner_assets import options_movement_summary
from spy_pipeline.defs.raw.assets import raw_spy_bars
from spy_pipeline.defs.raw.checks import RAW_CHECKS
from spy_pipeline.defs.raw.reference_assets import corporate_actions
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import CONSOLIDATED, DIVIDENDS, MINUTE_BARS, NEWS, OPTIONS_CONTRACTS
from spy_pipeline.io.storage import DataRoot, as_data_root
from spy_pipeline.settings import load_settings

DAY = cal.parse_date("2025-01-08")
RESOURCES = defs.resources


@pytest.fixture
def lake_uri(monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"memory://lake-{uuid.uuid4().hex[:8]}/prefix"
    monkeypatch.setenv("SPY_PIPELINE_DATA_DIR", uri)
    yield uri
    memory, bucket = fsspec.filesystem("memory"), "/" + uri.removeprefix("memory://").split("/")[0]
    if memory.exists(bucket):
        memory.rm(bucket, recursive=True)


def _range(day: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: day, ASSET_PARTITION_RANGE_END_TAG: day}


def test_a_sandbox_day_runs_end_to_end_on_an_object_store(lake_uri: str, tmp_path: Path) -> None:
    previous = cal.previous_trading_day(DAY)
    with DagsterInstance.ephemeral() as instance:
        assert materialize([corporate_actions], resources=RESOURCES, instance=instance).success
        assert materialize([raw_spy_bars], resources=RESOURCES, instance=instance,
                           partition_key=previous.isoformat()).success
        result = materialize([*DAILY_ASSETS, *RAW_CHECKS, *PROCESSED_CHECKS], resources=RESOURCES,
                             instance=instance, tags=_range(DAY.isoformat()))
        summary = materialize([options_movement_summary], resources=RESOURCES, instance=instance,
                              selection=AssetSelection.assets(options_movement_summary))
    assert result.success and summary.success
    evaluations = result.get_asset_check_evaluations()
    assert [e.check_name for e in evaluations if not e.passed] == []
    assert {"spy_schema_matches_contract", "consolidated_rows_are_valid", "training_matches_pandas_type"} <= {
        e.check_name for e in evaluations
    }

    root = DataRoot.from_location(lake_uri)
    assert not root.is_local and as_data_root(load_settings().data_dir) == root
    read = {
        ("raw", "spy"): MINUTE_BARS, ("raw", "vix"): MINUTE_BARS, ("raw", "options"): MINUTE_BARS,
        ("raw", "options", "contracts"): OPTIONS_CONTRACTS, ("raw", "news"): NEWS,
        ("processed", "consolidated"): CONSOLIDATED,
    }
    frames = {parts: root.read_partition(root.partition_path(DAY, *parts), schema) for parts, schema in read.items()}
    assert all(frame.height for parts, frame in frames.items() if parts != ("raw", "news"))
    assert root.read_partition(root.partition_path(previous, "raw", "spy"), MINUTE_BARS).height
    dividends = f"{root.dataset_path('raw', 'corporate_actions')}/dividends.parquet"
    assert root.read_partition(dividends, DIVIDENDS).height
    bounds = cal.session_bounds(DAY)
    bars = frames[("raw", "options")]
    in_session = bars.filter(pl.col("timestamp").is_between(bounds.open, bounds.close, closed="left")).height
    consolidated = frames[("processed", "consolidated")]
    assert consolidated.height == in_session and consolidated["rsi_14"].is_nan().sum() == 0
    training = root.read_frame(root.partition_path(DAY, "processed", "training"))
    assert "target_120" in training.columns and training["target_1"].dtype == pl.Float32
    features = root.read_frame(root.partition_path(DAY, "processed", "features"))
    assert {"spy_pct_change_5m", "iv_change_5m", "atm_iv"} <= set(features.columns)
    events = root.read_frame(root.partition_path(DAY, "processed", "options_movement"))
    assert {"ticker", "start", "end", "peak_gain_pct"} <= set(events.columns)

    # metadata shows URIs, and the summary's CSV landed in the store too
    [event] = summary.get_asset_materialization_events()
    csv_uri = event.step_materialization_data.materialization.metadata["csv"].value
    assert csv_uri == f"{lake_uri}/reports/options_movement_summary_{DAY}_{DAY}.csv"
    with root.fs.open_input_stream(f"{root.base}/{csv_uri.removeprefix(lake_uri + '/')}") as handle:
        assert handle.read().startswith(b"figure,value")
    spy_event = next(e for e in result.get_asset_materialization_events()
                     if e.step_materialization_data.materialization.asset_key.to_user_string() == "raw_spy_bars")
    assert spy_event.step_materialization_data.materialization.metadata["path"].value == (
        f"{lake_uri}/raw/spy/{DAY}.parquet"
    )
    # nothing went local but the instance's own scratch: the flat-file spool (a day's SPY option rows, keyed by
    # ETag, handed from options_contracts to raw_options_bars) lives under DAGSTER_HOME, not in the data dir
    local = [p for p in (*tmp_path.rglob("*.parquet"), *tmp_path.rglob("*.csv"))
             if not p.is_relative_to(tmp_path / ".dagster_home" / "flatfiles")]
    assert local == []

    # the public read API over the same store, from the settings' data dir (the URI)
    assert spy_pipeline.scan("consolidated", DAY, DAY).collect().equals(consolidated)
    spy_previous = root.read_partition(root.partition_path(previous, "raw", "spy"), MINUTE_BARS)
    both_days = pl.concat([spy_previous, frames[("raw", "spy")]])
    assert spy_pipeline.scan("spy", data_dir=lake_uri).collect().equals(both_days)


def test_local_only_operations_refuse_an_object_store_data_dir_in_one_line(lake_uri: str) -> None:
    result = materialize([storage_report], resources=RESOURCES, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else (
        failure.step_failure_data.error.message
    )
    assert f"storage_report works on a local data dir only, and the data dir is {lake_uri}" in message
