"""Turn Polygon aggregate rows into per-day minute bar frames of the platform (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import MINUTE_BARS


@dataclass(frozen=True)
class DayBars:
    day: dt.date
    frame: pl.DataFrame
    duplicates_dropped: int
    outside_session_dropped: int


def _bounds_frame(days: list[dt.date]) -> pl.DataFrame:
    rows = []
    for day in days:
        bounds = cal.session_bounds(day)
        rows.append(
            (
                day,
                *(
                    int(t.timestamp() * 1000)
                    for t in (bounds.pre_market_open, bounds.open, bounds.close, bounds.after_hours_close)
                ),
            )
        )
    return pl.DataFrame(rows, schema=["day", "pre_ms", "open_ms", "close_ms", "end_ms"], orient="row")


def minute_bars_by_day(ticker: str, raw: pl.DataFrame, days: list[dt.date]) -> list[DayBars]:
    """Split raw minute aggregates (t, o, h, l, c, v, vw, n) into one frame per trading day.

    Each frame is sorted by timestamp, has unique timestamps, only bars inside the day's extended
    session, a session label, and exactly the MINUTE_BARS columns. Days without bars come back empty.
    """
    bounds = _bounds_frame(days)
    # Index aggregates (I:VIX) carry no volume, vwap or trade count: null, not missing.
    absent = {"v": pl.Float64, "vw": pl.Float64, "n": pl.Int64}
    raw = raw.with_columns(
        [pl.lit(None, dtype).alias(name) for name, dtype in absent.items() if name not in raw.columns]
    )
    labelled = (
        raw.with_columns(
            day=pl.from_epoch("t", time_unit="ms")
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone(str(cal.NEW_YORK))
            .dt.date()
        )
        .join(bounds, on="day", how="inner")
        .with_columns(
            inside=(pl.col("t") >= pl.col("pre_ms")) & (pl.col("t") < pl.col("end_ms")),
            session=pl.when(pl.col("t") < pl.col("open_ms"))
            .then(pl.lit("pre"))
            .when(pl.col("t") < pl.col("close_ms"))
            .then(pl.lit("regular"))
            .otherwise(pl.lit("post")),
        )
    )
    result = []
    for day in days:
        of_day = labelled.filter(pl.col("day") == day)
        inside = of_day.filter(pl.col("inside"))
        unique = inside.sort("t", maintain_order=True).unique("t", keep="first", maintain_order=True)
        frame = MINUTE_BARS.conform(
            unique.select(
                ticker=pl.lit(ticker),
                timestamp=pl.from_epoch("t", time_unit="ms").dt.replace_time_zone("UTC"),
                session="session",
                open="o",
                high="h",
                low="l",
                close="c",
                volume="v",
                vwap="vw",
                transactions="n",
            )
        )
        result.append(DayBars(day, frame, inside.height - unique.height, of_day.height - inside.height))
    return result
