"""`chain` selection: every contract of the underlying that traded on the day, with optional filters. Pure logic.

From a day's option bars (a flat file) the chain is the set of tickers with at least one bar, their type, strike
and expiration parsed from the OCC ticker: no reference request. From a listing (the REST source) it is the chain
as of the day. Filters: at most `max_days_to_expiry` calendar days to expiration, strikes within `band_pct`% of
the day's open (edges inclusive), and (bars only) at least `min_volume` contracts traded in the day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from spy_pipeline.domain import occ
from spy_pipeline.domain.selection import CONTRACT_COLUMNS, SelectionError

DEFAULT_MAX_REST_REQUESTS = 500


@dataclass(frozen=True)
class ChainFilters:
    max_days_to_expiry: int | None = None
    band_pct: float | None = None
    min_volume: float = 0.0

    def __post_init__(self) -> None:
        if self.max_days_to_expiry is not None and self.max_days_to_expiry < 0:
            raise SelectionError(f"max_days_to_expiry must be >= 0, got {self.max_days_to_expiry}")
        if self.band_pct is not None and not 0 < self.band_pct < 100:
            raise SelectionError(f"band_pct must be in (0, 100), got {self.band_pct}")
        if self.min_volume < 0:
            raise SelectionError(f"min_volume must be >= 0, got {self.min_volume}")


def chain_from_bars(bars: pl.DataFrame, underlying: str, open_price: float, day: dt.date,
                    filters: ChainFilters) -> pl.DataFrame:
    """The contracts (CONTRACT_COLUMNS) of `underlying` with a bar in `bars` (MINUTE_BARS) that pass `filters`."""
    volumes = bars.group_by("ticker").agg(day_volume=pl.col("volume").sum())
    parsed = occ.parse_tickers(volumes["ticker"]).with_columns(day_volume=volumes["day_volume"])
    parsed = parsed.filter(pl.col("underlying") == underlying, pl.col("day_volume") >= filters.min_volume)
    return _filtered(_listing(parsed), open_price, day, filters)


def chain_from_listing(listing: pl.DataFrame, open_price: float, day: dt.date, filters: ChainFilters,
                       ) -> pl.DataFrame:
    """The chain as listed on `day` (Polygon's contract fields) that passes the expiry and moneyness filters."""
    expiration = pl.col("expiration_date")
    if listing.schema["expiration_date"] == pl.String:
        expiration = expiration.str.to_date("%Y-%m-%d")
    return _filtered(listing.with_columns(expiration_date=expiration), open_price, day, filters)


def _listing(parsed: pl.DataFrame) -> pl.DataFrame:
    return parsed.select(
        "ticker", "contract_type", strike_price="strike", expiration_date="expiration", underlying_ticker="underlying",
    ).cast(CONTRACT_COLUMNS)


def _filtered(listing: pl.DataFrame, open_price: float, day: dt.date, filters: ChainFilters) -> pl.DataFrame:
    keep = pl.col("expiration_date") >= day
    if filters.max_days_to_expiry is not None:
        keep &= pl.col("expiration_date") <= day + dt.timedelta(days=filters.max_days_to_expiry)
    if filters.band_pct is not None:
        # thousandths of a dollar, as band mode rounds its edges: 1% of 590.00 is exactly [584.1, 595.9]
        open_milli = round(open_price * 1000)
        strike_milli = (pl.col("strike_price") * 1000).round(0).cast(pl.Int64)
        keep &= (strike_milli - open_milli).abs() * 100 <= open_milli * filters.band_pct
    return listing.filter(keep).sort("expiration_date", "contract_type", "strike_price")
