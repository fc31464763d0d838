"""The official WebSocket client, unmodified, behind the one door to Polygon.

The streaming session opens one client per market and watches its connection object to notice reconnects;
these helpers are all it needs of the `polygon` package, so nothing outside spy_pipeline.polygon imports it.
"""

from __future__ import annotations

from polygon import WebSocketClient
from polygon.exceptions import AuthError as WebSocketAuthError
from websockets.protocol import State

from spy_pipeline.polygon.source_schema import ObservingJson, SchemaRecorder

POLYGON_FEED = "socket.polygon.io"  # Polygon's real-time WebSocket host

__all__ = ["POLYGON_FEED", "WebSocketAuthError", "WebSocketClient", "connection_of", "is_open", "websocket_client"]


def websocket_client(
    api_key: str, feed: str, market: str, secure: bool, symbols: tuple[str, ...], max_reconnects: int | None,
    schemas: SchemaRecorder | None = None,
) -> WebSocketClient:
    """A client subscribed to the minute aggregates (``AM.<symbol>``) of `symbols` on one market.

    With `schemas`, every frame's events are reported there as decoded JSON, before the client's models
    (which keep only the fields they know) see them: the client decodes through our `custom_json`.
    """
    return WebSocketClient(
        api_key=api_key, feed=feed, market=market, secure=secure,
        subscriptions=[f"AM.{symbol}" for symbol in symbols], max_reconnects=max_reconnects,
        custom_json=ObservingJson(schemas, market) if schemas is not None else None,
    )


def connection_of(client: WebSocketClient | None) -> object | None:
    """The client's current connection object: a new one after each (re)connect, None before the first."""
    return client.websocket if client is not None else None


def is_open(connection: object | None) -> bool:
    return getattr(connection, "state", None) is State.OPEN
