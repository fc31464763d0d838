"""Trading days and session times, checked against exchange_calendars' XNYS calendar directly."""

import datetime as dt

import exchange_calendars as xcals
import pandas as pd
import pytest

from spy_pipeline.defs.partitions import trading_day_partitions
from spy_pipeline.domain import trading_calendar as cal

XNYS = xcals.get_calendar("XNYS", start="2015-01-02")


def _xnys_days(start: str, end: str) -> list[str]:
    return [ts.date().isoformat() for ts in XNYS.sessions_in_range(start, end)]


def test_partition_keys_equal_nyse_sessions_over_ten_years() -> None:
    keys = trading_day_partitions.get_partition_keys()
    in_range = [k for k in keys if k <= "2025-12-31"]
    assert in_range == _xnys_days("2015-01-02", "2025-12-31")
    assert len(in_range) > 2500


def test_holidays_weekends_and_unscheduled_closures_are_not_partitions() -> None:
    for closed in ["2025-01-09", "2018-12-05", "2024-12-25", "2025-07-04", "2025-01-11", "2016-01-18"]:
        assert not trading_day_partitions.has_partition_key(closed), closed
        assert not cal.is_trading_day(closed)
    for open_day in ["2025-01-08", "2024-11-29", "2020-03-16"]:
        assert trading_day_partitions.has_partition_key(open_day)


def test_session_bounds_follow_daylight_saving_time() -> None:
    before = cal.session_bounds("2025-03-07")  # EST: 09:30 ET = 14:30 UTC
    after = cal.session_bounds("2025-03-10")  # EDT from 2025-03-09: 09:30 ET = 13:30 UTC
    assert before.open == dt.datetime(2025, 3, 7, 14, 30, tzinfo=dt.UTC)
    assert after.open == dt.datetime(2025, 3, 10, 13, 30, tzinfo=dt.UTC)
    assert after.close == dt.datetime(2025, 3, 10, 20, 0, tzinfo=dt.UTC)
    assert after.pre_market_open == dt.datetime(2025, 3, 10, 8, 0, tzinfo=dt.UTC)
    for day in (before, after):
        assert day.regular_minutes == 390 and not day.is_early_close


def test_early_close_sessions_end_at_13_00_eastern() -> None:
    for day in ["2024-11-29", "2024-07-03", "2024-12-24", "2019-12-24"]:
        bounds = cal.session_bounds(day)
        xnys_open, xnys_close = XNYS.session_open_close(day)
        assert (bounds.open, bounds.close) == (xnys_open.to_pydatetime(), xnys_close.to_pydatetime())
        assert bounds.close.astimezone(cal.NEW_YORK).time() == dt.time(13, 0)
        assert bounds.is_early_close and bounds.regular_minutes == 210
        assert bounds.after_hours_close.astimezone(cal.NEW_YORK).time() == dt.time(17, 0)


def test_session_bounds_equal_exchange_calendars_for_every_day_of_2024() -> None:
    for day in _xnys_days("2024-01-01", "2024-12-31"):
        bounds = cal.session_bounds(day)
        xnys_open, xnys_close = XNYS.session_open_close(day)
        assert bounds.open == xnys_open.to_pydatetime() and bounds.close == xnys_close.to_pydatetime()


def test_early_closes_listed_match_calendar() -> None:
    expected = [ts.date() for ts in XNYS.early_closes if pd.Timestamp("2020-01-01") <= ts <= pd.Timestamp("2025-12-31")]
    assert cal.early_closes("2020-01-01", "2025-12-31") == expected


def test_previous_and_last_trading_days_skip_closures() -> None:
    assert cal.previous_trading_day("2025-01-10") == dt.date(2025, 1, 8)  # 2025-01-09 closed
    assert cal.previous_trading_day("2025-01-06") == dt.date(2025, 1, 3)
    assert cal.last_trading_days("2025-01-10", 5) == [
        dt.date(2025, 1, 3), dt.date(2025, 1, 6), dt.date(2025, 1, 7), dt.date(2025, 1, 8), dt.date(2025, 1, 10)
    ]
    assert cal.last_trading_days("2025-01-11", 1) == [dt.date(2025, 1, 10)]


@pytest.mark.parametrize("text", ["2025-13-01", "2025-02-30", "20250108", "08/01/2025", "", "yesterday"])
def test_malformed_dates_raise_one_line_errors(text: str) -> None:
    with pytest.raises(cal.TradingCalendarError, match="malformed date") as info:
        cal.parse_date(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("day", ["2014-12-31", "2099-01-02"])
def test_out_of_range_dates_are_refused(day: str) -> None:
    with pytest.raises(cal.TradingCalendarError, match="outside the trading calendar"):
        cal.is_trading_day(day)


def test_non_trading_day_is_refused_where_a_session_is_needed() -> None:
    with pytest.raises(cal.TradingCalendarError, match="not an NYSE trading day"):
        cal.session_bounds("2025-01-09")


def test_closed_weekdays_are_the_holidays() -> None:
    closed = cal.closed_weekdays("2025-01-01", "2025-12-31")
    assert dt.date(2025, 1, 1) in closed and dt.date(2025, 1, 9) in closed and dt.date(2025, 12, 25) in closed
    assert all(day.weekday() < 5 for day in closed)
    assert len(closed) == 261 - len(_xnys_days("2025-01-01", "2025-12-31"))


def test_new_york_date_is_the_day_in_new_york_not_in_utc() -> None:
    late_evening = dt.datetime(2025, 1, 9, 3, 30, tzinfo=dt.UTC)  # 22:30 ET on the 8th
    assert cal.new_york_date(late_evening) == dt.date(2025, 1, 8)
    assert cal.new_york_date(dt.datetime(2025, 7, 4, 4, 0, tzinfo=dt.UTC)) == dt.date(2025, 7, 4)  # 00:00 EDT
