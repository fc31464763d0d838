"""Streaming core: MicroBatcher, compaction against REST, and whole simulated sessions through the sandbox."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest
import structlog.testing
from polygon.websocket.models import EquityAgg

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import MINUTE_BARS
from spy_pipeline.io.storage import DataRoot
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.sandbox import catalog, options
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline.sandbox.websocket import SandboxStream
from spy_pipeline.streaming.batches import MicroBatcher, batch_files, parse_batch_name
from spy_pipeline.streaming.compact import compact_day, compare_with_rest, reconcile_day
from spy_pipeline.streaming.session import Gap, StreamConfig, _Session, read_heartbeat, run_stream_session
from spy_pipeline_tests.conftest import SANDBOX_KEY

DAY = dt.date(2025, 1, 8)
START = dt.datetime(2025, 1, 8, 15, 30, tzinfo=cal.NEW_YORK)
CLOSE = cal.session_bounds(DAY).close
START_MS = int(START.timestamp() * 1000)


def am(sym: str = "SPY", s: int = START_MS, **fields: Any) -> dict[str, Any]:
    base = {"ev": "AM", "sym": sym, "v": 100, "vw": 10.05, "o": 10.0, "h": 10.2, "l": 9.9, "c": 10.1,
            "s": s, "e": s + 60_000}
    return {**base, **fields}


@pytest.fixture
def root(tmp_path: Path) -> DataRoot:
    return DataRoot.from_location(tmp_path / "data")


# --- MicroBatcher -----------------------------------------------------------------------------------------


def test_batcher_validates_messages(root: DataRoot) -> None:
    batcher = MicroBatcher(root, DAY, flush_seconds=3600)
    good = [am(), am("I:VIX", v=None, vw=None), am("O:SPY250108C00590000", s=START_MS + 60_000)]
    agg = EquityAgg.from_dict(am(s=START_MS + 120_000))
    bad = [
        am(ev="A"), am(sym=None), am("QQQ"), am(s=START_MS + 1), am(e=START_MS + 30_000), am(h=9.95),
        am(l=10.05), am(o=None), am(o=float("nan")), am(v=-1), am(s=int(CLOSE.timestamp() * 1000) + 5 * 3_600_000),
        am(s=START_MS - 16 * 3_600_000),
    ]
    assert batcher.add_many([*good, agg, *bad]) == 4
    stats = batcher.stats
    assert (stats.messages, stats.accepted, stats.invalid) == (16, 4, 12)
    assert stats.invalid_reasons["outside_session"] == 2 and stats.invalid_reasons["ohlc_inconsistent"] == 2
    assert stats.invalid_reasons["not_minute_aligned"] == 2 and stats.invalid_reasons["unknown_symbol"] == 1
    files = batcher.flush()
    assert [root.relative(f).split("/")[:3] for f in files] == [
        ["stream", "spy", "2025-01-08"], ["stream", "vix", "2025-01-08"], ["stream", "options", "2025-01-08"]]
    spy = root.read_partition(files[0], MINUTE_BARS)
    assert spy["timestamp"].dt.epoch("ms").to_list() == [START_MS, START_MS + 120_000]
    assert spy["session"].to_list() == ["regular", "regular"] and spy["transactions"].is_null().all()
    vix = root.read_partition(files[1], MINUTE_BARS)
    assert vix["volume"].is_null().all() and vix["vwap"].is_null().all()


def test_batcher_deduplicates_keeping_the_latest(root: DataRoot) -> None:
    batcher = MicroBatcher(root, DAY, flush_seconds=3600)
    batcher.add_many([am(c=10.1), am(c=10.15)])  # same (sym, s) in the buffer: the latest wins
    [path] = batcher.flush()
    assert root.read_partition(path, MINUTE_BARS)["close"].to_list() == [10.15]
    assert batcher.add(am(c=10.15)) is False  # equal to what landed: dropped
    assert batcher.add(am(c=10.12)) is True  # a revision lands again
    batcher.flush()
    stats = batcher.stats
    assert (stats.duplicates, stats.revisions, stats.landed_rows, stats.files) == (3, 1, 2, 2)
    assert compact_day(root, "spy", DAY)["close"].to_list() == [10.12]  # the latest file wins


def test_batcher_remembers_landed_keys_for_a_window_only(root: DataRoot) -> None:
    """A day of minutes lands, but the de-duplication index keeps the last `dedup_window_minutes` per symbol
    (flat memory): a recent repeat is dropped, an older one lands again and the compaction keeps one row."""
    batcher = MicroBatcher(root, DAY, flush_seconds=3600, flush_records=50, dedup_window_minutes=30)
    batcher.add_many([am(s=START_MS - i * 60_000) for i in range(300)][::-1])  # 300 minutes, in order
    batcher.flush()
    remembered = batcher._landed["SPY"]
    assert len(remembered) <= 31 and max(remembered) == START_MS
    assert batcher.add(am(s=START_MS - 10 * 60_000)) is False  # inside the window: a duplicate
    assert batcher.add(am(s=START_MS - 200 * 60_000)) is True  # older: lands again ...
    batcher.close()
    day = compact_day(root, "spy", DAY)
    assert day.height == 300 and day.select("ticker", "timestamp").is_unique().all()  # ... once after compaction


def test_batcher_latency_sample_is_uniform_over_the_day(root: DataRoot) -> None:
    """With more rows than `latency_samples`, the kept latencies cover the whole day, not its first rows."""
    now = START_MS + 60_000
    batcher = MicroBatcher(root, DAY, flush_seconds=3600, flush_records=1, latency_samples=50, now_ms=lambda: now)
    for minutes_back in range(600, 0, -1):  # in time order: the first rows are the oldest (largest latency)
        batcher.add(am(s=START_MS - minutes_back * 60_000))
    kept = [ms // 60_000 for ms in batcher.stats.latency_market_ms]  # minutes from bar end to landing
    assert len(kept) == 50 and batcher.stats.landed_rows == 600
    assert min(kept) < 300 < max(kept)  # the first 50 rows alone would all be >= 551 minutes


def test_batcher_flushes_by_records_time_and_close(root: DataRoot) -> None:
    batcher = MicroBatcher(root, DAY, flush_seconds=0.2, flush_records=3)
    batcher.add_many([am(s=START_MS + i * 60_000) for i in range(7)])
    assert batcher.stats.files == 2 and batcher.buffered == 1  # two full batches of three
    assert batcher.maybe_flush() == []
    time.sleep(0.25)
    assert len(batcher.maybe_flush()) == 1 and batcher.buffered == 0
    batcher.add(am(s=START_MS + 10 * 60_000))
    assert len(batcher.close()) == 1
    with pytest.raises(RuntimeError):
        batcher.add(am())
    names = [parse_batch_name(p) for p in batch_files(root, "spy", DAY)]
    assert names == [(START_MS, START_MS + 120_000, 1), (START_MS + 180_000, START_MS + 300_000, 2),
                     (START_MS + 360_000, START_MS + 360_000, 3), (START_MS + 600_000, START_MS + 600_000, 4)]
    again = MicroBatcher(root, DAY)  # a restarted session continues the sequence
    again.add(am(s=START_MS + 11 * 60_000))
    [path] = again.close()
    assert parse_batch_name(path) == (START_MS + 660_000, START_MS + 660_000, 5)
    folder = Path(root.dataset_path("stream", "spy", DAY.isoformat()))
    assert sorted(p.suffix for p in folder.iterdir()) == [".parquet"] * 5  # no temp file left behind


def test_compare_with_rest_reports_missing_extra_and_mismatched(root: DataRoot) -> None:
    batcher = MicroBatcher(root, DAY)
    rest = batcher.frame([batcher.validate(am(s=START_MS + i * 60_000)) for i in range(4)])
    stream = rest.filter(pl.col("timestamp") != rest["timestamp"][1]).with_columns(
        close=pl.when(pl.col("timestamp") == rest["timestamp"][2]).then(10.11).otherwise(pl.col("close")))
    stream = pl.concat([stream, batcher.frame([batcher.validate(am(s=START_MS + 3_600_000))])])
    diff = compare_with_rest(stream, rest)
    assert diff.summary() == {"compared": 3, "missing": 1, "extra": 1, "mismatched": 1}
    assert diff.mismatched.select("close", "close_rest").row(0) == (10.11, 10.1)
    assert compare_with_rest(stream, rest, end=START + dt.timedelta(minutes=1)).equal


# --- simulated sessions -----------------------------------------------------------------------------------


def _busy_contracts(count: int) -> tuple[str, ...]:
    """0DTE contracts with the most bars in the streamed window (so the options path carries data)."""
    tickers = options.listed_contracts(DAY).filter(pl.col("expiration_date") == DAY)["ticker"].to_list()
    bars = {t: catalog.minute_bars(t, DAY).filter(pl.col("t") >= START_MS).height for t in tickers}
    return tuple(sorted(tickers, key=lambda t: -bars[t])[:count])


CONTRACTS = _busy_contracts(4)
SOURCES = {"spy": ("SPY",), "vix": ("I:VIX",), "options": CONTRACTS}


@pytest.fixture
def rest() -> Iterator[PolygonClient]:
    with SandboxServer(api_key=SANDBOX_KEY) as server:
        client = PolygonClient(SANDBOX_KEY, server.url, None)
        yield client
        client.close()


def _session(root: DataRoot, rest: PolygonClient, stop: threading.Event | None = None, **stream_kwargs: Any):
    with SandboxStream(SANDBOX_KEY, DAY, speed=600, start_at="15:30", **stream_kwargs) as stream:
        config = StreamConfig(day=DAY, api_key=SANDBOX_KEY, feed=stream.feed, secure=False, options=CONTRACTS,
                              flush_seconds=0.2, heartbeat_seconds=0.2, backoff_seconds=(0.05, 0.5))
        result = run_stream_session(config, root, clock=stream.clock, rest=rest, stop_event=stop)
        assert stream.errors == []
        return result, stream


def _assert_equals_rest(root: DataRoot, rest: PolygonClient) -> None:
    for source, tickers in SOURCES.items():
        diff = reconcile_day(root, rest, source, DAY, tickers, start=START, end=CLOSE)
        assert diff.equal, (source, diff.summary(), diff.missing, diff.mismatched)
        assert diff.compared_rows >= 30 if source != "options" else diff.compared_rows > 20


def _landed(root: DataRoot, source: str) -> pl.DataFrame:
    return pl.concat([root.read_partition(p, MINUTE_BARS) for p in batch_files(root, source, DAY)])


@pytest.mark.integration
def test_simulated_session_lands_the_rest_day_and_beats(root: DataRoot, rest: PolygonClient) -> None:
    beats: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            beat = read_heartbeat(root, DAY) if Path(root.dataset_path("stream")).exists() else None
            if beat is not None:
                beats.add(beat["updated_at"])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result, _ = _session(root, rest)
    finally:
        done.set()
        watcher.join()
    assert result.reason == "session_close" and result.wall_seconds < 10
    assert result.stats.invalid == 0 and result.stats.landed_rows == result.stats.accepted
    _assert_equals_rest(root, rest)
    assert len(beats) >= 5  # written on its interval while streaming
    final = read_heartbeat(root, DAY)
    assert final is not None and final["state"] == "closed" and final["messages"] == result.stats.messages
    assert final["last_event_time"] == CLOSE.astimezone(dt.UTC).isoformat()
    assert {c["state"] for c in final["connections"]} == {"closed"}


@pytest.mark.integration
def test_disconnects_are_filled_from_rest_without_gap_or_duplicate(root: DataRoot, rest: PolygonClient) -> None:
    result, stream = _session(root, rest, drop_every=6)
    dropped = [c for c in stream.connections if c.ended_by == "drop"]
    assert len(dropped) >= 6 and sum(len(c.lost) for c in dropped) >= 6  # data really was lost on the wire
    assert result.reason == "session_close"
    assert len([g for g in result.gaps if g.from_ms > START_MS]) >= 6 and all(g.filled for g in result.gaps)
    assert result.stats.duplicates > 0  # the overlap came both ways ...
    for source in SOURCES:  # ... and nothing landed twice
        landed = _landed(root, source)
        assert landed.select("ticker", "timestamp").is_duplicated().sum() == 0
    _assert_equals_rest(root, rest)


@pytest.mark.integration
def test_stop_event_ends_the_session_with_complete_files(root: DataRoot, rest: PolygonClient) -> None:
    stop = threading.Event()
    timer = threading.Timer(1.2, stop.set)  # ~12 market minutes in
    timer.start()
    try:
        result, _ = _session(root, rest, stop=stop)
    finally:
        timer.cancel()
    assert result.reason == "stopped" and result.wall_seconds < 2.5
    assert result.stats.accepted > 0 and result.stats.landed_rows == result.stats.accepted  # buffer flushed
    for source in SOURCES:
        folder = Path(root.dataset_path("stream", source, DAY.isoformat()))
        assert all(p.suffix == ".parquet" and not p.name.startswith(".") for p in folder.iterdir())
        landed = _landed(root, source)  # every file reads with the declared schema
        assert landed["timestamp"].max() < CLOSE - dt.timedelta(minutes=5)
    assert sum(_landed(root, s).height for s in SOURCES) == result.stats.landed_rows
    beat = read_heartbeat(root, DAY)
    assert beat is not None and beat["state"] == "stopped" and beat["buffered"] == 0


# --- gap bookkeeping of one connection, without a network (the REST fetches are the session's `rest`) ------

A_CONTRACT, B_CONTRACT = "O:SPY250108C00590000", "O:SPY250108P00590000"


def _minute(hhmm: str) -> int:
    return int(dt.datetime.combine(DAY, dt.time.fromisoformat(hhmm), tzinfo=cal.NEW_YORK).timestamp() * 1000)


def _agg(sym: str, hhmm: str) -> EquityAgg:
    s = _minute(hhmm)
    return EquityAgg.from_dict({"ev": "AM", "sym": sym, "o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "vw": 1,
                                "s": s, "e": s + 60_000})


class _FixedClock:
    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(_minute("10:05") / 1000, dt.UTC)


def _options_session(root: DataRoot, rest: Any = None) -> tuple[_Session, Any]:
    config = StreamConfig(day=DAY, api_key="k", stocks=(), indices=(), options=(A_CONTRACT, B_CONTRACT),
                          fill_from=dt.datetime.fromtimestamp(_minute("10:00") / 1000, dt.UTC))
    session = _Session(config, root, _FixedClock(), rest, threading.Event())
    return session, session.conns[0]


def _reconnect(conn: Any) -> None:
    conn.client = SimpleNamespace(websocket=object())  # the official client's new connection object


def _covered(session: _Session, sym_minute: str) -> bool:
    start = _minute(sym_minute)
    return any(g.from_ms <= start < g.to_ms for g in session.gaps)


def test_a_late_bar_after_a_reconnect_does_not_cancel_the_gap(root: DataRoot) -> None:
    session, conn = _options_session(root)
    _reconnect(conn)
    session._process(conn, [_agg(A_CONTRACT, "10:00"), _agg(B_CONTRACT, "10:00")])
    _reconnect(conn)  # 10:01-10:03 lost on the wire; the next frame carries a late 09:58 print and 10:04
    session._process(conn, [_agg(A_CONTRACT, "09:58"), _agg(B_CONTRACT, "10:04")])
    assert all(_covered(session, m) for m in ("10:01", "10:02", "10:03", "10:04"))


def test_a_minute_split_across_frames_is_fetched_again_after_a_drop(root: DataRoot) -> None:
    session, conn = _options_session(root)
    _reconnect(conn)
    session._process(conn, [_agg(A_CONTRACT, "10:00")])  # B's 10:00 bar was in the next frame ...
    _reconnect(conn)  # ... which the drop lost
    session._process(conn, [_agg(A_CONTRACT, "10:02"), _agg(B_CONTRACT, "10:02")])
    assert _covered(session, "10:00") and _covered(session, "10:01")


def test_a_failed_fill_is_logged_kept_and_tried_again(root: DataRoot) -> None:
    calls: list[str] = []

    class FlakyRest:
        def minute_bars(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
            calls.append(symbol)
            if symbol == A_CONTRACT and calls.count(A_CONTRACT) == 1:
                raise ConnectionError("refused")
            s = _minute("10:01")
            return pl.DataFrame({"t": [s], "o": [1.0], "h": [1.0], "l": [1.0], "c": [1.0], "v": [1.0],
                                 "vw": [1.0], "n": [3]})

    session, conn = _options_session(root, FlakyRest())
    gap = Gap(conn.index, conn.market, _minute("10:00"), _minute("10:05"))
    session.gaps.append(gap)
    session._fill(conn.symbols, gap)
    assert calls == [A_CONTRACT, B_CONTRACT]  # B still filled after A failed
    assert gap.failed == [A_CONTRACT] and not gap.filled and gap.rows == 1
    session.rest = None  # record the retry without running it
    session._retry_failed_fills()
    retry = session.gaps[-1]
    assert retry is not gap and (retry.from_ms, retry.to_ms) == (gap.from_ms, gap.to_ms) and gap.failed == []


@pytest.mark.integration
def test_a_restarted_session_resumes_where_the_stopped_one_ended(root: DataRoot, rest: PolygonClient) -> None:
    """Session 1 fills the day from 15:00 over REST, streams and is stopped ~12 market minutes in; session 2
    (a restart, the replay starting at 15:30 again) resumes from session 1's last bar instead of refilling
    from 15:00, lands none of session 1's rows again, and the two together equal the REST day."""
    fill_from = START - dt.timedelta(minutes=30)

    def session(stop: threading.Event | None) -> Any:
        with SandboxStream(SANDBOX_KEY, DAY, speed=600, start_at="15:30") as stream:
            config = StreamConfig(day=DAY, api_key=SANDBOX_KEY, feed=stream.feed, secure=False, options=CONTRACTS,
                                  flush_seconds=0.2, heartbeat_seconds=0.2, backoff_seconds=(0.05, 0.5),
                                  fill_from=fill_from)
            return run_stream_session(config, root, clock=stream.clock, rest=rest, stop_event=stop)

    stop = threading.Event()
    timer = threading.Timer(1.2, stop.set)
    timer.start()
    try:
        with structlog.testing.capture_logs() as first_events:
            first = session(stop)
    finally:
        timer.cancel()
    assert first.reason == "stopped" and first.rest_rows > 0
    first_fills = [event for event in first_events if event["event"] == "stream_gap_filled"]
    # session 1 fills from fill_from (a minute before it, as every fill starts a minute back)
    assert min(dt.datetime.fromisoformat(fill["start"]) for fill in first_fills) <= fill_from, first_fills
    with structlog.testing.capture_logs() as events:
        second = session(None)
    assert second.reason == "session_close"
    # not the 30 minutes before 15:30 again: no REST fill of session 2 starts at fill_from (a loaded machine may
    # make it fill other gaps, so the rows it fetched are no measure)
    fills = [event for event in events if event["event"] == "stream_gap_filled"]
    assert fills and all(dt.datetime.fromisoformat(fill["start"]) > fill_from for fill in fills), fills
    assert second.stats.duplicates > 0  # the replay's first minutes were session 1's
    for source, tickers in SOURCES.items():
        landed = _landed(root, source)
        assert landed.select("ticker", "timestamp").is_duplicated().sum() == 0, source
        diff = reconcile_day(root, rest, source, DAY, tickers, start=fill_from, end=CLOSE)
        assert diff.equal, (source, diff.summary())
