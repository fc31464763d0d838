"""Shared materialization metadata: column schemas, dataset paths and request figures in Dagster's shapes."""

from __future__ import annotations

import time
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from dagster import MetadataValue, TableColumn, TableSchema

from spy_pipeline.domain import datasets
from spy_pipeline.domain.schemas import Column, DatasetSchema
from spy_pipeline.io.storage import DataRoot


def table_schema(schema: DatasetSchema) -> TableSchema:
    """The declared columns; a column family as one entry named by its pattern (`target_{k}`)."""
    return TableSchema(columns=[
        TableColumn(name=entry.name, type=str(entry.dtype), description=entry.description)
        if isinstance(entry, Column)
        else TableColumn(name=entry.pattern, type=str(entry.dtype), description=f"{entry.description} ({entry.rule})")
        for entry in schema.entries
    ])


def dataset_metadata(*names: str) -> dict[str, Any]:
    """An asset definition's metadata for the registered dataset(s) it writes: `path` (the pattern under the
    data dir; `raw/corporate_actions/{dividends,splits}.parquet` for several files of one folder) and, for a
    single dataset, its `dagster/column_schema`."""
    declared = [datasets.get(name) for name in names]
    if len(declared) == 1:
        return {"dagster/column_schema": table_schema(declared[0].schema), "path": declared[0].path}
    folders = {dataset.path.rsplit("/", 1)[0] for dataset in declared}
    if len(folders) != 1 or any(dataset.partitioned for dataset in declared):
        raise ValueError(f"{names}: several datasets share a path only as unpartitioned files of one folder")
    stems = ",".join(dataset.file_name().removesuffix(".parquet") for dataset in declared)
    return {"path": f"{folders.pop()}/{{{stems}}}.parquet"}


def written_table_schema(root: DataRoot, path: str, declared: DatasetSchema | None = None) -> TableSchema:
    """The columns of the Parquet file at `path` as written (read from its footer), described from `declared`:
    runtime `dagster/column_schema` that the column-schema-change checks can compare between materializations."""
    arrow = pq.read_schema(path, filesystem=root.fs)
    descriptions = declared.descriptions if declared else {}
    return TableSchema(columns=[
        TableColumn(name=name, type=str(dtype), description=descriptions.get(name))
        for name, dtype in pl.from_arrow(arrow.empty_table()).schema.items()
    ])


def request_metadata(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The requests one materialization made: the difference of two RequestStats snapshots."""
    return {
        "polygon_requests": after["requests"] - before["requests"],
        "polygon_retries": after["retries"] - before["retries"],
        "polygon_bytes_received": after["bytes_received"] - before["bytes_received"],
        "polygon_rate_limit_wait_s": round(after["rate_limit_wait_s"] - before["rate_limit_wait_s"], 3),
    }


def markdown_table(header: list[str], rows: list[list[Any]]) -> MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return MetadataValue.md("\n".join(lines))


def timing(started: float, rows: int) -> dict[str, Any]:
    """How long a materialization took and its throughput, from a time.monotonic() start."""
    seconds = max(time.monotonic() - started, 1e-9)
    return {"duration_s": round(seconds, 3), "rows_per_s": round(rows / seconds, 1)}
