"""Asset checks of the processed layer."""

from dagster import AssetChecksDefinition, AssetCheckSeverity, build_column_schema_change_checks

from spy_pipeline.defs.checks import DailyFiles, asset_checks, coverage_check, rules_check, schema_check
from spy_pipeline.defs.processed.assets import consolidated
from spy_pipeline.defs.processed.ml_assets import training_matches_pandas_type
from spy_pipeline.defs.raw.optional_source import optional_sources_check
from spy_pipeline.domain import quality

CONSOLIDATED_FILES = DailyFiles(consolidated, "consolidated")

PROCESSED_CHECKS: list[AssetChecksDefinition] = [
    *asset_checks([
        schema_check(CONSOLIDATED_FILES),
        rules_check(
            CONSOLIDATED_FILES,
            quality.consolidated_violations,
            "Delta within [-1, 1] (calls >= 0, puts <= 0), gamma and vega >= 0, greeks only with an IV, "
            "minutes inside the regular session, time to expiry positive, (ticker, minute) unique.",
        ),
        coverage_check(
            CONSOLIDATED_FILES,
            quality.iv_availability,
            "iv_share",
            0.9,
            AssetCheckSeverity.WARN,
            "Share of rows with an implied volatility (the rest carry a reason code): a warning below 90%.",
            suffix="iv_availability",
        ),
        training_matches_pandas_type,
        optional_sources_check(consolidated),
    ]),
    *build_column_schema_change_checks(assets=[consolidated]),
]
