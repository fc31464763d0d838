"""Vectorized Black-Scholes-Merton against py_vollib, a textbook value and the model's own identities."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from spy_pipeline.domain import black_scholes

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # py_vollib asks to be imported as vollib
    from py_vollib.black_scholes_merton import black_scholes_merton


def random_rows(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    spot = rng.uniform(20.0, 800.0, n)
    return {
        "S": spot,
        "K": spot * np.exp(rng.uniform(-0.6, 0.6, n)),
        "T_years": rng.uniform(1.0 / (365 * 24), 3.0, n),
        "r": rng.uniform(0.0, 0.08, n),
        "q": rng.uniform(0.0, 0.05, n),
        "sigma": rng.uniform(0.03, 1.5, n),
        "is_call": rng.random(n) < 0.5,
    }


def test_hull_example_call() -> None:
    """Hull, Options, Futures and Other Derivatives: S=49, K=50, r=5%, sigma=20%, 20 weeks."""
    value = black_scholes.price(49.0, 50.0, 20 / 52, 0.05, 0.0, 0.20, True)
    assert round(float(value), 4) == 2.4005


def test_matches_py_vollib_on_random_rows() -> None:
    rows = random_rows(3_000, seed=7)
    ours = black_scholes.price(**rows)
    theirs = np.array(
        [
            black_scholes_merton("c" if call else "p", s, k, t, r, sigma, q)
            for s, k, t, r, q, sigma, call in zip(
                rows["S"], rows["K"], rows["T_years"], rows["r"], rows["q"], rows["sigma"], rows["is_call"], strict=True
            )
        ]
    )
    assert ours.shape == (3_000,)
    assert np.abs(ours - theirs).max() < 1e-10


def test_put_call_parity_holds_exactly() -> None:
    rows = random_rows(2_000, seed=11)
    calls = black_scholes.price(**{**rows, "is_call": np.ones(2_000, dtype=bool)})
    puts = black_scholes.price(**{**rows, "is_call": np.zeros(2_000, dtype=bool)})
    forward = rows["S"] * np.exp(-rows["q"] * rows["T_years"]) - rows["K"] * np.exp(-rows["r"] * rows["T_years"])
    np.testing.assert_allclose(calls - puts, forward, rtol=0, atol=1e-9)


def test_expiry_and_zero_volatility_give_intrinsic_values() -> None:
    spot, strike = np.array([90.0, 100.0, 110.0]), 100.0
    at_expiry_calls = black_scholes.price(spot, strike, 0.0, 0.05, 0.01, 0.3, True)
    at_expiry_puts = black_scholes.price(spot, strike, 0.0, 0.05, 0.01, 0.3, False)
    np.testing.assert_array_equal(at_expiry_calls, [0.0, 0.0, 10.0])
    np.testing.assert_array_equal(at_expiry_puts, [10.0, 0.0, 0.0])
    no_vol = black_scholes.price(110.0, 100.0, 1.0, 0.05, 0.01, 0.0, True)
    assert float(no_vol) == pytest.approx(110.0 * np.exp(-0.01) - 100.0 * np.exp(-0.05), abs=1e-12)


def test_arguments_broadcast_and_is_call_is_per_row() -> None:
    strikes = np.array([[95.0], [100.0], [105.0]])
    is_call = np.array([True, False])
    values = black_scholes.price(100.0, strikes, 0.25, 0.045, 0.013, 0.2, is_call)
    assert values.shape == (3, 2)
    assert (np.diff(values[:, 0]) < 0).all(), "calls get cheaper as the strike rises"
    assert (np.diff(values[:, 1]) > 0).all(), "puts get dearer as the strike rises"
    assert np.isfinite(values).all()


def test_value_rises_with_volatility_and_stays_within_bounds() -> None:
    sigmas = np.linspace(0.05, 1.0, 20)
    calls = black_scholes.price(600.0, 610.0, 30 / 365, 0.045, 0.013, sigmas, True)
    assert (np.diff(calls) > 0).all()
    assert (calls < 600.0 * np.exp(-0.013 * 30 / 365)).all()


def test_flags_may_be_int8_plus_minus_one_or_strings() -> None:
    rows = random_rows(500, seed=3)
    by_bool = black_scholes.price(**rows)
    by_int8 = black_scholes.price(**{**rows, "is_call": np.where(rows["is_call"], 1, -1).astype(np.int8)})
    by_text = black_scholes.price(**{**rows, "is_call": np.where(rows["is_call"], "c", "p")})
    np.testing.assert_array_equal(by_int8, by_bool)
    np.testing.assert_array_equal(by_text, by_bool)


def test_nan_inputs_give_nan_not_an_exception() -> None:
    values = black_scholes.price(600.0, [600.0, np.nan, 600.0], [0.1, 0.1, np.nan], 0.045, 0.013, 0.2, True)
    assert np.isfinite(values[0])
    assert np.isnan(values[1:]).all()


def test_threaded_and_single_threaded_kernels_agree() -> None:
    rows = random_rows(3 * black_scholes.PARALLEL_MIN_ROWS, seed=23)
    whole = black_scholes.price(**rows)
    step = black_scholes.PARALLEL_MIN_ROWS // 2
    parts = [black_scholes.price(**{k: v[i : i + step] for k, v in rows.items()}) for i in range(0, len(whole), step)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
