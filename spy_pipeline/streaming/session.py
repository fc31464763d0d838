"""One streaming session: the official WebSocket client per market, a MicroBatcher, heartbeats, REST gap fills.

`run_stream_session(config, root, clock=..., rest=..., stop_event=...)` blocks until the session's close
(early closes included, plus `close_grace_seconds` of market time for the last bar) or until `stop_event` is
set (a terminated Dagster run sets it), then flushes and returns a `StreamResult`.

Connections: one official `WebSocketClient` (unmodified, via spy_pipeline.polygon.websocket) for ``stocks``,
one for ``indices`` and one per 1,000 option contracts, each subscribed to ``AM.<symbol>``. The client
reconnects by itself on an abnormal close (re-authenticating and re-subscribing); when it gives up or the
server closes cleanly before the close, the session starts a new client after a backoff.

Gaps. Data published while a connection is down is lost. Every connection keeps a watermark: the end of the
last AM bar it delivered (at the start: `fill_from`, default the clock's minute when the session starts).
When a new connection object appears (the client's ``websocket`` changes: the first connect or a reconnect),
the next AM frame it delivers tells what is covered again: with E the latest bar end in it, the bars of that
connection's symbols with watermark - 1 min <= s < E are fetched with `PolygonClient.minute_bars` and fed to
the batcher, whose de-duplication removes the overlap (a minute's bars of many contracts can span frames, so
the watermark's own minute is fetched again; a late bar in the frame does not shorten the gap). A connection
still down at the close is filled up to the close. A symbol whose fill fails is logged and tried once more
at the close; `Gap.failed` lists what stayed unfilled.

Restarts. A session started on a day that already had one resumes from the previous session's connections as
its heartbeat recorded them (last bar end one minute back, or its earliest unfilled gap) and treats the
day's landed batches as landed, so nothing is fetched or landed twice.

News. With `news_tickers` the session polls REST news every `news_poll_seconds` of market time (there is
no news stream; see news_poll.py) and once more at the close.

A connection that never opens (the official client retries a refused connection forever) fails the
session after `connect_timeout_seconds` with StreamConnectError naming the feed and markets.

Time. `clock.now()` (an aware datetime) is the market's "now": the wall clock in production, the sandbox's
`SimClock` in simulations, so a day replayed at 600x ends by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.market_clock import Clock, WallClock
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.logs import get_logger
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.websocket import (
    POLYGON_FEED,
    WebSocketAuthError,
    WebSocketClient,
    connection_of,
    is_open,
    websocket_client,
)
from spy_pipeline.streaming.batches import MINUTE_MS, SOURCES, STREAM_DATASET, BatcherStats, MicroBatcher
from spy_pipeline.streaming.compact import compact_day
from spy_pipeline.streaming.news_poll import NewsPoller

log = get_logger(__name__)
MAX_OPTION_CONTRACTS = 1_000
STOP_TIMEOUT_SECONDS = 60.0  # an interrupted session gets this long to land its buffer
OnLanded = Callable[[str, pl.DataFrame], None]  # (source, the MINUTE_BARS rows that just landed)


class StreamConnectError(ConnectionError):
    """No connection could be opened: the official client retries a refused connection forever."""


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


@dataclass(frozen=True)
class StreamConfig:
    day: dt.date
    api_key: str = field(repr=False)
    feed: str = POLYGON_FEED  # host[:port]
    secure: bool = True
    stocks: tuple[str, ...] = ("SPY",)
    indices: tuple[str, ...] = ("I:VIX",)
    options: tuple[str, ...] = ()
    flush_seconds: float = 5.0  # wall seconds between time-based flushes
    flush_records: int = 5_000  # a source's buffer lands at once at this size
    heartbeat_seconds: float = 5.0  # wall seconds
    close_grace_seconds: float = 60.0  # market seconds after the close before stopping
    fill_from: dt.datetime | None = None  # default: the clock's minute at the start
    max_reconnects: int | None = 5  # per client; then a new client after a backoff
    backoff_seconds: tuple[float, float] = (0.5, 10.0)  # first and largest wait between clients
    tick_seconds: float = 0.05
    connect_timeout_seconds: float = 60.0  # wall seconds for the first connection of each market
    news_tickers: tuple[str, ...] = ()  # polled over REST (there is no news stream)
    news_poll_seconds: float = 60.0  # market seconds between polls

    def connections(self) -> list[tuple[str, tuple[str, ...]]]:
        """(market, symbols) of every connection: options split by 1,000 contracts."""
        plan: list[tuple[str, tuple[str, ...]]] = []
        if self.stocks:
            plan.append(("stocks", tuple(self.stocks)))
        if self.indices:
            plan.append(("indices", tuple(self.indices)))
        contracts = tuple(dict.fromkeys(self.options))
        for i in range(0, len(contracts), MAX_OPTION_CONTRACTS):
            plan.append(("options", contracts[i : i + MAX_OPTION_CONTRACTS]))
        return plan


@dataclass
class Gap:
    connection: int
    market: str
    from_ms: int  # bars with from_ms <= s < to_ms were fetched from REST
    to_ms: int
    rows: int = 0
    filled: bool = False
    failed: list[str] = field(default_factory=list)  # symbols whose REST fetch failed


@dataclass
class _Connection:
    index: int
    market: str
    symbols: tuple[str, ...]
    watermark_ms: int
    client: WebSocketClient | None = None
    ws: object | None = None
    connects: int = 0
    messages: int = 0
    last_event_ms: int | None = None
    gap_from: int | None = None
    clean_end: bool = False

    @property
    def state(self) -> str:
        if self.clean_end:
            return "closed"
        ws = connection_of(self.client)
        if ws is None:
            return "connecting"
        return "connected" if is_open(ws) else "reconnecting"

    def describe(self, unfilled_from_ms: int | None = None) -> dict[str, Any]:
        return {"market": self.market, "symbols": len(self.symbols), "state": self.state,
                "connects": self.connects, "messages": self.messages, "last_event": _iso(self.last_event_ms),
                "unfilled_from": _iso(unfilled_from_ms)}


@dataclass
class StreamResult:
    day: dt.date
    reason: str  # "session_close" or "stopped"
    stats: BatcherStats
    files: list[str]
    gaps: list[Gap]
    connections: list[dict[str, Any]]
    heartbeats: int
    wall_seconds: float
    rest_rows: int = 0
    heartbeat_path: str = ""
    news_polls: int = 0
    news_articles: int = 0


def heartbeat_path(root: DataRoot, day: dt.date) -> str:
    return f"{root.dataset_path(STREAM_DATASET)}/_heartbeat/{day.isoformat()}.json"


def read_heartbeat(root: DataRoot, day: dt.date) -> dict[str, Any] | None:
    path = heartbeat_path(root, day)
    if not root.exists(path):
        return None
    with root.fs.open_input_stream(path) as handle:
        return json.loads(handle.readall())


class _Session:
    def __init__(self, config: StreamConfig, root: DataRoot, clock: Clock, rest: PolygonClient | None,
                 stop_event: threading.Event, on_landed: OnLanded | None = None) -> None:
        self.config, self.root, self.clock, self.rest, self.stop_event = config, root, clock, rest, stop_event
        self.day = cal.require_trading_day(config.day)
        bounds = cal.session_bounds(self.day)
        self.close_ms = _ms(bounds.close)
        self.on_landed = on_landed
        self.batcher = MicroBatcher(root, self.day, flush_seconds=config.flush_seconds,
                                    flush_records=config.flush_records, now_ms=self.now_ms, on_landed=on_landed)
        start = config.fill_from or clock.now()
        start_ms = max(_ms(start) // MINUTE_MS * MINUTE_MS, _ms(bounds.pre_market_open))
        self.conns = [_Connection(i, m, s, start_ms) for i, (m, s) in enumerate(config.connections())]
        self._resume(read_heartbeat(root, self.day))
        self.gaps: list[Gap] = []
        self.rest_rows = 0
        self.heartbeats = 0
        self.state = "connecting"
        self._fills: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.heartbeat_path = heartbeat_path(root, self.day)
        self.news = NewsPoller(rest, root, self.day, config.news_tickers) if rest and config.news_tickers else None
        self._news_task: asyncio.Task[None] | None = None
        self._next_news_ms = 0

    def _resume(self, beat: dict[str, Any] | None) -> None:
        """A session restarted on the same day continues where the previous one's connections stopped (their
        last bar end, one minute back, or its earliest gap left unfilled), not from `fill_from`; the batcher
        learns what already landed so the overlap is not landed twice."""
        previous = (beat or {}).get("connections") or []
        if len(previous) != len(self.conns):
            return  # another connection plan: start from fill_from
        for conn, before in zip(self.conns, previous, strict=True):
            if before.get("market") != conn.market or before.get("symbols") != len(conn.symbols):
                continue
            if not before.get("last_event"):
                continue
            resumed = _ms(dt.datetime.fromisoformat(before["last_event"])) - MINUTE_MS
            if (unfilled := before.get("unfilled_from")) is not None:
                resumed = min(resumed, _ms(dt.datetime.fromisoformat(unfilled)))
            conn.watermark_ms = max(conn.watermark_ms, resumed)
        for source in SOURCES:
            landed = compact_day(self.root, source, self.day)
            self.batcher.remember(landed)
            if self.on_landed is not None and landed.height:  # the live scanner starts from the day so far
                self.on_landed(source, landed)

    def now_ms(self) -> int:
        return _ms(self.clock.now())

    def past_close(self) -> bool:
        return self.now_ms() >= self.close_ms

    # the main loop --------------------------------------------------------------------------------------

    async def run(self) -> str:
        tasks = [asyncio.create_task(self._run_connection(c), name=f"ws-{c.market}-{c.index}") for c in self.conns]
        grace_ms = int(self.config.close_grace_seconds * 1000)
        next_beat = 0.0
        reason = "session_close"
        failure: BaseException | None = None
        connect_deadline = time.monotonic() + self.config.connect_timeout_seconds
        try:
            while True:
                for conn in self.conns:
                    self._observe(conn)
                if time.monotonic() > connect_deadline and (waiting := [c for c in self.conns if c.connects == 0]):
                    failure = StreamConnectError(
                        f"no connection to {self.config.feed} for {', '.join(c.market for c in waiting)} within "
                        f"{self.config.connect_timeout_seconds:g} s"
                    )
                    reason = "failed"
                    break
                if self.stop_event.is_set():
                    reason = "stopped"
                    break
                if self.now_ms() >= self.close_ms + grace_ms:
                    break
                finished = [t for t in tasks if t.done()]
                errors = [t.exception() for t in finished if not t.cancelled() and t.exception() is not None]
                if errors:
                    failure = errors[0]
                    reason = "failed"
                    break
                if len(finished) == len(tasks) and self.past_close():
                    break
                self.batcher.maybe_flush()
                self._maybe_poll_news()
                if time.monotonic() >= next_beat:
                    self._heartbeat()
                    next_beat = time.monotonic() + self.config.heartbeat_seconds
                await asyncio.sleep(self.config.tick_seconds)
        finally:
            self._stopping = True
            await self._shutdown(tasks)
        if reason == "session_close":
            self._fill_at_close()
            await self._wait_fills()
            self._retry_failed_fills()
            await self._wait_fills()
        await self._final_news_poll(reason)
        self.batcher.close()
        self.state = {"session_close": "closed"}.get(reason, reason)
        self._heartbeat()
        if failure is not None:
            raise failure
        return reason

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        for conn in self.conns:
            if conn.client is not None and connection_of(conn.client) is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.client.close(), 2)
        _, pending = await asyncio.wait(tasks, timeout=2) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await self._wait_fills()

    async def _wait_fills(self) -> None:
        while self._fills:
            await asyncio.gather(*list(self._fills), return_exceptions=True)

    async def _run_connection(self, conn: _Connection) -> None:
        first, largest = self.config.backoff_seconds
        delay = first
        while not self._stopping:
            conn.client = websocket_client(self.config.api_key, self.config.feed, conn.market, self.config.secure,
                                           conn.symbols, self.config.max_reconnects,
                                           schemas=getattr(self.rest, "schemas", None))  # a replay has none
            conn.clean_end = False

            async def processor(messages: list[Any], conn: _Connection = conn) -> None:
                self._process(conn, messages)

            try:
                await conn.client.connect(processor)
                conn.clean_end = True
            except WebSocketAuthError:
                raise
            except Exception as exc:  # the client gave up reconnecting: a new one after the backoff
                log.warning("stream_connection_lost", market=conn.market, error=repr(exc))
            if self._stopping or self.past_close():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, largest)

    def _observe(self, conn: _Connection) -> None:
        """Notice a new connection object (first connect or reconnect): what follows the watermark is a gap."""
        ws = connection_of(conn.client)
        if ws is not None and ws is not conn.ws:
            conn.ws = ws
            conn.connects += 1
            if conn.gap_from is None:
                conn.gap_from = conn.watermark_ms - MINUTE_MS

    def _process(self, conn: _Connection, messages: list[Any]) -> None:
        self._observe(conn)
        conn.messages += len(messages)
        self.batcher.add_many(messages)
        ends = [e for m in messages if isinstance(e := getattr(m, "end_timestamp", None), int)
                and getattr(getattr(m, "event_type", None), "value", getattr(m, "event_type", None)) == "AM"]
        if not ends:
            return
        if conn.gap_from is not None:
            # missed: bars starting in [gap_from, E - 1 min); the bar ending at E is fetched too (overlap)
            self._schedule_fill(conn, conn.symbols, conn.gap_from, max(ends) - MINUTE_MS, overlap_ms=MINUTE_MS)
            conn.gap_from = None
        conn.watermark_ms = max(conn.watermark_ms, max(ends))
        conn.last_event_ms = conn.watermark_ms

    # REST fills -----------------------------------------------------------------------------------------

    def _schedule_fill(
        self, conn: _Connection, symbols: tuple[str, ...], from_ms: int, to_ms: int, overlap_ms: int = 0
    ) -> None:
        """Bars of `symbols` starting in [from_ms, to_ms) were missed: fetch [from_ms, to_ms + overlap_ms)."""
        if to_ms <= from_ms:
            return
        gap = Gap(conn.index, conn.market, from_ms, to_ms + overlap_ms)
        self.gaps.append(gap)
        if self.rest is None:
            return
        task = asyncio.create_task(asyncio.to_thread(self._fill, symbols, gap))
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    def _fill_at_close(self) -> None:
        """A connection whose last bar ends before the close may have lost the end (a reconnect too short for
        the monitor to see, or still down): fill from its watermark (one REST call per symbol of it)."""
        for conn in self.conns:
            start = conn.gap_from if conn.gap_from is not None else conn.watermark_ms - MINUTE_MS
            if start < self.close_ms:
                self._schedule_fill(conn, conn.symbols, start, self.close_ms)

    def _retry_failed_fills(self) -> None:
        for gap in [g for g in self.gaps if g.failed]:
            symbols, gap.failed = tuple(gap.failed), []
            self._schedule_fill(self.conns[gap.connection], symbols, gap.from_ms, gap.to_ms)

    def _fill(self, symbols: tuple[str, ...], gap: Gap) -> None:
        assert self.rest is not None
        rows = 0
        for symbol in symbols:
            if self.stop_event.is_set():  # stopping: the rest stays unfilled, for a restarted session to fetch
                gap.failed.extend(symbols[symbols.index(symbol):])
                log.warning("stream_gap_fill_abandoned", market=gap.market, start=_iso(gap.from_ms), rows=rows)
                return
            try:
                frame = self.rest.minute_bars(symbol, self.day, self.day)
            except Exception as exc:  # the others still get filled; this one is tried again at the close
                gap.failed.append(symbol)
                log.warning("stream_gap_fill_failed", symbol=symbol, start=_iso(gap.from_ms), error=repr(exc))
                continue
            window = frame.filter((frame["t"] >= gap.from_ms) & (frame["t"] < gap.to_ms))
            messages = [
                {"ev": "AM", "sym": symbol, "o": r["o"], "h": r["h"], "l": r["l"], "c": r["c"], "v": r["v"],
                 "vw": r["vw"], "n": r["n"], "s": r["t"], "e": r["t"] + MINUTE_MS}
                for r in window.iter_rows(named=True)
            ]
            rows += len(messages)
            self.batcher.add_many(messages, from_rest=True)
        gap.rows, gap.filled = rows, not gap.failed
        self.rest_rows += rows
        log.info("stream_gap_filled", market=gap.market, start=_iso(gap.from_ms), end=_iso(gap.to_ms), rows=rows)

    # news -------------------------------------------------------------------------------------------------

    def _maybe_poll_news(self) -> None:
        if self.news is None or (self._news_task is not None and not self._news_task.done()):
            return
        now_ms = self.now_ms()
        if now_ms < self._next_news_ms:
            return
        self._next_news_ms = now_ms + int(self.config.news_poll_seconds * 1000)
        self._news_task = asyncio.create_task(asyncio.to_thread(self._poll_news))

    def _poll_news(self) -> None:
        assert self.news is not None
        try:
            self.news.poll(self.clock.now())
        except Exception as exc:  # the window stays unpolled: the next poll asks for it again
            log.warning("stream_news_poll_failed", error=repr(exc))

    async def _final_news_poll(self, reason: str) -> None:
        if self._news_task is not None:
            await asyncio.gather(self._news_task, return_exceptions=True)
        if self.news is not None and reason == "session_close":
            await asyncio.to_thread(self._poll_news)

    def _unfilled_from(self, conn: _Connection) -> int | None:
        """The start of the connection's earliest gap not (yet) filled: where a restarted session must resume."""
        starts = [g.from_ms for g in self.gaps if g.connection == conn.index and not g.filled]
        return min(starts, default=None)

    # heartbeat ------------------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        if not self._stopping:
            states = {c.state for c in self.conns}
            self.state = "streaming" if states <= {"connected", "closed"} else (
                "connecting" if states == {"connecting"} else "reconnecting")
        stats = self.batcher.stats
        beat = {
            "day": self.day.isoformat(),
            "state": self.state,
            "messages": stats.messages,
            "last_event_time": _iso(stats.last_event_ms),
            "market_time": _iso(self.now_ms()),
            "updated_at": dt.datetime.now(dt.UTC).isoformat(),
            "buffered": self.batcher.buffered,
            "counts": stats.as_dict(),
            "rest_rows": self.rest_rows,
            "gaps": len(self.gaps),
            "news_articles": self.news.landed if self.news else 0,
            "connections": [c.describe(self._unfilled_from(c)) for c in self.conns],
        }
        try:
            self.root.write_bytes(json.dumps(beat, indent=1).encode(), self.heartbeat_path)
            self.heartbeats += 1
        except OSError as exc:  # a heartbeat must not end the session
            log.warning("stream_heartbeat_failed", error=repr(exc))


def run_stream_session(
    config: StreamConfig,
    data_root: DataRoot,
    clock: Clock | None = None,
    rest: PolygonClient | None = None,
    stop_event: threading.Event | None = None,
    on_landed: OnLanded | None = None,
) -> StreamResult:
    """Stream `config.day` until its close or `stop_event`; see the module docstring. `on_landed(source, frame)`
    sees every batch as it lands (and, on a restart, the day landed before): the live scanner's hook."""
    session = _Session(config, data_root, clock or WallClock(), rest, stop_event or threading.Event(), on_landed)
    started = time.monotonic()
    reason = asyncio.run(session.run())
    return StreamResult(
        day=session.day, reason=reason, stats=session.batcher.stats, files=list(session.batcher.landed_files),
        gaps=session.gaps, connections=[c.describe() for c in session.conns], heartbeats=session.heartbeats,
        wall_seconds=time.monotonic() - started, rest_rows=session.rest_rows, heartbeat_path=session.heartbeat_path,
        news_polls=session.news.polls if session.news else 0, news_articles=session.news.landed if session.news else 0,
    )


def run_interruptibly[T](target: Callable[[threading.Event], T]) -> T:
    """`target(stop_event)` on a worker thread, so that an interrupt of the calling thread (a Dagster run
    terminated from the UI raises in the run's main thread) stops it cleanly: the stop event is set, the
    session lands its buffer, and the interrupt is raised again once it has ended (or STOP_TIMEOUT_SECONDS)."""
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = target(stop)
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="stream-session", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except BaseException:
        log.warning("stream_session_interrupted")
        stop.set()
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while worker.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(BaseException):  # a repeated interrupt must not abandon the flush
                worker.join(0.2)
        raise
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
