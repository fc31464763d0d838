"""Which synthetic series answers for a ticker: equities and I:VIX (market), options (O:...)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from spy_pipeline.sandbox import market, options


def minute_bars(ticker: str, day: dt.date) -> pl.DataFrame:
    """Polygon-shaped minute bars (t, o, h, l, c[, v, vw, n]) of any ticker the sandbox knows."""
    if ticker.startswith("O:"):
        return options.option_minute_bars(ticker, day)
    return market.minute_bars(ticker, day)
