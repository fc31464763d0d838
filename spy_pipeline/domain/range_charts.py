"""Charts over a range of trading days, as PNG: pure functions from polars frames to images (no Dagster).

- **Volatility**: per trading day, SPY's realized volatility, the near-the-money implied volatility of its
  options and VIX's close / 100, all annualized fractions drawn in % per year.
  - realized: the sample standard deviation (ddof 1) of the log returns between consecutive regular-session
    1-minute closes of the day, times sqrt(252 x 390) (252 sessions of 390 minutes a year). Intraday only:
    the overnight gap is not a return. A minute without a SPY trade has no bar, so its move lands in the
    next return; an early close (210 minutes) is scaled the same way.
  - implied: the median `iv` of the day's consolidated rows with a valid IV (iv_reason 0) whose strike is
    within NEAR_MONEY_LOG_MONEYNESS of SPY's close of that minute (|ln(strike / spy_close)| <= 0.01), all
    expirations followed that day (0DTE included).
  - VIX: the close of the day's last I:VIX bar (16:15 ET), divided by 100.
- **Events by hour**: the options scanner's events (scanner.EVENT_COLUMNS) counted by `trigger_hour_et`, the
  America/New_York hour their trigger bar started in, over every scanned day of the range.

Figures are 1600 x 900 at charts.DPI on their own Agg canvas, like the daily charts (`charts.png` renders them).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from spy_pipeline.domain.charts import new_figure

SESSIONS_PER_YEAR, MINUTES_PER_SESSION = 252, 390
ANNUALIZATION = math.sqrt(SESSIONS_PER_YEAR * MINUTES_PER_SESSION)
NEAR_MONEY_LOG_MONEYNESS = 0.01
REALIZED_NOTE = "realized: std of regular-session 1-minute log returns x sqrt(252 x 390)"
IMPLIED_NOTE = "implied: median IV of options with strike within 1% of SPY"
REGULAR_HOURS_ET = range(9, 16)  # 09:30-09:59 is hour 9, 15:00-15:59 hour 15
MAX_DAY_LABELS = 20

VOLATILITY_SCHEMA = pl.Schema({
    "day": pl.Date(),
    "realized_vol": pl.Float64(),
    "implied_vol": pl.Float64(),
    "vix_close_fraction": pl.Float64(),
})

# name -> title of each range chart (file name without .png)
RANGE_CHARTS: dict[str, str] = {
    "volatility": "SPY realized vs implied volatility and VIX",
    "events_by_hour": "Options scanner events by hour of day (ET)",
}


def realized_volatility(spy_bars: pl.DataFrame) -> float | None:
    """Annualized realized volatility of one day's SPY minute bars (the module docstring's definition), as
    a fraction per year; None with fewer than two returns."""
    closes = spy_bars.filter(pl.col("session") == "regular").sort("timestamp")["close"].to_numpy()
    returns = np.diff(np.log(closes))
    if returns.size < 2:
        return None
    return float(np.std(returns, ddof=1) * ANNUALIZATION)


def near_money_implied_volatility(consolidated: pl.DataFrame) -> float | None:
    """The day's median IV over rows with a valid IV and |ln(strike / spy_close)| <= NEAR_MONEY_LOG_MONEYNESS."""
    near = consolidated.filter(
        (pl.col("iv_reason") == 0)
        & pl.col("iv").is_not_nan()
        & ((pl.col("strike") / pl.col("spy_close")).log().abs() <= NEAR_MONEY_LOG_MONEYNESS)
    )
    value = near["iv"].median()
    return None if value is None else float(value)


def vix_close(vix_bars: pl.DataFrame) -> float | None:
    """The close of the day's last I:VIX bar, in index points."""
    if not vix_bars.height:
        return None
    return float(vix_bars.sort("timestamp")["close"][-1])


def day_volatility(
    day: dt.date, spy_bars: pl.DataFrame, vix_bars: pl.DataFrame, consolidated: pl.DataFrame
) -> dict[str, object]:
    """One row of VOLATILITY_SCHEMA for `day` from its raw SPY and VIX bars and its consolidated rows."""
    vix = vix_close(vix_bars)
    return {
        "day": day,
        "realized_vol": realized_volatility(spy_bars),
        "implied_vol": near_money_implied_volatility(consolidated),
        "vix_close_fraction": None if vix is None else vix / 100.0,
    }


def volatility_frame(rows: Sequence[dict[str, object]]) -> pl.DataFrame:
    """`day_volatility` rows as a frame sorted by day."""
    return pl.DataFrame(list(rows), schema=VOLATILITY_SCHEMA, orient="row").sort("day")


def events_by_hour(events: pl.DataFrame) -> pl.DataFrame:
    """(trigger_hour_et, events): every regular-session hour (9-15) plus any other hour seen, zeros included."""
    counts = events.group_by("trigger_hour_et").agg(pl.len().cast(pl.Int64).alias("events"))
    hours = sorted(set(REGULAR_HOURS_ET) | set(counts["trigger_hour_et"].to_list()))
    return (
        pl.DataFrame({"trigger_hour_et": hours}, schema={"trigger_hour_et": pl.Int32})
        .join(counts, on="trigger_hour_et", how="left")
        .with_columns(pl.col("events").fill_null(0))
        .sort("trigger_hour_et")
    )


def _span(days: Sequence[dt.date]) -> str:
    if not days:
        return "no days"
    first, last = min(days), max(days)
    count = f"{len(days)} trading day" + ("s" if len(days) != 1 else "")
    return f"{first} to {last} ({count})" if first != last else f"{first} ({count})"


def volatility_figure(daily: pl.DataFrame) -> Figure:
    """Realized and implied volatility and VIX / 100 per trading day, in % per year (one point per day,
    the days evenly spaced: no gaps for weekends and holidays)."""
    figure = new_figure()
    axis = figure.subplots()
    days = daily["day"].to_list()
    x = np.arange(len(days))
    lines = (
        ("realized_vol", "Realized (SPY 1-minute log returns)", dict(color="black", marker="o")),
        ("implied_vol", "Implied (median IV of near-the-money options)", dict(color="tab:blue", marker="s")),
        ("vix_close_fraction", "VIX close (its points are % per year)", dict(color="tab:red", marker="^", ls="--")),
    )
    for column, label, style in lines:
        values = daily[column].cast(pl.Float64).fill_null(float("nan")).to_numpy() * 100
        axis.plot(x, values, lw=1.6, ms=6, label=label, **style)
    figure.suptitle(f"SPY realized vs implied volatility, {_span(days)}", fontsize=16)
    axis.set_title(f"{REALIZED_NOTE}; {IMPLIED_NOTE}; VIX close read as % per year", fontsize=11)
    step = max(1, math.ceil(len(days) / MAX_DAY_LABELS))
    axis.set_xticks(x[::step], [str(day) for day in days[::step]], rotation=30 if len(days) > 8 else 0)
    axis.set_xlim(-0.5, max(len(days) - 0.5, 0.5))
    axis.set_xlabel("Trading day (ET)")
    axis.set_ylabel("Volatility (% per year, annualized)")
    axis.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower right")  # the lines sit well above zero
    if not days:
        axis.text(0.5, 0.5, "no days", ha="center", va="center", transform=axis.transAxes, fontsize=14)
    return figure


def events_by_hour_figure(by_hour: pl.DataFrame, days: Sequence[dt.date]) -> Figure:
    """Bars of `events_by_hour` over the scanned `days`, each labelled with its count and share."""
    figure = new_figure()
    axis = figure.subplots()
    hours = by_hour["trigger_hour_et"].to_list()
    counts = by_hour["events"].to_numpy()
    total = int(counts.sum())
    bars = axis.bar(hours, counts, width=0.8, color="tab:purple", edgecolor="black", lw=0.6)
    labels = [f"{count:,} ({count / total:.0%})" if total else "0" for count in counts]
    axis.bar_label(bars, labels, padding=3, fontsize=11)
    axis.set_title(
        f"Options scanner events by trigger hour (ET), {_span(days)}: {total:,} events", fontsize=16
    )
    axis.set_xticks(hours, [f"{hour:02d}:00" for hour in hours])
    axis.set_xlabel("Hour of day the event started (ET; 09:00 holds 09:30-09:59)")
    axis.set_ylabel("Events (count)")
    axis.set_ylim(0, max(1, int(counts.max(initial=0))) * 1.12)
    axis.grid(True, axis="y", alpha=0.3)
    if not total:
        axis.text(0.5, 0.5, "no events in these days", ha="center", va="center", transform=axis.transAxes,
                  fontsize=14)
    return figure


def range_figures(
    daily: pl.DataFrame, events: pl.DataFrame, scanned_days: Sequence[dt.date]
) -> dict[str, Figure]:
    """Every range chart by file name (RANGE_CHARTS): `daily` from `volatility_frame`, `events` of the
    `scanned_days` concatenated."""
    return {
        "volatility": volatility_figure(daily),
        "events_by_hour": events_by_hour_figure(events_by_hour(events), scanned_days),
    }
