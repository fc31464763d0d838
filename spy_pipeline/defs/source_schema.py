"""The source-schema check of every asset that reads Polygon: what Polygon sent against its baseline.

An asset declares `source_schema_spec(...)` in its check_specs and returns `source_schema_outcome(...)`'s
metadata and check result: the observed schema per endpoint in metadata (`source_schema`), and a blocking
check that fails with ERROR (nothing downstream runs) when a field the pipeline reads is missing, renamed or
of another JSON type, and with WARN when Polygon sends fields the baseline does not know.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, Failure, MetadataValue

from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.source_schema import Capture


def source_schema_check_name(prefix: str) -> str:
    return f"{prefix}_source_schema"


def source_schema_spec(asset: str, prefix: str, endpoints: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        name=source_schema_check_name(prefix), asset=asset, blocking=True,
        description=f"The JSON fields Polygon sent ({endpoints}) match the baseline: a field the pipeline reads "
                    "missing, renamed or of another type fails (downstream stops); a new field warns.",
    )


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


def source_schema_outcome(prefix: str, asset: str, capture: Capture) -> tuple[dict[str, Any], AssetCheckResult]:
    """(metadata, check result) of one materialization's capture."""
    drifts = capture.drifts()
    blocking = [line for d in drifts for line in d.blocking]
    warnings = [line for d in drifts for line in d.warnings]
    lines = blocking + warnings
    metadata: dict[str, Any] = {
        "source_schema": MetadataValue.json(capture.to_json()),
        "source_schema_drift": "\n".join(lines) or "none",
    }
    result = AssetCheckResult(
        asset_key=asset,
        check_name=source_schema_check_name(prefix),
        passed=not lines,
        severity=AssetCheckSeverity.WARN if lines and not blocking else AssetCheckSeverity.ERROR,
        description="; ".join(lines[:3]) + (f" (+{len(lines) - 3} more)" if len(lines) > 3 else "") or None,
        metadata={
            "endpoints": ", ".join(sorted(capture.endpoints)) or "none (no request)",
            "items_observed": sum(o.items for o in capture.endpoints.values()),
            "blocking": MetadataValue.md("\n".join(f"- {line}" for line in blocking) or "none"),
            "new_fields": ", ".join(f for d in drifts for f in d.new_fields) or "none",
            "warnings": MetadataValue.md("\n".join(f"- {line}" for line in warnings) or "none"),
        },
    )
    return metadata, result
