"""Sending alerts through Apprise without ever holding up the caller.

`Notifier.send(alert)` claims the alert's key in the ledger (exactly once) and puts it on each channel's bounded
queue; it returns at once. Each channel (one notification URL) has its own thread that:
- waits `digest_window_s` after an alert for others; a burst of `digest_min_alerts` or more goes as one digest;
- keeps within `channel_messages` per `channel_period_s` (a token bucket); alerts that waited for a token are
  merged into one digest, so a flood becomes a few messages, never a backlog;
- retries a failed delivery with exponential backoff (`max_attempts`), then records it as failed.
A receiver that is down or slow only delays its own channel's thread. URLs never leave this module: channels are
named by scheme and position ("tgram #1"), and their secret parts are registered for log redaction.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from spy_pipeline.io.alerts.ledger import AlertLedger
from spy_pipeline.io.alerts.model import Alert, Delivery, Message, digest, single
from spy_pipeline.logs import get_logger, redact, register_url_secrets

log = get_logger(__name__)
_STOP = object()


class AlertConfigError(ValueError):
    """A notification URL Apprise cannot use; the message names its position and scheme, never the URL."""


@dataclass(frozen=True)
class NotifierOptions:
    digest_window_s: float = 2.0  # after an alert, wait this long for the rest of a burst
    digest_min_alerts: int = 3  # a burst of this many or more is sent as one digest
    channel_messages: int = 20  # at most this many messages per channel in any `channel_period_s`
    channel_period_s: float = 60.0  # (Telegram allows about 20 messages a minute in a group)
    max_attempts: int = 4
    backoff_s: float = 1.0  # 1, 2, 4 s … between attempts, at most 30 s
    timeout_s: float = 5.0  # connect and read timeout of one attempt
    queue_size: int = 1000

    def __post_init__(self) -> None:
        if self.digest_min_alerts < 2 or self.channel_messages < 1 or self.max_attempts < 1:
            raise ValueError("digest_min_alerts >= 2, channel_messages >= 1 and max_attempts >= 1 are needed")
        if self.channel_period_s <= 0 or self.digest_window_s < 0 or self.timeout_s <= 0:
            raise ValueError("channel_period_s and timeout_s must be positive, digest_window_s not negative")


class Sender(Protocol):
    def __call__(self, message: Message) -> tuple[bool, str]: ...


def apprise_sender(url: str, label: str, timeout_s: float) -> Sender:
    """One Apprise object for one URL, with short socket timeouts and no persistent storage on disk."""
    import apprise

    bus = apprise.Apprise(asset=apprise.AppriseAsset(storage_mode="memory"))
    if not bus.add(url):
        raise AlertConfigError(f"SPY_PIPELINE_ALERT_URLS: URL {label} is not a notification URL Apprise knows")
    for service in bus:
        service.socket_connect_timeout = timeout_s
        service.socket_read_timeout = timeout_s
    types = {"info": apprise.NotifyType.INFO, "warning": apprise.NotifyType.WARNING,
             "failure": apprise.NotifyType.FAILURE}

    def send(message: Message) -> tuple[bool, str]:
        result = bus.notify(body=message.body, title=message.title, notify_type=types[message.severity])
        status = getattr(result, "status", None)  # Apprise 2.x: SUCCESS, FAILURE, TIMEOUT …
        return bool(result), "" if result else f"not delivered ({getattr(status, 'name', 'failure').lower()})"

    return send


def channel_label(url: str, position: int) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else "?"
    return f"{scheme} #{position}"


class _Bucket:
    def __init__(self, messages: int, period_s: float, clock: Callable[[], float]) -> None:
        self.capacity, self.rate, self.clock = float(messages), messages / period_s, clock
        self.tokens, self.updated = float(messages), clock()

    def wait_s(self) -> float:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


class _Channel:
    def __init__(self, label: str, sender: Sender, options: NotifierOptions,
                 report: Callable[[Delivery, int], None]) -> None:
        self.label, self.sender, self.options, self.report = label, sender, options, report
        self.queue: queue.Queue[object] = queue.Queue(maxsize=options.queue_size)
        self.bucket = _Bucket(options.channel_messages, options.channel_period_s, time.monotonic)
        self.thread = threading.Thread(target=self._run, name=f"alerts {label}", daemon=True)
        self.thread.start()

    def _gather(self, pending: list[Alert], seconds: float) -> bool:
        """Move alerts arriving within `seconds` into `pending`; False once asked to stop."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                item = self.queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                return True
            if item is _STOP:
                return False
            pending.append(item)  # type: ignore[arg-type]

    def _run(self) -> None:
        pending: list[Alert] = []
        running = True
        while running or pending:
            if not pending:
                item = self.queue.get()
                if item is _STOP:
                    return
                pending.append(item)  # type: ignore[arg-type]
                running = self._gather(pending, self.options.digest_window_s)
            waited = False
            while (wait := self.bucket.wait_s()) > 0:  # rate-limited: whatever arrives meanwhile joins a digest
                waited = True
                if running:
                    running = self._gather(pending, wait)
                else:
                    time.sleep(wait)
            if len(pending) >= self.options.digest_min_alerts or (waited and len(pending) > 1):
                message, pending = digest(pending), []
            else:
                message = single(pending.pop(0))
            self.bucket.take()
            self._deliver(message)

    def _deliver(self, message: Message) -> None:
        started, error = time.monotonic(), ""
        for attempt in range(1, self.options.max_attempts + 1):
            try:
                ok, error = self.sender(message)
            except Exception as exc:  # a broken plugin must not kill the channel's thread
                ok, error = False, f"{type(exc).__name__}: {exc}"
            if ok:
                break
            if attempt < self.options.max_attempts:
                time.sleep(min(self.options.backoff_s * 2 ** (attempt - 1), 30.0))
        delivery = Delivery(
            channel=self.label, keys=tuple(message.keys), status="sent" if ok else "failed", attempts=attempt,
            seconds=round(time.monotonic() - started, 3), error=redact(error), digest=len(message.alerts) > 1,
        )
        self.report(delivery, len(message.alerts))


class Notifier:
    """Alerts to every URL in `urls` (none: the log line is the alert). Use as a context manager, or call
    `close()`: it waits for deliveries in flight at most its timeout."""

    def __init__(
        self,
        urls: Sequence[str],
        ledger: AlertLedger | None,
        options: NotifierOptions | None = None,
        *,
        sender_factory: Callable[[str, str, float], Sender] = apprise_sender,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        register_url_secrets(urls)
        self.options = options or NotifierOptions()
        self.ledger, self.on_delivery = ledger, on_delivery
        self.deliveries: list[Delivery] = []
        self._outstanding = 0
        self._done = threading.Condition()
        senders = [(channel_label(url, i), sender_factory(url, channel_label(url, i), self.options.timeout_s))
                   for i, url in enumerate(urls, start=1)]
        self._channels = [_Channel(label, sender, self.options, self._report) for label, sender in senders]

    @property
    def channels(self) -> list[str]:
        return [channel.label for channel in self._channels]

    def send(self, alert: Alert) -> bool:
        """Queue `alert` for every channel; returns at once. False when its key was already sent."""
        return bool(self.send_all([alert]))

    def send_all(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Queue the alerts not sent before (one ledger transaction for all); returns them, at once."""
        alerts = list(alerts)
        new = self.ledger.claim_many(alerts) if self.ledger is not None else alerts
        for duplicate in {alert.key for alert in alerts} - {alert.key for alert in new}:
            log.info("alert_duplicate", key=duplicate)
        for alert in new:
            self._queue(alert)
        return new

    def _queue(self, alert: Alert) -> None:
        log.warning("alert", kind=alert.kind, key=alert.key, title=alert.title, body=alert.body,
                    channels=self.channels or "none: SPY_PIPELINE_ALERT_URLS is not set")
        if not self._channels:
            self._record(Delivery("log", (alert.key,), "logged", 0, 0.0))
            return
        for channel in self._channels:
            with self._done:
                self._outstanding += 1
            try:
                channel.queue.put_nowait(alert)
            except queue.Full:
                self._report(Delivery(channel.label, (alert.key,), "failed", 0, 0.0, "queue full: dropped"), 1)

    def _report(self, delivery: Delivery, alerts: int) -> None:
        self._record(delivery)
        with self._done:
            self._outstanding -= alerts
            self._done.notify_all()

    def _record(self, delivery: Delivery) -> None:
        fields = {"channel": delivery.channel, "keys": list(delivery.keys), "attempts": delivery.attempts,
                  "seconds": delivery.seconds, "digest": delivery.digest}
        if delivery.status == "failed":
            log.error("alert_delivery_failed", error=delivery.error, **fields)
        elif delivery.status == "sent":
            log.info("alert_delivered", **fields)
        with self._done:
            self.deliveries.append(delivery)
        if self.ledger is not None:
            try:
                self.ledger.record(delivery)
            except Exception as exc:  # the record is a courtesy; the delivery itself happened
                log.warning("alert_ledger_unwritable", error=f"{type(exc).__name__}: {exc}")
        if self.on_delivery is not None:
            self.on_delivery(delivery)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued alert is delivered or has failed, at most `timeout_s`; True if all are done."""
        with self._done:
            return self._done.wait_for(lambda: self._outstanding <= 0, timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush, then stop the channels' threads. Threads still retrying after `timeout_s` are left to finish
        on their own (they are daemon threads): a slow receiver never holds the caller longer."""
        done = self.flush(timeout_s)
        for channel in self._channels:
            with contextlib.suppress(queue.Full):
                channel.queue.put_nowait(_STOP)
        return done

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
