"""What tests and benchmarks replay from the sandbox: its key, the streamed day and that day's busiest contracts.

A plain module (no pytest, no fixtures) so that a benchmark can import it without importing the tests' conftest,
which sets test-only environment (one chart process) in the importing process.
"""

from __future__ import annotations

import datetime as dt
import functools

import polars as pl

from spy_pipeline.domain.trading_calendar import NEW_YORK
from spy_pipeline.sandbox import catalog, options

SANDBOX_KEY = "test-key-5f1c2a9e"
STREAM_DAY = dt.date(2025, 1, 8)
STREAM_START = dt.datetime(2025, 1, 8, 15, 0, tzinfo=NEW_YORK)


@functools.cache
def busiest_contracts(count: int = 40) -> tuple[str, ...]:
    """The 0DTE contracts with the most bars after the replay's start: 40 give a few dozen events."""
    start_ms = int(STREAM_START.timestamp() * 1000)
    tickers = options.listed_contracts(STREAM_DAY).filter(pl.col("expiration_date") == STREAM_DAY)["ticker"]
    bars = {t: catalog.minute_bars(t, STREAM_DAY).filter(pl.col("t") >= start_ms).height for t in tickers}
    return tuple(sorted(tickers, key=lambda t: -bars[t])[:count])
