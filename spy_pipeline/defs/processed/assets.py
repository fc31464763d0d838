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

from spy_pipeline.defs.metadata import dataset_metadata, markdown_table, table_schema, timing
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.raw.assets import partition_days, raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.raw.reference_assets import corporate_actions, raw_news
from spy_pipeline.defs.resources import ParquetStoreResource
from spy_pipeline.domain.black_scholes import REASONS
from spy_pipeline.domain.consolidate import consolidate_day
from spy_pipeline.domain.schemas import CONSOLIDATED
from spy_pipeline.io import lake

PROCESSED_ASSET_ARGS = {
    "partitions_def": trading_day_partitions,
    "backfill_policy": BackfillPolicy.single_run(),
    "group_name": "processed",
    "kinds": {"polars", "parquet"},
}
# The same day and the trading day before it (indicator warm-up, 24 h of news).
WITH_PREVIOUS_DAY = TimeWindowPartitionMapping(
    start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True
)


class ConsolidationConfig(Config):
    risk_free_rate: float = Field(default=0.045, description="Continuously compounded risk-free rate, per year")


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
    metadata=dataset_metadata("consolidated"),
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
    for day in days:
        inputs = lake.consolidation_inputs(store.data_root, day, config.risk_free_rate)
        if inputs.spy_previous is None:
            missing_warmup.append(str(day))
            context.log.warning(f"{day}: no SPY bars for the previous trading day; indicators start cold")
        frame = consolidate_day(inputs)
        rows += frame.height
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
        "dagster/column_schema": table_schema(CONSOLIDATED),
        **timing(started, rows),
    }
    if len(days) == 1:
        metadata["dagster/row_count"] = rows
    return MaterializeResult(metadata=metadata)
