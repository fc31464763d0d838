"""Shared materialization metadata: column schemas and request figures in Dagster's shapes."""

from __future__ import annotations

import time
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from dagster import MetadataValue, TableColumn, TableSchema

from spy_pipeline.domain.schemas import DatasetSchema
from spy_pipeline.io.storage import DataRoot


def table_schema(schema: DatasetSchema) -> TableSchema:
    return TableSchema(
        columns=[
            TableColumn(name=name, type=str(dtype), description=schema.descriptions.get(name))
            for name, dtype in schema.columns.items()
        ]
    )


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
