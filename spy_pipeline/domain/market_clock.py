"""The market's "now": the wall clock in production, a replay clock (the sandbox's SimClock) in simulations."""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class WallClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)
