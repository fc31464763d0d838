"""Fetch raw data for a range of trading days and land one Parquet file per (dataset, day).

Plain functions over a PolygonClient and a data dir, so they run the same inside a Dagster asset,
from the command line, or in a test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from spy_pipeline import storage
from spy_pipeline.bars import minute_bars_by_day
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.errors import EmptyDataError

# One aggregates page holds 50,000 bars: about 50 days of extended-hours minutes.
DAYS_PER_REQUEST = 40
VIX_TICKER = "I:VIX"


@dataclass(frozen=True)
class PartitionWritten:
    dataset: str
    day: dt.date
    path: Path
    rows: int
    bytes: int
    first_bar: dt.datetime | None
    last_bar: dt.datetime | None
    duplicates_dropped: int = 0


def chunks(days: Sequence[dt.date], size: int) -> Iterator[Sequence[dt.date]]:
    for start in range(0, len(days), size):
        yield days[start : start + size]


def bars_dataset(ticker: str) -> str:
    """The folder under raw/ for a ticker's minute bars: raw/spy, raw/vix."""
    return "vix" if ticker == VIX_TICKER else ticker.lower()


def ingest_minute_bars(
    client: PolygonClient, data_dir: Path, ticker: str, days: Sequence[dt.date]
) -> list[PartitionWritten]:
    """Minute bars of one ticker for each day into raw/{dataset}/{day}.parquet.

    One paginated request serves up to DAYS_PER_REQUEST days. A trading day without a single bar
    is a failed fetch, not a quiet market: EmptyDataError before anything of its chunk is written.
    """
    written = []
    dataset = bars_dataset(ticker)
    for chunk in chunks(sorted(days), DAYS_PER_REQUEST):
        raw = client.minute_bars(ticker, chunk[0], chunk[-1])
        per_day = minute_bars_by_day(ticker, raw, list(chunk))
        empty = [str(d.day) for d in per_day if d.frame.height == 0]
        if empty:
            raise EmptyDataError(
                f"Polygon returned no {ticker} minute bars for trading day(s) {', '.join(empty)}: "
                "refusing to write empty partitions (an empty answer is not proof of a quiet market)"
            )
        for day_bars in per_day:
            path = storage.partition_file(data_dir, day_bars.day, "raw", dataset)
            timestamps = day_bars.frame["timestamp"]
            written.append(PartitionWritten(
                dataset=f"raw/{dataset}", day=day_bars.day, path=path,
                rows=day_bars.frame.height, bytes=storage.write_parquet_atomic(day_bars.frame, path),
                first_bar=timestamps.min(), last_bar=timestamps.max(),
                duplicates_dropped=day_bars.duplicates_dropped,
            ))
    return written
