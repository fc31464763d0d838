"""Open Polygon from settings, REST or WebSocket: the real service with a key, else the embedded sandbox.

The one place that acts on `Settings.uses_embedded_sandbox`. Without POLYGON_API_KEY:
- REST: an in-process sandbox server answers for the block's lifetime.
- WebSocket: the sandbox replays the synthetic market of the session's day at `speed` (1x is real time) from
  `start_at` (ET, default: now's time of day, so a session started before the open waits for it); the session
  then runs on the sandbox's clock, so a replayed day ends by itself.

`open_replay_endpoint` is the exception: a sandbox WebSocket replaying bars the caller gives (a day recorded
in the data dir), with or without a key, never Polygon.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.market_clock import Clock, WallClock
from spy_pipeline.logs import get_logger, register_secret
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.flatfiles import FlatFilesClient
from spy_pipeline.polygon.rate_limit import SharedTokenBucket
from spy_pipeline.polygon.transport import RetryPolicy
from spy_pipeline.polygon.websocket import POLYGON_FEED
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline.sandbox.stream_series import BarSource
from spy_pipeline.sandbox.websocket import SandboxStream
from spy_pipeline.settings import POLYGON_URL, Settings

log = get_logger(__name__)
_announced_sandbox = False


def _sandbox_key() -> str:
    """A fresh key for one embedded sandbox, registered so that logs mask it like a real one."""
    key = "sandbox-" + secrets.token_urlsafe(12)
    register_secret(key)
    return key


def _real_key(settings: Settings) -> str:
    assert settings.polygon_api_key is not None  # not the embedded sandbox
    key = settings.polygon_api_key.get_secret_value()
    register_secret(key)
    return key


@contextmanager
def open_polygon(settings: Settings, requests_per_minute: int | None = None) -> Iterator[PolygonClient]:
    """Yield a REST client; with no POLYGON_API_KEY an embedded sandbox runs for the block's lifetime."""
    rpm = requests_per_minute or settings.effective_requests_per_minute
    policy = RetryPolicy(max_retries=settings.max_retries)
    sandbox = None
    if settings.uses_embedded_sandbox:
        api_key = _sandbox_key()
        sandbox = SandboxServer(api_key=api_key).start()
        base_url = sandbox.url
        _announce_sandbox(base_url)
    else:
        api_key = _real_key(settings)
        base_url = settings.polygon_base_url or POLYGON_URL
    # One limit for every process of the installation; with no rate (None) the file is never touched.
    bucket = SharedTokenBucket(rpm, settings.resolved_rate_limit_state)
    client = PolygonClient(
        api_key=api_key, base_url=base_url, requests_per_minute=rpm,
        connect_timeout_s=settings.http_connect_timeout_s, read_timeout_s=settings.http_read_timeout_s,
        retry_policy=policy, bucket=bucket,
    )
    try:
        yield client
    finally:
        client.close()
        if sandbox is not None:
            sandbox.stop()


def _announce_sandbox(base_url: str) -> None:
    global _announced_sandbox
    if not _announced_sandbox:
        _announced_sandbox = True
        log.info("embedded_sandbox", message="no POLYGON_API_KEY set: using the embedded Polygon sandbox",
                 base_url=base_url)


@dataclass(frozen=True)
class StreamEndpoint:
    """Where a streaming session connects, and the clock its market time runs on."""

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
    """Yield the feed for `day`: Polygon's (speed and start_at must be unset) or a sandbox replay."""
    if not settings.uses_embedded_sandbox:
        if speed not in (None, 1) or start_at is not None or drop_every is not None:
            raise ValueError("speed, start_at and drop_every replay the sandbox: unset POLYGON_API_KEY to simulate")
        yield StreamEndpoint(_real_key(settings), POLYGON_FEED, True, WallClock())
        return
    with open_replay_endpoint(day, None, speed, start_at, drop_every) as endpoint:
        yield endpoint


@contextmanager
def open_replay_endpoint(
    day: dt.date,
    bars: BarSource | None,
    speed: float | None = None,
    start_at: str | None = None,
    drop_every: int | None = None,
) -> Iterator[StreamEndpoint]:
    """Yield a loopback sandbox WebSocket replaying `day` from `bars` (None: the synthetic market) at `speed`
    from `start_at`, whatever the settings: the key it accepts is its own."""
    if speed is not None and not 1 <= speed <= 600:
        raise ValueError(f"speed must be between 1 and 600 (got {speed:g})")
    key = _sandbox_key()
    with SandboxStream(key, day, speed=speed or 1.0, start_at=start_at or _default_start(day),
                       drop_every=drop_every, bars=bars) as sandbox:
        yield StreamEndpoint(key, sandbox.feed, False, sandbox.clock, sandbox)


@contextmanager
def open_flat_files(settings: Settings) -> Iterator[FlatFilesClient | None]:
    """Yield a Flat Files client: the configured S3 key pair's, else (no POLYGON_API_KEY either) an embedded
    sandbox serving the synthetic market's day files for the block's lifetime, else None (not configured)."""
    sandbox = None
    if settings.s3_access_key_id is not None and settings.s3_secret_access_key is not None:
        key_id, secret = settings.s3_access_key_id.get_secret_value(), settings.s3_secret_access_key.get_secret_value()
        endpoint, bucket = settings.flatfiles_endpoint, settings.flatfiles_bucket
    elif settings.uses_embedded_sandbox:
        key_id, secret = "SANDBOX" + secrets.token_hex(8).upper(), secrets.token_urlsafe(24)
        sandbox = SandboxServer(api_key=secrets.token_urlsafe(12), s3_access_key_id=key_id).start()
        endpoint, bucket = sandbox.url, "flatfiles"
    else:
        yield None
        return
    register_secret(key_id)
    register_secret(secret)
    client = FlatFilesClient(endpoint, bucket, key_id, secret, connect_timeout_s=settings.http_connect_timeout_s,
                             read_timeout_s=max(settings.http_read_timeout_s, 60.0), max_retries=settings.max_retries)
    try:
        yield client
    finally:
        client.close()
        if sandbox is not None:
            sandbox.stop()
