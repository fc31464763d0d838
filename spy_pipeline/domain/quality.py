"""Data-quality rules for the datasets, as plain functions returning figures (no Dagster).

Asset checks show these figures, so a user sees why a check failed, not just that it did.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from spy_pipeline.domain import trading_calendar as cal

PRICE_COLUMNS = ("open", "high", "low", "close")


def minute_bar_violations(frame: pl.DataFrame, day: dt.date) -> dict[str, int]:
    """Rows breaking each rule (0 everywhere means valid). Null vwap (an index) is not a violation."""
    bounds = cal.session_bounds(day)
    low, high = pl.col("low"), pl.col("high")
    counts = frame.select(
        high_below_low=(high < low).sum(),
        open_outside_range=((pl.col("open") < low) | (pl.col("open") > high)).sum(),
        close_outside_range=((pl.col("close") < low) | (pl.col("close") > high)).sum(),
        vwap_outside_range=((pl.col("vwap") < low - 1e-9) | (pl.col("vwap") > high + 1e-9)).fill_null(False).sum(),
        non_positive_price=pl.any_horizontal([pl.col(c) <= 0 for c in PRICE_COLUMNS]).sum(),
        null_price=pl.any_horizontal([pl.col(c).is_null() for c in PRICE_COLUMNS]).sum(),
        outside_extended_session=(
            (pl.col("timestamp") < bounds.pre_market_open) | (pl.col("timestamp") >= bounds.after_hours_close)
        ).sum(),
    ).row(0, named=True)
    counts = {name: int(value or 0) for name, value in counts.items()}
    counts["duplicate_keys"] = frame.height - frame.select("ticker", "timestamp").unique().height
    counts["out_of_order"] = int(not frame.select(pl.struct("ticker", "timestamp")).to_series().is_sorted())
    return counts


def regular_session_coverage(frame: pl.DataFrame, day: dt.date) -> dict[str, float | int]:
    """Minutes of the regular session with a bar, per the session's length (210 on an early close)."""
    bounds = cal.session_bounds(day)
    in_session = frame.filter(pl.col("timestamp").is_between(bounds.open, bounds.close, closed="left"))
    minutes = in_session.select(pl.col("timestamp").dt.truncate("1m").n_unique()).item()
    return {
        "session_minutes": bounds.regular_minutes,
        "minutes_with_bars": int(minutes),
        "coverage": round(minutes / bounds.regular_minutes, 4),
    }


def contract_violations(frame: pl.DataFrame) -> dict[str, int]:
    """Rows whose ticker does not parse, or disagrees with the row's type, strike or expiration."""
    from spy_pipeline.domain.occ import OccTickerError, parse_ticker

    unparsable = mismatched = 0
    for row in frame.iter_rows(named=True):
        try:
            contract = parse_ticker(row["ticker"])
        except OccTickerError:
            unparsable += 1
            continue
        if (contract.contract_type, float(contract.strike), contract.expiration, contract.underlying) != (
            row["contract_type"], row["strike"], row["expiration"], row["underlying"]
        ):
            mismatched += 1
    return {
        "unparsable_ticker": unparsable,
        "ticker_disagrees_with_columns": mismatched,
        "duplicate_keys": frame.height - frame["ticker"].n_unique(),
        "non_positive_strike": int((frame["strike"] <= 0).sum()),
    }


def news_violations(frame: pl.DataFrame, window: tuple[dt.datetime, dt.datetime]) -> dict[str, int]:
    start, end = window
    return {
        "duplicate_keys": frame.height - frame["article_id"].n_unique(),
        "published_outside_window": int((~frame["published_utc"].is_between(start, end, closed="left")).sum()),
        "sentiment_out_of_range": int((~frame["sentiment"].is_in([-1, 0, 1]) & frame["sentiment"].is_not_null()).sum()),
    }


def per_ticker_coverage(frame: pl.DataFrame, day: dt.date) -> dict[str, float | int]:
    """For sparse data (options): each ticker's share of regular-session minutes with a bar."""
    bounds = cal.session_bounds(day)
    shares = (
        frame.filter(pl.col("timestamp").is_between(bounds.open, bounds.close, closed="left"))
        .group_by("ticker")
        .agg(share=pl.col("timestamp").n_unique() / bounds.regular_minutes)["share"]
    )
    return {
        "session_minutes": bounds.regular_minutes,
        "tickers": shares.len(),
        "median_coverage": round(float(shares.median() or 0.0), 4),
        "lowest_coverage": round(float(shares.min() or 0.0), 4),
    }


def consolidated_violations(frame: pl.DataFrame, day: dt.date) -> dict[str, int]:
    """Greeks that no Black-Scholes-Merton world produces, duplicate keys, minutes outside the session."""
    bounds = cal.session_bounds(day)
    call = pl.col("contract_type") == "call"
    has_iv = pl.col("iv").is_not_nan() & pl.col("iv").is_not_null()
    counts = frame.select(
        delta_outside_unit_interval=(has_iv & ((pl.col("delta") < -1) | (pl.col("delta") > 1))).sum(),
        call_delta_negative=(has_iv & call & (pl.col("delta") < 0)).sum(),
        put_delta_positive=(has_iv & ~call & (pl.col("delta") > 0)).sum(),
        gamma_negative=(has_iv & (pl.col("gamma") < 0)).sum(),
        vega_negative=(has_iv & (pl.col("vega_per_point") < 0)).sum(),
        greeks_without_iv=(~has_iv & pl.col("delta").is_not_nan()).sum(),
        outside_regular_session=(~pl.col("timestamp").is_between(bounds.open, bounds.close, closed="left")).sum(),
        non_positive_time_to_expiry=(pl.col("time_to_expiry_years") <= 0).sum(),
    ).row(0, named=True)
    counts = {name: int(value or 0) for name, value in counts.items()}
    counts["duplicate_keys"] = frame.height - frame.select("ticker", "timestamp").unique().height
    return counts


def iv_availability(frame: pl.DataFrame, _day: dt.date) -> dict[str, float | int]:
    rows = frame.height
    solved = int((frame["iv_reason"] == 0).sum())
    return {"rows": rows, "rows_with_iv": solved, "iv_share": round(solved / rows, 4) if rows else 0.0}
