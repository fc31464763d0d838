"""Optional sources (SPY_PIPELINE_OPTIONAL_SOURCES=vix,news): a day without them is not a failed day.

Polygon sells stocks, options, indices and news separately. When an optional source is not entitled (HTTP 403)
or has no data for a day, its raw asset writes no file for that day and says why in `source_unavailable`
(day -> one line); consolidated then leaves the source's columns null, records why, and warns. A required
source fails as before.
"""


import datetime as dt
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    DagsterInstance,
    MetadataValue,
)

from spy_pipeline.defs.checks import Check, CheckStep
from spy_pipeline.defs.source_schema import checked_partition, materialization_metadata

UNAVAILABLE_KEY = "source_unavailable"
MISSING_SOURCES_KEY = "optional_sources_missing_rows"  # consolidated: [day, source, rows, why] per missing source
RAW_ASSETS = {"vix": "raw_vix_bars", "news": "raw_news"}


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
    metadata = materialization_metadata(instance, AssetKey(RAW_ASSETS[source]), day.isoformat()) or {}
    reasons = metadata.get(UNAVAILABLE_KEY)
    return reasons.get(day.isoformat()) if isinstance(reasons, dict) else None


def optional_sources_check(consolidated: AssetsDefinition) -> Check:
    def evaluate(step: CheckStep) -> AssetCheckResult:
        metadata = materialization_metadata(step.context.instance, consolidated.key,
                                            checked_partition(step.context)) or {}
        missing = metadata.get(MISSING_SOURCES_KEY) or []
        return AssetCheckResult(
            passed=not missing, severity=AssetCheckSeverity.WARN,
            description="; ".join(f"{day} {source}: {why}" for day, source, _, why in missing) or None,
            metadata={"days_affected": len({row[0] for row in missing}),
                      "rows_without_vix": sum(row[2] for row in missing if row[1] == "vix"),
                      "rows_without_news": sum(row[2] for row in missing if row[1] == "news")},
        )

    return Check.on(
        consolidated, "consolidated_optional_sources", evaluate,
        description="Every optional source (SPY_PIPELINE_OPTIONAL_SOURCES: vix, news) had data: a warning names "
                    "the days whose VIX or news columns are null, why, and the rows affected.",
    )
