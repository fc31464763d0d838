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
from spy_pipeline.defs.metadata import dataset_metadata, markdown_table, timing, written_table_schema
from spy_pipeline.defs.partial_ranges import file_metadata, finish_range
from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.defs.raw.assets import partition_days, raw_spy_bars, raw_vix_bars
from spy_pipeline.defs.raw.optional_source import MISSING_SOURCES_KEY, unavailable_reason
from spy_pipeline.defs.raw.options_assets import options_contracts, raw_options_bars
from spy_pipeline.defs.raw.reference_assets import corporate_actions, raw_news
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource, settings_with_logging
from spy_pipeline.domain.black_scholes import REASONS
from spy_pipeline.domain.consolidate import consolidate_day, missing_history_rows
from spy_pipeline.domain.rates import MAX_RISK_FREE_RATE, MIN_RISK_FREE_RATE
from spy_pipeline.domain.schemas import CONSOLIDATED
from spy_pipeline.io import lake
from spy_pipeline.io.history import PolygonHistory

PROCESSED_ASSET_ARGS = {
    "partitions_def": trading_day_partitions,
    "backfill_policy": BackfillPolicy.single_run(),
    "group_name": "processed",
    "kinds": {"polars", "parquet"},
    "automation_condition": DAILY_CONDITION,
}
# The same day and the trading day before it (indicator warm-up, 24 h of news). The day before is read
# from the lake when materialized, else fetched from Polygon for the computation only (io/history.py):
# the first day of any range, however launched, starts warm without a separate warm-up run.
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
    metadata=dataset_metadata("consolidated"),
)
def consolidated(
    context: AssetExecutionContext, config: ConsolidationConfig, store: ParquetStoreResource,
    polygon: PolygonResource,
) -> MaterializeResult:
    """Option minute bars joined to the SPY minute they traded in: SPY price and indicators (warmed up on
    the previous trading day), VIX and news sentiment known at that minute (never later), the contract's
    terms and time to expiry, and Black-Scholes-Merton IV and greeks of the option's close. The previous
    trading day comes from the lake, or from Polygon when it was never materialized (not written); where
    it cannot be had the values needing it are null, counted in `rows_missing_*_history`."""
    started = time.monotonic()
    days = partition_days(context)
    settings = settings_with_logging()
    history = PolygonHistory(polygon.client, settings.equity_tickers)
    rate = config.risk_free_rate if config.risk_free_rate is not None else settings.risk_free_rate
    rows, files, sources, reasons, missing_history = 0, [], [], {}, {"indicators": 0, "news_sentiment": 0}
    by_day: dict = {}
    missing_sources: list[list] = []
    for day in days:
        inputs = lake.consolidation_inputs(store.data_root, day, rate, history, settings.optional_sources)
        frame = consolidate_day(inputs)
        missing = missing_history_rows(frame, inputs)
        if any(missing.values()):
            context.log.warning(f"{day}: rows without the history their values need (null): {missing}; "
                                f"previous trading day: {inputs.history}")
        rows += frame.height
        for source in sorted(inputs.unavailable):
            reason = unavailable_reason(context.instance, source, day) or f"no raw {source} file for {day}"
            missing_sources.append([str(day), source, frame.height, reason])
            context.log.warning(f"{day}: optional source {source} unavailable, its columns are null: {reason}")
        for code, count in frame["iv_reason"].value_counts().iter_rows():
            reasons[code] = reasons.get(code, 0) + count
        missing_history = {name: missing_history[name] + count for name, count in missing.items()}
        sources.append([str(day), inputs.history["spy"], inputs.history["news"]])
        files.append({
            **store.write_day(frame, day, "consolidated"),
            "contracts": frame["ticker"].n_unique(),
            "dividend_yield": round(inputs.dividend_yield, 5),
            "previous_day": inputs.history,
            "rows_missing_history": missing,
        })
        ok = int((frame["iv_reason"] == 0).sum())
        by_day[day] = file_metadata(
            store, "consolidated", day, files[-1], partitions=1, contracts=files[-1]["contracts"],
            iv_nan_share=round(1 - ok / frame.height, 4) if frame.height else 0.0,
            rows_missing_indicator_history=missing["indicators"],
            rows_missing_news_history=missing["news_sentiment"],
            previous_day=MetadataValue.json(inputs.history),
        )
    metadata = {
        "partitions": len(days),
        "rows": rows,
        "written_files": MetadataValue.json(files),
        "iv_nan_share": round(1 - reasons.get(0, 0) / rows, 4) if rows else 0.0,
        "iv_reasons": markdown_table(
            ["code", "meaning", "rows"],
            [[code, REASONS.get(code, "?"), count] for code, count in sorted(reasons.items())],
        ),
        "previous_day_sources": markdown_table(
            ["day", "SPY bars (indicator warm-up)", "news (24 h look-back)"], sources
        ),
        "rows_missing_indicator_history": missing_history["indicators"],
        "rows_missing_news_history": missing_history["news_sentiment"],
        "optional_sources_missing": markdown_table(
            ["day", "source", "rows with null columns", "why"], missing_sources or [["-", "none", 0, "-"]]),
        MISSING_SOURCES_KEY: MetadataValue.json(missing_sources),
        **timing(started, rows),
    }
    if files:
        metadata["dagster/column_schema"] = written_table_schema(
            store.data_root, store.partition_path(days[-1], *lake.FOLDERS["consolidated"]), CONSOLIDATED)
    return finish_range(context, days, metadata, by_day)
