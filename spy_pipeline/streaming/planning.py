"""Decisions of the streaming sensors, as plain functions of the market clock and what they observed."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from spy_pipeline.domain import trading_calendar as cal

DEFAULT_LEAD = dt.timedelta(minutes=10)  # a session starts this long before the open
DEFAULT_STALL = dt.timedelta(minutes=2)  # no heartbeat for this long: the session is stalled
DEFAULT_INTRADAY_INTERVAL = dt.timedelta(minutes=5)


DEFAULT_MAX_ATTEMPTS = 5  # sessions started for one day before the sensor gives up (a permanent error)
RunState = Literal["active", "done", "failed"]  # queued or running / succeeded or stopped by a user / failed


@dataclass(frozen=True)
class SessionStart:
    day: dt.date | None  # the session to start, None for no request
    reason: str
    attempt: int = 1

    @property
    def run_key(self) -> str | None:
        return None if self.day is None else f"stream-session-{self.day.isoformat()}-{self.attempt}"


def plan_session_start(
    now: dt.datetime, runs: Sequence[RunState], lead: dt.timedelta = DEFAULT_LEAD,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> SessionStart:
    """One session per trading day, requested from `lead` before the open until the close, and requested
    again after a failed one (a crash, a stall) up to `max_attempts`. `runs` are the states of the runs
    tagged with today's session (run tags survive a daemon restart and a lost cursor)."""
    day = cal.new_york_date(now)
    if not cal.is_trading_day(day):
        return SessionStart(None, f"{day} is not a trading day")
    bounds = cal.session_bounds(day)
    if now < bounds.open - lead:
        return SessionStart(None, f"{day}: waiting for {(bounds.open - lead).astimezone(cal.NEW_YORK):%H:%M} ET")
    if now >= bounds.close:
        return SessionStart(None, f"{day}: the session has closed")
    if "active" in runs:
        return SessionStart(None, f"{day}: a session is running or queued")
    if "done" in runs:
        return SessionStart(None, f"{day}: the session already ran (or a user stopped it)")
    failed = sum(state == "failed" for state in runs)
    if failed >= max_attempts:
        return SessionStart(None, f"{day}: {failed} sessions failed; not starting another")
    if failed:
        return SessionStart(day, f"{day}: restarting the streaming session after {failed} failed", failed + 1)
    return SessionStart(day, f"{day}: starting the streaming session")


def heartbeat_age(heartbeat: dict[str, Any] | None, run_started: dt.datetime, now: dt.datetime) -> dt.timedelta:
    """Time since the session's last heartbeat, or since its run started when it has written none yet (a
    heartbeat older than the run is a previous session's)."""
    if heartbeat is None or not heartbeat.get("updated_at"):
        return now - run_started
    return now - max(run_started, dt.datetime.fromisoformat(heartbeat["updated_at"]))


def stall_reason(
    heartbeat: dict[str, Any] | None, run_started: dt.datetime, now: dt.datetime, stall: dt.timedelta = DEFAULT_STALL
) -> str | None:
    """Why the session counts as stalled, or None while it is healthy."""
    age = heartbeat_age(heartbeat, run_started, now)
    if age <= stall:
        return None
    updated = heartbeat.get("updated_at") if heartbeat else None
    if updated is None or dt.datetime.fromisoformat(updated) < run_started:
        return f"no heartbeat {age.total_seconds():.0f} s after the run started (limit {stall.total_seconds():.0f} s)"
    return (f"no heartbeat for {age.total_seconds():.0f} s (limit {stall.total_seconds():.0f} s); last: state "
            f"{heartbeat.get('state')}, {heartbeat.get('messages')} messages, "
            f"last event {heartbeat.get('last_event_time')}")


@dataclass(frozen=True)
class IntradayCursor:
    """What the intraday sensor knows of one day."""

    files: int = 0  # micro-batch files seen at the last request
    requested_at: str | None = None


def load_day_cursors(text: str | None) -> dict[str, IntradayCursor]:
    """The intraday sensor's cursor, an IntradayCursor per day (ISO date); an unreadable one starts over."""
    try:
        stored = json.loads(text) if text else {}
    except ValueError:
        return {}
    cursors = {}
    for day, value in stored.items() if isinstance(stored, dict) else ():
        try:
            cursors[day] = IntradayCursor(**value)
        except TypeError:
            continue
    return cursors


def dump_day_cursors(cursors: dict[str, IntradayCursor]) -> str:
    return json.dumps({day: asdict(cursor) for day, cursor in cursors.items()})


@dataclass(frozen=True)
class IntradayPlan:
    day: dt.date | None
    run_key: str | None
    cursor: IntradayCursor
    reason: str


def plan_intraday(
    now: dt.datetime, day: dt.date, files: int, cursor: IntradayCursor,
    interval: dt.timedelta = DEFAULT_INTRADAY_INTERVAL,
) -> IntradayPlan:
    """A refresh of `day`'s intraday consolidated data (today, or the day a simulation replays) when new
    micro-batches landed since the last request (`cursor`: this day's), at most once per `interval`."""
    if not cal.is_trading_day(day):
        return IntradayPlan(None, None, cursor, f"{day} is not a trading day")
    if files <= cursor.files:
        return IntradayPlan(None, None, cursor, f"{day}: no new micro-batch ({files} files)")
    if cursor.requested_at is not None:
        wait = dt.datetime.fromisoformat(cursor.requested_at) + interval - now
        if wait > dt.timedelta(0):
            return IntradayPlan(None, None, cursor, f"{day}: next refresh in {wait.total_seconds():.0f} s")
    return IntradayPlan(
        day, f"intraday-{day.isoformat()}-{files}", IntradayCursor(files, now.isoformat()),
        f"{day}: {files - cursor.files} new micro-batch files",
    )
