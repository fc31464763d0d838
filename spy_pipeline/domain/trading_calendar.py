"""NYSE trading days and session times: the one place the platform asks "is the market open?".

Backed by exchange_calendars' XNYS calendar (holidays, unscheduled closures, 13:00 early closes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import exchange_calendars as xcals

# exchange_calendars (and with it pandas) is imported where the calendar is first needed, not with this module:
# a process that only wants NEW_YORK or SessionBounds (a chart worker) never pays for it (~1.4 s, plus ~1.3 s
# to build the calendar).

NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC
FIRST_TRADING_DAY = dt.date(2015, 1, 2)
# Polygon's extended hours: pre-market from 04:00 ET, after-hours until four hours after the close.
PRE_MARKET_START = dt.time(4, 0)
AFTER_HOURS_LENGTH = dt.timedelta(hours=4)


class TradingCalendarError(ValueError):
    """A date that is malformed, out of range or not a trading day."""


@dataclass(frozen=True)
class SessionBounds:
    """One trading day's session times, all in UTC."""

    day: dt.date
    pre_market_open: dt.datetime
    open: dt.datetime
    close: dt.datetime
    after_hours_close: dt.datetime

    @property
    def is_early_close(self) -> bool:
        return self.close.astimezone(NEW_YORK).time() < dt.time(16, 0)

    @property
    def regular_minutes(self) -> int:
        return int((self.close - self.open).total_seconds() // 60)


@cache
def _xnys() -> xcals.ExchangeCalendar:
    import exchange_calendars as xcals

    last = dt.date(dt.date.today().year + 1, 12, 31)
    return xcals.get_calendar("XNYS", start=FIRST_TRADING_DAY.isoformat(), end=last.isoformat())


def last_known_day() -> dt.date:
    return _xnys().last_session.date()


def new_york_date(moment: dt.datetime | None = None) -> dt.date:
    """The calendar day in New York at `moment` (an aware datetime; default: now)."""
    return (moment or dt.datetime.now(dt.UTC)).astimezone(NEW_YORK).date()


def parse_date(text: str | dt.date) -> dt.date:
    """Parse YYYY-MM-DD strictly, with a one-line error naming the bad value."""
    if isinstance(text, dt.datetime):
        return text.date()
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(text.strip()) if len(text.strip()) == 10 else _bad_date(text)
    except ValueError:
        return _bad_date(text)


def _bad_date(text: str) -> dt.date:
    raise TradingCalendarError(f"malformed date {text!r}: expected YYYY-MM-DD")


def _check_range(day: dt.date) -> None:
    if not FIRST_TRADING_DAY <= day <= last_known_day():
        raise TradingCalendarError(
            f"date {day} is outside the trading calendar ({FIRST_TRADING_DAY} to {last_known_day()})"
        )


def is_trading_day(day: dt.date | str) -> bool:
    day = parse_date(day)
    _check_range(day)
    return _is_session(day)


@cache  # a pure function of the date (the calendar is built once); exchange_calendars' lookup is ~0.1 ms
def _is_session(day: dt.date) -> bool:
    return bool(_xnys().is_session(day.isoformat()))


def require_trading_day(day: dt.date | str) -> dt.date:
    day = parse_date(day)
    if not is_trading_day(day):
        raise TradingCalendarError(f"{day} is not an NYSE trading day")
    return day


def trading_days(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Trading days from start to end, both inclusive."""
    start, end = parse_date(start), parse_date(end)
    if start > end:
        raise TradingCalendarError(f"start {start} is after end {end}")
    start, end = max(start, FIRST_TRADING_DAY), min(end, last_known_day())
    if start > end:
        return []
    return [ts.date() for ts in _xnys().sessions_in_range(start.isoformat(), end.isoformat())]


def last_trading_days(end: dt.date | str, count: int) -> list[dt.date]:
    """The `count` trading days up to and including `end` (or the last one before it)."""
    if count < 1:
        raise TradingCalendarError(f"count must be at least 1, got {count}")
    end = parse_date(end)
    _check_range(end)
    sessions = _xnys().sessions
    stop = int(sessions.searchsorted(end.isoformat(), side="right"))
    return [ts.date() for ts in sessions[max(0, stop - count) : stop]]


def previous_trading_day(day: dt.date | str) -> dt.date:
    day = parse_date(day)
    _check_range(day)
    sessions = _xnys().sessions
    index = int(sessions.searchsorted(day.isoformat(), side="left"))
    if index == 0:
        raise TradingCalendarError(f"no trading day before {day} in the calendar")
    return sessions[index - 1].date()


def consecutive_runs(days: Iterable[dt.date | str]) -> list[tuple[dt.date, dt.date]]:
    """(first, last) of each run of consecutive trading days among `days`: 01-13, 01-15, 01-16 (01-14 left
    out) -> [(01-13, 01-13), (01-15, 01-16)]; a weekend or holiday does not break a run."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted({require_trading_day(d) for d in days}):
        if runs and previous_trading_day(day) == runs[-1][1]:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def closed_weekdays(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Monday-to-Friday dates without a session (holidays and unscheduled closures)."""
    start, end = parse_date(start), parse_date(end)
    sessions = set(trading_days(start, end))
    days = (start + dt.timedelta(days=offset) for offset in range((end - start).days + 1))
    return [day for day in days if day.weekday() < 5 and day not in sessions]


def session_bounds(day: dt.date | str) -> SessionBounds:
    """Open and close of a trading day in UTC (DST-correct, early closes at 13:00 ET)."""
    return _session_bounds(require_trading_day(day))


@cache  # per date, as `_is_session`: a consolidated day asks for the bounds of every expiration it holds
def _session_bounds(day: dt.date) -> SessionBounds:
    open_ts, close_ts = _xnys().session_open_close(day.isoformat())
    open_utc, close_utc = open_ts.to_pydatetime(), close_ts.to_pydatetime()
    pre = dt.datetime.combine(day, PRE_MARKET_START, tzinfo=NEW_YORK).astimezone(UTC)
    return SessionBounds(
        day=day,
        pre_market_open=pre,
        open=open_utc,
        close=close_utc,
        after_hours_close=close_utc + AFTER_HOURS_LENGTH,
    )


def early_closes(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    start, end = parse_date(start), parse_date(end)
    return [ts.date() for ts in _xnys().early_closes if start <= ts.date() <= end]


def holidays_with_names(start: dt.date, end: dt.date) -> list[tuple[dt.date, str]]:
    """Named market holidays (regular and ad hoc) between two dates, for the market-status endpoint."""
    import pandas as pd

    cal = _xnys()
    named = cal.regular_holidays.holidays(pd.Timestamp(start), pd.Timestamp(end), return_name=True)
    result = [(ts.date(), str(name)) for ts, name in named.items() if ts.weekday() < 5]
    adhoc = [pd.Timestamp(ts).date() for ts in cal.adhoc_holidays]
    result += [(d, "Market Closed") for d in adhoc if start <= d <= end and d.weekday() < 5]
    return sorted(set(result))
