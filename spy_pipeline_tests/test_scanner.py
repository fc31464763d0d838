"""Options movement scanner: hand-made price paths with known events, the summary, and a loop oracle."""

from __future__ import annotations

import datetime as dt
import functools
import random

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spy_pipeline.domain.scanner import EVENT_COLUMNS, movement_events, movement_summary
from spy_pipeline.domain.trading_calendar import session_bounds

DAY = dt.date(2025, 1, 15)  # EST: the open is 14:30 UTC


@functools.cache
def _open(day: dt.date) -> dt.datetime:
    return session_bounds(day).open  # the calendar lookup costs milliseconds: once per day


def _at(minute: int, day: dt.date = DAY) -> dt.datetime:
    return _open(day) + dt.timedelta(minutes=minute)


def _bars(rows: list[tuple[str, int, float | None]], day: dt.date = DAY) -> pl.DataFrame:
    return pl.DataFrame(
        {"ticker": [t for t, _, _ in rows], "timestamp": [_at(m, day) for _, m, _ in rows],
         "close": [p for _, _, p in rows]},
        schema={"ticker": pl.String, "timestamp": pl.Datetime("us", "UTC"), "close": pl.Float64},
    )


def _path(ticker: str, prices: list[float], first: int = 0) -> list[tuple[str, int, float]]:
    return [(ticker, first + i, p) for i, p in enumerate(prices)]


def test_a_single_clean_event() -> None:
    prices = [1.0] * 30 + [1.25, 1.4, 1.3, 1.15, 1.12, 1.05, 1.0, 1.0]
    events = movement_events(_bars(_path("A", prices)))
    assert events.columns == list(EVENT_COLUMNS)
    assert events.height == 1
    event = events.row(0, named=True)
    assert event == {
        "ticker": "A",
        "start": _at(30),
        "end": _at(34),  # 1.12 is the last bar at or above 1.10; 1.05 ends it
        "duration_minutes": 5,
        "reference_price": 1.0,
        "trigger_price": 1.25,
        "peak_price": 1.4,
        "peak_gain_pct": pytest.approx(40.0),
        "minutes_above_trigger": 3,  # 1.25, 1.4, 1.3 are at or above 1.20
        "trigger_hour_et": 10,  # 14:30 + 30 min = 15:00 UTC = 10:00 EST
    }


def test_no_event_when_rising_slowly_because_the_window_minimum_rises_too() -> None:
    # +0.1% a minute: +47% over the day, but at most 1.001**119 - 1 = 12.6% over any 120-minute window
    prices = [1.001**i for i in range(390)]
    assert movement_events(_bars(_path("A", prices))).height == 0
    # a 60-minute window holds even less; a 400-minute window (the whole day) would see +20% after 183 minutes
    long = movement_events(_bars(_path("A", prices)), window_minutes=400)
    assert long.height == 1 and long["start"][0] == _at(183)


def test_two_events_separated_by_a_dip_below_the_sustain_level() -> None:
    prices = [1.0] * 10 + [1.3, 1.2, 1.15] + [1.05] + [1.1, 1.25, 1.2] + [0.9]
    events = movement_events(_bars(_path("A", prices)))
    assert events.select("start", "end", "duration_minutes", "trigger_price", "minutes_above_trigger").rows() == [
        (_at(10), _at(12), 3, 1.3, 2),
        (_at(15), _at(16), 2, 1.25, 2),  # 1.1 at minute 14 is above sustain but is not a trigger: no event yet
    ]
    assert events["reference_price"].to_list() == [1.0, 1.0]


def test_triggers_during_an_event_belong_to_it() -> None:
    # a new low would make 1.5 a fresh trigger, but the event is still running: one event only
    prices = [1.0, 1.3, 1.35, 1.5, 1.6, 1.2, 1.15]
    events = movement_events(_bars(_path("A", prices)))
    assert events.height == 1
    assert events.row(0, named=True)["end"] == _at(6)  # runs to the last bar of the day
    assert events["peak_price"][0] == 1.6


def test_an_event_running_into_the_close() -> None:
    prices = [2.0] * 20 + [2.5, 2.6, 2.3]  # minutes 367..389: the last bar is 15:59 ET
    events = movement_events(_bars(_path("A", prices, first=367)))
    assert events.select("start", "end", "duration_minutes", "peak_gain_pct").rows() == [
        (_at(387), _at(389), 3, pytest.approx(30.0)),
    ]
    assert events["trigger_hour_et"][0] == 15


def test_the_window_is_time_not_rows() -> None:
    rows = [
        ("A", 0, 1.0), ("A", 119, 1.25),  # minute 0 is inside (119 - 120, 119]: a trigger
        ("B", 0, 1.0), ("B", 120, 1.25),  # minute 0 is outside (0, 120]: the reference is 1.25 itself
        ("C", 0, 1.0), ("C", 200, 1.0), ("C", 319, 1.3),  # two bars back, but 119 minutes back is what counts
    ]
    events = movement_events(_bars(rows))
    assert events.select("ticker", "start", "reference_price").rows() == [("A", _at(119), 1.0), ("C", _at(319), 1.0)]
    # dense bars: 120 minutes = 120 bars including the current one
    dense = [1.0] + [1.1] * 119 + [1.25]
    assert movement_events(_bars(_path("D", dense))).height == 0  # minute 0 just left the window
    assert movement_events(_bars(_path("D", dense)), window_minutes=121).height == 1


def test_two_tickers_interleaved_are_scanned_separately() -> None:
    a = _path("A", [1.0] * 5 + [1.3, 1.3, 1.0])
    b = _path("B", [0.5] * 3 + [0.55, 0.7, 0.66, 0.5, 0.8])
    rows = [row for pair in zip(a, b, strict=True) for row in pair]
    random.Random(7).shuffle(rows)
    events = movement_events(_bars(rows))
    assert events.select("ticker", "start", "end", "reference_price", "peak_price").rows() == [
        ("A", _at(5), _at(6), 1.0, 1.3),
        ("B", _at(4), _at(5), 0.5, 0.7),
        ("B", _at(7), _at(7), 0.5, 0.8),
    ]


def test_trigger_hour_is_new_york_time_across_daylight_saving() -> None:
    before, after = dt.date(2025, 3, 7), dt.date(2025, 3, 10)  # EST, then EDT from 2025-03-09
    rows = []
    for day in (before, after):
        open_utc = session_bounds(day).open
        # the same UTC clock time on both days: 15:05 UTC
        minute = int((dt.datetime.combine(day, dt.time(15, 5), tzinfo=dt.UTC) - open_utc).total_seconds() // 60)
        rows.append(_bars(_path("A", [1.0, 1.0, 1.5], first=minute - 2), day=day))
    events = movement_events(pl.concat(rows))
    assert events.select("start", "trigger_hour_et").rows() == [
        (dt.datetime(2025, 3, 7, 15, 5, tzinfo=dt.UTC), 10),
        (dt.datetime(2025, 3, 10, 15, 5, tzinfo=dt.UTC), 11),
    ]


def test_each_day_starts_afresh() -> None:
    # Thursday's low is not Friday's reference, even within 120 minutes of clock time (overnight)
    thursday, friday = dt.date(2025, 1, 16), dt.date(2025, 1, 17)
    bars = pl.concat([_bars(_path("A", [1.0], first=389), thursday),
                      _bars(_path("A", [1.5, 1.5]), friday)])
    assert movement_events(bars, window_minutes=24 * 60).height == 0


def test_nulls_ignored_duplicates_rejected_empty_input() -> None:
    events = movement_events(_bars([("A", 0, 1.0), ("A", 1, None), ("A", 2, 1.3)]))
    assert events["start"].to_list() == [_at(2)]
    with pytest.raises(ValueError, match="duplicate"):
        movement_events(_bars([("A", 0, 1.0), ("A", 0, 1.3)]))
    empty = movement_events(_bars([]))
    assert empty.height == 0 and empty.columns == list(EVENT_COLUMNS)


def test_summary_figures_on_a_small_set() -> None:
    second = dt.date(2025, 1, 16)
    bars = pl.concat([
        # A, day 1: two events (3 and 2 minutes above +20%), 18 bars
        _bars(_path("A", [1.0] * 10 + [1.3, 1.2, 1.15] + [1.05] + [1.1, 1.25, 1.2] + [0.9])),
        # B, day 1: one event, late (15:xx ET), 1 minute above +20%, 4 bars
        _bars(_path("B", [2.0, 2.0, 2.5, 2.3], first=380)),
        # A, day 2: flat, no event, 5 bars
        _bars(_path("A", [1.0] * 5), second),
    ])
    events = movement_events(bars)
    assert events["minutes_above_trigger"].to_list() == [2, 2, 1]
    summary = movement_summary(bars, events)
    tables = {key: summary.pop(key) for key in ("events_by_trigger_hour", "events_per_contract_day")}
    assert summary == {
        "trigger_pct": 20.0,
        "contract_days": 3,
        "minute_bars": 27,
        "events": 3,
        "events_per_contract_day_min": 0,
        "events_per_contract_day_median": 1.0,
        "events_per_contract_day_max": 2,
        "minutes_above_trigger": 5,
        "share_minutes_above_trigger": pytest.approx(5 / 27),
        "duration_above_trigger_median_minutes": 2.0,
        "duration_above_trigger_mean_minutes": pytest.approx(5 / 3),
    }
    assert tables["events_by_trigger_hour"].rows() == [(9, 2), (10, 0), (11, 0), (12, 0), (13, 0), (14, 0), (15, 1)]
    assert tables["events_per_contract_day"].rows() == [(0, 1), (1, 1), (2, 1)]


def test_summary_without_events() -> None:
    bars = _bars(_path("A", [1.0] * 3))
    summary = movement_summary(bars, movement_events(bars))
    assert summary["events"] == 0 and summary["contract_days"] == 1
    assert summary["events_per_contract_day_median"] == 0.0
    assert summary["duration_above_trigger_median_minutes"] is None
    assert summary["minutes_above_trigger"] == 0 and summary["share_minutes_above_trigger"] == 0.0
    assert summary["events_by_trigger_hour"]["events"].sum() == 0


def _oracle(
    rows: list[tuple[str, int, float]], window: int, trigger: float, sustain: float
) -> list[tuple[str, int, int, float, float, int]]:
    """A plain loop per contract: (ticker, start, end, reference, peak, minutes above trigger)."""
    up, keep = 1 + trigger / 100, 1 + sustain / 100
    events = []
    for ticker in sorted({t for t, _, _ in rows}):
        bars = sorted((m, p) for t, m, p in rows if t == ticker)
        current = None
        for i, (minute, price) in enumerate(bars):
            if current is not None:
                if price >= current["reference"] * keep:
                    current["end"], current["peak"] = minute, max(current["peak"], price)
                    current["above"] += price >= current["reference"] * up
                    continue
                events.append(current)
                current = None
            reference = min(p for m, p in bars[: i + 1] if m > minute - window)
            if reference > 0 and price >= reference * up:
                current = {"ticker": ticker, "start": minute, "end": minute, "reference": reference, "peak": price,
                           "above": 1}
        if current is not None:
            events.append(current)
    return [(e["ticker"], e["start"], e["end"], e["reference"], e["peak"], e["above"]) for e in events]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    window=st.sampled_from([1, 5, 30, 120]),
    trigger=st.sampled_from([5.0, 20.0]),
    sustain=st.sampled_from([0.0, 10.0, 30.0]),
)
def test_matches_a_per_bar_loop_on_random_sparse_paths(seed: int, window: int, trigger: float, sustain: float) -> None:
    rng = random.Random(seed)
    rows = []
    for ticker in "ABC"[: rng.randint(1, 3)]:
        price, density = rng.uniform(0.5, 5), rng.choice([0.2, 0.7, 1.0])
        for minute in range(rng.randrange(0, 300), 390):
            price = max(0.01, round(price * rng.uniform(0.85, 1.2), 2))
            if rng.random() < density:
                rows.append((ticker, minute, price))
    rng.shuffle(rows)
    events = movement_events(_bars(rows), window_minutes=window, trigger_pct=trigger, sustain_pct=sustain)
    got = [
        (t, int((s - _at(0)).total_seconds() // 60), int((e - _at(0)).total_seconds() // 60), r, p, a)
        for t, s, e, r, p, a in events.select(
            "ticker", "start", "end", "reference_price", "peak_price", "minutes_above_trigger"
        ).iter_rows()
    ]
    assert got == _oracle(rows, window, trigger, sustain)
