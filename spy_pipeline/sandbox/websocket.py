"""Polygon's WebSocket protocol over the sandbox market: a real server the unmodified official client talks to.

Protocol (as Polygon and ``polygon.WebSocketClient`` 1.16.3 do it). The URL is ``ws://{host}:{port}/{market}``
with market ``stocks``, ``options`` or ``indices`` (another path is refused with HTTP 404 at the handshake;
note that the official client treats every connection error as retryable and keeps retrying with backoff).
Every frame the server sends is a JSON array of objects that carry ``ev``:

- on connect: ``[{"ev":"status","status":"connected","message":"Connected Successfully"}]``;
- ``{"action":"auth","params":KEY}`` → ``auth_success`` / ``"authenticated"``; a wrong key →
  ``auth_failed`` / ``"authentication failed"`` and the server closes (1008); the client raises ``AuthError``;
- ``{"action":"subscribe"|"unsubscribe","params":"A.SPY,AM.SPY"}`` → one status per channel,
  ``{"status":"success","message":"subscribed to: A.SPY"}`` (``unsubscribed to: ...``) or
  ``{"status":"error",...}`` for a channel the sandbox does not serve (events other than ``A``/``AM``,
  option wildcards, more than 1,000 option contracts on one connection, a malformed channel);
  a symbol the sandbox does not know is accepted and simply never streams (as on Polygon);
  ``A.*``/``AM.*`` on ``stocks`` (SPY, QQQ, IWM) and ``indices`` (I:VIX) subscribe every known symbol;
- an unknown action or a non-JSON message → ``{"status":"error"}``; anything but auth before auth → error.

Replay. A ``SimClock`` maps wall time to market time on ``day`` (from the regular open or ``start_at``,
``speed`` market seconds per wall second). The server publishes an event when the clock passes its end
``e``; an event is published to the connections subscribed at that moment, so anything published while a
client is disconnected or not yet (re)subscribed is lost, as on Polygon. Events with ``e`` in
(start, end] are streamed, end being the session close (13:00 ET on early closes) unless ``end_at`` says
otherwise. Every event of one instant goes out in one frame per connection (one frame per quarter minute
at most), so frame counts are deterministic.

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

Session end. Polygon keeps the socket open after the close (after-hours aggregates follow, then nothing);
closing is a sandbox convenience for tests: with ``close_at_session_end=True`` (default) every connection gets
``[{"ev":"status","status":"session_closed",...}]`` after the last event and a clean close (1000), which ends
the official client's ``connect()``; a connection opened after the end is closed the same way once it has
authenticated. With ``False`` the server stays up and silent after the end.

Test hooks. ``drop_every=N``: a connection carries N data frames; when the next one is due the server drops
the connection instead (TCP abort, no close frame → the client sees 1006; or a close frame with
``drop_code``, e.g. 1011) and that frame is lost. ``drop_now()`` drops every open connection.
``connections`` holds a per-connection log (frames sent and lost, messages received, subscriptions with the
market time they took effect, how the connection ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.sandbox import catalog, market

MARKETS = ("stocks", "options", "indices")
DATA_EVENTS = ("A", "AM")
# Channels the official client knows per market: subscribing to one the sandbox does not produce is an error.
OTHER_EVENTS = {
    "stocks": ("T", "Q", "LULD", "FMV", "NOI", "LV"),
    "options": ("T", "Q", "FMV", "LV"),
    "indices": ("V",),
}
MAX_OPTION_CONTRACTS = 1_000
QUARTER_MS = 60_000 // market.STEPS_PER_MINUTE
MINUTE_MS = 60_000
# Quarters [a, b) of a minute merged into one A event, by number of A events in the minute.
_GROUPS = {1: ((0, 4),), 2: ((0, 2), (2, 4)), 3: ((0, 2), (2, 3), (3, 4)), 4: ((0, 1), (1, 2), (2, 3), (3, 4))}


def _status(status: str, message: str) -> str:
    return json.dumps([{"ev": "status", "status": status, "message": message}], separators=(",", ":"))


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _market_path(path: str) -> str:
    return path.partition("?")[0].strip("/")


def _et(t_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ms / 1000, cal.NEW_YORK)


# --- the simulated clock --------------------------------------------------------------------------------


class SimClock:
    """Market time on `day`: `start_at` (default: the regular open) when started, then `speed` times wall time.

    `start_at` may be a `datetime` (naive = New York time), a `time` or "HH:MM[:SS]" in New York time.
    Before `start()` the clock stands at `start_at`.
    """

    def __init__(self, day: dt.date | str, speed: float = 60.0, start_at: dt.datetime | dt.time | str | None = None):
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.day = cal.require_trading_day(day)
        self.speed = float(speed)
        self.bounds = cal.session_bounds(self.day)
        self.start_ms = _ms(self.resolve(start_at)) if start_at is not None else _ms(self.bounds.open)
        self._wall0: float | None = None

    def resolve(self, moment: dt.datetime | dt.time | str) -> dt.datetime:
        if isinstance(moment, str):
            moment = dt.time.fromisoformat(moment)
        if isinstance(moment, dt.time):
            moment = dt.datetime.combine(self.day, moment)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=cal.NEW_YORK)
        if moment.astimezone(cal.NEW_YORK).date() != self.day:
            raise ValueError(f"start_at {moment} is not on {self.day}")
        return moment

    def start(self, wall: float | None = None) -> None:
        """Start the clock now (or at monotonic time `wall`); a second call does nothing."""
        if self._wall0 is None:
            self._wall0 = time.monotonic() if wall is None else wall

    @property
    def started(self) -> bool:
        return self._wall0 is not None

    def now_ms(self) -> int:
        if self._wall0 is None:
            return self.start_ms
        return self.start_ms + int((time.monotonic() - self._wall0) * self.speed * 1000)

    def now(self) -> dt.datetime:
        """The market time, New York time zone."""
        return _et(self.now_ms())

    def wall_at(self, market_ms: int) -> float:
        """The monotonic wall time at which the clock reaches `market_ms` (the clock must be started)."""
        if self._wall0 is None:
            raise RuntimeError("the clock is not started")
        return self._wall0 + (market_ms - self.start_ms) / (self.speed * 1000)


# --- events of one symbol --------------------------------------------------------------------------------


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
class _Series:
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


def build_series(symbol: str, day: dt.date, start_ms: int, end_ms: int) -> _Series:
    """Every A and AM event of `symbol` on `day` with start_ms < e <= end_ms (see the module docstring)."""
    frame = catalog.minute_bars(symbol, day)
    at: dict[int, dict[str, str]] = {}
    if frame.height == 0:
        return _Series(symbol, at)
    bars = {name: frame[name].to_numpy() for name in frame.columns}
    t = bars["t"].astype(np.int64)
    index = "v" not in bars
    open_ms = _ms(cal.session_bounds(day).open)
    regular = np.flatnonzero(t >= open_ms)
    op = float(bars["o"][regular[0]]) if regular.size else None
    if not index:
        v = bars["v"].astype(np.int64)
        pv = bars["v"] * bars["vw"]
        v_before = np.concatenate([[0], np.cumsum(v)[:-1]])
        pv_before = np.concatenate([[0.0], np.cumsum(pv)[:-1]])
    points_of = (
        _equity_points(symbol, day, t, bars) if market_of(symbol) == "stocks" else [None] * len(t)
    )
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    in_window = np.flatnonzero((t + MINUTE_MS > start_ms) & (t + QUARTER_MS <= end_ms))
    for i in in_window:
        s = int(t[i])
        o, h, low, c = (float(bars[k][i]) for k in ("o", "h", "l", "c"))
        points = points_of[i] or _generic_points(o, h, low, c)
        groups = _GROUPS[4 if index else int(min(4, bars["n"][i], v[i]))]
        events: list[tuple[str, int, dict[str, Any]]] = []
        if index:
            for a, b in groups:
                span = points[a : b + 1]
                events.append(("A", s + b * QUARTER_MS, {"o": span[0], "c": span[-1], "h": max(span), "l": min(span)}))
        else:
            spans = [points[a : b + 1] for a, b in groups]
            vol, trades, vwaps, scale = _allocate(
                int(v[i]), int(bars["n"][i]), float(bars["vw"][i]), [min(p) for p in spans], [max(p) for p in spans]
            )
            cum_v, cum_pv = int(v_before[i]), float(pv_before[i])
            minute_a = round(float(pv_before[i] + pv[i]) / int(v_before[i] + v[i]), 4)
            for (_, b), span, q, n, w in zip(groups, spans, vol, trades, vwaps, strict=True):
                cum_v, cum_pv = cum_v + q, cum_pv + q * w * scale  # scale: `a` stays exact even if vw was clipped
                day_vwap = minute_a if b == 4 else round(cum_pv / cum_v, 4)  # the minute's last: same as its AM
                fields = {"v": q, "av": cum_v, "vw": round(w, 4), "o": span[0], "c": span[-1], "h": max(span),
                          "l": min(span), "a": day_vwap, "z": round(q / n)}
                events.append(("A", s + b * QUARTER_MS, fields))
        if index:
            am: dict[str, Any] = {"o": o, "c": c, "h": h, "l": low}
        else:
            cum_v = int(v_before[i] + v[i])
            am = {"v": int(v[i]), "av": cum_v, "vw": float(bars["vw"][i]), "o": o, "c": c, "h": h, "l": low,
                  "a": minute_a, "z": round(int(v[i]) / int(bars["n"][i]))}
        events.append(("AM", s + MINUTE_MS, am))
        for ev, e, fields in events:
            if not start_ms < e <= end_ms:
                continue
            start = s if ev == "AM" else e - QUARTER_MS
            event = _ordered(ev, symbol, fields, op if op is not None and start >= open_ms else None, start, e)
            at.setdefault(e, {})[ev] = dumps(event)
    return _Series(symbol, at)


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


# --- per-connection log ----------------------------------------------------------------------------------


@dataclass
class Frame:
    """One frame the server sent (or would have sent, for a lost one)."""

    wall: float  # time.monotonic() when written
    market_ms: int  # market time: the events' end for a data frame, the clock for a status frame
    kind: Literal["status", "data"]
    text: str

    def items(self) -> list[dict[str, Any]]:
        return json.loads(self.text)


@dataclass
class ConnectionLog:
    """What happened on one connection, for tests. Written by the server thread; read it once things settle."""

    id: int
    market: str
    opened_market_ms: int
    authenticated: bool = False
    subscriptions: dict[str, int] = field(default_factory=dict)  # channel -> market ms it took effect (current)
    subscribed: list[tuple[int, str]] = field(default_factory=list)  # (market ms, channel), every subscription
    sent: list[Frame] = field(default_factory=list)
    lost: list[Frame] = field(default_factory=list)  # data frames due when the connection was dropped
    received: list[str] = field(default_factory=list)
    ended_by: str | None = None  # "drop", "session_end", "auth_failed", "server_stop" or "client"
    ended_market_ms: int | None = None

    @property
    def data_frames(self) -> list[Frame]:
        return [f for f in self.sent if f.kind == "data"]

    def events(self, ev: str | None = None, sym: str | None = None) -> list[dict[str, Any]]:
        """Data events sent on this connection, in order."""
        return [
            item
            for frame in self.data_frames
            for item in frame.items()
            if (ev is None or item["ev"] == ev) and (sym is None or item["sym"] == sym)
        ]


@dataclass
class _Conn:
    ws: ServerConnection
    log: ConnectionLog
    queue: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    channels: set[str] = field(default_factory=set)
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (symbol, ev) resolved from channels, sorted
    data_count: int = 0
    alive: bool = True


# --- the server ------------------------------------------------------------------------------------------


class SandboxStream:
    """Polygon's WebSocket feed for one day of the sandbox market, served from a background thread.

    >>> with SandboxStream("key", "2025-01-08", speed=600, start_at="15:50") as stream:
    ...     client = polygon.WebSocketClient(api_key="key", feed=stream.feed, market="stocks", secure=False,
    ...                                      subscriptions=["AM.SPY"])
    """

    def __init__(
        self,
        api_key: str,
        day: dt.date | str,
        speed: float = 60.0,
        host: str = "127.0.0.1",
        port: int = 0,
        start_at: dt.datetime | dt.time | str | None = None,
        drop_every: int | None = None,
        markets: Iterable[str] = MARKETS,
        *,
        end_at: dt.datetime | dt.time | str | None = None,
        close_at_session_end: bool = True,
        clock_start: Literal["start", "subscribe"] = "start",
        drop_code: int | None = None,
    ) -> None:
        self.api_key = api_key
        self.clock = SimClock(day, speed, start_at)
        self.day = self.clock.day
        self.end_ms = _ms(self.clock.resolve(end_at)) if end_at is not None else _ms(self.clock.bounds.close)
        self.markets = tuple(markets)
        unknown = set(self.markets) - set(MARKETS)
        if unknown:
            raise ValueError(f"unknown markets {sorted(unknown)}: the sandbox serves {MARKETS}")
        if drop_every is not None and drop_every < 1:
            raise ValueError("drop_every must be at least 1")
        if clock_start not in ("start", "subscribe"):
            raise ValueError("clock_start must be 'start' or 'subscribe'")
        self.drop_every = drop_every
        self.drop_code = drop_code
        self.close_at_session_end = close_at_session_end
        self.clock_start = clock_start
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._logs: list[ConnectionLog] = []
        self._conns: list[_Conn] = []
        self._series: dict[str, _Series] = {}
        self.errors: list[BaseException] = []
        self.ended = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._bound: tuple[str, int] | None = None
        self._stop_event: asyncio.Event | None = None
        self._clock_started: asyncio.Event | None = None

    # lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> SandboxStream:
        if self._thread is not None:
            raise RuntimeError("the stream is already running")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="polygon-ws-sandbox", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._bound is None:
            self.stop()
            raise RuntimeError(f"the WebSocket sandbox did not start: {self.errors}")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and self._stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop_event.set)
        if thread is not None:
            thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> SandboxStream:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def feed(self) -> str:
        """`host:port`, the official client's `feed`."""
        if self._bound is None:
            raise RuntimeError("the stream is not running")
        return f"{self._bound[0]}:{self._bound[1]}"

    def url_for(self, market_name: str) -> str:
        if market_name not in self.markets:
            raise ValueError(f"market {market_name!r} is not served (serving {self.markets})")
        return f"ws://{self.feed}/{market_name}"

    def now(self) -> dt.datetime:
        return self.clock.now()

    # test hooks -----------------------------------------------------------------------------------------

    @property
    def connections(self) -> list[ConnectionLog]:
        with self._lock:
            return list(self._logs)

    def sent_events(self, ev: str | None = None, sym: str | None = None) -> list[dict[str, Any]]:
        """Data events sent on every connection, connection by connection."""
        return [event for log in self.connections for event in log.events(ev, sym)]

    def drop_now(self, code: int | None = None) -> None:
        """Drop every open connection abnormally (TCP abort, or a close frame with `code`, e.g. 1011)."""
        if self._loop is None:
            raise RuntimeError("the stream is not running")
        future = asyncio.run_coroutine_threadsafe(self._drop_all(code), self._loop)
        future.result(timeout=5)

    def preload(self, *symbols: str) -> None:
        """Build the events of `symbols` now (a subscription builds missing ones, which takes ~5 ms a symbol)."""
        self._series.update(self._build([s for s in symbols if s not in self._series]))

    def wait_ended(self, timeout: float) -> bool:
        """Wait until the last event was published (and, with close_at_session_end, connections closed)."""
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.ended

    # the event loop -------------------------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        except BaseException as exc:  # reported through `errors`: the thread must not die silently
            self.errors.append(exc)
        finally:
            ready.set()
            loop.close()

    async def _main(self, ready: threading.Event) -> None:
        self._stop_event = asyncio.Event()
        self._clock_started = asyncio.Event()
        async with serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._check_path,
            close_timeout=2,
            ping_interval=None,
        ) as server:
            self._server = server
            self._bound = server.sockets[0].getsockname()[:2]
            if self.clock_start == "start":
                self._start_clock()
            broadcaster = asyncio.create_task(self._broadcast())
            ready.set()
            await self._stop_event.wait()
            broadcaster.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await broadcaster
            for conn in list(self._conns):
                self._finish(conn, "server_stop")
            server.close(close_connections=True)
            await server.wait_closed()

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if _market_path(request.path) in self.markets:
            return None
        return connection.respond(HTTPStatus.NOT_FOUND, f"unknown market; serving {', '.join(self.markets)}\n")

    def _start_clock(self) -> None:
        self.clock.start()
        assert self._clock_started is not None
        self._clock_started.set()

    async def _broadcast(self) -> None:
        assert self._clock_started is not None
        await self._clock_started.wait()
        q = (self.clock.start_ms // QUARTER_MS + 1) * QUARTER_MS
        while q <= self.end_ms:
            delay = self.clock.wall_at(q) - time.monotonic()
            await asyncio.sleep(max(delay, 0.0))
            self._publish(q)
            q += QUARTER_MS
        if self.close_at_session_end:
            for conn in list(self._conns):
                self._end_session(conn)
        self.ended = True

    def _publish(self, q: int) -> None:
        cache: dict[str, dict[str, str] | None] = {}
        for conn in self._conns:
            if not conn.alive or not conn.pairs:
                continue
            parts = []
            for symbol, ev in conn.pairs:
                if symbol not in cache:
                    series = self._series.get(symbol)
                    cache[symbol] = series.at.get(q) if series is not None else None
                events = cache[symbol]
                if events is not None and ev in events:
                    parts.append(events[ev])
            if parts:
                conn.queue.put_nowait(("data", q, "[" + ",".join(parts) + "]"))

    def _end_session(self, conn: _Conn) -> None:
        close = _et(self.end_ms).strftime("%H:%M")
        message = f"sandbox: the session ended at {close} ET; Polygon would keep the socket open"
        conn.queue.put_nowait(("status", _status("session_closed", message)))
        conn.queue.put_nowait(("close", 1000, "session closed", "session_end"))

    # one connection -------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        with self._lock:
            log = ConnectionLog(id=len(self._logs) + 1, market=_market_path(ws.request.path),
                                opened_market_ms=self.clock.now_ms())
            self._logs.append(log)
        conn = _Conn(ws, log)
        self._conns.append(conn)
        writer = asyncio.create_task(self._write(conn))
        conn.queue.put_nowait(("status", _status("connected", "Connected Successfully")))
        try:
            async for message in ws:
                log.received.append(message if isinstance(message, str) else message.decode(errors="replace"))
                if conn.alive:
                    await self._on_message(conn, log.received[-1])
        except ConnectionClosed:
            pass
        except Exception as exc:  # a sandbox bug: keep it visible to tests
            self.errors.append(exc)
            raise
        finally:
            self._finish(conn, "client")
            with contextlib.suppress(ValueError):
                self._conns.remove(conn)
            if not writer.done():
                writer.cancel()

    def _finish(self, conn: _Conn, why: str) -> None:
        conn.alive = False
        if conn.log.ended_by is None:
            conn.log.ended_by = why
            conn.log.ended_market_ms = self.clock.now_ms()

    async def _write(self, conn: _Conn) -> None:
        ws, log = conn.ws, conn.log
        try:
            while True:
                item = await conn.queue.get()
                kind = item[0]
                if kind == "close":
                    _, code, reason, why = item
                    self._finish(conn, why)
                    await ws.close(code, reason)
                    return
                if kind == "drop":
                    await self._drop(conn, item[1])
                    return
                if kind == "data":
                    _, q, text = item
                    if not conn.alive:
                        continue
                    if self.drop_every is not None and conn.data_count >= self.drop_every:
                        log.lost.append(Frame(time.monotonic(), q, "data", text))
                        await self._drop(conn, self.drop_code)
                        return
                    conn.data_count += 1
                    await ws.send(text)
                    log.sent.append(Frame(time.monotonic(), q, "data", text))
                else:
                    await ws.send(item[1])
                    log.sent.append(Frame(time.monotonic(), self.clock.now_ms(), "status", item[1]))
        except ConnectionClosed:
            self._finish(conn, "client")

    async def _drop(self, conn: _Conn, code: int | None) -> None:
        self._finish(conn, "drop")
        while not conn.queue.empty():  # data published after the dropping one is lost too
            item = conn.queue.get_nowait()
            if item[0] == "data":
                conn.log.lost.append(Frame(time.monotonic(), item[1], "data", item[2]))
        if code is None:
            conn.ws.transport.abort()
        else:
            await conn.ws.close(code, "sandbox drop")

    async def _drop_all(self, code: int | None) -> None:
        for conn in list(self._conns):
            if conn.alive:
                conn.queue.put_nowait(("drop", code))

    async def _on_message(self, conn: _Conn, message: str) -> None:
        try:
            request = json.loads(message)
            action, params = request["action"], request.get("params", "")
            if not isinstance(action, str) or not isinstance(params, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            conn.queue.put_nowait(("status", _status("error", f"invalid message: {message[:200]}")))
            return
        if action == "auth":
            if params == self.api_key:
                conn.log.authenticated = True
                conn.queue.put_nowait(("status", _status("auth_success", "authenticated")))
                if self.ended and self.close_at_session_end:
                    self._end_session(conn)
            else:
                conn.queue.put_nowait(("status", _status("auth_failed", "authentication failed")))
                conn.queue.put_nowait(("close", 1008, "authentication failed", "auth_failed"))
                conn.alive = False
            return
        if action not in ("subscribe", "unsubscribe"):
            conn.queue.put_nowait(("status", _status("error", f"unknown action: {action}")))
            return
        if not conn.log.authenticated:
            conn.queue.put_nowait(("status", _status("error", "not authorized: authenticate first")))
            return
        channels = [c.strip() for c in params.split(",") if c.strip()]
        if action == "subscribe":
            await self._subscribe(conn, channels)
        else:
            self._unsubscribe(conn, channels)

    def _check_channel(self, conn: _Conn, channel: str, contracts: set[str]) -> str | None:
        """Why `channel` cannot be subscribed on this connection (None if it can)."""
        ev, _, symbol = channel.partition(".")
        if not symbol:
            return f"invalid channel: {channel}"
        if ev in OTHER_EVENTS.get(conn.log.market, ()):
            return f"sandbox streams only A and AM aggregates, not {ev}: {channel}"
        if ev not in DATA_EVENTS:
            return f"unknown channel for {conn.log.market}: {channel}"
        if symbol == "*" and conn.log.market == "options":
            return f"wildcard option subscriptions are not supported by the sandbox: {channel}"
        if conn.log.market == "options" and symbol not in contracts and len(contracts) >= MAX_OPTION_CONTRACTS:
            return f"max option contracts per connection ({MAX_OPTION_CONTRACTS}) reached: {channel}"
        return None

    async def _subscribe(self, conn: _Conn, channels: list[str]) -> None:
        contracts = {c.partition(".")[2] for c in conn.channels} if conn.log.market == "options" else set()
        accepted, replies = [], []
        for channel in channels:
            problem = self._check_channel(conn, channel, contracts)
            if problem is not None:
                replies.append(("error", problem))
                continue
            symbol = channel.partition(".")[2]
            if conn.log.market == "options":
                contracts.add(symbol)
            accepted.append(channel)
            replies.append(("success", f"subscribed to: {channel}"))
        symbols = {s for c in accepted for s in self._symbols(conn.log.market, c.partition(".")[2])}
        missing = sorted(s for s in symbols if s not in self._series)
        if missing:
            built = await asyncio.to_thread(self._build, missing)
            self._series.update(built)
        if accepted and self.clock_start == "subscribe" and not self.clock.started:
            self._start_clock()
        now = self.clock.now_ms()
        for channel in accepted:
            conn.channels.add(channel)
            conn.log.subscriptions.setdefault(channel, now)
            conn.log.subscribed.append((now, channel))
        self._resolve_pairs(conn)
        for status, message in replies:
            conn.queue.put_nowait(("status", _status(status, message)))

    def _unsubscribe(self, conn: _Conn, channels: list[str]) -> None:
        for channel in channels:
            conn.channels.discard(channel)
            conn.log.subscriptions.pop(channel, None)
            conn.queue.put_nowait(("status", _status("success", f"unsubscribed to: {channel}")))
        self._resolve_pairs(conn)

    def _symbols(self, market_name: str, symbol: str) -> list[str]:
        if symbol != "*":
            return [symbol] if market_of(symbol) == market_name else []
        return {"stocks": sorted(market.PROFILES), "indices": [market.VIX_TICKER]}.get(market_name, [])

    def _build(self, symbols: list[str]) -> dict[str, _Series]:
        return {s: build_series(s, self.day, self.clock.start_ms, self.end_ms) for s in symbols}

    def _resolve_pairs(self, conn: _Conn) -> None:
        pairs = {(s, c.partition(".")[0]) for c in conn.channels for s in self._symbols(conn.log.market,
                                                                                          c.partition(".")[2])}
        conn.pairs = sorted(pairs, key=lambda p: (p[0], DATA_EVENTS.index(p[1])))
