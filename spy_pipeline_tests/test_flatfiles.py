"""Flat Files end to end on the sandbox's S3 endpoint: the unmodified boto3 client, the streaming parser, source
choice, chain selection, equivalence with REST, and each fault (issue #13)."""

from __future__ import annotations

import datetime as dt
import gzip
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
import structlog
from dagster import AssetSelection, DagsterInstance, materialize

from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.io import flat_ingest
from spy_pipeline.io.flat_ingest import FlatFiles
from spy_pipeline.io.flatfiles import read_day
from spy_pipeline.polygon.errors import PolygonUnavailableError
from spy_pipeline.polygon.flatfiles import (
    OPTIONS_DATASET,
    STOCKS_DATASET,
    FlatFileForbiddenError,
    FlatFileNotPublishedError,
    FlatFilesClient,
    object_key,
)
from spy_pipeline.sandbox import flatfiles as sandbox_files
from spy_pipeline.sandbox import market, options
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline_tests.conftest import SANDBOX_KEY

DAY = dt.date(2025, 1, 8)
ACCESS_KEY = "AKIDFLATFILESTEST01"
SECRET = "flat-secret-9d1e7c"
RAW = [raw_spy_bars, raw_vix_bars, options_contracts, raw_options_bars]
CHAIN = {"ops": {"options_contracts": {"config": {"mode": "chain", "max_days_to_expiry": 2}}}}


@pytest.fixture
def s3() -> Iterator[SandboxServer]:
    with SandboxServer(api_key=SANDBOX_KEY, s3_access_key_id=ACCESS_KEY) as server:
        yield server


@pytest.fixture
def flat_env(s3: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    for name, value in {
        "POLYGON_API_KEY": SANDBOX_KEY, "POLYGON_BASE_URL": s3.url, "SPY_PIPELINE_REQUESTS_PER_MINUTE": "100000",
        "POLYGON_S3_ACCESS_KEY_ID": ACCESS_KEY, "POLYGON_S3_SECRET_ACCESS_KEY": SECRET,
        "POLYGON_FLATFILES_ENDPOINT": s3.url,
    }.items():
        monkeypatch.setenv(name, value)
    return s3


def _run(instance: DagsterInstance, assets: list, day: dt.date = DAY, source: str | None = None,
         run_config: dict | None = None, raise_on_error: bool = True):
    resources = {"polygon": PolygonResource(source=source), "store": ParquetStoreResource()}
    return materialize(assets, resources=resources, instance=instance, partition_key=day.isoformat(),
                       run_config=run_config or {}, raise_on_error=raise_on_error)


def _spy_flat_file_checks() -> list:
    from spy_pipeline.defs.checks import asset_checks
    from spy_pipeline.defs.raw.flat_file_checks import FLAT_FILE_CHECKS

    return asset_checks(c for c in FLAT_FILE_CHECKS if c.key.asset_key.path == ["raw_spy_bars"])


def _metadata(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return {key: getattr(value, "value", value) for key, value in event.materialization.metadata.items()}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_chain_day_lands_from_one_get_per_file_and_excludes_look_alikes(flat_env: SandboxServer,
                                                                           data_dir: Path) -> None:
    with DagsterInstance.ephemeral() as instance:
        result = _run(instance, RAW, run_config=CHAIN)
    gets = flat_env.state.flat_files.gets
    assert sorted(gets) == sorted(object_key(d, DAY) for d in
                                  (STOCKS_DATASET, sandbox_files.INDICES_DATASET, OPTIONS_DATASET))
    assert flat_env.request_count("/v") == 0  # not one REST request
    for asset in ("raw_spy_bars", "raw_vix_bars", "options_contracts", "raw_options_bars"):
        meta = _metadata(result, asset)
        assert meta["source"] == "flat_files" and meta["polygon_requests"] == 0
    assert _metadata(result, "raw_options_bars")["flat_file_gets"] == 0  # the spool of options_contracts' GET
    etag = _metadata(result, "raw_spy_bars")["flat_files"][0]["etag"]
    assert etag == __import__("hashlib").md5(sandbox_files.day_file(STOCKS_DATASET, DAY)).hexdigest()

    spy = pl.read_parquet(data_dir / "raw" / "spy" / f"{DAY}.parquet")
    assert spy["ticker"].unique().to_list() == ["SPY"]  # not SPYG, SPYV, SPYD, SP
    assert pl.read_parquet(data_dir / "raw" / "vix" / f"{DAY}.parquet")["ticker"].unique().to_list() == ["I:VIX"]
    contracts = pl.read_parquet(data_dir / "raw" / "options" / "contracts" / f"{DAY}.parquet")
    # The chain: every SPY contract in the day file with a bar, expiring within 2 days; nothing else.
    rows = sandbox_files.day_rows(OPTIONS_DATASET, DAY)
    expected = {t for t in rows["ticker"].unique() if t.startswith("O:SPY2") and t[5:11] <= "250110"}
    assert set(contracts["ticker"]) == expected and expected
    assert contracts["underlying"].unique().to_list() == ["SPY"]
    assert rows["ticker"].str.starts_with("O:SPYG").any()  # the look-alikes were there to be excluded
    bars = pl.read_parquet(data_dir / "raw" / "options" / f"{DAY}.parquet")
    assert set(bars["ticker"]) == expected and bars["vwap"].null_count() == bars.height


def test_nanosecond_window_starts_land_exactly(s3: SandboxServer) -> None:
    client = FlatFilesClient(s3.url, "flatfiles", ACCESS_KEY, SECRET)
    day_file = read_day(client, DAY, frozenset({"SPY"}))
    source = sandbox_files.day_rows(STOCKS_DATASET, DAY).filter(pl.col("ticker") == "SPY")
    landed_ns = day_file.bars["timestamp"].dt.cast_time_unit("ns").cast(pl.Int64)
    assert landed_ns.to_list() == sorted(source["window_start"].to_list())
    assert day_file.bars["timestamp"].dtype == pl.Datetime("us", "UTC")


def test_flat_file_partitions_equal_rest_partitions_in_every_shared_column(
    flat_env: SandboxServer, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"ops": {"options_contracts": {"config": {"mode": "targeted", "n": 4}}}}
    landed = {}
    for source in ("flat_files", "rest"):
        folder = tmp_path / source
        monkeypatch.setenv("SPY_PIPELINE_DATA_DIR", str(folder))
        with DagsterInstance.ephemeral() as instance:
            result = _run(instance, RAW, source=source, run_config=config)
        assert {_metadata(result, a)["source"] for a in ("raw_spy_bars", "raw_options_bars")} == {source}
        landed[source] = {name: pl.read_parquet(folder / "raw" / name / f"{DAY}.parquet")
                          for name in ("spy", "vix", "options")}
    for name in ("spy", "vix", "options"):
        flat, rest = landed["flat_files"][name], landed["rest"][name]
        assert flat.height > 100
        assert flat.drop("vwap").equals(rest.drop("vwap")), name
        assert flat["vwap"].null_count() == flat.height  # flat files carry no vwap


def test_auto_falls_back_to_rest_for_a_day_not_yet_published_and_flat_files_refuses(
    flat_env: SandboxServer, data_dir: Path
) -> None:
    flat_env.state.today = cal.trading_days(DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=7))[0]  # next day
    with DagsterInstance.ephemeral() as instance:
        auto = _run(instance, [raw_spy_bars])
        assert _metadata(auto, "raw_spy_bars")["source"] == "rest"
        strict = _run(instance, [raw_vix_bars], source="flat_files", raise_on_error=False)
    assert not strict.success
    [failure] = [e for e in strict.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error_display_string
    assert "not published yet" in message and object_key(sandbox_files.INDICES_DATASET, DAY) in message
    assert not (data_dir / "raw" / "vix").exists()


def test_a_403_names_the_three_causes_and_the_key(s3: SandboxServer) -> None:
    wrong = FlatFilesClient(s3.url, "flatfiles", "AKIDWRONG", SECRET)
    with pytest.raises(FlatFileForbiddenError) as raised:
        read_day(wrong, DAY, frozenset({"SPY"}))
    text = str(raised.value)
    assert "\n" not in text and object_key(STOCKS_DATASET, DAY) in text
    for cause in ("keys are wrong", "history", "not published"):
        assert cause in text


def test_clients_made_side_by_side_keep_their_own_keys_and_endpoints(s3: SandboxServer) -> None:
    key = object_key(STOCKS_DATASET, DAY)
    with SandboxServer(api_key=SANDBOX_KEY, s3_access_key_id="AKIDOTHERSERVER") as other:
        made = {
            "right": lambda: FlatFilesClient(s3.url, "flatfiles", ACCESS_KEY, SECRET),
            "wrong_key": lambda: FlatFilesClient(s3.url, "flatfiles", "AKIDWRONG", SECRET),
            "other_server": lambda: FlatFilesClient(other.url, "flatfiles", "AKIDOTHERSERVER", SECRET),
        }
        kinds = [*made, *made]
        with ThreadPoolExecutor(len(kinds)) as pool:  # clients come from one boto3 session per process
            clients = list(zip(kinds, pool.map(lambda kind: made[kind](), kinds), strict=True))
        for kind, client in clients:
            if kind == "wrong_key":
                with pytest.raises(FlatFileForbiddenError):
                    client.head(key)
            else:  # the other server refuses the first server's key, and the first the other's
                assert client.head(key).size == len(sandbox_files.day_file(STOCKS_DATASET, DAY))


@pytest.mark.parametrize("damage", ["truncated_gzip", "broken_csv"])
def test_a_damaged_object_fails_the_run_and_writes_nothing(
    flat_env: SandboxServer, data_dir: Path, damage: str
) -> None:
    key = object_key(STOCKS_DATASET, DAY)
    good = sandbox_files.day_file(STOCKS_DATASET, DAY)
    if damage == "truncated_gzip":
        flat_env.state.flat_files.objects[key] = good[: len(good) * 2 // 3]
    elif damage == "broken_csv":
        text = gzip.decompress(good).decode().splitlines()
        text.insert(len(text) // 2, "SPY,12,not-a-price,1,1,1,1736343000000000000,3")
        flat_env.state.flat_files.objects[key] = gzip.compress(("\n".join(text) + "\n").encode())
    with DagsterInstance.ephemeral() as instance:
        result = _run(instance, [raw_spy_bars], source="flat_files", raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "FlatFileFormatError" in failure.event_specific_data.error_display_string  # not retried: it stays broken
    assert _files(data_dir) == []


def test_an_interrupted_download_is_retryable_and_leaves_no_file(s3: SandboxServer, data_dir: Path) -> None:
    key = object_key(OPTIONS_DATASET, DAY)
    s3.state.flat_files.objects[key] = sandbox_files.day_file(OPTIONS_DATASET, DAY)
    s3.state.flat_files.interrupted.add(key)
    client = FlatFilesClient(s3.url, "flatfiles", ACCESS_KEY, SECRET, max_retries=0)
    flat = FlatFiles(client, Path(".dagster_home") / "flatfiles", "flat_files")
    with pytest.raises(PolygonUnavailableError, match="interrupted"):
        flat_ingest.options_day(flat, DAY)
    assert _files(Path(".dagster_home")) == [] and _files(data_dir) == []
    spool = Path(".dagster_home") / "flatfiles"
    assert not any(p.name.endswith(".tmp") for p in _files(spool))


def test_bad_rows_are_dropped_and_counted(s3: SandboxServer) -> None:
    key = object_key(OPTIONS_DATASET, DAY)
    rows = sandbox_files.day_rows(OPTIONS_DATASET, DAY)
    spy = rows.filter(pl.col("ticker").str.starts_with("O:SPY2"))
    first = spy.row(0, named=True)
    bad = pl.DataFrame([
        {**first, "window_start": -68_400_000_000_000},  # the provider's 2025 bug
        {**first, "window_start": first["window_start"] + 86_400_000_000_000},  # the next day
        {**first, "open": 0.0},
        {**first, "low": -1.0},
        {**first, "ticker": "O:SPY251340C00590000"},  # month 13
        {**first, "ticker": "O:SPYBROKEN"},
    ], schema=rows.schema)
    s3.state.flat_files.objects[key] = gzip.compress(pl.concat([rows, bad]).write_csv().encode())
    client = FlatFilesClient(s3.url, "flatfiles", ACCESS_KEY, SECRET)
    day_file = read_day(client, DAY, option_underlying="SPY")
    assert day_file.bad_rows == {"outside_day": 2, "non_positive_price": 2, "unparseable_ticker": 2}
    assert day_file.bars.height == spy.height and day_file.rows_read == rows.height + 6


def test_a_blocking_check_fails_when_too_many_rows_are_bad(flat_env: SandboxServer, data_dir: Path) -> None:
    key = object_key(STOCKS_DATASET, DAY)
    rows = sandbox_files.day_rows(STOCKS_DATASET, DAY)
    spy = rows.filter(pl.col("ticker") == "SPY")
    broken = spy.head(spy.height // 10).with_columns(open=pl.lit(-1.0))  # ~10% of SPY's rows
    damaged = pl.concat([rows.filter(pl.col("ticker") != "SPY"), broken, spy.slice(spy.height // 10)])
    flat_env.state.flat_files.objects[key] = gzip.compress(damaged.write_csv().encode())
    with DagsterInstance.ephemeral() as instance:
        result = _run(instance, [raw_spy_bars, *_spy_flat_file_checks()], raise_on_error=False)
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "flat_file_bad_rows"]
    assert not evaluation.passed and evaluation.metadata["bad_rows"].value == spy.height // 10


def test_a_republished_object_is_noticed(flat_env: SandboxServer, data_dir: Path) -> None:
    spy_checks = _spy_flat_file_checks()
    assert len(spy_checks) == 1 and len(spy_checks[0].check_keys) == 3  # one step for the asset's three checks
    with DagsterInstance.ephemeral() as instance:
        first = _run(instance, [raw_spy_bars, *spy_checks])
        assert all(e.passed for e in first.get_asset_check_evaluations())
        flat_env.state.flat_files.republish(object_key(STOCKS_DATASET, DAY))
        checks_only = materialize([raw_spy_bars, *spy_checks], instance=instance,
                                  resources={"polygon": PolygonResource(), "store": ParquetStoreResource()},
                                  selection=AssetSelection.checks(*spy_checks), raise_on_error=False)
    [evaluation] = [e for e in checks_only.get_asset_check_evaluations() if e.check_name == "flat_file_current"]
    assert not evaluation.passed and "republished" in str(evaluation.metadata)


def test_the_chain_with_the_rest_source_states_its_cost_and_refuses_above_the_limit(
    flat_env: SandboxServer, data_dir: Path
) -> None:
    config = {"ops": {"options_contracts": {"config": {"mode": "chain", "max_days_to_expiry": 1,
                                                       "max_rest_requests": 50}}}}
    with DagsterInstance.ephemeral() as instance:
        result = _run(instance, [raw_spy_bars, options_contracts], source="rest", run_config=config,
                      raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    listed = options.listed_contracts(DAY).filter(pl.col("expiration_date") <= DAY + dt.timedelta(days=1)).height
    assert f"needs {listed} bar requests" in failure.event_specific_data.error_display_string
    assert not (data_dir / "raw" / "options").exists()


def test_the_sandbox_publishes_a_day_at_eleven_the_next_trading_day(s3: SandboxServer) -> None:
    friday = dt.date(2025, 1, 10)
    assert sandbox_files.published_at(friday) == dt.datetime(2025, 1, 13, 11, 0, tzinfo=cal.NEW_YORK)
    client = FlatFilesClient(s3.url, "flatfiles", ACCESS_KEY, SECRET)
    s3.state.today = dt.date(2025, 1, 13)  # midnight: not yet
    assert client.head(object_key(STOCKS_DATASET, friday)) is None
    s3.state.today = dt.date(2025, 1, 14)
    info = client.head(object_key(STOCKS_DATASET, friday))
    assert info is not None and info.size == len(sandbox_files.day_file(STOCKS_DATASET, friday))
    assert client.head(object_key(STOCKS_DATASET, dt.date(2025, 1, 11))) is None  # a Saturday
    assert market.minute_bars("SPY", friday).height > 0


def test_a_chain_day_from_flat_files_goes_through_consolidated_and_training(flat_env: SandboxServer,
                                                                           data_dir: Path) -> None:
    from spy_pipeline.defs.processed.assets import consolidated
    from spy_pipeline.defs.processed.ml_assets import training_dataset
    from spy_pipeline.defs.raw.reference_assets import corporate_actions, raw_news

    with DagsterInstance.ephemeral() as instance:
        materialize([corporate_actions], resources={"polygon": PolygonResource(), "store": ParquetStoreResource()},
                    instance=instance)
        result = _run(instance, [*RAW, raw_news, consolidated, training_dataset], run_config=CHAIN)
    assert result.success
    contracts = pl.read_parquet(data_dir / "raw" / "options" / "contracts" / f"{DAY}.parquet")
    bars = pl.read_parquet(data_dir / "raw" / "options" / f"{DAY}.parquet")
    bounds = cal.session_bounds(DAY)
    regular = bars.filter(pl.col("timestamp").is_between(bounds.open, bounds.close, closed="left"))
    frame = pl.read_parquet(data_dir / "processed" / "consolidated" / f"{DAY}.parquet")
    # every regular-session bar of every chain contract, and nothing else: one row per contract and minute
    assert set(frame["ticker"]) == set(regular["ticker"]) <= set(contracts["ticker"])
    assert frame.height == regular.height and frame.select("ticker", "timestamp").is_unique().all()
    assert frame["option_vwap"].null_count() == frame.height  # flat files carry no vwap: null, never a guess
    assert frame.filter(pl.col("iv_reason") == 0).height > frame.height // 2  # greeks on most rows
    training = pl.read_parquet(data_dir / "processed" / "training" / f"{DAY}.parquet")
    assert training.height > 0 and set(training["ticker"]) <= set(frame["ticker"])


def test_a_renamed_header_column_fails_naming_it_and_writes_nothing(flat_env: SandboxServer, data_dir: Path) -> None:
    key = object_key(STOCKS_DATASET, DAY)
    text = gzip.decompress(sandbox_files.day_file(STOCKS_DATASET, DAY)).decode()
    header, rest = text.split("\n", 1)
    flat_env.state.flat_files.objects[key] = gzip.compress((header.replace("close", "close_price") + "\n" + rest)
                                                           .encode())
    with DagsterInstance.ephemeral() as instance:
        result = _run(instance, [raw_spy_bars], source="flat_files", raise_on_error=False)
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error_display_string
    assert "header drift: documented column(s) close missing, new: close_price" in message
    assert _files(data_dir) == []


def test_a_new_header_column_is_ignored_and_reported_by_a_warning_check(
    flat_env: SandboxServer, data_dir: Path, tmp_path: Path
) -> None:
    checks = _spy_flat_file_checks()
    with DagsterInstance.ephemeral() as instance:
        _run(instance, [raw_spy_bars], source="flat_files")
    expected = pl.read_parquet(data_dir / "raw" / "spy" / f"{DAY}.parquet")
    key = object_key(STOCKS_DATASET, DAY)
    rows = sandbox_files.day_rows(STOCKS_DATASET, DAY).with_columns(vwap=pl.lit(1.5), otc=pl.lit("x"))
    flat_env.state.flat_files.objects[key] = gzip.compress(rows.write_csv().encode())
    with DagsterInstance.ephemeral() as instance:
        result = _run(instance, [raw_spy_bars, *checks], source="flat_files")
    assert pl.read_parquet(data_dir / "raw" / "spy" / f"{DAY}.parquet").equals(expected)
    [header] = [e for e in result.get_asset_check_evaluations() if e.check_name == "flat_file_header"]
    assert not header.passed and header.severity.value == "WARN"
    assert header.description == f"{key}: new column(s) vwap, otc (ignored)"


def _configured(source: str) -> FlatFiles:
    """Flat files as configured (any client: the tests give `_day_files` their own reader)."""
    return FlatFiles(object(), Path("unused"), source)  # type: ignore[arg-type]


def test_day_files_are_read_two_at_a_time_and_kept_in_day_order() -> None:
    days = cal.trading_days(dt.date(2025, 1, 6), dt.date(2025, 1, 17))
    both_reading = threading.Barrier(2, timeout=5)
    finished: list[dt.date] = []

    def read(day: dt.date) -> str:
        assert structlog.contextvars.get_contextvars().get("run_id") == "the run", "the caller's log context"
        if day in days[:2]:
            both_reading.wait()  # broken (an error) unless the first two days are read at the same time
        if day == days[0]:
            time.sleep(0.2)  # the first day ends last
        finished.append(day)
        return f"file of {day}"

    with structlog.contextvars.bound_contextvars(run_id="the run"):
        files = flat_ingest._day_files(_configured("flat_files"), read, days)
    assert list(files) == days and all(files[day] == f"file of {day}" for day in days)
    assert finished[0] != days[0]


def test_a_missing_day_file_is_rest_in_auto_and_the_first_failing_day_is_raised() -> None:
    days = cal.trading_days(dt.date(2025, 1, 6), dt.date(2025, 1, 10))

    def read(day: dt.date) -> str:
        if day in (days[1], days[3]):
            raise FlatFileNotPublishedError(f"no object for {day}")
        return str(day)

    auto = flat_ingest._day_files(_configured("auto"), read, days)
    assert [day for day, file in auto.items() if file is None] == [days[1], days[3]]
    # REST chosen, or flat files not configured under auto: every day goes to REST, nothing is read
    for flat in (_configured("rest"), FlatFiles(None, Path("unused"), "auto")):
        assert flat_ingest._day_files(flat, lambda day: pytest.fail(f"{day} read"), days) == dict.fromkeys(days)
    with pytest.raises(FlatFileNotPublishedError, match=f"no object for {days[1]}"):
        flat_ingest._day_files(_configured("flat_files"), read, days)


def test_after_a_failing_day_the_days_not_started_are_not_read() -> None:
    days = cal.trading_days(dt.date(2025, 1, 6), dt.date(2025, 1, 24))
    started: list[dt.date] = []

    def read(day: dt.date) -> str:
        started.append(day)
        if day == days[0]:
            raise PolygonUnavailableError(f"the download of {day} was interrupted")
        time.sleep(0.5)
        return str(day)

    with pytest.raises(PolygonUnavailableError, match=str(days[0])):
        flat_ingest._day_files(_configured("flat_files"), read, days)
    assert len(started) <= 3 < len(days), started  # the failing day, the one beside it, at most one more
