"""Dividends and splits as datasets, and the dividend yield option pricing needs (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import polars as pl

from spy_pipeline.domain.schemas import DIVIDENDS, SPLITS


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def dividends_frame(records: Sequence[dict[str, Any]]) -> pl.DataFrame:
    rows = [
        {
            "ticker": r["ticker"],
            "ex_dividend_date": _date(r.get("ex_dividend_date")),
            "pay_date": _date(r.get("pay_date")),
            "record_date": _date(r.get("record_date")),
            "declaration_date": _date(r.get("declaration_date")),
            "cash_amount": r.get("cash_amount"),
            "frequency": r.get("frequency"),
            "dividend_type": r.get("dividend_type"),
        }
        for r in records
    ]
    frame = pl.DataFrame(rows, schema=DIVIDENDS.polars_schema) if rows else pl.DataFrame(schema=DIVIDENDS.polars_schema)
    return DIVIDENDS.conform(frame.unique(list(DIVIDENDS.key)).sort("ticker", "ex_dividend_date"))


def splits_frame(records: Sequence[dict[str, Any]]) -> pl.DataFrame:
    rows = [
        {"ticker": r["ticker"], "execution_date": _date(r.get("execution_date")),
         "split_from": r.get("split_from"), "split_to": r.get("split_to")}
        for r in records
    ]
    frame = pl.DataFrame(rows, schema=SPLITS.polars_schema) if rows else pl.DataFrame(schema=SPLITS.polars_schema)
    return SPLITS.conform(frame.unique(list(SPLITS.key)).sort("ticker", "execution_date"))


def trailing_dividend_yield(dividends: pl.DataFrame, ticker: str, day: dt.date, price: float) -> float:
    """Continuous-compounding proxy used by option pricing: cash paid in the 365 days before `day`
    (ex-dates in (day - 365, day]) divided by the price. 0.0 without dividends."""
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    window = dividends.filter(
        (pl.col("ticker") == ticker)
        & (pl.col("ex_dividend_date") > day - dt.timedelta(days=365))
        & (pl.col("ex_dividend_date") <= day)
    )
    return float(window["cash_amount"].sum()) / price
