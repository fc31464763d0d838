"""Where datasets live under the data dir, and atomic Parquet writes.

One file per (dataset, trading day). A reader sees either the old file or the new one, never a
partial write: data goes to a temporary file in the same folder, is fsynced, then renamed.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from pathlib import Path

import polars as pl

from spy_pipeline.schemas import DatasetSchema

_SAFE_PART = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,40}\Z")


class StorageError(ValueError):
    """A path outside the data dir, or a file that does not hold what it should."""


def dataset_dir(data_dir: Path, *parts: str) -> Path:
    """A folder under the data dir; every part must be a plain lowercase name (no '/', '..')."""
    for part in parts:
        if not _SAFE_PART.fullmatch(part):
            raise StorageError(f"unsafe dataset path component {part!r}")
    root = data_dir.resolve()
    folder = root.joinpath(*parts).resolve()
    if root != folder and root not in folder.parents:
        raise StorageError(f"{folder} is outside the data dir {root}")
    return folder


def partition_file(data_dir: Path, day: dt.date, *parts: str) -> Path:
    return dataset_dir(data_dir, *parts) / f"{day.isoformat()}.parquet"


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> int:
    """Write `frame` to `path` atomically; returns the file size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            frame.write_parquet(handle, compression="zstd", statistics=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path.stat().st_size


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_partition(path: Path, schema: DatasetSchema) -> pl.DataFrame:
    """Read one partition file and insist it has the declared schema."""
    if not path.exists():
        raise StorageError(f"{path} does not exist: materialize that partition first")
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for corrupt files
        raise StorageError(f"{path} is not a readable Parquet file: {exc}") from None
    if not schema.matches(frame.schema):
        raise StorageError(f"{path} does not have the {schema.name} schema: {dict(frame.schema)}")
    return frame
