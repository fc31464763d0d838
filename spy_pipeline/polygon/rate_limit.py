"""The request-rate limit: a token bucket of N requests per minute with a burst of up to N.

`TokenBucket` keeps its state in memory, shared by the threads of one process (PolygonClient's default).
`SharedTokenBucket` keeps the same state in a small file under an exclusive lock, so that every process of
an installation (Dagster runs, multiprocess steps, the CLI) draws from one bucket: concurrent runs together
stay within the limit. Both run the same algorithm (`TokenBucket._take`); only where the state lives differs.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from spy_pipeline.logs import get_logger

log = get_logger(__name__)

MAX_QUEUE_S = 3600.0  # a state claiming a longer queue of waiting requests than this is not believed
_STATE_MAX_BYTES = 4096  # a valid state is ~80 bytes; anything longer is corrupt anyway


class TokenBucket:
    """In-process and thread-safe. `None` requests per minute means unlimited.

    A request reserves its token when it asks, ahead of time if none is free: the tokens go negative
    (requests queued for tokens still to come) and the caller sleeps until its token exists. So waiting
    requests are served first come, first served (a run never starves behind others racing for each
    new token), each request costs one short critical section, and nothing sleeps holding a lock. A
    caller that dies while waiting leaves its token unused: the bucket can only be stricter for it.
    """

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
        self._rate_per_s = (requests_per_minute or 0) / 60.0
        self._tokens = self._capacity
        self._updated = clock()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self) -> float:
        """Take one token, sleeping until it is due; returns the seconds waited."""
        if self.requests_per_minute is None:
            return 0.0
        delay = self._reserve()
        if delay > 0.0:
            self._sleep(delay)  # holding no lock: _reserve has released it
        with self._lock:
            self.waited_s += delay
        return delay

    def _reserve(self) -> float:
        """Reserve the next token; returns the seconds until it is due (0.0: at once)."""
        with self._lock:
            now = self._clock()
            self._tokens, delay = self._take(self._tokens, self._updated, now, self._rate_per_s)
            self._updated = now
        return delay

    def _take(self, tokens: float, updated: float, now: float, refill_per_s: float) -> tuple[float, float]:
        """The algorithm, on state from anywhere: returns (tokens left, seconds until the taken one is due).

        `tokens` as of `updated` refill at `refill_per_s` (the rate of whoever wrote them) up to this
        bucket's capacity, so state saved under a higher rate gives no larger burst; the token taken is
        then due at this bucket's rate. An `updated` later than `now` means state from another boot of
        the machine (monotonic clocks restart): the requests it had queued died with that boot, and it
        refills nothing.
        """
        if updated > now:
            tokens, updated = max(tokens, 0.0), now
        tokens = min(self._capacity, tokens + (now - updated) * refill_per_s) - 1.0
        return tokens, max(0.0, -tokens / self._rate_per_s)


class SharedTokenBucket(TokenBucket):
    """One bucket for all processes and threads that use the same `state_path`.

    Storage: a JSON file of a few numbers, read and rewritten under `fcntl.flock(LOCK_EX)`; not SQLite.
    The state changes in one read-modify-write of microseconds, so one exclusive lock is all the
    concurrency control needed, and a file keeps the failure cases simple: the kernel drops the lock when
    a process dies (a killed run never leaves the bucket locked); a corrupt file is just overwritten in
    place under the lock (a corrupt SQLite database must be deleted and recreated, racing with processes
    that still hold the old file open, plus its -wal/-shm/-journal companions). The file is opened anew
    for every request: flock belongs to the open file description, so threads of one process exclude each
    other exactly like processes do, and a deleted file is recreated by the next request. There is no
    fsync: processes on one machine share the page cache, and losing the state in a power cut only resets
    the bucket. Requires POSIX and a local file system (flock over NFS is unreliable).

    Clock: `time.monotonic` (CLOCK_MONOTONIC on Linux, mach_absolute_time on macOS), not wall-clock time.
    It is one clock for every process on the machine and is never stepped, whereas an NTP or manual step
    of the wall clock forwards would hand out a burst early, exceeding the limit. The state survives
    reboots, and after one the stored time belongs to the previous boot: a stored time ahead of `now`
    drops that boot's queue and refills nothing; one behind it gives `now - updated`, less than the real
    time elapsed (the new clock counts only since boot). Either way a reboot makes the bucket stricter,
    never looser. (Processes in containers with their own time namespace must not share a state file.)

    A missing file is a fresh, full bucket (as a new in-process bucket is). A corrupt one is recreated
    empty, with a warning: it is unknown how much was just spent, and waiting one token is the safe side.
    If the file cannot be used at all (unwritable directory, ...), the bucket falls back to its
    in-process state with a warning, so a run goes on, limited per process. A `None` rate is unlimited
    and never touches the file. The state records the rate that wrote it, so a process with another rate
    (a changed configuration, or a run overriding the rate) refills the time since at that rate, then
    caps the tokens at its own capacity and queues at its own rate (see `_take`).
    """

    def __init__(
        self,
        requests_per_minute: int | None,
        state_path: str | os.PathLike[str],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(requests_per_minute, clock, sleep)
        self.state_path = Path(state_path)
        self._warned_unusable = False

    def _reserve(self) -> float:
        try:
            return self._reserve_shared()
        except OSError as exc:
            if not self._warned_unusable:
                self._warned_unusable = True
                log.warning("rate_limit_state_unusable", path=str(self.state_path), error=exc,
                            message="cannot use the shared rate-limit state: limiting this process alone")
            return super()._reserve()

    def _reserve_shared(self) -> float:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by os.close below, or by the kernel if we die
            now = self._clock()  # read under the lock: no process can have written a later time
            tokens, updated, refill_per_s = self._read(fd, now)
            tokens, delay = self._take(tokens, updated, now, refill_per_s)
            state = {"tokens": tokens, "updated": now, "requests_per_minute": self.requests_per_minute}
            data = json.dumps(state, separators=(",", ":")).encode() + b"\n"
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            return delay
        finally:
            os.close(fd)

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        try:
            return os.open(self.state_path, flags, 0o666)
        except FileNotFoundError:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.state_path, flags, 0o666)

    def _read(self, fd: int, now: float) -> tuple[float, float, float]:
        """(tokens, updated, refill per second) from the file; a fresh or empty bucket if there is none."""
        raw = os.pread(fd, _STATE_MAX_BYTES, 0)
        if not raw:
            return self._capacity, now, self._rate_per_s  # just created
        try:
            state = json.loads(raw)
            tokens, updated = float(state["tokens"]), float(state["updated"])
            writer_rpm = float(state.get("requests_per_minute") or self._capacity)
            if not all(math.isfinite(x) for x in (tokens, updated, writer_rpm)) or writer_rpm <= 0:
                raise ValueError("not a finite state")
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError):
            log.warning("rate_limit_state_corrupt", path=str(self.state_path), size=len(raw),
                        message="recreating the shared rate-limit state as an empty bucket")
            return 0.0, now, self._rate_per_s
        writer_rate_per_s = writer_rpm / 60.0
        return max(tokens, -writer_rate_per_s * MAX_QUEUE_S), updated, writer_rate_per_s
