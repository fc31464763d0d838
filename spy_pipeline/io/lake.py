"""Reading the datasets back from the data dir, by trading day (the layout storage.py writes).

The data dir is a local Path or a `storage.DataRoot` (any filesystem); a Path is read as a local DataRoot.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Collection
from pathlib import Path

import polars as pl

from spy_pipeline.domain import datasets
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.consolidate import MINUTE, NEWS_TOLERANCE, DayInputs
from spy_pipeline.domain.schemas import DIVIDENDS, MINUTE_BARS, NEWS, OPTIONS_CONTRACTS, DatasetSchema
from spy_pipeline.io import storage
from spy_pipeline.io.corporate_actions import trailing_dividend_yield
from spy_pipeline.io.history import HistorySource
from spy_pipeline.io.news import news_window
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.polygon.errors import PolygonEntitlementError

# The folders of the datasets with one file per trading day and no folder to choose, by registry name.
FOLDERS: dict[str, tuple[str, ...]] = {
    dataset.name: dataset.folder() for dataset in datasets.DATASETS
    if dataset.partitioned and not dataset.files_per_day and not dataset.folder_placeholders
}


def day_file(data_dir: Path | DataRoot, dataset: str, day: dt.date) -> Path | str:
    """A Path under a data dir given as a Path; the path inside its filesystem under a DataRoot."""
    if isinstance(data_dir, DataRoot):
        return data_dir.file_of(datasets.get(dataset), day)
    return storage.partition_file(data_dir, day, *datasets.get(dataset).folder())


def read_day(
    data_dir: Path | DataRoot, dataset: str, day: dt.date, schema: DatasetSchema | None = None
) -> pl.DataFrame:
    """`day`'s file of a registered dataset, checked against its schema (the registry's unless given)."""
    declared = datasets.get(dataset)
    root = storage.as_data_root(data_dir)
    return root.read_partition(root.file_of(declared, day), schema or declared.schema)


def read_day_if_present(
    data_dir: Path | DataRoot, dataset: str, day: dt.date, schema: DatasetSchema | None = None
) -> pl.DataFrame | None:
    declared = datasets.get(dataset)
    root = storage.as_data_root(data_dir)
    path = root.file_of(declared, day)
    return root.read_partition(path, schema or declared.schema) if root.exists(path) else None


def previous_day(day: dt.date) -> dt.date | None:
    return None if day == cal.FIRST_TRADING_DAY else cal.previous_trading_day(day)


def dividend_yield(data_dir: Path | DataRoot, ticker: str, day: dt.date, price: float) -> float:
    root = storage.as_data_root(data_dir)
    path = root.file_of(datasets.get("dividends"))
    if not root.exists(path):
        raise storage.StorageError(
            f"{root.uri(path)} does not exist: materialize corporate_actions (job reference_data) first"
        )
    return trailing_dividend_yield(root.read_partition(path, DIVIDENDS), ticker, day, price)


def consolidation_inputs(
    data_dir: Path | DataRoot, day: dt.date, risk_free_rate: float, history: HistorySource | None = None,
    optional_sources: Collection[str] = (),
) -> DayInputs:
    """Everything consolidate_day needs for `day`, read from the raw layer (the previous trading day from
    `history` when the raw layer does not have it). An optional source (vix, news) without a file that day is
    read as empty and named in `DayInputs.unavailable`."""
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
        history=history,
    )
    return dataclasses.replace(inputs, unavailable=unavailable)


def day_inputs(
    root: DataRoot, day: dt.date, risk_free_rate: float, *, spy: pl.DataFrame, vix: pl.DataFrame,
    option_bars: pl.DataFrame, contracts: pl.DataFrame, news: pl.DataFrame, history: HistorySource | None = None,
) -> DayInputs:
    """DayInputs from the day's frames (raw partitions, or a streaming session's data so far), with the
    previous trading day's SPY bars and news (when the 24 h look-back reaches into it) from the raw layer
    when present, else from `history` (read, never written), and the dividend yield. What could not be had
    stays None / outside `news_since`; `DayInputs.history` says where each came from."""
    if spy.height == 0:
        raise storage.StorageError(f"no SPY bars for {day}: nothing to consolidate")
    previous = previous_day(day)
    regular = spy.filter(pl.col("session") == "regular")
    open_price = float(regular["open"][0]) if regular.height else float(spy["open"][0])
    spy_previous, spy_source = _previous_day_data(
        root, "spy", previous, MINUTE_BARS, history.spy_bars if history else None, empty_is_missing=True
    )
    news_frames, news_since = [news], news_window(day)[0]
    if news_since <= cal.session_bounds(day).open + MINUTE - NEWS_TOLERANCE:
        news_source = "not needed (the day's news covers the look-back)"
    else:
        earlier, news_source = _previous_day_data(
            root, "news", previous, NEWS, history.news if history else None, empty_is_missing=False
        )
        if earlier is not None:
            news_frames.insert(0, earlier)
            news_since = news_window(previous)[0]
    return DayInputs(
        day=day,
        spy=spy,
        spy_previous=spy_previous,
        vix=vix,
        option_bars=option_bars,
        contracts=contracts,
        news=pl.concat(news_frames),
        risk_free_rate=risk_free_rate,
        dividend_yield=dividend_yield(root, "SPY", day, open_price),
        news_since=news_since,
        history={"spy": spy_source, "news": news_source},
    )


def _previous_day_data(
    root: DataRoot, dataset: str, day: dt.date | None, schema: DatasetSchema,
    fetch: Callable[[dt.date], pl.DataFrame] | None, *, empty_is_missing: bool,
) -> tuple[pl.DataFrame | None, str]:
    """The previous trading day's partition of `dataset` and where it came from: the lake, else `fetch`
    (in memory only), else None with the reason (also when the plan does not include the source). An empty
    fetch is missing data for bars (a trading day has them), a quiet day for news."""
    if day is None:
        return None, f"none: {cal.FIRST_TRADING_DAY} is the first trading day of the calendar"
    frame = read_day_if_present(root, dataset, day, schema)
    if frame is not None:
        return frame, f"lake ({day})"
    if fetch is None:
        return None, f"none: {day} is not in the lake"
    try:
        frame = fetch(day)
    except PolygonEntitlementError as exc:  # an optional source the plan lacks: the history cannot be had
        return None, f"none: {exc}"
    if frame.height == 0 and empty_is_missing:
        return None, f"none: Polygon has no {dataset} data for {day}"
    return schema.conform(frame), f"Polygon ({day}, read for history, not written)"
