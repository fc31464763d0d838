"""The events the WebSocket sandbox streams for one symbol: A and AM aggregates consistent with the REST bars.

- ``AM`` (per minute): o/h/l/c/v/vw are the REST minute bar of that minute (``catalog.minute_bars``): a
  streamed day equals the REST day; a minute without a REST bar has no AM event. ``s``/``e`` = bar start/end.
- ``A`` (Polygon: per second) is emitted per *quarter minute* here, ``e - s`` = 15 s: the sandbox path has
  four points per minute and 60 events per minute per symbol would be noise. A minute with ``n`` trades
  has min(4, n, v) A events (indices always 4), on the last quarters of consecutive groups of quarters;
  their prices walk the minute's points (SPY/QQQ/IWM: the quarter-minute path itself; options and I:VIX:
  open → nearer extreme → other extreme → close), so the A events of a minute aggregate exactly to its AM
  o/h/l/c, their ``v`` sum to its ``v`` and their ``v``-weighted ``vw`` to its ``vw`` (volume leans towards
  the quarter holding the minute's vwap as much as needed; in ~0.4% of minutes, thin option minutes, whole
  contracts make that unreachable with every ``vw`` inside its own high/low: ``vw`` is clipped there).
- ``av`` = the day's volume so far (from 04:00 ET, extended hours included), ``a`` = the day's VWAP so far
  (Σ vw·v / Σ v over the same bars), ``op`` = the official open (the first regular-session bar's open;
  omitted before the open), ``z`` = average trade size of the event (v / n, rounded). At the last A event of
  a minute, ``av`` and ``a`` equal those of the minute's AM event.
- Indices (``I:VIX`` on ``indices``) carry only ev, sym, op, o, c, h, l, s, e; options (``O:SPY...`` on
  ``options``) carry the equity fields.

Recorded days. `build_series(..., bars=...)` streams the bars another source gives (a day replayed from the
data dir) instead of the synthetic market's: the same events, with the generic five-point path in every
minute (the synthetic quarter-minute path belongs to synthetic bars only). What a recording lacks stays out
of the events rather than being invented: a minute without a vwap (Flat Files have none) has no ``vw`` and,
from then on, no ``a``; one without a trade count has no ``z`` (its volume is split as if it had one trade
per share, at most four A events).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import catalog, market
from spy_pipeline.sandbox.replay_clock import epoch_ms

# Polygon-shaped minute bars (t, o, h, l, c[, v, vw, n]) of a ticker on a day; an index has no v, vw, n.
BarSource = Callable[[str, dt.date], pl.DataFrame]
QUARTER_MS = 60_000 // market.STEPS_PER_MINUTE
MINUTE_MS = 60_000
# Quarters [a, b) of a minute merged into one A event, by number of A events in the minute.
_GROUPS = {1: ((0, 4),), 2: ((0, 2), (2, 4)), 3: ((0, 2), (2, 3), (3, 4)), 4: ((0, 1), (1, 2), (2, 3), (3, 4))}


def market_of(symbol: str) -> str:
    if symbol.startswith("O:"):
        return "options"
    if symbol.startswith("I:"):
        return "indices"
    return "stocks"


def _generic_points(o: float, h: float, low: float, c: float) -> list[float]:
    """Five points from open to close through both extremes, the nearer-to-direction one first."""
    x, y = (low, h) if c >= o else (h, low)
    return [o, x, round((x + y) / 2, 2), y, c]  # prices in cents, like the bars


def _equity_points(symbol: str, day: dt.date, t: np.ndarray, bars: dict[str, np.ndarray]) -> list[list[float] | None]:
    """The quarter-minute path at each bar's minute: start and the four quarter ends (None where inconsistent).

    The REST bar uses the minute's start and the ends of quarters 2-4; the end of quarter 1 is clipped into
    the bar's range so that every point stays inside the bar.
    """
    if symbol not in market.PROFILES:
        return [None] * len(t)
    path = market.price_path(symbol, day)
    steps = np.round(path.prices, 2)
    starts = np.round(np.concatenate([[path.previous_close], path.prices[:-1, -1]]), 2)
    result: list[list[float] | None] = []
    for i, start_ms in enumerate(t):
        m = path.minute_index(int(start_ms))
        o, h, low, c = (float(bars[k][i]) for k in ("o", "h", "l", "c"))
        points = [float(starts[m]), *(float(p) for p in steps[m])]
        points[1] = min(max(points[1], low), h)
        ok = points[0] == o and points[4] == c and max(points) == h and min(points) == low
        result.append(points if ok else None)
    return result


@dataclass
class EventSeries:
    """Pre-serialized events of one symbol in the stream window: e (ms) -> {"A": json, "AM": json}."""

    symbol: str
    at: dict[int, dict[str, str]]


def _round_split(total: int, weights: np.ndarray) -> list[int]:
    """`total` in integer parts by `weights` (largest remainders), each at least 1 (total >= len(weights))."""
    raw = total * weights
    parts = np.floor(raw).astype(np.int64)
    order = np.argsort(parts - raw, kind="stable")
    parts[order[: total - int(parts.sum())]] += 1
    for g in np.flatnonzero(parts == 0):
        parts[np.argmax(parts)] -= 1
        parts[g] = 1
    return [int(p) for p in parts]


def _allocate(
    volume: int, trades: int, vwap: float, lows: list[float], highs: list[float]
) -> tuple[list[int], list[int], list[float], float]:
    """Volume, trades and vwap of each A event of a minute: sum(v_g * vw_g) = v * vw with lo_g <= vw_g <= hi_g.

    Volume is spread evenly, shifted towards a group whose range holds the minute's vwap only as much as
    needed to make that reachable. Returns the groups' volumes, trades and vwaps, and the factor that makes
    the vwap sum exact anyway (1.0 unless a vwap had to be clipped after rounding volumes to shares).
    """
    k = len(lows)
    lo, hi = np.array(lows), np.array(highs)
    weights = np.full(k, 1.0 / k)
    holding = np.flatnonzero((lo <= vwap) & (vwap <= hi))
    if k > 1 and holding.size:
        one = np.zeros(k)
        one[holding[0]] = 1.0
        lo0, hi0, lo1, hi1 = weights @ lo, weights @ hi, lo[holding[0]], hi[holding[0]]
        beta = 0.0
        if vwap < lo0:
            beta = (lo0 - vwap) / (lo0 - lo1)
        if vwap > hi0:
            beta = max(beta, (vwap - hi0) / (hi1 - hi0))
        if beta > 0:
            beta = min(1.0, beta + 0.1 * (1.0 - beta))  # a margin for the rounding to whole shares
            weights = (1.0 - beta) * weights + beta * one
    vols, counts = _round_split(volume, weights), _round_split(trades, weights)
    target = volume * vwap
    lower, upper = float(np.dot(vols, lo)), float(np.dot(vols, hi))
    alpha = min(max((target - lower) / (upper - lower), 0.0), 1.0) if upper > lower else 0.0
    vwaps = [float(a + alpha * (b - a)) for a, b in zip(lo, hi, strict=True)]
    total = float(np.dot(vols, vwaps))
    return vols, counts, vwaps, (target / total if total > 0 else 1.0)


def _known(value: float) -> bool:
    return not math.isnan(value)


def build_series(
    symbol: str, day: dt.date, start_ms: int, end_ms: int, bars: BarSource | None = None
) -> EventSeries:
    """Every A and AM event of `symbol` on `day` with start_ms < e <= end_ms, from `bars` (default: the
    synthetic market's; see the module docstring)."""
    frame = (bars or catalog.minute_bars)(symbol, day)
    at: dict[int, dict[str, str]] = {}
    if frame.height == 0:
        return EventSeries(symbol, at)
    columns = {name: frame[name].cast(pl.Float64).to_numpy() if name != "t" else frame[name].to_numpy()
               for name in frame.columns}  # nulls become NaN
    t = columns["t"].astype(np.int64)
    index = "v" not in columns
    open_ms = epoch_ms(cal.session_bounds(day).open)
    regular = np.flatnonzero(t >= open_ms)
    op = float(columns["o"][regular[0]]) if regular.size else None
    if not index:
        v = np.nan_to_num(columns["v"]).astype(np.int64)
        known_vw = ~np.isnan(columns["vw"])
        trades = np.maximum(np.where(np.isnan(columns["n"]), v, columns["n"]), 1).astype(np.int64)
        pv = v * columns["vw"]  # NaN from a minute without vwap on: the day's vwap `a` is unknown from then
        v_before = np.concatenate([[0], np.cumsum(v)[:-1]])
        pv_before = np.concatenate([[0.0], np.cumsum(pv)[:-1]])
    points_of = (
        _equity_points(symbol, day, t, columns) if bars is None and market_of(symbol) == "stocks" else [None] * len(t)
    )
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    in_window = np.flatnonzero((t + MINUTE_MS > start_ms) & (t + QUARTER_MS <= end_ms))
    for i in in_window:
        s = int(t[i])
        o, h, low, c = (float(columns[k][i]) for k in ("o", "h", "l", "c"))
        points = points_of[i] or _generic_points(o, h, low, c)
        groups = _GROUPS[4 if index else int(max(1, min(4, trades[i], v[i])))]
        events: list[tuple[str, int, dict[str, Any]]] = []
        if index:
            for a, b in groups:
                span = points[a : b + 1]
                events.append(("A", s + b * QUARTER_MS, {"o": span[0], "c": span[-1], "h": max(span), "l": min(span)}))
        else:
            spans = [points[a : b + 1] for a, b in groups]
            vwap = float(columns["vw"][i]) if known_vw[i] else (h + low + c) / 3  # only to spread the volume
            vol, counts, vwaps, scale = _allocate(
                int(v[i]), int(trades[i]), vwap, [min(p) for p in spans], [max(p) for p in spans]
            )
            cum_v, cum_pv = int(v_before[i]), float(pv_before[i])
            minute_a = round(float(pv_before[i] + pv[i]) / int(v_before[i] + v[i]), 4)
            unknown = {name for name, known in (("vw", known_vw[i]), ("a", _known(minute_a)),
                                                ("z", _known(columns["n"][i]))) if not known}
            for (_, b), span, q, n, w in zip(groups, spans, vol, counts, vwaps, strict=True):
                cum_v, cum_pv = cum_v + q, cum_pv + q * w * scale  # scale: `a` stays exact even if vw was clipped
                day_vwap = minute_a if b == 4 else round(cum_pv / cum_v, 4)  # the minute's last: same as its AM
                fields = {"v": q, "av": cum_v, "vw": round(w, 4), "o": span[0], "c": span[-1], "h": max(span),
                          "l": min(span), "a": day_vwap, "z": round(q / n)}
                events.append(("A", s + b * QUARTER_MS, _without(fields, unknown)))
        if index:
            am: dict[str, Any] = {"o": o, "c": c, "h": h, "l": low}
        else:
            cum_v = int(v_before[i] + v[i])
            am = {"v": int(v[i]), "av": cum_v, "vw": float(columns["vw"][i]), "o": o, "c": c, "h": h, "l": low,
                  "a": minute_a, "z": round(int(v[i]) / int(trades[i]))}
            am = _without(am, unknown)
        events.append(("AM", s + MINUTE_MS, am))
        for ev, e, fields in events:
            if not start_ms < e <= end_ms:
                continue
            start = s if ev == "AM" else e - QUARTER_MS
            event = _ordered(ev, symbol, fields, op if op is not None and start >= open_ms else None, start, e)
            at.setdefault(e, {})[ev] = dumps(event)
    return EventSeries(symbol, at)


def _without(fields: dict[str, Any], unknown: set[str]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if name not in unknown}


def _ordered(ev: str, symbol: str, fields: dict[str, Any], op: float | None, s: int, e: int) -> dict[str, Any]:
    """Polygon's field order: ev, sym, v, av, op, vw, o, c, h, l, a, z, s, e (absent fields skipped)."""
    event: dict[str, Any] = {"ev": ev, "sym": symbol}
    for name in ("v", "av"):
        if name in fields:
            event[name] = fields[name]
    if op is not None:
        event["op"] = op
    for name in ("vw", "o", "c", "h", "l", "a", "z"):
        if name in fields:
            event[name] = fields[name]
    event["s"], event["e"] = s, e
    return event
