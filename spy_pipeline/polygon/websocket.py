"""The official WebSocket client, unmodified, behind the one door to Polygon.

The streaming session opens one client per market and watches its connection object to notice reconnects;
these helpers are all it needs of the `polygon` package, so nothing outside spy_pipeline.polygon imports it.
"""

from __future__ import annotations

from polygon import WebSocketClient
from polygon.exceptions import AuthError as WebSocketAuthError
from websockets.protocol import State

POLYGON_FEED = "socket.polygon.io"  # Polygon's real-time WebSocket host

__all__ = ["POLYGON_FEED", "WebSocketAuthError", "WebSocketClient", "connection_of", "is_open", "websocket_client"]


def websocket_client(
    api_key: str, feed: str, market: str, secure: bool, symbols: tuple[str, ...], max_reconnects: int | None
) -> WebSocketClient:
    """A client subscribed to the minute aggregates (``AM.<symbol>``) of `symbols` on one market."""
    return WebSocketClient(
        api_key=api_key, feed=feed, market=market, secure=secure,
        subscriptions=[f"AM.{symbol}" for symbol in symbols], max_reconnects=max_reconnects,
    )


def connection_of(client: WebSocketClient | None) -> object | None:
    """The client's current connection object: a new one after each (re)connect, None before the first."""
    return client.websocket if client is not None else None


def is_open(connection: object | None) -> bool:
    return getattr(connection, "state", None) is State.OPEN
