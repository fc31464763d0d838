"""Forward price targets for one trading day of sparse option minute bars.

`forward_targets` adds, to every input row at minute T, the same contract's price at T+1 … T+horizon minutes.
Real option bars are sparse (a minute without a trade has no row), so a target is found by *time*, never by row
position: ``shift(-k).over("ticker")`` would move k rows, which is k minutes only when no minute is missing.

How it works (all vectorized, no per-row Python): the prices are scattered onto a complete per-ticker minute
grid of the regular session, padded with `horizon` empty minutes after the close; target k of a row is then a
gather at grid position (ticker, minute + k). The drop rule counts non-null targets with a prefix sum over the
same grid, so rows are filtered before the wide target block is built.

Schema: the input columns, unchanged and in input order, followed by ``target_1 … target_{horizon}``
(see `target_columns`), one column per minute ahead, of `dtype` — float32 by default: 718k rows x 120 float64
targets would be ≈ 690 MB, float32 halves that. Wide, not long: one row per input bar.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from spy_pipeline.domain.trading_calendar import session_bounds

_ROW = "__targets_row"
_TICKER_ID = "__targets_ticker"
_MINUTE = "__targets_minute"
_BASE = "__targets_base"
_REST = "__targets_rest"


def target_columns(horizon: int) -> list[str]:
    """Names of the target columns: ``target_1 … target_{horizon}`` (target_k = price k minutes ahead)."""
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    return [f"target_{k}" for k in range(1, horizon + 1)]


def _utc(column: str, dtype: pl.DataType) -> pl.Expr:
    if not isinstance(dtype, pl.Datetime):
        raise TypeError(f"{column!r} must be a Datetime column, got {dtype}")
    expr = pl.col(column)
    # A naive timestamp is taken to be UTC (the platform's convention); an aware one is converted.
    return expr.dt.replace_time_zone("UTC") if dtype.time_zone is None else expr.dt.convert_time_zone("UTC")


def forward_targets(
    frame: pl.DataFrame,
    day: dt.date | str,
    horizon: int = 120,
    price_column: str = "close",
    min_non_null_share: float = 0.5,
    forward_fill: bool = False,
    dtype: pl.DataType = pl.Float32,
    *,
    ticker_column: str = "ticker",
    timestamp_column: str = "timestamp",
) -> pl.DataFrame:
    """Add ``target_1 … target_{horizon}``: each contract's price 1 … horizon minutes after the row's minute.

    `frame` holds one trading day of minute bars, (ticker, timestamp = start of the minute, price, …any other
    columns); minutes without a trade have no row. For a row at minute T, ``target_k`` is the same ticker's
    `price_column` in the bar starting at T+k minutes:

    - only minutes of the same regular session count: T+k must start before the close of `day`
      (`session_bounds`, 13:00 ET on early closes); later targets are null;
    - ``forward_fill=False``: null where that minute has no bar (or a null price);
    - ``forward_fill=True``: the last known price at or before T+k (possibly the row's own price, or an earlier
      one), never a price from after T+k, and never one from before the open or after the close.

    Rows are kept only if their share of non-null targets is at least `min_non_null_share`. The denominator is
    the number of target minutes inside the session, min(horizon, minutes left until the close), so late rows
    are judged on the minutes they can have; a row with no minute left (the session's last minute) is dropped.
    Rows outside the regular session of `day` (pre/post-market, another day, null timestamp or ticker) are
    dropped as well, and their prices are never used as targets.

    Targets are `dtype`, float32 by default to halve the memory of the wide block (prices to ≈ 7 significant
    digits); pass ``pl.Float64`` for exact copies. The input columns come first, unchanged, in input order.
    Raises ValueError on duplicate (ticker, timestamp) rows or timestamps that are not whole minutes.
    """
    names = target_columns(horizon)
    if not 0.0 <= min_non_null_share <= 1.0:
        raise ValueError(f"min_non_null_share must be within [0, 1], got {min_non_null_share}")
    if not dtype.is_float():
        raise TypeError(f"dtype must be a float type, got {dtype}")
    clash = [name for name in (*names, _ROW, _TICKER_ID, _MINUTE, _BASE, _REST) if name in frame.columns]
    if clash:
        raise ValueError(f"frame already has columns {clash}")
    bounds = session_bounds(day)
    minutes = bounds.regular_minutes  # grid minutes 0 … minutes-1 start at open … close-1min
    width = minutes + horizon  # each ticker's block: the session, then `horizon` always-empty minutes

    offset = (_utc(timestamp_column, frame.schema[timestamp_column]) - pl.lit(bounds.open)).dt.total_microseconds()
    located = frame.with_row_index(_ROW).with_columns(
        (offset // 60_000_000).alias(_MINUTE),
        (offset % 60_000_000).alias(_REST),
    )
    if located.select((pl.col(_REST) != 0).any()).item():
        raise ValueError(f"{timestamp_column!r} has timestamps that are not whole minutes")
    in_session = located.filter(
        (pl.col(_MINUTE) >= 0) & (pl.col(_MINUTE) < minutes) & pl.col(ticker_column).is_not_null()
    ).select(
        _ROW,
        pl.col(ticker_column).cast(pl.String).rank("dense").cast(pl.Int64).sub(1).alias(_TICKER_ID),
        pl.col(_MINUTE),
        pl.col(price_column).cast(dtype),
    )
    in_session = in_session.with_columns((pl.col(_TICKER_ID) * width + pl.col(_MINUTE)).alias(_BASE))
    if in_session.select(pl.col(_BASE).is_duplicated().any()).item():
        raise ValueError(f"frame has duplicate ({ticker_column!r}, {timestamp_column!r}) rows")

    # The complete minute grid, one block of `width` minutes per ticker; null where no bar.
    tickers = int(in_session.get_column(_TICKER_ID).max()) + 1 if in_session.height else 0
    grid = pl.Series("price", [], dtype=dtype).extend_constant(None, tickers * width)
    grid = grid.scatter(in_session.get_column(_BASE), in_session.get_column(price_column))
    if forward_fill:
        position = pl.int_range(0, pl.len(), dtype=pl.Int64)
        grid = pl.DataFrame({"price": grid}).select(
            pl.when(position % width < minutes).then(pl.col("price").forward_fill().over(position // width))
        ).to_series()

    # known[i] = non-null grid cells before position i. The targets of a row at grid position b are cells
    # b+1 … b+horizon, all inside the ticker's block thanks to the padding (padding cells are always null).
    known = pl.concat([pl.Series([0], dtype=pl.Int64), grid.is_not_null().cast(pl.Int64).cum_sum()])
    base = in_session.get_column(_BASE)
    count = known.gather(base + horizon + 1) - known.gather(base + 1)
    inside = (minutes - 1 - in_session.get_column(_MINUTE)).clip(upper_bound=horizon)
    kept = (inside > 0) & (count >= inside * min_non_null_share)
    kept_rows = in_session.select(_ROW, _BASE).filter(kept)

    result = frame if kept_rows.height == frame.height else frame.select(pl.all().gather(kept_rows[_ROW]))
    # One select, so polars gathers the target columns in parallel.
    targets = kept_rows.select(
        pl.lit(grid).gather(pl.col(_BASE) + k).alias(name) for k, name in enumerate(names, start=1)
    )
    return result.hstack(targets)
