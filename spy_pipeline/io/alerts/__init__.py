"""Alerts: a person hears about a move or a failure within seconds (Apprise: Telegram, Slack, Discord, e-mail,
JSON webhooks), each fact once, bursts as one digest, never holding up the pipeline.

The one-call API for code elsewhere (a sensor, a job), e.g. the streaming health sensor on a stalled session:

    from spy_pipeline.io import alerts
    alerts.send(alerts.session_stalled_alert(day="2025-01-08", run_id=run.run_id, reason="no heartbeat for 3 min"))

`send` reads SPY_PIPELINE_ALERT_URLS and the ledger's place from the settings, queues the alerts, waits for their
delivery at most `wait_s` and returns what happened (`Delivery` per channel and message). Inside Dagster prefer
the `notifier` resource (spy_pipeline/defs/alerts), which also records the deliveries in the UI.
"""

from __future__ import annotations

from collections.abc import Iterable

from spy_pipeline.io.alerts.ledger import AlertLedger
from spy_pipeline.io.alerts.model import (
    Alert,
    Delivery,
    Message,
    check_failed_alert,
    digest,
    partition_missing_alert,
    polygon_error_rate_alert,
    run_failed_alert,
    run_link,
    scanner_event_alert,
    session_stalled_alert,
)
from spy_pipeline.io.alerts.notifier import AlertConfigError, Notifier, NotifierOptions, channel_label
from spy_pipeline.settings import Settings, load_settings


def notifier_from_settings(settings: Settings, options: NotifierOptions | None = None) -> Notifier:
    return Notifier(settings.alert_url_list, AlertLedger(settings.resolved_alert_state), options)


def send(alert: Alert | Iterable[Alert], *, wait_s: float = 10.0, settings: Settings | None = None) -> list[Delivery]:
    """Send one alert or several (each key once, ever); wait for delivery at most `wait_s`."""
    notifier = notifier_from_settings(settings or load_settings())
    notifier.send_all([alert] if isinstance(alert, Alert) else alert)
    notifier.close(wait_s)
    return list(notifier.deliveries)


__all__ = [
    "Alert",
    "AlertConfigError",
    "AlertLedger",
    "Delivery",
    "Message",
    "Notifier",
    "NotifierOptions",
    "channel_label",
    "check_failed_alert",
    "digest",
    "notifier_from_settings",
    "partition_missing_alert",
    "polygon_error_rate_alert",
    "run_failed_alert",
    "run_link",
    "scanner_event_alert",
    "send",
    "session_stalled_alert",
]
