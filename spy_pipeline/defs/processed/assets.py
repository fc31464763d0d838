"""consolidated: one row per option contract per minute, with indicators, news, greeks and IV."""

import time

from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from spy_pipeline.defs.automation.conditions import DAILY_CONDITION
from spy_pipeline.defs.metadata import markdown_table, table_schema, timing, written_table_schema
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.raw.assets import partition_days, raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.optional_source import MISSING_SOURCES_KEY, unavailable_reason
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.raw.reference_assets import corporate_actions, raw_news
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain.black_scholes import REASONS
from spy_pipeline.domain.consolidate import consolidate_day
from spy_pipeline.domain.rates import MAX_RISK_FREE_RATE, MIN_RISK_FREE_RATE
from spy_pipeline.domain.schemas import CONSOLIDATED
from spy_pipeline.io import lake
from spy_pipeline.settings import load_settings

PROCESSED_ASSET_ARGS = {
    "partitions_def": trading_day_partitions,
    "backfill_policy": BackfillPolicy.single_run(),
    "group_name": "processed",
    "kinds": {"polars", "parquet"},
    "automation_condition": DAILY_CONDITION,
}
# The same day and the trading day before it (indicator warm-up, 24 h of news).
WITH_PREVIOUS_DAY = TimeWindowPartitionMapping(
    start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True
)


class ConsolidationConfig(Config):
    risk_free_rate: float | None = Field(
        default=None, ge=MIN_RISK_FREE_RATE, le=MAX_RISK_FREE_RATE,
        description="Continuously compounded risk-free rate per year (default: SPY_PIPELINE_RISK_FREE_RATE)",
    )


@asset(
    **PROCESSED_ASSET_ARGS,
    deps=[
        AssetDep(raw_spy_bars, partition_mapping=WITH_PREVIOUS_DAY),
        raw_vix_bars,
        options_contracts,
        raw_options_bars,
        AssetDep(raw_news, partition_mapping=WITH_PREVIOUS_DAY),
        corporate_actions,
    ],
    metadata={"dagster/column_schema": table_schema(CONSOLIDATED), "path": "processed/consolidated/{date}.parquet"},
)
def consolidated(
    context: AssetExecutionContext, config: ConsolidationConfig, store: ParquetStoreResource
) -> MaterializeResult:
    """Option minute bars joined to the SPY minute they traded in: SPY price and indicators (warmed up on
    the previous trading day), VIX and news sentiment known at that minute (never later), the contract's
    terms and time to expiry, and Black-Scholes-Merton IV and greeks of the option's close."""
    started = time.monotonic()
    days = partition_days(context)
    rows, files, missing_warmup, reasons = 0, [], [], {}
    settings = load_settings()
    rate = config.risk_free_rate if config.risk_free_rate is not None else settings.risk_free_rate
    missing_sources: list[list] = []
    for day in days:
        inputs = lake.consolidation_inputs(store.data_root, day, rate, settings.optional_sources)
        if inputs.spy_previous is None:
            missing_warmup.append(str(day))
            context.log.warning(f"{day}: no SPY bars for the previous trading day; indicators start cold")
        frame = consolidate_day(inputs)
        rows += frame.height
        for source in sorted(inputs.unavailable):
            reason = unavailable_reason(context.instance, source, day) or f"no raw {source} file for {day}"
            missing_sources.append([str(day), source, frame.height, reason])
            context.log.warning(f"{day}: optional source {source} unavailable, its columns are null: {reason}")
        for code, count in frame["iv_reason"].value_counts().iter_rows():
            reasons[code] = reasons.get(code, 0) + count
        files.append({
            **store.write_day(frame, day, "consolidated"),
            "contracts": frame["ticker"].n_unique(),
            "dividend_yield": round(inputs.dividend_yield, 5),
        })
    metadata = {
        "partitions": len(days),
        "rows": rows,
        "written_files": MetadataValue.json(files),
        "iv_nan_share": round(1 - reasons.get(0, 0) / rows, 4) if rows else 0.0,
        "iv_reasons": markdown_table(
            ["code", "meaning", "rows"],
            [[code, REASONS.get(code, "?"), count] for code, count in sorted(reasons.items())],
        ),
        "indicator_warmup_missing": ", ".join(missing_warmup) or "none",
        "optional_sources_missing": markdown_table(
            ["day", "source", "rows with null columns", "why"], missing_sources or [["-", "none", 0, "-"]]),
        MISSING_SOURCES_KEY: MetadataValue.json(missing_sources),
        **timing(started, rows),
    }
    if files:
        metadata["dagster/column_schema"] = written_table_schema(
            store.data_root, store.partition_path(days[-1], *lake.FOLDERS["consolidated"]), CONSOLIDATED)
    if len(days) == 1:
        metadata["dagster/row_count"] = rows
    return MaterializeResult(metadata=metadata)
