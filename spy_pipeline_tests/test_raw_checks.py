"""Asset checks on raw minute bars: they pass on sandbox data and fail, with figures, on bad files."""

from pathlib import Path

import polars as pl
import pytest
from dagster import AssetCheckKey, AssetSelection, DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.checks import RAW_CHECKS
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource

RESOURCES = {"polygon": PolygonResource(), "store": ParquetStoreResource()}
ASSETS = [raw_spy_bars, raw_vix_bars, *RAW_CHECKS]


@pytest.fixture
def instance() -> DagsterInstance:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def _range(start: str, end: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}


def _evaluations(result) -> dict[str, object]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_all_checks_pass_on_an_ordinary_and_an_early_close_week(instance: DagsterInstance, data_dir: Path) -> None:
    result = materialize(ASSETS, resources=RESOURCES, instance=instance, tags=_range("2024-11-25", "2024-11-29"))
    assert result.success
    evaluations = _evaluations(result)
    assert {name for name, e in evaluations.items() if not e.passed} == set()
    assert "spy_regular_session_coverage" in evaluations and "vix_rows_are_valid" in evaluations
    coverage = evaluations["spy_regular_session_coverage"].metadata["coverage"].value
    assert "| raw/spy/2024-11-29.parquet | 210 |" in coverage  # the day after Thanksgiving closes at 13:00
    assert "| raw/vix/2024-11-29.parquet | 210 | 210 | 1.0 |" in (
        evaluations["vix_regular_session_coverage"].metadata["coverage"].value)


def _materialize_then_plant(instance: DagsterInstance, data_dir: Path, plant) -> dict[str, object]:
    assert materialize(ASSETS, resources=RESOURCES, instance=instance, partition_key="2025-01-08").success
    path = data_dir / "raw" / "spy" / "2025-01-08.parquet"
    plant(path)
    result = materialize(ASSETS, resources=RESOURCES, instance=instance, tags=_range("2025-01-08", "2025-01-08"),
                         selection=AssetSelection.checks_for_assets(raw_spy_bars), raise_on_error=False)
    return _evaluations(result)


def test_duplicate_rows_fail_the_validity_check(instance: DagsterInstance, data_dir: Path) -> None:
    def plant(path: Path) -> None:
        frame = pl.read_parquet(path)
        pl.concat([frame, frame.head(3)]).sort("timestamp").write_parquet(path)

    evaluations = _materialize_then_plant(instance, data_dir, plant)
    validity = evaluations["spy_rows_are_valid"]
    assert not validity.passed
    assert "duplicate_keys: 3" in validity.metadata["violations"].value
    assert evaluations["spy_schema_matches_contract"].passed


def test_a_high_below_the_low_fails_the_validity_check(instance: DagsterInstance, data_dir: Path) -> None:
    def plant(path: Path) -> None:
        frame = pl.read_parquet(path)
        broken = frame.with_columns(
            high=pl.when(pl.int_range(pl.len()) == 10).then(pl.col("low") - 1).otherwise(pl.col("high")))
        broken.write_parquet(path)

    validity = _materialize_then_plant(instance, data_dir, plant)["spy_rows_are_valid"]
    assert not validity.passed
    assert "high_below_low: 1" in validity.metadata["violations"].value


def test_a_missing_column_fails_the_blocking_schema_check(instance: DagsterInstance, data_dir: Path) -> None:
    evaluations = _materialize_then_plant(
        instance, data_dir, lambda path: pl.read_parquet(path).drop("vwap").write_parquet(path))
    schema = evaluations["spy_schema_matches_contract"]
    assert not schema.passed
    assert "does not have the minute_bars schema" in schema.metadata["problems"].value


def test_garbage_bytes_fail_the_schema_check_with_a_reason(instance: DagsterInstance, data_dir: Path) -> None:
    evaluations = _materialize_then_plant(instance, data_dir, lambda path: path.write_bytes(b"not parquet"))
    schema = evaluations["spy_schema_matches_contract"]
    assert not schema.passed
    assert "not a readable Parquet file" in schema.metadata["problems"].value


def test_thin_coverage_fails_the_coverage_check(instance: DagsterInstance, data_dir: Path) -> None:
    def plant(path: Path) -> None:
        frame = pl.read_parquet(path)
        frame.filter((pl.col("session") != "regular") | (pl.int_range(pl.len()) % 3 == 0)).write_parquet(path)

    coverage = _materialize_then_plant(instance, data_dir, plant)["spy_regular_session_coverage"]
    assert not coverage.passed
    assert coverage.metadata["lowest_coverage"].value < 0.5


def test_a_blocking_check_failure_fails_the_run(instance: DagsterInstance, data_dir: Path, monkeypatch) -> None:
    from spy_pipeline.io import bars, ingest

    def corrupting(ticker, raw, days):  # a writer bug: one bar's high below its low
        result = bars.minute_bars_by_day(ticker, raw, days)
        return [bars.DayBars(d.day, d.frame.with_columns(
            high=pl.when(pl.int_range(pl.len()) == 5).then(pl.col("low") - 1).otherwise(pl.col("high"))),
            d.duplicates_dropped, d.outside_session_dropped) for d in result]

    monkeypatch.setattr(ingest, "minute_bars_by_day", corrupting)
    monkeypatch.setenv("SPY_PIPELINE_SOURCE", "rest")  # the bug is in the REST parser
    result = materialize(ASSETS, resources=RESOURCES, instance=instance, partition_key="2025-01-08",
                         selection=AssetSelection.assets(raw_spy_bars) | AssetSelection.checks_for_assets(raw_spy_bars),
                         raise_on_error=False)
    assert not result.success
    evaluation = _evaluations(result)["spy_rows_are_valid"]
    assert not evaluation.passed and "high_below_low: 1" in evaluation.metadata["violations"].value


def _materialize_spy(instance: DagsterInstance) -> None:
    assert materialize(ASSETS, resources=RESOURCES, instance=instance, partition_key="2025-01-08",
                       selection=AssetSelection.assets(raw_spy_bars)).success


def _spy_checks_alone(instance: DagsterInstance, selection: AssetSelection):
    return materialize(ASSETS, resources=RESOURCES, instance=instance, tags=_range("2025-01-08", "2025-01-08"),
                       selection=selection, raise_on_error=False)


def test_an_assets_checks_are_one_step_reading_each_file_once(
    instance: DagsterInstance, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _materialize_spy(instance)
    reads: list = []
    read = ParquetStoreResource.read
    monkeypatch.setattr(ParquetStoreResource, "read", lambda self, path, schema: reads.append(path) or read(
        self, path, schema))
    result = _spy_checks_alone(instance, AssetSelection.checks_for_assets(raw_spy_bars))
    assert result.success
    steps = {event.step_key for event in result.all_events if event.is_step_success}
    assert {step for step in steps if step.startswith("raw_spy_bars")} == {"raw_spy_bars_checks"}
    assert {"spy_schema_matches_contract", "spy_rows_are_valid", "spy_regular_session_coverage", "spy_source_schema",
            "flat_file_bad_rows", "flat_file_current", "flat_file_header"} <= set(_evaluations(result))
    assert [Path(path) for path in reads] == [data_dir / "raw" / "spy" / "2025-01-08.parquet"]  # 3 checks, 1 read


def test_a_check_selected_alone_runs_alone(instance: DagsterInstance, data_dir: Path) -> None:
    _materialize_spy(instance)
    result = _spy_checks_alone(instance, AssetSelection.checks(AssetCheckKey(raw_spy_bars.key, "spy_rows_are_valid")))
    assert result.success and set(_evaluations(result)) == {"spy_rows_are_valid"}


def test_a_check_that_raises_fails_its_step_after_the_others_report(
    instance: DagsterInstance, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spy_pipeline.defs.raw import flat_file_checks

    def unavailable(*_args, **_kwargs):
        raise RuntimeError("the event log is unavailable")

    _materialize_spy(instance)
    monkeypatch.setattr(flat_file_checks, "materialization_metadata", unavailable)  # the three flat-file checks
    result = _spy_checks_alone(instance, AssetSelection.checks_for_assets(raw_spy_bars))
    assert not result.success
    reported = set(_evaluations(result))
    assert {"spy_schema_matches_contract", "spy_rows_are_valid", "spy_source_schema"} <= reported
    assert not reported & {"flat_file_bad_rows", "flat_file_current", "flat_file_header"}
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "raw_spy_bars_checks"
    error = str(failure.step_failure_data.error)  # each raising check is named, not only the first
    assert "CheckStepError: 3 checks raised: " + "; ".join(
        f"{name}: RuntimeError: the event log is unavailable"
        for name in ("flat_file_bad_rows", "flat_file_current", "flat_file_header")) in error
