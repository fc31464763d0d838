"""Features on hand-made consolidated frames: lags are minutes of time, ATM IV by the stated rule."""

import datetime as dt
import math

import polars as pl
import pytest

from spy_pipeline.domain import indicators as ind
from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.features import atm_iv, build_features, feature_columns, spy_lag_changes
from spy_pipeline_tests.test_indicators import FULL_DAY, spy_bars

T0 = dt.datetime(2025, 1, 8, 14, 30, tzinfo=dt.UTC)


def _minute(k: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=k)


def _frame(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"ticker": pl.String, "timestamp": pl.Datetime("us", "UTC"), "spy_close": pl.Float64,
                "strike": pl.Float64, "expiration": pl.Date, "iv": pl.Float64},
        orient="row",
    )


def _grid(closes: list[float]) -> pl.DataFrame:
    """A SPY minute grid from T0: one close per minute."""
    return pl.DataFrame(
        {"timestamp": [_minute(k) for k in range(len(closes))], "close": closes},
        schema={"timestamp": pl.Datetime("us", "UTC"), "close": pl.Float64},
    )


E1, E2 = dt.date(2025, 1, 8), dt.date(2025, 1, 10)
FLAT = _grid([600.0] * 10)


def test_iv_change_uses_the_same_contract_k_minutes_earlier_not_k_rows() -> None:
    # contract A trades at minutes 0, 1, 5: its 1-minute change at minute 5 has no bar at minute 4 -> null
    frame = _frame([
        ("A", _minute(0), 600.0, 600.0, E1, 0.20),
        ("A", _minute(1), 600.5, 600.0, E1, 0.21),
        ("A", _minute(5), 601.0, 600.0, E1, 0.25),
        ("B", _minute(4), 600.8, 601.0, E1, 0.30),
    ])
    features = build_features(frame, FLAT, lags=(1, 5)).filter(pl.col("ticker") == "A").sort("timestamp")
    assert features["iv_change_1m"].to_list()[1] == pytest.approx(0.01)
    assert features["iv_change_1m"].to_list()[2] is None  # no bar for A at minute 4
    assert features["iv_change_5m"].to_list()[2] == pytest.approx(0.05)  # minute 0 -> minute 5


def test_spy_change_is_over_minutes_of_the_grid() -> None:
    frame = _frame([
        ("A", _minute(0), 600.0, 600.0, E1, 0.2),
        ("A", _minute(5), 606.0, 600.0, E1, 0.2),
        ("B", _minute(1), 601.0, 600.0, E1, 0.2),
    ])
    spy = _grid([600.0, 601.0, 602.0, 603.0, 604.0, 606.0, 612.0])
    features = build_features(frame, spy, lags=(5,)).sort("timestamp")
    by_minute = dict(zip(features["timestamp"].to_list(), features["spy_pct_change_5m"].to_list(), strict=True))
    assert by_minute[_minute(5)] == pytest.approx(1.0)
    assert by_minute[_minute(0)] is None and by_minute[_minute(1)] is None  # the lag reaches before the open


def test_spy_change_looks_back_on_the_spy_grid_even_where_no_option_traded() -> None:
    # The defect: minute 6 looked back only among minutes in which some option traded, so minute 1
    # (no option bar) gave null although SPY traded then.
    frame = _frame([("A", _minute(0), 600.0, 600.0, E1, 0.2), ("A", _minute(6), 606.0, 600.0, E1, 0.2)])
    spy = _grid([600.0, 601.0, 602.0, 603.0, 604.0, 605.0, 606.0])
    row = build_features(frame, spy, lags=(5,)).filter(pl.col("timestamp") == _minute(6))
    assert row["spy_pct_change_5m"][0] == pytest.approx((606.0 / 601.0 - 1) * 100)


def test_spy_change_equals_the_grid_rate_of_change_of_the_indicators() -> None:
    # Independent of the features code: roc_{k}m of indicators() is 100 * (close / close k grid rows back - 1).
    grid = ind.spy_minute_grid(spy_bars(FULL_DAY), FULL_DAY)
    changes = spy_lag_changes(grid.select("timestamp", "close"), (5, 30, 60))
    roc = ind.indicators(grid)
    assert changes.height == cal.session_bounds(FULL_DAY).regular_minutes
    for k in (5, 30, 60):
        got = changes[f"spy_pct_change_{k}m"]
        assert got[:k].is_null().all() and got[k:].null_count() == 0
        assert (got[k:] - roc[f"roc_{k}m"][k:]).abs().max() < 1e-9
    with pytest.raises(ValueError, match="one row per minute"):
        spy_lag_changes(grid.filter(pl.col("timestamp") != grid["timestamp"][7]), (5,))


def test_atm_iv_takes_the_nearest_expiration_and_the_closest_strikes() -> None:
    frame = _frame([
        ("C600", _minute(0), 600.4, 600.0, E1, 0.20),
        ("P600", _minute(0), 600.4, 600.0, E1, 0.22),
        ("C601", _minute(0), 600.4, 601.0, E1, 0.30),
        ("C600b", _minute(0), 600.4, 600.0, E2, 0.50),  # later expiration: ignored
        ("Cnan", _minute(0), 600.4, 600.4, E1, math.nan),  # no IV: ignored
    ])
    [(minute, value)] = atm_iv(frame).rows()
    assert minute == _minute(0) and value == pytest.approx(0.21)
    features = build_features(frame, FLAT, lags=(1,))
    row = features.filter(pl.col("ticker") == "C601")
    assert row["iv_minus_atm"][0] == pytest.approx(0.09)
    assert features.filter(pl.col("ticker") == "Cnan")["iv"][0] is None  # NaN IV becomes null, not a number


def test_columns_follow_the_lags_and_bad_lags_are_refused() -> None:
    frame = _frame([("A", _minute(0), 600.0, 600.0, E1, 0.2)])
    assert build_features(frame, FLAT, lags=(2, 7)).columns == ["ticker", "timestamp", *feature_columns((2, 7))]
    for bad in [(), (0,), (-5,)]:
        with pytest.raises(ValueError, match="lags must be positive"):
            build_features(frame, FLAT, lags=bad)
