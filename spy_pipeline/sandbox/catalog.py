"""Which synthetic series answers for a ticker: equities and I:VIX (market), options (O:...)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from spy_pipeline.sandbox import market


def minute_bars(ticker: str, day: dt.date) -> pl.DataFrame:
    """Polygon-shaped minute bars (t, o, h, l, c[, v, vw, n]) of any ticker the sandbox knows."""
    return market.minute_bars(ticker, day)
