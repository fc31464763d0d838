"""The source-schema check of every asset that reads Polygon: what Polygon sent against its baseline.

The asset captures what Polygon sent (`observed_source_schema`) and records it with the drift found in its
materialization's metadata (`source_schema_metadata`); `source_schema_check` reads that back: a blocking check
that fails with ERROR (nothing downstream runs) when a field the pipeline reads is missing, renamed or of
another JSON type, and with WARN when Polygon sends fields the baseline does not know. A separate check (not a
check spec of the asset) so that it can also run alone, like the platform's other checks.
"""


from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    DagsterInstance,
    Failure,
    MetadataValue,
)

from spy_pipeline.defs.checks import Check, CheckStep
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.source_schema import Capture

BLOCKING_KEY, WARNINGS_KEY = "source_schema_blocking", "source_schema_warnings"


@contextmanager
def observed_source_schema(client: PolygonClient) -> Iterator[Capture]:
    """Capture what Polygon sends inside the block. When the block fails and the capture shows blocking drift
    (a retyped field the parsing chokes on, say), the failure says so in one line, naming endpoint and field."""
    with client.schemas.capture() as seen:
        try:
            yield seen
        except Exception as exc:
            blocking = [line for drift in seen.drifts() for line in drift.blocking]
            if not blocking:
                raise
            # from None: the parsing error it caused (a KeyError, a None.replace) would only hide the reason
            raise Failure(description="source schema drift: " + "; ".join(blocking), allow_retries=False,
                          metadata={"error": f"{type(exc).__name__}: {exc}"}) from None


def source_schema_metadata(capture: Capture) -> dict[str, Any]:
    """The observed schema per endpoint and the drift from the baselines, for the materialization."""
    drifts = capture.drifts()
    blocking = [line for d in drifts for line in d.blocking]
    warnings = [line for d in drifts for line in d.warnings]
    return {
        "source_schema": MetadataValue.json(capture.to_json()),
        "source_schema_drift": "\n".join(blocking + warnings) or "none",
        BLOCKING_KEY: MetadataValue.json(blocking),
        WARNINGS_KEY: MetadataValue.json(warnings),
    }


def materialization_metadata(
    instance: DagsterInstance, asset_key: AssetKey, partition: str | None = None
) -> dict[str, Any] | None:
    """The metadata values of the latest materialization of `asset_key` (of `partition`, if given)."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    if materialization is None:
        return None
    return {key: value.value for key, value in materialization.metadata.items()}


def checked_partition(context: AssetCheckExecutionContext) -> str | None:
    """The last partition of the run (a range run records the same drift on every partition), else None."""
    run = context.op_execution_context
    if run.has_partition_key_range:
        return run.partition_key_range.end
    return run.partition_key if run.has_partition_key else None


def source_schema_check(asset: AssetsDefinition, prefix: str, endpoints: str) -> Check:
    def evaluate(step: CheckStep) -> AssetCheckResult:
        metadata = materialization_metadata(step.context.instance, asset.key, checked_partition(step.context))
        if metadata is None or BLOCKING_KEY not in metadata:
            return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN,
                                    description="no materialization recording the source schema yet")
        blocking, warnings = list(metadata[BLOCKING_KEY]), list(metadata[WARNINGS_KEY])
        lines = blocking + warnings
        return AssetCheckResult(
            passed=not lines,
            severity=AssetCheckSeverity.WARN if lines and not blocking else AssetCheckSeverity.ERROR,
            description="; ".join(lines[:3]) + (f" (+{len(lines) - 3} more)" if len(lines) > 3 else "") or None,
            metadata={
                "blocking": MetadataValue.md("\n".join(f"- {line}" for line in blocking) or "none"),
                "warnings": MetadataValue.md("\n".join(f"- {line}" for line in warnings) or "none"),
                "endpoints": ", ".join(sorted(metadata.get("source_schema") or {})) or "none (no request)",
            },
        )

    return Check.on(
        asset, f"{prefix}_source_schema", evaluate, blocking=True,
        description=f"The JSON fields Polygon sent ({endpoints}) match the baseline: a field the pipeline reads "
                    "missing, renamed or of another type fails (downstream stops); a new field warns.",
    )
