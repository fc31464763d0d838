"""The `storage_report` asset: the data dir's size per dataset and month, compression, growth, as metadata."""

from dagster import MaterializeResult, MetadataValue, asset

from spy_pipeline.defs.metadata import markdown_table
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.io.storage_report import GROWTH_WINDOW, build_storage_report, format_bytes


def _day(value) -> str:
    return value.isoformat() if value else "-"


@asset(group_name="operations", kinds={"parquet"})
def storage_report(store: ParquetStoreResource) -> MaterializeResult:
    """Bytes and files per dataset and per month of data, Parquet compression ratio per dataset (uncompressed
    size from the Parquet footers), and growth per trading day over the last 20 trading days. Reads only."""
    report = build_storage_report(store.local_root("storage_report"), GROWTH_WINDOW)
    totals = report.totals
    metadata = {
        "data_dir": MetadataValue.path(str(report.data_dir)),
        "total_bytes": totals["bytes"],
        "total_size": format_bytes(totals["bytes"]),
        "total_files": totals["files"],
        "datasets": totals["datasets"],
        "bytes_per_trading_day": round(totals["bytes_per_trading_day"], 1),
        "unreadable_parquet_files": totals["unreadable_parquet_files"],
        "unregistered_parquet_files": totals["unregistered_parquet_files"],
        "by_dataset": markdown_table(
            ["dataset", "files", "size", "bytes", "partitions", "first day", "last day"],
            [[r["dataset"], r["files"], format_bytes(r["bytes"]), r["bytes"], r["partitions"], _day(r["first_day"]),
              _day(r["last_day"])] for r in report.by_dataset.iter_rows(named=True)] or [["-"] * 7],
        ),
        "by_month": markdown_table(
            ["month", "files", "size", "bytes"],
            [[r["month"], r["files"], format_bytes(r["bytes"]), r["bytes"]]
             for r in report.by_month.iter_rows(named=True)] or [["-"] * 4],
        ),
        "compression": markdown_table(
            ["dataset", "parquet files", "on disk", "uncompressed", "ratio"],
            [[r["dataset"], r["parquet_files"], format_bytes(r["parquet_bytes"]),
              format_bytes(r["uncompressed_bytes"]), r["compression_ratio"]]
             for r in report.compression.iter_rows(named=True)] or [["-"] * 5],
        ),
        "growth_per_trading_day": markdown_table(
            ["dataset", "window", "partitions", "avg per partition", "per trading day"],
            [[r["dataset"], f"{_day(r['window_start'])} to {_day(r['window_end'])}", r["partitions"],
              format_bytes(r["avg_bytes_per_partition"]), format_bytes(r["bytes_per_trading_day"])]
             for r in report.growth.iter_rows(named=True)] or [["-"] * 5],
        ),
    }
    if totals["compression_ratio"] is not None:
        metadata["compression_ratio"] = totals["compression_ratio"]
    return MaterializeResult(metadata=metadata)
