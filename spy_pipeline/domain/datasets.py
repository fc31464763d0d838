"""Every dataset the pipeline writes, declared once: its name, where it lives under the data dir, how it is
partitioned, its schema (columns, types, descriptions and key: `spy_pipeline.domain.schemas`) and its writer.

Writers conform to the schema; readers (`spy_pipeline.scan`, `io.lake`), checks, retention, the storage report,
the asset metadata, README.md's dataset tables and data/README.md all derive from this list.

A path is a pattern of `/`-separated parts relative to the data dir, ending in `.parquet`:
- `{date}` the trading day, `YYYY-MM-DD`: a dataset with it is partitioned by trading day; as the file name
  (`raw/spy/{date}.parquet`) one file per day, as a folder (`stream/{source}/{date}/{batch}.parquet`) any
  number of files per day;
- `{batch}` any file name in a day's folder (a streaming session's micro-batches);
- any other `{name}` a folder chosen by the writer (`raw/{ticker}/`: a configured equity, lowercase), limited
  to `choices` when the dataset declares them.
A dataset without `{date}` is one file rewritten whole (dividends, splits).

`sort_by`: the order a file's rows are written in (storage sorts a frame that is not already in it). The
datasets with a row per option contract per minute declare (ticker, timestamp): a filter on one contract,
the common query, then finds it in a few row groups, which Parquet's min/max statistics let a reader pick.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import polars as pl

from spy_pipeline.domain.schemas import (
    CONSOLIDATED,
    DIVIDENDS,
    FEATURES,
    MINUTE_BARS,
    NEWS,
    OPTIONS_CONTRACTS,
    OPTIONS_MOVEMENT,
    SPLITS,
    TRAINING,
    DatasetSchema,
)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_FOLDER_VALUE = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,40}")  # what storage accepts as a folder name
_DATE = r"\d{4}-\d{2}-\d{2}"


class DatasetError(ValueError):
    """A request for a dataset that cannot be answered: unknown name, bad folder value, date or range."""


class UnknownDatasetError(DatasetError):
    """A dataset name the registry does not know, or a path pattern's folder left unnamed or badly named."""


@dataclass(frozen=True)
class Dataset:
    name: str
    path: str  # pattern under the data dir, see the module docstring
    schema: DatasetSchema
    written_by: str  # the Dagster asset (or `<name> job`) that writes it
    contents: str  # one line for data/README.md
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    sort_by: tuple[str, ...] = ()  # see the module docstring

    def __post_init__(self) -> None:
        parts = self.path.split("/")
        if not self.path.endswith(".parquet") or "" in parts:
            raise ValueError(f"{self.name}: a dataset path is a relative .parquet path, got {self.path!r}")
        if "{date}" in self.path and not (parts[-1] == "{date}.parquet" or parts[-2] == "{date}"):
            raise ValueError(f"{self.name}: {{date}} must be the file name or its folder, got {self.path!r}")
        if ("{batch}" in self.path) != (parts[-2] == "{date}" and parts[-1] == "{batch}.parquet"):
            raise ValueError(f"{self.name}: {{batch}} is the file name inside a {{date}} folder, got {self.path!r}")
        unknown = set(self.choices) - set(self.folder_placeholders)
        if unknown:
            raise ValueError(f"{self.name}: choices for {sorted(unknown)}, which the path does not have")
        unsortable = [name for name in self.sort_by if name not in self.schema.columns]
        if unsortable:
            raise ValueError(f"{self.name}: sort_by {unsortable}, which are not fixed columns of its schema")

    @property
    def partitioned(self) -> bool:
        """Partitioned by trading day (else a single file, rewritten whole)."""
        return "{date}" in self.path

    @property
    def files_per_day(self) -> bool:
        """Any number of files per day in a `{date}/` folder, rather than one `{date}.parquet`."""
        return "{batch}" in self.path

    @property
    def key(self) -> tuple[str, ...]:
        return self.schema.key

    @property
    def folder_placeholders(self) -> tuple[str, ...]:
        """The `{name}`s of the path that a reader has to give (`ticker`, `source`): not date or batch."""
        return tuple(name for name in _PLACEHOLDER.findall(self.path) if name not in ("date", "batch"))

    def folder(self, **values: str) -> tuple[str, ...]:
        """The folders holding the files (the `{date}` ones aside), with `values` filled in: ('raw', 'spy')."""
        self._check_values(values)
        parts = self.path.split("/")
        end = parts.index("{date}" if self.files_per_day else parts[-1])
        return tuple(part.format(**values) for part in parts[:end])

    def file_name(self, day: dt.date | None = None) -> str:
        """The file's name: `{day}.parquet` for one file per day, the fixed name of an unpartitioned dataset."""
        if self.files_per_day:
            raise ValueError(f"{self.name} has many files per day, named by their writer")
        if self.partitioned:
            if day is None:
                raise ValueError(f"{self.name} is partitioned by trading day: give the day")
            return f"{day.isoformat()}.parquet"
        return self.path.rsplit("/", 1)[-1]

    def relative_path(self, day: dt.date | None = None, **values: str) -> str:
        """The file under the data dir: `raw/spy/2025-01-08.parquet`, `raw/corporate_actions/dividends.parquet`."""
        return "/".join((*self.folder(**values), self.file_name(day)))

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        pattern = ""
        for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", self.path):
            pattern += re.escape(literal)
            if name == "date":
                pattern += f"(?P<date>{_DATE})"
            elif name == "batch":
                pattern += r"(?P<batch>[^/]+)"
            elif name in self.choices:
                pattern += f"(?P<{name}>{'|'.join(map(re.escape, self.choices[name]))})"
            elif name:
                pattern += f"(?P<{name}>{_FOLDER_VALUE.pattern})"
        return re.compile(pattern)

    def match(self, relative: str) -> dict[str, str] | None:
        """The placeholders' values when `relative` (a path under the data dir) is one of this dataset's files."""
        found = self._regex.fullmatch(relative)
        return found.groupdict() if found else None

    def _check_values(self, values: Mapping[str, str]) -> None:
        wanted = set(self.folder_placeholders)
        if set(values) != wanted:
            missing, extra = sorted(wanted - set(values)), sorted(set(values) - wanted)
            raise UnknownDatasetError(
                f"{self.name} ({self.path}) needs {', '.join(missing) or 'no folder values'}"
                + (f", not {', '.join(extra)}" if extra else "")
            )
        for name, value in values.items():
            allowed = self.choices.get(name)
            if (allowed and value not in allowed) or not _FOLDER_VALUE.fullmatch(value):
                expected = ", ".join(allowed) if allowed else "a lowercase folder name"
                raise UnknownDatasetError(f"{self.name}: {name}={value!r} is not {expected}")


STREAM_SOURCES = ("spy", "vix", "options")
BY_CONTRACT_AND_MINUTE = ("ticker", "timestamp")

# Ordered from the most specific path to the least: `dataset_of` returns the first that matches.
DATASETS: tuple[Dataset, ...] = (
    Dataset("spy", "raw/spy/{date}.parquet", MINUTE_BARS, "raw_spy_bars",
            "SPY one-minute bars, 04:00 to 20:00 ET, UTC timestamps"),
    Dataset("vix", "raw/vix/{date}.parquet", MINUTE_BARS, "raw_vix_bars", "I:VIX minute values (no volume)"),
    Dataset("contracts", "raw/options/contracts/{date}.parquet", OPTIONS_CONTRACTS, "options_contracts",
            "the option contracts followed that day"),
    Dataset("options", "raw/options/{date}.parquet", MINUTE_BARS, "raw_options_bars",
            "minute bars of the day's contracts",
            sort_by=BY_CONTRACT_AND_MINUTE),
    Dataset("news", "raw/news/{date}.parquet", NEWS, "raw_news",
            "news of the configured tickers published in the day's news window, with sentiment"),
    Dataset("dividends", "raw/corporate_actions/dividends.parquet", DIVIDENDS, "corporate_actions",
            "dividends of the configured tickers, all the history Polygon has"),
    Dataset("splits", "raw/corporate_actions/splits.parquet", SPLITS, "corporate_actions",
            "splits of the configured tickers, all the history Polygon has"),
    Dataset("equity_bars", "raw/{ticker}/{date}.parquet", MINUTE_BARS, "raw_spy_bars",
            "minute bars of the other configured equities (`{ticker}` lowercase: raw/qqq/)"),
    Dataset("consolidated", "processed/consolidated/{date}.parquet", CONSOLIDATED, "consolidated",
            "one row per option contract per minute: SPY, VIX, indicators, news, IV and greeks",
            sort_by=BY_CONTRACT_AND_MINUTE),
    Dataset("training", "processed/training/{date}.parquet", TRAINING, "training_dataset",
            "consolidated + forward targets target_1 … target_{horizon}",
            sort_by=BY_CONTRACT_AND_MINUTE),
    Dataset("features", "processed/features/{date}.parquet", FEATURES, "features",
            "model features, one row per consolidated row",
            sort_by=BY_CONTRACT_AND_MINUTE),
    Dataset("options_movement", "processed/options_movement/{date}.parquet", OPTIONS_MOVEMENT, "options_movement",
            "scanner events: an option's price far above its recent minimum"),
    Dataset("intraday_consolidated", "intraday/consolidated/{date}.parquet", CONSOLIDATED, "intraday_consolidated",
            "today's consolidation from the streamed data, replaced at every refresh",
            sort_by=BY_CONTRACT_AND_MINUTE),
    Dataset("stream_contracts", "stream/contracts/{date}.parquet", OPTIONS_CONTRACTS, "stream_session job",
            "the contracts the session streams"),
    Dataset("stream_news", "stream/news/{date}/{batch}.parquet", NEWS, "stream_session job",
            "news polled during the session, one file per poll that found articles"),
    Dataset("stream_bars", "stream/{source}/{date}/{batch}.parquet", MINUTE_BARS, "stream_session job",
            "micro-batches of live minute bars (`{source}`: spy, vix or options)",
            choices=MappingProxyType({"source": STREAM_SOURCES})),
    Dataset("stream_compacted", "stream/{source}/{date}.parquet", MINUTE_BARS, "stream_compaction job",
            "the day's micro-batches compacted after the after-hours, reconciled with REST",
            choices=MappingProxyType({"source": STREAM_SOURCES}),
            sort_by=BY_CONTRACT_AND_MINUTE),
)
BY_NAME: Mapping[str, Dataset] = MappingProxyType({dataset.name: dataset for dataset in DATASETS})


def get(name: str) -> Dataset:
    """The dataset called `name`; UnknownDatasetError listing the known names otherwise."""
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise UnknownDatasetError(f"unknown dataset {name!r}: expected one of {', '.join(BY_NAME)}") from None


def dataset_of(relative: str) -> Dataset | None:
    """The dataset a file under the data dir (`raw/spy/2025-01-08.parquet`) belongs to, if any."""
    return next((dataset for dataset in DATASETS if dataset.match(relative) is not None), None)


def sorted_by(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """`frame` sorted by `columns` (ascending, stable, nulls first); returned as is when it already is in that
    order, which costs one pass over those columns rather than a sort that moves every column."""
    if not columns or frame.height < 2:
        return frame
    has_nulls = any(frame[name].null_count() for name in columns)  # where nulls go is the sort's to say
    if not has_nulls and _in_order(frame, columns):
        return frame
    return frame.sort(columns, maintain_order=True)


def _in_order(frame: pl.DataFrame, columns: Sequence[str]) -> bool:
    """Whether `frame` (no nulls in `columns`) is sorted by `columns`. The first column's own sortedness is one
    native pass; then only the rows where the later columns step back (a new contract's first bar, say) can break
    the order, and they do when their first-column value equals the previous row's. Comparing every row's
    ticker with the previous one cost ~3x as much on a day of option bars."""
    first = frame[columns[0]]
    if not first.is_sorted():
        return False
    if len(columns) == 1:
        return True
    steps_back = frame.select(pl.arg_where(_before_previous_row(columns[1:]).fill_null(False))).to_series()
    if steps_back.is_empty():
        return True
    return not (first.gather(steps_back) == first.gather(steps_back - 1)).any()


def _before_previous_row(columns: Sequence[str]) -> pl.Expr:
    """Per row, whether it sorts before the row above it by `columns` (null on the first row)."""
    this, previous = pl.col(columns[0]), pl.col(columns[0]).shift()
    if len(columns) == 1:
        return this < previous
    return (this < previous) | ((this == previous) & _before_previous_row(columns[1:]))


def unpartitioned_folders() -> frozenset[tuple[str, ...]]:
    """The folders of the datasets rewritten whole (no day, so no age: retention never touches them)."""
    return frozenset(dataset.folder() for dataset in DATASETS if not dataset.partitioned)
