"""MicroBatcher: validate, de-duplicate and land Polygon ``AM`` aggregates as small MINUTE_BARS Parquet files.

Layout: ``stream/{source}/{date}/{first_ts}_{last_ts}_{seq}.parquet`` under the data dir, source ``spy``,
``vix`` or ``options``, first/last_ts the smallest and largest bar start (Unix ms) in the file, seq a
per-(source, day) counter that continues after the files already there (a restarted session never
overwrites a batch). Files are written through `DataRoot.write_parquet` (temp file + fsync + rename, or one
upload on an object store): a reader sees a whole file or none.

De-duplication is by (sym, s): inside the buffer the latest message wins; against what already landed a
message with the same values is dropped (counted as a duplicate), one with other values lands again (a
revision) and the compaction keeps the row of the latest file. Landed keys are remembered for
`dedup_window_minutes` (120) behind each symbol's latest landed bar, so memory stays flat over a day; a
repeat older than that lands again and the compaction removes it. ``AM`` events carry no trade count, so
``transactions`` is null for streamed rows (rows filled from REST keep theirs).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from spy_pipeline.domain import datasets
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.schemas import MINUTE_BARS
from spy_pipeline.io.storage import DataRoot

MINUTE_MS = 60_000
SOURCES = ("spy", "vix", "options")
STREAM_DATASET = "stream"
_FILE_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)\.parquet\Z")
# EquityAgg attribute -> Polygon field
_AGG_FIELDS = {
    "event_type": "ev", "symbol": "sym", "volume": "v", "vwap": "vw", "open": "o", "close": "c", "high": "h",
    "low": "l", "start_timestamp": "s", "end_timestamp": "e",
}


def default_source(symbol: str) -> str | None:
    """spy for SPY, vix for I:VIX, options for an OCC option ticker; None for anything else."""
    if symbol.startswith("O:"):
        return "options"
    return {"SPY": "spy", "I:VIX": "vix"}.get(symbol)


def batch_folder(root: DataRoot, source: str, day: dt.date) -> str:
    return root.dataset_path(*datasets.get("stream_bars").folder(source=source), day.isoformat())


def parse_batch_name(name: str) -> tuple[int, int, int] | None:
    """(first_ts, last_ts, seq) of a batch file name, None for any other name."""
    match = _FILE_NAME.match(name.rsplit("/", 1)[-1])
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def batch_files(root: DataRoot, source: str, day: dt.date) -> list[str]:
    """The landed batch files of (source, day), in landing order (by seq)."""
    files = [p for p in root.list_files(batch_folder(root, source, day), ".parquet") if parse_batch_name(p)]
    return sorted(files, key=lambda p: parse_batch_name(p)[2])  # type: ignore[index]


@dataclass(frozen=True)
class Bar:
    """One validated minute aggregate."""

    sym: str
    s: int
    e: int
    o: float
    h: float
    l: float  # noqa: E741 - Polygon's name
    c: float
    v: float | None
    vw: float | None
    n: int | None
    received: float  # time.monotonic() when it reached the batcher

    def values(self) -> tuple[Any, ...]:
        return (self.o, self.h, self.l, self.c, self.v, self.vw)


@dataclass
class BatcherStats:
    messages: int = 0  # from the stream
    rest_rows: int = 0  # fed from REST gap fills
    accepted: int = 0
    duplicates: int = 0
    revisions: int = 0
    invalid: int = 0
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    landed_rows: int = 0
    files: int = 0
    last_event_ms: int | None = None  # the largest bar end seen
    # event end -> landed, market ms (by the `now_ms` clock) and wall seconds (arrival -> landed): a uniform
    # sample of at most `latency_samples` rows
    latency_market_ms: list[int] = field(default_factory=list, repr=False)
    latency_wall_s: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "rest_rows": self.rest_rows, "accepted": self.accepted,
            "duplicates": self.duplicates,
            "revisions": self.revisions, "invalid": self.invalid, "invalid_reasons": dict(self.invalid_reasons),
            "landed_rows": self.landed_rows, "files": self.files, "last_event_ms": self.last_event_ms,
        }


class InvalidMessage(ValueError):
    pass


def _as_fields(message: Mapping[str, Any] | object) -> dict[str, Any]:
    if isinstance(message, Mapping):
        return dict(message)
    fields = {}
    for attr, name in _AGG_FIELDS.items():
        value = getattr(message, attr, None)
        if value is not None:
            fields[name] = getattr(value, "value", value)  # EventType enum -> "AM"
    return fields


def _number(fields: dict[str, Any], name: str, required: bool) -> float | None:
    value = fields.get(name)
    if value is None:
        if required:
            raise InvalidMessage(f"missing_{name}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidMessage(f"bad_{name}")
    return float(value)


class MicroBatcher:
    """Buffers AM aggregates of several symbols and lands them every `flush_seconds` or `flush_records`.

    Thread-safe. `maybe_flush()` (call it on a timer) lands what is due by time; `add` lands at once when a
    source's buffer reaches `flush_records`; `flush()` lands everything; `close()` flushes and refuses more.
    """

    def __init__(
        self,
        root: DataRoot,
        day: dt.date,
        *,
        flush_seconds: float = 5.0,
        flush_records: int = 5_000,
        source_of: Callable[[str], str | None] = default_source,
        now_ms: Callable[[], int] | None = None,
        latency_samples: int = 200_000,
        dedup_window_minutes: int = 120,
        on_landed: Callable[[str, pl.DataFrame], None] | None = None,
    ) -> None:
        self.root = root
        self.on_landed = on_landed  # (source, frame) after each file lands: must return at once (e.g. enqueue)
        self.day = cal.require_trading_day(day)
        self.flush_seconds = flush_seconds
        self.flush_records = flush_records
        self.source_of = source_of
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.latency_samples = latency_samples
        self._sampler = random.Random(0)
        bounds = cal.session_bounds(self.day)
        self._pre_ms, self._open_ms, self._close_ms, self._end_ms = (
            int(t.timestamp() * 1000) for t in (bounds.pre_market_open, bounds.open, bounds.close,
                                                 bounds.after_hours_close)
        )
        self.stats = BatcherStats()
        self._lock = threading.RLock()
        self._buffers: dict[str, dict[tuple[str, int], Bar]] = {s: {} for s in SOURCES}
        # sym -> s -> values landed, for the last `dedup_window_ms` before the symbol's latest landed bar only:
        # repeats come from reconnect and gap-fill overlaps near the stream's edge, and a whole day's index
        # would grow the session's memory by ~500 bytes per row
        self._landed: dict[str, dict[int, tuple[Any, ...]]] = {}
        self.dedup_window_ms = int(dedup_window_minutes * MINUTE_MS)
        self._last_flush = time.monotonic()
        self._seq: dict[str, int] = {}
        self._closed = False
        self.landed_files: list[str] = []

    # intake ---------------------------------------------------------------------------------------------

    def validate(self, message: Mapping[str, Any] | object, received: float | None = None) -> Bar:
        """The message as a Bar, or InvalidMessage with a short reason."""
        fields = _as_fields(message)
        if fields.get("ev") != "AM":
            raise InvalidMessage("not_am")
        sym = fields.get("sym")
        if not isinstance(sym, str) or not sym:
            raise InvalidMessage("missing_sym")
        if self.source_of(sym) is None:
            raise InvalidMessage("unknown_symbol")
        s, e = fields.get("s"), fields.get("e")
        if not isinstance(s, int) or isinstance(s, bool) or not isinstance(e, int) or isinstance(e, bool):
            raise InvalidMessage("missing_timestamps")
        if s % MINUTE_MS or e != s + MINUTE_MS:
            raise InvalidMessage("not_minute_aligned")
        if not self._pre_ms <= s < self._end_ms:
            raise InvalidMessage("outside_session")
        o, h, low, c = (_number(fields, k, True) for k in ("o", "h", "l", "c"))
        assert o is not None and h is not None and low is not None and c is not None
        if min(o, h, low, c) <= 0 or not (low <= min(o, c) and max(o, c) <= h):
            raise InvalidMessage("ohlc_inconsistent")
        v, vw = _number(fields, "v", False), _number(fields, "vw", False)
        if (v is not None and v < 0) or (vw is not None and vw <= 0):
            raise InvalidMessage("bad_volume")
        n = fields.get("n")
        n = n if isinstance(n, int) and not isinstance(n, bool) else None
        return Bar(sym, s, e, o, h, low, c, v, vw, n, time.monotonic() if received is None else received)

    def add(self, message: Mapping[str, Any] | object) -> bool:
        """Take one message; True if it was buffered (not invalid, not a duplicate of a landed row)."""
        return self.add_many([message]) == 1

    def add_many(self, messages: Iterable[Mapping[str, Any] | object], from_rest: bool = False) -> int:
        """Take messages (rows fetched from REST with `from_rest`: counted apart, not as stream messages)."""
        received = time.monotonic()
        taken = 0
        with self._lock:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            for message in messages:
                if from_rest:
                    self.stats.rest_rows += 1
                else:
                    self.stats.messages += 1
                try:
                    bar = self.validate(message, received)
                except InvalidMessage as exc:
                    self.stats.invalid += 1
                    self.stats.invalid_reasons[str(exc)] += 1
                    continue
                if not from_rest and (self.stats.last_event_ms is None or bar.e > self.stats.last_event_ms):
                    self.stats.last_event_ms = bar.e
                source = self.source_of(bar.sym)
                assert source is not None
                buffer, key = self._buffers[source], (bar.sym, bar.s)
                landed = self._landed.get(bar.sym, {}).get(bar.s)
                if key in buffer:
                    self.stats.duplicates += 1
                    buffer[key] = bar  # the latest wins
                    continue
                if landed is not None:
                    self.stats.duplicates += 1
                    if landed == bar.values():
                        continue
                    self.stats.revisions += 1
                buffer[key] = bar
                self.stats.accepted += 1
                taken += 1
                if len(buffer) >= self.flush_records:
                    self._flush_source(source)
        return taken

    # landing --------------------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._buffers.values())

    def maybe_flush(self) -> list[str]:
        """Land every buffer if `flush_seconds` passed since the last time-based flush."""
        with self._lock:
            if time.monotonic() - self._last_flush < self.flush_seconds:
                return []
            return self.flush()

    def flush(self) -> list[str]:
        """Land every non-empty buffer now; returns the files written."""
        with self._lock:
            self._last_flush = time.monotonic()
            return [path for source in SOURCES if (path := self._flush_source(source)) is not None]

    def close(self) -> list[str]:
        with self._lock:
            written = self.flush()
            self._closed = True
            return written

    def _next_seq(self, source: str) -> int:
        if source not in self._seq:
            existing = [parse_batch_name(p) for p in batch_files(self.root, source, self.day)]
            self._seq[source] = max((name[2] for name in existing if name), default=0)
        self._seq[source] += 1
        return self._seq[source]

    def _flush_source(self, source: str) -> str | None:
        buffer = self._buffers[source]
        if not buffer:
            return None
        bars = sorted(buffer.values(), key=lambda b: (b.sym, b.s))
        frame = self.frame(bars)
        first, last = min(b.s for b in bars), max(b.s for b in bars)
        name = f"{first}_{last}_{self._next_seq(source):06d}.parquet"
        path = f"{batch_folder(self.root, source, self.day)}/{name}"
        self.root.write_parquet(frame, path)  # on failure the buffer stays as it was
        landed_wall, landed_market = time.monotonic(), self.now_ms()
        for index, bar in enumerate(bars, start=self.stats.landed_rows):
            self._landed.setdefault(bar.sym, {})[bar.s] = bar.values()
            self._sample_latency(index, landed_wall - bar.received, landed_market - bar.e)
        self._forget_old_keys({bar.sym for bar in bars})
        buffer.clear()
        self.stats.landed_rows += len(bars)
        self.stats.files += 1
        self.landed_files.append(path)
        if self.on_landed is not None:
            self.on_landed(source, frame)
        return path

    def remember(self, landed: pl.DataFrame) -> None:
        """Treat the MINUTE_BARS rows of `landed` (an earlier session's batches of the day) as landed by this
        batcher, so that their repeats are duplicates (within the de-duplication window)."""
        if landed.height == 0:
            return
        rows = landed.select(
            "ticker", pl.col("timestamp").dt.epoch("ms").alias("s"), "open", "high", "low", "close", "volume", "vwap"
        )
        with self._lock:
            for sym, s, *values in rows.iter_rows():
                self._landed.setdefault(sym, {})[s] = tuple(values)
            self._forget_old_keys(set(rows["ticker"].unique().to_list()))

    def _sample_latency(self, index: int, wall_s: float, market_ms: int) -> None:
        """Reservoir sampling: the kept latencies are a uniform sample of every landed row so far."""
        stats = self.stats
        if index < self.latency_samples:
            stats.latency_wall_s.append(wall_s)
            stats.latency_market_ms.append(market_ms)
        elif (slot := self._sampler.randrange(index + 1)) < self.latency_samples:
            stats.latency_wall_s[slot], stats.latency_market_ms[slot] = wall_s, market_ms

    def _forget_old_keys(self, symbols: set[str]) -> None:
        for sym in symbols:
            landed = self._landed[sym]
            horizon = max(landed) - self.dedup_window_ms
            if min(landed) < horizon:
                self._landed[sym] = {s: values for s, values in landed.items() if s >= horizon}

    def frame(self, bars: list[Bar]) -> pl.DataFrame:
        """Bars as a MINUTE_BARS frame (session labelled from the day's bounds)."""
        raw = pl.DataFrame(
            [(b.sym, b.s, b.o, b.h, b.l, b.c, b.v, b.vw, b.n) for b in bars],
            schema={"ticker": pl.String, "t": pl.Int64, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
                    "close": pl.Float64, "volume": pl.Float64, "vwap": pl.Float64, "transactions": pl.Int64},
            orient="row",
        )
        return MINUTE_BARS.conform(
            raw.with_columns(
                timestamp=pl.from_epoch("t", time_unit="ms").dt.replace_time_zone("UTC"),
                session=pl.when(pl.col("t") < self._open_ms).then(pl.lit("pre"))
                .when(pl.col("t") < self._close_ms).then(pl.lit("regular"))
                .otherwise(pl.lit("post")),
            )
        )
