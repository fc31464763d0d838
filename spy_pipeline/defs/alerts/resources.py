"""The `notifier` resource, and how deliveries show in Dagster: the `alert_deliveries` asset's observations
(what was sent, to which channel, the result) plus one line per delivery in the sending sensor's log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagster import AssetKey, AssetObservation, AssetSpec, ConfigurableResource, DagsterInstance, MetadataValue
from pydantic import Field

from spy_pipeline.defs.metadata import markdown_table
from spy_pipeline.io.alerts import Alert, AlertLedger, Delivery, Notifier, NotifierOptions
from spy_pipeline.logs import configure_logging, redact
from spy_pipeline.settings import load_settings

ALERT_DELIVERIES = AssetKey("alert_deliveries")
alert_deliveries = AssetSpec(
    ALERT_DELIVERIES,
    group_name="operations",
    kinds={"apprise"},
    description="Every alert sent (scanner events, failed runs and checks, Polygon's error rate …): one observation "
    "per sending sensor tick with the alerts, the channels (by scheme and position, never the URL) and the "
    "delivery results. SPY_PIPELINE_ALERT_URLS unset: the alerts are only logged here and in the logs.",
)


class NotifierResource(ConfigurableResource):
    """Alerts through Apprise to SPY_PIPELINE_ALERT_URLS (read at run time, never from config: they are secret).

    Sensors send; a tick waits for its deliveries at most `wait_s` (a sensor tick has 60 s), a receiver that is
    down or slow is retried in the background and never reaches a run.
    """

    digest_window_s: float = Field(default=2.0, ge=0, description="After an alert, wait this long for a burst")
    digest_min_alerts: int = Field(default=3, ge=2, description="A burst of this many alerts is one digest")
    channel_messages: int = Field(default=20, ge=1, description="At most this many messages per channel …")
    channel_period_s: float = Field(default=60.0, gt=0, description="… in any this many seconds")
    max_attempts: int = Field(default=4, ge=1, description="Delivery attempts per message (backoff 1, 2, 4 s …)")
    timeout_s: float = Field(default=5.0, gt=0, description="Connect and read timeout of one attempt")
    wait_s: float = Field(default=20.0, ge=0, description="How long a sensor tick waits for its deliveries")

    def open(self) -> Notifier:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format, secret_urls=settings.alert_url_list)
        options = NotifierOptions(
            digest_window_s=self.digest_window_s, digest_min_alerts=self.digest_min_alerts,
            channel_messages=self.channel_messages, channel_period_s=self.channel_period_s,
            max_attempts=self.max_attempts, timeout_s=self.timeout_s, queue_size=20_000,
        )
        return Notifier(settings.alert_url_list, AlertLedger(settings.resolved_alert_state), options)

    def send(self, instance: DagsterInstance, alerts: Sequence[Alert], log: Any = None) -> list[Delivery]:
        """Send `alerts` (each key once, ever), wait at most `wait_s`, record the outcome in Dagster."""
        notifier = self.open()
        sent = notifier.send_all(alerts)
        notifier.close(self.wait_s)
        deliveries = list(notifier.deliveries)
        if sent:
            record_deliveries(instance, sent, deliveries, notifier.channels, log)
        return deliveries


def record_deliveries(
    instance: DagsterInstance, alerts: Sequence[Alert], deliveries: Sequence[Delivery], channels: Sequence[str],
    log: Any = None,
) -> None:
    """An observation of `alert_deliveries` and a log line per delivery; alerts still in flight show as pending."""
    outcome: dict[str, list[str]] = {}
    for delivery in deliveries:
        for key in delivery.keys:
            outcome.setdefault(key, []).append(
                f"{delivery.channel}: {delivery.status}"
                + (f" after {delivery.attempts} attempts" if delivery.attempts > 1 else "")
                + (" (digest)" if delivery.digest else "")
                + (f" — {delivery.error}" if delivery.error else "")
            )
        if log is not None:
            text = (f"alert {delivery.status} → {delivery.channel}: {len(delivery.keys)} alert(s), "
                    f"{delivery.attempts} attempt(s) {delivery.error}")
            (log.error if delivery.status == "failed" else log.info)(redact(text.strip()))
    rows = [[alert.kind, alert.title.replace("|", "/"), "; ".join(outcome.get(alert.key, ["pending"]))]
            for alert in alerts[:200]]
    metadata: dict[str, Any] = {
        "alerts": len(alerts),
        "channels": ", ".join(channels) or "none (SPY_PIPELINE_ALERT_URLS unset): logged only",
        "sent": sum(1 for d in deliveries if d.status == "sent"),
        "failed": sum(1 for d in deliveries if d.status == "failed"),
        "deliveries": markdown_table(["kind", "alert", "result"], rows),
        "keys": MetadataValue.json([alert.key for alert in alerts[:200]]),
    }
    instance.report_runless_asset_event(AssetObservation(asset_key=ALERT_DELIVERIES, metadata=metadata))
