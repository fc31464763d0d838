"""What the WebSocket sandbox did on each connection (frames sent and lost, messages, subscriptions), for tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class Frame:
    """One frame the server sent (or would have sent, for a lost one)."""

    wall: float  # time.monotonic() when written
    market_ms: int  # market time: the events' end for a data frame, the clock for a status frame
    kind: Literal["status", "data"]
    text: str

    def items(self) -> list[dict[str, Any]]:
        return json.loads(self.text)


@dataclass
class ConnectionLog:
    """What happened on one connection, for tests. Written by the server thread; read it once things settle."""

    id: int
    market: str
    opened_market_ms: int
    authenticated: bool = False
    subscriptions: dict[str, int] = field(default_factory=dict)  # channel -> market ms it took effect (current)
    subscribed: list[tuple[int, str]] = field(default_factory=list)  # (market ms, channel), every subscription
    sent: list[Frame] = field(default_factory=list)
    lost: list[Frame] = field(default_factory=list)  # data frames due when the connection was dropped
    received: list[str] = field(default_factory=list)
    ended_by: str | None = None  # "drop", "session_end", "auth_failed", "server_stop" or "client"
    ended_market_ms: int | None = None

    @property
    def data_frames(self) -> list[Frame]:
        return [f for f in self.sent if f.kind == "data"]

    def events(self, ev: str | None = None, sym: str | None = None) -> list[dict[str, Any]]:
        """Data events sent on this connection, in order."""
        return [
            item
            for frame in self.data_frames
            for item in frame.items()
            if (ev is None or item["ev"] == ev) and (sym is None or item["sym"] == sym)
        ]
