"""What the data dir holds: bytes and files per dataset and per month, Parquet compression, growth per trading day.

A dataset is a folder of files (raw/spy, raw/options, raw/options/contracts, processed/features, reports, ...);
dated folders below it (stream/{source}/{date}/) are partitions of it, not datasets of their own. A file's day
is the date in its name (`{date}.parquet`, or an enclosing `{date}/` folder; the latest when several); its
month is that day's (YYYY-MM), or "undated". Symlinks are neither followed nor counted. Files at the top of the
data dir count under the dataset ".". Each file is also named by the registered dataset it belongs to
(`spy_pipeline.domain.datasets`: `spy`, `stream_bars`, ...), null for a file no dataset declares; a Parquet file
that none declares is counted as unregistered (a stray, or a writer missing from the registry).
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from spy_pipeline.domain import datasets
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.io.storage import partition_day

GROWTH_WINDOW = 20  # trading days
UNDATED = "undated"
FILES_SCHEMA = {
    "path": pl.Utf8, "dataset": pl.Utf8, "day": pl.Date, "month": pl.Utf8, "bytes": pl.Int64,
    "parquet": pl.Boolean, "uncompressed_bytes": pl.Int64, "registered": pl.Utf8,
}


@dataclass(frozen=True)
class StorageReport:
    data_dir: Path
    files: pl.DataFrame  # one row per file: FILES_SCHEMA
    by_dataset: pl.DataFrame  # dataset, files, bytes, partitions, first_day, last_day, registered
    by_month: pl.DataFrame  # month, files, bytes (months ascending, "undated" last)
    by_dataset_month: pl.DataFrame  # dataset, month, files, bytes
    compression: pl.DataFrame  # dataset, parquet_files, parquet_bytes, uncompressed_bytes, compression_ratio
    growth: pl.DataFrame  # dataset, window_start, window_end, partitions, bytes, avg_bytes_per_partition, ...
    window: list[dt.date] = field(default_factory=list)  # the trading days growth averages over
    totals: dict[str, Any] = field(default_factory=dict)


def build_storage_report(data_dir: Path | str, growth_window: int = GROWTH_WINDOW) -> StorageReport:
    root = Path(data_dir).expanduser().resolve()
    files = pl.DataFrame(list(_walk(root)), schema=FILES_SCHEMA, orient="row")
    window = _window(files, growth_window)
    growth = _growth(files, window)
    parquet = files.filter(pl.col("parquet") & pl.col("uncompressed_bytes").is_not_null())
    totals = {
        "files": files.height,
        "bytes": int(files["bytes"].sum() or 0),
        "datasets": files["dataset"].n_unique(),
        "parquet_bytes": int(parquet["bytes"].sum() or 0),
        "uncompressed_bytes": int(parquet["uncompressed_bytes"].sum() or 0),
        "compression_ratio": _ratio(parquet["uncompressed_bytes"].sum(), parquet["bytes"].sum()),
        "bytes_per_trading_day": float(growth["bytes_per_trading_day"].sum() or 0.0),
        "unreadable_parquet_files": files.filter(pl.col("parquet") & pl.col("uncompressed_bytes").is_null()).height,
        "unregistered_parquet_files": files.filter(pl.col("parquet") & pl.col("registered").is_null()).height,
    }
    return StorageReport(
        data_dir=root,
        files=files,
        by_dataset=_by_dataset(files),
        by_month=_by_month(files),
        by_dataset_month=files.group_by("dataset", "month")
        .agg(pl.len().cast(pl.Int64).alias("files"), pl.col("bytes").sum())
        .sort("dataset", pl.col("month") == UNDATED, "month"),
        compression=_compression(files),
        growth=growth,
        window=window,
        totals=totals,
    )


def _walk(root: Path):
    if not root.is_dir():
        return
    for folder, subfolders, names in os.walk(root, followlinks=False):
        here = Path(folder)
        parts = here.relative_to(root).parts
        subfolders.sort()
        for name in sorted(names):
            path = here / name
            try:
                info = path.lstat()
            except OSError:  # gone meanwhile: an atomic write's temporary file, a retention run
                continue
            if not stat.S_ISREG(info.st_mode):
                continue  # symlinks are not followed, nor counted
            days = [d for d in (partition_day(part) for part in (*parts, path.stem)) if d is not None]
            first_dated = next((i for i, part in enumerate(parts) if partition_day(part) is not None), len(parts))
            dataset = "/".join(parts[:first_dated]) or "."
            day = max(days) if days else None
            is_parquet = name.endswith(".parquet") and not name.startswith(".")
            relative = "/".join((*parts, name))
            registered = datasets.dataset_of(relative)
            yield (
                relative, dataset, day, day.strftime("%Y-%m") if day else UNDATED,
                info.st_size, is_parquet, _uncompressed(path) if is_parquet else None,
                registered.name if registered else None,
            )


def _uncompressed(path: Path) -> int | None:
    """Sum of total_uncompressed_size over every column chunk of every row group; None if unreadable."""
    try:
        metadata = pq.ParquetFile(path).metadata
    except Exception:  # pyarrow raises several types for a file that is not Parquet
        return None
    return sum(
        metadata.row_group(group).column(column).total_uncompressed_size
        for group in range(metadata.num_row_groups)
        for column in range(metadata.num_columns)
    )


def _ratio(uncompressed: Any, stored: Any) -> float | None:
    return round(float(uncompressed) / float(stored), 3) if stored else None


def _by_dataset(files: pl.DataFrame) -> pl.DataFrame:
    return (
        files.group_by("dataset")
        .agg(
            pl.len().cast(pl.Int64).alias("files"),
            pl.col("bytes").sum(),
            pl.col("day").drop_nulls().n_unique().cast(pl.Int64).alias("partitions"),
            pl.col("day").min().alias("first_day"),
            pl.col("day").max().alias("last_day"),
            pl.col("registered").drop_nulls().unique().sort().str.join(", ").alias("registered"),
        )
        .sort("dataset")
    )


def _by_month(files: pl.DataFrame) -> pl.DataFrame:
    return (
        files.group_by("month")
        .agg(pl.len().cast(pl.Int64).alias("files"), pl.col("bytes").sum())
        .sort(pl.col("month") == UNDATED, "month")
    )


def _compression(files: pl.DataFrame) -> pl.DataFrame:
    readable = files.filter(pl.col("parquet") & pl.col("uncompressed_bytes").is_not_null())
    return (
        readable.group_by("dataset")
        .agg(
            pl.len().cast(pl.Int64).alias("parquet_files"),
            pl.col("bytes").sum().alias("parquet_bytes"),
            pl.col("uncompressed_bytes").sum(),
        )
        .with_columns(
            (pl.col("uncompressed_bytes").cast(pl.Float64) / pl.col("parquet_bytes"))
            .round(3)
            .alias("compression_ratio")
        )
        .sort("dataset")
    )


def _window(files: pl.DataFrame, size: int) -> list[dt.date]:
    """The last `size` trading days up to the latest dated file (the last `size` dates present when the
    calendar does not cover them)."""
    days = files["day"].drop_nulls()
    if days.is_empty() or size < 1:
        return []
    end = days.max()
    try:
        return cal.last_trading_days(end, size)
    except cal.TradingCalendarError:
        return sorted(days.unique().to_list())[-size:]


def _growth(files: pl.DataFrame, window: list[dt.date]) -> pl.DataFrame:
    """Per dataset with dated partitions: bytes per partition in the window, averaged over the partitions
    present and spread over the window's trading days (what a trading day adds to the disk)."""
    schema = {
        "dataset": pl.Utf8, "window_start": pl.Date, "window_end": pl.Date, "partitions": pl.Int64,
        "bytes": pl.Int64, "avg_bytes_per_partition": pl.Float64, "bytes_per_trading_day": pl.Float64,
    }
    if not window:
        return pl.DataFrame(schema=schema)
    partitions = (
        files.filter(pl.col("day").is_in(window))
        .group_by("dataset", "day")
        .agg(pl.col("bytes").sum())
    )
    dated = files.filter(pl.col("day").is_not_null())["dataset"].unique().sort()
    rows = []
    for dataset in dated:
        sizes = partitions.filter(pl.col("dataset") == dataset)["bytes"]
        total = int(sizes.sum() or 0)
        rows.append({
            "dataset": dataset, "window_start": window[0], "window_end": window[-1], "partitions": sizes.len(),
            "bytes": total, "avg_bytes_per_partition": total / sizes.len() if sizes.len() else None,
            "bytes_per_trading_day": total / len(window),
        })
    return pl.DataFrame(rows, schema=schema)


def format_bytes(size: float | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
