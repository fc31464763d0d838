"""Features on hand-made consolidated frames: lags are minutes of time, ATM IV by the stated rule."""

import datetime as dt
import math

import polars as pl
import pytest

from spy_pipeline.domain.features import atm_iv, build_features, feature_columns

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


E1, E2 = dt.date(2025, 1, 8), dt.date(2025, 1, 10)


def test_iv_change_uses_the_same_contract_k_minutes_earlier_not_k_rows() -> None:
    # contract A trades at minutes 0, 1, 5: its 1-minute change at minute 5 has no bar at minute 4 -> null
    frame = _frame([
        ("A", _minute(0), 600.0, 600.0, E1, 0.20),
        ("A", _minute(1), 600.5, 600.0, E1, 0.21),
        ("A", _minute(5), 601.0, 600.0, E1, 0.25),
        ("B", _minute(4), 600.8, 601.0, E1, 0.30),
    ])
    features = build_features(frame, lags=(1, 5)).filter(pl.col("ticker") == "A").sort("timestamp")
    assert features["iv_change_1m"].to_list()[1] == pytest.approx(0.01)
    assert features["iv_change_1m"].to_list()[2] is None  # no bar for A at minute 4
    assert features["iv_change_5m"].to_list()[2] == pytest.approx(0.05)  # minute 0 -> minute 5


def test_spy_change_is_over_minutes_of_the_grid() -> None:
    frame = _frame([
        ("A", _minute(0), 600.0, 600.0, E1, 0.2),
        ("A", _minute(5), 606.0, 600.0, E1, 0.2),
        ("B", _minute(1), 601.0, 600.0, E1, 0.2),
    ])
    features = build_features(frame, lags=(5,)).sort("timestamp")
    by_minute = dict(zip(features["timestamp"].to_list(), features["spy_pct_change_5m"].to_list(), strict=True))
    assert by_minute[_minute(5)] == pytest.approx(1.0)
    assert by_minute[_minute(0)] is None and by_minute[_minute(1)] is None


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
    features = build_features(frame, lags=(1,))
    row = features.filter(pl.col("ticker") == "C601")
    assert row["iv_minus_atm"][0] == pytest.approx(0.09)
    assert features.filter(pl.col("ticker") == "Cnan")["iv"][0] is None  # NaN IV becomes null, not a number


def test_columns_follow_the_lags_and_bad_lags_are_refused() -> None:
    frame = _frame([("A", _minute(0), 600.0, 600.0, E1, 0.2)])
    assert build_features(frame, lags=(2, 7)).columns == ["ticker", "timestamp", *feature_columns((2, 7))]
    for bad in [(), (0,), (-5,)]:
        with pytest.raises(ValueError, match="lags must be positive"):
            build_features(frame, lags=bad)
