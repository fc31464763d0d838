"""Options movement scanner: intraday moves of an option's price far above its recent minimum.

The predecessor's OptionsScanner, rebuilt on polars + numpy. Its definitions (defaults 120 / 20 / 10, as the
predecessor's ``reference_window_minutes``, ``trigger_threshold_pct``, ``sustained_threshold_pct``):

- **Contract-day**: one ticker on one trading day (the America/New_York date of its bars). Nothing carries over
  from one day to the next.
- **Reference** at a bar at minute T: the minimum price over the `window_minutes` minutes of *time* ending at T,
  T included: bars with timestamp in (T - window, T] (polars/pandas time-window convention, closed on the
  right; for dense bars that is the last `window_minutes` bars). Missing minutes are just absent, so a sparse
  contract's window holds fewer bars; it never reaches further back than `window_minutes`.
- **Trigger**: a bar whose price ≥ reference x (1 + trigger_pct/100), with a positive reference.
- **Event**: starts at a trigger bar when no event is running. Its reference is frozen at the trigger bar's
  reference; it lasts while bars stay ≥ that reference x (1 + sustain_pct/100) and ends at the first bar below
  (or at the contract-day's last bar). Triggers during an event belong to it. The bar that ends an event may
  itself start the next one (possible only when sustain_pct > trigger_pct).

Per event: ``start`` (the trigger bar), ``end`` (the last bar still at or above the sustain level),
``duration_minutes`` = minutes from start to end, both included (end - start + 1; a one-bar event lasts 1
minute), ``minutes_above_trigger`` = bars of the event at or above the event's reference x (1 + trigger_pct/100)
(bars, not clock minutes, like the predecessor's ">20% minutes"), ``trigger_hour_et`` = the start's hour in
America/New_York.

**Floors** (`min_price`, `min_volume`): a bar whose price is below `min_price` or whose volume is below
`min_volume` (or null, when `min_volume` > 0) is left out before anything else, as if it did not exist: it sets
no reference and triggers nothing, so a 0.01 print cannot make a 1.00 option a +9,900% event. `scannable` is the
one definition, used by `movement_events` and by the live scanner (live_scanner.py). Defaults of the pipeline:
DEFAULT_MIN_PRICE / DEFAULT_MIN_VOLUME (settings SPY_PIPELINE_SCANNER_MIN_PRICE / _MIN_VOLUME); the functions'
own defaults are 0 (no floor).

`movement_summary` computes the predecessor's eight report metrics over any number of days.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from spy_pipeline.domain.schemas import OPTIONS_MOVEMENT

NEW_YORK = "America/New_York"

DEFAULT_MIN_PRICE = 0.10  # USD: below a dime, one tick is a double-digit percentage
DEFAULT_MIN_VOLUME = 10.0  # contracts in the minute: fewer is one stray print, not a move

# The events' columns and their descriptions: the options_movement dataset's schema.
EVENT_COLUMNS: dict[str, str] = OPTIONS_MOVEMENT.descriptions


def event_schema(timestamp: pl.DataType) -> pl.Schema:
    """The declared event columns, with start and end in the input's time unit."""
    return pl.Schema({**OPTIONS_MOVEMENT.columns, "start": timestamp, "end": timestamp})


def _utc(column: str, dtype: pl.DataType) -> pl.Expr:
    if not isinstance(dtype, pl.Datetime):
        raise TypeError(f"{column!r} must be a Datetime column, got {dtype}")
    expr = pl.col(column)
    return expr.dt.replace_time_zone("UTC") if dtype.time_zone is None else expr.dt.convert_time_zone("UTC")


def scannable(price: pl.Expr, volume: pl.Expr | None, min_price: float = 0.0, min_volume: float = 0.0) -> pl.Expr:
    """True for the bars the scanner looks at: a finite price >= `min_price` and, when `min_volume` > 0, a
    volume >= `min_volume` (`volume` may be None only then)."""
    keep = price.is_not_null() & price.is_not_nan() & (price >= min_price)
    if min_volume > 0:
        if volume is None:
            raise ValueError("min_volume needs a volume column")
        keep = keep & volume.is_not_null() & (volume >= min_volume)
    return keep


def _firsts(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and the position of each one's first occurrence."""
    if not sorted_keys.size:
        return sorted_keys, np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
    return sorted_keys[first], first


def _chain_events(
    group: np.ndarray, price: np.ndarray, ref: np.ndarray, trigger: np.ndarray, groups: int, sustain: float
) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) row indices of the events, rows sorted by group then time; end inclusive.

    Vectorized over contract-days: each pass finds every still-active group's next event, so the number of
    passes is the largest number of events in one contract-day, and each pass only touches the rows not yet
    consumed.
    """
    group_end = np.cumsum(np.bincount(group, minlength=groups))  # one past each group's last row
    starts, ends = [], []
    rows = np.flatnonzero(trigger)
    if rows.size:  # rows before a group's first trigger can never be part of an event
        rows = np.arange(rows[0], price.size)
    start_of = np.full(groups, -1, dtype=np.int64)
    level_of = np.zeros(groups)
    end_of = np.zeros(groups, dtype=np.int64)
    while rows.size:
        g = group[rows]
        active, first = _firsts(g[trigger[rows]])
        if not active.size:
            break
        start_of[:] = -1
        start_of[active] = rows[trigger[rows]][first]
        keep = (start_of[g] >= 0) & (rows >= start_of[g])
        rows, g = rows[keep], g[keep]
        level_of[active] = ref[start_of[active]] * sustain
        below = (rows > start_of[g]) & (price[rows] < level_of[g])
        ended, at = _firsts(g[below])
        end_of[active] = group_end[active]
        end_of[ended] = rows[below][at]
        starts.append(start_of[active])
        ends.append(end_of[active] - 1)
        rows = rows[rows >= end_of[g]]  # a finished group has no rows left; the ending bar may trigger again
    if not starts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    start, end = np.concatenate(starts), np.concatenate(ends)
    order = np.argsort(start, kind="stable")
    return start[order], end[order]


def movement_events(
    bars: pl.DataFrame,
    window_minutes: int = 120,
    trigger_pct: float = 20.0,
    sustain_pct: float = 10.0,
    price_column: str = "close",
    *,
    min_price: float = 0.0,
    min_volume: float = 0.0,
    ticker_column: str = "ticker",
    timestamp_column: str = "timestamp",
    volume_column: str = "volume",
) -> pl.DataFrame:
    """One row per movement event in option minute bars (see the module docstring for the definitions).

    `bars`: (ticker, timestamp = start of the minute, UTC or naive UTC, price, …), sparse, any row order;
    usually one day, but several days work (each contract-day is scanned on its own). Bars with a null or NaN
    price, or below the floors (`scannable`), are ignored. Output columns: `EVENT_COLUMNS`, sorted by ticker
    then start. Raises ValueError on duplicate (ticker, timestamp) bars, and when `min_volume` > 0 without a
    `volume_column`.
    """
    if window_minutes < 1:
        raise ValueError(f"window_minutes must be at least 1, got {window_minutes}")
    timestamp_type = bars.schema[timestamp_column]
    if min_volume > 0 and volume_column not in bars.columns:
        raise ValueError(f"min_volume needs a {volume_column!r} column")
    volume = pl.col(volume_column).cast(pl.Float64) if min_volume > 0 else None
    frame = (
        bars.filter(scannable(pl.col(price_column).cast(pl.Float64), volume, min_price, min_volume))
        .select(
            pl.col(ticker_column).cast(pl.String).alias("ticker"),
            _utc(timestamp_column, timestamp_type).alias("timestamp"),
            pl.col(price_column).cast(pl.Float64).alias("price"),
        )
        .filter(pl.all_horizontal(pl.all().is_not_null()))
        .with_columns(pl.col("timestamp").dt.convert_time_zone(NEW_YORK).dt.date().alias("day"))
        .sort("ticker", "day", "timestamp")
    )
    schema = event_schema(frame.schema["timestamp"])
    if frame.select(pl.struct("ticker", "timestamp").is_duplicated().any()).item():
        raise ValueError(f"bars have duplicate ({ticker_column!r}, {timestamp_column!r}) rows")
    trigger_factor = 1.0 + trigger_pct / 100.0
    frame = frame.with_columns(
        pl.col("price")
        .rolling_min_by("timestamp", window_size=f"{window_minutes}m", closed="right")
        .over("ticker", "day")
        .alias("ref"),
        pl.struct("ticker", "day").rle_id().alias("group"),
    ).with_columns(((pl.col("ref") > 0) & (pl.col("price") >= pl.col("ref") * trigger_factor)).alias("trigger"))
    if not frame.height:
        return pl.DataFrame(schema=schema)

    price = frame.get_column("price").to_numpy()
    ref = frame.get_column("ref").to_numpy()
    group = frame.get_column("group").to_numpy().astype(np.int64)
    trigger = frame.get_column("trigger").to_numpy()
    start, end = _chain_events(group, price, ref, trigger, int(group[-1]) + 1, 1.0 + sustain_pct / 100.0)
    if not start.size:
        return pl.DataFrame(schema=schema)

    # Rows inside events: the events are disjoint and sorted, so each row's candidate is the last start before it.
    rows = np.arange(price.size)
    event = np.searchsorted(start, rows, side="right") - 1
    inside = (event >= 0) & (rows <= end[np.maximum(event, 0)])
    reference = ref[start]
    above = inside & (price >= reference[np.maximum(event, 0)] * trigger_factor)
    # Peaks: reduceat over [start, end + 1) boundaries; a sentinel keeps end + 1 a valid index.
    bounds = np.column_stack((start, end + 1)).ravel()
    peak = np.maximum.reduceat(np.append(price, -np.inf), bounds)[::2]

    picked = frame.select("ticker", "timestamp")
    first, last = picked[start], picked.get_column("timestamp")[end]
    return event_frame(pl.DataFrame({
        "ticker": first.get_column("ticker"),
        "start": first.get_column("timestamp"),
        "end": last,
        "reference_price": reference,
        "trigger_price": price[start],
        "peak_price": peak,
        "minutes_above_trigger": np.bincount(event[above], minlength=start.size).astype(np.int64),
    }), schema)


def event_frame(found: pl.DataFrame, schema: pl.Schema | None = None) -> pl.DataFrame:
    """Events as options_movement rows from (ticker, start, end: UTC datetimes, reference_price, trigger_price,
    peak_price, minutes_above_trigger): the derived columns added, sorted by ticker then start."""
    schema = schema or event_schema(found.schema["start"])
    return found.select(
        "ticker",
        "start",
        "end",
        ((pl.col("end") - pl.col("start")).dt.total_minutes() + 1).alias("duration_minutes"),
        "reference_price",
        "trigger_price",
        "peak_price",
        ((pl.col("peak_price") / pl.col("reference_price") - 1.0) * 100.0).alias("peak_gain_pct"),
        "minutes_above_trigger",
        pl.col("start").dt.convert_time_zone(NEW_YORK).dt.hour().cast(pl.Int32).alias("trigger_hour_et"),
    ).sort("ticker", "start").cast(dict(schema))


def movement_summary(
    bars: pl.DataFrame,
    events: pl.DataFrame,
    trigger_pct: float = 20.0,
    *,
    ticker_column: str = "ticker",
    timestamp_column: str = "timestamp",
) -> dict[str, Any]:
    """The predecessor's eight report metrics over `bars` (any date range) and their `events`.

    Returns plain Python values (None where undefined, e.g. a median of no events) and two small frames:

    - ``trigger_pct``: the threshold the events were scanned with (labels only; it must be the one passed to
      `movement_events`, whose ``minutes_above_trigger`` already counts against it);
    - ``contract_days``: distinct (ticker, New York date) in `bars`; ``minute_bars``: rows of `bars`;
    - ``events``; ``events_per_contract_day_min`` / ``_median`` / ``_max`` over all contract-days, zero-event
      days included;
    - ``minutes_above_trigger``: the events' ``minutes_above_trigger`` summed (bars);
      ``share_minutes_above_trigger``: that over ``minute_bars``, a fraction in [0, 1] (the predecessor's
      "positive-minute rate" divided by 100);
    - ``duration_above_trigger_median_minutes`` / ``_mean_minutes``: of ``minutes_above_trigger`` per event
      (the predecessor's "Duration >20% (med/mean)": its mean is total >20% minutes / events);
    - ``events_by_trigger_hour``: frame (trigger_hour_et, events), every hour from 9 to 15 ET plus any other hour
      seen, zeros included, sorted;
    - ``events_per_contract_day``: frame (events, contract_days): how many contract-days had 0, 1, 2, … events.
    """
    days = (
        bars.select(
            pl.col(ticker_column).cast(pl.String).alias("ticker"),
            _utc(timestamp_column, bars.schema[timestamp_column])
            .dt.convert_time_zone(NEW_YORK)
            .dt.date()
            .alias("day"),
        )
        .drop_nulls()
        .unique()
    )
    event_days = events.group_by(
        pl.col("ticker"), pl.col("start").dt.convert_time_zone(NEW_YORK).dt.date().alias("day")
    ).agg(pl.len().cast(pl.Int64).alias("events"))
    per_day = days.join(event_days, on=["ticker", "day"], how="left").with_columns(pl.col("events").fill_null(0))
    counts = per_day.get_column("events")
    above = events.get_column("minutes_above_trigger")
    minutes_above = int(above.sum()) if events.height else 0

    observed = events.get_column("trigger_hour_et").unique().to_list()
    hours = pl.DataFrame({"trigger_hour_et": sorted(set(range(9, 16)) | set(observed))}, schema={
        "trigger_hour_et": pl.Int32})
    by_hour = hours.join(
        events.group_by("trigger_hour_et").agg(pl.len().cast(pl.Int64).alias("events")),
        on="trigger_hour_et",
        how="left",
    ).with_columns(pl.col("events").fill_null(0)).sort("trigger_hour_et")
    distribution = (
        per_day.group_by("events").agg(pl.len().cast(pl.Int64).alias("contract_days")).sort("events")
    )

    def _number(value: Any) -> float | None:
        return None if value is None else float(value)

    return {
        "trigger_pct": float(trigger_pct),
        "contract_days": per_day.height,
        "minute_bars": bars.height,
        "events": events.height,
        "events_per_contract_day_min": int(counts.min()) if per_day.height else None,
        "events_per_contract_day_median": _number(counts.median()),
        "events_per_contract_day_max": int(counts.max()) if per_day.height else None,
        "minutes_above_trigger": minutes_above,
        "share_minutes_above_trigger": minutes_above / bars.height if bars.height else None,
        "duration_above_trigger_median_minutes": _number(above.median()),
        "duration_above_trigger_mean_minutes": _number(above.mean()),
        "events_by_trigger_hour": by_hour,
        "events_per_contract_day": distribution,
    }
