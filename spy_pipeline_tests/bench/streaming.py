"""Streaming: socket -> landed Parquet throughput, event -> landed latency and memory over a whole simulated session.

One replay of DAY's regular session (09:30 to the close) at SPEED x, with SPY (stocks), I:VIX (indices) and the
CONTRACTS busiest option contracts of the day (most regular-session minute bars among the CANDIDATES listed
contracts with strikes nearest the open, all expirations), is streamed twice:

1. ours: `run_stream_session` (official `polygon.WebSocketClient` per market + MicroBatcher + atomic Parquet
   landing, flush_seconds=FLUSH_SECONDS) into a temporary data dir, REST fills through `PolygonClient`;
2. baseline: the bare official `polygon.WebSocketClient`, one per market with the same subscriptions, at the same
   speed, with a processor that only counts messages (and notes the wall time of each frame).

The sandbox (`SandboxStream` and the REST `SandboxServer`) runs in a child process, so that neither its CPU (GIL)
nor its memory (it keeps a log of every frame it sent) counts in the measured process. Its replay clock is
started a few wall seconds in the future (LEAD_SECONDS) so that every connection is subscribed before the first
event; the session runs on a `SimClock` started at the same monotonic instant (CLOCK_MONOTONIC is system-wide).

Figures:
- messages/s = stats.messages / wall seconds of the streaming part (replay clock start -> session returned);
  the replay rate bounds both runs, so the ratio ours / bare is ~1 whenever both keep up. How far each is from
  its limit: the event-loop thread's busy time (its CPU time plus the time it sat blocked in Parquet landing
  beyond its own CPU) against the wall time, the rest being idle, waiting on the socket; capacity = messages /
  busy seconds. Delivery lag = the wall time a frame reached the processor minus the time the replay published
  it (`SimClock.wall_at(e)`); the speed is sustained when every message arrives, without a gap, and the lag does
  not grow over the session (slope < MAX_LAG_GROWTH): transient stalls (the replay's own lateness, our landings
  and GC pauses, which block the event loop, are reported) are caught up, a backlog is not. SPEED is the
  product's largest replay speed (`open_stream_endpoint` allows 1-600).
- latency: p50/p99 of the batcher's `latency_market_ms` (bar end -> landed, by the session's clock) and
  `latency_wall_s` (receipt -> landed); at N x speed one wall second is N market seconds. The batcher keeps a
  uniform sample of `latency_samples` (200,000) of them (reservoir); the landed files' mtimes give the market
  latency of every landed row as a cross-check.
- memory: VmRSS of this process every MEMORY_SAMPLE_SECONDS during the session; slope over the second half of
  the session (least squares, MiB per simulated hour); "flat" (PASS, else WARN) when below FLAT_MIB_PER_HOUR.

The timing of the batcher (intake, landing) comes from a subclass put in place of `MicroBatcher` in
`spy_pipeline.streaming.session` for the run; nothing else of the product is changed.
Figures are merged into bench/results.json under "streaming".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2025, 1, 8)
SPEED = 600.0
START_AT = "09:30"
CONTRACTS = 1_000
CANDIDATES = 2_000
FLUSH_SECONDS = 1.0
LEAD_SECONDS = 3.0  # wall seconds between starting the replay clock and its start_at
MEMORY_SAMPLE_SECONDS = 0.5
FLAT_MIB_PER_HOUR = 5.0
MAX_LAG_GROWTH = 0.01  # wall s of delivery lag gained per wall s: above it a backlog builds up
KEY = "bench-stream-key"
MARKER = "BENCH "
MIB = 1024 * 1024


# --- the sandbox (child process) -------------------------------------------------------------------------


def _emit(figures: dict[str, Any]) -> None:
    print(MARKER + json.dumps(figures), flush=True)


def _busiest_contracts(day: dt.date, count: int, candidates: int) -> tuple[list[str], int]:
    """The `count` contracts with the most regular-session minute bars among the `candidates` listed contracts
    whose strikes are nearest the open; returns them and their bars."""
    import polars as pl

    from spy_pipeline.domain import trading_calendar as cal
    from spy_pipeline.sandbox import catalog, options

    open_ms = int(cal.session_bounds(day).open.timestamp() * 1000)
    spy = catalog.minute_bars("SPY", day)
    open_price = float(spy.filter(pl.col("t") >= open_ms)["o"][0])
    listing = options.listed_contracts(day).with_columns(distance=(pl.col("strike_price") - open_price).abs())
    nearest = listing.sort("distance", "ticker").head(candidates)["ticker"].to_list()
    bars = {ticker: catalog.minute_bars(ticker, day).height for ticker in nearest}
    chosen = sorted(nearest, key=lambda t: (-bars[t], t))[:count]
    return chosen, sum(bars[t] for t in chosen)


def _serve(day: dt.date, speed: float, count: int) -> None:
    """Choose the contracts, serve REST, then one replay per "run" line on stdin (until EOF or "quit")."""
    from spy_pipeline.sandbox import websocket
    from spy_pipeline.sandbox.server import SandboxServer
    from spy_pipeline.sandbox.websocket import SandboxStream

    # Both replays stream the same events: build each symbol's series once (~30 ms a contract) for both.
    websocket.build_series = functools.cache(websocket.build_series)  # the server looks it up in websocket

    started = time.perf_counter()
    contracts, bars = _busiest_contracts(day, count, CANDIDATES)
    symbols = ["SPY", "I:VIX", *contracts]
    with SandboxServer(api_key=KEY) as rest:
        _emit({"contracts": contracts, "bars": bars, "select_seconds": time.perf_counter() - started,
               "rest_url": rest.url})
        for line in sys.stdin:
            if line.strip() != "run":
                break
            stream = SandboxStream(KEY, day, speed=speed, start_at=START_AT)
            started = time.perf_counter()
            stream.preload(*symbols)
            preload_s = time.perf_counter() - started
            gc.freeze()  # the load generator must not stall: its GC would walk the ~1M preloaded event objects
            wall0 = time.monotonic() + LEAD_SECONDS
            stream.clock.start(wall=wall0)  # the server's own start() is then a no-op: the replay begins at wall0
            with stream:
                cpu0 = time.process_time()
                _emit({"feed": stream.feed, "wall0": wall0, "preload_seconds": preload_s})
                ended = stream.wait_ended(timeout=LEAD_SECONDS + 23_400 / speed + 120)
                cpu = time.process_time() - cpu0
                deadline = time.monotonic() + 5
                while any(c.ended_by is None for c in stream.connections) and time.monotonic() < deadline:
                    time.sleep(0.05)
                logs = stream.connections
                publish_lags = sorted(f.wall - stream.clock.wall_at(f.market_ms) for c in logs for f in c.data_frames)
                _emit({
                    "publish_lag_s": [_quantile(publish_lags, 0.5), _quantile(publish_lags, 0.99),
                                      max(publish_lags, default=float("nan"))],
                    "ended": ended, "cpu_seconds": cpu, "errors": [repr(e) for e in stream.errors],
                    "connections": [{"market": c.market, "data_frames": len(c.data_frames),
                                     "events": sum(len(f.items()) for f in c.data_frames), "lost": len(c.lost),
                                     "ended_by": c.ended_by} for c in logs],
                })


class _Sandbox:
    """The child process serving the replays, driven line by line."""

    def __init__(self) -> None:
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spy_pipeline_tests.bench.streaming", "--serve", DAY.isoformat(), str(SPEED),
             str(CONTRACTS)],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARKER):
                return json.loads(line[len(MARKER):])
        self._stderr.seek(0)
        raise RuntimeError(f"the sandbox process ended:\n{self._stderr.read()[-4000:]}")

    def replay(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


# --- measuring helpers (this process) ----------------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


class _RssSampler(threading.Thread):
    def __init__(self, every: float) -> None:
        super().__init__(name="bench-rss", daemon=True)
        self.every = every
        self.samples: list[tuple[float, int]] = []  # (monotonic, KiB), preallocated growth is tiny
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), _rss_kib()))
            if self._stop_event.wait(self.every):
                break

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.samples.append((time.monotonic(), _rss_kib()))


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")


class _GcPauses:
    """gc.callbacks hook: the collector's pauses in this process, by generation."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.max_s = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took, generation = time.perf_counter() - self._started, info["generation"]
        self.count[generation] += 1
        self.seconds[generation] += took
        self.max_s[generation] = max(self.max_s[generation], took)


def _frame_end(messages: list[Any]) -> int | None:
    e = getattr(messages[0], "end_timestamp", None) if messages else None
    return e if isinstance(e, int) else None


# --- ours ----------------------------------------------------------------------------------------------------


def _run_ours(sandbox: _Sandbox, setup: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    from spy_pipeline.io.storage import DataRoot
    from spy_pipeline.polygon.client import PolygonClient
    from spy_pipeline.sandbox.replay_clock import SimClock
    from spy_pipeline.streaming import session as session_module
    from spy_pipeline.streaming.batches import MicroBatcher
    from spy_pipeline.streaming.session import StreamConfig, run_stream_session

    replay = sandbox.replay()
    clock = SimClock(DAY, SPEED, START_AT)
    clock.start(wall=replay["wall0"])
    timing: dict[str, Any] = {"intake_s": 0.0, "intake_cpu_s": 0.0, "land_s": 0.0, "land_cpu_s": 0.0,
                              "land_max_s": 0.0, "lags": []}

    class TimedBatcher(MicroBatcher):
        """Times intake (validation, de-duplication, buffering) and landing, and notes each frame's delivery lag."""

        def add_many(self, messages: Any, from_rest: bool = False) -> int:
            if not from_rest and (e := _frame_end(messages)) is not None:
                timing["lags"].append((e, time.monotonic() - clock.wall_at(e), len(messages)))
            started, cpu, landed, landed_cpu = time.perf_counter(), time.thread_time(), timing["land_s"], timing[
                "land_cpu_s"]
            try:
                return super().add_many(messages, from_rest)
            finally:
                timing["intake_s"] += time.perf_counter() - started - (timing["land_s"] - landed)
                timing["intake_cpu_s"] += time.thread_time() - cpu - (timing["land_cpu_s"] - landed_cpu)

        def _flush_source(self, source: str) -> str | None:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return super()._flush_source(source)
            finally:
                took = time.perf_counter() - started
                timing["land_s"] += took
                timing["land_max_s"] = max(timing["land_max_s"], took)
                timing["land_cpu_s"] += time.thread_time() - cpu

    config = StreamConfig(
        day=DAY, api_key=KEY, feed=replay["feed"], secure=False, options=tuple(setup["contracts"]),
        flush_seconds=FLUSH_SECONDS, fill_from=clock.resolve(START_AT),
    )
    root = DataRoot.from_location(data_dir)
    rest = PolygonClient(KEY, setup["rest_url"], None)
    sampler = _RssSampler(MEMORY_SAMPLE_SECONDS)
    pauses = _GcPauses()
    session_module.MicroBatcher = TimedBatcher  # type: ignore[misc]  # instrumentation only
    gc.callbacks.append(pauses)
    try:
        sampler.start()
        cpu0, thread0 = time.process_time(), time.thread_time()
        result = run_stream_session(config, root, clock=clock, rest=rest)
        ended = time.monotonic()
        thread_cpu, process_cpu = time.thread_time() - thread0, time.process_time() - cpu0
        sampler.stop()
    finally:
        gc.callbacks.remove(pauses)
        session_module.MicroBatcher = MicroBatcher  # type: ignore[misc]
        rest.close()
    served = sandbox.read()
    wall = ended - replay["wall0"]
    busy = thread_cpu + (timing["land_s"] - timing["land_cpu_s"])
    return {"result": result, "clock": clock, "wall0": replay["wall0"], "ended": ended, "wall": wall,
            "thread_cpu": thread_cpu, "process_cpu": process_cpu, "busy": busy, "timing": timing,
            "rss": sampler.samples, "served": served, "preload_s": replay["preload_seconds"], "gc": pauses}


# --- baseline: the bare official client ----------------------------------------------------------------------


def _run_bare(sandbox: _Sandbox, setup: dict[str, Any]) -> dict[str, Any]:
    import polygon

    from spy_pipeline.sandbox.replay_clock import SimClock

    replay = sandbox.replay()
    clock = SimClock(DAY, SPEED, START_AT)
    clock.start(wall=replay["wall0"])
    plan = [("stocks", ["AM.SPY"]), ("indices", ["AM.I:VIX"]), ("options", [f"AM.{c}" for c in setup["contracts"]])]
    counted = {"messages": 0}
    lags: list[tuple[int, float, int]] = []

    async def noop(messages: list[Any]) -> None:
        counted["messages"] += len(messages)
        if (e := _frame_end(messages)) is not None:
            lags.append((e, time.monotonic() - clock.wall_at(e), len(messages)))

    async def run_all() -> None:
        clients = [polygon.WebSocketClient(api_key=KEY, feed=replay["feed"], market=market, secure=False,
                                           subscriptions=subs, max_reconnects=5) for market, subs in plan]
        await asyncio.gather(*(client.connect(noop) for client in clients))

    cpu0, thread0 = time.process_time(), time.thread_time()
    asyncio.run(run_all())
    ended = time.monotonic()
    thread_cpu, process_cpu = time.thread_time() - thread0, time.process_time() - cpu0
    served = sandbox.read()
    return {"messages": counted["messages"], "wall": ended - replay["wall0"], "thread_cpu": thread_cpu,
            "process_cpu": process_cpu, "lags": lags, "served": served}


# --- latency of every landed row from the files' mtimes ------------------------------------------------------


def _file_latencies_market_s(files: list[str], clock: Any) -> list[float]:
    """Market seconds from each landed row's bar end to its file's mtime (mapped to the replay clock)."""
    import polars as pl

    offset = time.time() - time.monotonic()  # realtime -> monotonic (NTP slew over a minute is negligible)
    out: list[float] = []
    for path in files:
        landed_market_ms = clock.start_ms + (os.stat(path).st_mtime - offset - clock.wall_at(clock.start_ms)) * (
            clock.speed * 1000)
        ends = pl.read_parquet(path, columns=["timestamp"])["timestamp"].dt.epoch("ms") + 60_000
        out.extend(((landed_market_ms - ends) / 1000).to_list())
    return out


# --- main --------------------------------------------------------------------------------------------------------


def _lag_quantiles(lags: list[tuple[int, float, int]]) -> tuple[float, float, float]:
    values = [lag for _, lag, _ in lags]
    return _quantile(values, 0.5), _quantile(values, 0.99), max(values, default=float("nan"))


def _lag_growth(lags: list[tuple[int, float, int]]) -> float:
    """Least-squares slope of the delivery lag over the session, wall s of lag per wall s: ~0 unless a backlog
    builds up (a consumer slower than the replay falls further behind with every frame)."""
    return _slope([(e / 1000, lag) for e, lag, _ in lags])


def main() -> None:
    import numpy as np
    import polars as pl
    import websockets

    from spy_pipeline.domain import trading_calendar as cal
    from spy_pipeline_tests.bench.results import merge_results

    started = time.perf_counter()
    sandbox = _Sandbox()
    try:
        setup = sandbox.read()
        with tempfile.TemporaryDirectory() as tmp:
            ours = _run_ours(sandbox, setup, Path(tmp) / "data")
            result = ours["result"]
            file_latency_s = _file_latencies_market_s(result.files, ours["clock"])
            sizes = sum(os.stat(p).st_size for p in result.files)
        bare = _run_bare(sandbox, setup)
    finally:
        sandbox.close()
    bench_s = time.perf_counter() - started

    stats, timing, clock, served = result.stats, ours["timing"], ours["clock"], ours["served"]
    close_et = clock.bounds.close.astimezone(cal.NEW_YORK)
    session_market_h = (clock.bounds.close - clock.resolve(START_AT)).total_seconds() / 3600
    contracts = len(setup["contracts"])
    wall, busy = ours["wall"], ours["busy"]
    ours_rate, bare_rate = stats.messages / wall, bare["messages"] / bare["wall"]
    ours_capacity, bare_capacity = stats.messages / busy, bare["messages"] / bare["thread_cpu"]
    client_s = ours["thread_cpu"] - timing["intake_cpu_s"] - timing["land_cpu_s"]
    blocked_s = timing["land_s"] - timing["land_cpu_s"]
    frame_interval_s = 60 / SPEED  # AM frames: one a market minute
    lag_ours, lag_bare = _lag_quantiles(timing["lags"]), _lag_quantiles(bare["lags"])
    # market s -> wall s of the replay
    growth_ours, growth_bare = _lag_growth(timing["lags"]) * SPEED, _lag_growth(bare["lags"]) * SPEED
    # Sustained: every message, no gap, and no backlog building up (a transient stall, in the replay or here,
    # shows in p99/max but is caught up).
    sustained = (stats.messages == bare["messages"] and not result.gaps and busy < wall
                 and growth_ours < MAX_LAG_GROWTH)
    gc_pauses = ours["gc"]
    publish_lag = served["publish_lag_s"]

    market_ms, wall_s = stats.latency_market_ms, stats.latency_wall_s
    lat = {
        "market_p50_s": _quantile(market_ms, 0.5) / 1000, "market_p99_s": _quantile(market_ms, 0.99) / 1000,
        "wall_p50_s": _quantile(wall_s, 0.5), "wall_p99_s": _quantile(wall_s, 0.99), "samples": len(market_ms),
        "files_market_p50_s": _quantile(file_latency_s, 0.5), "files_market_p99_s": _quantile(file_latency_s, 0.99),
        "files_rows": len(file_latency_s),
    }

    rss = ours["rss"]
    wall0, close_wall = ours["wall0"], clock.wall_at(int(clock.bounds.close.timestamp() * 1000))
    half = wall0 + (close_wall - wall0) / 2
    in_session = [(t, kib) for t, kib in rss if wall0 <= t <= close_wall]
    hours_mib = [((t - wall0) * SPEED / 3600, kib / 1024) for t, kib in in_session]
    slope1 = _slope([p for p, (t, _) in zip(hours_mib, in_session, strict=True) if t < half])
    slope2 = _slope([p for p, (t, _) in zip(hours_mib, in_session, strict=True) if t >= half])
    before_mib, peak_mib, end_mib = rss[0][1] / 1024, max(k for _, k in rss) / 1024, rss[-1][1] / 1024
    start_mib = (in_session[0] if in_session else rss[0])[1] / 1024
    flat = slope2 < FLAT_MIB_PER_HOUR
    per_row_bytes = (end_mib - start_mib) * MIB / max(1, stats.landed_rows)

    option_files = sum("/options/" in path for path in result.files)
    lines = [
        f"streaming {DAY} regular session ({START_AT} -> {close_et:%H:%M} ET, {session_market_h:.1f} market h) at "
        f"{SPEED:g}x: SPY + I:VIX + {contracts:,} option contracts (busiest of the {CANDIDATES:,} listed nearest the "
        f"open; {setup['bars']:,} option bars), AM channels, flush_seconds={FLUSH_SECONDS:g}, flush_records=5000; "
        f"sandbox in a child process:",
        f"  ours (run_stream_session -> Parquet): {stats.messages:,} messages in {wall:.2f} s = "
        f"{ours_rate:,.0f} msg/s; "
        f"{stats.landed_rows:,} rows landed in {stats.files} files ({sizes / MIB:.1f} MiB), {stats.duplicates} "
        f"duplicates, {stats.invalid} invalid, {len(result.gaps)} gaps, {result.rest_rows} REST rows, {result.reason}",
        f"  bare polygon.WebSocketClient, no-op processor: {bare['messages']:,} messages in {bare['wall']:.2f} s = "
        f"{bare_rate:,.0f} msg/s",
        f"  ratio ours / bare: {ours_rate / bare_rate:.3f}x (both bounded by the replay: {SPEED:g}x = "
        f"{session_market_h * 3600 / SPEED:.1f} wall s for the session)",
        f"  where the wall time went (event-loop thread): busy {busy:.2f} s = {100 * busy / wall:.1f}% [intake "
        f"(validate, de-dup, buffer) {timing['intake_cpu_s']:.2f} s CPU; landing {timing['land_s']:.2f} s "
        f"= {timing['land_cpu_s']:.2f} s CPU + {blocked_s:.2f} s blocked (Parquet encode threads, fsync); official "
        f"client recv + JSON + models + asyncio + session loop {client_s:.2f} s CPU]; idle, waiting on the socket "
        f"{100 * (1 - busy / wall):.1f}%; process CPU {ours['process_cpu']:.2f} s",
        f"  bare client: thread CPU {bare['thread_cpu']:.2f} s = {100 * bare['thread_cpu'] / bare['wall']:.1f}% of "
        f"its wall; sandbox process CPU {served['cpu_seconds']:.2f} s (ours) / {bare['served']['cpu_seconds']:.2f} s "
        f"(bare)",
        f"  capacity (messages / busy s): ours {ours_capacity:,.0f} msg/s, bare {bare_capacity:,.0f} msg/s, ratio "
        f"{ours_capacity / bare_capacity:.3f}x; ours at {SPEED:g}x has {wall / busy:.1f}x headroom "
        f"(~{SPEED * wall / busy:,.0f}x replay speed by CPU)",
        f"  delivery lag (frame at the processor - replay publish), one AM frame per market minute = "
        f"{1000 * frame_interval_s:.0f} ms: ours p50 {1000 * lag_ours[0]:.1f} ms, p99 {1000 * lag_ours[1]:.1f} ms, max "
        f"{1000 * lag_ours[2]:.1f} ms; bare p50 {1000 * lag_bare[0]:.1f} ms, p99 {1000 * lag_bare[1]:.1f} ms, max "
        f"{1000 * lag_bare[2]:.1f} ms; lag growth over the session ours {1000 * growth_ours:+.1f} ms, bare "
        f"{1000 * growth_bare:+.1f} ms per wall s -> {'sustained' if sustained else 'NOT sustained'} at {SPEED:g}x "
        f"(all messages, no gap, growth < {1000 * MAX_LAG_GROWTH:g} ms/s: no backlog)",
        f"  stalls: the replay itself wrote its frames p50 {1000 * publish_lag[0]:.1f} ms, p99 "
        f"{1000 * publish_lag[1]:.1f} ms, max {1000 * publish_lag[2]:.1f} ms late (ours' run); our longest landing "
        f"{1000 * timing['land_max_s']:.0f} ms (it blocks the event loop); our GC: {gc_pauses.count[2]} full "
        f"collections, {gc_pauses.seconds[2]:.2f} s, longest {1000 * gc_pauses.max_s[2]:.0f} ms "
        f"(all generations {sum(gc_pauses.seconds):.2f} s)",
        f"  latency bar end -> landed file (flush_seconds={FLUSH_SECONDS:g}), batcher's samples ({lat['samples']:,} "
        f"of {stats.landed_rows:,} rows: a uniform sample): market p50 "
        f"{lat['market_p50_s']:.1f} s, "
        f"p99 {lat['market_p99_s']:.1f} s (/ {SPEED:g} = {lat['market_p50_s'] / SPEED:.3f} s, "
        f"{lat['market_p99_s'] / SPEED:.3f} s wall); receipt -> landed wall p50 {lat['wall_p50_s']:.3f} s, p99 "
        f"{lat['wall_p99_s']:.3f} s",
        f"  at {SPEED:g}x one wall second is {SPEED:g} market seconds, so market latency = wall latency x {SPEED:g}: "
        f"the p50 of {lat['market_p50_s']:.0f} market s is {lat['market_p50_s'] / SPEED:.3f} wall s from publication "
        f"to landing (receipt -> landed {lat['wall_p50_s']:.3f} s + delivery lag); here the options buffer lands by "
        f"size (5,000 rows, every ~{wall / max(1, option_files):.2f} wall s), live (1x, ~1,000 rows a market minute) "
        f"by time: up to flush_seconds + landing",
        f"  every landed row, from the files' mtimes: market p50 {lat['files_market_p50_s']:.1f} s, p99 "
        f"{lat['files_market_p99_s']:.1f} s (wall {lat['files_market_p50_s'] / SPEED:.3f} s, "
        f"{lat['files_market_p99_s'] / SPEED:.3f} s)",
        f"  memory (VmRSS every {MEMORY_SAMPLE_SECONDS:g} s, {len(rss)} samples): before {before_mib:.1f} MiB, start "
        f"{start_mib:.1f} MiB, peak {peak_mib:.1f} MiB, end {end_mib:.1f} MiB ({per_row_bytes:.0f} B per landed row); "
        f"slope first half {slope1:+.2f}, second half {slope2:+.2f} MiB/simulated h -> {'PASS' if flat else 'WARN'} "
        f"(flat: < {FLAT_MIB_PER_HOUR:g} MiB/simulated h in the second half)",
        f"  (this benchmark: {bench_s:.0f} s wall, of which ~{setup['select_seconds']:.0f} s choosing contracts and "
        f"{ours['preload_s']:.0f} s building the replay's events in the sandbox)",
    ]
    print("\n".join(lines))
    merge_results("streaming", {
        "day": DAY.isoformat(), "speed": SPEED, "start_at": START_AT, "contracts": contracts,
        "option_bars": setup["bars"], "flush_seconds": FLUSH_SECONDS,
        "ours": {"messages": stats.messages, "wall_seconds": wall, "messages_per_s": ours_rate,
                 "session_wall_seconds": result.wall_seconds, "landed_rows": stats.landed_rows, "files": stats.files,
                 "bytes": sizes, "duplicates": stats.duplicates, "invalid": stats.invalid, "gaps": len(result.gaps),
                 "rest_rows": result.rest_rows, "reason": result.reason, "busy_seconds": busy,
                 "thread_cpu_seconds": ours["thread_cpu"], "process_cpu_seconds": ours["process_cpu"],
                 "intake_cpu_seconds": timing["intake_cpu_s"], "intake_seconds": timing["intake_s"],
                 "landing_seconds": timing["land_s"], "landing_cpu_seconds": timing["land_cpu_s"],
                 "client_cpu_seconds": client_s, "capacity_messages_per_s": ours_capacity,
                 "lag_p50_s": lag_ours[0], "lag_p99_s": lag_ours[1], "lag_max_s": lag_ours[2],
                 "lag_growth_s_per_s": growth_ours, "landing_max_seconds": timing["land_max_s"],
                 "gc_full_collections": gc_pauses.count[2], "gc_full_seconds": gc_pauses.seconds[2],
                 "gc_full_max_seconds": gc_pauses.max_s[2], "gc_seconds": sum(gc_pauses.seconds)},
        "bare": {"messages": bare["messages"], "wall_seconds": bare["wall"], "messages_per_s": bare_rate,
                 "thread_cpu_seconds": bare["thread_cpu"], "capacity_messages_per_s": bare_capacity,
                 "lag_p50_s": lag_bare[0], "lag_p99_s": lag_bare[1], "lag_max_s": lag_bare[2],
                 "lag_growth_s_per_s": growth_bare},
        "replay_publish_lag_s": {"ours_run": served["publish_lag_s"], "bare_run": bare["served"]["publish_lag_s"]},
        "ratio_ours_over_bare": ours_rate / bare_rate,
        "capacity_ratio_ours_over_bare": ours_capacity / bare_capacity,
        "sustained": sustained,
        "latency": lat,
        "memory": {"before_mib": before_mib, "start_mib": start_mib, "peak_mib": peak_mib, "end_mib": end_mib,
                   "bytes_per_landed_row": per_row_bytes, "slope_first_half_mib_per_h": slope1,
                   "slope_second_half_mib_per_h": slope2, "flat_threshold_mib_per_h": FLAT_MIB_PER_HOUR,
                   "flat": flat, "samples": len(rss)},
        "sandbox_cpu_seconds": {"ours": served["cpu_seconds"], "bare": bare["served"]["cpu_seconds"]},
        "bench_seconds": bench_s,
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": {"python": sys.version.split()[0], "polars": pl.__version__, "numpy": np.__version__,
                     "websockets": websockets.__version__},
    })


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        _serve(dt.date.fromisoformat(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
