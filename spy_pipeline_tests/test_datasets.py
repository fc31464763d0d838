"""The dataset registry (spy_pipeline.domain.datasets) and the public read API `spy_pipeline.scan`.

A sandbox day materialized through Dagster: every Parquet file it leaves belongs to a registered dataset and has
its schema, every asset writes where its metadata says, and `scan` returns exactly the rows of the files in
range (oracle: the files read with polars directly). Errors and object stores on small hand-made lakes.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import fsspec
import polars as pl
import pytest
from dagster import materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

import spy_pipeline
from spy_pipeline.definitions import DAILY_ASSETS, defs
from spy_pipeline.domain import datasets
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.datasets import DatasetError, UnknownDatasetError
from spy_pipeline.domain.features import DEFAULT_LAGS
from spy_pipeline.domain.schemas import FEATURES, MINUTE_BARS, TRAINING, Column, ColumnFamily, DatasetSchema
from spy_pipeline.io.scan import NoPartitionsError
from spy_pipeline.io.storage import DataRoot, StorageError
from spy_pipeline_tests.conftest import REPO_ROOT, sandbox_lake

DAY = dt.date(2025, 1, 8)
PREVIOUS = cal.previous_trading_day(DAY)


def assert_lake_matches_registry(data_dir: Path) -> Counter[str]:
    """Every Parquet file under `data_dir` belongs to a registered dataset and has its schema (read with polars,
    not through the pipeline's readers); returns the files per dataset."""
    found: Counter[str] = Counter()
    for path in sorted(data_dir.rglob("*.parquet")):
        relative = path.relative_to(data_dir).as_posix()
        dataset = datasets.dataset_of(relative)
        assert dataset is not None, f"{relative} belongs to no registered dataset"
        assert dataset.schema.matches(pl.read_parquet_schema(path)), (relative, dataset.name)
        found[dataset.name] += 1
    return found


# --- the registry ------------------------------------------------------------------------------------------


def test_every_registered_path_is_recognised_as_its_own_dataset() -> None:
    assert len(datasets.BY_NAME) == len(datasets.DATASETS)
    for dataset in datasets.DATASETS:
        values = {name: (dataset.choices.get(name) or ("qqq",))[-1] for name in dataset.folder_placeholders}
        folder = "/".join(dataset.folder(**values))
        if dataset.files_per_day:
            relative = f"{folder}/{DAY}/1736346600000_1736346660000_3.parquet"
        else:
            relative = dataset.relative_path(DAY if dataset.partitioned else None, **values)
        assert datasets.dataset_of(relative) is dataset, (dataset.name, relative)
        assert dataset.match(relative) == {**values, **({"date": str(DAY)} if dataset.partitioned else {}),
                                           **({"batch": "1736346600000_1736346660000_3"}
                                              if dataset.files_per_day else {})}
    assert datasets.dataset_of("raw/qqq/2025-01-08.parquet").name == "equity_bars"
    assert datasets.dataset_of("stream/news/2025-01-08/0.parquet").name == "stream_news"
    assert datasets.dataset_of("reports/options_movement_summary_2025-01-08_2025-01-08.csv") is None
    assert datasets.dataset_of("raw/spy/latest.parquet") is None


def test_folder_values_are_checked() -> None:
    bars = datasets.get("stream_bars")
    assert bars.folder(source="vix") == ("stream", "vix")
    with pytest.raises(UnknownDatasetError, match="needs source"):
        bars.folder()
    with pytest.raises(UnknownDatasetError, match="is not spy, vix, options"):
        bars.folder(source="news")
    with pytest.raises(UnknownDatasetError, match="lowercase folder name"):
        datasets.get("equity_bars").folder(ticker="../etc")
    with pytest.raises(ValueError, match=r"\{date\} must be the file name or its folder"):
        datasets.Dataset("bad", "raw/{date}/x/{batch}.parquet", MINUTE_BARS, "nobody", "")


def test_a_schema_with_column_families_conforms_and_matches_by_name() -> None:
    targets = TRAINING.schema_for(range(1, 4))
    assert list(targets)[-3:] == ["target_1", "target_2", "target_3"] and targets["target_2"] == pl.Float32
    frame = pl.DataFrame(schema={**targets, "target_2": pl.Float64, "extra": pl.Int8})
    conformed = TRAINING.conform(frame.select(reversed(frame.columns)))  # any column order in, declared order out
    assert conformed.schema == targets
    assert TRAINING.matches(targets) and not TRAINING.matches(frame.schema)
    assert not TRAINING.matches(pl.Schema({k: v for k, v in targets.items() if not k.startswith("target_")}))
    with pytest.raises(ValueError, match=r"no target_\{k\} column \(k = 1 … horizon_minutes"):
        TRAINING.conform(pl.DataFrame(schema=dict(list(targets.items())[:-3])))
    with pytest.raises(ValueError, match="depend on configuration"):
        _ = TRAINING.polars_schema
    lagged = FEATURES.schema_for(DEFAULT_LAGS)
    assert list(lagged)[:3] == ["ticker", "timestamp", "spy_pct_change_1m"] and "iv_change_60m" in lagged
    shuffled = pl.Schema({"iv": pl.Float64, **{k: v for k, v in lagged.items() if k != "iv"}})
    assert FEATURES.matches(lagged) and not FEATURES.matches(shuffled)


def test_a_family_pattern_needs_one_k() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        DatasetSchema("x", ("a",), (Column("a", pl.Int64(), ""), ColumnFamily("lag_m", pl.Float64(), "", "")))


# --- a materialized sandbox day ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, object]]:
    """corporate actions, SPY of the previous trading day and every daily asset of DAY."""
    with sandbox_lake(tmp_path_factory, DAY.isoformat()) as (data_dir, instance):
        tags = {ASSET_PARTITION_RANGE_START_TAG: str(DAY), ASSET_PARTITION_RANGE_END_TAG: str(DAY)}
        result = materialize(DAILY_ASSETS, resources=defs.resources, instance=instance, tags=tags)
        assert result.success
        yield data_dir, result


def test_every_file_of_a_sandbox_day_is_a_registered_dataset_with_its_schema(lake) -> None:
    data_dir, _ = lake
    found = assert_lake_matches_registry(data_dir)
    assert found == {"spy": 2, "vix": 1, "contracts": 1, "options": 1, "news": 1, "dividends": 1, "splits": 1,
                     "consolidated": 1, "training": 1, "features": 1, "options_movement": 1}


def test_every_asset_writes_the_files_its_metadata_path_declares(lake) -> None:
    _, result = lake
    declared = {spec.key.to_user_string(): spec.metadata.get("path") for spec in defs.resolve_all_asset_specs()}
    checked = 0
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        asset = materialization.asset_key.to_user_string()
        pattern = declared[asset]
        written = materialization.metadata.get("written_files")
        if written is None or not pattern.endswith(".parquet"):  # daily_charts: PNG files, not a dataset
            continue
        [dataset] = [d for d in datasets.DATASETS if d.path == pattern]
        for entry in written.value:
            assert dataset.match(entry["path"]) is not None, (asset, entry["path"], pattern)
            checked += 1
    assert checked >= 9  # spy, vix, contracts, options, news, consolidated, training, features, options_movement


def _read(data_dir: Path, name: str, *days: dt.date) -> pl.DataFrame:
    """The oracle: the dataset's files for `days`, read with polars directly."""
    return pl.concat([pl.read_parquet(data_dir / datasets.get(name).relative_path(day)) for day in days])


@pytest.mark.parametrize("name", ["spy", "vix", "options", "contracts", "news", "consolidated", "training", "features",
                                  "options_movement"])
def test_scan_of_a_day_returns_exactly_its_file_with_the_declared_schema(lake, name: str) -> None:
    data_dir, _ = lake
    frame = spy_pipeline.scan(name, DAY, DAY, data_dir=data_dir).collect()
    assert frame.equals(_read(data_dir, name, DAY))
    schema = datasets.get(name).schema
    expected = (TRAINING.schema_for(range(1, 121)) if name == "training"
                else FEATURES.schema_for(DEFAULT_LAGS) if name == "features" else schema.polars_schema)
    assert frame.schema == expected


def test_scan_keeps_only_the_days_in_range(lake, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, _ = lake
    both = _read(data_dir, "spy", PREVIOUS, DAY)
    assert spy_pipeline.scan("spy", data_dir=data_dir).collect().equals(both)
    from_day = spy_pipeline.scan("spy", start=str(DAY), data_dir=str(data_dir)).collect()
    assert from_day.equals(_read(data_dir, "spy", DAY))
    assert spy_pipeline.scan("spy", end=PREVIOUS.isoformat(), data_dir=data_dir).collect().equals(
        _read(data_dir, "spy", PREVIOUS))
    assert spy_pipeline.scan("spy", PREVIOUS - dt.timedelta(days=30), DAY + dt.timedelta(days=30),
                             data_dir=data_dir).collect().height == both.height
    monkeypatch.setenv("SPY_PIPELINE_DATA_DIR", str(data_dir))  # the settings' data dir by default
    assert spy_pipeline.scan("vix", DAY).collect().equals(_read(data_dir, "vix", DAY))


def test_a_range_without_partitions_is_an_error_not_an_empty_frame(lake) -> None:
    data_dir, _ = lake
    later = DAY + dt.timedelta(days=1)
    with pytest.raises(NoPartitionsError, match=rf"no spy partition from {later} to the last in .*raw/spy: "
                                                "materialize raw_spy_bars"):
        spy_pipeline.scan("spy", start=later, data_dir=data_dir)
    with pytest.raises(NoPartitionsError, match="no intraday_consolidated partition"):
        spy_pipeline.scan("intraday_consolidated", data_dir=data_dir)


def test_an_unpartitioned_dataset_is_scanned_whole_and_refuses_a_range(lake) -> None:
    data_dir, _ = lake
    dividends = spy_pipeline.scan("dividends", data_dir=data_dir).collect()
    assert dividends.height > 0
    assert dividends.equals(pl.read_parquet(data_dir / "raw" / "corporate_actions" / "dividends.parquet"))
    with pytest.raises(DatasetError, match=r"dividends is one file \(raw/corporate_actions/dividends.parquet\), not "
                                           "daily: scan it without start/end"):
        spy_pipeline.scan("dividends", start=DAY, data_dir=data_dir)


# --- errors and other data dirs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dataset": "consolidate"}, UnknownDatasetError,
         "unknown dataset 'consolidate': expected one of spy, vix, contracts, options, news, dividends, splits, "),
        ({"dataset": "spy", "start": "2025-13-01"}, DatasetError, "start='2025-13-01' is not a date"),
        ({"dataset": "spy", "end": "Jan 8 2025"}, DatasetError, "end='Jan 8 2025' is not a date"),
        ({"dataset": "spy", "start": 20250108}, DatasetError, "start=20250108 is not a date"),
        ({"dataset": "spy", "start": dt.datetime(2025, 1, 8, 10)}, DatasetError, "is a datetime: give a date"),
        ({"dataset": "spy", "start": "2025-01-09", "end": dt.date(2025, 1, 8)}, DatasetError,
         "start 2025-01-09 is after end 2025-01-08"),
        ({"dataset": "equity_bars"}, UnknownDatasetError,
         "equity_bars (raw/{ticker}/{date}.parquet) needs ticker"),
        ({"dataset": "spy", "ticker": "qqq"}, UnknownDatasetError, "needs no folder values, not ticker"),
    ],
)
def test_bad_requests_fail_with_one_line_value_errors(tmp_path: Path, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        spy_pipeline.scan(**kwargs, data_dir=tmp_path)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, spy_pipeline.DatasetError)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def _bars(day: dt.date, rows: int, ticker: str = "SPY") -> pl.DataFrame:
    start = dt.datetime.combine(day, dt.time(14, 30), tzinfo=dt.UTC)
    return MINUTE_BARS.conform(pl.DataFrame({
        "ticker": [ticker] * rows, "timestamp": [start + dt.timedelta(minutes=i) for i in range(rows)],
        "session": ["regular"] * rows, "open": [float(i) for i in range(rows)], "high": [i + 1.0 for i in range(rows)],
        "low": [float(i) for i in range(rows)], "close": [i + 0.5 for i in range(rows)], "volume": [1.0] * rows,
        "vwap": [i + 0.5 for i in range(rows)], "transactions": [1] * rows,
    }))


@pytest.fixture
def memory_uri() -> Iterator[str]:
    uri = f"memory://scan-{uuid.uuid4().hex[:8]}/prefix"
    yield uri
    memory, bucket = fsspec.filesystem("memory"), "/" + uri.removeprefix("memory://").split("/")[0]
    if memory.exists(bucket):
        memory.rm(bucket, recursive=True)


def test_scan_reads_an_object_store_data_dir(memory_uri: str) -> None:
    root = DataRoot.from_location(memory_uri)
    days = cal.last_trading_days(DAY, 3)
    for rows, day in enumerate(days, start=2):
        root.write_parquet(_bars(day, rows), root.file_of(datasets.get("spy"), day))
    batches = root.dataset_path("stream", "options", str(DAY))
    root.write_parquet(_bars(DAY, 2, "O:SPY250108C00590000"), f"{batches}/1_2_0.parquet")
    root.write_parquet(_bars(DAY, 3, "O:SPY250108P00590000"), f"{batches}/3_4_1.parquet")

    in_range = spy_pipeline.scan("spy", days[1], days[2], data_dir=memory_uri).collect()
    assert in_range.equals(pl.concat([_bars(days[1], 3), _bars(days[2], 4)]))
    assert in_range.schema == MINUTE_BARS.polars_schema
    assert spy_pipeline.scan("spy", data_dir=memory_uri).collect().height == 2 + 3 + 4
    streamed = spy_pipeline.scan("stream_bars", DAY, DAY, data_dir=memory_uri, source="options").collect()
    assert streamed["ticker"].value_counts(sort=True).rows() == [("O:SPY250108P00590000", 3),
                                                                 ("O:SPY250108C00590000", 2)]
    with pytest.raises(NoPartitionsError, match=f"{memory_uri}/stream/vix"):
        spy_pipeline.scan("stream_bars", data_dir=memory_uri, source="vix")


def test_a_file_without_the_declared_schema_is_named(tmp_path: Path) -> None:
    root = DataRoot.from_location(tmp_path)
    root.write_parquet(_bars(PREVIOUS, 2), root.file_of(datasets.get("vix"), PREVIOUS))
    bad = root.file_of(datasets.get("vix"), DAY)
    root.write_parquet(_bars(DAY, 2).drop("vwap"), bad)
    with pytest.raises(StorageError, match=f"{bad} does not have the minute_bars schema"):
        spy_pipeline.scan("vix", data_dir=tmp_path)
    assert spy_pipeline.scan("vix", end=PREVIOUS, data_dir=tmp_path).collect().height == 2


def test_training_files_of_different_horizons_are_not_mixed(tmp_path: Path) -> None:
    root = DataRoot.from_location(tmp_path)
    for day, horizon in ((PREVIOUS, 2), (DAY, 3)):
        root.write_parquet(pl.DataFrame(schema=TRAINING.schema_for(range(1, horizon + 1))),
                           root.file_of(datasets.get("training"), day))
    with pytest.raises(DatasetError, match="training's files in the range have different columns"):
        spy_pipeline.scan("training", data_dir=tmp_path)
    assert spy_pipeline.scan("training", DAY, DAY, data_dir=tmp_path).collect_schema()["target_3"] == pl.Float32


def test_importing_the_package_does_not_import_polars_or_the_pipeline() -> None:
    code = "import sys, spy_pipeline; print([m for m in sys.modules if m.startswith(('polars', 'spy_pipeline.'))])"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
