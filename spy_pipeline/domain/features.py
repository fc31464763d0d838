"""Model features from a consolidated day (pure, vectorized; lags are in minutes of time, not rows).

- SPY: percentage change of the close over each lag, on the regular-session minute grid.
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


def spy_lag_changes(consolidated: pl.DataFrame, lags: Sequence[int]) -> pl.DataFrame:
    """One row per minute of the day: SPY's % change over each lag (null before the lag is available)."""
    minutes = consolidated.select("timestamp", "spy_close").unique("timestamp").sort("timestamp")
    for k in lags:
        earlier = minutes.select(
            (pl.col("timestamp") + dt.timedelta(minutes=k)).alias("timestamp"), pl.col("spy_close").alias("_then")
        )
        minutes = minutes.join(earlier, on="timestamp", how="left").with_columns(
            ((pl.col("spy_close") / pl.col("_then") - 1) * 100).alias(f"spy_pct_change_{k}m")
        ).drop("_then")
    return minutes.drop("spy_close")


def atm_iv(consolidated: pl.DataFrame) -> pl.DataFrame:
    """The ATM IV of each minute (see the module docstring)."""
    valid = consolidated.filter(pl.col("iv").is_not_nan() & pl.col("iv").is_not_null())
    nearest = valid.filter(pl.col("expiration") == pl.col("expiration").min().over("timestamp"))
    distance = (pl.col("strike") - pl.col("spy_close")).abs()
    closest = nearest.with_columns(_distance=distance).filter(
        pl.col("_distance") == pl.col("_distance").min().over("timestamp")
    )
    return closest.group_by("timestamp").agg(atm_iv=pl.col("iv").mean())


def build_features(consolidated: pl.DataFrame, lags: Sequence[int] = DEFAULT_LAGS) -> pl.DataFrame:
    """ticker, timestamp and feature_columns(lags) for every consolidated row."""
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
        rows.join(spy_lag_changes(consolidated, lags), on="timestamp", how="left")
        .join(atm_iv(consolidated), on="timestamp", how="left")
        .with_columns(iv_minus_atm=pl.col("iv") - pl.col("atm_iv"))
    )
    return rows.select("ticker", "timestamp", *feature_columns(lags)).sort("ticker", "timestamp")
