"""Range runs keep their good days (defs/partial_ranges.py): a day without data fails alone, with its reason,
every other day is materialized with its own metadata, and the automation picks up what the failed step held
back without retrying the failed day. Against a test-owned sandbox serving one day as a vendor outage."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    build_run_status_sensor_context,
    materialize,
)

from spy_pipeline import definitions as location
from spy_pipeline.app.runner import step_failure_lines
from spy_pipeline.definitions import defs
from spy_pipeline.defs.processed.assets import consolidated
from spy_pipeline.defs.raw.assets import raw_spy_bars
from spy_pipeline.defs.raw.reference_assets import corporate_actions
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox.faults import Fault
from spy_pipeline.sandbox.server import SandboxServer

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
START, END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
SPY_AGGS = "/v2/aggs/ticker/SPY/range/1/minute/"


@pytest.fixture
def rest_sandbox(sandbox_env: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    monkeypatch.setenv("SPY_PIPELINE_SOURCE", "rest")  # the faults act on REST answers
    return sandbox_env


def outage(sandbox: SandboxServer, first: str, last: str, bad: str) -> None:
    """The range's one request comes back empty (the outage is inside it), then the bad day alone does too."""
    sandbox.faults.add(f"{SPY_AGGS}{first}/{last}", Fault("no_results"))
    sandbox.faults.add(f"{SPY_AGGS}{bad}/{bad}", Fault("no_results"))


def materializations(instance: DagsterInstance, key: AssetKey) -> dict[str, dict]:
    """The latest materialization's metadata of each partition of `key`."""
    records = instance.fetch_materializations(key, limit=1000).records
    latest: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: r.storage_id):
        event = record.asset_materialization
        latest[event.partition] = {name: value.value for name, value in event.metadata.items()}
    return latest


@pytest.mark.integration
def test_a_day_without_data_fails_alone_and_the_others_are_materialized(
    rest_sandbox: SandboxServer, data_dir: Path
) -> None:
    outage(rest_sandbox, "2025-01-13", "2025-01-15", "2025-01-14")
    with DagsterInstance.ephemeral() as instance:
        result = materialize([raw_spy_bars], resources=defs.resources, instance=instance, raise_on_error=False,
                             run_config=QUIET, tags={START: "2025-01-13", END: "2025-01-15"})
        assert not result.success
        [line] = step_failure_lines(result)
        assert "1 of 3 trading days failed (2 materialized)" in line
        assert "2025-01-14: Polygon returned no SPY minute bars for trading day(s) 2025-01-14" in line
        assert instance.get_materialized_partitions(AssetKey("raw_spy_bars")) == {"2025-01-13", "2025-01-15"}
        by_day = materializations(instance, AssetKey("raw_spy_bars"))
    assert sorted(by_day) == ["2025-01-13", "2025-01-15"]
    assert not (data_dir / "raw" / "spy" / "2025-01-14.parquet").exists()
    for day, metadata in by_day.items():  # each day its own figures, read back from its own file
        rows = pl.read_parquet(data_dir / "raw" / "spy" / f"{day}.parquet").height
        assert metadata["dagster/row_count"] == metadata["rows"] == rows
        assert metadata["path"].endswith(f"raw/spy/{day}.parquet")
        assert metadata["first_partition"] == metadata["last_partition"] == day


@pytest.mark.integration
def test_each_partition_of_a_successful_range_run_gets_its_own_metadata(
    sandbox_env: SandboxServer, data_dir: Path
) -> None:
    days = ["2025-01-06", "2025-01-07"]
    with DagsterInstance.ephemeral() as instance:
        for assets in ([corporate_actions], [raw_spy_bars]):
            tags = {START: "2025-01-03", END: days[-1]} if assets == [raw_spy_bars] else {}
            assert materialize(assets, resources=defs.resources, instance=instance, run_config=QUIET,
                               tags=tags).success
        # consolidated needs its inputs: the other raw assets for the two days
        later = [a for a in location.DAILY_ASSETS if a.key.to_user_string() in {
            "raw_vix_bars", "raw_news", "options_contracts", "raw_options_bars", "consolidated", "options_movement",
            "daily_charts"}]
        assert materialize(later, resources=defs.resources, instance=instance, run_config=QUIET,
                           tags={START: days[0], END: days[-1]}).success
        charts = materializations(instance, AssetKey("daily_charts"))
        by_day = materializations(instance, consolidated.key)
    assert sorted(by_day) == days
    rows = {day: pl.read_parquet(data_dir / "processed" / "consolidated" / f"{day}.parquet") for day in days}
    assert rows[days[0]].height != rows[days[1]].height  # so a range total could not pass for both
    for day in days:
        metadata = by_day[day]
        assert metadata["dagster/row_count"] == rows[day].height
        assert metadata["contracts"] == rows[day]["ticker"].n_unique()
        assert metadata["iv_nan_share"] == round(float((rows[day]["iv_reason"] != 0).mean()), 4)
        assert metadata["path"].endswith(f"processed/consolidated/{day}.parquet")
        assert metadata["rows_missing_indicator_history"] == 0  # 01-03's SPY bars are in the lake for 01-06
    # the day's charts, thumbnails inline, on the day's own materialization (not only for one-day runs)
    assert sorted(charts) == days
    for day in days:
        assert charts[day]["spy_vix_path"].endswith(f"reports/charts/{day}/spy_vix.png")
        assert charts[day]["spy_vix"].startswith(f"![SPY and VIX {day}](data:image/png;base64,")
    assert charts[days[0]]["spy_vix"] != charts[days[1]]["spy_vix"]


@pytest.mark.integration
def test_the_good_days_held_back_are_requested_again_and_the_failed_day_is_not(
    rest_sandbox: SandboxServer, data_dir: Path
) -> None:
    """A range run of the whole daily graph with an outage on 01-14: its raw_spy_bars step fails, so every step
    after it is skipped for the whole range. held_back_days_sensor asks for those steps' assets on 01-13 and
    on 01-15 (one run each: 01-14 between them failed), never for raw_spy_bars and never for 01-14."""
    outage(rest_sandbox, "2025-01-13", "2025-01-15", "2025-01-14")
    sensor = next(s for s in defs.sensors if s.name == "held_back_days_sensor")
    with DagsterInstance.ephemeral() as instance:
        assert materialize([corporate_actions], resources=defs.resources, instance=instance, run_config=QUIET).success
        # what daily_backfill runs (the charts are a run of their own, requested by their automation condition)
        run = materialize(location.DAILY_DATA_ASSETS, resources=defs.resources, instance=instance,
                          raise_on_error=False, run_config=QUIET, tags={START: "2025-01-13", END: "2025-01-15"})
        assert not run.success
        failure = next(e for e in run.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
        context = build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=failure, dagster_instance=instance,
            dagster_run=run.dagster_run, repository_def=defs.get_repository_def(),
        ).for_run_failure()
        requests = list(sensor(context))
        downstream = {"options_contracts", "raw_options_bars", "consolidated", "training_dataset", "features",
                      "options_movement"}
        assert [(r.tags[START], r.tags[END]) for r in requests] == [("2025-01-13", "2025-01-13"),
                                                                    ("2025-01-15", "2025-01-15")]
        for request in requests:
            assert {key.to_user_string() for key in request.asset_selection} == downstream
            assert request.run_key.startswith(run.run_id)
        # the requested run finishes a good day: its processed data lands
        finish = materialize(location.DAILY_DATA_ASSETS, resources=defs.resources, instance=instance, run_config=QUIET,
                             selection=requests[1].asset_selection, tags=requests[1].tags)
        assert finish.success, step_failure_lines(finish)
    assert (data_dir / "processed" / "training" / "2025-01-15.parquet").exists()
    assert not (data_dir / "processed" / "consolidated" / "2025-01-14.parquet").exists()


def test_consecutive_runs_of_trading_days_cross_weekends_not_gaps() -> None:
    runs = cal.consecutive_runs(["2025-01-16", "2025-01-13", "2025-01-17", "2025-01-21", "2025-01-15", "2025-01-23"])
    # 01-14 and 01-22 missing break runs; the weekend and the 01-20 holiday (MLK day) do not
    assert [(a.isoformat(), b.isoformat()) for a, b in runs] == [
        ("2025-01-13", "2025-01-13"), ("2025-01-15", "2025-01-21"), ("2025-01-23", "2025-01-23")]
