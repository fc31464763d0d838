"""The one partitions definition of the platform: NYSE trading days, keys YYYY-MM-DD."""

from __future__ import annotations

import datetime as dt

from dagster import DailyPartitionsDefinition

from spy_pipeline.domain import trading_calendar as cal

WEEKENDS = "0 0 * * 6,0"


def _closed_weekday_exclusions() -> list[dt.datetime]:
    closed = cal.closed_weekdays(cal.FIRST_TRADING_DAY, cal.last_known_day())
    return [dt.datetime.combine(day, dt.time(), tzinfo=cal.NEW_YORK) for day in closed]


trading_day_partitions = DailyPartitionsDefinition(
    start_date=cal.FIRST_TRADING_DAY.isoformat(),
    timezone=str(cal.NEW_YORK),
    exclusions=[WEEKENDS, *_closed_weekday_exclusions()],
)
