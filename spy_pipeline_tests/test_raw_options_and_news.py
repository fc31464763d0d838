"""options_contracts, raw_options_bars, raw_news and corporate_actions through Dagster against the sandbox."""

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetSelection, DagsterInstance, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from spy_pipeline.definitions import DAILY_ASSETS, defs
from spy_pipeline.defs.raw.checks import RAW_CHECKS
from spy_pipeline.defs.raw.options_assets import options_contracts
from spy_pipeline.defs.raw.reference_assets import corporate_actions
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.occ import parse_ticker
from spy_pipeline.domain.schemas import DIVIDENDS, MINUTE_BARS, NEWS, OPTIONS_CONTRACTS
from spy_pipeline.io.news import news_window
from spy_pipeline.sandbox import catalog, market
from spy_pipeline.sandbox.server import SandboxServer

DAILY = [*DAILY_ASSETS, *RAW_CHECKS]
RESOURCES = defs.resources


@pytest.fixture
def instance() -> DagsterInstance:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def _run(instance: DagsterInstance, start: str, end: str, selection=None, run_config=None, raise_on_error=True):
    tags = {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}
    return materialize(
        DAILY,
        resources=RESOURCES,
        instance=instance,
        tags=tags,
        selection=selection,
        run_config=run_config,
        raise_on_error=raise_on_error,
    )


OPTIONS_SELECTION = AssetSelection.assets("raw_spy_bars", "options_contracts", "raw_options_bars")


def _spy_open(day: str) -> float:
    bars = market.minute_bars("SPY", dt.date.fromisoformat(day))
    open_ms = int(cal.session_bounds(day).open.timestamp() * 1000)
    return float(bars.filter(pl.col("t") == open_ms)["o"][0])


@pytest.mark.parametrize("day", ["2025-01-08", "2024-11-29"])  # an ordinary Wednesday; an early close
def test_band_contracts_are_within_one_percent_of_the_open_with_0dte_first(
    instance: DagsterInstance, data_dir: Path, day: str
) -> None:
    assert _run(instance, day, day, selection=OPTIONS_SELECTION).success
    contracts = pl.read_parquet(data_dir / "raw" / "options" / "contracts" / f"{day}.parquet")
    assert contracts.schema == OPTIONS_CONTRACTS.polars_schema and contracts.height > 20
    open_price = _spy_open(day)
    assert contracts["strike"].min() >= open_price * 0.99 and contracts["strike"].max() <= open_price * 1.01
    expirations = sorted(contracts["expiration"].unique())
    assert len(expirations) == 3 and expirations[0] == dt.date.fromisoformat(day)  # the 0DTE contract is listed
    assert set(contracts["contract_type"]) == {"call", "put"}
    for ticker in contracts["ticker"]:
        assert parse_ticker(ticker).underlying == "SPY"


def test_option_bars_cover_every_contract_with_unique_keys_in_the_session(
    instance: DagsterInstance, data_dir: Path
) -> None:
    assert _run(instance, "2025-01-08", "2025-01-08", selection=OPTIONS_SELECTION).success
    contracts = pl.read_parquet(data_dir / "raw" / "options" / "contracts" / "2025-01-08.parquet")
    bars = pl.read_parquet(data_dir / "raw" / "options" / "2025-01-08.parquet")
    assert bars.schema == MINUTE_BARS.polars_schema
    assert set(bars["ticker"]) <= set(contracts["ticker"]) and bars["ticker"].n_unique() > 0.9 * contracts.height
    assert bars.select("ticker", "timestamp").is_duplicated().sum() == 0
    bounds = cal.session_bounds("2025-01-08")
    assert bars["timestamp"].min() >= bounds.open and bars["timestamp"].max() < bounds.close
    assert set(bars["session"]) == {"regular"}
    one = contracts["ticker"][0]
    served = catalog.minute_bars(one, dt.date(2025, 1, 8))
    assert bars.filter(pl.col("ticker") == one)["close"].to_list() == served["c"].to_list()


def test_targeted_mode_builds_n_calls_above_and_n_puts_at_or_below_the_open(
    instance: DagsterInstance, data_dir: Path
) -> None:
    config = {"ops": {"options_contracts": {"config": {"mode": "targeted", "n": 3, "expiry": "next_friday"}}}}
    assert _run(instance, "2025-01-08", "2025-01-08", selection=OPTIONS_SELECTION, run_config=config).success
    contracts = pl.read_parquet(data_dir / "raw" / "options" / "contracts" / "2025-01-08.parquet")
    open_price = _spy_open("2025-01-08")
    calls = contracts.filter(pl.col("contract_type") == "call")["strike"]
    puts = contracts.filter(pl.col("contract_type") == "put")["strike"]
    assert calls.len() == puts.len() == 3
    assert calls.min() > open_price and puts.max() <= open_price
    assert set(contracts["expiration"]) == {dt.date(2025, 1, 10)}


def test_a_week_of_option_bars_fetches_each_contract_once(
    instance: DagsterInstance, data_dir: Path, sandbox_env: SandboxServer
) -> None:
    assert _run(instance, "2025-01-06", "2025-01-10", selection=OPTIONS_SELECTION).success
    days = cal.trading_days("2025-01-06", "2025-01-10")
    tickers = set()
    for day in days:
        tickers |= set(pl.read_parquet(data_dir / "raw" / "options" / "contracts" / f"{day}.parquet")["ticker"])
    assert sandbox_env.request_count("/v2/aggs/ticker/O:") == len(tickers)
    assert sandbox_env.request_count("/v3/reference/options/contracts") == len(days)
    for day in days:
        assert (data_dir / "raw" / "options" / f"{day}.parquet").exists()


def test_news_partitions_tile_time_and_weekend_news_lands_on_monday(
    instance: DagsterInstance, data_dir: Path, sandbox_env: SandboxServer
) -> None:
    assert _run(instance, "2025-01-10", "2025-01-13", selection=AssetSelection.assets("raw_news")).success
    assert sandbox_env.request_count("/v2/reference/news") >= 1
    frames = {
        day: pl.read_parquet(data_dir / "raw" / "news" / f"{day}.parquet") for day in ("2025-01-10", "2025-01-13")
    }
    for day, frame in frames.items():
        assert frame.schema == NEWS.polars_schema and frame.height > 0
        assert frame["article_id"].n_unique() == frame.height
        start, end = news_window(day)
        assert frame["published_utc"].is_between(start, end, closed="left").all()
        assert set(frame["sentiment"].drop_nulls()) <= {-1, 0, 1}
    weekend = frames["2025-01-13"].filter(pl.col("published_utc") < dt.datetime(2025, 1, 13, 5, tzinfo=dt.UTC))
    assert weekend.height > 0  # Saturday and Sunday articles are Monday's
    assert frames["2025-01-13"]["sentiment"].null_count() < frames["2025-01-13"].height


def test_corporate_actions_hold_spy_quarterly_dividends(instance: DagsterInstance, data_dir: Path) -> None:
    assert materialize([corporate_actions], resources=RESOURCES, instance=instance).success
    dividends = pl.read_parquet(data_dir / "raw" / "corporate_actions" / "dividends.parquet")
    assert dividends.schema == DIVIDENDS.polars_schema
    spy = dividends.filter(pl.col("ticker") == "SPY")
    per_year = spy.group_by(pl.col("ex_dividend_date").dt.year()).len()
    assert (per_year.filter(pl.col("ex_dividend_date") < 2025)["len"] == 4).all()
    assert (data_dir / "raw" / "corporate_actions" / "splits.parquet").exists()


def test_a_planted_contract_with_a_bad_ticker_fails_its_check(instance: DagsterInstance, data_dir: Path) -> None:
    assert _run(instance, "2025-01-08", "2025-01-08", selection=OPTIONS_SELECTION).success
    path = data_dir / "raw" / "options" / "contracts" / "2025-01-08.parquet"
    frame = pl.read_parquet(path)
    frame.with_columns(
        ticker=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("O:SPY25010C5")).otherwise("ticker")
    ).write_parquet(path)
    result = _run(
        instance,
        "2025-01-08",
        "2025-01-08",
        raise_on_error=False,
        selection=AssetSelection.checks_for_assets(options_contracts),
    )
    evaluation = {e.check_name: e for e in result.get_asset_check_evaluations()}["contracts_rows_are_valid"]
    assert not evaluation.passed
    assert "unparsable_ticker: 1" in evaluation.metadata["violations"].value
