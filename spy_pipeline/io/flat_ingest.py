"""Land the raw datasets from Flat Files or REST, chosen per partition (SPY_PIPELINE_SOURCE).

- rest: the REST ingest (io/ingest.py), unchanged.
- flat_files: the day's object, or a one-line failure ("not published yet" when it does not exist).
- auto: the day's object when flat files are configured and it exists; REST for the other days.

Every day of a run is read before anything is written: a broken object fails the run with the data dir as
it was. Day files are read DAY_FILES_IN_FLIGHT at a time, so that one downloads while another is parsed. The
SPY options rows of a day are kept in a spool file named by the object's ETag, so options_contracts (chain) and
raw_options_bars together cost one GET per day; raw_options_bars only asks for the ETag (a HEAD).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import io
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import polars as pl
import pyarrow.parquet as pq

from spy_pipeline.domain import datasets
from spy_pipeline.domain.chain import ChainFilters, chain_from_bars, chain_from_listing
from spy_pipeline.domain.schemas import MINUTE_BARS, OPTIONS_CONTRACTS
from spy_pipeline.io import ingest, storage
from spy_pipeline.io.flatfiles import DayFile, read_day
from spy_pipeline.io.ingest import PartitionWritten
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.errors import EmptyDataError
from spy_pipeline.polygon.flatfiles import (
    OPTIONS_DATASET,
    FlatFileNotPublishedError,
    FlatFilesClient,
    ObjectInfo,
    object_key,
)
from spy_pipeline.settings import ConfigError

Source = Literal["auto", "rest", "flat_files"]
SOURCES: tuple[str, ...] = get_args(Source)
# Two day files at once: a download (network, or the sandbox writing it) and a parse (polars, zlib) overlap;
# more would only hold more days' rows in memory at once.
DAY_FILES_IN_FLIGHT = 2


@dataclass(frozen=True)
class FlatFiles:
    """What the flat-file path needs: a client (None when not configured), the spool folder, the choice."""

    client: FlatFilesClient | None
    spool_dir: Path
    source: Source = "auto"

    def uses_flat_files(self) -> bool:
        if self.source == "flat_files" and self.client is None:
            raise ConfigError("SPY_PIPELINE_SOURCE=flat_files needs POLYGON_S3_ACCESS_KEY_ID and "
                              "POLYGON_S3_SECRET_ACCESS_KEY (or the embedded sandbox: no POLYGON_API_KEY)")
        return self.source != "rest" and self.client is not None


def _day_files(flat: FlatFiles, read: Callable[[dt.date], DayFile], days: Sequence[dt.date]
               ) -> dict[dt.date, DayFile | None]:
    """Each day's file by `read(day)`, DAY_FILES_IN_FLIGHT at a time, in day order; None for a day that goes to
    REST: every day when flat files are not used, else a day whose object is not there (yet) under `auto`. Any
    other error of a day is raised (the first in day order) once the reads under way have ended; `map` cancels
    the days not started yet."""
    if not flat.uses_flat_files():
        return dict.fromkeys(days)

    def read_or_none(day: dt.date) -> DayFile | None:
        try:
            return read(day)
        except FlatFileNotPublishedError:
            if flat.source == "flat_files":
                raise
            return None

    if len(days) <= 1:
        return {day: read_or_none(day) for day in days}
    caller = contextvars.copy_context()  # the run's log context (run id) in the reading threads too
    with ThreadPoolExecutor(DAY_FILES_IN_FLIGHT, thread_name_prefix="day-file") as pool:
        return dict(zip(days, pool.map(lambda day: caller.copy().run(read_or_none, day), days), strict=True))


def _written(root: DataRoot, day: dt.date, frame: pl.DataFrame, path: str, day_file: DayFile) -> PartitionWritten:
    return PartitionWritten(
        dataset=ingest.dataset_folder(root, path), day=day, path=path, rows=frame.height,
        bytes=root.write_parquet(frame, path),
        first_bar=frame["timestamp"].min(), last_bar=frame["timestamp"].max(),
        duplicates_dropped=day_file.duplicates_dropped, source="flat_files", flat_file=day_file.metadata(),
    )


def ingest_minute_bars(client: PolygonClient, flat: FlatFiles, data_dir: Path | DataRoot, ticker: str,
                       days: Sequence[dt.date]) -> list[PartitionWritten]:
    """raw/{spy,vix,...}/{day}.parquet from each day's stocks or indices object, or REST (see the module doc)."""
    root = storage.as_data_root(data_dir)
    if not flat.uses_flat_files():
        return ingest.ingest_minute_bars(client, root, ticker, days)
    assert flat.client is not None
    files = _day_files(flat, lambda day: read_day(flat.client, day, frozenset({ticker})), sorted(days))
    empty = [str(day) for day, file in files.items() if file is not None and file.bars.height == 0]
    if empty:
        raise EmptyDataError(f"Polygon returned no {ticker} minute bars for trading day(s) {', '.join(empty)} "
                             "(their flat files hold none): refusing to write empty partitions")
    rest_days = [day for day, file in files.items() if file is None]
    written = ingest.ingest_minute_bars(client, root, ticker, rest_days) if rest_days else []
    for day, file in files.items():
        if file is not None:
            path = ingest.bars_file(root, ticker, day)
            written.append(_written(root, day, file.bars, path, file))
    return sorted(written, key=lambda w: w.day)


# ------------------------------------------------------------------------------------------------------- options


def _spool_path(flat: FlatFiles, info: ObjectInfo) -> Path:
    return flat.spool_dir / f"{info.key.replace('/', '_')}.{info.etag}.parquet"


def options_day(flat: FlatFiles, day: dt.date, underlying: str = "SPY") -> DayFile:
    """The day's `underlying` option bars: from the spool when its ETag is the object's, else one GET."""
    assert flat.client is not None
    info = flat.client.head(object_key(OPTIONS_DATASET, day))
    if info is None:
        raise FlatFileNotPublishedError(f"s3://{flat.client.bucket}/{object_key(OPTIONS_DATASET, day)} does not "
                                        "exist: not published yet (day files appear around 11:00 ET the next "
                                        "trading day) or not a trading day")
    spooled = _spool_path(flat, info)
    if spooled.exists():
        table = pq.read_table(spooled)
        meta = json.loads(table.schema.metadata[b"day_file"])
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        return DayFile(day, info, meta["rows_read"], MINUTE_BARS.conform(frame), meta["bad_rows"],
                       meta["duplicates_dropped"])
    file = read_day(flat.client, day, option_underlying=underlying)
    table = file.bars.to_arrow()
    meta = {"rows_read": file.rows_read, "bad_rows": file.bad_rows, "duplicates_dropped": file.duplicates_dropped}
    table = table.replace_schema_metadata({"day_file": json.dumps(meta)})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    storage.write_bytes_atomic(buffer.getvalue(), _spool_path(flat, file.info))
    return file


def discover_chain(client: PolygonClient, flat: FlatFiles, data_dir: Path | DataRoot, filters: ChainFilters,
                   days: Sequence[dt.date], max_rest_requests: int, underlying: str = "SPY",
                   ) -> list[PartitionWritten]:
    """`chain` selection into raw/options/contracts/{day}.parquet: from the day's options object (one GET), or
    with the REST source the listing as of the day, refused when fetching its bars would exceed
    `max_rest_requests` requests."""
    root = storage.as_data_root(data_dir)
    chosen: dict[dt.date, tuple[pl.DataFrame, DayFile | None]] = {}
    files = _day_files(flat, lambda day: options_day(flat, day, underlying), days)
    for day, file in files.items():
        open_price = ingest.session_open_price(root, day, underlying)
        if file is not None:
            chosen[day] = (chain_from_bars(file.bars, underlying, open_price, day, filters), file)
            continue
        listing = client.options_contracts(underlying, day, expiration_gte=day, expiration_lte=(
            day + dt.timedelta(days=filters.max_days_to_expiry) if filters.max_days_to_expiry is not None else None))
        chosen[day] = (chain_from_listing(listing, open_price, day, filters), None)
    rest_requests = sum(frame.height for frame, file in chosen.values() if file is None)
    if rest_requests > max_rest_requests:
        raise ValueError(f"the REST chain of {len(days)} day(s) needs {rest_requests} bar requests (one per "
                         f"contract), above the limit of {max_rest_requests}: use flat files, narrow the filters "
                         "or raise max_rest_requests")
    written = []
    for day, (frame, file) in chosen.items():
        if frame.height == 0:
            raise EmptyDataError(f"the {underlying} chain of {day} is empty after the filters: refusing to write")
        contracts = ingest.contracts_dataset(frame)
        path = root.file_of(datasets.get("contracts"), day)
        written.append(PartitionWritten(
            dataset=ingest.dataset_folder(root, path), day=day, path=path, rows=contracts.height,
            bytes=root.write_parquet(contracts, path), first_bar=None, last_bar=None,
            source="rest" if file is None else "flat_files",
            flat_file=None if file is None else {**file.metadata(), "rest_requests_needed": 0},
        ))
    return written


def ingest_options_bars(client: PolygonClient, flat: FlatFiles, data_dir: Path | DataRoot,
                        days: Sequence[dt.date]) -> list[PartitionWritten]:
    """raw/options/{day}.parquet for the contracts of raw/options/contracts/{day}: the rows of the day's options
    object (the spool, else one GET), or REST per contract for the days without one."""
    root = storage.as_data_root(data_dir)
    files = _day_files(flat, lambda day: options_day(flat, day), days)
    rest_days = [day for day, file in files.items() if file is None]
    frames = {}
    for day, file in files.items():
        if file is None:
            continue
        tickers = root.read_partition(root.file_of(datasets.get("contracts"), day), OPTIONS_CONTRACTS)
        frame = file.bars.filter(pl.col("ticker").is_in(tickers["ticker"].implode()))
        if frame.height == 0:
            raise EmptyDataError(f"the options flat file of {day} has no bar for any of the {tickers.height} "
                                 "contracts: refusing to write an empty partition")
        frames[day] = (frame, file)
    written = ingest.ingest_options_bars(client, root, rest_days) if rest_days else []
    for day, (frame, file) in frames.items():
        path = root.file_of(datasets.get("options"), day)
        written.append(_written(root, day, frame, path, file))
    return sorted(written, key=lambda w: w.day)

