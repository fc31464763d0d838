"""Flat-file day objects → the raw minute-bar datasets, streaming with bounded memory.

The gzipped CSV is decompressed and parsed by pyarrow while it downloads, in blocks; each block is filtered
at once to the rows the partition needs (exact tickers such as SPY and I:VIX, or the option contracts whose
OCC root is exactly SPY: never a prefix match, SPYG is another underlying), so only those rows are ever held.
Rows that cannot be right are dropped and counted: timestamps outside the day's extended session or not on a
minute, non-positive or missing prices, option tickers that start like the underlying's but do not parse.

Flat files carry no vwap: the landed `vwap` column is null. `window_start` (Unix ns) becomes the UTC timestamp
exactly (minute starts are whole microseconds).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from spy_pipeline.domain import occ
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import MINUTE_BARS
from spy_pipeline.polygon.errors import PolygonPayloadError, PolygonUnavailableError
from spy_pipeline.polygon.flatfiles import (
    INDICES_DATASET,
    OPTIONS_DATASET,
    STOCKS_DATASET,
    FlatFilesClient,
    ObjectInfo,
    object_key,
)

BLOCK_BYTES = 8 << 20  # decompressed CSV per block: about 150,000 rows
NS_PER_MINUTE = 60_000_000_000
BAD_ROW_KINDS = ("outside_day", "non_positive_price", "unparseable_ticker")
_PRICE_COLUMNS = ("open", "high", "low", "close")
_TYPES = {
    "ticker": pa.string(), "volume": pa.float64(), "open": pa.float64(), "close": pa.float64(),
    "high": pa.float64(), "low": pa.float64(), "window_start": pa.int64(), "transactions": pa.int64(),
}
_INDEX_COLUMNS = ("ticker", "open", "close", "high", "low", "window_start")


class FlatFileFormatError(PolygonPayloadError):
    """A day object that is not a complete gzipped CSV of the documented columns: nothing is written."""


def dataset_for(ticker: str) -> str:
    """Which day file holds a ticker's minute bars."""
    if ticker.startswith("O:"):
        return OPTIONS_DATASET
    return INDICES_DATASET if ticker.startswith("I:") else STOCKS_DATASET


@dataclass(frozen=True)
class DayFile:
    """The rows of one day object that a partition needs, as MINUTE_BARS (several tickers, sorted)."""

    day: dt.date
    info: ObjectInfo
    rows_read: int
    bars: pl.DataFrame
    bad_rows: dict[str, int] = field(default_factory=dict)
    duplicates_dropped: int = 0
    new_columns: tuple[str, ...] = ()  # header columns the documented layout does not have (drift: ignored)

    @property
    def bad_row_count(self) -> int:
        return sum(self.bad_rows.values())

    def metadata(self) -> dict[str, object]:
        return {"key": self.info.key, "etag": self.info.etag, "bytes": self.info.size, "rows_read": self.rows_read,
                **{f"bad_{kind}": self.bad_rows.get(kind, 0) for kind in BAD_ROW_KINDS},
                "new_columns": list(self.new_columns)}


def read_day(client: FlatFilesClient, day: dt.date, tickers: frozenset[str] = frozenset(),
             option_underlying: str | None = None) -> DayFile:
    """GET the day's object holding `tickers` (or the `option_underlying`'s contracts) and keep only their rows."""
    dataset = OPTIONS_DATASET if option_underlying else dataset_for(next(iter(tickers)))
    documented = _INDEX_COLUMNS if dataset == INDICES_DATASET else tuple(_TYPES)
    with client.open(object_key(dataset, day)) as (info, body):
        rows_read, kept, new_columns = _filtered_rows(body, info.key, tickers, option_underlying, documented)
    return dataclasses.replace(_day_file(day, info, rows_read, kept, option_underlying), new_columns=new_columns)


def _filtered_rows(body: BinaryIO, key: str, tickers: frozenset[str], option_underlying: str | None,
                   documented: tuple[str, ...] = tuple(_TYPES)) -> tuple[int, pa.Table, tuple[str, ...]]:
    """Decompress in BLOCK_BYTES blocks of whole lines; parse only the blocks that can hold a wanted row.

    Parsing every CSV field costs several times the decompression, and a partition needs a few % of an OPRA
    day, so a block is first searched as bytes (C speed) for a line starting with a wanted ticker (`\nSPY,`)
    or the option prefix (`\nO:SPY`): only blocks with a hit are parsed and filtered exactly. Every block,
    parsed or not, must have the header's number of fields on each line (commas counted), so a file broken
    anywhere fails, not only where our rows are; a truncated gzip fails in the decompressor. A header without
    a `documented` column fails naming it; columns beyond them are ignored and returned (drift to report).
    """
    stream = pa.input_stream(body, compression="gzip")
    needles = [b"\nO:" + option_underlying.encode()] if option_underlying else [
        b"\n" + t.encode() + b"," for t in sorted(tickers)]
    try:
        header, rest = _header(stream, key)
        columns = header.decode().split(",")
        new_columns = _header_drift(key, columns, documented)
        known = [c for c in columns if c in documented]
        commas = len(columns) - 1
        options = pcsv.ConvertOptions(column_types={c: _TYPES[c] for c in known}, include_columns=known,
                                      strings_can_be_null=False)
        wanted = pa.array(sorted(tickers), pa.string())
        rows_read, tables = 0, []
        while True:
            chunk = stream.read(BLOCK_BYTES)
            block = rest + chunk
            cut = block.rfind(b"\n") + 1 if chunk else len(block)
            if chunk and cut == 0:  # no line ends in this block yet
                rest = block
                continue
            block, rest = block[:cut], block[cut:]
            if not block:
                break
            lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            if block.count(b",") != lines * commas:
                raise FlatFileFormatError(f"{key} is not a CSV of {len(columns)} columns on every line")
            rows_read += lines
            searched = b"\n" + block
            if not any(needle in searched for needle in needles):
                continue
            table = pcsv.read_csv(pa.py_buffer(header + b"\n" + block), convert_options=options)
            names = table.column("ticker")
            mask = pc.starts_with(names, f"O:{option_underlying}") if option_underlying else pc.is_in(
                names, value_set=wanted)
            tables.append(table.filter(mask))
        if not tables:
            empty = {c: pa.array([], _TYPES[c]) for c in known}
            return rows_read, pa.table(empty), new_columns
        return rows_read, pa.concat_tables(tables), new_columns
    except (PolygonUnavailableError, FlatFileFormatError):
        raise
    except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError, KeyError) as exc:
        raise FlatFileFormatError(f"{key} is not a complete gzipped CSV of minute aggregates: {exc}") from None
    finally:
        stream.close()


def _header(stream: pa.NativeFile, key: str) -> tuple[bytes, bytes]:
    """The header line and the bytes read after it."""
    start = stream.read(1 << 16)
    header, newline, rest = start.partition(b"\n")
    if not newline or not header.startswith(b"ticker,"):
        raise FlatFileFormatError(f"{key} does not start with a header of minute aggregates: {header[:120]!r}")
    return header, rest


def _header_drift(key: str, columns: list[str], documented: tuple[str, ...]) -> tuple[str, ...]:
    """The header's columns beyond `documented`; a documented column missing (dropped or renamed) fails."""
    new = tuple(c for c in columns if c not in documented)
    missing = [c for c in documented if c not in columns]
    if missing or len(set(columns)) != len(columns):
        raise FlatFileFormatError(
            f"{key}: header drift: documented column(s) {', '.join(missing) or '(none)'} missing"
            f"{', new: ' + ', '.join(new) if new else ''}{'; duplicate columns' if not missing else ''} "
            f"(header: {','.join(columns)[:200]})")
    return new


def _day_file(day: dt.date, info: ObjectInfo, rows_read: int, table: pa.Table, option_underlying: str | None,
              ) -> DayFile:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    for name, dtype in (("volume", pl.Float64), ("transactions", pl.Int64)):
        if name not in frame.columns:  # an index file: no volume, no trades
            frame = frame.with_columns(pl.lit(None, dtype).alias(name))
    bad: dict[str, int] = dict.fromkeys(BAD_ROW_KINDS, 0)
    if option_underlying:
        parsed = occ.parse_tickers(frame["ticker"])
        unparseable = parsed["underlying"].is_null()
        bad["unparseable_ticker"] = int(unparseable.sum())
        frame = frame.filter(~unparseable & (parsed["underlying"] == option_underlying))
    bounds = cal.session_bounds(day)
    start, open_, close, end = (int(t.timestamp()) * 1_000_000_000 for t in
                                (bounds.pre_market_open, bounds.open, bounds.close, bounds.after_hours_close))
    ns = pl.col("window_start")
    inside = ns.is_between(start, end, closed="left") & (ns % NS_PER_MINUTE == 0)
    bad["outside_day"] = int(frame.select((~inside).sum()).item())
    frame = frame.filter(inside)
    priced = pl.all_horizontal(pl.col(c).is_not_null() & (pl.col(c) > 0) for c in _PRICE_COLUMNS)
    bad["non_positive_price"] = int(frame.select((~priced).sum()).item())
    frame = frame.filter(priced)
    bars = frame.select(
        "ticker",
        timestamp=(ns // 1000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        session=pl.when(ns < open_).then(pl.lit("pre")).when(ns < close).then(pl.lit("regular"))
        .otherwise(pl.lit("post")),
        open="open", high="high", low="low", close="close", volume="volume",
        vwap=pl.lit(None, pl.Float64), transactions="transactions",
    )
    unique = bars.unique(["ticker", "timestamp"], keep="first", maintain_order=True).sort("ticker", "timestamp")
    return DayFile(day, info, rows_read, MINUTE_BARS.conform(unique), bad, bars.height - unique.height)
