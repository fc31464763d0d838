"""The public read API (`spy_pipeline.scan`): a registered dataset's partitions in a date range, as one LazyFrame.

Only the files whose trading day is in [start, end] are read, in day order. Every file's Parquet footer is checked
against the dataset's declared schema before the frame is returned, so a bad file fails here, naming it, rather
than in the middle of a `collect()`. A range holding no partition is an error (`NoPartitionsError`): an empty
frame would look like a quiet market, not like data that was never materialized.

A local data dir is scanned with `pl.scan_parquet` (projection and predicate pushdown: a filter on a contract
skips the row groups whose ticker statistics exclude it, see `storage.LAKE_PARQUET`); an object store
through a pyarrow dataset over the data dir's filesystem (`storage.DataRoot`), so any filesystem the pipeline
writes to can be read back.
"""

from __future__ import annotations

import datetime as dt
import os

import polars as pl
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from spy_pipeline.domain.datasets import Dataset, DatasetError, get
from spy_pipeline.io import storage
from spy_pipeline.io.storage import DataRoot, StorageError, partition_day


class NoPartitionsError(DatasetError):
    """No file of the dataset in the requested range: nothing was materialized there."""


DateLike = dt.date | str | None


def parse_bound(label: str, value: DateLike) -> dt.date | None:
    """`value` (a date, an ISO `YYYY-MM-DD` string or None) as a date; DatasetError for anything else."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):  # a datetime is a date too, but which day it means depends on its zone
        raise DatasetError(f"{label}={value!r} is a datetime: give a date or a YYYY-MM-DD string")
    if isinstance(value, dt.date):
        return value
    day = partition_day(value) if isinstance(value, str) else None
    if day is None:
        raise DatasetError(f"{label}={value!r} is not a date: give a datetime.date or a YYYY-MM-DD string")
    return day


def scan_dataset(
    dataset: str, start: DateLike = None, end: DateLike = None,
    data_dir: DataRoot | str | os.PathLike[str] | None = None, **folders: str,
) -> pl.LazyFrame:
    """See `spy_pipeline.scan`."""
    declared = get(dataset)
    first, last = parse_bound("start", start), parse_bound("end", end)
    if first is not None and last is not None and first > last:
        raise DatasetError(f"start {first} is after end {last}")
    if data_dir is None:
        from spy_pipeline.settings import load_settings  # reads the environment and .env only when needed

        data_dir = load_settings().data_dir
    root = storage.as_data_root(data_dir)
    files = _files(root, declared, first, last, folders)
    schema = _common_schema(root, declared, files)
    if root.is_local:
        return pl.scan_parquet(files, schema=schema, hive_partitioning=False, parallel=storage.LAKE_SCAN_PARALLEL)
    return pl.scan_pyarrow_dataset(pads.dataset(files, filesystem=root.fs, format="parquet"))


def _files(root: DataRoot, declared: Dataset, first: dt.date | None, last: dt.date | None,
           folders: dict[str, str]) -> list[str]:
    """The dataset's files in [first, last], oldest day first (a day's files by name)."""
    folder = root.dataset_path(*declared.folder(**folders))
    if not declared.partitioned:
        if first is not None or last is not None:
            raise DatasetError(f"{declared.name} is one file ({declared.path}), not daily: scan it without start/end")
        path = root.file_of(declared, **folders)
        if not root.exists(path):
            raise NoPartitionsError(f"{root.uri(path)} does not exist: materialize {declared.written_by} first")
        return [path]

    def in_range(name: str) -> bool:
        day = partition_day(name)
        return day is not None and (first is None or day >= first) and (last is None or day <= last)

    if declared.files_per_day:
        days = [path for path in root.list_folders(folder) if in_range(path.rsplit("/", 1)[-1])]
        files = [file for day in days for file in root.list_files(day, ".parquet")]
    else:
        files = [path for path in root.list_files(folder, ".parquet")
                 if in_range(path.rsplit("/", 1)[-1].removesuffix(".parquet"))]
    if not files:
        span = f"from {first or 'the first day'} to {last or 'the last'}"
        raise NoPartitionsError(
            f"no {declared.name} partition {span} in {root.uri(folder)}: materialize {declared.written_by} "
            "for those days first"
        )
    return files


def _common_schema(root: DataRoot, declared: Dataset, files: list[str]) -> pl.Schema:
    """The files' schema, read from their footers: each must match the declaration, and all the same one."""
    found: pl.Schema | None = None
    for path in files:
        schema = _footer_schema(root, path)
        if not declared.schema.matches(schema):
            raise StorageError(f"{root.uri(path)} does not have the {declared.schema.name} schema: {dict(schema)}")
        if found is not None and schema != found:
            raise DatasetError(
                f"{declared.name}'s files in the range have different columns ({root.uri(path)} differs from the "
                "first): scan a range written with one configuration"
            )
        found = schema
    assert found is not None  # _files never returns an empty list
    return found


def _footer_schema(root: DataRoot, path: str) -> pl.Schema:
    try:
        if root.is_local:
            return pl.Schema(pl.read_parquet_schema(path))
        return pl.from_arrow(pq.read_schema(path, filesystem=root.fs).empty_table()).schema
    except Exception as exc:  # polars and pyarrow raise several types for a file that is not Parquet
        raise StorageError(f"{root.uri(path)} is not a readable Parquet file: {exc}") from None
