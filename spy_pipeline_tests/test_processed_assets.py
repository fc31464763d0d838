"""The processed layer through Dagster: a sandbox day from raw to consolidated, training, features, scanner."""

import shutil
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetSelection, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from py_vollib.black_scholes_merton.implied_volatility import implied_volatility

from spy_pipeline.definitions import DAILY_ASSETS, defs
from spy_pipeline.defs.processed.assets import consolidated
from spy_pipeline.defs.processed.checks import PROCESSED_CHECKS
from spy_pipeline.defs.processed.ml_assets import training_matches_pandas_type
from spy_pipeline.defs.processed.scanner_assets import options_movement_summary
from spy_pipeline.defs.raw.checks import RAW_CHECKS
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.rates import DEFAULT_RISK_FREE_RATE
from spy_pipeline.domain.schemas import CONSOLIDATED
from spy_pipeline_tests.conftest import sandbox_lake

DAY = "2025-01-08"
RESOURCES = defs.resources


def _range(start: str, end: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory):
    with sandbox_lake(tmp_path_factory, DAY) as (data_dir, instance):
        result = materialize([*DAILY_ASSETS, *RAW_CHECKS, *PROCESSED_CHECKS], resources=RESOURCES,
                             instance=instance, tags=_range(DAY, DAY))
        summary = materialize([options_movement_summary], resources=RESOURCES, instance=instance,
                              selection=AssetSelection.assets(options_movement_summary))
        yield data_dir, result, summary

def test_the_whole_day_succeeds_with_every_check_passing(materialized) -> None:
    _, result, summary = materialized
    assert result.success and summary.success
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == []
    names = {e.check_name for e in result.get_asset_check_evaluations()}
    assert {"consolidated_rows_are_valid", "consolidated_iv_availability", "training_matches_pandas_type"} <= names


def test_consolidated_has_a_row_for_every_option_bar_in_the_session(materialized) -> None:
    data_dir, _, _ = materialized
    bars = pl.read_parquet(data_dir / "raw" / "options" / f"{DAY}.parquet")
    bounds = cal.session_bounds(DAY)
    expected = bars.filter(pl.col("timestamp").is_between(bounds.open, bounds.close, closed="left")).height
    frame = pl.read_parquet(data_dir / "processed" / "consolidated" / f"{DAY}.parquet")
    assert frame.height == expected and frame.schema == CONSOLIDATED.polars_schema
    assert frame["iv_reason"].eq(0).mean() > 0.9
    assert frame["rsi_14"].is_nan().sum() == 0  # warmed up on the previous day


def test_training_features_and_events_are_written(materialized) -> None:
    data_dir, _, summary = materialized
    training = pl.read_parquet(data_dir / "processed" / "training" / f"{DAY}.parquet")
    assert "target_120" in training.columns and training["target_1"].dtype == pl.Float32
    features = pl.read_parquet(data_dir / "processed" / "features" / f"{DAY}.parquet")
    assert {"spy_pct_change_5m", "iv_change_5m", "atm_iv", "iv_minus_atm"} <= set(features.columns)
    events = pl.read_parquet(data_dir / "processed" / "options_movement" / f"{DAY}.parquet")
    assert {"ticker", "start", "end", "peak_gain_pct"} <= set(events.columns)
    [event] = summary.get_asset_materialization_events()
    meta = event.step_materialization_data.materialization.metadata
    csv = Path(meta["csv"].value)
    assert csv.exists() and csv.is_relative_to(data_dir / "reports")
    assert "events_per_contract_day_median" in meta["figures"].value



def test_a_training_file_breaking_the_pandas_type_fails_its_check(materialized, data_dir: Path) -> None:
    module_lake, _, _ = materialized
    frame = pl.read_parquet(module_lake / "processed" / "training" / f"{DAY}.parquet")
    path = data_dir / "processed" / "training" / f"{DAY}.parquet"  # this test's own lake
    path.parent.mkdir(parents=True)
    first_row = pl.int_range(pl.len()) == 0
    frame.with_columns(pl.when(first_row).then(pl.lit("straddle")).otherwise(pl.col("contract_type"))
                       .alias("contract_type")).write_parquet(path)
    result = materialize([*DAILY_ASSETS, *PROCESSED_CHECKS], resources=RESOURCES, tags=_range(DAY, DAY),
                         selection=AssetSelection.checks(training_matches_pandas_type.key), raise_on_error=False)
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["files_checked"].value == 1
    assert "contract_type" in evaluation.metadata["failures"].value

def _consolidate_again(lake: Path, run_config: dict | None = None) -> pl.DataFrame:
    assert materialize([consolidated], resources=RESOURCES, partition_key=DAY, run_config=run_config).success
    return pl.read_parquet(lake / "processed" / "consolidated" / f"{DAY}.parquet")


def _agrees_with_py_vollib(frame: pl.DataFrame, rate: float) -> None:
    """IV at `rate` by an independent implementation, on rows where the rate moves IV by more than 1e-6."""
    checked = 0
    for row in frame.filter(pl.col("iv_reason") == 0).sample(100, seed=3).iter_rows(named=True):
        flag = "c" if row["contract_type"] == "call" else "p"
        args = (row["option_close"], row["spy_close"], row["strike"], row["time_to_expiry_years"])
        try:
            expected = implied_volatility(*args, rate, row["dividend_yield"], flag)
        except Exception:  # py_vollib raises where it does not converge: no oracle for that row
            continue
        assert row["iv"] == pytest.approx(expected, abs=1e-8)
        checked += 1
    assert checked > 50


def test_the_risk_free_rate_is_the_setting_unless_the_run_config_overrides_it(
    materialized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, _, _ = materialized
    default = pl.read_parquet(data_dir / "processed" / "consolidated" / f"{DAY}.parquet")
    assert default["risk_free_rate"].unique().to_list() == [DEFAULT_RISK_FREE_RATE]

    lake = tmp_path / "lake"  # a copy: the module's consolidated file stays the default run's
    shutil.copytree(data_dir, lake)
    monkeypatch.setenv("SPY_PIPELINE_DATA_DIR", str(lake))
    monkeypatch.setenv("SPY_PIPELINE_RISK_FREE_RATE", "0.02")
    from_setting = _consolidate_again(lake)
    assert from_setting["risk_free_rate"].unique().to_list() == [0.02]
    assert from_setting["ticker"].to_list() == default["ticker"].to_list()
    assert (from_setting["iv"] != default["iv"]).sum() > 0.9 * default.height  # the rate reached the greeks
    _agrees_with_py_vollib(from_setting, 0.02)

    overridden = _consolidate_again(lake, {"ops": {"consolidated": {"config": {"risk_free_rate": 0.01}}}})
    assert overridden["risk_free_rate"].unique().to_list() == [0.01]
    _agrees_with_py_vollib(overridden, 0.01)


def test_a_run_config_rate_outside_the_range_fails_the_step_before_it_writes(data_dir: Path) -> None:
    result = materialize([consolidated], resources=RESOURCES, partition_key=DAY, raise_on_error=False,
                         run_config={"ops": {"consolidated": {"config": {"risk_free_rate": 4.5}}}})
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    cause = failure.step_failure_data.error.cause
    assert "risk_free_rate" in cause.message and "less than or equal to 0.5" in cause.message
    assert not (data_dir / "processed").exists()
