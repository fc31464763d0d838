"""Faults the sandbox can inject, per endpoint, to test retries, timeouts and payload checks."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for one request.

    kind: "status" (answer `status` with Polygon's error body, `Retry-After` if given),
    "slow" (sleep `delay_s` before answering normally), "malformed" (truncated JSON with 200),
    "reset" (close the connection without an answer).
    """

    kind: str
    status: int = 500
    retry_after_s: float | None = None
    delay_s: float = 0.0


class FaultPlan:
    """Queues of faults by path prefix; each matching request consumes one."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()

    def add(self, path_prefix: str, *faults: Fault) -> None:
        with self._lock:
            self._queues.setdefault(path_prefix, deque()).extend(faults)

    def burst(self, path_prefix: str, status: int, count: int, retry_after_s: float | None = None) -> None:
        self.add(path_prefix, *[Fault("status", status=status, retry_after_s=retry_after_s)] * count)

    def take(self, path: str) -> Fault | None:
        with self._lock:
            for prefix, queue in self._queues.items():
                if path.startswith(prefix) and queue:
                    return queue.popleft()
        return None

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
