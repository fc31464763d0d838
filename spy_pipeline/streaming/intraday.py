"""A streaming day as datasets: its contracts, the consolidation inputs landed so far, and the after-close
compaction of its micro-batches reconciled with REST.

Contracts are chosen before the open, so around the previous trading day's last regular-session close
(the daily path uses the open); they are kept in ``stream/contracts/{date}.parquet`` so a restarted
session follows the same ones.

Compaction: after the close each source's micro-batches become one file ``stream/{source}/{date}.parquet``
reconciled with a REST query of the same day — REST is the record (it has trade counts, which ``AM``
events lack, and the extended hours the session did not stream) — so the file equals what a REST backfill
of that day writes, and the reconciliation says how much of it the stream had delivered, and whether any
streamed value differed from REST.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from spy_pipeline.domain import datasets
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.consolidate import DayInputs
from spy_pipeline.domain.schemas import MINUTE_BARS, OPTIONS_CONTRACTS
from spy_pipeline.domain.selection import SelectionConfig
from spy_pipeline.io import lake
from spy_pipeline.io.ingest import select_contracts
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.errors import EmptyDataError
from spy_pipeline.streaming.batches import SOURCES, batch_files
from spy_pipeline.streaming.compact import compact_day, compare_with_rest, rest_day
from spy_pipeline.streaming.news_poll import landed_news

SOURCE_TICKERS = {"spy": ("SPY",), "vix": ("I:VIX",)}


def contracts_path(root: DataRoot, day: dt.date) -> str:
    return root.file_of(datasets.get("stream_contracts"), day)


def compacted_path(root: DataRoot, source: str, day: dt.date) -> str:
    return root.file_of(datasets.get("stream_compacted"), day, source=source)


def previous_close(client: PolygonClient, day: dt.date, ticker: str = "SPY") -> float:
    """The last regular-session close of `ticker` on the trading day before `day`."""
    previous = cal.previous_trading_day(day)
    close_ms = int(cal.session_bounds(previous).close.timestamp() * 1000)
    bars = client.minute_bars(ticker, previous, previous).filter(pl.col("t") < close_ms)
    if bars.height == 0:
        raise EmptyDataError(f"Polygon has no {ticker} bars on {previous}: cannot choose {day}'s contracts")
    return float(bars["c"][-1])


def session_contracts(client: PolygonClient, root: DataRoot, day: dt.date, selection: SelectionConfig) -> pl.DataFrame:
    """The contracts a session on `day` streams: chosen once (around the previous close) and kept."""
    path = contracts_path(root, day)
    if root.exists(path):
        return root.read_partition(path, OPTIONS_CONTRACTS)
    frame = select_contracts(client, selection, day, previous_close(client, day, selection.underlying))
    root.write_parquet(frame, path)
    return frame


def landed_sources(root: DataRoot, day: dt.date) -> dict[str, int]:
    """How many micro-batch files each source has landed on `day`."""
    return {source: len(batch_files(root, source, day)) for source in SOURCES}


def intraday_inputs(root: DataRoot, day: dt.date, risk_free_rate: float) -> DayInputs:
    """Consolidation inputs from what the day's session has landed so far (plus the previous day's raw)."""
    if not root.exists(contracts_path(root, day)):
        raise FileNotFoundError(f"no streaming session has started on {day}: {root.uri(contracts_path(root, day))}")
    return lake.day_inputs(
        root, day, risk_free_rate,
        spy=compact_day(root, "spy", day),
        vix=compact_day(root, "vix", day),
        option_bars=compact_day(root, "options", day),
        contracts=root.read_partition(contracts_path(root, day), OPTIONS_CONTRACTS),
        news=landed_news(root, day),
    )


@dataclass(frozen=True)
class Compacted:
    source: str
    path: str
    rows: int  # in the compacted file (= the REST day)
    streamed: int  # distinct rows the stream landed
    landed: int  # of the file's rows, those the session had landed (streamed or gap-filled) with REST's values
    missing: int  # REST rows the session never landed (after-hours past the close)
    mismatched: int  # streamed rows whose values REST revised
    extra: int  # streamed rows REST does not have (dropped from the file)


def compact_and_reconcile(
    root: DataRoot, client: PolygonClient, day: dt.date, source: str, tickers: tuple[str, ...]
) -> Compacted:
    """One file for (source, day), equal to the REST day of `tickers`; see the module docstring."""
    stream = compact_day(root, source, day)
    rest = rest_day(client, tickers, day)
    diff = compare_with_rest(stream, rest)
    path = compacted_path(root, source, day)
    root.write_parquet(MINUTE_BARS.conform(rest), path)
    return Compacted(
        source=source, path=path, rows=rest.height, streamed=stream.height,
        landed=diff.compared_rows - diff.mismatched.height, missing=diff.missing.height,
        mismatched=diff.mismatched.height, extra=diff.extra.height,
    )


def compact_session_day(
    root: DataRoot, client: PolygonClient, day: dt.date, contracts: tuple[str, ...]
) -> list[Compacted]:
    tickers = {**SOURCE_TICKERS, "options": contracts}
    return [compact_and_reconcile(root, client, day, source, tickers[source]) for source in SOURCES]
