"""After the close: a day's micro-batches of one source as one frame, and its differences with the REST day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from spy_pipeline.domain.schemas import MINUTE_BARS
from spy_pipeline.io.bars import minute_bars_by_day
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.streaming.batches import batch_files

KEY = ["ticker", "timestamp"]
# AM events carry no trade count: `transactions` is not compared.
COMPARED = ("session", "open", "high", "low", "close", "volume", "vwap")


def compact_day(root: DataRoot, source: str, day: dt.date) -> pl.DataFrame:
    """Every landed batch of (source, day) as one MINUTE_BARS frame, unique by (ticker, timestamp) keeping the
    row of the latest batch (highest seq), sorted by ticker then timestamp."""
    frames = [
        root.read_partition(path, MINUTE_BARS).with_columns(_batch=pl.lit(i, pl.Int64))
        for i, path in enumerate(batch_files(root, source, day))
    ]
    if not frames:
        return MINUTE_BARS.conform(pl.DataFrame(schema=MINUTE_BARS.polars_schema))
    stacked = pl.concat(frames)
    latest = stacked.sort([*KEY, "_batch"]).unique(KEY, keep="last", maintain_order=True)
    return MINUTE_BARS.conform(latest).sort(KEY)


def rest_day(client: PolygonClient, tickers: Iterable[str], day: dt.date) -> pl.DataFrame:
    """The REST minute bars of `tickers` on `day` (extended hours), as one MINUTE_BARS frame."""
    frames = [minute_bars_by_day(t, client.minute_bars(t, day, day), [day])[0].frame for t in sorted(set(tickers))]
    if not frames:
        return MINUTE_BARS.conform(pl.DataFrame(schema=MINUTE_BARS.polars_schema))
    return pl.concat(frames).sort(KEY)


@dataclass(frozen=True)
class DayDiff:
    """Rows only in REST (`missing` from the stream), only in the stream (`extra`), and keys in both whose
    values differ (`mismatched`: the stream's and REST's columns side by side, REST's suffixed `_rest`)."""

    missing: pl.DataFrame
    extra: pl.DataFrame
    mismatched: pl.DataFrame
    compared_rows: int

    @property
    def equal(self) -> bool:
        return self.missing.height == 0 and self.extra.height == 0 and self.mismatched.height == 0

    def summary(self) -> dict[str, int]:
        return {"compared": self.compared_rows, "missing": self.missing.height, "extra": self.extra.height,
                "mismatched": self.mismatched.height}


def _window(frame: pl.DataFrame, start: dt.datetime | None, end: dt.datetime | None) -> pl.DataFrame:
    if start is not None:
        frame = frame.filter(pl.col("timestamp") >= start.astimezone(dt.UTC))
    if end is not None:
        frame = frame.filter(pl.col("timestamp") < end.astimezone(dt.UTC))
    return frame


def compare_with_rest(
    stream: pl.DataFrame,
    rest: pl.DataFrame,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    tolerance: float = 1e-9,
) -> DayDiff:
    """Differences between a compacted stream frame and the REST frame, both limited to bar starts in
    [start, end) (aware datetimes); floats equal within `tolerance`, null equals null."""
    stream, rest = _window(stream, start, end), _window(rest, start, end)
    missing = rest.join(stream.select(KEY), on=KEY, how="anti").sort(KEY)
    extra = stream.join(rest.select(KEY), on=KEY, how="anti").sort(KEY)
    both = stream.join(rest, on=KEY, how="inner", suffix="_rest")
    differs = pl.lit(False)
    for name in COMPARED:
        a, b = pl.col(name), pl.col(f"{name}_rest")
        if stream.schema[name] == pl.Float64:
            same = (a.is_null() & b.is_null()) | ((a - b).abs() <= tolerance).fill_null(False)
        else:
            same = a.eq_missing(b)
        differs = differs | ~same
    mismatched = both.filter(differs).sort(KEY)
    return DayDiff(missing, extra, mismatched, both.height)


def reconcile_day(
    root: DataRoot,
    client: PolygonClient,
    source: str,
    day: dt.date,
    tickers: Iterable[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> DayDiff:
    """`compare_with_rest` of the compacted (source, day) against REST for `tickers` (default: the tickers
    that landed)."""
    stream = compact_day(root, source, day)
    wanted = list(tickers) if tickers is not None else stream["ticker"].unique().to_list()
    return compare_with_rest(stream, rest_day(client, wanted, day), start, end)
