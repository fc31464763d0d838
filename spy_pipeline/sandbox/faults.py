"""Faults the sandbox can inject, per endpoint, to test retries, timeouts, payload and pagination checks.

Two families. Faults that replace the answer ("status", "slow", "reset", "malformed") act before the
route runs. Faults that corrupt a real answer ("truncated", "repeat_page", "skip_page", "duplicate_bars",
"out_of_order_bars") act on the body the route produced; on a body they cannot apply to (no next_url for
the paging faults, no results for the bar faults) they change nothing.

What a client can and cannot know:
- truncated: a 200 whose JSON stops mid-body (Content-Length matches the cut body): detectable, retried.
- repeat_page: next_url points at the page just served, so the next page repeats its items: duplicates,
  nothing lost; a client that deduplicates by key recovers the exact result.
- skip_page: next_url jumps over one page: its items are lost and nothing in the answer says so (Polygon's
  `count` is the page's size, not the total). Only a check on the data (bar coverage) can notice.
- duplicate_bars / out_of_order_bars: the page's results repeated / shuffled (meant for aggregates).
- no_results: the answer of a day without data (a vendor outage, a day before the plan's history): no results.
- rename_field / drop_field / add_field / retype_field: schema drift, in every result item of the answer: a
  field renamed (`field` -> `renamed_to`), left out, added (`field`, default "sandbox_extra"), or sent with
  another JSON type (a number as a string, a string as a number). Without `field`, the seed picks one of the
  first item's fields. The official client's models would hide all four (unknown fields dropped, absent ones
  None); only the observed source schema shows them. `FaultPlan.drift` applies one to every request of a path.

Pages only exist when a list is longer than a page: `FaultPlan.cap_page` makes the server answer with at
most n items per page whatever `limit` the client asked for (as Polygon may), so paging faults can bite.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

REPLACING_KINDS = ("status", "slow", "reset", "malformed")
DRIFT_KINDS = ("rename_field", "drop_field", "add_field", "retype_field")
BODY_KINDS = ("truncated", "repeat_page", "skip_page", "duplicate_bars", "out_of_order_bars", "no_results",
              *DRIFT_KINDS)
KINDS = REPLACING_KINDS + BODY_KINDS


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for one request.

    kind: "status" (answer `status` with Polygon's error body, `Retry-After` if given),
    "slow" (sleep `delay_s` before answering normally), "malformed" (a short invalid JSON with 200),
    "reset" (close the connection without an answer), or one of BODY_KINDS (see the module docstring).
    seed: makes the body faults' choices (where to cut, which bars to repeat, the shuffle) reproducible.
    """

    kind: str
    status: int = 500
    retry_after_s: float | None = None
    delay_s: float = 0.0
    seed: int = 0
    field: str | None = None  # the drift kinds' field
    renamed_to: str | None = None  # rename_field's new name (default: the field + "_v2")

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}: one of {', '.join(KINDS)}")

    def corrupt(self, body: object) -> object:
        """The body as this fault serves it ("truncated" and the paging kinds are handled by the server)."""
        if not isinstance(body, dict) or not isinstance(body.get("results"), list) or not body["results"]:
            return body
        rng = random.Random(self.seed)
        results = list(body["results"])
        if self.kind == "duplicate_bars":
            repeated = rng.sample(results, k=max(1, len(results) // 4))
            results = results + repeated
            rng.shuffle(results)
        elif self.kind == "out_of_order_bars":
            rng.shuffle(results)
        elif self.kind == "no_results":
            empty = {k: v for k, v in body.items() if k not in ("results", "next_url")}
            return {**empty, **{k: 0 for k in ("queryCount", "resultsCount", "count") if k in body}}
        elif self.kind in DRIFT_KINDS:
            results = self._drifted(results, rng)
        else:
            return body
        return {**body, "results": results}

    def _drifted(self, results: list, rng: random.Random) -> list:
        first = results[0] if isinstance(results[0], dict) else {}
        name = self.field or ("sandbox_extra" if self.kind == "add_field" else rng.choice(sorted(first) or ["-"]))
        drifted = []
        for item in results:
            if not isinstance(item, dict) or (self.kind != "add_field" and name not in item):
                drifted.append(item)
                continue
            item = dict(item)
            if self.kind == "rename_field":
                item[self.renamed_to or f"{name}_v2"] = item.pop(name)
            elif self.kind == "drop_field":
                del item[name]
            elif self.kind == "add_field":
                item[name] = "added by the sandbox"
            else:
                item[name] = _retyped(item[name])
            drifted.append(item)
        return drifted

    def cut(self, payload: bytes) -> bytes:
        """"truncated": the payload cut somewhere strictly inside it."""
        if len(payload) < 2:
            return b"{"
        return payload[: random.Random(self.seed).randrange(1, len(payload) - 1)]


def _retyped(value: object) -> object:
    """The same value as another JSON type: a string becomes a number, anything else its text."""
    if isinstance(value, str):
        return len(value)
    return str(value)


@dataclass(frozen=True)
class _RandomSchedule:
    rate: float
    kinds: tuple[str, ...]
    path_prefixes: tuple[str, ...]
    slow_s: float


class FaultPlan:
    """Queues of faults by path prefix; each matching request consumes one.

    Optionally also a seeded random schedule (`FaultPlan.random`): each request whose path starts with
    one of its prefixes, and that no queue served, draws a fault with probability `rate`.
    """

    def __init__(self, seed: int = 0) -> None:
        self._queues: dict[str, deque[Fault]] = {}
        self._page_caps: dict[str, int] = {}
        self._drifts: dict[str, Fault] = {}
        self._schedule: _RandomSchedule | None = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: list[tuple[str, str]] = []  # (path, kind) of every fault handed out

    @classmethod
    def random(
        cls, seed: int, rate: float, kinds: Sequence[str], path_prefixes: Iterable[str] = ("/",), slow_s: float = 1.5
    ) -> FaultPlan:
        """Each matching request gets a fault with probability `rate`, its kind drawn from `kinds`
        ("status" is 429/500/502/503 with Retry-After 0; "slow" sleeps `slow_s`)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        for kind in kinds:
            Fault(kind)  # validates
        plan = cls(seed)
        plan._schedule = _RandomSchedule(rate, tuple(kinds), tuple(path_prefixes), slow_s)
        return plan

    def add(self, path_prefix: str, *faults: Fault) -> None:
        with self._lock:
            self._queues.setdefault(path_prefix, deque()).extend(faults)

    def burst(self, path_prefix: str, status: int, count: int, retry_after_s: float | None = None) -> None:
        self.add(path_prefix, *[Fault("status", status=status, retry_after_s=retry_after_s)] * count)

    def drift(self, path_prefix: str, fault: Fault) -> None:
        """Serve every answer under `path_prefix` with `fault` (a drift kind), as a changed API would."""
        if fault.kind not in DRIFT_KINDS:
            raise ValueError(f"{fault.kind!r} is not a drift kind: one of {', '.join(DRIFT_KINDS)}")
        with self._lock:
            self._drifts[path_prefix] = fault

    def cap_page(self, path_prefix: str, size: int) -> None:
        """Answer at most `size` items per page on paths under `path_prefix`."""
        if size < 1:
            raise ValueError("a page holds at least one item")
        with self._lock:
            self._page_caps[path_prefix] = size

    def page_cap(self, path: str) -> int | None:
        with self._lock:
            caps = [size for prefix, size in self._page_caps.items() if path.startswith(prefix)]
        return min(caps) if caps else None

    def take(self, path: str) -> Fault | None:
        with self._lock:
            fault = self._take_locked(path)
            if fault is not None:
                self.injected.append((path, fault.kind))
            return fault

    def _take_locked(self, path: str) -> Fault | None:
        for prefix, queue in self._queues.items():
            if path.startswith(prefix) and queue:
                return queue.popleft()
        for prefix, fault in self._drifts.items():
            if path.startswith(prefix):
                return fault
        schedule = self._schedule
        if schedule is None or not any(path.startswith(p) for p in schedule.path_prefixes):
            return None
        if self._rng.random() >= schedule.rate:
            return None
        kind = self._rng.choice(schedule.kinds)
        status = self._rng.choice((429, 500, 502, 503))
        return Fault(kind, status=status, retry_after_s=0.0 if kind == "status" else None,
                     delay_s=schedule.slow_s, seed=self._rng.randrange(2**31))

    def pending(self) -> int:
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
            self._page_caps.clear()
            self._drifts.clear()
            self._schedule = None
