"""What the official client sends its requests through: rate limit, timeouts, retries, counting.

polygon-api-client 1.16.3 builds a timeout but never applies it, retries only through urllib3 with
a fixed 0.1 s backoff, and turns a malformed JSON body into an empty result. RetryingTransport
replaces the client's `client` attribute (its urllib3 PoolManager) and fixes all three, without
modifying the client: it still builds the URLs, follows pagination and parses the results.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError

from spy_pipeline.logs import get_logger, redact
from spy_pipeline.polygon.errors import (
    PolygonAuthError,
    PolygonEntitlementError,
    PolygonPayloadError,
    PolygonRequestError,
    PolygonUnavailableError,
)
from spy_pipeline.polygon.rate_limit import TokenBucket
from spy_pipeline.polygon.source_schema import SchemaRecorder

RETRY_STATUSES = frozenset({413, 429, 499, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 120.0
log = get_logger(__name__)


@dataclass
class RequestStats:
    """Counters for one client; safe to update from several threads."""

    requests: int = 0
    retries: int = 0
    bytes_received: int = 0
    rate_limit_wait_s: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, requests: int = 0, retries: int = 0, bytes_received: int = 0, wait_s: float = 0.0,
            status: str | None = None) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries
            self.bytes_received += bytes_received
            self.rate_limit_wait_s += wait_s
            if status is not None:
                self.statuses[status] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "bytes_received": self.bytes_received,
                "rate_limit_wait_s": round(self.rate_limit_wait_s, 3),
                "statuses": dict(sorted(self.statuses.items())),
            }


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0

    def backoff_s(self, attempt: int, retry_after: str | None, jitter: Callable[[], float]) -> float:
        """Retry-After when the server gives one, else exponential backoff with equal jitter."""
        if retry_after is not None:
            try:
                return min(MAX_RETRY_AFTER_S, max(0.0, float(retry_after))) + 0.05 * jitter()
            except ValueError:
                pass  # an HTTP date: fall back to our own backoff
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return ceiling * (0.5 + 0.5 * jitter())


class RetryingTransport:
    """Duck-types the urllib3 PoolManager that RESTClient calls as `self.client.request(...)`."""

    def __init__(
        self,
        pool: urllib3.PoolManager,
        bucket: TokenBucket,
        timeout: urllib3.Timeout,
        policy: RetryPolicy,
        stats: RequestStats,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        schemas: SchemaRecorder | None = None,
    ) -> None:
        self.pool, self.bucket, self.timeout, self.policy, self.stats = pool, bucket, timeout, policy, stats
        self.schemas = schemas or SchemaRecorder()
        self._sleep, self._jitter = sleep, jitter
        self._thread = threading.local()

    @property
    def pages_in_thread(self) -> int:
        """JSON answers received by the calling thread so far (a paginated list counts one per page)."""
        return getattr(self._thread, "pages", 0)

    def request(self, method: str, url: str, fields: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, **_ignored: Any) -> urllib3.BaseHTTPResponse:
        path = urlsplit(url).path  # never the query: a next_url may carry apiKey=
        problem = ""
        for attempt in range(self.policy.max_retries + 1):
            if attempt:
                self.stats.add(retries=1)
            self.stats.add(requests=1, wait_s=self.bucket.acquire())
            try:
                response = self.pool.request(
                    method, url, fields=fields, headers=headers, retries=False, redirect=False,
                    timeout=self.timeout,
                )
            except HTTPError as exc:
                problem = f"{type(exc).__name__} ({_reason(exc)})"
                self.stats.add(status="network_error")
                self._wait(attempt, None, path, problem)
                continue
            body = response.data
            self.stats.add(bytes_received=len(body), status=str(response.status))
            if response.status == 200:
                decoded = _decoded(body)
                if isinstance(decoded, dict | list):
                    self._thread.pages = self.pages_in_thread + 1
                    self.schemas.record_rest(path, decoded)  # the raw fields, before the client's models drop any
                    return response
                problem = f"malformed JSON body ({len(body)} bytes)"
                self._wait(attempt, None, path, problem)
                continue
            message = _error_message(body)
            if response.status == 403:
                raise PolygonEntitlementError(source_of(path), path, message)
            if response.status == 401:
                raise PolygonAuthError(
                    f"Polygon refused the API key for {path} (HTTP {response.status}: {message}); "
                    "check POLYGON_API_KEY and your plan"
                )
            if response.status not in RETRY_STATUSES:
                raise PolygonRequestError(f"HTTP {response.status} for {path}: {message}")
            problem = f"HTTP {response.status} ({message})"
            self._wait(attempt, response.headers.get("Retry-After"), path, problem)
        error = PolygonPayloadError if problem.startswith("malformed") else PolygonUnavailableError
        raise error(f"gave up on {path} after {self.policy.max_retries + 1} attempts: last problem {problem}")

    def _wait(self, attempt: int, retry_after: str | None, path: str, problem: str) -> None:
        if attempt >= self.policy.max_retries:
            return
        delay = self.policy.backoff_s(attempt, retry_after, self._jitter)
        log.warning("polygon_retry", path=path, problem=problem, attempt=attempt + 1, delay_s=round(delay, 3))
        self._sleep(delay)

    def clear(self) -> None:
        self.pool.clear()


def source_of(path: str) -> str:
    """Which of Polygon's separately sold data sets a path belongs to: stocks, options, indices, news, reference."""
    if path.startswith("/v2/aggs/ticker/"):
        ticker = path.removeprefix("/v2/aggs/ticker/").split("/", 1)[0]
        return "indices" if ticker.startswith("I:") else "options" if ticker.startswith("O:") else "stocks"
    if path.startswith("/v3/reference/options") or path.startswith("/v3/snapshot/options"):
        return "options"
    if path.startswith("/v2/reference/news"):
        return "news"
    return "reference"


def _decoded(body: bytes) -> object:
    """The JSON value of `body`; None when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def _error_message(body: bytes) -> str:
    try:
        decoded = json.loads(body)
        text = str(decoded.get("error") or decoded.get("message") or decoded)
    except (ValueError, AttributeError):
        text = body[:200].decode("utf-8", "replace")
    return redact(text)


def _reason(exc: HTTPError) -> str:
    reason = getattr(exc, "reason", None) or exc
    return redact(str(type(reason).__name__))
