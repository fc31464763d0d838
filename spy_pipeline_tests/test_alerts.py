"""The notifier against a real loopback receiver (Apprise's JSON webhook): payloads, exactly once across a restart,
digests, the per-channel rate limit, and a receiver that is down or slow never holding up the caller."""

from __future__ import annotations

import datetime as dt
import io
import logging
import time
from pathlib import Path

import pytest

from spy_pipeline.io import alerts
from spy_pipeline.io.alerts import Alert, AlertLedger, Notifier, NotifierOptions
from spy_pipeline.logs import REDACTED, redact, url_secrets
from spy_pipeline.settings import ConfigError, load_settings
from spy_pipeline_tests.alert_receiver import AlertReceiver, closed_port

QUICK = NotifierOptions(digest_window_s=0.0, backoff_s=0.05, timeout_s=2.0)
EVENT = {  # a row of options_movement
    "ticker": "O:SPY250108C00590000", "start": dt.datetime(2025, 1, 8, 15, 7, tzinfo=dt.UTC),
    "end": dt.datetime(2025, 1, 8, 15, 20, tzinfo=dt.UTC), "reference_price": 1.25, "trigger_price": 1.55,
    "peak_price": 1.9, "peak_gain_pct": 52.0,
}


def _alert(n: int, kind: str = "test") -> Alert:
    return Alert(kind=kind, key=f"test:{n}", title=f"alert {n}", body=f"body {n}")  # type: ignore[arg-type]


def _notifier(urls: list[str], tmp_path: Path, options: NotifierOptions = QUICK) -> Notifier:
    return Notifier(urls, AlertLedger(tmp_path / "alerts.sqlite"), options)


def test_a_scanner_event_reaches_the_receiver_with_its_figures(tmp_path: Path) -> None:
    alert = alerts.scanner_event_alert(EVENT, iv=0.2346, delta=0.41, run_id="run-1234",
                                       ui_url="http://127.0.0.1:3000")
    with AlertReceiver() as receiver:
        notifier = _notifier([receiver.url("hook")], tmp_path)
        assert notifier.send(alert)
        [payload] = receiver.wait_for(1)
        assert notifier.close(5)
    assert receiver.paths == ["/hook"]
    assert payload["type"] == "info" and payload["title"] == "O:SPY250108C00590000 +24% at 10:07 ET"
    # 15:07 UTC in January is 10:07 EST; 1.55 / 1.25 - 1 = +24.0%
    assert payload["message"] == (
        "O:SPY250108C00590000 at 2025-01-08 10:07 ET: 1.55 from a reference of 1.25 (+24.0%), IV 0.235, "
        "delta 0.410\nhttp://127.0.0.1:3000/runs/run-1234"
    )
    assert [d.status for d in notifier.deliveries] == ["sent"]


def test_a_failed_run_carries_its_run_id_and_error(tmp_path: Path) -> None:
    alert = alerts.run_failed_alert(job="daily_backfill", run_id="abc-123", error="raw_spy_bars: HTTP 500",
                                    partition="2025-01-08", ui_url="http://ui:3000")
    session = alerts.run_failed_alert(job="stream_session", run_id="def-456", error="boom", partition="2025-01-08",
                                      ui_url=None)
    with AlertReceiver() as receiver:
        notifier = _notifier([receiver.url()], tmp_path)
        notifier.send(alert)
        receiver.wait_for(1)
        notifier.send(session)
        first, second = receiver.wait_for(2)
        notifier.close(5)
    assert first["type"] == "failure" and first["title"] == "Run of daily_backfill (2025-01-08) failed"
    assert first["message"] == "run abc-123: raw_spy_bars: HTTP 500\nhttp://ui:3000/runs/abc-123"
    assert second["title"] == "Streaming session 2025-01-08 failed" and session.kind == "session_failed"


def test_each_alert_is_sent_once_even_across_a_restart(tmp_path: Path) -> None:
    with AlertReceiver() as receiver:
        first = _notifier([receiver.url()], tmp_path)
        assert first.send(_alert(1)) and not first.send(_alert(1))
        first.close(5)
        restarted = _notifier([receiver.url()], tmp_path)  # a new process: only the ledger file is shared
        assert not restarted.send(_alert(1))
        assert restarted.send(_alert(2))
        restarted.close(5)
        time.sleep(0.3)  # anything wrongly sent twice would have arrived by now
    assert [p["title"] for p in receiver.payloads] == ["alert 1", "alert 2"]
    assert AlertLedger(tmp_path / "alerts.sqlite").deliveries("test:1") == [("json #1", "sent", 1)]


def test_a_burst_is_one_digest(tmp_path: Path) -> None:
    options = NotifierOptions(digest_window_s=0.5, digest_min_alerts=3, backoff_s=0.05)
    with AlertReceiver() as receiver:
        notifier = _notifier([receiver.url()], tmp_path, options)
        for n in range(5):
            notifier.send(_alert(n, "scanner_event"))
        assert notifier.close(5)
        time.sleep(0.3)
    [payload] = receiver.payloads
    assert payload["title"] == "spy_pipeline: 5 alerts (5 scanner_event)"
    assert payload["message"].splitlines() == [f"- alert {n}" for n in range(5)]
    assert [(d.status, d.digest, len(d.keys)) for d in notifier.deliveries] == [("sent", True, 5)]


def test_two_alerts_are_below_the_digest_threshold(tmp_path: Path) -> None:
    with AlertReceiver() as receiver:
        notifier = _notifier([receiver.url()], tmp_path, NotifierOptions(digest_window_s=0.3, digest_min_alerts=3))
        notifier.send(_alert(1))
        notifier.send(_alert(2))
        notifier.close(5)
    assert [p["title"] for p in receiver.payloads] == ["alert 1", "alert 2"]


def test_the_per_channel_rate_limit_merges_waiting_alerts(tmp_path: Path) -> None:
    # 2 messages per second: the first two go at once, the other four wait for a token and go as one digest
    options = NotifierOptions(digest_window_s=0.0, digest_min_alerts=100, channel_messages=2, channel_period_s=1.0)
    with AlertReceiver() as receiver:
        notifier = _notifier([receiver.url()], tmp_path, options)
        for n in range(6):
            notifier.send(_alert(n))
        assert notifier.close(5)
    titles = [p["title"] for p in receiver.payloads]
    assert titles == ["alert 0", "alert 1", "spy_pipeline: 4 alerts (4 test)"]
    assert receiver.received_at[2] - receiver.received_at[0] >= 0.4  # it waited for the next token (0.5 s)


def test_a_down_receiver_does_not_slow_the_caller_and_is_recorded_as_failed(tmp_path: Path) -> None:
    notifier = _notifier([f"json://127.0.0.1:{closed_port()}/alerts"], tmp_path,
                         NotifierOptions(digest_window_s=0.0, max_attempts=3, backoff_s=0.1))
    started = time.monotonic()
    assert notifier.send(_alert(1))
    assert time.monotonic() - started < 0.5  # the caller never waits for the network
    assert notifier.close(10)
    [delivery] = notifier.deliveries
    assert delivery.status == "failed" and delivery.attempts == 3 and delivery.error
    assert delivery.seconds >= 0.3  # backoff 0.1 + 0.2 s between the three attempts


def test_a_slow_receiver_answers_after_the_caller_returned(tmp_path: Path) -> None:
    with AlertReceiver(delay_s=1.5) as receiver:
        notifier = _notifier([receiver.url()], tmp_path, NotifierOptions(digest_window_s=0.0, timeout_s=5.0))
        notifier.send(_alert(1))
        assert not receiver.answered.is_set()  # send returned before the receiver answered
        notifier.send(_alert(2))  # nor does a second alert wait for the first delivery
        assert not receiver.answered.is_set()
        assert notifier.close(10)
    assert [d.status for d in notifier.deliveries] == ["sent", "sent"]


def test_a_receiver_that_fails_then_recovers_gets_the_alert_on_a_retry(tmp_path: Path) -> None:
    with AlertReceiver(status=503) as receiver:
        notifier = _notifier([receiver.url()], tmp_path, NotifierOptions(digest_window_s=0.0, backoff_s=0.3))
        notifier.send(_alert(1))
        receiver.wait_for(1)
        receiver.status = 200
        assert notifier.close(10)
    [delivery] = notifier.deliveries
    assert delivery.status == "sent" and delivery.attempts >= 2 and len(receiver.payloads) == delivery.attempts


def test_without_urls_nothing_is_sent_and_the_log_line_is_the_alert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spy_pipeline.defs.resources import settings_with_logging

    settings_with_logging()
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == "spy_pipeline"]
    stream = io.StringIO()
    monkeypatch.setattr(handler, "stream", stream)
    settings = load_settings()
    assert settings.alert_url_list == []
    with AlertReceiver() as receiver:  # listening, but no URL points at it
        deliveries = alerts.send(_alert(7), settings=settings)
        time.sleep(0.2)
    assert receiver.payloads == []
    assert [(d.channel, d.status) for d in deliveries] == [("log", "logged")]
    assert "alert 7" in stream.getvalue() and "SPY_PIPELINE_ALERT_URLS is not set" in stream.getvalue()


def test_alert_urls_are_a_comma_separated_secret_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPY_PIPELINE_ALERT_URLS", " tgram://123456:SECRETBOTTOKEN/-100200 , json://127.0.0.1:9/x ")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    settings = load_settings()
    assert settings.alert_url_list == ["tgram://123456:SECRETBOTTOKEN/-100200", "json://127.0.0.1:9/x"]
    assert "SECRETBOTTOKEN" not in repr(settings) and "SECRETBOTTOKEN" not in str(settings.model_dump())
    assert settings.resolved_alert_state == (tmp_path / "home" / "alerts.sqlite").resolve()
    monkeypatch.setenv("SPY_PIPELINE_ALERT_URLS", "tgram://123456:SECRETBOTTOKEN/-100200,not a url")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "SPY_PIPELINE_ALERT_URLS" in str(error.value) and "URL 2" in str(error.value)
    assert "SECRETBOTTOKEN" not in str(error.value) and "\n" not in str(error.value)


def test_an_unknown_scheme_is_one_line_without_the_url(tmp_path: Path) -> None:
    with pytest.raises(alerts.AlertConfigError, match=r"URL nosuch #1 is not a notification URL") as error:
        _notifier(["nosuch://SECRETWEBHOOKKEY/abc"], tmp_path)
    assert "SECRETWEBHOOKKEY" not in str(error.value)


def test_notification_urls_and_their_secret_parts_are_redacted() -> None:
    url = "discord://112233445566/WEBHOOKTOKEN-9f8e7d"
    assert {"112233445566", "WEBHOOKTOKEN-9f8e7d", url} <= set(url_secrets(url))
    assert "127.0.0.1" not in url_secrets("json://127.0.0.1:8080/alerts")  # addresses are not secrets
    # any notification URL in text keeps only its scheme, registered or not
    assert redact(f"failed to post to {url} (timeout)") == f"failed to post to discord://{REDACTED} (timeout)"
    assert redact("see https://example.com/x") == "see https://example.com/x"
