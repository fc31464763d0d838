"""PolygonClient (the official client behind our transport) against a real sandbox on 127.0.0.1."""

import datetime as dt
import threading
import time

import pytest

from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.errors import (
    PolygonAuthError,
    PolygonPayloadError,
    PolygonRequestError,
    PolygonUnavailableError,
)
from spy_pipeline.polygon.rate_limit import TokenBucket
from spy_pipeline.polygon.transport import RetryPolicy
from spy_pipeline.sandbox import market
from spy_pipeline.sandbox.faults import Fault
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline_tests.conftest import SANDBOX_KEY

DAY = dt.date(2025, 1, 8)
FAST_RETRIES = RetryPolicy(max_retries=4, backoff_base_s=0.01, backoff_max_s=0.05)


def _client(sandbox: SandboxServer, key: str = SANDBOX_KEY, read_timeout_s: float = 5.0,
            policy: RetryPolicy = FAST_RETRIES) -> PolygonClient:
    return PolygonClient(key, sandbox.url, None, connect_timeout_s=2.0, read_timeout_s=read_timeout_s,
                         retry_policy=policy)


def test_minute_bars_equal_the_sandbox_market(sandbox: SandboxServer) -> None:
    frame = _client(sandbox).minute_bars("SPY", DAY, DAY)
    expected = market.minute_bars("SPY", DAY)
    assert frame.height == expected.height > 700
    assert frame["t"].to_list() == expected["t"].to_list()
    assert frame["c"].to_list() == expected["c"].to_list()


def test_multi_day_range_follows_pagination_to_the_end(sandbox: SandboxServer) -> None:
    # the sandbox builds each 50,000-bar page's ~40 days cold: far more than 5 s on a loaded machine
    client = _client(sandbox, read_timeout_s=120.0)
    start, end = dt.date(2024, 1, 2), dt.date(2024, 4, 30)  # ~ 83 days: more than one 50,000-bar page
    frame = client.minute_bars("SPY", start, end)
    assert sandbox.request_count("/v2/aggs") == client.stats.requests >= 2
    assert frame["t"].is_sorted() and frame["t"].n_unique() == frame.height
    first_day = market.minute_bars("SPY", start)
    last_day = market.minute_bars("SPY", end)
    assert frame["t"][0] == first_day["t"][0] and frame["t"][-1] == last_day["t"][-1]


def test_429_burst_is_retried_honouring_retry_after(sandbox: SandboxServer) -> None:
    sandbox.faults.burst("/v2/aggs", 429, 3, retry_after_s=0.2)
    client = _client(sandbox)
    started = dt.datetime.now()
    frame = client.minute_bars("SPY", DAY, DAY)
    elapsed = (dt.datetime.now() - started).total_seconds()
    assert frame.height == market.minute_bars("SPY", DAY).height
    stats = client.stats.snapshot()
    assert stats["retries"] == 3 and stats["requests"] == 4
    assert stats["statuses"] == {"200": 1, "429": 3}
    assert elapsed >= 0.6  # three waits of Retry-After 0.2 s, not the 0.01 s backoff


def test_server_errors_beyond_the_retry_budget_fail_clearly(sandbox: SandboxServer) -> None:
    sandbox.faults.burst("/v2/aggs", 503, 10)
    with pytest.raises(PolygonUnavailableError, match=r"after 5 attempts.*HTTP 503"):
        _client(sandbox).minute_bars("SPY", DAY, DAY)
    assert sandbox.request_count("/v2/aggs") == 5


def test_wrong_key_fails_at_once_without_retry_or_leaking_the_key(sandbox: SandboxServer) -> None:
    wrong = "WRONG-KEY-8c1d0e"
    with pytest.raises(PolygonAuthError, match="401") as info:
        _client(sandbox, key=wrong).minute_bars("SPY", DAY, DAY)
    assert wrong not in str(info.value) and SANDBOX_KEY not in str(info.value)
    assert sandbox.request_count("/v2/aggs") == 1


def test_bad_request_is_not_retried(sandbox: SandboxServer) -> None:
    client = _client(sandbox)
    with pytest.raises(PolygonRequestError, match="HTTP 404"):
        client.rest.get_daily_open_close_agg("SPY", "2025-01-09")  # market closed: Polygon answers 404
    assert client.stats.requests == 1


def test_malformed_json_is_retried_not_swallowed(sandbox: SandboxServer) -> None:
    sandbox.faults.add("/v2/aggs", Fault("malformed"))
    client = _client(sandbox)
    assert client.minute_bars("SPY", DAY, DAY).height == market.minute_bars("SPY", DAY).height
    assert client.stats.retries == 1


def test_persistently_malformed_json_raises_payload_error(sandbox: SandboxServer) -> None:
    sandbox.faults.add("/v2/aggs", *[Fault("malformed")] * 5)
    with pytest.raises(PolygonPayloadError, match="malformed JSON"):
        _client(sandbox).minute_bars("SPY", DAY, DAY)


def test_read_timeout_is_applied_and_retried(sandbox: SandboxServer) -> None:
    # The retry's ordinary answer must come within the timeout: the day's bars are built (cached) beforehand, as
    # an earlier test in the same process used to do by chance, and 1 s leaves room on a loaded machine.
    market.minute_bars("SPY", DAY)
    sandbox.faults.add("/v2/aggs", Fault("slow", delay_s=2.5))
    client = _client(sandbox, read_timeout_s=1.0)
    started = dt.datetime.now()
    assert client.minute_bars("SPY", DAY, DAY).height > 0
    assert (dt.datetime.now() - started).total_seconds() < 2.4  # did not wait for the slow answer
    assert client.stats.statuses["network_error"] == 1


def test_hanging_server_fails_after_retries_instead_of_hanging(sandbox: SandboxServer) -> None:
    sandbox.faults.add("/v2/aggs", *[Fault("slow", delay_s=1.0)] * 3)
    policy = RetryPolicy(max_retries=2, backoff_base_s=0.01, backoff_max_s=0.01)
    with pytest.raises(PolygonUnavailableError, match="ReadTimeoutError"):
        _client(sandbox, read_timeout_s=0.2, policy=policy).minute_bars("SPY", DAY, DAY)


def test_connection_reset_is_retried(sandbox: SandboxServer) -> None:
    sandbox.faults.add("/v2/aggs", Fault("reset"), Fault("reset"))
    client = _client(sandbox)
    assert client.minute_bars("SPY", DAY, DAY).height > 0
    assert client.stats.retries == 2


def test_unknown_ticker_gives_an_empty_frame_not_an_error(sandbox: SandboxServer) -> None:
    assert _client(sandbox).minute_bars("ZZZZ", DAY, DAY).height == 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, clock=clock.time, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(10)]
    assert waits[:5] == [0.0] * 5
    assert clock.now == pytest.approx(60.0)  # five more at 12 s each: the free tier's 5 per minute


def test_token_bucket_is_thread_safe() -> None:
    bucket = TokenBucket(6000, clock=lambda: 0.0)  # burst 6000; a stopped clock refills nothing, however slow
    taken: list[float] = []

    def worker() -> None:
        for _ in range(500):
            taken.append(bucket.acquire())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 4000 and sum(taken) == 0.0  # within the burst: nobody waited
    assert bucket._tokens == 2000  # exactly 4000 tokens consumed, no lost updates


def test_rate_limit_holds_against_the_sandbox(sandbox: SandboxServer) -> None:
    client = PolygonClient(SANDBOX_KEY, sandbox.url, requests_per_minute=600, retry_policy=FAST_RETRIES)
    bucket = client.transport.bucket
    emptied = bucket._updated = time.monotonic()  # start empty now: measure the steady rate, 10 per second
    bucket._tokens = 0.0
    threads = [threading.Thread(target=client.rest.get_market_holidays) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times = sorted(r.at for r in sandbox.state.requests)
    assert len(times) == 8
    # the 8th token exists 0.8 s after the bucket was emptied, however late the threads start on a busy machine
    assert times[-1] - emptied >= 0.75
