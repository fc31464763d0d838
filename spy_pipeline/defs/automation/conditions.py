"""Declarative automation: when Dagster materializes the daily assets and the reference data by itself.

The automation condition sensor (spy_pipeline.defs.automation.sensors) evaluates these every 30 s.

Daily assets (partitions: NYSE trading days, spy_pipeline.defs.partitions). A day's partition only exists from
00:00 ET the next day (a daily partition ends at midnight; weekends, holidays and unscheduled closures are not
partitions at all), so "missing" is calendar-aware by construction:
- the nightly run: at the first evaluation after midnight following a trading day, that day is missing and
  is requested (Polygon's after-hours session ended at 20:00 ET, 17:00 on early closes);
- catch-up: every trading day of the last two weeks that is missing is requested on the same tick; the sensor
  emits one backfill for them and the assets' single-run backfill policy makes one run per contiguous range
  (a laptop off for a week gets one run for the week);
- a day whose latest run failed (or was canceled) is not requested again: it stays failed in the UI until
  someone materializes it (then it is an ordinary day again). The step retry policy has already retried it;
- a day waits for its inputs: an asset is not requested while an upstream partition of the window is missing
  and not requested with it (a failed raw day holds its processed day back; consolidated waits for
  corporate_actions on a fresh instance).

Reference data (corporate_actions, unpartitioned): when it was never materialized, and every Sunday at 12:00 ET
(or at the first evaluation after, if the daemon was down then). A failed weekly refresh waits for the next
Sunday; a failed first materialization waits for Sunday too, or for a run by hand.
"""

from __future__ import annotations

import datetime as dt

from dagster import AutomationCondition

from spy_pipeline.domain import trading_calendar as cal

# Two calendar weeks back from the end of the latest trading day: its 10 latest trading days (fewer on holidays).
LOOKBACK = dt.timedelta(days=14)
WEEKLY_REFERENCE_CRON = "0 12 * * 0"  # Sunday 12:00 in New York

in_lookback = AutomationCondition.in_latest_time_window(LOOKBACK).with_label("in the last 2 weeks")
already_handled = (AutomationCondition.in_progress() | AutomationCondition.execution_failed()).with_label(
    "in progress, or its latest run failed"
)
inputs_pending = AutomationCondition.any_deps_match(
    AutomationCondition.missing() & ~AutomationCondition.will_be_requested() & in_lookback
).with_label("an input of the window is missing and not requested with it")

DAILY_CONDITION = (
    in_lookback & AutomationCondition.missing() & ~already_handled & ~inputs_pending
).with_label("missing trading day of the last 2 weeks")

weekly_tick = AutomationCondition.cron_tick_passed(WEEKLY_REFERENCE_CRON, str(cal.NEW_YORK)).since_last_handled()
REFERENCE_CONDITION = (
    (weekly_tick.with_label("weekly, Sunday 12:00 ET") | (AutomationCondition.missing()
                                                            & ~AutomationCondition.execution_failed()))
    & ~AutomationCondition.in_progress()
).with_label("missing, or weekly")
