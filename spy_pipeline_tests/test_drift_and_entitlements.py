"""Schema drift and missing entitlements through Dagster, against a test-owned sandbox.

Drift: the sandbox renames, drops, adds or retypes a field in every answer of an endpoint (as a changed API
would); the asset's blocking source-schema check names endpoint and field, and nothing downstream runs.
Entitlements: the sandbox answers 403 NOT_AUTHORIZED for a data set, as Polygon does for a plan without it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetCheckSeverity, AssetSelection, DagsterInstance, ExecuteInProcessResult, materialize

from spy_pipeline.app.runner import step_failure_lines
from spy_pipeline.definitions import defs
from spy_pipeline.defs.processed.assets import consolidated
from spy_pipeline.defs.processed.checks import PROCESSED_CHECKS
from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.checks import RAW_CHECKS
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.raw.reference_assets import corporate_actions, raw_news
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.errors import PolygonEntitlementError
from spy_pipeline.sandbox.faults import Fault
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline_tests.conftest import SANDBOX_KEY

DAY = "2025-01-03"
SPY_AGGS = "/v2/aggs/ticker/SPY/"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _run(assets: list, instance: DagsterInstance, **kwargs) -> ExecuteInProcessResult:
    """Materialize `assets` with their checks (the source-schema checks among them)."""
    checks = [check for check in [*RAW_CHECKS, *PROCESSED_CHECKS]
              if {key.asset_key for key in check.check_keys} <= {asset.key for asset in assets}]
    return materialize([*assets, *checks], resources=defs.resources, instance=instance, raise_on_error=False,
                       run_config=QUIET, **kwargs)


def _materialized(result: ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


def _check(result: ExecuteInProcessResult, name: str):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def _what_went_wrong(result: ExecuteInProcessResult) -> str:
    """Failed checks' descriptions and failed steps' one-line messages."""
    checks = [e.description or "" for e in result.get_asset_check_evaluations() if not e.passed]
    return "\n".join(checks + step_failure_lines(result))


# --- drift ---------------------------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize(("fault", "field"), [
    (Fault("rename_field", field="vw", renamed_to="vwap"), "vw"),
    (Fault("drop_field", field="n"), "n"),
    (Fault("retype_field", field="vw"), "vw"),  # a number sent as a string
])
def test_a_blocking_drift_names_endpoint_and_field_and_nothing_downstream_runs(
    sandbox_env: SandboxServer, fault: Fault, field: str
) -> None:
    sandbox_env.faults.drift(SPY_AGGS, fault)
    with DagsterInstance.ephemeral() as instance:
        result = _run([raw_spy_bars, options_contracts], instance, partition_key=DAY)
        assert not result.success
        problem = _what_went_wrong(result)
        assert f"aggregates_stock: field {field} " in problem, problem
        assert "options_contracts" not in _materialized(result)
        if fault.kind == "rename_field":
            check = _check(result, "spy_source_schema")
            assert check.severity == AssetCheckSeverity.ERROR
            assert "renamed? new: vwap" in check.description
            # the check also runs alone (a check-only run, as from the UI), from the materialization's metadata
            alone = _run([raw_spy_bars], instance, selection=AssetSelection.checks_for_assets(raw_spy_bars),
                         tags={"dagster/asset_partition_range_start": DAY, "dagster/asset_partition_range_end": DAY})
            assert not _check(alone, "spy_source_schema").passed and _materialized(alone) == set()


@pytest.mark.integration
def test_a_new_field_warns_listing_it_and_the_run_goes_on(sandbox_env: SandboxServer) -> None:
    sandbox_env.faults.drift(SPY_AGGS, Fault("add_field", field="sandbox_extra"))
    with DagsterInstance.ephemeral() as instance:
        result = _run([raw_spy_bars, options_contracts], instance, partition_key=DAY)
    assert result.success
    check = _check(result, "spy_source_schema")
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.description == "aggregates_stock: new field sandbox_extra"
    assert {"raw_spy_bars", "options_contracts"} <= _materialized(result)


@pytest.mark.integration
def test_a_field_the_parsing_needs_fails_the_step_naming_the_drift_not_a_key_error(
    sandbox_env: SandboxServer,
) -> None:
    sandbox_env.faults.drift("/v2/reference/news", Fault("rename_field", field="published_utc", renamed_to="date"))
    with DagsterInstance.ephemeral() as instance:
        result = _run([raw_news], instance, partition_key=DAY)
    [line] = step_failure_lines(result)
    assert "source schema drift: news: field published_utc is missing" in line and "new: date" in line


@pytest.mark.integration
def test_the_materialization_records_the_observed_schema_and_the_written_columns(sandbox_env: SandboxServer) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = _run([raw_spy_bars], instance, partition_key=DAY)
    [event] = result.get_asset_materialization_events()
    metadata = event.step_materialization_data.materialization.metadata
    observed = metadata["source_schema"].value["aggregates_stock"]
    assert observed["fields"]["vw"] == {"types": ["number"], "present": observed["items"], "of": observed["items"]}
    written = pl.read_parquet_schema(Path(metadata["path"].value))
    columns = metadata["dagster/column_schema"].value.columns
    assert [(c.name, c.type) for c in columns] == [(name, str(dtype)) for name, dtype in written.items()]


# --- entitlements ----------------------------------------------------------------------------------------

@pytest.mark.integration
def test_a_403_is_one_line_naming_the_data_set_the_endpoint_and_the_plan(sandbox: SandboxServer) -> None:
    sandbox.deny("indices")
    client = PolygonClient(SANDBOX_KEY, sandbox.url, requests_per_minute=None)
    with pytest.raises(PolygonEntitlementError) as raised:
        client.minute_bars("I:VIX", dt.date(2025, 1, 3), dt.date(2025, 1, 3))
    message = str(raised.value)
    assert message.startswith("Polygon refused indices data (/v2/aggs/ticker/I:VIX/range/1/minute/2025-01-03/")
    assert "HTTP 403): your plan may not include it (You are not entitled" in message and "\n" not in message
    assert sandbox.request_count("/v2/aggs/") == 1  # not retried
    assert client.minute_bars("SPY", dt.date(2025, 1, 3), dt.date(2025, 1, 3)).height > 0  # stocks still served


@pytest.mark.integration
def test_a_required_source_without_entitlement_fails_the_day_in_one_line(sandbox_env: SandboxServer) -> None:
    sandbox_env.deny("indices")
    with DagsterInstance.ephemeral() as instance:
        result = _run([raw_vix_bars], instance, partition_key=DAY)
    assert not result.success
    [line] = step_failure_lines(result)
    assert line.startswith("  FAILED step raw_vix_bars: Polygon refused indices data (/v2/aggs/ticker/I:VIX/")
    assert "your plan may not include it" in line
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error.cause is None and error.message.count("\n") <= 1  # one line, no client traceback chained


@pytest.fixture(scope="module")
def without_vix_and_news(tmp_path_factory: pytest.TempPathFactory):
    """A day materialized raw to consolidated on a plan without indices and news, both optional."""
    data_dir = tmp_path_factory.mktemp("optional") / "data"
    with (pytest.MonkeyPatch.context() as patch, SandboxServer(api_key=SANDBOX_KEY) as server,
          DagsterInstance.ephemeral() as instance):
        server.deny("indices", "news")
        for name, value in {"SPY_PIPELINE_DATA_DIR": str(data_dir), "POLYGON_API_KEY": SANDBOX_KEY,
                            "POLYGON_BASE_URL": server.url, "SPY_PIPELINE_OPTIONAL_SOURCES": "vix,news",
                            "SPY_PIPELINE_REQUESTS_PER_MINUTE": "100000"}.items():  # not the free tier's 5
            patch.setenv(name, value)
        assert _run([corporate_actions], instance).success
        daily = [raw_spy_bars, raw_vix_bars, options_contracts, raw_options_bars, raw_news, consolidated]
        yield data_dir, _run(daily, instance, partition_key=DAY)


@pytest.mark.integration
def test_optional_sources_without_entitlement_leave_null_columns_and_never_fail_the_day(without_vix_and_news) -> None:
    data_dir, result = without_vix_and_news
    assert result.success, step_failure_lines(result)
    assert not (data_dir / "raw" / "vix" / f"{DAY}.parquet").exists()
    assert not (data_dir / "raw" / "news" / f"{DAY}.parquet").exists()
    frame = pl.read_parquet(data_dir / "processed" / "consolidated" / f"{DAY}.parquet")
    assert frame.height > 1000
    for column in ("vix", "news_sentiment", "news_articles_last_hour"):
        assert frame[column].null_count() == frame.height, column
    assert frame["spy_close"].null_count() == 0 and frame["iv"].is_not_null().mean() > 0.9


@pytest.mark.integration
def test_consolidated_records_why_in_metadata_and_a_warning_check(without_vix_and_news) -> None:
    _, result = without_vix_and_news
    check = _check(result, "consolidated_optional_sources")
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert f"{DAY} news: Polygon refused news data" in check.description
    assert f"{DAY} vix: Polygon refused indices data" in check.description
    assert check.metadata["rows_without_vix"].value == check.metadata["rows_without_news"].value > 1000
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "consolidated"]
    table = event.step_materialization_data.materialization.metadata["optional_sources_missing"].value
    assert "your plan may not include it" in table


@pytest.mark.integration
def test_the_raw_checks_of_an_unavailable_optional_source_warn_instead_of_failing(without_vix_and_news) -> None:
    _, result = without_vix_and_news
    for name in ("vix_schema_matches_contract", "vix_rows_are_valid", "vix_regular_session_coverage",
                 "news_schema_matches_contract", "news_rows_are_valid"):
        check = _check(result, name)
        assert not check.passed and check.severity == AssetCheckSeverity.WARN, name
        assert check.metadata["unavailable_days"].value == DAY
    assert _check(result, "spy_schema_matches_contract").passed


@pytest.mark.integration
def test_an_optional_source_without_data_on_one_day_keeps_the_others(
    sandbox_env: SandboxServer, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    aggs = "/v2/aggs/ticker/I:VIX/range/1/minute/"
    sandbox_env.faults.add(f"{aggs}2025-01-02/2025-01-03", Fault("no_results"))  # the range's one request
    sandbox_env.faults.add(f"{aggs}2025-01-03/2025-01-03", Fault("no_results"))  # then the day alone
    monkeypatch.setenv("SPY_PIPELINE_OPTIONAL_SOURCES", "vix")
    tags = {"dagster/asset_partition_range_start": "2025-01-02", "dagster/asset_partition_range_end": DAY}
    with DagsterInstance.ephemeral() as instance:
        result = _run([raw_vix_bars], instance, tags=tags)
    assert result.success, step_failure_lines(result)
    assert (data_dir / "raw" / "vix" / "2025-01-02.parquet").exists()
    assert not (data_dir / "raw" / "vix" / f"{DAY}.parquet").exists()
    [event, *_] = result.get_asset_materialization_events()
    unavailable = event.step_materialization_data.materialization.metadata["source_unavailable"].value
    assert list(unavailable) == [DAY] and "no I:VIX minute bars" in unavailable[DAY]
    coverage = _check(result, "vix_regular_session_coverage")
    assert not coverage.passed and coverage.severity == AssetCheckSeverity.WARN


@pytest.mark.integration
def test_a_required_source_without_data_fails_as_before(sandbox_env: SandboxServer) -> None:
    sandbox_env.faults.add("/v2/aggs/ticker/I:VIX/", Fault("no_results"))
    with DagsterInstance.ephemeral() as instance:
        result = _run([raw_vix_bars], instance, partition_key=DAY)
    [line] = step_failure_lines(result)
    assert "EmptyDataError: Polygon returned no I:VIX minute bars for trading day(s) 2025-01-03" in line
