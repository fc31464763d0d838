"""Optional sources (SPY_PIPELINE_OPTIONAL_SOURCES=vix,news): a day without them is not a failed day.

Polygon sells stocks, options, indices and news separately. When an optional source is not entitled (HTTP 403)
or has no data for a day, its raw asset writes no file for that day and says why in `source_unavailable`
(day -> one line); consolidated then leaves the source's columns null, records why, and warns. A required
source fails as before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetRecordsFilter, DagsterInstance, MetadataValue

from spy_pipeline.io import ingest
from spy_pipeline.io.ingest import PartitionWritten
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.errors import EmptyDataError, PolygonEntitlementError

UNAVAILABLE_KEY = "source_unavailable"
RAW_ASSETS = {"vix": "raw_vix_bars", "news": "raw_news"}


def ingest_bars(
    client: PolygonClient, root: Path | DataRoot, ticker: str, days: Sequence[dt.date]
) -> tuple[list[PartitionWritten], dict[dt.date, str]]:
    """`ingest.ingest_minute_bars`, keeping the good days: (written, reason per day without bars)."""
    try:
        return ingest.ingest_minute_bars(client, root, ticker, days), {}
    except PolygonEntitlementError as exc:
        return [], dict.fromkeys(days, str(exc))
    except EmptyDataError:
        pass  # some day of the range is empty: day by day, so the others are kept
    written: list[PartitionWritten] = []
    missing: dict[dt.date, str] = {}
    for day in days:
        try:
            written += ingest.ingest_minute_bars(client, root, ticker, [day])
        except (EmptyDataError, PolygonEntitlementError) as exc:
            missing[day] = str(exc)
    return written, missing


def unavailable_metadata(
    source: str | None, unavailable: dict[dt.date, str], context: AssetExecutionContext
) -> dict[str, Any]:
    if source is None:
        return {}
    for day, reason in sorted(unavailable.items()):
        context.log.warning(f"{day}: optional source {source} unavailable, no file written: {reason}")
    return {
        UNAVAILABLE_KEY: MetadataValue.json({str(day): reason for day, reason in sorted(unavailable.items())}),
        "unavailable_days": len(unavailable),
    }


def unavailable_reason(instance: DagsterInstance, source: str, day: dt.date) -> str | None:
    """Why `source` has no file for `day`, as its raw asset's latest materialization of that day recorded."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(RAW_ASSETS[source]), asset_partitions=[day.isoformat()]), limit=1
    ).records
    if not records:
        return None
    materialization = records[0].asset_materialization
    value = materialization.metadata.get(UNAVAILABLE_KEY) if materialization else None
    reasons = value.value if value is not None else {}
    return reasons.get(day.isoformat()) if isinstance(reasons, dict) else None
