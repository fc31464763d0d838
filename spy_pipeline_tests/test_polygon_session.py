"""`spy_pipeline.polygon.session`: the one place that picks the real Polygon or the embedded sandbox, for REST
and for the WebSocket feed, and the official WebSocket client reached through `spy_pipeline.polygon.websocket`."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.market_clock import WallClock
from spy_pipeline.logs import redact
from spy_pipeline.polygon.session import open_polygon, open_stream_endpoint
from spy_pipeline.polygon.websocket import POLYGON_FEED, WebSocketAuthError, websocket_client
from spy_pipeline.sandbox.replay_clock import SimClock
from spy_pipeline.settings import load_settings

DAY = dt.date(2025, 1, 8)
PLANTED_KEY = "PLANTEDKEY-0c9d2e7b"


def _collect(api_key: str, feed: str, secure: bool, market: str, symbols: tuple[str, ...]) -> list[Any]:
    """Messages of the factory's client until the server ends the stream (the sandbox does at the close)."""
    client = websocket_client(api_key, feed, market, secure, symbols, max_reconnects=0)
    received: list[Any] = []

    async def processor(messages: list[Any]) -> None:
        received.extend(messages)

    asyncio.run(asyncio.wait_for(client.connect(processor), 30))
    return received


def test_with_a_key_the_stream_is_polygons_feed_on_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGON_API_KEY", PLANTED_KEY)
    with open_stream_endpoint(load_settings(), DAY) as endpoint:
        assert (endpoint.api_key, endpoint.feed, endpoint.secure) == (PLANTED_KEY, "socket.polygon.io", True)
        assert POLYGON_FEED == "socket.polygon.io"
        assert isinstance(endpoint.clock, WallClock) and not endpoint.simulated
        assert PLANTED_KEY not in repr(endpoint)
    assert PLANTED_KEY not in redact(f"key={PLANTED_KEY}")  # masked in logs like the REST key


@pytest.mark.parametrize("replay", [{"speed": 60.0}, {"start_at": "10:00"}, {"drop_every": 3}])
def test_with_a_key_replay_options_are_refused(monkeypatch: pytest.MonkeyPatch, replay: dict[str, Any]) -> None:
    monkeypatch.setenv("POLYGON_API_KEY", PLANTED_KEY)
    with pytest.raises(ValueError, match="unset POLYGON_API_KEY to simulate"), \
            open_stream_endpoint(load_settings(), DAY, **replay):
        pass


@pytest.mark.parametrize("speed", [0.5, 601.0])
def test_replay_speed_outside_1_to_600_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be between 1 and 600"), \
            open_stream_endpoint(load_settings(), DAY, speed=speed):
        pass


@pytest.mark.integration
def test_without_a_key_the_stream_is_a_sandbox_replay_the_official_client_reads() -> None:
    settings = load_settings()
    assert settings.uses_embedded_sandbox
    with open_stream_endpoint(settings, DAY, speed=60.0, start_at="15:58") as endpoint:
        assert endpoint.simulated and not endpoint.secure
        assert endpoint.feed.startswith("127.0.0.1:")
        assert isinstance(endpoint.clock, SimClock) and endpoint.clock.day == DAY
        assert endpoint.api_key not in redact(f"key={endpoint.api_key}")  # a fresh key, masked in logs
        bars = _collect(endpoint.api_key, endpoint.feed, endpoint.secure, "stocks", ("SPY",))
        with pytest.raises(WebSocketAuthError):  # the exception type the session lets through is the client's
            _collect("not-" + endpoint.api_key, endpoint.feed, endpoint.secure, "stocks", ("SPY",))
    close_ms = int(cal.session_bounds(DAY).close.timestamp() * 1000)
    aggregates = [bar for bar in bars if getattr(bar, "event_type", None) == "AM"]
    assert aggregates and {bar.symbol for bar in aggregates} == {"SPY"}
    assert max(bar.end_timestamp for bar in aggregates) == close_ms  # replayed up to the day's close


@pytest.mark.integration
def test_rest_without_a_key_is_an_embedded_sandbox_for_the_block_only() -> None:
    with open_polygon(load_settings()) as client:
        host, port = urlsplit(client.base_url).hostname, urlsplit(client.base_url).port
        assert host == "127.0.0.1" and port
        assert not client.minute_bars("SPY", DAY, DAY).is_empty()
    with pytest.raises(ConnectionRefusedError):  # stopped with the block
        socket.create_connection((host, port), timeout=5).close()
