"""The movement scanner, incrementally: the same events as `scanner.movement_events`, fed bar batches as they land.

`IncrementalScanner.update(bars)` takes a batch of option minute bars (any contracts, any row order) and returns
the events that these bars started. Each contract-day keeps its own state — a monotonic deque holding the
rolling minimum over the window, and the open event — so a batch costs time proportional to its own bars, not to
the day so far. `events()` is every event so far in the options_movement schema; once the day's bars are all in,
it equals `movement_events` on them (same floors, same definitions, see scanner.py).

Late bars. A bar at or before its contract's latest bar (a REST gap fill after a reconnect, or a revision of a
bar that already landed) changes the past: that contract-day alone is replayed from its stored bars (kept as two
compact arrays, 16 bytes a bar). Events it starts are reported like any other; an event reported earlier that
the replay no longer has (e.g. the late bar lowered the window's minimum, so the move is part of an earlier
event) is listed in `withdrawn`: its alert went out and cannot be taken back. In a streaming session this happens
when a REST gap fill brings minutes before bars already streamed (at the start, or after a reconnect).
"""

from __future__ import annotations

import datetime as dt
from array import array
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

import polars as pl

from spy_pipeline.domain.scanner import NEW_YORK, event_frame, event_schema, scannable

MINUTE_MS = 60_000


@dataclass
class LiveEvent:
    """An event as the scanner sees it now: `end`, `peak` and `above` grow while it is open."""

    ticker: str
    start_ms: int  # the trigger bar's start, epoch ms UTC
    reference: float
    trigger_price: float
    end_ms: int
    peak: float
    above: int  # bars at or above reference x (1 + trigger_pct/100)
    sustain_level: float
    trigger_level: float

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.start_ms / 1000, dt.UTC)

    def row(self) -> dict[str, object]:
        """The options_movement fields that `scanner_event_alert` reads."""
        return {"ticker": self.ticker, "start": self.start, "reference_price": self.reference,
                "trigger_price": self.trigger_price, "peak_gain_pct": (self.peak / self.reference - 1.0) * 100.0}


class _ContractDay:
    __slots__ = ("closed", "open", "prices", "reported", "ticker", "times", "window")

    def __init__(self, ticker: str) -> None:
        self.ticker = ticker
        self.times = array("q")  # every scanned bar of the day, in time order (for replays)
        self.prices = array("d")
        self.reset()
        self.reported: set[int] = set()  # start_ms of the events already returned by `update`

    def reset(self) -> None:
        self.window: deque[tuple[int, float]] = deque()  # (time, price), prices increasing: front is the minimum
        self.open: LiveEvent | None = None
        self.closed: list[LiveEvent] = []

    @property
    def last_ms(self) -> int:
        return self.times[-1] if self.times else -1


class IncrementalScanner:
    """See the module docstring. Not thread-safe: one caller feeds it."""

    def __init__(
        self,
        window_minutes: int = 120,
        trigger_pct: float = 20.0,
        sustain_pct: float = 10.0,
        *,
        min_price: float = 0.0,
        min_volume: float = 0.0,
    ) -> None:
        if window_minutes < 1:
            raise ValueError(f"window_minutes must be at least 1, got {window_minutes}")
        self.window_ms = window_minutes * MINUTE_MS
        self.trigger_factor = 1.0 + trigger_pct / 100.0
        self.sustain_factor = 1.0 + sustain_pct / 100.0
        self.min_price, self.min_volume = min_price, min_volume
        self._contracts: dict[tuple[str, dt.date], _ContractDay] = {}
        self.bars = 0  # scanned bars taken
        self.replays = 0  # contract-days replayed for a late bar
        # (ticker, start_ms) of events reported by `update` that a late bar then undid (they were alerted)
        self.withdrawn: set[tuple[str, int]] = set()

    def update(self, bars: pl.DataFrame, *, price_column: str = "close", volume_column: str = "volume") -> list[
            LiveEvent]:
        """Take a batch of MINUTE_BARS-like rows (ticker, timestamp UTC, close, volume); the events they started."""
        volume = pl.col(volume_column).cast(pl.Float64) if self.min_volume > 0 else None
        rows = bars.select(
            pl.col("ticker").cast(pl.String),
            pl.col("timestamp").dt.convert_time_zone(NEW_YORK).dt.date().alias("day"),
            pl.col("timestamp").dt.epoch("ms").alias("ms"),
            pl.col(price_column).cast(pl.Float64).alias("price"),
            scannable(pl.col(price_column).cast(pl.Float64), volume, self.min_price, self.min_volume)
            .fill_null(False).alias("scannable"),
        ).drop_nulls(["ticker", "ms"]).sort("ticker", "day", "ms")
        started: list[LiveEvent] = []
        late: set[tuple[str, dt.date]] = set()
        contracts = self._contracts
        current_key, contract = None, None
        for ticker, day, ms, price, keep in rows.iter_rows():
            key = (ticker, day)
            if key != current_key:
                current_key, contract = key, contracts.get(key)
            if contract is not None and ms <= contract.last_ms:  # changes the past: store, replay below
                late.add(key)
                self._store_late(contract, ms, price if keep else None)
                continue
            if not keep:
                continue
            if contract is None:
                contract = contracts[key] = _ContractDay(ticker)
            contract.times.append(ms)
            contract.prices.append(price)
            if key not in late and (event := self._step(contract, ms, price)) is not None:
                contract.reported.add(ms)
                started.append(event)
        self.bars += rows.height
        for key in sorted(late):
            started.extend(self._replay(contracts[key]))
        started.sort(key=lambda e: (e.start_ms, e.ticker))
        return started

    def _step(self, contract: _ContractDay, ms: int, price: float) -> LiveEvent | None:
        """One bar in time order: the window's minimum, then the event logic of scanner.movement_events."""
        window = contract.window
        while window and window[-1][1] >= price:
            window.pop()
        window.append((ms, price))
        horizon = ms - self.window_ms
        while window[0][0] <= horizon:
            window.popleft()
        event = contract.open
        if event is not None:
            if price >= event.sustain_level:
                event.end_ms = ms
                if price > event.peak:
                    event.peak = price
                if price >= event.trigger_level:
                    event.above += 1
                return None
            contract.closed.append(event)  # this bar ends it and may start the next one
            contract.open = None
        reference = window[0][1]
        if reference > 0 and price >= reference * self.trigger_factor:
            contract.open = LiveEvent(
                contract.ticker, ms, reference, price, ms, price, 1, reference * self.sustain_factor,
                reference * self.trigger_factor,
            )
            return contract.open
        return None

    @staticmethod
    def _store_late(contract: _ContractDay, ms: int, price: float | None) -> None:
        """Insert, replace (a revision) or, with price None (no longer scannable), remove the bar at `ms`."""
        at = bisect_left(contract.times, ms)
        present = at < len(contract.times) and contract.times[at] == ms
        if price is None:
            if present:
                del contract.times[at]
                del contract.prices[at]
        elif present:
            contract.prices[at] = price
        else:
            contract.times.insert(at, ms)
            contract.prices.insert(at, price)

    def _replay(self, contract: _ContractDay) -> list[LiveEvent]:
        """The contract-day from its first bar again; the events not reported before."""
        self.replays += 1
        contract.reset()
        for ms, price in zip(contract.times, contract.prices, strict=True):
            self._step(contract, ms, price)
        now = self._events_of(contract)
        starts = {e.start_ms for e in now}
        for ms in contract.reported:
            (self.withdrawn.discard if ms in starts else self.withdrawn.add)((contract.ticker, ms))
        new = [e for e in now if e.start_ms not in contract.reported]
        contract.reported.update(e.start_ms for e in new)
        return new

    @staticmethod
    def _events_of(contract: _ContractDay) -> list[LiveEvent]:
        return contract.closed + ([contract.open] if contract.open is not None else [])

    def events(self) -> pl.DataFrame:
        """Every event so far (the open ones end at their latest bar): options_movement's columns and order."""
        found = [e for c in self._contracts.values() for e in self._events_of(c)]
        schema = event_schema(pl.Datetime("us", "UTC"))
        if not found:
            return pl.DataFrame(schema=schema)
        return event_frame(pl.DataFrame({
            "ticker": [e.ticker for e in found],
            "start": [e.start_ms for e in found],
            "end": [e.end_ms for e in found],
            "reference_price": [e.reference for e in found],
            "trigger_price": [e.trigger_price for e in found],
            "peak_price": [e.peak for e in found],
            "minutes_above_trigger": [e.above for e in found],
        }, schema={"ticker": pl.String, "start": pl.Int64, "end": pl.Int64, "reference_price": pl.Float64,
                   "trigger_price": pl.Float64, "peak_price": pl.Float64, "minutes_above_trigger": pl.Int64},
        ).with_columns(
            pl.from_epoch("start", "ms").dt.replace_time_zone("UTC").cast(schema["start"]),
            pl.from_epoch("end", "ms").dt.replace_time_zone("UTC").cast(schema["end"]),
        ), schema)
