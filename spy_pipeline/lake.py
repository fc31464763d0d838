"""Reading the datasets back from the data dir, by trading day (the layout storage.py writes).

The data dir is a local Path or a `storage.DataRoot` (any filesystem); a Path is read as a local DataRoot.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from spy_pipeline import storage
from spy_pipeline import trading_calendar as cal
from spy_pipeline.consolidate import DayInputs
from spy_pipeline.corporate_actions import trailing_dividend_yield
from spy_pipeline.schemas import DIVIDENDS, MINUTE_BARS, NEWS, OPTIONS_CONTRACTS, DatasetSchema
from spy_pipeline.storage import DataRoot

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


def consolidation_inputs(data_dir: Path | DataRoot, day: dt.date, risk_free_rate: float) -> DayInputs:
    """Everything consolidate_day needs for `day`, read from the raw layer."""
    data_dir = storage.as_data_root(data_dir)
    spy = read_day(data_dir, "spy", day, MINUTE_BARS)
    previous = previous_day(day)
    regular = spy.filter(pl.col("session") == "regular")
    open_price = float(regular["open"][0]) if regular.height else float(spy["open"][0])
    news = [read_day(data_dir, "news", day, NEWS)]
    if previous is not None and (earlier := read_day_if_present(data_dir, "news", previous, NEWS)) is not None:
        news.insert(0, earlier)
    return DayInputs(
        day=day,
        spy=spy,
        spy_previous=read_day_if_present(data_dir, "spy", previous, MINUTE_BARS) if previous else None,
        vix=read_day(data_dir, "vix", day, MINUTE_BARS),
        option_bars=read_day(data_dir, "options", day, MINUTE_BARS),
        contracts=read_day(data_dir, "contracts", day, OPTIONS_CONTRACTS),
        news=pl.concat(news),
        risk_free_rate=risk_free_rate,
        dividend_yield=dividend_yield(data_dir, "SPY", day, open_price),
    )
