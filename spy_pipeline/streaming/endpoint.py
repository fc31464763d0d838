"""Where a streaming session connects: Polygon's WebSocket feed with a key, else the sandbox's replay.

Without POLYGON_API_KEY the sandbox replays the synthetic market of the session's day at `speed` (1x is
real time) from `start_at` (ET, default: now's time of day, so a session started before the open waits
for it); the session then runs on the sandbox's clock, so a replayed day ends by itself.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.logs import register_secret
from spy_pipeline.sandbox.websocket import SandboxStream
from spy_pipeline.settings import Settings
from spy_pipeline.streaming.session import Clock, WallClock

POLYGON_FEED = "socket.polygon.io"


@dataclass(frozen=True)
class StreamEndpoint:
    api_key: str = field(repr=False)
    feed: str
    secure: bool
    clock: Clock
    sandbox: SandboxStream | None = None

    @property
    def simulated(self) -> bool:
        return self.sandbox is not None


def _default_start(day: dt.date) -> str:
    """Today: the current time of day (from the pre-market open on); another day: five minutes before the open."""
    now = dt.datetime.now(cal.NEW_YORK)
    bounds = cal.session_bounds(day)
    if now.date() != day:
        return (bounds.open - dt.timedelta(minutes=5)).astimezone(cal.NEW_YORK).time().isoformat("minutes")
    return max(now, bounds.pre_market_open.astimezone(cal.NEW_YORK)).time().isoformat("minutes")


@contextmanager
def open_stream_endpoint(
    settings: Settings,
    day: dt.date,
    speed: float | None = None,
    start_at: str | None = None,
    drop_every: int | None = None,
) -> Iterator[StreamEndpoint]:
    """Yield the feed for `day`: the real one (speed and start_at must be unset) or a sandbox replay."""
    if settings.polygon_api_key is not None:
        if speed not in (None, 1) or start_at is not None or drop_every is not None:
            raise ValueError("speed, start_at and drop_every replay the sandbox: unset POLYGON_API_KEY to simulate")
        yield StreamEndpoint(settings.polygon_api_key.get_secret_value(), POLYGON_FEED, True, WallClock())
        return
    if speed is not None and not 1 <= speed <= 600:
        raise ValueError(f"speed must be between 1 and 600 (got {speed:g})")
    key = "sandbox-" + secrets.token_urlsafe(12)
    register_secret(key)
    with SandboxStream(key, day, speed=speed or 1.0, start_at=start_at or _default_start(day),
                       drop_every=drop_every) as sandbox:
        yield StreamEndpoint(key, sandbox.feed, False, sandbox.clock, sandbox)
