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
at most), so frame counts are deterministic. The events themselves (A and AM aggregates that equal the REST
bars) are built by stream_series.py; the clock is replay_clock.py. With ``bars`` (a `BarSource`) the server
streams those bars instead of the synthetic market's: a recorded day replayed from the data dir.

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

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from spy_pipeline.sandbox import market
from spy_pipeline.sandbox.replay_clock import SimClock, epoch_ms, new_york_time
from spy_pipeline.sandbox.stream_log import ConnectionLog, Frame
from spy_pipeline.sandbox.stream_series import QUARTER_MS, BarSource, EventSeries, build_series, market_of

MARKETS = ("stocks", "options", "indices")
DATA_EVENTS = ("A", "AM")
# Channels the official client knows per market: subscribing to one the sandbox does not produce is an error.
OTHER_EVENTS = {
    "stocks": ("T", "Q", "LULD", "FMV", "NOI", "LV"),
    "options": ("T", "Q", "FMV", "LV"),
    "indices": ("V",),
}
MAX_OPTION_CONTRACTS = 1_000


def _status(status: str, message: str) -> str:
    return json.dumps([{"ev": "status", "status": status, "message": message}], separators=(",", ":"))


def _market_path(path: str) -> str:
    return path.partition("?")[0].strip("/")


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
        bars: BarSource | None = None,
    ) -> None:
        self.api_key = api_key
        self.bars = bars
        self.clock = SimClock(day, speed, start_at)
        self.day = self.clock.day
        self.end_ms = epoch_ms(self.clock.resolve(end_at)) if end_at is not None else epoch_ms(self.clock.bounds.close)
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
        self._series: dict[str, EventSeries] = {}
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
        close = new_york_time(self.end_ms).strftime("%H:%M")
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

    def _build(self, symbols: list[str]) -> dict[str, EventSeries]:
        return {s: build_series(s, self.day, self.clock.start_ms, self.end_ms, self.bars) for s in symbols}

    def _resolve_pairs(self, conn: _Conn) -> None:
        pairs = {(s, c.partition(".")[0]) for c in conn.channels for s in self._symbols(conn.log.market,
                                                                                          c.partition(".")[2])}
        conn.pairs = sorted(pairs, key=lambda p: (p[0], DATA_EVENTS.index(p[1])))
