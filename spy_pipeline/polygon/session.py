"""Open a PolygonClient from settings: real Polygon with a key, else an in-process sandbox."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from spy_pipeline.logs import get_logger, register_secret
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.flatfiles import FlatFilesClient
from spy_pipeline.polygon.rate_limit import SharedTokenBucket
from spy_pipeline.polygon.transport import RetryPolicy
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline.settings import POLYGON_URL, Settings

log = get_logger(__name__)
_announced_sandbox = False


@contextmanager
def open_polygon(settings: Settings, requests_per_minute: int | None = None) -> Iterator[PolygonClient]:
    """Yield a client; with no POLYGON_API_KEY an embedded sandbox runs for the block's lifetime."""
    rpm = requests_per_minute or settings.effective_requests_per_minute
    policy = RetryPolicy(max_retries=settings.max_retries)
    sandbox = None
    if settings.polygon_api_key is None:
        api_key = "sandbox-" + secrets.token_urlsafe(12)
        sandbox = SandboxServer(api_key=api_key).start()
        base_url = sandbox.url
        _announce_sandbox(base_url)
    else:
        api_key = settings.polygon_api_key.get_secret_value()
        base_url = settings.polygon_base_url or POLYGON_URL
    register_secret(api_key)
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
