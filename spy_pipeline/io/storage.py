"""Where datasets live under the data dir, and atomic Parquet writes.

One file per (dataset, trading day). A reader sees either the old file or the new one, never a
partial write: data goes to a temporary file in the same folder, is fsynced, then renamed.

Every Parquet file of the lake is written with one setting, `LAKE_PARQUET` (codec, row-group size,
statistics), chosen by measurement (spy_pipeline_tests/bench/lake.py); a dataset that declares a sort order
(`Dataset.sort_by`: the per-option-per-minute ones, by ticker then timestamp) is written in that order, so
the row groups' min/max statistics let a one-contract filter skip all but the row groups holding it.

The data dir is a local folder (the Path functions below) or, through `DataRoot` (which every module
uses to reach the data dir; `as_data_root` makes one from a setting), any location that pyarrow's
filesystems open: `s3://bucket/prefix`, `gs://...`, `hdfs://...`, `file:///abs/path` or a plain path;
fsspec's filesystems (`memory://`, and any that an installed fsspec plug-in brings) are the fallback for
schemes pyarrow does not know. A `DataRoot` on the local filesystem
delegates to the Path functions, so `file://` and plain paths behave exactly as today.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Literal

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs

from spy_pipeline.domain.datasets import Dataset, dataset_of, sorted_by
from spy_pipeline.domain.schemas import DatasetSchema

_SAFE_PART = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,40}\Z")
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")


_PARTITION_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")


def partition_day(name: str) -> dt.date | None:
    """The day a partition file or folder is named for ("2025-01-08"), or None for any other name."""
    if not _PARTITION_NAME.fullmatch(name):
        return None
    try:
        return dt.date.fromisoformat(name)
    except ValueError:
        return None


class StorageError(ValueError):
    """A path outside the data dir, or a file that does not hold what it should."""


def _check_parts(parts: tuple[str, ...]) -> None:
    for part in parts:
        if not _SAFE_PART.fullmatch(part):
            raise StorageError(f"unsafe dataset path component {part!r}")


def dataset_dir(data_dir: Path, *parts: str) -> Path:
    """A folder under the data dir; every part must be a plain lowercase name (no '/', '..')."""
    _check_parts(parts)
    root = data_dir.resolve()
    folder = root.joinpath(*parts).resolve()
    if root != folder and root not in folder.parents:
        raise StorageError(f"{folder} is outside the data dir {root}")
    return folder


def partition_file(data_dir: Path, day: dt.date, *parts: str) -> Path:
    return dataset_dir(data_dir, *parts) / f"{day.isoformat()}.parquet"


@dataclass(frozen=True)
class ParquetSettings:
    """How a Parquet file is written, by polars' writer (pyarrow's, tried on a consolidated day with 16k-row
    groups, took about twice the CPU: it builds a dictionary per column and row group)."""

    compression: Literal["lz4", "snappy", "zstd", "uncompressed"]
    compression_level: int | None = None  # zstd only; None: the codec's default
    row_group_size: int | None = None  # rows; None: polars' default (512² rows, split across its threads)
    statistics: bool = True  # min / max / null count per row group and column: what pruning reads

    @property
    def label(self) -> str:
        level = f"-{self.compression_level}" if self.compression_level is not None else ""
        groups = f", row groups of {self.row_group_size:,}" if self.row_group_size else ", default row groups"
        return f"{self.compression}{level}{groups}{'' if self.statistics else ', no statistics'}"

    def write(self, frame: pl.DataFrame, target: BinaryIO) -> None:
        frame.write_parquet(
            target, compression=self.compression, compression_level=self.compression_level,
            row_group_size=self.row_group_size, statistics=self.statistics,
        )


# The lake's setting, measured by bench/lake.py on a day of 2,000 contracts (516k consolidated rows) against
# zstd levels, snappy, lz4 and row-group sizes: against zstd-3 with polars' default row groups, lz4 writes
# with ~0.6x the CPU and reads a day with ~0.5x, for ~1.4x the bytes (the greeks, most of a file, are
# random doubles that no codec shrinks much); 16k-row groups let a one-contract filter read one group of 32
# per day instead of one of 4 (a month's filtered read: ~0.13x the CPU). 8k-row groups cost more to write
# and to read whole for little gain; snappy and zstd-1 cost more CPU.
LAKE_PARQUET = ParquetSettings("lz4", row_group_size=16_384)
# How `spy_pipeline.scan` has polars read the lake: evaluate a pushed-down filter's columns first (in the row
# groups the statistics keep), then read the other columns only for the rows that pass; in bench/lake.py it
# was as fast as polars' "auto" or up to twice as fast for a month filtered to one contract.
LAKE_SCAN_PARALLEL: Literal["prefiltered"] = "prefiltered"


def write_parquet_atomic(frame: pl.DataFrame, path: Path, settings: ParquetSettings = LAKE_PARQUET) -> int:
    """Write `frame` to `path` atomically; returns the file size in bytes."""
    return _write_atomic(path, lambda handle: settings.write(frame, handle))


def write_bytes_atomic(data: bytes, path: Path) -> int:
    """Write `data` (a CSV report, say) to `path` atomically, as `write_parquet_atomic` does."""
    return _write_atomic(path, lambda handle: handle.write(data))


def _write_atomic(path: Path, fill: Callable[[BinaryIO], object]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a dataset file is as readable as any other file
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path.stat().st_size


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


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
    return _checked_frame(path, str(path), schema)


def _read_frame(source: Path | io.BytesIO, label: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(source)
    except Exception as exc:  # polars raises several types for corrupt files
        raise StorageError(f"{label} is not a readable Parquet file: {exc}") from None


def _checked_frame(source: Path | io.BytesIO, label: str, schema: DatasetSchema) -> pl.DataFrame:
    frame = _read_frame(source, label)
    if not schema.matches(frame.schema):
        raise StorageError(f"{label} does not have the {schema.name} schema: {dict(frame.schema)}")
    return frame


# --- data dirs given as URIs ------------------------------------------------------------------


def is_uri(location: str | os.PathLike[str]) -> bool:
    """True for `scheme://...` (s3://, file://, ...); a Path never is one (Path('s3://b') collapses to 's3:/b')."""
    return isinstance(location, str) and _URI.match(location) is not None


@dataclass(frozen=True)
class DataRoot:
    """The data dir on one filesystem: `fs` holds the datasets under the folder or key prefix `base`.

    Paths handed out and taken back (`dataset_path`, `partition_path`, `write_parquet`, `read_partition`)
    are paths inside `fs` as strings, e.g. `bucket/prefix/raw/spy/2025-01-08.parquet` for S3 or an absolute
    path for the local filesystem; `uri(path)` is the form to show a person.
    """

    fs: pafs.FileSystem
    base: str
    display_base: str

    @classmethod
    def from_location(cls, location: str | os.PathLike[str]) -> DataRoot:
        """A local path (relative paths resolve against the working directory, `~` expands) or a URI.

        S3 note: pyarrow looks up the bucket's region when it opens `s3://bucket/...` unless the URI names
        it (`s3://bucket/prefix?region=us-east-1`); credentials come from the usual AWS environment.
        """
        if not is_uri(location):
            base = str(Path(location).expanduser().resolve())
            return cls(pafs.LocalFileSystem(), base, base)
        location = str(location)
        try:
            fs, path = pafs.FileSystem.from_uri(location)
        except pa.ArrowInvalid:  # a scheme pyarrow has no filesystem for
            fs, path = _fsspec_filesystem(location)
        if isinstance(fs, pafs.LocalFileSystem):
            base = str(Path(path).resolve())
            return cls(fs, base, base)
        base = path.rstrip("/")
        segments = base.lstrip("/").split("/")
        if not base.strip("/") or any(segment in {"", ".", ".."} for segment in segments):
            raise StorageError(f"{location!r} needs a bucket (and optional prefix) without '.', '..' or '//'")
        display_base = location.split("?", 1)[0].split("#", 1)[0].rstrip("/")
        return cls(fs, base, display_base)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def dataset_path(self, *parts: str) -> str:
        """A folder (key prefix) under the data dir, with the same rules as `dataset_dir`."""
        if self.is_local:
            return str(dataset_dir(Path(self.base), *parts))
        _check_parts(parts)
        return "/".join([self.base, *parts])

    def partition_path(self, day: dt.date, *parts: str) -> str:
        if self.is_local:
            return str(partition_file(Path(self.base), day, *parts))
        return f"{self.dataset_path(*parts)}/{day.isoformat()}.parquet"

    def file_of(self, dataset: Dataset, day: dt.date | None = None, **values: str) -> str:
        """Where `dataset` keeps `day`'s file (its only file when unpartitioned); `values` fill the path's other
        folders (`ticker='qqq'` for raw/{ticker}/{date}.parquet)."""
        folder = self.dataset_path(*dataset.folder(**values))
        name = dataset.file_name(day)
        return str(Path(folder) / name) if self.is_local else f"{folder}/{name}"

    def relative(self, path: str) -> str:
        """`path` relative to the data dir ('raw/spy/2025-01-08.parquet'); refuses a path outside it."""
        if self.is_local:
            return str(Path(path).relative_to(self.base))
        if not path.startswith(self.base + "/"):
            raise StorageError(f"{path} is outside the data dir {self.display_base}")
        relative = path[len(self.base) + 1 :]
        if any(segment in {"", ".", ".."} for segment in relative.split("/")):
            raise StorageError(f"{path} is outside the data dir {self.display_base}")
        return relative

    def uri(self, path: str) -> str:
        """How to show `path`: the local path itself, or the data dir's URI joined with the relative key."""
        return path if self.is_local else f"{self.display_base}/{self.relative(path)}"

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def list_files(self, folder: str, suffix: str) -> list[str]:
        """The files directly in `folder` (from `dataset_path`) whose names end with `suffix`, sorted;
        none when the folder does not exist."""
        selector = pafs.FileSelector(folder, allow_not_found=True, recursive=False)
        return sorted(
            info.path for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.base_name.endswith(suffix)
        )

    def list_folders(self, folder: str) -> list[str]:
        """The folders directly in `folder`, sorted; none when it does not exist (an object store has folders
        only as key prefixes: those of the objects below)."""
        selector = pafs.FileSelector(folder, allow_not_found=True, recursive=False)
        return sorted(info.path for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.Directory)

    def write_parquet(self, frame: pl.DataFrame, path: str) -> int:
        """Write `frame` to `path` so that readers see the old object or the new one; returns its size.

        Local filesystem: `write_parquet_atomic` (temp file in the same folder, fsync, rename, fsync the
        folder). Object stores have no rename (S3's "move" is a copy then a delete, neither atomic nor
        cheap), but an object only becomes visible once its upload completes: a single PUT, or the
        completion of a multipart upload, replaces the whole object at once. So the Parquet bytes are built
        in memory first (a failing serialisation never reaches the store) and then sent to the final key in
        one upload; an upload that fails is never completed and the previous object stays as it was.

        A file of a dataset that declares a sort order is written in that order (a frame already in it, as
        the writers make them, is only checked).
        """
        frame = sorted_by(frame, self._declared_order(path))
        if self.is_local:
            return write_parquet_atomic(frame, Path(path))
        self.relative(path)  # the same refusal as for reads: nothing outside the data dir
        buffer = io.BytesIO()
        LAKE_PARQUET.write(frame, buffer)
        return self._upload(buffer.getvalue(), path)

    def _declared_order(self, path: str) -> tuple[str, ...]:
        """The sort order of the dataset `path` is a file of; none for a file of no dataset."""
        try:
            dataset = dataset_of(self.relative(path))
        except ValueError:  # outside the data dir: refused below for an object store, any file locally
            return ()
        return dataset.sort_by if dataset else ()

    def write_bytes(self, data: bytes, path: str) -> int:
        """`write_parquet` for bytes that are already serialised (a CSV report)."""
        if self.is_local:
            return write_bytes_atomic(data, Path(path))
        self.relative(path)
        return self._upload(data, path)

    def _upload(self, data: bytes, path: str) -> int:
        try:
            stream = self.fs.open_output_stream(path)
        except FileNotFoundError:  # a hierarchical filesystem (HDFS, mock) wants the folder; object stores never
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            stream = self.fs.open_output_stream(path)
        with stream:
            stream.write(data)
        return len(data)

    def read_partition(self, path: str, schema: DatasetSchema) -> pl.DataFrame:
        """`read_partition` for any filesystem: the whole object is read, then checked against `schema`."""
        if self.is_local:
            return read_partition(Path(path), schema)
        label = self.uri(path)
        if not self.exists(path):
            raise StorageError(f"{label} does not exist: materialize that partition first")
        return _checked_frame(self._download(path), label, schema)

    def read_frame(self, path: str) -> pl.DataFrame:
        """A Parquet file of no fixed schema (training files, whose target columns vary), unchecked."""
        if self.is_local:
            return _read_frame(Path(path), path)
        return _read_frame(self._download(path), self.uri(path))

    def _download(self, path: str) -> io.BytesIO:
        self.relative(path)
        with self.fs.open_input_file(path) as handle:
            return io.BytesIO(handle.readall())


def as_data_root(location: DataRoot | str | os.PathLike[str]) -> DataRoot:
    """`location` as a DataRoot; a URI's filesystem is opened once per process (an S3 client looks the
    bucket's region up when it is made), a local path is resolved anew (against the current directory)."""
    if isinstance(location, DataRoot):
        return location
    if is_uri(location):
        return _uri_root(str(location))
    return DataRoot.from_location(location)


@lru_cache(maxsize=16)
def _uri_root(location: str) -> DataRoot:
    return DataRoot.from_location(location)


def _fsspec_filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """An fsspec filesystem (memory://, or one an installed plug-in registers) wrapped for pyarrow."""
    import fsspec  # dagster requires it (through universal_pathlib); imported only for such schemes

    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ValueError, ImportError) as exc:
        raise StorageError(f"no filesystem for {location!r}: {exc}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
