"""Checks on raw partitions landed from Flat Files, read from their latest materialization's metadata.

- flat_file_bad_rows (blocking): the share of the partition's rows dropped as bad (timestamps outside the day,
  non-positive prices, unparseable tickers) stays at most MAX_BAD_ROW_SHARE; above it the file is suspect.
- flat_file_current (warning): each object the partition came from still has the ETag it had: a new ETag
  means the provider republished the day and the partition should be materialized again.
- flat_file_header (warning): the objects' CSV headers had no column beyond the documented ones (a documented
  column missing or renamed already failed the materialization, naming it: io/flatfiles.py).
"""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetsDefinition

from spy_pipeline.defs.checks import Check, CheckStep
from spy_pipeline.defs.raw.assets import raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.options_assets import raw_options_bars
from spy_pipeline.defs.source_schema import materialization_metadata

MAX_BAD_ROW_SHARE = 0.001


def _latest_metadata(step: CheckStep, asset: AssetsDefinition) -> dict:
    return materialization_metadata(step.context.instance, asset.key) or {}


def _checks(asset: AssetsDefinition) -> list[Check]:
    def bad_rows(step: CheckStep) -> AssetCheckResult:
        meta = _latest_metadata(step, asset)
        share, bad = float(meta.get("flat_file_bad_row_share", 0.0)), int(meta.get("flat_file_bad_rows", 0))
        return AssetCheckResult(passed=share <= MAX_BAD_ROW_SHARE, severity=AssetCheckSeverity.ERROR,
                                metadata={"bad_rows": bad, "bad_row_share": share, "limit": MAX_BAD_ROW_SHARE,
                                          "source": str(meta.get("source", "unknown"))})

    def current(step: CheckStep) -> AssetCheckResult:
        objects = _latest_metadata(step, asset).get("flat_files") or []
        client = step.resource("polygon").flat_files.client
        changed = []
        for landed in objects:
            info = client.head(landed["key"]) if client is not None else None
            if info is None or info.etag != landed["etag"]:
                changed.append({"key": landed["key"], "landed_etag": landed["etag"],
                                "now": info.etag if info else "missing", "what": "republished: materialize again"})
        return AssetCheckResult(passed=not changed, severity=AssetCheckSeverity.WARN,
                                metadata={"objects": len(objects), "changed": changed})

    def header(step: CheckStep) -> AssetCheckResult:
        objects = _latest_metadata(step, asset).get("flat_files") or []
        drifted = {o["key"]: o["new_columns"] for o in objects if o.get("new_columns")}
        return AssetCheckResult(
            passed=not drifted, severity=AssetCheckSeverity.WARN,
            description="; ".join(f"{key}: new column(s) {', '.join(cols)} (ignored)" for key, cols in drifted.items())
            or None,
            metadata={"objects": len(objects), "new_columns": drifted},
        )

    return [
        Check.on(asset, "flat_file_bad_rows", bad_rows, blocking=True, description=(
            f"At most {MAX_BAD_ROW_SHARE:.1%} of a flat file's rows for the partition were bad.")),
        Check.on(asset, "flat_file_current", current, resources={"polygon"}, description=(
            "The flat files the partition came from still have the ETag they were read with.")),
        Check.on(asset, "flat_file_header", header, description=(
            "The flat files' CSV headers have no columns beyond the documented ones.")),
    ]


FLAT_FILE_CHECKS: list[Check] = [
    check for asset in (raw_spy_bars, raw_vix_bars, raw_options_bars) for check in _checks(asset)
]
