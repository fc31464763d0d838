"""The replay clock of the WebSocket sandbox: market time on one trading day running at `speed` times wall time.

Streaming sessions against the sandbox run on it (it has the `now()` of `domain.market_clock.Clock`), so a day
replayed at 600x ends by itself.
"""

from __future__ import annotations

import datetime as dt
import time

from spy_pipeline.domain import trading_calendar as cal


def epoch_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def new_york_time(t_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ms / 1000, cal.NEW_YORK)


class SimClock:
    """Market time on `day`: `start_at` (default: the regular open) when started, then `speed` times wall time.

    `start_at` may be a `datetime` (naive = New York time), a `time` or "HH:MM[:SS]" in New York time.
    Before `start()` the clock stands at `start_at`.
    """

    def __init__(self, day: dt.date | str, speed: float = 60.0, start_at: dt.datetime | dt.time | str | None = None):
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.day = cal.require_trading_day(day)
        self.speed = float(speed)
        self.bounds = cal.session_bounds(self.day)
        self.start_ms = epoch_ms(self.resolve(start_at)) if start_at is not None else epoch_ms(self.bounds.open)
        self._wall0: float | None = None

    def resolve(self, moment: dt.datetime | dt.time | str) -> dt.datetime:
        if isinstance(moment, str):
            moment = dt.time.fromisoformat(moment)
        if isinstance(moment, dt.time):
            moment = dt.datetime.combine(self.day, moment)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=cal.NEW_YORK)
        if moment.astimezone(cal.NEW_YORK).date() != self.day:
            raise ValueError(f"start_at {moment} is not on {self.day}")
        return moment

    def start(self, wall: float | None = None) -> None:
        """Start the clock now (or at monotonic time `wall`); a second call does nothing."""
        if self._wall0 is None:
            self._wall0 = time.monotonic() if wall is None else wall

    @property
    def started(self) -> bool:
        return self._wall0 is not None

    def now_ms(self) -> int:
        if self._wall0 is None:
            return self.start_ms
        return self.start_ms + int((time.monotonic() - self._wall0) * self.speed * 1000)

    def now(self) -> dt.datetime:
        """The market time, New York time zone."""
        return new_york_time(self.now_ms())

    def wall_at(self, market_ms: int) -> float:
        """The monotonic wall time at which the clock reaches `market_ms` (the clock must be started)."""
        if self._wall0 is None:
            raise RuntimeError("the clock is not started")
        return self._wall0 + (market_ms - self.start_ms) / (self.speed * 1000)
