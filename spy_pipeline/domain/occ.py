"""OCC option tickers as Polygon writes them: O:SPY250304C00601000.

"O:" + root (1-6 letters) + expiration YYMMDD + C/P + strike in thousandths of a dollar, 8 digits.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import polars as pl

# [0-9], not \d: \d also matches non-ASCII digits (Arabic-Indic, fullwidth...), which int() would accept.
_PATTERN = re.compile(r"^O:(?P<root>[A-Z]{1,6})(?P<date>[0-9]{6})(?P<kind>[CP])(?P<strike>[0-9]{8})\Z")
MAX_STRIKE = Decimal("99999.999")


class OccTickerError(ValueError):
    """A string that is not an OCC option ticker, or a contract that cannot be written as one."""


@dataclass(frozen=True, order=True)
class OptionContract:
    underlying: str
    expiration: dt.date
    contract_type: str  # "call" or "put", Polygon's words
    strike: Decimal

    @property
    def ticker(self) -> str:
        return build_ticker(self.underlying, self.expiration, self.contract_type, self.strike)


def build_ticker(underlying: str, expiration: dt.date, contract_type: str, strike: Decimal | float | str) -> str:
    if not re.fullmatch(r"[A-Z]{1,6}", underlying):
        raise OccTickerError(f"underlying {underlying!r} must be 1-6 uppercase letters")
    if contract_type not in ("call", "put"):
        raise OccTickerError(f"contract type must be 'call' or 'put', got {contract_type!r}")
    try:
        value = Decimal(str(strike))
    except InvalidOperation:
        raise OccTickerError(f"strike {strike!r} is not a number") from None
    if not value.is_finite() or not 0 < value <= MAX_STRIKE or not _in_thousandths(value):
        raise OccTickerError(f"strike {strike} must be positive, at most {MAX_STRIKE}, in thousandths")
    if not dt.date(2000, 1, 1) <= expiration <= dt.date(2099, 12, 31):
        raise OccTickerError(f"expiration {expiration} is outside 2000-2099")
    kind = "C" if contract_type == "call" else "P"
    return f"O:{underlying}{expiration:%y%m%d}{kind}{int(value.scaleb(3)):08d}"


def _in_thousandths(value: Decimal) -> bool:
    """Exactly a whole number of thousandths: read off the digits, since Decimal arithmetic rounds to 28 digits
    (Decimal("1.0000000000000000000000000001") * 1000 == 1000)."""
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # NaN or infinity
        return False
    return exponent >= -3 or not any(digits[exponent + 3 :])


def parse_ticker(ticker: str) -> OptionContract:
    match = _PATTERN.match(ticker)
    if match is None:
        raise OccTickerError(f"{ticker!r} is not an OCC option ticker like O:SPY250304C00601000")
    yy, mm, dd = (int(match["date"][i : i + 2]) for i in (0, 2, 4))
    try:
        # 20YY, as build_ticker writes it; strptime's %y would read 69-99 as 1969-1999.
        expiration = dt.date(2000 + yy, mm, dd)
    except ValueError:
        raise OccTickerError(f"{ticker!r} has an impossible expiration date {match['date']}") from None
    strike = Decimal(int(match["strike"])) / 1000
    if strike <= 0:
        raise OccTickerError(f"{ticker!r} has a zero strike")
    return OptionContract(
        underlying=match["root"],
        expiration=expiration,
        contract_type="call" if match["kind"] == "C" else "put",
        strike=strike,
    )


OCC_PATTERN = _PATTERN.pattern.removesuffix(r"\Z") + "$"  # the same rule for polars' regex engine


def parse_tickers(tickers: pl.Series) -> pl.DataFrame:
    """Vectorized parse_ticker: ticker, underlying, contract_type, strike, expiration (all null where the ticker
    is not OCC or names an impossible date). Strikes are thousandths / 1000, exact for every OCC strike."""
    parts = tickers.alias("ticker").to_frame().with_columns(
        _parts=pl.col("ticker").str.extract_groups(OCC_PATTERN)
    ).unnest("_parts")
    date = pl.col("date")
    expiration = pl.date(
        2000 + date.str.slice(0, 2).cast(pl.Int32),
        date.str.slice(2, 2).cast(pl.Int8),
        date.str.slice(4, 2).cast(pl.Int8),
    )
    parsed = parts.with_columns(
        underlying=pl.col("root"),
        contract_type=pl.when(pl.col("kind") == "C").then(pl.lit("call")).otherwise(pl.lit("put")),
        strike=pl.col("strike").cast(pl.Int64) / 1000,
        expiration=pl.when(_valid_date(date)).then(expiration),
    ).with_columns(pl.when(pl.col("strike") > 0).then(pl.col("strike")).alias("strike"))
    valid = pl.col("expiration").is_not_null() & pl.col("strike").is_not_null()
    return parsed.select(
        "ticker",
        *(pl.when(valid).then(pl.col(c)).alias(c) for c in ("underlying", "contract_type", "strike", "expiration")),
    )


def _valid_date(date: pl.Expr) -> pl.Expr:
    """YYMMDD names a real calendar day (pl.date would fail the whole frame on 250230)."""
    text = pl.lit("20") + date
    return text.str.to_date("%Y%m%d", strict=False).is_not_null()
