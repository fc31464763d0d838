"""spy_pipeline: SPY, VIX, SPY options and news from Polygon.io into daily Parquet datasets (a Dagster asset graph).

For notebooks, `scan` reads a dataset back as a polars LazyFrame (README.md, "Reading the data"). Importing this
package stays cheap: polars, pyarrow and the settings are imported on the first call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt
    import os

    import polars as pl

    from spy_pipeline.domain.datasets import DatasetError

__all__ = ["DatasetError", "scan"]


def scan(
    dataset: str,
    start: dt.date | str | None = None,
    end: dt.date | str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    **folders: str,
) -> pl.LazyFrame:
    """A registered dataset's trading-day partitions from `start` to `end` (both included) as one LazyFrame.

    `dataset`: a name of `spy_pipeline.domain.datasets` (`consolidated`, `spy`, `options`, `training`, ...;
    data/README.md lists them). `start`, `end`: a `datetime.date` or `YYYY-MM-DD`; None leaves that side open.
    `data_dir`: a local folder or an object-store URI (`s3://bucket/prefix`); default the settings' data dir
    (SPY_PIPELINE_DATA_DIR). `folders`: the path's other placeholders, for the datasets that have some
    (`scan("equity_bars", ticker="qqq")`, `scan("stream_bars", source="spy")`).

    Every file in range is checked against the dataset's declared schema first. Raises a `DatasetError` (a
    ValueError) for an unknown dataset (naming the known ones), a malformed date, start after end, start or end
    given for a dataset that is a single file (dividends, splits), or a range without a single partition
    (`NoPartitionsError`: never an empty frame that would look like a quiet day); a `StorageError` (a ValueError
    too) for a file without the declared schema.
    """
    from spy_pipeline.io.scan import scan_dataset

    return scan_dataset(dataset, start, end, data_dir, **folders)


def __getattr__(name: str) -> object:
    if name == "DatasetError":  # imported on first use, like scan's dependencies
        from spy_pipeline.domain.datasets import DatasetError

        return DatasetError
    raise AttributeError(f"module 'spy_pipeline' has no attribute {name!r}")
