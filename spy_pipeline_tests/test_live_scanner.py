"""The live movement scanner: incremental events equal the daily scanner's, floors, and alerts sent from a
streaming session without slowing it (loopback receiver slow or down)."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from spy_pipeline.domain.live_scanner import IncrementalScanner
from spy_pipeline.domain.scanner import movement_events
from spy_pipeline.domain.trading_calendar import session_bounds

DAY = dt.date(2025, 1, 15)
OPEN = session_bounds(DAY).open


def _at(minute: int) -> dt.datetime:
    return OPEN + dt.timedelta(minutes=minute)


def _random_day(rng: random.Random, tickers: str = "ABCD") -> pl.DataFrame:
    """Sparse random walks, with penny prices and thin minutes now and then (so the floors matter)."""
    rows = []
    for ticker in tickers[: rng.randint(1, len(tickers))]:
        price, density = rng.uniform(0.02, 4), rng.choice([0.3, 0.8, 1.0])
        for minute in range(rng.randrange(-300, 200), 390 + rng.randrange(0, 240)):
            price = max(0.01, round(price * rng.uniform(0.82, 1.22), 2))
            if rng.random() < density:
                rows.append((ticker, _at(minute), price, float(rng.choice([0, 1, 5, 20, 300]))))
    return pl.DataFrame(rows, schema={"ticker": pl.String, "timestamp": pl.Datetime("us", "UTC"),
                                      "close": pl.Float64, "volume": pl.Float64}, orient="row")


def _in_batches(bars: pl.DataFrame, rng: random.Random, shuffle_within: bool = True) -> list[pl.DataFrame]:
    """The day in landing order (by time), cut into random-sized batches, each in any row order."""
    ordered = bars.sort("timestamp")
    cuts = sorted(rng.sample(range(1, max(ordered.height, 2)), min(rng.randint(0, 40), max(ordered.height - 1, 0))))
    batches, first = [], 0
    for cut in [*cuts, ordered.height]:
        batch = ordered[first:cut]
        batches.append(batch.sample(fraction=1.0, shuffle=True, seed=rng.randrange(2**31)) if shuffle_within
                       else batch)
        first = cut
    return batches


FLOORS = st.sampled_from([(0.0, 0.0), (0.10, 10.0), (0.05, 1.0)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), window=st.sampled_from([1, 7, 30, 120]),
       trigger=st.sampled_from([5.0, 20.0]), sustain=st.sampled_from([0.0, 10.0, 30.0]), floors=FLOORS)
def test_random_sized_batches_equal_the_daily_scan(seed: int, window: int, trigger: float, sustain: float,
                                                   floors: tuple[float, float]) -> None:
    rng = random.Random(seed)
    bars = _random_day(rng)
    min_price, min_volume = floors
    daily = movement_events(bars, window, trigger, sustain, min_price=min_price, min_volume=min_volume)
    live = IncrementalScanner(window, trigger, sustain, min_price=min_price, min_volume=min_volume)
    started = [event for batch in _in_batches(bars, rng) for event in live.update(batch)]
    assert_frame_equal(live.events(), daily)
    assert live.replays == 0  # in time order: no contract was ever replayed
    # every event was reported once, when its trigger bar landed
    assert sorted((e.ticker, e.start) for e in started) == list(daily.select("ticker", "start").iter_rows())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), floors=FLOORS)
def test_late_bars_and_revisions_replay_the_contract(seed: int, floors: tuple[float, float]) -> None:
    """A gap fill delivers the past after the present; a revision replaces a landed bar (or makes it unscannable)."""
    rng = random.Random(seed)
    bars = _random_day(rng).with_row_index("row")
    min_price, min_volume = floors
    late = bars.sample(fraction=0.3, seed=seed % 2**31)
    revised = bars.sample(fraction=0.05, seed=(seed + 1) % 2**31).with_columns(
        close=(pl.col("close") * 1.5).round(2), volume=pl.col("volume").reverse())
    final = pl.concat([bars.filter(~pl.col("row").is_in(revised["row"].implode())), revised]).drop("row")
    live = IncrementalScanner(min_price=min_price, min_volume=min_volume)
    on_time = bars.filter(~pl.col("row").is_in(late["row"].implode())).drop("row")
    for batch in [*_in_batches(on_time, rng), late.drop("row"), revised.drop("row")]:
        live.update(batch)
    assert_frame_equal(live.events(), movement_events(final, min_price=min_price, min_volume=min_volume))


def test_an_event_is_reported_when_its_trigger_bar_lands_and_grows_afterwards() -> None:
    def bar(minute: int, price: float) -> pl.DataFrame:
        return pl.DataFrame({"ticker": ["X"], "timestamp": [_at(minute)], "close": [price], "volume": [100.0]})

    live = IncrementalScanner(min_price=0.10, min_volume=10)
    assert live.update(bar(0, 1.00)) == [] and live.update(bar(1, 1.05)) == []
    [event] = live.update(bar(2, 1.30))
    assert (event.ticker, event.start, event.reference, event.trigger_price) == ("X", _at(2), 1.00, 1.30)
    assert live.update(bar(3, 1.60)) == []  # during the event: it grows, no new report
    [row] = live.events().to_dicts()
    assert (row["end"], row["peak_price"], row["minutes_above_trigger"], row["duration_minutes"]) == (
        _at(3), 1.60, 2, 2)


def test_the_floors_drop_penny_prints_and_thin_minutes_in_both_scanners() -> None:
    """0.01 -> 1.00 is +9,900% without floors; with them the 0.01 bar and the 3-lot bar do not exist."""
    bars = pl.DataFrame({
        "ticker": ["X"] * 5,
        "timestamp": [_at(m) for m in range(5)],
        "close": [0.80, 0.01, 1.00, 0.50, 0.90],
        "volume": [50.0, 500.0, 40.0, 3.0, 60.0],
    })
    unfloored = movement_events(bars)
    assert unfloored["peak_gain_pct"].max() == pytest.approx(9_900.0)
    floored = movement_events(bars, min_price=0.10, min_volume=10)
    live = IncrementalScanner(min_price=0.10, min_volume=10)
    live.update(bars)
    assert_frame_equal(live.events(), floored)
    # 0.80 -> 1.00 is +25% off the floored minimum; 0.90 is 12.5% above 0.80: still in the event
    assert floored.select("start", "reference_price", "peak_price", "duration_minutes").rows() == [
        (_at(2), 0.80, 1.00, 3)]
    with pytest.raises(ValueError, match="volume"):
        movement_events(bars.drop("volume"), min_volume=1)
