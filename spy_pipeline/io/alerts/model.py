"""What an alert is, the alerts the pipeline sends, and how a burst reads as one digest.

An alert's `key` is its identity: the same key is sent once, ever (the ledger remembers it), so a key names the
fact, not the moment it was noticed (`run-failed:{run_id}`, `scanner:{ticker}:{start}`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
DIGEST_LINES = 20  # a digest lists this many alerts, then "… and N more"

AlertKind = Literal[
    "scanner_event", "run_failed", "check_failed", "session_stalled", "session_failed", "partition_missing",
    "polygon_error_rate", "test",
]
Severity = Literal["info", "warning", "failure"]


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    key: str
    title: str
    body: str
    severity: Severity = "warning"
    fields: Mapping[str, Any] = field(default_factory=dict)  # the figures, machine-readable (sent in digests too)
    link: str | None = None

    def text(self) -> str:
        return f"{self.body}\n{self.link}" if self.link else self.body


@dataclass(frozen=True)
class Message:
    """What one channel is sent: one alert, or a digest of several."""

    title: str
    body: str
    severity: Severity
    alerts: tuple[Alert, ...]

    @property
    def keys(self) -> list[str]:
        return [alert.key for alert in self.alerts]


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one message to one channel."""

    channel: str  # a label without secrets, e.g. "tgram #1"
    keys: tuple[str, ...]
    status: Literal["sent", "failed", "logged"]  # logged: no channel configured, the log line is the alert
    attempts: int
    seconds: float
    error: str = ""
    digest: bool = False


def single(alert: Alert) -> Message:
    return Message(alert.title, alert.text(), alert.severity, (alert,))


def digest(alerts: Sequence[Alert]) -> Message:
    """One message for a burst: a count per kind in the title, one line per alert (the first DIGEST_LINES)."""
    kinds: dict[str, int] = {}
    for alert in alerts:
        kinds[alert.kind] = kinds.get(alert.kind, 0) + 1
    title = f"spy_pipeline: {len(alerts)} alerts (" + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")"
    lines = [f"- {alert.title}" + (f" {alert.link}" if alert.link else "") for alert in alerts[:DIGEST_LINES]]
    if len(alerts) > DIGEST_LINES:
        lines.append(f"… and {len(alerts) - DIGEST_LINES} more (see the alert_deliveries asset in Dagster)")
    worst: Severity = "info"
    for alert in alerts:
        if ("info", "warning", "failure").index(alert.severity) > ("info", "warning", "failure").index(worst):
            worst = alert.severity
    return Message(title, "\n".join(lines), worst, tuple(alerts))


def run_link(ui_url: str | None, run_id: str | None) -> str | None:
    return f"{ui_url.rstrip('/')}/runs/{run_id}" if ui_url and run_id else None


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"  # NaN != NaN


def scanner_event_alert(
    event: Mapping[str, Any], *, iv: float | None, delta: float | None, run_id: str | None, ui_url: str | None
) -> Alert:
    """A row of options_movement (ticker, start UTC, reference_price, trigger_price, peak_gain_pct, …) with the
    contract's IV and delta at the trigger minute (None when consolidated has no value)."""
    start: dt.datetime = event["start"]
    start_utc = start.replace(tzinfo=dt.UTC) if start.tzinfo is None else start
    trigger_et = start_utc.astimezone(NEW_YORK)
    reference, trigger = float(event["reference_price"]), float(event["trigger_price"])
    gain_pct = (trigger / reference - 1.0) * 100.0
    ticker = str(event["ticker"])
    fields = {
        "contract": ticker,
        "trigger_time_et": trigger_et.strftime("%Y-%m-%d %H:%M"),
        "reference_price": reference,
        "trigger_price": trigger,
        "gain_pct": round(gain_pct, 2),
        "peak_gain_pct": round(float(event["peak_gain_pct"]), 2) if event.get("peak_gain_pct") is not None else None,
        "iv": None if iv is None or iv != iv else round(iv, 4),
        "delta": None if delta is None or delta != delta else round(delta, 4),
        "run_id": run_id,
    }
    body = (
        f"{ticker} at {fields['trigger_time_et']} ET: {_money(trigger)} from a reference of {_money(reference)} "
        f"(+{gain_pct:.1f}%), IV {_number(iv)}, delta {_number(delta)}"
    )
    return Alert(
        kind="scanner_event", key=f"scanner:{ticker}:{start_utc.isoformat()}",
        title=f"{ticker} +{gain_pct:.0f}% at {trigger_et:%H:%M} ET", body=body, severity="info",
        fields=fields, link=run_link(ui_url, run_id),
    )


def run_failed_alert(*, job: str, run_id: str, error: str, partition: str | None, ui_url: str | None) -> Alert:
    kind: AlertKind = "session_failed" if job == "stream_session" else "run_failed"
    what = f"Streaming session {partition or ''}".strip() if kind == "session_failed" else f"Run of {job}"
    where = f" ({partition})" if partition and kind == "run_failed" else ""
    return Alert(
        kind=kind, key=f"run-failed:{run_id}", title=f"{what}{where} failed", body=f"run {run_id}: {error}",
        severity="failure", fields={"job": job, "run_id": run_id, "partition": partition, "error": error},
        link=run_link(ui_url, run_id),
    )


def check_failed_alert(
    *, asset: str, check: str, partition: str | None, run_id: str, description: str, ui_url: str | None
) -> Alert:
    where = f"{asset}[{partition}]" if partition else asset
    return Alert(
        kind="check_failed", key=f"check-failed:{run_id}:{asset}:{check}:{partition or ''}",
        title=f"Blocking check {check} failed on {where}", body=f"run {run_id}: {description}".rstrip(": "),
        severity="failure",
        fields={"asset": asset, "check": check, "partition": partition, "run_id": run_id, "description": description},
        link=run_link(ui_url, run_id),
    )


def session_stalled_alert(*, day: str, run_id: str, reason: str, ui_url: str | None = None) -> Alert:
    """For the streaming health sensor: a running session whose heartbeat stopped."""
    return Alert(
        kind="session_stalled", key=f"session-stalled:{run_id}", title=f"Streaming session {day} stalled",
        body=f"run {run_id}: {reason}", severity="failure", fields={"day": day, "run_id": run_id, "reason": reason},
        link=run_link(ui_url, run_id),
    )


def partition_missing_alert(*, day: str, assets: Sequence[str], since: str) -> Alert:
    """For the catch-up automation: a nightly partition still missing after the catch-up window."""
    return Alert(
        kind="partition_missing", key=f"partition-missing:{day}", title=f"Trading day {day} still missing",
        body=f"{', '.join(assets)} not materialized for {day} (expected since {since})", severity="failure",
        fields={"day": day, "assets": list(assets), "since": since},
    )


def polygon_error_rate_alert(*, errors: int, requests: int, threshold: float, since_key: str) -> Alert:
    rate = errors / requests if requests else 0.0
    return Alert(
        kind="polygon_error_rate", key=f"polygon-error-rate:{since_key}",
        title=f"Polygon error rate {rate:.1%} (threshold {threshold:.1%})",
        body=f"{errors} failed attempts (retried) in the last {requests} requests to Polygon",
        severity="warning",
        fields={"errors": errors, "requests": requests, "rate": round(rate, 4), "threshold": threshold},
    )
