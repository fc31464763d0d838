"""Reading the datasets back from the data dir, by trading day (the layout storage.py writes).

The data dir is a local Path or a `storage.DataRoot` (any filesystem); a Path is read as a local DataRoot.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection
from pathlib import Path

import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.consolidate import DayInputs
from spy_pipeline.domain.schemas import DIVIDENDS, MINUTE_BARS, NEWS, OPTIONS_CONTRACTS, DatasetSchema
from spy_pipeline.io import storage
from spy_pipeline.io.corporate_actions import trailing_dividend_yield
from spy_pipeline.io.storage import DataRoot

FOLDERS = {
    "spy": ("raw", "spy"),
    "vix": ("raw", "vix"),
    "contracts": ("raw", "options", "contracts"),
    "options": ("raw", "options"),
    "news": ("raw", "news"),
    "consolidated": ("processed", "consolidated"),
    "training": ("processed", "training"),
    "features": ("processed", "features"),
    "movement": ("processed", "options_movement"),
    "intraday": ("intraday", "consolidated"),  # today's consolidation from the streaming session
}


def day_file(data_dir: Path | DataRoot, dataset: str, day: dt.date) -> Path | str:
    """A Path under a data dir given as a Path; the path inside its filesystem under a DataRoot."""
    if isinstance(data_dir, DataRoot):
        return data_dir.partition_path(day, *FOLDERS[dataset])
    return storage.partition_file(data_dir, day, *FOLDERS[dataset])


def read_day(data_dir: Path | DataRoot, dataset: str, day: dt.date, schema: DatasetSchema) -> pl.DataFrame:
    root = storage.as_data_root(data_dir)
    return root.read_partition(root.partition_path(day, *FOLDERS[dataset]), schema)


def read_day_if_present(
    data_dir: Path | DataRoot, dataset: str, day: dt.date, schema: DatasetSchema
) -> pl.DataFrame | None:
    root = storage.as_data_root(data_dir)
    path = root.partition_path(day, *FOLDERS[dataset])
    return root.read_partition(path, schema) if root.exists(path) else None


def previous_day(day: dt.date) -> dt.date | None:
    return None if day == cal.FIRST_TRADING_DAY else cal.previous_trading_day(day)


def dividend_yield(data_dir: Path | DataRoot, ticker: str, day: dt.date, price: float) -> float:
    root = storage.as_data_root(data_dir)
    path = f"{root.dataset_path('raw', 'corporate_actions')}/dividends.parquet"
    if not root.exists(path):
        raise storage.StorageError(
            f"{root.uri(path)} does not exist: materialize corporate_actions (job reference_data) first"
        )
    return trailing_dividend_yield(root.read_partition(path, DIVIDENDS), ticker, day, price)


def consolidation_inputs(
    data_dir: Path | DataRoot, day: dt.date, risk_free_rate: float, optional_sources: Collection[str] = ()
) -> DayInputs:
    """Everything consolidate_day needs for `day`, read from the raw layer. An optional source (vix, news)
    without a file that day is read as empty and named in `DayInputs.unavailable`."""
    root = storage.as_data_root(data_dir)
    unavailable = frozenset(
        source for source in ("vix", "news")
        if source in optional_sources and not root.exists(root.partition_path(day, *FOLDERS[source]))
    )

    def read(source: str, schema: DatasetSchema) -> pl.DataFrame:
        if source in unavailable:
            return pl.DataFrame(schema=schema.polars_schema)
        return read_day(root, source, day, schema)

    inputs = day_inputs(
        root, day, risk_free_rate,
        spy=read_day(root, "spy", day, MINUTE_BARS),
        vix=read("vix", MINUTE_BARS),
        option_bars=read_day(root, "options", day, MINUTE_BARS),
        contracts=read_day(root, "contracts", day, OPTIONS_CONTRACTS),
        news=read("news", NEWS),
    )
    return dataclasses.replace(inputs, unavailable=unavailable)


def day_inputs(
    root: DataRoot, day: dt.date, risk_free_rate: float, *, spy: pl.DataFrame, vix: pl.DataFrame,
    option_bars: pl.DataFrame, contracts: pl.DataFrame, news: pl.DataFrame,
) -> DayInputs:
    """DayInputs from the day's frames (raw partitions, or a streaming session's data so far), with the
    previous trading day's SPY bars and news from the raw layer when present, and the dividend yield."""
    if spy.height == 0:
        raise storage.StorageError(f"no SPY bars for {day}: nothing to consolidate")
    previous = previous_day(day)
    regular = spy.filter(pl.col("session") == "regular")
    open_price = float(regular["open"][0]) if regular.height else float(spy["open"][0])
    news_frames = [news]
    if previous is not None and (earlier := read_day_if_present(root, "news", previous, NEWS)) is not None:
        news_frames.insert(0, earlier)
    return DayInputs(
        day=day,
        spy=spy,
        spy_previous=read_day_if_present(root, "spy", previous, MINUTE_BARS) if previous else None,
        vix=vix,
        option_bars=option_bars,
        contracts=contracts,
        news=pl.concat(news_frames),
        risk_free_rate=risk_free_rate,
        dividend_yield=dividend_yield(root, "SPY", day, open_price),
    )
