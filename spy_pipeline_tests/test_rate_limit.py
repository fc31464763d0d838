"""The shared request-rate limit: one token bucket for every process and thread of an installation.

Real processes where cross-process safety matters (measured at a real sandbox on 127.0.0.1, or counted
exactly with a frozen clock); fake clocks where timing precision matters. Spawned children import this
module, so the heavy imports (polars, the sandbox, the official client) happen inside the tests that
need them: the exact-count children then start in a fraction of a second.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING

import pytest

from spy_pipeline.polygon.rate_limit import MAX_QUEUE_S, SharedTokenBucket, TokenBucket
from spy_pipeline.settings import RATE_LIMIT_STATE_FILE, ConfigError, load_settings

if TYPE_CHECKING:
    from spy_pipeline.sandbox.server import SandboxServer

SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters, as Dagster's run and step workers are


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _state(path: Path) -> dict[str, float]:
    return json.loads(path.read_bytes())


def _frozen_clock() -> float:
    return 0.0  # no refill at all: every token taken shows in the state, exactly


# --- several processes, one limit -------------------------------------------------------------------

RPM = 120
PROCESSES, THREADS, REQUESTS_PER_PROCESS = 4, 2, 5
# One ticker per process, so that each process has its own path at the sandbox; tickers without data,
# so that the sandbox answers at once and records each request the moment it arrives.
TICKERS = ("ZZA", "ZZB", "ZZC", "ZZD")
DAY = dt.date(2025, 1, 8)


def _http_worker(index: int, ready: threading.Barrier, go: threading.Event) -> None:
    """A separate interpreter configured from the environment only, as a Dagster run worker is."""
    from spy_pipeline.polygon.session import open_polygon

    with open_polygon(load_settings()) as client:
        assert isinstance(client.transport.bucket, SharedTokenBucket)
        ready.wait(timeout=60)
        if not go.wait(timeout=60):
            raise TimeoutError("the test never said go")
        work: SimpleQueue[str] = SimpleQueue()
        for _ in range(REQUESTS_PER_PROCESS):
            work.put(TICKERS[index])

        def fetch() -> None:
            while True:
                try:
                    ticker = work.get_nowait()
                except Empty:
                    return
                assert client.minute_bars(ticker, DAY, DAY).height == 0

        with ThreadPoolExecutor(THREADS) as pool:
            for future in [pool.submit(fetch) for _ in range(THREADS)]:
                future.result()


def test_processes_together_stay_within_the_limit(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spy_pipeline_tests.conftest import SANDBOX_KEY

    state_path = tmp_path / "shared" / "bucket.json"
    for name, value in {
        "POLYGON_API_KEY": SANDBOX_KEY, "POLYGON_BASE_URL": sandbox.url,
        "SPY_PIPELINE_REQUESTS_PER_MINUTE": str(RPM), "SPY_PIPELINE_RATE_LIMIT_STATE": str(state_path),
    }.items():
        monkeypatch.setenv(name, value)  # spawned children inherit the environment
    ready, go = SPAWN.Barrier(PROCESSES + 1), SPAWN.Event()
    workers = [SPAWN.Process(target=_http_worker, args=(i, ready, go)) for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    try:
        ready.wait(timeout=60)  # every child has imported everything and built its client
        drain = SharedTokenBucket(RPM, state_path)
        assert sum(drain.acquire() for _ in range(RPM)) == 0.0  # consume the whole burst: start empty
        go.set()
        for worker in workers:
            worker.join(timeout=60)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    records = sorted(sandbox.state.requests, key=lambda r: r.at)
    n = PROCESSES * REQUESTS_PER_PROCESS
    assert len(records) == n and {r.status for r in records} == {200}
    times = [r.at for r in records]
    rate = RPM / 60.0
    span = times[-1] - times[0]
    # Any window [t_i, t_j] holds j - i + 1 requests. A bucket holding at most `burst` tokens allows
    # burst + rate * W of them; it was drained, so under contention it held at most ~1 token at any time.
    worst = max(((j - i + 1) - rate * (times[j] - times[i]), i, j) for i in range(n) for j in range(i, n))
    _, i, j = worst
    count, window = j - i + 1, times[j] - times[i]
    assert count <= 1 + rate * window + 1, f"worst window: {count} requests in {window:.2f} s at {RPM}/min"
    for a in range(n):
        for b in range(a, n):
            assert b - a + 1 <= RPM + rate * (times[b] - times[a]) + 1  # the general bound, burst = limit
            assert b - a + 1 <= 1 + rate * (times[b] - times[a]) + 1  # the tight bound: started empty
    assert span >= (n - 2) / rate  # n - 1 intervals of 1/rate, less one token of refill before go
    assert span <= 1.25 * (n - 1) / rate + 2.0  # and not throttled well beyond the limit either
    first_half = {r.path for r in records[: n // 2]}
    assert len(first_half) == PROCESSES  # first come, first served: the processes ran interleaved


def _count_worker(state_path: str, ready: threading.Barrier, acquisitions: int) -> None:
    bucket = SharedTokenBucket(1_000_000, state_path, clock=_frozen_clock)
    ready.wait(timeout=60)
    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(lambda: [bucket.acquire() for _ in range(acquisitions)]) for _ in range(2)]:
            assert sum(future.result()) == 0.0


def test_concurrent_processes_and_threads_lose_no_update(tmp_path: Path) -> None:
    state_path = tmp_path / "bucket.json"
    processes, acquisitions = 3, 400
    ready = SPAWN.Barrier(processes)
    workers = [SPAWN.Process(target=_count_worker, args=(str(state_path), ready, acquisitions))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * processes
    assert _state(state_path)["tokens"] == 1_000_000 - processes * 2 * acquisitions  # exactly


# --- threads -----------------------------------------------------------------------------------------


def test_threads_and_clients_of_one_process_share_the_bucket(tmp_path: Path) -> None:
    state_path = tmp_path / "bucket.json"
    one = SharedTokenBucket(6000, state_path, clock=_frozen_clock)
    other = SharedTokenBucket(6000, state_path, clock=_frozen_clock)  # a second client, same file
    waits: list[float] = []

    def worker(bucket: SharedTokenBucket) -> None:
        waits.extend(bucket.acquire() for _ in range(250))

    threads = [threading.Thread(target=worker, args=(bucket,)) for bucket in (one, other) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(waits) == 2000 and sum(waits) == 0.0
    assert _state(state_path)["tokens"] == 4000  # not one update lost between threads or instances


def test_burst_then_rate_is_shared_by_two_buckets_on_one_file(tmp_path: Path) -> None:
    clock = FakeClock()
    state_path = tmp_path / "bucket.json"
    a = SharedTokenBucket(5, state_path, clock=clock.time, sleep=clock.sleep)
    b = SharedTokenBucket(5, state_path, clock=clock.time, sleep=clock.sleep)
    assert [a.acquire(), b.acquire(), a.acquire(), b.acquire(), a.acquire()] == [0.0] * 5  # one burst of 5
    assert b.acquire() == pytest.approx(12.0)  # then 5 a minute, across both
    assert a.acquire() == pytest.approx(12.0)
    assert clock.now == pytest.approx(1024.0)
    assert a.waited_s == b.waited_s == pytest.approx(12.0)


def test_never_sleeps_holding_a_lock(tmp_path: Path) -> None:
    state_path = tmp_path / "bucket.json"
    clock = FakeClock()
    checked: list[float] = []

    def sleep(seconds: float) -> None:
        fd = os.open(state_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if the bucket held it
        finally:
            os.close(fd)
        assert bucket._lock.acquire(blocking=False)
        bucket._lock.release()
        checked.append(seconds)
        clock.sleep(seconds)

    bucket = SharedTokenBucket(60, state_path, clock=clock.time, sleep=sleep)
    for _ in range(62):
        bucket.acquire()
    assert checked == [pytest.approx(1.0)] * 2


# --- damaged, missing, unusable or stale state ---------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff\x13garbage",
        b'{"tokens": 3.0, "upd',  # cut short, as by a crash mid-write
        b"[]",
        b"null",
        b'{"tokens": "many", "updated": 1.0}',
        b'{"tokens": NaN, "updated": 1.0}',
        b'{"tokens": 1e999, "updated": 1.0}',
        b'{"tokens": 1' + b"0" * 400 + b', "updated": 1.0}',
        b"[" * 3000,
        b'{"tokens": 2.0}',
        b" " * 10_000,
    ],
)
def test_a_corrupt_state_file_is_recreated_as_an_empty_bucket(tmp_path: Path, content: bytes) -> None:
    state_path = tmp_path / "bucket.json"
    state_path.write_bytes(content)
    clock = FakeClock()
    bucket = SharedTokenBucket(60, state_path, clock=clock.time, sleep=clock.sleep)
    assert bucket.acquire() == pytest.approx(1.0)  # unknown spending: the safe side is an empty bucket
    state = _state(state_path)
    assert state["tokens"] == pytest.approx(-1.0) and state["updated"] == clock.now - 1.0  # one queued
    assert bucket.acquire() == pytest.approx(1.0)  # and from then on the rate, from the rewritten file


def test_a_missing_state_file_and_directory_are_created_full(tmp_path: Path) -> None:
    state_path = tmp_path / "not" / "yet" / "bucket.json"
    clock = FakeClock()
    bucket = SharedTokenBucket(3, state_path, clock=clock.time, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(3)] == [0.0] * 3
    assert _state(state_path) == {"tokens": 0.0, "updated": clock.now, "requests_per_minute": 3}
    state_path.unlink()  # deleted while in use: the next request starts a fresh bucket
    assert bucket.acquire() == 0.0 and _state(state_path)["tokens"] == 2.0


def test_unlimited_never_touches_the_file(tmp_path: Path) -> None:
    state_path = tmp_path / "absent" / "bucket.json"
    bucket = SharedTokenBucket(None, state_path, sleep=lambda s: pytest.fail("unlimited slept"))
    assert sum(bucket.acquire() for _ in range(10_000)) == 0.0
    assert not state_path.parent.exists()


def test_an_unusable_state_path_falls_back_to_a_per_process_limit(tmp_path: Path) -> None:
    state_path = tmp_path / "a-directory"
    state_path.mkdir()
    clock = FakeClock()
    bucket = SharedTokenBucket(2, state_path, clock=clock.time, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, pytest.approx(30.0)]  # still limited


def test_a_state_time_ahead_of_the_clock_refills_nothing(tmp_path: Path) -> None:
    """After a reboot the monotonic clock restarts: the stored time can be ahead of now."""
    state_path = tmp_path / "bucket.json"
    state_path.write_text(json.dumps({"tokens": 0.5, "updated": 1e9}))
    clock = FakeClock(now=10.0)
    bucket = SharedTokenBucket(60, state_path, clock=clock.time, sleep=clock.sleep)
    assert bucket.acquire() == pytest.approx(0.5)  # the half token left, nothing invented
    assert _state(state_path)["updated"] == pytest.approx(10.0)


def test_requests_queued_in_another_boot_are_dropped(tmp_path: Path) -> None:
    state_path = tmp_path / "bucket.json"
    state_path.write_text(json.dumps({"tokens": -40.0, "updated": 1e9, "requests_per_minute": 60}))
    clock = FakeClock(now=10.0)
    bucket = SharedTokenBucket(60, state_path, clock=clock.time, sleep=clock.sleep)
    assert bucket.acquire() == pytest.approx(1.0)  # not 41 s: those 40 waiters died with the old boot


def test_an_absurd_queue_is_not_believed(tmp_path: Path) -> None:
    state_path = tmp_path / "bucket.json"
    state_path.write_text(json.dumps({"tokens": -1e12, "updated": 1000.0, "requests_per_minute": 60}))
    clock = FakeClock()
    bucket = SharedTokenBucket(60, state_path, clock=clock.time, sleep=clock.sleep)
    assert bucket.acquire() == pytest.approx(MAX_QUEUE_S + 1.0)  # at most an hour of queue, not 30,000 years


def test_requests_wait_in_turn(tmp_path: Path) -> None:
    """Reservations: each waiter is told its own turn, so waits are 1, 2, 3 s, not a race for each token."""
    clock = FakeClock()
    bucket = SharedTokenBucket(60, tmp_path / "bucket.json", clock=clock.time, sleep=lambda s: None)
    for _ in range(60):
        bucket.acquire()
    assert [bucket.acquire() for _ in range(3)] == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(3.0)]


# --- a changed rate ------------------------------------------------------------------------------------


def test_a_lower_rate_caps_the_burst_saved_under_a_higher_one(tmp_path: Path) -> None:
    state_path = tmp_path / "bucket.json"
    clock = FakeClock()
    before = SharedTokenBucket(600, state_path, clock=clock.time, sleep=clock.sleep)
    before.acquire()  # 599 tokens saved
    after = SharedTokenBucket(5, state_path, clock=clock.time, sleep=clock.sleep)
    assert [after.acquire() for _ in range(7)] == [0.0] * 5 + [pytest.approx(12.0)] * 2
    assert _state(state_path)["requests_per_minute"] == 5


def test_a_higher_rate_refills_at_the_new_rate(tmp_path: Path) -> None:
    state_path = tmp_path / "bucket.json"
    clock = FakeClock()
    before = SharedTokenBucket(5, state_path, clock=clock.time, sleep=clock.sleep)
    for _ in range(5):
        before.acquire()  # drained at 5 a minute
    after = SharedTokenBucket(600, state_path, clock=clock.time, sleep=clock.sleep)
    assert [after.acquire() for _ in range(3)] == [pytest.approx(0.1)] * 3  # 10 a second, no leftover burst
    clock.now += 60
    assert sum(after.acquire() for _ in range(600)) == pytest.approx(0.0, abs=1e-9)  # a minute refills 600


def test_the_in_process_bucket_runs_the_same_algorithm() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock.time, sleep=clock.sleep)
    assert sum(bucket.acquire() for _ in range(60)) == 0.0
    assert bucket.acquire() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        SharedTokenBucket(0, "unused")


# --- settings and wiring -------------------------------------------------------------------------------


def test_state_defaults_to_dagster_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "instance"))
    assert load_settings().resolved_rate_limit_state == tmp_path / "instance" / RATE_LIMIT_STATE_FILE


def test_state_without_dagster_home_is_beside_the_data_dir(data_dir: Path) -> None:
    expected = data_dir.resolve().parent / ".dagster_home" / RATE_LIMIT_STATE_FILE
    assert load_settings().resolved_rate_limit_state == expected
    assert load_settings(SPY_PIPELINE_RATE_LIMIT_STATE="").resolved_rate_limit_state == expected


def test_state_path_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "instance"))
    monkeypatch.setenv("SPY_PIPELINE_RATE_LIMIT_STATE", "relative/bucket.json")
    assert load_settings().resolved_rate_limit_state == tmp_path.resolve() / "relative" / "bucket.json"


@pytest.mark.parametrize("value", ["some/dir/", "."])
def test_a_directory_is_not_a_state_path(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SPY_PIPELINE_RATE_LIMIT_STATE", value)
    with pytest.raises(ConfigError, match=r"^invalid configuration: SPY_PIPELINE_RATE_LIMIT_STATE: .*directory"):
        load_settings()


def test_open_polygon_uses_the_shared_bucket(
    sandbox_env: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from spy_pipeline.polygon.session import open_polygon

    state_path = tmp_path / "bucket.json"
    monkeypatch.setenv("SPY_PIPELINE_RATE_LIMIT_STATE", str(state_path))
    with open_polygon(load_settings(), requests_per_minute=600) as client:
        bucket = client.transport.bucket
        assert isinstance(bucket, SharedTokenBucket) and bucket.state_path == state_path
        client.rest.get_market_holidays()
    assert _state(state_path)["tokens"] == pytest.approx(599, abs=0.5)
    assert _state(state_path)["requests_per_minute"] == 600


def test_open_polygon_without_a_rate_touches_no_file() -> None:
    from spy_pipeline.polygon.session import open_polygon

    settings = load_settings()  # no key: the embedded sandbox, unlimited
    started = time.monotonic()
    with open_polygon(settings) as client:
        for _ in range(20):
            client.rest.get_market_holidays()
        assert client.transport.bucket.requests_per_minute is None
    # at the free tier's 5 a minute, 20 requests would take over 3 minutes; 60 s is slack for a loaded machine
    assert time.monotonic() - started < 60
    assert not settings.resolved_rate_limit_state.exists()
    assert not settings.resolved_rate_limit_state.parent.exists()
