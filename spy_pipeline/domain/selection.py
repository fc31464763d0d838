"""Which SPY option contracts to fetch for a trading day, given that day's opening price. Pure logic: no I/O.

Two modes (the predecessor's discovery and targeted downloaders):

- **band**: from Polygon's listing (/v3/reference/options/contracts), the contracts whose strike lies within
  ±band_pct% of the open (edges inclusive) on the nearest `expirations` expiration dates on/after the day
  (0DTE counts as the first when it is listed and `include_0dte`), capped at `max_contracts`, closest to the money
  first. `band_query_bounds` gives the strike/expiration filters to send so the listing call fetches little.
- **targeted**: no listing needed: n calls strictly above the open and n puts at or below it on the strike grid,
  with an expiry convention, written as OCC tickers by `occ.build_ticker`.

Both modes can give the same polars frame (`CONTRACT_COLUMNS`, Polygon's field names): `select_band` filters a
listing frame, `contracts_frame` turns targeted contracts into one, `SelectionConfig.select` does either.
Prices are handled as exact decimals (a float open goes through its shortest repr: 593.88 is 593.88), so band
edges and "exactly on a strike" are decided without float error.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal, get_args

import polars as pl

from spy_pipeline.domain.occ import MAX_STRIKE, OptionContract, build_ticker
from spy_pipeline.domain.trading_calendar import (
    is_trading_day,
    parse_date,
    previous_trading_day,
    require_trading_day,
    trading_days,
)

SelectionMode = Literal["band", "targeted", "chain"]  # chain: domain/chain.py
ExpiryConvention = Literal["next_trading_day", "next_friday", "fixed"]
_CONVENTIONS: tuple[str, ...] = get_args(ExpiryConvention)

# A contract listing as a frame: Polygon's field names. select_band needs the first four; others pass through.
CONTRACT_COLUMNS: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "contract_type": pl.String(),
    "strike_price": pl.Float64(),
    "expiration_date": pl.Date(),
    "underlying_ticker": pl.String(),
}
REQUIRED_LISTING_COLUMNS = ("ticker", "contract_type", "strike_price", "expiration_date")

DEFAULT_MAX_CONTRACTS = 100
DEFAULT_LOOKAHEAD_DAYS = 14
_FRIDAY = 4


class SelectionError(ValueError):
    """Selection parameters that make no sense (n < 1, increment <= 0, unknown convention...)."""


# ---------------------------------------------------------------------------------------------------- band mode


@dataclass(frozen=True)
class ContractQueryBounds:
    """Filters for /v3/reference/options/contracts that cover a band selection (all bounds inclusive)."""

    strike_price_gte: float
    strike_price_lte: float
    expiration_date_gte: dt.date
    expiration_date_lte: dt.date

    def params(self) -> dict[str, float | str]:
        """Keyword arguments for RESTClient.list_options_contracts (it sends x_gte as x.gte)."""
        return {
            "strike_price_gte": self.strike_price_gte,
            "strike_price_lte": self.strike_price_lte,
            "expiration_date_gte": self.expiration_date_gte.isoformat(),
            "expiration_date_lte": self.expiration_date_lte.isoformat(),
        }


def band_query_bounds(
    open_price: float | Decimal,
    as_of: dt.date | str,
    band_pct: float = 1.0,
    include_0dte: bool = True,
    lookahead_days: int = DEFAULT_LOOKAHEAD_DAYS,
) -> ContractQueryBounds:
    """The strike band and an expiration window of `lookahead_days` calendar days after as_of.

    The window must hold the `expirations` wanted: SPY lists an expiration every trading day since 2022, on
    Mondays, Wednesdays and Fridays before; 14 days covers at least four Wednesdays/Fridays. A window that is too
    short is not an error here: select_band then finds fewer expirations than asked for.
    """
    as_of = parse_date(as_of)
    low, high = _band_thousandths(open_price, band_pct)
    _check_int("lookahead_days", lookahead_days, minimum=1)
    return ContractQueryBounds(
        strike_price_gte=low / 1000,
        strike_price_lte=high / 1000,
        expiration_date_gte=as_of if include_0dte else as_of + dt.timedelta(days=1),
        expiration_date_lte=as_of + dt.timedelta(days=lookahead_days),
    )


def select_band(
    contracts: pl.DataFrame,
    open_price: float | Decimal,
    as_of: dt.date | str,
    band_pct: float = 1.0,
    expirations: int = 3,
    include_0dte: bool = True,
    max_contracts: int | None = DEFAULT_MAX_CONTRACTS,
) -> pl.DataFrame:
    """The listed contracts to fetch, closest to the money first.

    `contracts` is a listing frame (REQUIRED_LISTING_COLUMNS; expiration_date as Date or YYYY-MM-DD text); the
    result keeps its columns and dtypes. Steps: keep calls and puts with strike_price within ±band_pct% of the open
    (inclusive, exact to the thousandth); pick the nearest `expirations` expiration dates among those rows, on/after
    as_of (as_of itself only when `include_0dte`); drop duplicate tickers; order by distance of the strike from the
    open, then expiration, strike, contract type, ticker; keep the first `max_contracts` (None: no cap).
    """
    as_of = parse_date(as_of)
    low, high = _band_thousandths(open_price, band_pct)
    _check_int("expirations", expirations, minimum=1)
    if max_contracts is not None:
        _check_int("max_contracts", max_contracts, minimum=1)
    if contracts.height == 0:
        return contracts.clear()
    missing = [name for name in REQUIRED_LISTING_COLUMNS if name not in contracts.columns]
    if missing:
        raise SelectionError(f"contract listing lacks columns {missing}")

    open_micro = int(_decimal("open_price", open_price).scaleb(6).to_integral_value())
    expiry = pl.col("expiration_date")
    if contracts.schema["expiration_date"] == pl.String:  # Polygon's JSON text; a malformed date is an error
        expiry = expiry.str.to_date("%Y-%m-%d", strict=True)
    strike_milli = (pl.col("strike_price").cast(pl.Float64) * 1000).round(0).cast(pl.Int64)
    not_expired = pl.col("_expiry") >= as_of if include_0dte else pl.col("_expiry") > as_of
    in_band = (
        contracts.with_columns(_expiry=expiry.cast(pl.Date), _strike_milli=strike_milli)
        .filter(pl.col("contract_type").is_in(["call", "put"]), pl.col("_strike_milli").is_between(low, high))
        .filter(not_expired)
        .unique(subset="ticker", keep="first", maintain_order=True)
    )
    nearest = in_band.get_column("_expiry").unique().sort().head(expirations)
    chosen = (
        in_band.filter(pl.col("_expiry").is_in(nearest.implode()))
        .with_columns(_distance=(pl.col("_strike_milli") * 1000 - open_micro).abs())
        .sort(["_distance", "_expiry", "_strike_milli", "contract_type", "ticker"])
    )
    if max_contracts is not None:
        chosen = chosen.head(max_contracts)
    return chosen.select(contracts.columns)


def _band_thousandths(open_price: float | Decimal, band_pct: float | Decimal) -> tuple[int, int]:
    """The band's inclusive strike bounds in thousandths of a dollar, rounded inwards."""
    open_ = _positive("open_price", open_price)
    pct = _positive("band_pct", band_pct)
    if pct >= 100:
        raise SelectionError(f"band_pct must be below 100, got {band_pct}")
    low = open_ * (100 - pct) / 100 * 1000
    high = open_ * (100 + pct) / 100 * 1000
    return math.ceil(low), math.floor(high)


# ------------------------------------------------------------------------------------------------ targeted mode


def strike_ladder(
    open_price: float | Decimal, n: int, strike_increment: float | Decimal = 1.0
) -> tuple[list[Decimal], list[Decimal]]:
    """(calls, puts): n strikes strictly above the open and n at or below it, nearest first, on the grid of
    multiples of strike_increment. An open exactly on a strike puts that strike first in the puts and starts the
    calls one increment up. 600.25 by 0.5 → calls [600.5, 601.0], puts [600.0, 599.5]."""
    open_ = _positive("open_price", open_price)
    if open_ > MAX_STRIKE:
        raise SelectionError(f"open_price must be at most {MAX_STRIKE}, the largest OCC strike, got {open_price}")
    step = _ladder_step(n, strike_increment)
    base = (open_ // step) * step  # the highest grid strike at or below the open
    lowest_put = base - (n - 1) * step
    if lowest_put <= 0:
        raise SelectionError(
            f"{n} puts by {step} at or below {open_} would reach a strike of {_plain(lowest_put)} (<= 0)"
        )
    calls = [_plain(base + i * step) for i in range(1, n + 1)]
    puts = [_plain(base - i * step) for i in range(n)]
    return calls, puts


def _ladder_step(n: int, strike_increment: float | Decimal) -> Decimal:
    _check_int("n", n, minimum=1)
    step = _positive("strike_increment", strike_increment)
    if step > MAX_STRIKE or step.scaleb(3) != step.scaleb(3).to_integral_value():
        raise SelectionError(f"strike_increment must be a whole number of thousandths, got {strike_increment}")
    return step


def resolve_expiration(
    as_of: dt.date | str, expiry: ExpiryConvention = "next_trading_day", fixed_expiration: dt.date | str | None = None
) -> dt.date:
    """The expiration an expiry convention names, for a trading day as_of.

    - next_trading_day: the first NYSE trading day after as_of (skips weekends, holidays, closures like 2025-01-09).
    - next_friday: the first Friday strictly after as_of, as the predecessor had it (a Friday as_of gives next
      week's Friday); if that Friday is not a trading day, the trading day before it (Good Friday 2025-04-18 →
      Thursday 2025-04-17), which is as_of itself when as_of is that Thursday.
    - fixed: fixed_expiration, which must not be before as_of (equal is 0DTE). It is not checked against the
      calendar: it may lie beyond it.
    """
    as_of = require_trading_day(as_of)
    _check_convention(expiry, fixed_expiration)
    if fixed_expiration is not None:
        fixed = parse_date(fixed_expiration)
        if fixed < as_of:
            raise SelectionError(f"fixed_expiration {fixed} is before as_of {as_of}")
        return fixed
    if expiry == "next_trading_day":
        following = trading_days(as_of + dt.timedelta(days=1), as_of + dt.timedelta(days=10))
        if not following:
            raise SelectionError(f"no trading day after {as_of} in the trading calendar")
        return following[0]
    friday = as_of + dt.timedelta(days=(_FRIDAY - as_of.weekday() - 1) % 7 + 1)
    return friday if is_trading_day(friday) else previous_trading_day(friday)


def _check_convention(expiry: str, fixed_expiration: dt.date | str | None) -> None:
    if expiry not in _CONVENTIONS:
        raise SelectionError(f"unknown expiry convention {expiry!r}: use one of {', '.join(_CONVENTIONS)}")
    if expiry == "fixed" and fixed_expiration is None:
        raise SelectionError("expiry='fixed' needs a fixed_expiration date")
    if expiry != "fixed" and fixed_expiration is not None:
        raise SelectionError(f"fixed_expiration {fixed_expiration} is only used with expiry='fixed', not {expiry!r}")


def select_targeted(
    underlying: str,
    open_price: float | Decimal,
    as_of: dt.date | str,
    n: int,
    strike_increment: float | Decimal = 1.0,
    expiry: ExpiryConvention = "next_trading_day",
    fixed_expiration: dt.date | str | None = None,
) -> list[OptionContract]:
    """n calls then n puts (each nearest the money first) on one expiration; `.ticker` gives the OCC ticker.

    as_of must be an NYSE trading day (the day whose open this is). See strike_ladder and resolve_expiration.
    """
    calls, puts = strike_ladder(open_price, n, strike_increment)
    expiration = resolve_expiration(as_of, expiry, fixed_expiration)
    contracts = [OptionContract(underlying, expiration, "call", strike) for strike in calls]
    contracts += [OptionContract(underlying, expiration, "put", strike) for strike in puts]
    for contract in contracts:
        build_ticker(*astuple(contract))  # OccTickerError now for an underlying or strike OCC cannot write
    return contracts


def contracts_frame(contracts: Iterable[OptionContract]) -> pl.DataFrame:
    """Contracts as a listing frame (CONTRACT_COLUMNS), the shape select_band takes and returns."""
    rows = [
        {
            "ticker": c.ticker,
            "contract_type": c.contract_type,
            "strike_price": float(c.strike),
            "expiration_date": c.expiration,
            "underlying_ticker": c.underlying,
        }
        for c in contracts
    ]
    return pl.DataFrame(rows, schema=CONTRACT_COLUMNS)


# ------------------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class SelectionConfig:
    """How to pick a day's contracts. Defaults: band mode, ±1% of the open, 0DTE when listed plus the next 2
    expirations, at most DEFAULT_MAX_CONTRACTS contracts; targeted mode: 2 calls + 2 puts on $1 strikes expiring
    the next trading day (the predecessor's targeted downloader). Invalid values raise SelectionError at once."""

    mode: SelectionMode = "band"
    underlying: str = "SPY"
    # band mode
    band_pct: float = 1.0
    expirations: int = 3
    include_0dte: bool = True
    max_contracts: int | None = DEFAULT_MAX_CONTRACTS
    lookahead_days: int = DEFAULT_LOOKAHEAD_DAYS
    # targeted mode
    n: int = 2
    strike_increment: float = 1.0
    expiry: ExpiryConvention = "next_trading_day"
    fixed_expiration: dt.date | str | None = None

    def __post_init__(self) -> None:
        if self.mode not in get_args(SelectionMode):
            raise SelectionError(f"unknown selection mode {self.mode!r}: use 'band', 'targeted' or 'chain'")
        _band_thousandths(1, self.band_pct)
        _check_int("expirations", self.expirations, minimum=1)
        if self.max_contracts is not None:
            _check_int("max_contracts", self.max_contracts, minimum=1)
        _check_int("lookahead_days", self.lookahead_days, minimum=1)
        _ladder_step(self.n, self.strike_increment)
        build_ticker(self.underlying, dt.date(2025, 1, 3), "call", 1)  # OCC's rule for the root, in one place
        _check_convention(self.expiry, self.fixed_expiration)

    def query_bounds(self, open_price: float | Decimal, as_of: dt.date | str) -> ContractQueryBounds:
        return band_query_bounds(open_price, as_of, self.band_pct, self.include_0dte, self.lookahead_days)

    def select(
        self, open_price: float | Decimal, as_of: dt.date | str, listing: pl.DataFrame | None = None
    ) -> pl.DataFrame:
        """The day's contracts as a listing frame; band mode needs Polygon's listing, targeted mode ignores it."""
        if self.mode == "targeted":
            return contracts_frame(
                select_targeted(
                    self.underlying,
                    open_price,
                    as_of,
                    self.n,
                    self.strike_increment,
                    self.expiry,
                    self.fixed_expiration,
                )
            )
        if self.mode == "chain":
            raise SelectionError("chain mode selects from a day's bars or the whole listing: see domain/chain.py")
        if listing is None:
            raise SelectionError("band mode selects from a contract listing: pass listing=")
        return select_band(
            listing, open_price, as_of, self.band_pct, self.expirations, self.include_0dte, self.max_contracts
        )


# ----------------------------------------------------------------------------------------------------- helpers


def _decimal(name: str, value: float | Decimal | int) -> Decimal:
    if isinstance(value, bool):
        raise SelectionError(f"{name} must be a number, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise SelectionError(f"{name} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise SelectionError(f"{name} must be finite, got {value}")
    return number


def _positive(name: str, value: float | Decimal | int) -> Decimal:
    number = _decimal(name, value)
    if number <= 0:
        raise SelectionError(f"{name} must be > 0, got {value}")
    return number


def _check_int(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SelectionError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise SelectionError(f"{name} must be >= {minimum}, got {value}")


def _plain(value: Decimal) -> Decimal:
    """601.0 and 601.000 → 601, 601.50 → 601.5: one spelling per strike (equal either way)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()
