"""A thread-safe token bucket: at most N requests in any minute, with a burst of up to N."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        requests_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise ValueError(f"requests per minute must be positive, got {requests_per_minute}")
        self.requests_per_minute = requests_per_minute
        self._clock, self._sleep = clock, sleep
        self._capacity = float(requests_per_minute or 0)
        self._tokens = self._capacity
        self._updated = clock()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self) -> float:
        """Take one token, sleeping until one is free; returns the seconds waited."""
        if self.requests_per_minute is None:
            return 0.0
        rate_per_s = self.requests_per_minute / 60.0
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self._capacity, self._tokens + (now - self._updated) * rate_per_s)
                self._updated = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    self.waited_s += waited
                    return waited
                delay = (1.0 - self._tokens) / rate_per_s
            self._sleep(delay)
            waited += delay
