"""Options: the day's contracts (discovered around the open) and their minute bars."""

import datetime as dt
import time
from collections.abc import Sequence

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field

from spy_pipeline.defs.errors import no_retry_on_permanent_errors
from spy_pipeline.defs.metadata import dataset_metadata, request_metadata, timing
from spy_pipeline.defs.partial_ranges import fetch_day_by_day, finish_range, written_by_day
from spy_pipeline.defs.raw.assets import (
    RAW_ASSET_ARGS,
    partition_days,
    raw_spy_bars,
    source_metadata,
    written_metadata,
)
from spy_pipeline.defs.resources import ParquetStoreResource, PolygonResource, settings_with_logging
from spy_pipeline.defs.source_schema import observed_source_schema, source_schema_metadata
from spy_pipeline.domain.chain import DEFAULT_MAX_REST_REQUESTS, ChainFilters
from spy_pipeline.domain.schemas import MINUTE_BARS, OPTIONS_CONTRACTS
from spy_pipeline.domain.selection import DEFAULT_MAX_CONTRACTS, SelectionConfig
from spy_pipeline.io import flat_ingest, ingest
from spy_pipeline.io.ingest import PartitionWritten


class ContractSelectionConfig(Config):
    """How options_contracts picks each day's contracts (defaults: band mode, ±1%, 0DTE + 2 expirations)."""

    mode: str | None = Field(
        default=None, description="band (from Polygon's listing), targeted (built tickers) or chain (every contract "
        "with a bar that day); default SPY_PIPELINE_CONTRACT_SELECTION",
    )
    band_pct: float = Field(default=1.0, description="band: strikes within this % of the day's open")
    expirations: int = Field(default=3, description="band: the nearest expirations, 0DTE counting when listed")
    include_0dte: bool = Field(default=True, description="band: include the contracts expiring that day")
    max_contracts: int = Field(default=DEFAULT_MAX_CONTRACTS, description="band: keep at most this many")
    n: int = Field(default=2, description="targeted: n calls above the open and n puts at or below it")
    strike_increment: float = Field(default=1.0, description="targeted: strike grid, USD")
    expiry: str = Field(default="next_trading_day", description="targeted: next_trading_day, next_friday or fixed")
    fixed_expiration: str | None = Field(default=None, description="targeted with expiry=fixed: YYYY-MM-DD")
    max_days_to_expiry: int | None = Field(default=None, description="chain: at most this many days to expiry")
    chain_band_pct: float | None = Field(default=None, description="chain: strikes within this % of the open")
    min_volume: float = Field(default=0.0, description="chain (flat files): at least this many contracts that day")
    max_rest_requests: int = Field(
        default=DEFAULT_MAX_REST_REQUESTS, description="chain with the REST source: refuse above this many requests"
    )

    def resolved_mode(self) -> str:
        return self.mode or settings_with_logging().contract_selection

    def chain_filters(self) -> ChainFilters:
        return ChainFilters(self.max_days_to_expiry, self.chain_band_pct, self.min_volume)

    def to_selection(self) -> SelectionConfig:
        return SelectionConfig(
            mode=self.resolved_mode(), band_pct=self.band_pct, expirations=self.expirations,
            include_0dte=self.include_0dte,
            max_contracts=self.max_contracts, n=self.n, strike_increment=self.strike_increment,
            expiry=self.expiry, fixed_expiration=self.fixed_expiration,
        )


@asset(
    **RAW_ASSET_ARGS, deps=[raw_spy_bars], metadata=dataset_metadata("contracts"),
)
@no_retry_on_permanent_errors
def options_contracts(
    context: AssetExecutionContext, config: ContractSelectionConfig, polygon: PolygonResource,
    store: ParquetStoreResource,
) -> MaterializeResult:
    """The SPY contracts followed each day, chosen around that day's opening price (from raw_spy_bars).

    Band mode asks Polygon for the chain as of the day (one paginated query) within the strike
    and expiration bounds; targeted mode builds OCC tickers on a strike grid without a query; chain mode
    takes every SPY contract with a bar in the day's options flat file (one GET, shared with raw_options_bars),
    or with the REST source the listing as of the day, refused when its bars would cost too many requests.
    """
    started = time.monotonic()
    days = partition_days(context)
    before, flat_before = polygon.client.stats.snapshot(), polygon.flat_stats()
    mode = config.resolved_mode()

    def discover(days: Sequence[dt.date]) -> list[PartitionWritten]:
        if mode == "chain":
            return flat_ingest.discover_chain(polygon.client, polygon.flat_files, store.data_root,
                                              config.chain_filters(), days, config.max_rest_requests)
        return ingest.discover_contracts(polygon.client, store.data_root, config.to_selection(), days)

    with observed_source_schema(polygon.client) as seen:
        written, failed = fetch_day_by_day(discover, days)
    rest_cost = sum(w.rows for w in written if w.source == "rest") if mode == "chain" else 0
    if rest_cost:
        context.log.info(f"the REST chain costs {rest_cost} bar requests in raw_options_bars")
    schema_metadata = source_schema_metadata(seen)
    by_day = written_by_day(store.data_root, written)
    for entry in by_day.values():
        entry["contracts_per_day"] = entry["rows"]
    return finish_range(context, days, {
        **written_metadata(store, written, days, OPTIONS_CONTRACTS),
        **source_metadata(written, flat_before, polygon.flat_stats()),
        "mode": mode,
        "contracts_per_day": round(sum(w.rows for w in written) / len(days), 1),
        **schema_metadata,
        **request_metadata(before, polygon.client.stats.snapshot()),
        **timing(started, sum(w.rows for w in written)),
    }, by_day, failed)


@asset(**RAW_ASSET_ARGS, deps=[options_contracts], metadata=dataset_metadata("options"))
@no_retry_on_permanent_errors
def raw_options_bars(
    context: AssetExecutionContext, polygon: PolygonResource, store: ParquetStoreResource
) -> MaterializeResult:
    """Minute bars of every contract in options_contracts, one file per day with a `ticker` column.

    Option bars are sparse (a minute without a trade has no bar). From flat files: the day's options
    object (usually already read by options_contracts: a HEAD, no GET); vwap is null there. From REST: a
    contract followed on several days of a range is fetched once, concurrently within the shared rate limit.
    """
    started = time.monotonic()
    days = partition_days(context)
    before, flat_before = polygon.client.stats.snapshot(), polygon.flat_stats()
    with observed_source_schema(polygon.client) as seen:
        written, failed = fetch_day_by_day(
            lambda days: flat_ingest.ingest_options_bars(polygon.client, polygon.flat_files, store.data_root, days),
            days)
    after = polygon.client.stats.snapshot()
    schema_metadata = source_schema_metadata(seen)
    return finish_range(context, days, {
        **written_metadata(store, written, days, MINUTE_BARS),
        **source_metadata(written, flat_before, polygon.flat_stats()),
        **schema_metadata,
        **request_metadata(before, after),
        "polygon_requests_per_partition": round((after["requests"] - before["requests"]) / len(days), 3),
        **timing(started, sum(w.rows for w in written)),
    }, written_by_day(store.data_root, written), failed)
