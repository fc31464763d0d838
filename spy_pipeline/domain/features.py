"""Model features from a consolidated day (pure, vectorized; lags are in minutes of time, not rows).

- SPY: percentage change of the close over each lag, k minutes back on SPY's regular-session minute
  grid of the day (`indicators.spy_minute_grid`, built from the day's SPY bars, not from the minutes in
  which some option traded); null for the first k minutes of the session (the lag stays in the session).
- Options: each contract's IV change over each lag (the same contract's IV k minutes earlier, null
  when it had no bar then), the at-the-money IV of the minute, and IV minus that ATM IV.
  ATM IV of a minute: the mean IV of the contracts of the nearest expiration trading in that minute
  whose strike is closest to SPY's close (call and put alike), among rows with an IV.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

DEFAULT_LAGS = (1, 5, 15, 30, 60)


def feature_columns(lags: Sequence[int]) -> list[str]:
    return [
        *(f"spy_pct_change_{k}m" for k in lags),
        "iv",
        *(f"iv_change_{k}m" for k in lags),
        "atm_iv",
        "iv_minus_atm",
    ]


def _check_lags(lags: Sequence[int]) -> None:
    if not lags or any(not isinstance(k, int) or k < 1 for k in lags):
        raise ValueError(f"lags must be positive whole minutes, got {list(lags)}")


def spy_lag_changes(spy_grid: pl.DataFrame, lags: Sequence[int]) -> pl.DataFrame:
    """One row per minute of `spy_grid` (timestamp, close: one day's regular-session minute grid): SPY's %
    change over each lag, k grid rows (= minutes) back; null for the first k minutes."""
    steps = spy_grid["timestamp"].diff().drop_nulls()
    if spy_grid.height > 1 and not (steps == dt.timedelta(minutes=1)).all():
        raise ValueError("spy_lag_changes: the SPY grid must have one row per minute, in order")
    close = pl.col("close")
    return spy_grid.select(
        "timestamp", *(((close / close.shift(k) - 1) * 100).alias(f"spy_pct_change_{k}m") for k in lags)
    )


def atm_iv(consolidated: pl.DataFrame) -> pl.DataFrame:
    """The ATM IV of each minute (see the module docstring)."""
    valid = consolidated.filter(pl.col("iv").is_not_nan() & pl.col("iv").is_not_null())
    nearest = valid.filter(pl.col("expiration") == pl.col("expiration").min().over("timestamp"))
    distance = (pl.col("strike") - pl.col("spy_close")).abs()
    closest = nearest.with_columns(_distance=distance).filter(
        pl.col("_distance") == pl.col("_distance").min().over("timestamp")
    )
    return closest.group_by("timestamp").agg(atm_iv=pl.col("iv").mean())


def build_features(
    consolidated: pl.DataFrame, spy_grid: pl.DataFrame, lags: Sequence[int] = DEFAULT_LAGS
) -> pl.DataFrame:
    """ticker, timestamp and feature_columns(lags) for every consolidated row; `spy_grid` is the day's SPY
    regular-session minute grid (`indicators.spy_minute_grid`)."""
    _check_lags(lags)
    rows = consolidated.select("ticker", "timestamp", "iv").with_columns(
        pl.when(pl.col("iv").is_nan()).then(None).otherwise(pl.col("iv")).alias("iv")
    )
    for k in lags:
        earlier = rows.select(
            "ticker", (pl.col("timestamp") + dt.timedelta(minutes=k)).alias("timestamp"), pl.col("iv").alias("_then")
        )
        rows = rows.join(earlier, on=["ticker", "timestamp"], how="left").with_columns(
            (pl.col("iv") - pl.col("_then")).alias(f"iv_change_{k}m")
        ).drop("_then")
    rows = (
        rows.join(spy_lag_changes(spy_grid, lags), on="timestamp", how="left")
        .join(atm_iv(consolidated), on="timestamp", how="left")
        .with_columns(iv_minus_atm=pl.col("iv") - pl.col("atm_iv"))
    )
    return rows.select("ticker", "timestamp", *feature_columns(lags)).sort("ticker", "timestamp")
