"""Black-Scholes-Merton prices, implied volatility and greeks against py_vollib (the oracle), textbook values,
the model's own identities, and the reason codes.

Agreement with py_vollib: implied volatility within 1e-9 where the price pins it down, greeks within 1e-10
at the same volatility. Where the time value is a rounding error of the price (1-day deep in-the-money
options), no solver can do better than the price's own rounding: there the two implied volatilities may
differ by up to a few eps·(S e^{-qT} + K e^{-rT})/vega, and both reprice the input to that rounding.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pytest

from spy_pipeline.domain import black_scholes as bs

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # py_vollib asks to be imported as vollib
    from py_vollib.black_scholes_merton import black_scholes_merton
    from py_vollib.black_scholes_merton.greeks import analytical
    from py_vollib.black_scholes_merton.implied_volatility import implied_volatility

EPS = np.finfo(float).eps
IV_TOL = 1e-9
GREEKS_TOL = 1e-10
MINUTE = 1.0 / (365 * 24 * 60)
GREEKS = ("delta", "gamma", "theta", "vega", "rho")


def vollib_price(S, K, T, r, q, sigma, call) -> np.ndarray:
    return np.array([
        black_scholes_merton("c" if c else "p", s, k, t, rr, v, qq)
        for s, k, t, rr, qq, v, c in zip(S, K, T, r, q, sigma, call, strict=True)
    ])


def vollib_iv(price, S, K, T, r, q, call) -> np.ndarray:
    """py_vollib's implied volatility, NaN where it raises (below intrinsic, above the maximum)."""
    out = np.full(len(price), np.nan)
    for i, (p, s, k, t, rr, qq, c) in enumerate(zip(price, S, K, T, r, q, call, strict=True)):
        with contextlib.suppress(Exception):  # vollib signals "no solution" with exceptions
            out[i] = implied_volatility(p, s, k, t, rr, qq, "c" if c else "p")
    return out


def vollib_greeks(S, K, T, r, q, sigma, call) -> dict[str, np.ndarray]:
    rows = list(zip(S, K, T, r, q, sigma, call, strict=True))
    return {
        name: np.array([getattr(analytical, name)("c" if c else "p", s, k, t, rr, v, qq)
                        for s, k, t, rr, qq, v, c in rows])
        for name in GREEKS
    }


def ours_greeks(result: bs.GreeksResult) -> dict[str, np.ndarray]:
    return {
        "delta": result.delta, "gamma": result.gamma, "theta": result.theta_per_day,
        "vega": result.vega_per_point, "rho": result.rho_per_point,
    }


def random_rows(n: int, seed: int) -> dict[str, np.ndarray]:
    """1 minute to 3 years, volatility 2% to 300%, calls and puts, q > 0, strikes up to 8 standard deviations
    (sigma√T) in or out of the money (at most a factor e^2): from at the money to time value lost in rounding."""
    rng = np.random.default_rng(seed)
    S = rng.uniform(20.0, 800.0, n)
    T = np.exp(rng.uniform(math.log(MINUTE), math.log(3.0), n))
    sigma = np.exp(rng.uniform(math.log(0.02), math.log(3.0), n))
    log_moneyness = np.clip(rng.uniform(-8.0, 8.0, n) * sigma * np.sqrt(T), -2.0, 2.0)
    return {
        "S": S,
        "K": S * np.exp(log_moneyness),
        "T": T,
        "r": rng.uniform(-0.01, 0.08, n),
        "q": rng.uniform(0.0, 0.05, n),
        "sigma": sigma,
        "call": rng.random(n) < 0.5,
    }


def edge_rows() -> dict[str, np.ndarray]:
    """A grid over SPY-like extremes: strikes from deep ITM to deep OTM, 1 minute to 30 days, sigma up to 3."""
    strikes = [300.0, 480.0, 570.0, 597.0, 600.0, 603.0, 630.0, 720.0, 900.0]
    times = [MINUTE, 15 * MINUTE, 3.0 / (365 * 24), 1.0 / 365, 30.0 / 365]  # 1 min, 15 min, 0DTE, 1 day, 30 days
    sigmas = [0.05, 0.2, 1.0, 3.0]
    grid = np.array([(k, t, v, c) for k in strikes for t in times for v in sigmas for c in (True, False)])
    n = len(grid)
    return {
        "S": np.full(n, 600.0), "K": grid[:, 0], "T": grid[:, 1], "r": np.full(n, 0.045), "q": np.full(n, 0.013),
        "sigma": grid[:, 2], "call": grid[:, 3].astype(bool),
    }


def compare_with_vollib(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    S, K, T, r, q, call = (rows[k] for k in ("S", "K", "T", "r", "q", "call"))
    price = vollib_price(S, K, T, r, q, rows["sigma"], call)
    ours = bs.implied_vol_and_greeks(price, S, K, T, r, q, call)
    theirs = vollib_iv(price, S, K, T, r, q, call)
    vega = np.array([analytical.vega("c", s, k, t, rr, v, qq) for s, k, t, rr, qq, v in zip(
        S, K, T, r, q, np.where(theirs > 0, theirs, rows["sigma"]), strict=True)]) / 0.01
    rounding = EPS * (S * np.exp(-q * T) + K * np.exp(-r * T))  # of a price, and of S e^-qT - K e^-rT
    with np.errstate(divide="ignore"):
        iv_rounding = rounding / vega  # what that rounding moves the implied volatility
    return {"price": price, "ours": ours, "theirs": theirs, "rounding": rounding, "iv_rounding": iv_rounding}


@pytest.fixture(scope="module")
def random_case() -> dict[str, np.ndarray]:
    rows = random_rows(5_000, seed=20250101)
    return {**rows, **compare_with_vollib(rows)}


@pytest.fixture(scope="module")
def edge_case() -> dict[str, np.ndarray]:
    rows = edge_rows()
    return {**rows, **compare_with_vollib(rows)}


@pytest.mark.parametrize("case_name", ["random_case", "edge_case"])
def test_implied_vol_matches_py_vollib(case_name: str, request: pytest.FixtureRequest) -> None:
    case = request.getfixturevalue(case_name)
    ours, theirs = case["ours"], case["theirs"]
    converged = theirs > 0  # py_vollib found a volatility (it returns 0 when it cannot resolve the price)
    both = converged & (ours.reason == bs.OK)
    error = np.abs(ours.iv - theirs)
    well_posed = both & (case["iv_rounding"] < IV_TOL)  # the price's rounding moves sigma by less than 1e-9
    assert well_posed.sum() > 0.45 * len(theirs)
    assert error[well_posed].max() <= IV_TOL
    # Ill-posed rows: no worse than the price's own rounding allows (measured ≤ 1x; 4x for margin) ...
    assert (error[both] <= np.maximum(IV_TOL, 4 * case["iv_rounding"][both])).all()
    # ... and in price space both volatilities reprice the input to that rounding.
    args = [case[k][both] for k in ("S", "K", "T", "r", "q")]
    repriced = bs.price(*args, ours.iv[both], case["call"][both])
    vollib_repriced = bs.price(*args, theirs[both], case["call"][both])
    hard = case["iv_rounding"][both] >= IV_TOL
    assert hard.sum() > 10
    residual = np.abs(repriced - case["price"][both])[hard]
    assert (residual <= 4 * case["rounding"][both][hard]).all()
    assert (np.abs(vollib_repriced - case["price"][both])[hard] <= 4 * case["rounding"][both][hard]).all()
    # Where py_vollib has an answer and we do not, the time value is rounding noise: at or below our intrinsic,
    # or a subnormal price (below 1e-308) that no formula can reprice.
    missed = converged & (ours.reason != bs.OK)
    intrinsic = np.maximum(np.where(case["call"], 1, -1) * (
        case["S"] * np.exp(-case["q"] * case["T"]) - case["K"] * np.exp(-case["r"] * case["T"])), 0)
    noise = (case["price"] - intrinsic <= 4 * case["rounding"]) | (case["price"] < 1e-300)
    assert (noise[missed]).all()
    assert set(np.unique(ours.reason[missed])) <= {bs.BELOW_INTRINSIC, bs.NOT_CONVERGED}


@pytest.mark.parametrize("case_name", ["random_case", "edge_case"])
def test_greeks_match_py_vollib_at_the_same_volatility(case_name: str, request: pytest.FixtureRequest) -> None:
    case = request.getfixturevalue(case_name)
    ours = case["ours"]
    ok = np.flatnonzero(ours.reason == bs.OK)
    theirs = vollib_greeks(*(case[k][ok] for k in ("S", "K", "T", "r", "q")), ours.iv[ok], case["call"][ok])
    for name, values in ours_greeks(ours).items():
        np.testing.assert_allclose(values[ok], theirs[name], rtol=0, atol=GREEKS_TOL, err_msg=name)


def test_edge_grid_solves_every_resolvable_row(edge_case: dict[str, np.ndarray]) -> None:
    """Every row whose price still carries its volatility (to 1e-6) is solved, and gives back that volatility."""
    ours, sigma, iv_rounding = edge_case["ours"], edge_case["sigma"], edge_case["iv_rounding"]
    resolvable = iv_rounding < 1e-6
    assert resolvable.sum() > 150
    assert (ours.reason[resolvable] == bs.OK).all()
    assert (np.abs(ours.iv - sigma)[resolvable] <= np.maximum(IV_TOL, 4 * iv_rounding[resolvable])).all()
    # The rest have no time value left in double precision: below intrinsic, or a price of exactly 0.
    assert set(np.unique(ours.reason[~resolvable])) <= {bs.OK, bs.BELOW_INTRINSIC, bs.INVALID_INPUT}


def test_hull_example() -> None:
    """Hull, Options, Futures and Other Derivatives, examples 17.1-17.6: S=49, K=50, r=5%, sigma=20%, 20 weeks."""
    value = bs.price(49.0, 50.0, 20 / 52, 0.05, 0.0, 0.20, True)
    assert round(float(value), 4) == 2.4005
    result = bs.implied_vol_and_greeks(value, 49.0, 50.0, 20 / 52, 0.05, 0.0, True)
    assert result.reason == bs.OK
    assert float(result.iv) == pytest.approx(0.20, abs=1e-13)
    assert round(float(result.delta), 4) == 0.5216
    assert round(float(result.gamma), 4) == 0.0655
    assert round(float(result.theta_per_day), 5) == -0.01180  # -4.31 a year / 365
    assert round(float(result.vega_per_point), 4) == 0.1211
    assert round(float(result.rho_per_point), 4) == 0.0891


def test_round_trip_through_price() -> None:
    rows = random_rows(20_000, seed=5)
    args = [rows[k] for k in ("S", "K", "T", "r", "q")]
    value = bs.price(*args, rows["sigma"], rows["call"])
    result = bs.implied_vol_and_greeks(value, *args, rows["call"])
    ok = result.reason == bs.OK
    assert ok.mean() > 0.9
    scale = rows["S"] + rows["K"]
    repriced = bs.price(*args, result.iv, rows["call"])
    assert (np.abs(repriced - value)[ok] <= 4 * EPS * scale[ok]).all()


def nan_row(result: bs.GreeksResult, i: int = 0) -> bool:
    return all(np.isnan(np.ravel(getattr(result, f))[i]) for f in result._fields if f != "reason")


@pytest.mark.parametrize("is_call", [True, False])
def test_below_intrinsic_and_above_bound(is_call: bool) -> None:
    S, K, T, r, q = 600.0, 550.0 if is_call else 650.0, 2.0 / 365, 0.045, 0.013
    forward, strike = S * math.exp(-q * T), K * math.exp(-r * T)
    intrinsic = abs(forward - strike)
    bound = forward if is_call else strike
    prices = np.array([intrinsic - 0.01, intrinsic, intrinsic + 0.5, bound, bound + 1.0])
    result = bs.implied_vol_and_greeks(prices, S, K, T, r, q, is_call)
    expected = [bs.BELOW_INTRINSIC, bs.BELOW_INTRINSIC, bs.OK, bs.ABOVE_UPPER_BOUND, bs.ABOVE_UPPER_BOUND]
    assert result.reason.tolist() == expected
    for i in (0, 1, 3, 4):
        assert nan_row(result, i)
    assert 0 < result.iv[2] < 5


def test_out_of_the_money_bound_is_the_upper_bound() -> None:
    """An OTM call is worth at most S e^{-qT}, an OTM put at most K e^{-rT}: the same bounds as ITM ones."""
    S, T, r, q = 600.0, 0.5, 0.045, 0.013
    calls = bs.implied_vol_and_greeks([S * math.exp(-q * T), 590.0], S, 700.0, T, r, q, True)
    assert calls.reason.tolist() == [bs.ABOVE_UPPER_BOUND, bs.OK]
    puts = bs.implied_vol_and_greeks([500 * math.exp(-r * T), 480.0], S, 500.0, T, r, q, False)
    assert puts.reason.tolist() == [bs.ABOVE_UPPER_BOUND, bs.OK]


@pytest.mark.parametrize(
    ("field", "bad"),
    [(f, v) for f in ("price", "S", "K", "T") for v in (0.0, -1.0, np.nan, np.inf)]
    + [("r", np.nan), ("q", np.nan), ("r", np.inf)],
)
def test_invalid_inputs(field: str, bad: float) -> None:
    good = {"price": 10.0, "S": 600.0, "K": 600.0, "T": 0.1, "r": 0.045, "q": 0.013}
    values = {k: np.array([v, v]) for k, v in good.items()}
    values[field][1] = bad
    result = bs.implied_vol_and_greeks(
        values["price"], values["S"], values["K"], values["T"], values["r"], values["q"], np.array([True, True])
    )
    assert result.reason.tolist() == [bs.OK, bs.INVALID_INPUT]
    assert nan_row(result, 1) and not nan_row(result, 0)


def test_at_expiry_is_invalid_input() -> None:
    result = bs.implied_vol_and_greeks([1.0, 1.0], 600.0, [599.0, 601.0], 0.0, 0.045, 0.013, [True, False])
    assert result.reason.tolist() == [bs.INVALID_INPUT, bs.INVALID_INPUT]


def test_subnormal_price_does_not_converge() -> None:
    """A price below the smallest normal double (1e-320) cannot be repriced: reason 4, never a wrong number."""
    result = bs.implied_vol_and_greeks([1e-320, 1e-300], 600.0, 700.0, 1.0 / 365, 0.045, 0.013, True)
    assert result.reason.tolist() == [bs.NOT_CONVERGED, bs.OK]
    assert nan_row(result, 0)


def test_reason_codes_are_named_and_described() -> None:
    codes = [bs.OK, bs.BELOW_INTRINSIC, bs.ABOVE_UPPER_BOUND, bs.INVALID_INPUT, bs.NOT_CONVERGED]
    assert codes == [0, 1, 2, 3, 4]
    assert sorted(bs.REASONS) == codes
    assert all(isinstance(text, str) and text for text in bs.REASONS.values())


def test_mixed_input_types_scalars_broadcast_and_flag_types() -> None:
    S, K, T = 600.0, np.array([580.0, 600.0, 620.0, 640.0]), np.array([1, 7, 30, 90]) / 365
    call = np.array([True, False, True, False])
    value = bs.price(S, K, T, 0.045, 0.013, 0.25, call)
    reference = bs.implied_vol_and_greeks(value, S, K, T, 0.045, 0.013, call)
    assert (reference.reason == bs.OK).all()
    np.testing.assert_allclose(reference.iv, 0.25, rtol=1e-12)
    same = [
        bs.implied_vol_and_greeks(value.tolist(), 600, K.astype(np.float32).astype(float), T, 0.045, 0.013, call),
        bs.implied_vol_and_greeks(value, np.full(4, 600, dtype=np.int64), K, T, np.full(4, 0.045), [0.013] * 4, call),
        bs.implied_vol_and_greeks(value, S, K, T, 0.045, 0.013, np.where(call, 1, -1).astype(np.int8)),
        bs.implied_vol_and_greeks(value, S, K, T, 0.045, 0.013, np.where(call, 1, 0)),
        bs.implied_vol_and_greeks(value, S, K, T, 0.045, 0.013, np.where(call, "c", "p")),
    ]
    for result in same:
        for field in result._fields:
            np.testing.assert_array_equal(getattr(result, field), getattr(reference, field), err_msg=field)
    assert reference.reason.dtype == np.int8
    assert all(getattr(reference, f).dtype == np.float64 for f in reference._fields if f != "reason")


def test_scalars_give_zero_dimensional_results_and_grids_keep_their_shape() -> None:
    single = bs.implied_vol_and_greeks(10.0, 600.0, 600.0, 0.1, 0.045, 0.013, True)
    assert single.iv.shape == () and single.reason.shape == ()
    strikes = np.array([[590.0], [600.0], [610.0]])
    flags = np.array([True, False])
    grid = bs.implied_vol_and_greeks(np.array([[12.0, 9.0]]), 600.0, strikes, 0.1, 0.045, 0.013, flags)
    assert grid.iv.shape == (3, 2) and grid.reason.shape == (3, 2)
    assert (grid.reason == bs.OK).all()


def test_rate_and_dividend_arrays_per_row() -> None:
    rows = random_rows(200, seed=9)
    args = [rows[k] for k in ("S", "K", "T", "r", "q")]
    value = vollib_price(*args, rows["sigma"], rows["call"])
    result = bs.implied_vol_and_greeks(value, *args, rows["call"])
    theirs = vollib_iv(value, *args, rows["call"])
    vega = np.array([analytical.vega("c", *row) for row in zip(*args[:4], result.iv, args[4], strict=True)]) / 0.01
    ok = (result.reason == bs.OK) & (theirs > 0) & (EPS * (rows["S"] + rows["K"]) < IV_TOL * vega)
    assert ok.sum() > 50
    assert np.abs(result.iv[ok] - theirs[ok]).max() < IV_TOL


def test_bad_flags_raise() -> None:
    with pytest.raises(ValueError, match="'c' or 'p'"):
        bs.implied_vol_and_greeks(1.0, 600.0, 600.0, 0.1, 0.045, 0.013, np.array(["call"]))


def test_threaded_and_single_threaded_iv_kernels_agree() -> None:
    rows = random_rows(3 * bs.PARALLEL_MIN_ROWS, seed=13)
    args = [rows[k] for k in ("S", "K", "T", "r", "q")]
    value = bs.price(*args, rows["sigma"], rows["call"])
    whole = bs.implied_vol_and_greeks(value, *args, rows["call"])
    step = bs.PARALLEL_MIN_ROWS // 2
    parts = [
        bs.implied_vol_and_greeks(value[i:i + step], *(a[i:i + step] for a in args), rows["call"][i:i + step])
        for i in range(0, len(value), step)
    ]
    for field in whole._fields:
        np.testing.assert_array_equal(getattr(whole, field), np.concatenate([getattr(p, field) for p in parts]))


def test_price_matches_py_vollib_and_the_implied_volatility_kernel() -> None:
    rows = random_rows(2_000, seed=17)
    args = [rows[k] for k in ("S", "K", "T", "r", "q")]
    ours = bs.price(*args, rows["sigma"], rows["call"])
    np.testing.assert_allclose(ours, vollib_price(*args, rows["sigma"], rows["call"]), rtol=0, atol=1e-10)


# --- prices -------------------------------------------------------------------------------------------------


def random_price_rows(n: int, seed: int) -> dict[str, np.ndarray]:
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
    value = bs.price(49.0, 50.0, 20 / 52, 0.05, 0.0, 0.20, True)
    assert round(float(value), 4) == 2.4005


def test_matches_py_vollib_on_random_price_rows() -> None:
    rows = random_price_rows(3_000, seed=7)
    ours = bs.price(**rows)
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
    rows = random_price_rows(2_000, seed=11)
    calls = bs.price(**{**rows, "is_call": np.ones(2_000, dtype=bool)})
    puts = bs.price(**{**rows, "is_call": np.zeros(2_000, dtype=bool)})
    forward = rows["S"] * np.exp(-rows["q"] * rows["T_years"]) - rows["K"] * np.exp(-rows["r"] * rows["T_years"])
    np.testing.assert_allclose(calls - puts, forward, rtol=0, atol=1e-9)


def test_expiry_and_zero_volatility_give_intrinsic_values() -> None:
    spot, strike = np.array([90.0, 100.0, 110.0]), 100.0
    at_expiry_calls = bs.price(spot, strike, 0.0, 0.05, 0.01, 0.3, True)
    at_expiry_puts = bs.price(spot, strike, 0.0, 0.05, 0.01, 0.3, False)
    np.testing.assert_array_equal(at_expiry_calls, [0.0, 0.0, 10.0])
    np.testing.assert_array_equal(at_expiry_puts, [10.0, 0.0, 0.0])
    no_vol = bs.price(110.0, 100.0, 1.0, 0.05, 0.01, 0.0, True)
    assert float(no_vol) == pytest.approx(110.0 * np.exp(-0.01) - 100.0 * np.exp(-0.05), abs=1e-12)


def test_arguments_broadcast_and_is_call_is_per_row() -> None:
    strikes = np.array([[95.0], [100.0], [105.0]])
    is_call = np.array([True, False])
    values = bs.price(100.0, strikes, 0.25, 0.045, 0.013, 0.2, is_call)
    assert values.shape == (3, 2)
    assert (np.diff(values[:, 0]) < 0).all(), "calls get cheaper as the strike rises"
    assert (np.diff(values[:, 1]) > 0).all(), "puts get dearer as the strike rises"
    assert np.isfinite(values).all()


def test_value_rises_with_volatility_and_stays_within_bounds() -> None:
    sigmas = np.linspace(0.05, 1.0, 20)
    calls = bs.price(600.0, 610.0, 30 / 365, 0.045, 0.013, sigmas, True)
    assert (np.diff(calls) > 0).all()
    assert (calls < 600.0 * np.exp(-0.013 * 30 / 365)).all()


def test_flags_may_be_int8_plus_minus_one_or_strings() -> None:
    rows = random_price_rows(500, seed=3)
    by_bool = bs.price(**rows)
    by_int8 = bs.price(**{**rows, "is_call": np.where(rows["is_call"], 1, -1).astype(np.int8)})
    by_text = bs.price(**{**rows, "is_call": np.where(rows["is_call"], "c", "p")})
    np.testing.assert_array_equal(by_int8, by_bool)
    np.testing.assert_array_equal(by_text, by_bool)


def test_nan_inputs_give_nan_not_an_exception() -> None:
    values = bs.price(600.0, [600.0, np.nan, 600.0], [0.1, 0.1, np.nan], 0.045, 0.013, 0.2, True)
    assert np.isfinite(values[0])
    assert np.isnan(values[1:]).all()


def test_threaded_and_single_threaded_price_kernels_agree() -> None:
    rows = random_price_rows(3 * bs.PARALLEL_MIN_ROWS, seed=23)
    whole = bs.price(**rows)
    step = bs.PARALLEL_MIN_ROWS // 2
    parts = [bs.price(**{k: v[i : i + step] for k, v in rows.items()}) for i in range(0, len(whole), step)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))


# --- the vector pass ------------------------------------------------------------------------------------------


def scalar_solver(price, S, K, T, r, q, call) -> bs.GreeksResult:
    """Row by row through `_solve_row`, the one-row solver the vector pass hands its hard rows to (and the
    whole solver before it): the reference for reason codes."""
    rows = [bs._solve_row(*args, 1 if c else -1) for *args, c in zip(price, S, K, T, r, q, call, strict=True)]
    columns = list(zip(*rows, strict=True))
    return bs.GreeksResult(*(np.array(c) for c in columns[:6]), reason=np.array(columns[6], dtype=np.int8))


def extreme_rows() -> dict[str, np.ndarray]:
    """Deep in and out of the money, 1 minute to 5 years, sigma 0 to 3, and prices at, below and just above the
    intrinsic value: the rows where the vector pass hands over to the scalar solver, or must not."""
    strikes = [150.0, 300.0, 540.0, 594.0, 600.0, 606.0, 660.0, 1200.0, 2400.0]
    times = [MINUTE, 60 * MINUTE, 1.0 / 365, 1.0, 5.0]
    sigmas = [0.0, 1e-3, 0.01, 0.2, 3.0]
    grid = np.array([(k, t, v, c) for k in strikes for t in times for v in sigmas for c in (True, False)])
    n = len(grid)
    S, K, T, r, q = np.full(n, 600.0), grid[:, 0], grid[:, 1], np.full(n, 0.045), np.full(n, 0.013)
    call = grid[:, 3].astype(bool)
    model = bs.price(S, K, T, r, q, grid[:, 2], call)  # sigma 0: the discounted intrinsic value itself
    intrinsic = bs.price(S, K, T, r, q, 0.0, call)
    price = np.concatenate([model, intrinsic - 0.01, intrinsic + 1e-6, intrinsic + 1e-9 * S])
    return {
        "price": price, "S": np.tile(S, 4), "K": np.tile(K, 4), "T": np.tile(T, 4), "r": np.tile(r, 4),
        "q": np.tile(q, 4), "sigma": np.tile(grid[:, 2], 4), "call": np.tile(call, 4),
    }


@pytest.fixture(scope="module")
def extreme_case() -> dict[str, object]:
    rows = extreme_rows()
    args = [rows[k] for k in ("price", "S", "K", "T", "r", "q", "call")]
    return {**rows, "ours": bs.implied_vol_and_greeks(*args), "scalar": scalar_solver(*args),
            "theirs": vollib_iv(*args)}


def test_extreme_rows_keep_the_scalar_solvers_reason_codes(extreme_case: dict[str, object]) -> None:
    ours, scalar = extreme_case["ours"], extreme_case["scalar"]
    assert ours.reason.tolist() == scalar.reason.tolist()
    codes = set(np.unique(ours.reason))
    assert {bs.OK, bs.BELOW_INTRINSIC} <= codes  # the grid reaches both sides of the intrinsic value
    quarter = len(ours.reason) // 4
    zero_vol = extreme_case["sigma"][:quarter] == 0.0  # priced at the intrinsic value: no time value
    assert set(ours.reason[:quarter][zero_vol]) == {bs.BELOW_INTRINSIC, bs.INVALID_INPUT}  # 0 when out of the money
    below = ours.reason[quarter:2 * quarter]  # intrinsic - 0.01: negative when out of the money
    in_the_money = extreme_case["price"][quarter:2 * quarter] > 0
    assert (below[in_the_money] == bs.BELOW_INTRINSIC).all() and (below[~in_the_money] == bs.INVALID_INPUT).all()
    ok = ours.reason == bs.OK
    assert all(nan_row(ours, i) for i in np.flatnonzero(~ok))


def test_extreme_rows_match_the_scalar_solver_and_py_vollib(extreme_case: dict[str, object]) -> None:
    ours, scalar, theirs = extreme_case["ours"], extreme_case["scalar"], extreme_case["theirs"]
    S, K, T, r, q, call = (extreme_case[k] for k in ("S", "K", "T", "r", "q", "call"))
    ok = ours.reason == bs.OK
    assert ok.sum() > 300
    vega = np.array([analytical.vega("c", *row) for row in zip(S, K, T, r, np.where(ok, ours.iv, 0.2), q,
                                                                strict=True)]) / 0.01
    with np.errstate(divide="ignore"):
        iv_rounding = EPS * (S * np.exp(-q * T) + K * np.exp(-r * T)) / vega
    # the scalar solver (the solver before the vector pass) and ours agree to the price's rounding ...
    assert (np.abs(ours.iv - scalar.iv)[ok] <= np.maximum(IV_TOL, 4 * iv_rounding[ok])).all()
    # ... and py_vollib, where the price pins sigma to 1e-9
    well_posed = ok & (theirs > 0) & (iv_rounding < IV_TOL)
    assert well_posed.sum() > 150
    assert np.abs(ours.iv - theirs)[well_posed].max() <= IV_TOL
    # greeks at the same sigma, where d1 is pinned too: an input's rounding (eps) moves d1 by about eps/(sigma√T),
    # 5e-9 at sigma√T = 4e-8 (1 minute, sigma 3e-5), in the scalar solver and in py_vollib alike
    idx = np.flatnonzero(well_posed & (np.where(ok, ours.iv, 0.0) * np.sqrt(T) > 1e-5))
    assert len(idx) > 150
    reference = vollib_greeks(S[idx], K[idx], T[idx], r[idx], q[idx], ours.iv[idx], call[idx])
    for name, values in ours_greeks(ours).items():  # relative too: gamma reaches 60 at 1 minute to expiry
        np.testing.assert_allclose(values[idx], reference[name], rtol=GREEKS_TOL, atol=GREEKS_TOL, err_msg=name)


def test_vector_pass_solves_the_common_rows_itself() -> None:
    """SPY-like rows (up to 3 standard deviations either side, 1 minute to 60 days) stay on the vector path:
    handing them to the scalar solver would give the same answers, only slower."""
    rng = np.random.default_rng(31)
    n = 4 * bs.BLOCK_ROWS
    spot, years, sigma = 600.0, np.exp(rng.uniform(math.log(MINUTE), math.log(60 / 365), n)), rng.uniform(0.08, 0.6, n)
    strike = np.round(spot * np.exp(rng.uniform(-3.0, 3.0, n) * sigma * np.sqrt(years)))
    call = rng.random(n) < 0.5
    flag = np.where(call, 1, -1).astype(np.int8)
    value = bs.price(spot, strike, years, 0.045, 0.013, sigma, call)
    columns = [value, np.array([spot]), strike, years, np.array([0.045]), np.array([0.013]), flag]
    outputs = [np.empty(n) for _ in range(6)]
    reason = np.empty(n, dtype=np.int8)
    scratch = np.empty(bs._SCRATCH * bs.BLOCK_ROWS)
    for start in range(0, n, bs.BLOCK_ROWS):
        bs._gather_block(start, bs.BLOCK_ROWS, *columns, scratch)
        bs._initial_guess_block(bs.BLOCK_ROWS, scratch)
        bs._lowest_segment_block(bs.BLOCK_ROWS, scratch)
        for _ in range(bs._VECTOR_STEPS):
            bs._householder_block(bs.BLOCK_ROWS, scratch)
        bs._greeks_block(bs.BLOCK_ROWS, scratch)
        bs._scatter_block(start, bs.BLOCK_ROWS, scratch, *outputs, reason)
    assert (reason == bs.OK).mean() > 0.97  # the rest: prices within rounding of a bound or the tolerance
    whole = bs.implied_vol_and_greeks(value, spot, strike, years, 0.045, 0.013, call)
    np.testing.assert_array_equal(outputs[0][reason == bs.OK], whole.iv[reason == bs.OK])


def test_blocks_with_handed_over_rows_give_each_row_its_own_answer() -> None:
    """Partial blocks, and invalid or bound-breaking rows among valid ones, do not disturb their neighbours."""
    rows = random_rows(2 * bs.BLOCK_ROWS + 37, seed=41)
    args = [rows[k] for k in ("S", "K", "T", "r", "q")]
    value = bs.price(*args, rows["sigma"], rows["call"])
    value[3::11] = 1e6  # above any bound
    value[5::13] = 0.0
    value[::7] = np.nan
    whole = bs.implied_vol_and_greeks(value, *args, rows["call"])
    one_by_one = [bs.implied_vol_and_greeks(value[i], *(a[i] for a in args), rows["call"][i])
                  for i in range(len(value))]
    for field in whole._fields:
        np.testing.assert_array_equal(getattr(whole, field), [getattr(r, field) for r in one_by_one], err_msg=field)
    assert whole.reason[::7].tolist() == [bs.INVALID_INPUT] * len(whole.reason[::7])
    assert set(whole.reason[3::11]) <= {bs.ABOVE_UPPER_BOUND, bs.INVALID_INPUT}


# --- vector_math: the vectorizable exp, log and normal CDF against libm ----------------------------------


@pytest.fixture(scope="module")
def vector_math_loops():
    from numba import njit

    from spy_pipeline.domain import vector_math as vm

    @njit
    def apply(kind, values):
        out = np.empty_like(values)
        for i in range(values.size):
            v = values[i]
            out[i] = vm.exp(v) if kind == 0 else (vm.log(v) if kind == 1 else vm.norm_cdf(v))
        return out

    return apply


def test_vector_exp_matches_libm(vector_math_loops) -> None:
    x = np.concatenate([np.linspace(-708.0, 709.0, 200_001), np.random.default_rng(1).normal(0, 2, 100_000)])
    ours, libm = vector_math_loops(0, x), np.exp(x)
    assert (np.abs(ours - libm) <= 2 * EPS * libm).all()
    edges = vector_math_loops(0, np.array([-800.0, -np.inf, 800.0, np.inf, np.nan, 0.0]))
    assert edges[:2].tolist() == [0.0, 0.0] and edges[2:4].tolist() == [np.inf, np.inf]
    assert np.isnan(edges[4]) and edges[5] == 1.0


def test_vector_log_matches_libm(vector_math_loops) -> None:
    x = np.concatenate([np.exp(np.random.default_rng(2).uniform(-700, 700, 200_000)),
                        1 + np.linspace(-0.3, 0.3, 10_001), [1.0, 2.0, 0.5, 2.2250738585072014e-308, 1.797e308]])
    ours, libm = vector_math_loops(1, x), np.log(x)
    assert (np.abs(ours - libm) <= 2 * EPS * np.maximum(np.abs(libm), 1e-300)).all()
    assert vector_math_loops(1, np.array([1.0]))[0] == 0.0


def test_vector_norm_cdf_keeps_relative_accuracy_in_the_tail(vector_math_loops) -> None:
    z = np.concatenate([np.linspace(-37.5, 9.0, 400_001), np.random.default_rng(3).normal(0, 3, 100_000)])
    ours = vector_math_loops(2, z)
    libm = np.array([0.5 * math.erfc(-v * 0.7071067811865476) for v in z])  # the same rounding of z/√2
    normal = libm > 1e-300  # below, results are subnormal and keep fewer bits, in libm too
    assert (np.abs(ours - libm)[normal] <= 8 * EPS * libm[normal]).all()
    assert (ours[~normal] <= 1e-300).all()
    assert vector_math_loops(2, np.array([0.0]))[0] == 0.5


def test_every_call_runs_the_kernels_compiled_once() -> None:
    """`make` compiles the kernels once (`compile_kernels`); read-only inputs (polars' zero-copy arrays), bools,
    'c'/'p' strings, lists and scalars all reach that one compiled signature instead of compiling another."""
    bs.compile_kernels()
    n = bs.PARALLEL_MIN_ROWS
    read_only = np.full(n, 2.4)
    read_only.flags.writeable = False
    bs.implied_vol_and_greeks(read_only, 49.0, 50.0, 0.38, 0.05, 0.0, np.where(np.arange(n) % 2, "c", "p"))
    bs.implied_vol_and_greeks([2.4], [49.0], 50, 0.38, 0, 0, [1])
    bs.price(read_only, 50.0, 0.38, 0.05, 0.0, read_only[:1] / 10, True)
    for kernel in (bs._greeks_range, bs._greeks_threaded, bs._price_range, bs._price_threaded):
        assert len(kernel.signatures) == 1, kernel.signatures
