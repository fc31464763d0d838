"""Range runs keep their good days, and every day of a range gets its own metadata.

A single-run backfill hands an asset a range of trading days. A day without data (a vendor outage, a day
before the plan's history, a flat file never published) must not cost the others: the asset writes every
good day, reports each one as its own materialization with that day's figures, and fails the step with one
line per bad day saying why. Dagster then shows the good days materialized and the bad ones failed (their
latest planned materialization has none and its run failed). The automation leaves failed days alone and
held_back_days_sensor (defs/automation/held_back.py) requests the good days' downstream partitions that the
failed step held back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dagster import AssetExecutionContext, AssetMaterialization, Failure, MaterializeResult, MetadataValue

from spy_pipeline.defs.metadata import markdown_table
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain import datasets
from spy_pipeline.io.ingest import PartitionWritten
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.polygon.errors import EmptyDataError, PolygonEntitlementError
from spy_pipeline.polygon.flatfiles import FlatFileNotPublishedError

# What one day can lack while the days beside it are fine. Anything else (an API down after the client's
# retries, a broken file) fails the whole range as before.
DAY_ERRORS = (EmptyDataError, PolygonEntitlementError, FlatFileNotPublishedError)
MATERIALIZED_DAYS = "materialized_days"  # on the failure: what defs/automation/held_back.py finishes


def fetch_day_by_day[T](
    fetch: Callable[[Sequence[dt.date]], list[T]], days: Sequence[dt.date]
) -> tuple[list[T], dict[dt.date, Exception]]:
    """`fetch(days)`, or when one day of the range has no data, `fetch([day])` for each day:
    (what was fetched, the error of each day without data)."""
    try:
        return fetch(days), {}
    except DAY_ERRORS as exc:
        if len(days) == 1:
            return [], {days[0]: exc}
    fetched: list[T] = []
    failed: dict[dt.date, Exception] = {}
    for day in days:
        try:
            fetched += fetch([day])
        except DAY_ERRORS as exc:
            failed[day] = exc
    return fetched, failed


def written_by_day(root: DataRoot, written: Sequence[PartitionWritten]) -> dict[dt.date, dict[str, Any]]:
    """Each day's own figures from the files written for it (several tickers of a day add up)."""
    by_day: dict[dt.date, list[PartitionWritten]] = {}
    for w in written:
        by_day.setdefault(w.day, []).append(w)
    metadata = {}
    for day, files in by_day.items():
        rows = sum(w.rows for w in files)
        entry: dict[str, Any] = {"rows": rows, "dagster/row_count": rows, "partitions": 1,
                                 "first_partition": str(day), "last_partition": str(day)}
        entry["path"] = MetadataValue.path(root.uri(files[0].path)) if len(files) == 1 else MetadataValue.json(
            [root.uri(w.path) for w in files])
        bars = [w for w in files if w.first_bar is not None]
        if bars:
            entry["first_bar"] = MetadataValue.timestamp(min(w.first_bar for w in bars))  # type: ignore[type-var]
            entry["last_bar"] = MetadataValue.timestamp(max(w.last_bar for w in bars))  # type: ignore[type-var]
        metadata[day] = entry
    return metadata


def file_metadata(
    store: ParquetStoreResource, dataset: str, day: dt.date, written_file: Mapping[str, Any], **figures: Any
) -> dict[str, Any]:
    """One day's metadata from its `written_files` entry (ParquetStoreResource.write_day) and its own figures."""
    path = store.uri(store.data_root.file_of(datasets.get(dataset), day))
    return {"rows": written_file["rows"], "dagster/row_count": written_file["rows"],
            "path": MetadataValue.path(path), **figures}


def finish_range(
    context: AssetExecutionContext,
    days: Sequence[dt.date],
    metadata: Mapping[str, Any],
    by_day: Mapping[dt.date, Mapping[str, Any]],
    failed: Mapping[dt.date, Exception] | None = None,
) -> MaterializeResult:
    """The asset's result: `metadata` for the run, `by_day[day]` on each day's materialization (over the
    run's where both name a figure). With `failed` days, the good days are reported materialized one by one
    and the step fails naming each failed day and why (no retry: a day without data stays so); a run of one
    failed day fails with that day's own error."""
    for day, entry in by_day.items():
        context.add_asset_metadata(dict(entry), partition_key=day.isoformat())
    if not failed:
        return MaterializeResult(metadata=dict(metadata))
    good = sorted(day for day in days if day not in failed)
    if not good and len(failed) == 1:
        raise next(iter(failed.values()))
    for day in good:
        context.log_event(AssetMaterialization(
            asset_key=context.asset_key, partition=day.isoformat(), metadata={**metadata, **by_day.get(day, {})}
        ))
    reasons = "; ".join(f"{day}: {error}" for day, error in sorted(failed.items()))
    raise Failure(
        description=f"{len(failed)} of {len(good) + len(failed)} trading days failed ({len(good)} materialized): "
                    f"{reasons}",
        metadata={
            "failed_days": markdown_table(["day", "why"], [[str(d), str(e)] for d, e in sorted(failed.items())]),
            MATERIALIZED_DAYS: MetadataValue.json([str(day) for day in good]),
        },
        allow_retries=False,
    )
