"""Fetch raw data for a range of trading days and land one Parquet file per (dataset, day).

Plain functions over a PolygonClient and a data dir (a local Path or a storage.DataRoot), so they run
the same inside a Dagster asset, from the command line, or in a test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from spy_pipeline.domain import datasets
from spy_pipeline.domain.schemas import MINUTE_BARS, OPTIONS_CONTRACTS
from spy_pipeline.domain.selection import SelectionConfig
from spy_pipeline.io import storage
from spy_pipeline.io.bars import DayBars, minute_bars_by_day
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.errors import EmptyDataError

# One aggregates page holds 50,000 bars: about 50 days of extended-hours minutes.
DAYS_PER_REQUEST = 40
VIX_TICKER = "I:VIX"


@dataclass(frozen=True)
class PartitionWritten:
    dataset: str  # its folder under the data dir: raw/spy
    day: dt.date
    path: str  # inside the data dir's filesystem (DataRoot.uri shows it)
    rows: int
    bytes: int
    first_bar: dt.datetime | None
    last_bar: dt.datetime | None
    duplicates_dropped: int = 0
    source: str = "rest"  # or "flat_files"
    flat_file: dict[str, object] | None = None  # the object's key, ETag, size and bad-row counts (io/flatfiles.py)


def dataset_folder(root: DataRoot, path: str) -> str:
    """The dataset folder of a written file, relative to the data dir: raw/spy."""
    return root.relative(path).rsplit("/", 1)[0]


def chunks(days: Sequence[dt.date], size: int) -> Iterator[Sequence[dt.date]]:
    for start in range(0, len(days), size):
        yield days[start : start + size]


def bars_dataset(ticker: str) -> str:
    """The folder under raw/ for a ticker's minute bars: raw/spy, raw/vix."""
    return "vix" if ticker == VIX_TICKER else ticker.lower()


def bars_file(root: DataRoot, ticker: str, day: dt.date) -> str:
    """`day`'s minute bars of `ticker`: the spy or vix dataset, else equity_bars (raw/{ticker}/{date}.parquet)."""
    folder = bars_dataset(ticker)
    if folder in ("spy", "vix"):
        return root.file_of(datasets.get(folder), day)
    return root.file_of(datasets.get("equity_bars"), day, ticker=folder)


def ingest_minute_bars(
    client: PolygonClient, data_dir: Path | DataRoot, ticker: str, days: Sequence[dt.date]
) -> list[PartitionWritten]:
    """Minute bars of one ticker for each day into raw/{dataset}/{day}.parquet.

    One paginated request serves up to DAYS_PER_REQUEST days. A trading day without a single bar
    is a failed fetch, not a quiet market: EmptyDataError before anything of its chunk is written.
    """
    root = storage.as_data_root(data_dir)
    written = []
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
            path = bars_file(root, ticker, day_bars.day)
            timestamps = day_bars.frame["timestamp"]
            written.append(PartitionWritten(
                dataset=dataset_folder(root, path), day=day_bars.day, path=path,
                rows=day_bars.frame.height, bytes=root.write_parquet(day_bars.frame, path),
                first_bar=timestamps.min(), last_bar=timestamps.max(),
                duplicates_dropped=day_bars.duplicates_dropped,
            ))
    return written


def session_open_price(data_dir: Path | DataRoot, day: dt.date, ticker: str = "SPY") -> float:
    """The day's opening price: the first regular-session bar of raw/{ticker}/{day}.parquet."""
    root = storage.as_data_root(data_dir)
    path = bars_file(root, ticker, day)
    frame = root.read_partition(path, MINUTE_BARS)
    regular = frame.filter(pl.col("session") == "regular").sort("timestamp")
    if regular.height == 0:
        raise EmptyDataError(f"{root.uri(path)} has no regular-session bar: cannot know the {day} open")
    return float(regular["open"][0])


def discover_contracts(
    client: PolygonClient, data_dir: Path | DataRoot, selection: SelectionConfig, days: Sequence[dt.date]
) -> list[PartitionWritten]:
    """Each day's contracts into raw/options/contracts/{day}.parquet (band mode asks Polygon's listing)."""
    root = storage.as_data_root(data_dir)
    written = []
    for day in days:
        frame = select_contracts(client, selection, day, session_open_price(root, day, selection.underlying))
        path = root.file_of(datasets.get("contracts"), day)
        written.append(PartitionWritten(
            dataset=dataset_folder(root, path), day=day, path=path, rows=frame.height,
            bytes=root.write_parquet(frame, path), first_bar=None, last_bar=None,
        ))
    return written


def select_contracts(
    client: PolygonClient, selection: SelectionConfig, day: dt.date, reference_price: float
) -> pl.DataFrame:
    """The OPTIONS_CONTRACTS followed on `day` around `reference_price` (band mode asks Polygon's listing)."""
    listing = None
    if selection.mode == "band":
        bounds = selection.query_bounds(reference_price, day)
        listing = client.options_contracts(
            selection.underlying, day,
            strike_gte=bounds.strike_price_gte, strike_lte=bounds.strike_price_lte,
            expiration_gte=bounds.expiration_date_gte, expiration_lte=bounds.expiration_date_lte,
        )
        if listing.height == 0:
            raise EmptyDataError(
                f"Polygon listed no {selection.underlying} contracts as of {day} near {reference_price:.2f}: "
                "refusing to write an empty contract list"
            )
    return contracts_dataset(selection.select(reference_price, day, listing))


def contracts_dataset(selected: pl.DataFrame) -> pl.DataFrame:
    """A selection (Polygon's listing columns, or targeted contracts) as the OPTIONS_CONTRACTS dataset."""
    expiration = pl.col("expiration_date")
    frame = selected.with_columns(
        expiration=expiration.str.to_date() if selected.schema["expiration_date"] == pl.String else expiration,
        strike=pl.col("strike_price"),
        underlying=pl.col("underlying_ticker"),
        exercise_style=pl.col("exercise_style") if "exercise_style" in selected.columns else pl.lit("american"),
        shares_per_contract=(
            pl.col("shares_per_contract").cast(pl.Int64) if "shares_per_contract" in selected.columns else pl.lit(100)
        ),
    )
    return OPTIONS_CONTRACTS.conform(frame).sort("expiration", "contract_type", "strike")


def ingest_options_bars(
    client: PolygonClient, data_dir: Path | DataRoot, days: Sequence[dt.date], max_workers: int = 8
) -> list[PartitionWritten]:
    """Minute bars of every discovered contract into raw/options/{day}.parquet (a `ticker` column).

    A contract selected on several days of the range is fetched once for all of them, and
    contracts are fetched concurrently (the rate limit is shared). A contract without trades has
    no bars, which is normal; a day where no contract has a single bar is a failed fetch.
    """
    root = storage.as_data_root(data_dir)
    contract_days: dict[str, list[dt.date]] = {}
    for day in days:
        path = root.file_of(datasets.get("contracts"), day)
        for ticker in root.read_partition(path, OPTIONS_CONTRACTS)["ticker"]:
            contract_days.setdefault(ticker, []).append(day)

    def fetch(ticker: str) -> list[DayBars]:
        ticker_days = contract_days[ticker]
        return minute_bars_by_day(ticker, client.minute_bars(ticker, ticker_days[0], ticker_days[-1]), ticker_days)

    per_day: dict[dt.date, list[pl.DataFrame]] = {day: [] for day in days}
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="options-bars") as pool:
        for results in pool.map(fetch, sorted(contract_days)):
            for day_bars in results:
                per_day[day_bars.day].append(day_bars.frame)
    written = []
    for day in days:
        frames = [f for f in per_day[day] if f.height]
        if not frames:
            raise EmptyDataError(
                f"Polygon returned no minute bars for any of the {len(per_day[day])} contracts of {day}: "
                "refusing to write an empty partition"
            )
        frame = pl.concat(frames).sort("ticker", "timestamp")
        path = root.file_of(datasets.get("options"), day)
        written.append(PartitionWritten(
            dataset=dataset_folder(root, path), day=day, path=path, rows=frame.height,
            bytes=root.write_parquet(frame, path),
            first_bar=frame["timestamp"].min(), last_bar=frame["timestamp"].max(),
        ))
    return written
