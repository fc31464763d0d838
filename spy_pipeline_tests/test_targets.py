"""Forward targets: hand-made sparse frames with known answers, and a property test against a per-row loop."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spy_pipeline.domain.targets import forward_targets, target_columns
from spy_pipeline.domain.trading_calendar import session_bounds

DAY = dt.date(2025, 1, 15)  # a full session: 14:30 to 21:00 UTC, 390 minutes
OPEN = session_bounds(DAY).open
EARLY = dt.date(2024, 11, 29)  # early close: 09:30 to 13:00 ET, 210 minutes


def _at(minute: int, day: dt.date = DAY) -> dt.datetime:
    return session_bounds(day).open + dt.timedelta(minutes=minute)


def _frame(rows: list[tuple[str, int, float | None]], day: dt.date = DAY) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ticker": [t for t, _, _ in rows],
            "timestamp": [_at(m, day) for _, m, _ in rows],
            "close": [p for _, _, p in rows],
        },
        schema={"ticker": pl.String, "timestamp": pl.Datetime("us", "UTC"), "close": pl.Float64},
    )


def _targets(out: pl.DataFrame, horizon: int) -> list[list[float | None]]:
    return [list(row) for row in out.select(target_columns(horizon)).iter_rows()]


def test_target_columns_names_minutes_ahead() -> None:
    assert target_columns(3) == ["target_1", "target_2", "target_3"]
    with pytest.raises(ValueError):
        target_columns(0)


def test_sparse_minutes_use_time_not_rows() -> None:
    frame = _frame([("A", 0, 1.0), ("A", 1, 2.0), ("A", 3, 3.0), ("A", 7, 4.0), ("A", 8, 5.0)])
    out = forward_targets(frame, DAY, horizon=4, min_non_null_share=0.0)
    assert out.columns == ["ticker", "timestamp", "close", *target_columns(4)]
    assert _targets(out, 4) == [
        [2.0, None, 3.0, None],  # minute 0: minutes 1..4
        [None, 3.0, None, None],  # minute 1: minutes 2..5
        [None, None, None, 4.0],  # minute 3: minutes 4..7
        [5.0, None, None, None],  # minute 7
        [None, None, None, None],  # minute 8: kept only because the share is 0
    ]
    # what shift(-k) over rows would have said for minute 0, target_2: the next-but-one row, minute 3
    assert out["target_2"][0] is None


def test_two_interleaved_tickers_never_mix() -> None:
    frame = _frame([("B", 1, 20.0), ("A", 0, 1.0), ("B", 0, 10.0), ("A", 2, 2.0), ("B", 2, 30.0), ("A", 1, 1.5)])
    out = forward_targets(frame, DAY, horizon=2, min_non_null_share=0.0)
    # input order and other columns kept
    assert out.select("ticker", "close").rows() == [
        ("B", 20.0), ("A", 1.0), ("B", 10.0), ("A", 2.0), ("B", 30.0), ("A", 1.5),
    ]
    assert _targets(out, 2) == [
        [30.0, None],
        [1.5, 2.0],
        [20.0, 30.0],
        [None, None],
        [None, None],
        [2.0, None],
    ]


def test_nothing_past_the_close_and_the_last_minute_is_dropped() -> None:
    # minutes 386..389 are the session's last four (15:56..15:59 ET); 390 is the 16:00 post-market bar
    frame = _frame([("A", 386, 1.0), ("A", 387, 2.0), ("A", 389, 3.0), ("A", 390, 99.0)])
    out = forward_targets(frame, DAY, horizon=5, min_non_null_share=0.0)
    assert out["close"].to_list() == [1.0, 2.0]  # 15:59 has no minute left, 16:00 is outside the session
    assert _targets(out, 5) == [[2.0, None, 3.0, None, None], [None, 3.0, None, None, None]]


def test_early_close_bounds_the_targets() -> None:
    # 2024-11-29 closes at 13:00 ET: minute 209 is 12:59, minute 210 (13:00) is after the close
    frame = _frame([("A", 207, 1.0), ("A", 209, 2.0), ("A", 210, 5.0), ("A", 211, 6.0)], day=EARLY)
    out = forward_targets(frame, EARLY, horizon=3, min_non_null_share=0.0)
    assert out["close"].to_list() == [1.0]
    assert _targets(out, 3) == [[None, 2.0, None]]
    filled = forward_targets(frame, EARLY, horizon=3, min_non_null_share=0.0, forward_fill=True)
    assert _targets(filled, 3) == [[1.0, 2.0, None]]


def test_forward_fill_uses_the_last_price_at_or_before_the_minute() -> None:
    frame = _frame([("A", 0, 1.0), ("A", 2, None), ("A", 3, 3.0), ("B", 1, 7.0), ("A", 6, 6.0)])
    plain = forward_targets(frame, DAY, horizon=4, min_non_null_share=0.0)
    filled = forward_targets(frame, DAY, horizon=4, min_non_null_share=0.0, forward_fill=True)
    assert _targets(plain, 4)[0] == [None, None, 3.0, None]
    assert _targets(filled, 4) == [
        [1.0, 1.0, 3.0, 3.0],  # minute 0: the null at minute 2 is not a price; minute 6 is never seen early
        [3.0, 3.0, 3.0, 6.0],  # minute 2 (its own price is null)
        [3.0, 3.0, 6.0, 6.0],
        [7.0, 7.0, 7.0, 7.0],  # B: its own price only, never A's
        [6.0, 6.0, 6.0, 6.0],
    ]


def test_forward_fill_never_reaches_back_before_the_open() -> None:
    pre_market = session_bounds(DAY).open - dt.timedelta(minutes=5)
    frame = pl.concat([
        pl.DataFrame({"ticker": ["A"], "timestamp": [pre_market], "close": [9.0]}),
        _frame([("A", 0, None), ("A", 2, 2.0)]),
    ])
    out = forward_targets(frame, DAY, horizon=3, min_non_null_share=0.0, forward_fill=True)
    assert out["timestamp"].to_list() == [_at(0), _at(2)]  # the pre-market row is dropped
    assert _targets(out, 3) == [[None, 2.0, 2.0], [2.0, 2.0, 2.0]]


def test_drop_rule_share_over_minutes_inside_the_session() -> None:
    rows = [("A", 0, 1.0), ("A", 1, 1.0), ("A", 3, 1.0), ("A", 386, 1.0), ("A", 387, 1.0), ("A", 389, 1.0)]
    frame = _frame(rows)
    # minute 0 sees 1..4: 2 of 4. minute 1: 1 of 4. minute 3: 0 of 4.
    # minute 386 sees 387..389, the 3 minutes inside the session: 2 of 3. minute 387: 1 of 2. minute 389: none left.
    kept = forward_targets(frame, DAY, horizon=4, min_non_null_share=0.5)
    assert kept["timestamp"].to_list() == [_at(0), _at(386), _at(387)]
    # 2/3 passes 0.51 only because the minutes past the close are not in the denominator (2/4 would not)
    strict = forward_targets(frame, DAY, horizon=4, min_non_null_share=0.51)
    assert strict["timestamp"].to_list() == [_at(386)]
    everything = forward_targets(frame, DAY, horizon=4, min_non_null_share=0.0)
    assert everything.height == 5  # all but minute 389, which has no minute left
    # forward fill fills every minute after the first price: all rows with a minute left pass 100%
    assert forward_targets(frame, DAY, horizon=4, min_non_null_share=1.0, forward_fill=True).height == 5


def test_float32_by_default_float64_on_request() -> None:
    frame = _frame([("A", 0, 1.1), ("A", 1, 1.1)])
    out = forward_targets(frame, DAY, horizon=2, min_non_null_share=0.0)
    assert out.schema["target_1"] == pl.Float32
    assert out.schema["close"] == pl.Float64
    wide = forward_targets(frame, DAY, horizon=2, min_non_null_share=0.0, dtype=pl.Float64)
    assert wide["target_1"][0] == 1.1


def test_custom_price_column_naive_timestamps_and_extra_columns() -> None:
    frame = pl.DataFrame({
        "ticker": ["A", "A"],
        "timestamp": [dt.datetime(2025, 1, 15, 14, 30), dt.datetime(2025, 1, 15, 14, 31)],  # naive = UTC
        "option_close": [1.0, 2.0],
        "strike": [600.0, 600.0],
    })
    out = forward_targets(frame, DAY, horizon=1, price_column="option_close")
    assert out.columns == ["ticker", "timestamp", "option_close", "strike", "target_1"]
    assert out["target_1"].to_list() == [2.0]


def test_empty_frame_and_bad_input() -> None:
    empty = _frame([]).clear()
    out = forward_targets(empty, DAY, horizon=3)
    assert out.height == 0 and out.columns[-3:] == target_columns(3)
    with pytest.raises(ValueError, match="duplicate"):
        forward_targets(_frame([("A", 0, 1.0), ("A", 0, 2.0)]), DAY)
    odd = _frame([("A", 0, 1.0)]).with_columns(pl.col("timestamp") + dt.timedelta(seconds=30))
    with pytest.raises(ValueError, match="whole minutes"):
        forward_targets(odd, DAY)
    with pytest.raises(ValueError):
        forward_targets(_frame([("A", 0, 1.0)]), DAY, min_non_null_share=1.5)


def _oracle(
    rows: list[tuple[str, int, float | None]], horizon: int, share: float, fill: bool, minutes: int
) -> list[tuple[int, list[float | None]]]:
    """The obvious per-row loop: (input position, targets) of every kept row."""
    price = {(t, m): p for t, m, p in rows}
    kept = []
    for position, (ticker, minute, _) in enumerate(rows):
        if not 0 <= minute < minutes:
            continue
        targets: list[float | None] = []
        for k in range(1, horizon + 1):
            ahead = minute + k
            value = None
            if ahead < minutes:
                if fill:
                    for back in range(ahead, -1, -1):
                        if price.get((ticker, back)) is not None:
                            value = price[(ticker, back)]
                            break
                else:
                    value = price.get((ticker, ahead))
            targets.append(value)
        inside = min(horizon, minutes - 1 - minute)
        present = sum(v is not None for v in targets)
        if inside > 0 and present >= inside * share:
            kept.append((position, targets))
    return kept


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    tickers=st.integers(1, 4),
    horizon=st.integers(1, 25),
    share=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    fill=st.booleans(),
    early=st.booleans(),
)
def test_matches_a_per_row_loop_on_random_sparse_frames(
    seed: int, tickers: int, horizon: int, share: float, fill: bool, early: bool
) -> None:
    rng = random.Random(seed)
    day = EARLY if early else DAY
    minutes = session_bounds(day).regular_minutes
    rows = []
    for ticker in "ABCD"[:tickers]:
        # a random stretch of minutes, sometimes across the close or the open, with random density
        low = rng.randrange(-5, minutes)
        density = rng.choice([0.1, 0.5, 0.9, 1.0])
        for minute in range(low, min(low + rng.randrange(1, 80), minutes + 5)):
            if rng.random() < density:
                rows.append((ticker, minute, None if rng.random() < 0.1 else rng.randrange(1, 10_000) / 100))
    rng.shuffle(rows)
    expected = _oracle(rows, horizon, share, fill, minutes)
    frame = _frame(rows, day).with_row_index("position")
    out = forward_targets(frame, day, horizon=horizon, min_non_null_share=share, forward_fill=fill,
                          dtype=pl.Float64)
    assert out["position"].to_list() == [position for position, _ in expected]
    assert _targets(out, horizon) == [targets for _, targets in expected]
