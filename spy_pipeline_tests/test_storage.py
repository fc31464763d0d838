"""Dataset paths, atomic Parquet writes, schema-checked reads, and `DatasetSchema.conform`."""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import spy_pipeline
from spy_pipeline.domain import datasets
from spy_pipeline.domain.schemas import MINUTE_BARS, UTC_TIMESTAMP
from spy_pipeline.io.storage import (
    LAKE_PARQUET,
    DataRoot,
    StorageError,
    dataset_dir,
    is_uri,
    partition_file,
    read_partition,
    write_parquet_atomic,
)

DAY = dt.date(2025, 1, 8)


def equity_bars(rows: int = 3) -> pl.DataFrame:
    """A frame with exactly the MINUTE_BARS schema."""
    start = dt.datetime(2025, 1, 8, 14, 30, tzinfo=dt.UTC)
    return pl.DataFrame(
        {
            "ticker": ["SPY"] * rows,
            "timestamp": [start + dt.timedelta(minutes=i) for i in range(rows)],
            "session": ["regular"] * rows,
            "open": [590.0 + i for i in range(rows)],
            "high": [591.0 + i for i in range(rows)],
            "low": [589.0 + i for i in range(rows)],
            "close": [590.5 + i for i in range(rows)],
            "volume": [1000.0 * (i + 1) for i in range(rows)],
            "vwap": [590.2 + i for i in range(rows)],
            "transactions": list(range(10, 10 + rows)),
        },
        schema=MINUTE_BARS.polars_schema,
    )


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


@pytest.fixture
def target(data_dir: Path) -> Path:
    return partition_file(data_dir, DAY, "raw", "spy")


# --- write_parquet_atomic ---------------------------------------------------------------------


def test_write_creates_parent_folders_and_a_readable_file(target: Path) -> None:
    frame = equity_bars()
    write_parquet_atomic(frame, target)
    assert pl.read_parquet(target).equals(frame)


def test_write_returns_the_file_size(target: Path) -> None:
    size = write_parquet_atomic(equity_bars(), target)
    assert size == target.stat().st_size > 0


def test_write_leaves_no_temp_files(target: Path) -> None:
    write_parquet_atomic(equity_bars(), target)
    write_parquet_atomic(equity_bars(5), target)
    assert temp_files(target.parent) == []
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_write_replaces_an_existing_file(target: Path) -> None:
    write_parquet_atomic(equity_bars(2), target)
    write_parquet_atomic(equity_bars(7), target)
    assert pl.read_parquet(target).height == 7


def test_write_goes_to_a_temp_file_in_the_same_folder(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_parquet_atomic(equity_bars(2), target)
    old_bytes = target.read_bytes()
    seen: dict[str, Any] = {}
    real_write = pl.DataFrame.write_parquet

    def spying_write(self: pl.DataFrame, file: Any, *args: Any, **kwargs: Any) -> None:
        seen["temps"] = temp_files(target.parent)
        seen["target_during_write"] = target.read_bytes()
        real_write(self, file, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", spying_write)
    write_parquet_atomic(equity_bars(4), target)
    assert len(seen["temps"]) == 1
    assert seen["temps"][0].name.startswith(f".{target.name}.")
    assert seen["target_during_write"] == old_bytes
    assert pl.read_parquet(target).height == 4


def _failing_write(self: pl.DataFrame, file: Any, *args: Any, **kwargs: Any) -> None:
    file.write(b"PAR1 half a file")
    file.flush()
    raise OSError(28, "No space left on device")


def test_failed_write_keeps_the_old_file_intact(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = equity_bars(2)
    write_parquet_atomic(original, target)
    old_bytes = target.read_bytes()
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _failing_write)
    with pytest.raises(OSError, match="No space left"):
        write_parquet_atomic(equity_bars(9), target)
    assert target.read_bytes() == old_bytes
    monkeypatch.undo()
    assert pl.read_parquet(target).equals(original)


def test_failed_write_removes_its_temp_file(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_parquet_atomic(equity_bars(2), target)
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _failing_write)
    with pytest.raises(OSError):
        write_parquet_atomic(equity_bars(9), target)
    assert temp_files(target.parent) == []
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_failed_first_write_leaves_no_file(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _failing_write)
    with pytest.raises(OSError):
        write_parquet_atomic(equity_bars(), target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_interrupted_write_removes_its_temp_file(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: pl.DataFrame, file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"PAR1")
        raise KeyboardInterrupt

    monkeypatch.setattr(pl.DataFrame, "write_parquet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_parquet_atomic(equity_bars(), target)
    assert list(target.parent.iterdir()) == []


# --- dataset_dir / partition_file -------------------------------------------------------------


UNSAFE_PARTS = ["..", ".", "a/b", "/abs", "", "SPY", "Spy", "spy/../../etc", "-rf", "spy\n", "sp y", "a\\b"]


@pytest.mark.parametrize("part", UNSAFE_PARTS)
def test_dataset_dir_rejects_unsafe_components(data_dir: Path, part: str) -> None:
    with pytest.raises(StorageError, match="unsafe dataset path component"):
        dataset_dir(data_dir, "raw", part)


@pytest.mark.parametrize("part", UNSAFE_PARTS)
def test_partition_file_rejects_unsafe_components(data_dir: Path, part: str) -> None:
    with pytest.raises(StorageError):
        partition_file(data_dir, DAY, part)


def test_dataset_dir_rejects_unsafe_first_component(data_dir: Path) -> None:
    with pytest.raises(StorageError):
        dataset_dir(data_dir, "..", "spy")


@pytest.mark.parametrize("part", ["spy", "brk.b", "qqq", "equity_bars", "a-1"])
def test_dataset_dir_accepts_plain_names_under_the_data_dir(data_dir: Path, part: str) -> None:
    folder = dataset_dir(data_dir, "raw", part)
    assert folder == data_dir.resolve() / "raw" / part
    assert folder.is_relative_to(data_dir.resolve())


def test_dataset_dir_does_not_create_folders(data_dir: Path) -> None:
    dataset_dir(data_dir, "raw", "spy")
    assert not (data_dir / "raw").exists()


def test_partition_file_is_one_iso_dated_parquet_per_day(data_dir: Path) -> None:
    path = partition_file(data_dir, DAY, "raw", "brk.b")
    assert path == data_dir.resolve() / "raw" / "brk.b" / "2025-01-08.parquet"


# --- read_partition ---------------------------------------------------------------------------


def test_read_partition_returns_a_frame_with_the_schema(target: Path) -> None:
    frame = equity_bars()
    write_parquet_atomic(frame, target)
    read = read_partition(target, MINUTE_BARS)
    assert read.equals(frame)
    assert read.schema == MINUTE_BARS.polars_schema


def test_read_partition_of_a_missing_file_says_so(target: Path) -> None:
    with pytest.raises(StorageError, match="does not exist") as info:
        read_partition(target, MINUTE_BARS)
    assert str(target) in str(info.value)


def test_read_partition_of_garbage_bytes_is_a_storage_error(target: Path) -> None:
    target.parent.mkdir(parents=True)
    target.write_bytes(b"this is not parquet at all" * 20)
    with pytest.raises(StorageError, match="not a readable Parquet file") as info:
        read_partition(target, MINUTE_BARS)
    assert str(target) in str(info.value)


def test_read_partition_of_an_empty_file_is_a_storage_error(target: Path) -> None:
    target.parent.mkdir(parents=True)
    target.write_bytes(b"")
    with pytest.raises(StorageError, match="not a readable Parquet file"):
        read_partition(target, MINUTE_BARS)


def test_read_partition_of_a_truncated_file_is_a_storage_error(target: Path) -> None:
    write_parquet_atomic(equity_bars(), target)
    target.write_bytes(target.read_bytes()[:-20])
    with pytest.raises(StorageError, match="not a readable Parquet file"):
        read_partition(target, MINUTE_BARS)


def test_read_partition_with_a_missing_column_is_a_storage_error(target: Path) -> None:
    write_parquet_atomic(equity_bars().drop("vwap"), target)
    with pytest.raises(StorageError, match="does not have the minute_bars schema") as info:
        read_partition(target, MINUTE_BARS)
    assert str(target) in str(info.value)


@pytest.mark.parametrize(
    "retype",
    [
        pl.col("transactions").cast(pl.Int32),
        pl.col("volume").cast(pl.Int64),
        pl.col("timestamp").dt.replace_time_zone(None),
    ],
    ids=["int32-transactions", "int64-volume", "naive-timestamp"],
)
def test_read_partition_with_a_wrong_dtype_is_a_storage_error(target: Path, retype: pl.Expr) -> None:
    write_parquet_atomic(equity_bars().with_columns(retype), target)
    with pytest.raises(StorageError, match="does not have the minute_bars schema"):
        read_partition(target, MINUTE_BARS)


def test_read_partition_with_an_extra_column_is_a_storage_error(target: Path) -> None:
    write_parquet_atomic(equity_bars().with_columns(pl.lit(1).alias("extra")), target)
    with pytest.raises(StorageError, match="does not have the minute_bars schema"):
        read_partition(target, MINUTE_BARS)


# --- DatasetSchema.conform --------------------------------------------------------------------


def test_conform_rejects_a_missing_column() -> None:
    with pytest.raises(ValueError, match=r"minute_bars: missing columns \['vwap'\]"):
        MINUTE_BARS.conform(equity_bars().drop("vwap"))


def test_conform_orders_columns_as_declared_and_drops_extras() -> None:
    shuffled = equity_bars().select(list(reversed(MINUTE_BARS.columns))).with_columns(pl.lit(1).alias("x"))
    conformed = MINUTE_BARS.conform(shuffled)
    assert conformed.columns == list(MINUTE_BARS.columns)


def test_conform_casts_to_declared_dtypes() -> None:
    loose = equity_bars().with_columns(
        pl.col("open", "volume").cast(pl.Int64),
        pl.col("transactions").cast(pl.Int32),
        pl.col("timestamp").cast(pl.Datetime("ms", "UTC")),
    )
    conformed = MINUTE_BARS.conform(loose)
    assert conformed.schema == MINUTE_BARS.polars_schema
    assert conformed["timestamp"].dtype == UTC_TIMESTAMP
    assert conformed["timestamp"].to_list() == equity_bars()["timestamp"].to_list()


def test_conform_of_a_conformed_frame_is_unchanged() -> None:
    frame = equity_bars()
    assert MINUTE_BARS.conform(frame).equals(frame)


def test_conform_refuses_a_value_that_cannot_be_cast() -> None:
    bad = equity_bars().with_columns(pl.lit("n/a").alias("open"))
    with pytest.raises(pl.exceptions.InvalidOperationError):
        MINUTE_BARS.conform(bad)


def test_matches_compares_column_names_and_dtypes() -> None:
    assert MINUTE_BARS.matches(equity_bars().schema)
    assert not MINUTE_BARS.matches(equity_bars().drop("ticker").schema)
    assert not MINUTE_BARS.matches(equity_bars().with_columns(pl.col("open").cast(pl.Float32)).schema)


# --- DataRoot: the data dir as a URI (file://, object stores through pyarrow/fsspec) ----------


@pytest.fixture
def memory_root(tmp_path: Path) -> Iterator[DataRoot]:
    """An object store stand-in: fsspec's in-memory filesystem (no rename, objects written whole)."""
    bucket = f"bucket-{tmp_path.name.lower().replace('_', '-')}"
    root = DataRoot.from_location(f"memory://{bucket}/prefix")
    yield root
    root.fs.delete_dir_contents(f"/{bucket}", missing_dir_ok=True)


def test_is_uri_tells_uris_from_paths() -> None:
    assert is_uri("s3://bucket/prefix") and is_uri("file:///tmp/data") and is_uri("memory://b/p")
    assert not is_uri("data") and not is_uri("/abs/data") and not is_uri(Path("s3://bucket"))


@pytest.mark.parametrize("form", ["path", "relative", "file-uri"])
def test_a_local_data_root_gives_the_path_functions_paths(data_dir: Path, form: str) -> None:
    data_dir.mkdir()
    location = {"path": str(data_dir), "relative": "data", "file-uri": data_dir.as_uri()}[form]
    root = DataRoot.from_location(location)  # isolated_env chdirs to data_dir's parent
    assert root.is_local
    assert root.dataset_path("raw", "spy") == str(dataset_dir(data_dir, "raw", "spy"))
    assert root.partition_path(DAY, "raw", "spy") == str(partition_file(data_dir, DAY, "raw", "spy"))
    assert root.uri(root.partition_path(DAY, "raw", "spy")) == str(partition_file(data_dir, DAY, "raw", "spy"))


def test_a_local_data_root_writes_atomically_through_write_parquet_atomic(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = DataRoot.from_location(data_dir.as_uri())
    path = root.partition_path(DAY, "raw", "spy")
    assert root.write_parquet(equity_bars(2), path) == Path(path).stat().st_size
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _failing_write)
    with pytest.raises(OSError, match="No space left"):
        root.write_parquet(equity_bars(9), path)
    monkeypatch.undo()
    assert temp_files(Path(path).parent) == []
    assert root.read_partition(path, MINUTE_BARS).equals(equity_bars(2))
    assert root.relative(path) == "raw/spy/2025-01-08.parquet"


def test_an_object_store_round_trip(memory_root: DataRoot) -> None:
    path = memory_root.partition_path(DAY, "raw", "spy")
    assert path == f"{memory_root.base}/raw/spy/2025-01-08.parquet"
    assert not memory_root.is_local and not memory_root.exists(path)
    size = memory_root.write_parquet(equity_bars(), path)
    assert size == memory_root.fs.get_file_info(path).size > 0
    assert memory_root.read_partition(path, MINUTE_BARS).equals(equity_bars())
    assert memory_root.relative(path) == "raw/spy/2025-01-08.parquet"
    assert memory_root.uri(path).startswith("memory://bucket-") and memory_root.uri(path).endswith(
        "/prefix/raw/spy/2025-01-08.parquet"
    )


def test_an_object_store_write_replaces_the_object_and_leaves_nothing_else(memory_root: DataRoot) -> None:
    path = memory_root.partition_path(DAY, "raw", "spy")
    memory_root.write_parquet(equity_bars(2), path)
    memory_root.write_parquet(equity_bars(7), path)
    assert memory_root.read_partition(path, MINUTE_BARS).height == 7
    listing = memory_root.fs.get_file_info(pafs.FileSelector(memory_root.base, recursive=True))
    assert [info.path for info in listing if info.type == pafs.FileType.File] == [path]


def test_a_failed_object_store_write_keeps_the_old_object(
    memory_root: DataRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = memory_root.partition_path(DAY, "raw", "spy")
    memory_root.write_parquet(equity_bars(2), path)
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _failing_write)
    with pytest.raises(OSError, match="No space left"):
        memory_root.write_parquet(equity_bars(9), path)
    monkeypatch.undo()
    assert memory_root.read_partition(path, MINUTE_BARS).equals(equity_bars(2))


def test_a_failed_first_object_store_write_leaves_no_object(
    memory_root: DataRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = memory_root.partition_path(DAY, "raw", "spy")
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _failing_write)
    with pytest.raises(OSError):
        memory_root.write_parquet(equity_bars(), path)
    assert not memory_root.exists(path)


@pytest.mark.parametrize("part", UNSAFE_PARTS)
def test_an_object_store_root_rejects_unsafe_components(memory_root: DataRoot, part: str) -> None:
    with pytest.raises(StorageError, match="unsafe dataset path component"):
        memory_root.partition_path(DAY, "raw", part)


@pytest.mark.parametrize("suffix", ["-other/raw/spy/2025-01-08.parquet", "/raw/../../x.parquet", "//x.parquet"])
def test_an_object_store_root_refuses_paths_outside_it(memory_root: DataRoot, suffix: str) -> None:
    outside = memory_root.base + suffix
    with pytest.raises(StorageError, match="outside the data dir"):
        memory_root.write_parquet(equity_bars(), outside)
    with pytest.raises(StorageError, match="outside the data dir"):
        memory_root.read_partition(outside, MINUTE_BARS)


@pytest.mark.parametrize("location", ["memory://bucket/a/../b", "memory://bucket//b", "memory://", "mock:///"])
def test_a_data_root_uri_must_name_a_plain_bucket_and_prefix(location: str) -> None:
    with pytest.raises(StorageError):
        DataRoot.from_location(location)


def test_an_unknown_scheme_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="no filesystem for"):
        DataRoot.from_location("nosuchscheme://bucket/prefix")


def test_object_store_reads_check_existence_bytes_and_schema(memory_root: DataRoot) -> None:
    path = memory_root.partition_path(DAY, "raw", "spy")
    with pytest.raises(StorageError, match="does not exist") as missing:
        memory_root.read_partition(path, MINUTE_BARS)
    assert memory_root.uri(path) in str(missing.value)
    with memory_root.fs.open_output_stream(path) as stream:
        stream.write(b"this is not parquet at all" * 20)
    with pytest.raises(StorageError, match="not a readable Parquet file"):
        memory_root.read_partition(path, MINUTE_BARS)
    memory_root.write_parquet(equity_bars().drop("vwap"), path)
    with pytest.raises(StorageError, match="does not have the minute_bars schema"):
        memory_root.read_partition(path, MINUTE_BARS)


def test_a_hierarchical_filesystem_gets_its_folders_created() -> None:
    root = DataRoot.from_location("mock:///bucket/prefix")  # pyarrow's mock filesystem refuses files without folders
    path = root.partition_path(DAY, "raw", "options", "contracts")
    root.write_parquet(equity_bars(), path)
    assert root.read_partition(path, MINUTE_BARS).equals(equity_bars())
    assert root.uri(path) == "mock:///bucket/prefix/raw/options/contracts/2025-01-08.parquet"


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        target = tmp_path / "raw" / "spy" / "2025-01-08.parquet"
        write_parquet_atomic(pl.DataFrame({"x": [1]}), target)
    finally:
        os.umask(previous)
    assert target.stat().st_mode & 0o777 == 0o644


# --- the lake's Parquet setting: codec, statistics, row groups, sort order ---------------------------


def option_bars(seed: int = 0) -> pl.DataFrame:
    """Minute bars of enough option contracts for several of the lake's row groups, in a shuffled order."""
    assert LAKE_PARQUET.row_group_size, "the lake's setting names a row-group size: pruning depends on it"
    minutes = 390
    contracts = -(-5 * LAKE_PARQUET.row_group_size // (2 * minutes))  # about 2.5 row groups of rows
    start = dt.datetime(2025, 1, 8, 14, 30, tzinfo=dt.UTC)
    tickers = [f"O:SPY250108C00{500 + strike:03d}000" for strike in range(contracts)]
    frame = pl.DataFrame({
        "ticker": [ticker for ticker in tickers for _ in range(minutes)],
        "timestamp": [start + dt.timedelta(minutes=m) for _ in tickers for m in range(minutes)],
    }).with_columns(
        session=pl.lit("regular"), open=pl.int_range(pl.len()) / 100, high=pl.int_range(pl.len()) / 90,
        low=pl.int_range(pl.len()) / 110, close=pl.int_range(pl.len()) / 105, volume=pl.lit(3.0),
        vwap=pl.lit(None, pl.Float64), transactions=pl.int_range(pl.len()),
    )
    return MINUTE_BARS.conform(frame).sample(fraction=1.0, shuffle=True, seed=seed)


def _ticker_ranges(path: Path) -> list[tuple[str, str]]:
    metadata = pq.read_metadata(path)
    column = metadata.schema.names.index("ticker")
    stats = [metadata.row_group(i).column(column).statistics for i in range(metadata.num_row_groups)]
    return [(s.min, s.max) for s in stats]


def test_a_lake_file_carries_the_lake_settings_and_its_declared_sort_order(data_dir: Path) -> None:
    root = DataRoot.from_location(data_dir)
    options = datasets.get("options")
    assert options.sort_by == ("ticker", "timestamp")
    frame = option_bars()
    path = root.file_of(options, DAY)
    root.write_parquet(frame, path)

    metadata = pq.read_metadata(path)
    codec = {"lz4": "LZ4", "zstd": "ZSTD", "snappy": "SNAPPY", "uncompressed": "UNCOMPRESSED"}
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert metadata.num_row_groups >= 3 and max(sizes) <= LAKE_PARQUET.row_group_size and sum(sizes) == frame.height
    for group in range(metadata.num_row_groups):
        for index in range(metadata.num_columns):
            chunk = metadata.row_group(group).column(index)
            assert chunk.compression == codec[LAKE_PARQUET.compression]
            assert chunk.is_stats_set and chunk.statistics.null_count is not None
            if chunk.path_in_schema != "vwap":  # all null: no min / max to have
                assert chunk.statistics.has_min_max
    # Written in the declared order: rows sorted, so the row groups' ticker ranges follow one another.
    assert pl.read_parquet(path).equals(frame.sort("ticker", "timestamp"))
    ranges = _ticker_ranges(Path(path))
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(ranges))


def test_a_dataset_without_a_sort_order_is_written_in_the_frames_order(data_dir: Path) -> None:
    root = DataRoot.from_location(data_dir)
    path = root.file_of(datasets.get("spy"), DAY)
    backwards = equity_bars(5).reverse()
    root.write_parquet(backwards, path)
    assert pl.read_parquet(path).equals(backwards)


def test_rewriting_a_sorted_file_gives_the_same_bytes(data_dir: Path) -> None:
    root = DataRoot.from_location(data_dir)
    path = Path(root.file_of(datasets.get("options"), DAY))
    root.write_parquet(option_bars(seed=1), str(path))
    first = path.read_bytes()
    root.write_parquet(option_bars(seed=2), str(path))  # the same rows in another order
    assert path.read_bytes() == first
    root.write_parquet(pl.read_parquet(path), str(path))  # re-materialising what is there
    assert path.read_bytes() == first


def test_sorted_by_leaves_a_sorted_frame_as_it_is_and_sorts_stably_otherwise() -> None:
    ordered = option_bars().sort("ticker", "timestamp")
    assert datasets.sorted_by(ordered, ("ticker", "timestamp")) is ordered
    ties = pl.DataFrame({"ticker": ["b", "a", "b", "a"], "timestamp": [1, 2, 1, 1], "row": [0, 1, 2, 3]})
    assert datasets.sorted_by(ties, ("ticker", "timestamp"))["row"].to_list() == [3, 1, 0, 2]
    with_nulls = pl.DataFrame({"ticker": ["b", None], "timestamp": [1, 1]})
    assert datasets.sorted_by(with_nulls, ("ticker",))["ticker"].to_list() == [None, "b"]


_KEY_ROWS = st.lists(st.tuples(st.sampled_from(["a", "ab", "b"]), st.integers(0, 3), st.integers(0, 2)), max_size=12)


@given(rows=_KEY_ROWS, columns=st.permutations(["ticker", "timestamp", "n"]).flatmap(
    lambda order: st.integers(1, 3).map(lambda k: tuple(order[:k]))))
def test_sorted_by_returns_a_frame_as_it_is_exactly_when_a_stable_sort_would_not_change_it(
    rows: list[tuple[str, int, int]], columns: tuple[str, ...]
) -> None:
    frame = pl.DataFrame(rows, schema={"ticker": pl.String, "timestamp": pl.Int64, "n": pl.Int64}, orient="row")
    frame = frame.with_row_index("row")
    expected = frame.sort(columns, maintain_order=True)  # the oracle: polars' stable sort
    result = datasets.sorted_by(frame, columns)
    assert result["row"].to_list() == expected["row"].to_list()
    assert (result is frame) == (expected["row"].to_list() == frame["row"].to_list())


def test_every_declared_sort_order_is_the_datasets_key() -> None:
    declared = {dataset.name for dataset in datasets.DATASETS if dataset.sort_by}
    assert {"options", "consolidated", "training", "features"} <= declared
    assert all(datasets.get(name).sort_by == datasets.get(name).key for name in declared)


def _overwrite_row_groups(path: Path, groups: list[int]) -> None:
    """Garbage over every column chunk of `groups` (their byte ranges from the footer), the footer kept."""
    metadata = pq.read_metadata(path)
    with path.open("r+b") as handle:
        for group in groups:
            for index in range(metadata.num_columns):
                chunk = metadata.row_group(group).column(index)
                start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
                handle.seek(start)
                handle.write(b"\xff" * chunk.total_compressed_size)


def test_a_ticker_filter_reads_only_the_row_groups_holding_that_contract(data_dir: Path) -> None:
    root = DataRoot.from_location(data_dir)
    frame = option_bars()
    path = Path(root.file_of(datasets.get("options"), DAY))
    root.write_parquet(frame, str(path))
    ranges = _ticker_ranges(path)
    tickers = frame["ticker"].unique().sort()
    wanted = tickers[len(tickers) // 2]
    holding = [index for index, (low, high) in enumerate(ranges) if low <= wanted <= high]
    assert 1 <= len(holding) <= 2 < len(ranges)  # the statistics leave one group (two across a boundary)

    _overwrite_row_groups(path, [index for index in range(len(ranges)) if index not in holding])
    one_contract = spy_pipeline.scan("options", DAY, DAY, data_dir).filter(pl.col("ticker") == wanted).collect()
    assert one_contract.equals(frame.filter(pl.col("ticker") == wanted).sort("timestamp"))
    with pytest.raises(Exception):  # noqa: B017 - the other groups are unreadable: a full read fails
        spy_pipeline.scan("options", DAY, DAY, data_dir).collect()
