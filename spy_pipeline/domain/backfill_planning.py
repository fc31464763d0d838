"""Unattended backfills, decided without Dagster: when a trading day can be fetched, which day a nightly
tick fetches, which missing days a catch-up run re-fetches, when reference data is due, and how a failed
run is summed up in one line.

The Dagster shells (a schedule and sensors) are in spy_pipeline.defs.automation; they read the instance
(materialized partitions, runs) and pass plain values in here, so every decision is testable with dates.

Why a day is only "ready" after midnight New York time: `trading_day_partitions` is a daily partitions
definition, whose partition for a day ends at 00:00 ET the next day. Until then Dagster does not count the
key as a partition: a run over it does execute, but its materializations are recorded *without* a
partition (checked on Dagster 1.13.27), so the day would stay missing. Polygon's after-hours session ends
at 20:00 ET (17:00 on early closes) and midnight always comes later; the nightly run starts at 00:30 ET.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from spy_pipeline.domain import trading_calendar as cal

NEW_YORK = cal.NEW_YORK
UTC = dt.UTC

# The nightly run: 00:30 ET Tuesday to Saturday, each tick for the calendar day that just ended.
NIGHTLY_CRON = "30 0 * * 2-6"
# Polygon's minute aggregates of the after-hours session are complete a few minutes after it ends.
AFTER_HOURS_SETTLE = dt.timedelta(minutes=30)

# Catch-up sensor defaults (each is a keyword of build_catch_up_sensor).
DEFAULT_LOOKBACK_DAYS = 10  # trading days: two weeks of a laptop left off
DEFAULT_CATCH_UP_INTERVAL = dt.timedelta(minutes=30)
DEFAULT_CATCH_UP_GRACE = dt.timedelta(minutes=90)  # after a day is ready: the nightly run goes first
DEFAULT_COOL_DOWN = dt.timedelta(hours=1)  # after a failed run, before its days are requested again
DEFAULT_MAX_FAILURES = 3  # failed runs covering a day within FAILURE_MEMORY before the sensor pauses on it
FAILURE_MEMORY = dt.timedelta(hours=24)
PENDING_TTL = dt.timedelta(minutes=15)  # a request whose run never appears is forgotten after this

# Reference data (dividends, splits): refreshed once a week, Sunday at 12:00 ET, or at the first tick after
# that if the daemon was not running then; at once if it was never materialized.
REFERENCE_WEEKDAY = 6  # Sunday (Monday is 0)
REFERENCE_TIME = dt.time(12, 0)

CURSOR_VERSION = 1

# Dagster's run tags for a partition range and a single partition (dagster._core.storage.tags).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"

RunState = Literal["in_flight", "failed", "succeeded"]


@dataclass(frozen=True, order=True)
class DayRange:
    """Trading days from start to end, both inclusive: one run's partition range."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ValueError(f"range start {self.start} is after its end {self.end}")

    @classmethod
    def single(cls, day: dt.date) -> DayRange:
        return cls(day, day)

    @classmethod
    def from_keys(cls, start: str, end: str) -> DayRange:
        return cls(cal.parse_date(start), cal.parse_date(end))

    def covers(self, day: dt.date) -> bool:
        return self.start <= day <= self.end

    def days(self) -> list[dt.date]:
        return cal.trading_days(self.start, self.end)

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}..{self.end}"

    def tags(self) -> dict[str, str]:
        """Run tags for one run over the range (the assets' single-run backfill policy reads them)."""
        return {RANGE_START_TAG: self.start.isoformat(), RANGE_END_TAG: self.end.isoformat()}

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> DayRange | None:
        """The range of a run from its tags; None for a run without partitions (or unreadable tags)."""
        start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
        start, end = (start, end) if start and end else (tags.get(PARTITION_TAG),) * 2
        if not start or not end:
            return None
        try:
            return cls.from_keys(start, end)
        except (ValueError, cal.TradingCalendarError):
            return None


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"a timezone-aware datetime is needed, got {moment!r}")
    return moment


def partition_end(day: dt.date) -> dt.datetime:
    """When Dagster starts counting `day` as a partition of trading_day_partitions: 00:00 ET the next day."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=NEW_YORK)


def ready_at(day: dt.date) -> dt.datetime:
    """The earliest moment a run over `day` both sees the whole after-hours session and is recorded."""
    settled = cal.session_bounds(day).after_hours_close + AFTER_HOURS_SETTLE
    return max(settled, partition_end(day))


def closed_reason(day: dt.date) -> str | None:
    """Why `day` has no NYSE session (None for a trading day)."""
    if day.weekday() >= 5:
        return f"{day} is a {day:%A}: no NYSE session"
    try:
        if cal.is_trading_day(day):
            return None
    except cal.TradingCalendarError as exc:
        return str(exc)
    name = dict(cal.holidays_with_names(day, day)).get(day, "Market Closed")
    what = "an unscheduled closure" if name == "Market Closed" else f"a market holiday ({name})"
    return f"{day} ({day:%A}) is {what}: no NYSE session"


# --- the nightly schedule -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NightlyDecision:
    day: dt.date
    request: DayRange | None
    reason: str

    @property
    def run_key(self) -> str:
        """The date. Dagster's scheduler launches at most one run per (schedule, tick time, run key), so a tick
        evaluated again (a daemon restarted mid-tick) never doubles; distinct ticks are distinct days."""
        return self.day.isoformat()


def nightly_decision(tick: dt.datetime) -> NightlyDecision:
    """What the nightly tick does: fetch the calendar day that ended at the last New York midnight."""
    local = _aware(tick).astimezone(NEW_YORK)
    day = local.date() - dt.timedelta(days=1)
    closed = closed_reason(day)
    if closed:
        return NightlyDecision(day, None, closed)
    ready = ready_at(day)
    if local < ready:
        return NightlyDecision(day, None, f"{day} is not ready before {ready.astimezone(NEW_YORK):%Y-%m-%d %H:%M} ET")
    return NightlyDecision(day, DayRange.single(day), f"{day} is a trading day whose data is complete")


# --- the catch-up sensor --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """What the planner needs to know of one run of the daily job (read from the instance by the shell)."""

    run_id: str
    state: RunState
    days: DayRange | None  # None: not a partition run (no partition or range tags)
    run_key: str | None = None
    ended_at: dt.datetime | None = None  # failure time for a failed run


@dataclass(frozen=True)
class PendingRequest:
    """A range the sensor requested; run_id once the daemon's run for it has been found in the instance."""

    run_key: str
    start: str
    end: str
    requested_at: str  # ISO 8601, UTC
    run_id: str | None = None

    @property
    def days(self) -> DayRange:
        return DayRange.from_keys(self.start, self.end)


@dataclass(frozen=True)
class CatchUpCursor:
    """The sensor's JSON cursor: the ranges it requested and not yet seen finish."""

    requests: tuple[PendingRequest, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {"version": CURSOR_VERSION, "requests": [asdict(r) for r in self.requests]}, separators=(",", ":")
        )

    @classmethod
    def from_json(cls, text: str | None) -> CatchUpCursor:
        """An empty or unreadable cursor (another version, hand-edited) is a fresh start, never an error:
        the instance still knows every run, so only a request the daemon never launched is forgotten."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if data.get("version") != CURSOR_VERSION:
                return cls()
            return cls(tuple(PendingRequest(**item) for item in data["requests"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls()

    def run_keys(self) -> list[str]:
        return [r.run_key for r in self.requests]


@dataclass(frozen=True)
class CatchUpPlan:
    request: DayRange | None
    run_key: str | None
    reason: str
    cursor: CatchUpCursor
    window: tuple[dt.date, ...] = ()
    missing: tuple[dt.date, ...] = ()
    held_back: Mapping[dt.date, str] = field(default_factory=dict)  # missing days not requested, and why


def latest_ready_day(now: dt.datetime, grace: dt.timedelta = dt.timedelta(0)) -> dt.date | None:
    today = _aware(now).astimezone(NEW_YORK).date()
    for day in reversed(cal.last_trading_days(today, 3)):
        if ready_at(day) + grace <= now:
            return day
    return None


def catch_up_window(now: dt.datetime, lookback_days: int, grace: dt.timedelta) -> list[dt.date]:
    """The `lookback_days` latest trading days that are ready (plus grace) at `now`: today is left out until
    its partition exists and the nightly run had `grace` to start."""
    if lookback_days < 1:
        raise ValueError(f"lookback_days must be at least 1, got {lookback_days}")
    last = latest_ready_day(now, grace)
    return cal.last_trading_days(last, lookback_days) if last else []


def catch_up_run_key(days: DayRange, now: dt.datetime) -> str:
    """Unique per request (the daemon drops a request whose run key this sensor already used), so a range
    whose run failed can be requested again."""
    return f"catch-up:{days}@{_aware(now).astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def _requested_at(request: PendingRequest) -> dt.datetime:
    """When the request was made; long ago if the cursor's text is unreadable (the request is then dropped)."""
    try:
        moment = dt.datetime.fromisoformat(request.requested_at)
    except (TypeError, ValueError):
        return dt.datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _active_requests(
    cursor: CatchUpCursor, runs_by_key: Mapping[str, RunInfo], now: dt.datetime
) -> list[PendingRequest]:
    """The cursor's requests still active: their run in flight, or no run yet but requested recently.
    The others are dropped: a finished run's outcome is the instance's to tell (a failure counts below)."""
    active = []
    for request in cursor.requests:
        run = runs_by_key.get(request.run_key)
        if run is not None:
            if run.state == "in_flight":
                active.append(replace(request, run_id=run.run_id))
        elif now - _requested_at(request) < PENDING_TTL:
            active.append(request)
        # else: the daemon never launched it; forget it and plan afresh
    return active


def plan_catch_up(
    now: dt.datetime,
    *,
    materialized: Iterable[str],
    runs: Sequence[RunInfo],
    cursor: CatchUpCursor,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    grace: dt.timedelta = DEFAULT_CATCH_UP_GRACE,
    cool_down: dt.timedelta = DEFAULT_COOL_DOWN,
    max_failures: int = DEFAULT_MAX_FAILURES,
    reference_ready: bool = True,
) -> CatchUpPlan:
    """At most one catch-up run: from the first missing day of the window to the last missing day that
    can go with it.

    `materialized`: partition keys of the day's completion asset(s). `runs`: the daily job's runs that are
    in flight, failed within FAILURE_MEMORY, or match a run key in `cursor` (any source: the nightly
    schedule, this sensor, a run launched by hand).

    - One catch-up run at a time: while the last one is in flight (or requested and not yet seen), nothing.
    - Days in flight in any run are not requested again; neither are the days of a run that failed less
      than `cool_down` ago, nor days with `max_failures` failed runs within FAILURE_MEMORY (they resume
      when those failures age out, or sooner if a run by hand succeeds).
    - A gap that is not contiguous becomes one run from its first to its last missing day: the days in
      between are materialized again, which is idempotent (each asset rewrites that day's files from the
      same inputs). A range never crosses a day that is held back, so a run never overlaps another one.
    - A day that has failed before is retried on its own, so that one bad day cannot hold a week back.
    """
    now = _aware(now)
    runs_by_key = {run.run_key: run for run in runs if run.run_key}
    active = _active_requests(cursor, runs_by_key, now)
    next_cursor = CatchUpCursor(tuple(active))
    window = catch_up_window(now, lookback_days, grace)
    done = set(materialized)
    missing = [day for day in window if day.isoformat() not in done]

    def plan(
        reason: str,
        request: DayRange | None = None,
        run_key: str | None = None,
        held: Mapping[dt.date, str] | None = None,
    ) -> CatchUpPlan:
        cursor_out = next_cursor
        if request is not None and run_key is not None:
            pending = PendingRequest(run_key, request.start.isoformat(), request.end.isoformat(),
                                     now.astimezone(UTC).isoformat())
            cursor_out = CatchUpCursor((*next_cursor.requests, pending))
        return CatchUpPlan(request, run_key, reason, cursor_out, tuple(window), tuple(missing), held or {})

    if not window:
        return plan("no trading day is ready yet")
    span = DayRange(window[0], window[-1])
    if active:
        first = active[0]
        what = f"run {first.run_id}" if first.run_id else f"request {first.run_key} (no run yet)"
        return plan(f"catch-up {what} over {first.days} is still in flight")
    if not missing:
        return plan(f"no gap: all {len(window)} trading days {span} are materialized")
    if not reference_ready:
        return plan(f"{len(missing)} day(s) missing in {span}, but reference data (corporate_actions) was "
                    "never materialized: waiting for a reference_data run")

    in_flight: dict[dt.date, str] = {}
    failures: dict[dt.date, list[RunInfo]] = {}
    for run in runs:
        if run.days is None:
            continue
        for day in window:
            if not run.days.covers(day):
                continue
            if run.state == "in_flight":
                in_flight.setdefault(day, run.run_id)
            elif run.state == "failed" and run.ended_at is not None and now - run.ended_at < FAILURE_MEMORY:
                failures.setdefault(day, []).append(run)

    held: dict[dt.date, str] = {}
    for day in missing:
        failed = sorted(failures.get(day, []), key=lambda r: r.ended_at or now)
        if day in in_flight:
            held[day] = f"in flight in run {in_flight[day]}"
        elif len(failed) >= max_failures:
            held[day] = f"{len(failed)} failed runs in the last {FAILURE_MEMORY}: paused (last {failed[-1].run_id})"
        elif failed and now < (failed[-1].ended_at or now) + cool_down:
            until = ((failed[-1].ended_at or now) + cool_down).astimezone(NEW_YORK)
            held[day] = f"run {failed[-1].run_id} failed; cooling down until {until:%Y-%m-%d %H:%M} ET"
    candidates = [day for day in missing if day not in held]
    if not candidates:
        return plan(f"{len(missing)} day(s) missing in {span}, none requestable now: {_describe_held(held)}",
                    held=held)

    first = candidates[0]
    end = first
    if first not in failures:
        for day in window[window.index(first) + 1 :]:
            if day in held or day in in_flight or (day in failures and day.isoformat() not in done):
                break
            if day in candidates:
                end = day
    request = DayRange(first, end)
    again = [day for day in window if request.covers(day) and day.isoformat() in done]
    parts = [f"{len([d for d in candidates if request.covers(d)])} missing day(s) {request}"]
    if again:
        parts.append(f"re-materializing {len(again)} present day(s) in between (idempotent)")
    if first in failures:
        parts.append("alone, as it failed before")
    left = [day for day in candidates if not request.covers(day)]
    if left:
        parts.append(f"{len(left)} more missing day(s) on a later tick")
    if held:
        parts.append(f"held back: {_describe_held(held)}")
    return plan("requesting " + "; ".join(parts), request, catch_up_run_key(request, now), held)


def _describe_held(held: Mapping[dt.date, str]) -> str:
    """Held-back days grouped by reason: "2025-01-13..2025-01-16: run r failed; cooling down until ..."."""
    groups: list[tuple[dt.date, dt.date, str]] = []
    for day, why in held.items():  # in window order
        if groups and groups[-1][2] == why:
            groups[-1] = (groups[-1][0], day, why)
        else:
            groups.append((day, day, why))
    return "; ".join(f"{DayRange(start, end)}: {why}" for start, end, why in groups)


# --- reference data ------------------------------------------------------------------------------------


def reference_due_since(now: dt.datetime) -> dt.datetime:
    """The latest weekly refresh moment (Sunday 12:00 ET) at or before `now`."""
    local = _aware(now).astimezone(NEW_YORK)
    days_back = (local.weekday() - REFERENCE_WEEKDAY) % 7
    moment = dt.datetime.combine(local.date() - dt.timedelta(days=days_back), REFERENCE_TIME, tzinfo=NEW_YORK)
    return moment if moment <= local else moment - dt.timedelta(days=7)


@dataclass(frozen=True)
class ReferencePlan:
    request: bool
    run_key: str | None
    reason: str


def plan_reference_refresh(
    now: dt.datetime,
    *,
    last_materialized: dt.datetime | None,
    runs: Sequence[RunInfo],
    last_requested: dt.datetime | None = None,
    cool_down: dt.timedelta = DEFAULT_COOL_DOWN,
    max_failures: int = DEFAULT_MAX_FAILURES,
) -> ReferencePlan:
    """Refresh dividends and splits when they are older than the latest Sunday 12:00 ET (or absent).

    `runs`: the reference job's runs that are in flight or failed within FAILURE_MEMORY."""
    now = _aware(now)
    due_since = reference_due_since(now)
    if last_materialized is not None and last_materialized >= due_since:
        return ReferencePlan(False, None, f"reference data is fresh (materialized {last_materialized:%Y-%m-%d %H:%M} "
                                          f"UTC, after the weekly refresh of {due_since:%Y-%m-%d %H:%M} ET)")
    in_flight = [r for r in runs if r.state == "in_flight"]
    if in_flight:
        return ReferencePlan(False, None, f"reference_data run {in_flight[0].run_id} is in flight")
    if last_requested is not None and now - last_requested < PENDING_TTL:
        return ReferencePlan(False, None, f"reference_data was requested at {last_requested:%H:%M} UTC; waiting")
    failed = sorted((r for r in runs if r.state == "failed" and r.ended_at and now - r.ended_at < FAILURE_MEMORY),
                    key=lambda r: r.ended_at or now)
    if len(failed) >= max_failures:
        return ReferencePlan(False, None, f"{len(failed)} reference_data runs failed in the last {FAILURE_MEMORY}: "
                                          f"paused (last {failed[-1].run_id})")
    if failed and failed[-1].ended_at and now < failed[-1].ended_at + cool_down:
        return ReferencePlan(False, None, f"reference_data run {failed[-1].run_id} failed; cooling down")
    why = "never materialized" if last_materialized is None else f"older than {due_since:%Y-%m-%d %H:%M} ET"
    return ReferencePlan(True, f"reference:{now.astimezone(UTC):%Y-%m-%dT%H:%MZ}", f"reference data {why}")


# --- failures ------------------------------------------------------------------------------------------


def first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return "unknown error"


def failure_fields(
    *,
    job: str,
    run_id: str,
    tags: Mapping[str, str],
    step_errors: Sequence[tuple[str, str]],
    run_message: str | None,
) -> dict[str, str]:
    """One failed run as flat fields for a structured log line: job, partitions, first failing step and
    the first line of its error (else of the run's failure message)."""
    days = DayRange.from_tags(tags)
    partitions = str(days) if days else tags.get(PARTITION_TAG, "none")
    fields = {"job": job, "run_id": run_id, "partitions": partitions}
    if step_errors:
        step, message = step_errors[0]
        fields |= {"step": step, "error": first_line(message)}
        if len(step_errors) > 1:
            fields["failed_steps"] = ", ".join(s for s, _ in step_errors)
    else:
        fields["error"] = first_line(run_message)
    return fields


def failure_line(fields: Mapping[str, str]) -> str:
    return "run failed: " + " ".join(f"{key}={json.dumps(value)}" for key, value in fields.items())
