"""The movement scanner during the streaming session: each landed option batch is scanned as it lands, and each
new event is an alert (contract, trigger time ET, reference and trigger prices, gain, IV and delta at the
trigger, a link to the run).

`LiveScanner.on_landed` is the MicroBatcher's landing hook: it only enqueues the batch, so landing never waits
for the scan or for an alert. A worker thread runs `domain.live_scanner.IncrementalScanner` on the batches (time
proportional to the new bars) and hands the events to the `Notifier`, whose channel threads deliver them: a slow
or unreachable receiver delays nothing but its own deliveries. Each alert goes once, ever (the ledger's key
``scanner:{ticker}:{start}``, the same as the daily scanner's sensor, which therefore does not send it again).

IV and delta at the trigger minute come from the contract's OCC terms, SPY's streamed close of that minute (or
the latest before it) and the day's rates, as consolidated computes them; without a SPY bar yet they are n/a.
"""

from __future__ import annotations

import queue
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl

from spy_pipeline.domain.black_scholes import implied_vol_and_greeks
from spy_pipeline.domain.consolidate import SECONDS_PER_YEAR, expiry_close
from spy_pipeline.domain.live_scanner import IncrementalScanner, LiveEvent
from spy_pipeline.domain.occ import OccTickerError, parse_ticker
from spy_pipeline.io.alerts import Alert, AlertLedger, Delivery, Notifier, NotifierOptions, scanner_event_alert
from spy_pipeline.logs import get_logger

log = get_logger(__name__)
_STOP = object()


@dataclass(frozen=True)
class LiveScanConfig:
    window_minutes: int = 120
    trigger_pct: float = 20.0
    sustain_pct: float = 10.0
    min_price: float = 0.0
    min_volume: float = 0.0
    risk_free_rate: float = 0.045
    dividend_yield: float = 0.0
    run_id: str | None = None  # for the alert's link to the run in the UI
    ui_url: str | None = None


@dataclass
class LiveScanStats:
    batches: int = 0
    bars: int = 0
    events: int = 0  # events started
    alerts: int = 0  # queued for delivery (new keys)
    scan_seconds: list[float] = field(default_factory=list, repr=False)  # per option batch
    # alert key -> seconds from its trigger bar's landing to the delivery (the receiver's answer)
    delivered_after_s: dict[str, float] = field(default_factory=dict, repr=False)
    failed: int = 0


class LiveScanner:
    """See the module docstring. `close()` after the session: scans what is queued, waits for deliveries at most
    `wait_s`, and stops the worker."""

    def __init__(
        self,
        config: LiveScanConfig,
        urls: Sequence[str],
        ledger: AlertLedger | None,
        options: NotifierOptions | None = None,
        *,
        on_alert: Callable[[Alert], None] | None = None,
    ) -> None:
        self.config = config
        self.scanner = IncrementalScanner(
            config.window_minutes, config.trigger_pct, config.sustain_pct, min_price=config.min_price,
            min_volume=config.min_volume,
        )
        self.notifier = Notifier(urls, ledger, options, on_delivery=self._delivered)
        self.on_alert = on_alert
        self.stats = LiveScanStats()
        self.alerts: list[Alert] = []  # every alert queued (new keys), in order
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()  # unbounded: `on_landed` never blocks
        self._landed_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._spy_minutes: list[int] = []  # SPY's streamed closes, by bar start (ms), kept sorted
        self._spy_closes: list[float] = []
        implied_vol_and_greeks(1.0, 100.0, 100.0, 0.1, 0.04, 0.0, True)  # compile or load the kernel now
        self._worker = threading.Thread(target=self._run, name="live-scanner", daemon=True)
        self._worker.start()

    # the landing hook --------------------------------------------------------------------------------

    def on_landed(self, source: str, frame: pl.DataFrame) -> None:
        if source in ("options", "spy"):
            self._queue.put((source, frame, time.monotonic()))

    # the worker ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            source, frame, landed = item  # type: ignore[misc]
            try:
                if source == "spy":
                    self._take_spy(frame)
                else:
                    self._scan(frame, landed)
            except Exception as exc:  # one bad batch must not end the live scan (the daily scan is the record)
                log.error("live_scanner_batch_failed", source=source, rows=frame.height, error=repr(exc))

    def _take_spy(self, frame: pl.DataFrame) -> None:
        for minute, close in frame.select(pl.col("timestamp").dt.epoch("ms"), "close").iter_rows():
            at = bisect_right(self._spy_minutes, minute)
            if at and self._spy_minutes[at - 1] == minute:
                self._spy_closes[at - 1] = close
            else:
                self._spy_minutes.insert(at, minute)
                self._spy_closes.insert(at, close)

    def _scan(self, frame: pl.DataFrame, landed: float) -> None:
        started = time.perf_counter()
        events = self.scanner.update(frame)
        self.stats.scan_seconds.append(time.perf_counter() - started)
        self.stats.batches += 1
        self.stats.bars += frame.height
        self.stats.events += len(events)
        if not events:
            return
        alerts = [self.alert(event) for event in events]
        with self._lock:
            for alert in alerts:
                self._landed_at[alert.key] = landed
        sent = self.notifier.send_all(alerts)  # returns at once: the channels' threads deliver
        self.stats.alerts += len(sent)
        self.alerts.extend(sent)
        for alert in sent:
            log.info("live_scanner_event", key=alert.key, title=alert.title)
            if self.on_alert is not None:
                self.on_alert(alert)

    def alert(self, event: LiveEvent) -> Alert:
        iv, delta = self.greeks_at_trigger(event)
        return scanner_event_alert(event.row(), iv=iv, delta=delta, run_id=self.config.run_id,
                                   ui_url=self.config.ui_url)

    def greeks_at_trigger(self, event: LiveEvent) -> tuple[float | None, float | None]:
        at = bisect_right(self._spy_minutes, event.start_ms)
        try:
            contract = parse_ticker(event.ticker)
        except OccTickerError:
            return None, None
        if not at:
            return None, None
        spot = self._spy_closes[at - 1]
        years = (expiry_close(contract.expiration) - event.start).total_seconds() / SECONDS_PER_YEAR
        result = implied_vol_and_greeks(
            event.trigger_price, spot, float(contract.strike), years, self.config.risk_free_rate,
            self.config.dividend_yield, contract.contract_type == "call",
        )
        iv, delta = float(result.iv), float(result.delta)
        return (None, None) if iv != iv else (iv, delta)  # NaN: no implied volatility at that price

    def _delivered(self, delivery: Delivery) -> None:
        now = time.monotonic()
        with self._lock:
            for key in delivery.keys:
                if delivery.status == "sent" and key in self._landed_at:
                    self.stats.delivered_after_s.setdefault(key, now - self._landed_at[key])
                elif delivery.status == "failed":
                    self.stats.failed += 1

    # the end ---------------------------------------------------------------------------------------------

    def events(self) -> pl.DataFrame:
        """The day's events so far (options_movement's schema); after `close`, all of the session's."""
        return self.scanner.events()

    def close(self, wait_s: float = 10.0) -> bool:
        """Scan what landed, then wait for the deliveries at most `wait_s`; True if all were delivered or failed.
        A receiver still being retried is left to its daemon thread: the session's end is never held longer."""
        self._queue.put(_STOP)
        self._worker.join()
        return self.notifier.close(wait_s)

    @property
    def deliveries(self) -> list[Delivery]:
        return list(self.notifier.deliveries)

