"""Black-Scholes-Merton for European options on a dividend-paying underlying: prices, implied volatility, greeks.

Conventions follow vollib's `black_scholes_merton`: time in years, continuously compounded rate `r` and
dividend yield `q`, volatility as a decimal (0.20 for 20%); theta per calendar day (divided by 365), vega and rho per
point (times 0.01). No Dagster, no I/O.

One formula serves everything: `_black` values an option from the discounted forward `S·e^{-qT}`, the
discounted strike `K·e^{-rT}` and the total standard deviation `s = sigma√T`. `price()`, the implied-volatility
iterations (on the normalised price, forward and strike divided by their geometric mean) and the greeks all
call it. The loops are numba kernels (`cache=True`: a new process loads them from disk instead of compiling),
threaded over rows for large inputs.

Implied volatility and greeks run in two layers. `_solve_row` solves one option with libm's `erfc`, `exp` and
`log`, every case included. In front of it, a vector pass takes blocks of BLOCK_ROWS rows through the same steps
as loops over the block, written so that LLVM runs four rows per AVX2 instruction (`vector_math`: exp, log and
the normal CDF without calls or branches). It keeps a row only on the common road (valid input clear of the
bounds, the lowest or middle segments of the initial guess, Householder steps inside the bracket, converged
within _VECTOR_STEPS, repriced with room to spare against the tolerance); any other row is solved by
`_solve_row`, so the reason codes are the scalar solver's.

Implied volatility follows the structure of Peter Jäckel's "Let's Be Rational" (Wilmott, 2015) — the
algorithm behind vollib — re-derived around `_black`: the out-of-the-money price (put-call parity removes the
intrinsic value) is normalised, a starting value comes from rational cubic interpolation (Delbourgo and
Gregory, 1985) of transformed prices between three anchor points, and third-order Householder steps on a
branch-dependent objective (1/ln b low, b in the middle, ln(b_max - b) high) converge, typically in two steps.
A bracket is kept throughout; a step that leaves it, or an unusable one (underflow), bisects instead, and
after `_MAX_HOUSEHOLDER` steps only bisection is used. The solve stops once a Householder step is below
`_STEP_TOL` = 1e-6 relative: convergence is cubic, so the error left is of order (1e-6)^3, far below the
rounding of the price itself (iterating on until steps of 1e-15 changes no result beyond rounding; measured
on 0.8M rows, SPY-like and extreme). The result is then repriced: a price off by more than `_REPRICE_TOL`
relative, and by more than that fraction of sigma·vega (what a relative error of `_REPRICE_TOL` in sigma would
move it), or a greek that overflows, counts as not converged.

    LetsBeRational: Copyright © 2013-2014 Peter Jäckel. Permission to use, copy, modify, and distribute this
    software is freely granted, provided that this notice is preserved. The software is provided "as is"
    without warranty of any kind.

Accuracy (spy_pipeline_tests/test_black_scholes.py, py_vollib as the oracle): implied volatility within 1e-9 of
py_vollib wherever the price pins it down that well, greeks within 1e-10 at the same volatility. Rows whose
time value is lost in the rounding of the price (a 1-day deep in-the-money option) are ill-conditioned in every
solver: a price, and S·e^{-qT} - K·e^{-rT}, carry an error of ≈ eps·(S·e^{-qT} + K·e^{-rT}), which moves the
implied volatility by that over vega; there ours and py_vollib's differ by up to that much (measured: ≤ 1x),
and both reprice the input to that rounding.

Speed (spy_pipeline_tests/bench/greeks.py, 1M SPY-like rows, the solver before the vector pass timed beside):
the vector pass is ≈ 1.7x the one-row-at-a-time solver by CPU time (2.5M rows/s a thread on a 2 GHz Zen 1
core, where AVX2 runs at half width). The normal CDF is most of it: about nine per row. Compiling from an
empty cache takes ≈ 30 s (the vector loops are large), so `make` compiles the kernels once into numba's
on-disk cache (`compile_kernels`, after installing) and every process after loads them (≈ 0.7 s). Every
call uses the one signature compiled there: inputs are made float64, contiguous and writable (a read-only
array, such as polars hands out, is another type to numba and would compile again).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import njit, prange, set_parallel_chunksize
from numpy.typing import ArrayLike

from spy_pipeline.domain import vector_math as vm

__all__ = [
    "ABOVE_UPPER_BOUND",
    "BELOW_INTRINSIC",
    "INVALID_INPUT",
    "NOT_CONVERGED",
    "OK",
    "REASONS",
    "GreeksResult",
    "compile_kernels",
    "implied_vol_and_greeks",
    "price",
]

# Why a row has no implied volatility (GreeksResult.reason); iv and greeks are NaN for every code but OK.
OK = 0
BELOW_INTRINSIC = 1
ABOVE_UPPER_BOUND = 2
INVALID_INPUT = 3
NOT_CONVERGED = 4
REASONS: dict[int, str] = {
    OK: "ok",
    BELOW_INTRINSIC: "price at or below the discounted intrinsic value max(±(S·e^-qT - K·e^-rT), 0)",
    ABOVE_UPPER_BOUND: "price at or above the no-arbitrage bound (S·e^-qT for calls, K·e^-rT for puts)",
    INVALID_INPUT: "invalid input: price, S, K or T not positive and finite, or r or q not finite",
    NOT_CONVERGED: "did not converge to a finite volatility and greeks that reprice the option",
}


class GreeksResult(NamedTuple):
    """Per-row implied volatility and greeks (vollib's units), all NaN where `reason` is not OK."""

    iv: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    theta_per_day: np.ndarray  # per calendar day (divided by 365)
    vega_per_point: np.ndarray  # per volatility point (times 0.01)
    rho_per_point: np.ndarray  # per rate point (times 0.01)
    reason: np.ndarray  # int8 codes, see REASONS


# Rows below which the single-threaded kernel is used: starting the threads costs more than they save.
PARALLEL_MIN_ROWS = 4096
CHUNK_ROWS = 4096  # rows per task handed to a thread

_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_PI_OVER_2 = 1.2533141373155003
_SQRT3 = 1.7320508075688772
_TWO_PI_OVER_SQRT27 = 1.2091995761561452
_DBL_EPS = 2.220446049250313e-16
_DBL_MIN = 2.2250738585072014e-308
_DBL_MAX = 1.7976931348623157e308
_SQRT_DBL_MAX = 1.3407807929942596e154
_R_MIN = -(1.0 - 1.4901161193847656e-08)  # rational cubic control parameter bounds: > -1 ...
_R_MAX = 2.0 / (_DBL_EPS * _DBL_EPS)  # ... and "linear interpolation"
_STEP_TOL = 1e-6  # stop after a Householder step below this, relative to s = sigma√T: what is left is ~1e-18
_REPRICE_TOL = 1e-9  # relative error in price, or in sigma by the price error over vega, that counts as converged
_MAX_HOUSEHOLDER = 10  # then bisection only
_MAX_ITER = 100
_SIXTH = 1.0 / 6.0

_jit = njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
_inline = njit(cache=True, nogil=True, fastmath=False, error_model="numpy", forceinline=True)  # for vector loops


@_jit
def _norm_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z * _INV_SQRT2)


@_jit
def _norm_pdf(z: float) -> float:
    return _INV_SQRT_2PI * math.exp(-0.5 * z * z)


@_jit
def _black(x: float, s: float, theta: float, fwd: float, strike: float) -> tuple[float, float, float, float]:
    """The BSM value theta·(fwd·N(theta·d1) - strike·N(theta·d2)), with d1, N(theta·d1) and N(theta·d2).

    fwd and strike are the discounted forward S·e^{-qT} and strike K·e^{-rT} (or both divided by their
    geometric mean, e^{±x/2}), x = ln(fwd/strike), s = sigma√T > 0, theta = +1 for calls and -1 for puts.
    """
    d1 = x / s + 0.5 * s
    n1 = _norm_cdf(theta * d1)
    n2 = _norm_cdf(theta * (d1 - s))
    return theta * (fwd * n1 - strike * n2), d1, n1, n2


@_jit
def _inverse_norm_cdf(p: float) -> float:
    """Acklam's rational approximation (relative error < 1.2e-9): good enough for starting values."""
    if p < 0.02425 or p > 0.97575:
        t = math.sqrt(-2.0 * math.log(p if p < 0.5 else 1.0 - p))
        z = (
            ((((-7.784894002430293e-03 * t - 3.223964580411365e-01) * t - 2.400758277161838e00) * t
              - 2.549732539343734e00) * t + 4.374664141464968e00) * t + 2.938163982698783e00
        ) / ((((7.784695709041462e-03 * t + 3.224671290700398e-01) * t + 2.445134137142996e00) * t
              + 3.754408661907416e00) * t + 1.0)
        return z if p < 0.5 else -z
    u = p - 0.5
    w = u * u
    return (
        (((((-3.969683028665376e01 * w + 2.209460984245205e02) * w - 2.759285104469687e02) * w
           + 1.383577518672690e02) * w - 3.066479806614716e01) * w + 2.506628277459239e00) * u
    ) / (((((-5.447609879822406e01 * w + 1.615858368580409e02) * w - 1.556989798598866e02) * w
           + 6.680131188771972e01) * w - 1.328068155288572e01) * w + 1.0)


@_inline
def _rational_cubic(t_x: float, x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float,
                    r: float) -> float:
    """Delbourgo-Gregory rational cubic through (x_l, y_l), (x_r, y_r) with slopes d_l, d_r."""
    h = x_r - x_l
    if not abs(h) > 0.0:
        return 0.5 * (y_l + y_r)
    t = (t_x - x_l) / h
    if r >= _R_MAX:
        return y_r * t + y_l * (1.0 - t)
    omt = 1.0 - t
    t2 = t * t
    omt2 = omt * omt
    numerator = y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2 + y_l * omt2 * omt
    return numerator / (1.0 + (r - 3.0) * t * omt)


@_inline
def _rational_cubic_min_r(d_l: float, d_r: float, slope: float, prefer_shape: bool) -> float:
    """Smallest control parameter that keeps the interpolant monotonic and convex/concave like its data."""
    monotonic = d_l * slope >= 0.0 and d_r * slope >= 0.0
    convex = d_l <= slope <= d_r
    concave = d_l >= slope >= d_r
    if not monotonic and not convex and not concave:
        return _R_MIN
    r1 = -_DBL_MAX
    r2 = -_DBL_MAX
    if monotonic:
        if abs(slope) >= _DBL_MIN:
            r1 = (d_r + d_l) / slope
        elif prefer_shape:
            r1 = _R_MAX
    if convex or concave:
        if abs(slope - d_l) >= _DBL_MIN and abs(d_r - slope) >= _DBL_MIN:
            r2 = max(abs((d_r - d_l) / (d_r - slope)), abs((d_r - d_l) / (slope - d_l)))
        elif prefer_shape:
            r2 = _R_MAX
    elif monotonic and prefer_shape:
        r2 = _R_MAX
    return max(_R_MIN, max(r1, r2))


@_inline
def _rational_cubic_r(x_l: float, x_r: float, y_l: float, y_r: float, d_l: float, d_r: float,
                      second_derivative: float, at_right: bool, prefer_shape: bool) -> float:
    """Control parameter that fits a second derivative at one end, no less than the shape-preserving one."""
    h = x_r - x_l
    slope = (y_r - y_l) / h
    numerator = 0.5 * h * second_derivative + (d_r - d_l)
    denominator = d_r - slope if at_right else slope - d_l
    if abs(numerator) < _DBL_MIN:
        r = 0.0
    elif abs(denominator) < _DBL_MIN:
        r = _R_MAX if numerator > 0.0 else _R_MIN
    else:
        r = numerator / denominator
    return max(r, _rational_cubic_min_r(d_l, d_r, slope, prefer_shape))


@_inline
def _lowest_segment_guess(ax, beta, s_l, b_l, norm_cdf, norm_pdf, exp, cube_root, inverse_norm_cdf):
    """Starting s on the lowest segment (beta < b_l = b(s_l)): interpolate the map
    f(s) = 2π|x|/√27·N(-|x|/(√3·s))³ ~ b(s) as s → 0, invert it. The normal CDF, its density, exp, the cube root
    and the inverse CDF are the caller's: libm's in the one-row solver, vector_math's in the vector pass.
    Returns s and the cube root's argument (the vector pass checks that it is a positive normal number)."""
    z = ax / (_SQRT3 * s_l)
    y = z * z
    s2 = s_l * s_l
    cdf = norm_cdf(-z)
    cdf2 = cdf * cdf
    grow = exp(y + 0.125 * s2)
    fpp = (math.pi / 6.0) * y / (s2 * s_l) * cdf * (
        8.0 * _SQRT3 * s_l * ax + (3.0 * s2 * (s2 - 8.0) - 8.0 * ax * ax) * cdf / norm_pdf(z)
    ) * (grow * grow)
    fp = 2.0 * math.pi * y * cdf2 * grow
    f_l = _TWO_PI_OVER_SQRT27 * ax * cdf2 * cdf
    r = _rational_cubic_r(0.0, b_l, 0.0, f_l, 1.0, fp, fpp, True, True)
    f = _rational_cubic(beta, 0.0, b_l, 0.0, f_l, 1.0, fp, r)
    if not f > 0.0:
        t = beta / b_l
        f = (f_l * t + b_l * (1.0 - t)) * t
    cube = f / (_TWO_PI_OVER_SQRT27 * ax)
    return -ax / (_SQRT3 * inverse_norm_cdf(cube_root(cube))), cube


@_inline
def _cube_root(v: float) -> float:
    return v ** (1.0 / 3.0)


@_inline
def _exp(v: float) -> float:
    return math.exp(v)


@_jit
def _black_and_vega(x: float, s: float, eh: float, emh: float) -> tuple[float, float]:
    """Normalised out-of-the-money call (x <= 0) and its derivative in s."""
    b, d1, _, _ = _black(x, s, 1.0, eh, emh)
    return b, eh * _norm_pdf(d1)


@_jit
def _normalised_iv(beta: float, x: float, eh: float) -> float:
    """s = sigma√T with _black(x, s, +1, eh, 1/eh) = beta, for x <= 0, eh = e^{x/2} and 0 < beta < eh; NaN if none."""
    emh = 1.0 / eh
    b_max = eh
    ax = -x
    s_c = math.sqrt(2.0 * ax)  # inflection point of b(s)
    if ax > 0.0:
        b_c, v_c = _black_and_vega(x, s_c, eh, emh)
    else:
        b_c, v_c = 0.0, _INV_SQRT_2PI
    s_left = _DBL_MIN
    s_right = _DBL_MAX
    branch = 1  # objective: 0 → 1/ln(b) - 1/ln(beta); 1 → b - beta; 2 → ln((b_max - beta)/(b_max - b))
    if beta < b_c:
        s_l = s_c - b_c / v_c
        b_l, v_l = _black_and_vega(x, s_l, eh, emh)
        if beta < b_l:
            s, _ = _lowest_segment_guess(ax, beta, s_l, b_l, _norm_cdf, _norm_pdf, _exp, _cube_root,
                                         _inverse_norm_cdf)
            s_right = s_l
            branch = 0
        else:
            r = _rational_cubic_r(b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, 0.0, True, False)
            s = _rational_cubic(beta, b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, r)
            s_left = s_l
            s_right = s_c
    else:
        s_h = s_c + (b_max - b_c) / v_c if v_c > _DBL_MIN else s_c
        b_h, v_h = _black_and_vega(x, s_h, eh, emh)
        if beta <= b_h:
            r = _rational_cubic_r(b_c, b_h, s_c, s_h, 1.0 / v_c, 1.0 / v_h, 0.0, False, False)
            s = _rational_cubic(beta, b_c, b_h, s_c, s_h, 1.0 / v_c, 1.0 / v_h, r)
            s_left = s_c
            s_right = s_h
        else:
            # Highest segment: interpolate the map f(s) = N(-s/2) ~ (b_max - b(s))/2 as s → ∞, invert it.
            f_h = _norm_cdf(-0.5 * s_h)
            w = (x / s_h) ** 2
            fp = -0.5 * math.exp(0.5 * w)
            fpp = _SQRT_PI_OVER_2 * math.exp(w + 0.125 * s_h * s_h) * w / s_h
            f = -1.0
            if abs(fpp) < _SQRT_DBL_MAX:
                r = _rational_cubic_r(b_h, b_max, f_h, 0.0, fp, -0.5, fpp, False, True)
                f = _rational_cubic(beta, b_h, b_max, f_h, 0.0, fp, -0.5, r)
            if not f > 0.0:
                span = b_max - b_h
                t = (beta - b_h) / span
                f = (f_h * (1.0 - t) + 0.5 * span * t) * (1.0 - t)
            s = -2.0 * _inverse_norm_cdf(f)
            s_left = s_h
            branch = 2 if beta > 0.5 * b_max else 1
    ln_beta = math.log(beta)
    inv_ln_beta = 1.0 / ln_beta
    for iteration in range(_MAX_ITER):
        if iteration >= _MAX_HOUSEHOLDER or not (s_left < s < s_right):
            if s_right - s_left <= 4.0 * _DBL_EPS * s_right:
                return 0.5 * (s_left + s_right)
            s = math.sqrt(s_left * s_right) if s_right > 4.0 * s_left else 0.5 * (s_left + s_right)
        b, bp = _black_and_vega(x, s, eh, emh)
        if b > beta:
            s_right = s
        elif b < beta:
            s_left = s
        else:
            return s
        inv_s = 1.0 / s
        hs = x * inv_s
        b_halley = hs * hs * inv_s - 0.25 * s  # b''/b'
        b_hh3 = b_halley * b_halley - 3.0 * (hs * inv_s) ** 2 - 0.25  # b'''/b'
        ds = math.nan
        if branch == 0:
            if b > 0.0 and bp > 0.0:
                ln_b = math.log(b)
                inv_ln_b = 1.0 / ln_b
                bpob = bp / b
                newton = (ln_beta - ln_b) * ln_b * inv_ln_beta / bpob
                halley = b_halley - bpob * (1.0 + 2.0 * inv_ln_b)
                hh3 = (b_hh3 + 2.0 * bpob * bpob * (1.0 + 3.0 * inv_ln_b * (1.0 + inv_ln_b))
                       - 3.0 * b_halley * bpob * (1.0 + 2.0 * inv_ln_b))
                ds = newton * (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton * _SIXTH))
        elif branch == 2:
            if b < b_max and bp > _DBL_MIN:
                gap = b_max - b
                gp = bp / gap
                newton = -math.log((b_max - beta) / gap) / gp
                halley = b_halley + gp
                hh3 = b_hh3 + gp * (2.0 * gp + 3.0 * b_halley)
                ds = newton * (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton * _SIXTH))
        elif bp > 0.0:
            newton = (beta - b) / bp
            ds = newton * (1.0 + 0.5 * b_halley * newton) / (1.0 + newton * (b_halley + b_hh3 * newton * _SIXTH))
        if ds < -0.5 * s:  # at most halve s in one step (NaN, an unusable step, stays NaN)
            ds = -0.5 * s
        if abs(ds) <= _STEP_TOL * s:
            return s + ds
        s = s + ds  # NaN or outside the bracket: the next round bisects
    return math.nan


@_jit
def _solve_row(price: float, S: float, K: float, T: float, r: float, q: float, flag: int) -> tuple[
        float, float, float, float, float, float, int]:
    """(iv, delta, gamma, theta per day, vega per point, rho per point, reason) of one option."""
    nan = math.nan
    if not (0.0 < price < math.inf and 0.0 < S < math.inf and 0.0 < K < math.inf and 0.0 < T < math.inf
            and abs(r) < math.inf and abs(q) < math.inf):
        return nan, nan, nan, nan, nan, nan, INVALID_INPUT
    theta = 1.0 if flag > 0 else -1.0
    dq = math.exp(-q * T)
    fwd = S * dq
    strike = K * math.exp(-r * T)
    if price >= (fwd if theta > 0.0 else strike):
        return nan, nan, nan, nan, nan, nan, ABOVE_UPPER_BOUND
    x = math.log(fwd / strike)
    # Put-call parity: an in-the-money option is worth its intrinsic value plus the out-of-the-money one.
    time_value = price - theta * (fwd - strike) if theta * x > 0.0 else price
    if not time_value > 0.0:
        return nan, nan, nan, nan, nan, nan, BELOW_INTRINSIC
    x_otm = -abs(x)
    beta = time_value / math.sqrt(fwd * strike)
    b_max = math.exp(0.5 * x_otm)
    if beta >= b_max:
        return nan, nan, nan, nan, nan, nan, ABOVE_UPPER_BOUND
    sqrt_t = math.sqrt(T)
    sigma = _normalised_iv(beta, x_otm, b_max) / sqrt_t
    if not (0.0 < sigma < math.inf):
        return nan, nan, nan, nan, nan, nan, NOT_CONVERGED
    s = sigma * sqrt_t
    value, d1, n1, n2 = _black(x, s, theta, fwd, strike)
    fwd_pdf = fwd * _norm_pdf(d1)  # d value / d s
    # Far out of the money the formula itself is only good to ~1e-9 relative: accept that if it moves sigma less.
    if not abs(value - price) <= _REPRICE_TOL * max(price, fwd_pdf * s):
        return nan, nan, nan, nan, nan, nan, NOT_CONVERGED
    theta_per_year = -fwd_pdf * sigma / (2.0 * sqrt_t) - theta * r * strike * n2 + theta * q * fwd * n1
    delta = theta * dq * n1
    gamma = fwd_pdf / (S * S * s)
    theta_per_day = theta_per_year / 365.0
    vega = fwd_pdf * sqrt_t * 0.01
    rho = theta * T * strike * n2 * 0.01
    if not abs(gamma + theta_per_day + rho) < math.inf:  # overflow on absurd inputs (T ~ 1e-300, K ~ 1e308)
        return nan, nan, nan, nan, nan, nan, NOT_CONVERGED
    return sigma, delta, gamma, theta_per_day, vega, rho, OK


@_jit
def _step(column: np.ndarray) -> int:
    """Index stride of a column: 1 for a full column, 0 for a broadcast single value."""
    return 1 if column.size > 1 else 0


# The vector pass: the rows of a block go through the same steps as `_solve_row`, one loop over the block per
# step, each loop straight-line arithmetic (vector_math, selects instead of branches) that LLVM runs 4 rows at a
# time. It takes the common road only: valid input, the lowest or the two middle segments of the initial guess,
# Householder steps that stay in the bracket and converge within _VECTOR_STEPS, a result that reprices. Every
# other row is left PENDING and solved by `_solve_row` itself, so reason codes and the rare paths are the scalar
# ones.
BLOCK_ROWS = 128  # rows per vector pass: its scratch columns (below) stay in the L1 cache
_VECTOR_STEPS = 4  # Householder steps tried in the vector pass (typically 2 suffice)
_PENDING = -1
# The vector pass rounds differently from the scalar solver (its own exp, log and CDF, each within a few ulp):
# a price or an intrinsic value within this many eps·(S·e^{-qT} + K·e^{-rT}) of a bound, or a repricing error
# within this many eps of the terms the value is made of (S·e^{-qT}·N(d1), K·e^{-rT}·N(d2), the price, and vega
# times sigma) of the tolerance, goes to the scalar solver, so that rounding cannot decide a reason code
# differently.
_ROUNDING_MARGIN = 32.0 * _DBL_EPS
_ACTIVE, _DONE, _LEFT = 1.0, 2.0, 0.0  # a row's state in the vector pass; _LEFT: for the scalar solver
_SCRATCH = 37  # columns of scratch: the inputs, what the steps hand on, the results
(_P, _S, _K, _T, _R, _Q, _THETA, _FWD, _STRIKE, _DQ, _X, _EH, _BETA, _LN_BETA, _LOWEST, _SIGMA_S, _LEFT_S, _RIGHT_S,
 _STATE, _IV, _DELTA, _GAMMA, _THETA_DAY, _VEGA, _RHO, _OK, _B_LOW, _S_LAST, _N1_LAST, _N2_LAST, _VEGA_LAST,
 _INV_EH, _INV_LN_BETA, _LOW_AX, _LOW_BETA, _LOW_S, _LOW_B,  # the last four: lowest-segment rows, packed
 ) = range(0, _SCRATCH * BLOCK_ROWS, BLOCK_ROWS)
# (offsets into one flat array: their constant distances let LLVM vectorize without run-time overlap checks)


@_inline
def _black_vector(x: float, s: float, theta: float, fwd: float, strike: float) -> tuple[float, float, float, float]:
    """`_black` with vector_math's normal CDF."""
    d1 = x / s + 0.5 * s
    n1 = vm.norm_cdf(theta * d1)
    n2 = vm.norm_cdf(theta * (d1 - s))
    return theta * (fwd * n1 - strike * n2), d1, n1, n2


@_inline
def _black_and_vega_vector(x: float, s: float, eh: float) -> tuple[float, float]:
    b, d1, _, _ = _black_vector(x, s, 1.0, eh, 1.0 / eh)
    return b, eh * vm.norm_pdf(d1)


@_inline
def _cube_root_vector(v: float) -> float:
    """v^(1/3) for a positive normal v, as vector_math's exp and log."""
    return vm.exp(vm.log(v) * (1.0 / 3.0))


@_inline
def _inverse_norm_cdf_vector(p: float) -> float:
    """`_inverse_norm_cdf` with both of its branches computed and one selected; p in [_DBL_MIN, 1 - _DBL_EPS]."""
    t = math.sqrt(-2.0 * vm.log(p if p < 0.5 else 1.0 - p))
    tail = (
        ((((-7.784894002430293e-03 * t - 3.223964580411365e-01) * t - 2.400758277161838e00) * t
          - 2.549732539343734e00) * t + 4.374664141464968e00) * t + 2.938163982698783e00
    ) / ((((7.784695709041462e-03 * t + 3.224671290700398e-01) * t + 2.445134137142996e00) * t
          + 3.754408661907416e00) * t + 1.0)
    u = p - 0.5
    w = u * u
    central = (
        (((((-3.969683028665376e01 * w + 2.209460984245205e02) * w - 2.759285104469687e02) * w
           + 1.383577518672690e02) * w - 3.066479806614716e01) * w + 2.506628277459239e00) * u
    ) / (((((-5.447609879822406e01 * w + 1.615858368580409e02) * w - 1.556989798598866e02) * w
           + 6.680131188771972e01) * w - 1.328068155288572e01) * w + 1.0)
    if p < 0.02425 or p > 0.97575:
        return tail if p < 0.5 else -tail
    return central


@_jit
def _gather_column(column, start, m, scratch, offset):
    if column.size > 1:
        scratch[offset:offset + m] = column[start:start + m]
    else:
        scratch[offset:offset + m] = column[0]


@_jit
def _gather_block(start, m, price, S, K, T, r, q, flag, scratch):
    """Copy rows start..start+m into contiguous scratch rows (broadcast inputs would defeat vectorizing)."""
    _gather_column(price, start, m, scratch, _P)
    _gather_column(S, start, m, scratch, _S)
    _gather_column(K, start, m, scratch, _K)
    _gather_column(T, start, m, scratch, _T)
    _gather_column(r, start, m, scratch, _R)
    _gather_column(q, start, m, scratch, _Q)
    iflag = _step(flag)
    for j in range(m):
        scratch[_THETA + j] = 1.0 if flag[(start + j) * iflag] > 0 else -1.0


@_jit
def _initial_guess_block(m, scratch):
    """`_solve_row`'s checks, `_normalised_iv`'s bracket and, on its middle segments, its starting value."""
    inf = math.inf
    for j in range(m):
        p, spot, k, t = scratch[_P + j], scratch[_S + j], scratch[_K + j], scratch[_T + j]
        rate, dividend, theta = scratch[_R + j], scratch[_Q + j], scratch[_THETA + j]
        valid = ((p > 0.0) & (p < inf) & (spot > 0.0) & (spot < inf) & (k > 0.0) & (k < inf) & (t > 0.0)
                 & (t < inf) & (abs(rate) < inf) & (abs(dividend) < inf))
        dq = vm.exp(-dividend * t)
        fwd = spot * dq
        strike = k * vm.exp(-rate * t)
        ratio = fwd / strike
        x = vm.log(ratio)
        time_value = p - theta * (fwd - strike) if theta * x > 0.0 else p
        ax = abs(x)
        eh = vm.exp(-0.5 * ax)  # b_max
        beta = time_value / math.sqrt(fwd * strike)
        noise = _ROUNDING_MARGIN * (fwd + strike)  # near a bound, the scalar solver's rounding decides
        valid &= ((ratio > _DBL_MIN) & (ratio < inf) & (p < (fwd if theta > 0.0 else strike) - noise)
                  & (time_value > noise) & (beta > _DBL_MIN) & (beta < eh))
        s_c = math.sqrt(2.0 * ax)
        # _black_and_vega at the inflection point s_c, where d1 = 0 (also right for x = 0: b = 0)
        b_c = 0.5 * eh - vm.norm_cdf(-s_c) / eh
        v_c = _INV_SQRT_2PI * eh
        low = beta < b_c
        s_high = s_c + (eh - b_c) / v_c if v_c > _DBL_MIN else s_c
        s_o = s_c - b_c / v_c if low else s_high  # the other anchor: s_l, or s_h
        b_o, v_o = _black_and_vega_vector(-ax, s_o, eh)
        lowest = low & (beta < b_o)
        valid &= low | (beta <= b_o)  # else the highest segment
        # the middle segments: interpolate s(b) between the anchors
        x_l, x_r = (b_o, b_c) if low else (b_c, b_o)
        s_l, s_r = (s_o, s_c) if low else (s_c, s_o)
        d_l, d_r = (1.0 / v_o, 1.0 / v_c) if low else (1.0 / v_c, 1.0 / v_o)
        control = _rational_cubic_r(x_l, x_r, s_l, s_r, d_l, d_r, 0.0, low, False)
        scratch[_SIGMA_S + j] = _rational_cubic(beta, x_l, x_r, s_l, s_r, d_l, d_r, control)
        scratch[_LEFT_S + j] = _DBL_MIN if lowest else s_l
        scratch[_RIGHT_S + j] = s_o if lowest else s_r
        scratch[_B_LOW + j] = b_o
        scratch[_LOWEST + j] = 1.0 if lowest else 0.0
        scratch[_FWD + j] = fwd
        scratch[_STRIKE + j] = strike
        scratch[_DQ + j] = dq
        scratch[_X + j] = x
        scratch[_EH + j] = eh
        scratch[_BETA + j] = beta
        ln_beta = vm.log(beta)
        scratch[_LN_BETA + j] = ln_beta
        scratch[_INV_LN_BETA + j] = 1.0 / ln_beta
        scratch[_INV_EH + j] = 1.0 / eh
        scratch[_STATE + j] = _ACTIVE if valid else _LEFT


@_jit
def _lowest_segment_packed(count, scratch):
    """`_normalised_iv`'s starting value on its lowest segment, the rational cubic of f(s) inverted, for the
    packed rows: s into _LOW_S, NaN where it is unusable."""
    for k in range(count):
        ax, beta = scratch[_LOW_AX + k], scratch[_LOW_BETA + k]
        s_l, b_l = scratch[_LOW_S + k], scratch[_LOW_B + k]
        s, cube = _lowest_segment_guess(ax, beta, s_l, b_l, vm.norm_cdf, vm.norm_pdf, vm.exp, _cube_root_vector,
                                        _inverse_norm_cdf_vector)
        usable = (cube > _DBL_MIN) & (cube < 1.0)  # vector_math's log: positive normal arguments
        scratch[_LOW_S + k] = s if usable else math.nan


@_jit
def _lowest_segment_block(m, scratch):
    """The starting value of the active rows on the lowest segment (about 7 in 10 SPY-like rows): packed
    together first, so that the loop computes only them, four at a time."""
    count = 0
    for j in range(m):
        if scratch[_LOWEST + j] > 0.0 and scratch[_STATE + j] == _ACTIVE:
            scratch[_LOW_AX + count] = abs(scratch[_X + j])
            scratch[_LOW_BETA + count] = scratch[_BETA + j]
            scratch[_LOW_S + count] = scratch[_RIGHT_S + j]
            scratch[_LOW_B + count] = scratch[_B_LOW + j]
            count += 1
    _lowest_segment_packed(count, scratch)
    k = 0
    for j in range(m):
        if scratch[_LOWEST + j] > 0.0 and scratch[_STATE + j] == _ACTIVE:
            s = scratch[_LOW_S + k]
            scratch[_SIGMA_S + j] = s
            if s != s:  # NaN: unusable
                scratch[_STATE + j] = _LEFT
            k += 1


@_jit
def _householder_block(m, scratch) -> int:
    """One of `_normalised_iv`'s Householder steps on every active row (objective 1/ln b - 1/ln beta on the
    lowest segment, b - beta on the others); returns how many rows are still active."""
    still_active = 0
    for j in range(m):
        state, s = scratch[_STATE + j], scratch[_SIGMA_S + j]
        s_left, s_right = scratch[_LEFT_S + j], scratch[_RIGHT_S + j]
        beta, x = scratch[_BETA + j], -abs(scratch[_X + j])
        lowest = scratch[_LOWEST + j] > 0.0
        eh = scratch[_EH + j]
        inv_s = 1.0 / s  # (divisions are the slow instructions here: each reciprocal is taken once)
        d1 = x * inv_s + 0.5 * s
        n1 = vm.norm_cdf(d1)
        n2 = vm.norm_cdf(d1 - s)
        b = eh * n1 - scratch[_INV_EH + j] * n2
        bp = eh * vm.norm_pdf(d1)
        inv_bp = 1.0 / bp
        in_bracket = (s_left < s) & (s < s_right)  # else the scalar solver bisects
        hs = x * inv_s
        b_halley = hs * hs * inv_s - 0.25 * s  # second derivative of b over the first
        b_hh3 = b_halley * b_halley - 3.0 * (hs * inv_s) ** 2 - 0.25  # third over first
        # b - beta
        newton_middle = (beta - b) * inv_bp
        # 1/ln b - 1/ln beta (vector_math's log needs a normal b: a smaller one goes to the scalar solver)
        ln_b = vm.log(b)
        inv_ln_b = 1.0 / ln_b
        bpob = bp / b
        newton_lowest = (scratch[_LN_BETA + j] - ln_b) * ln_b * scratch[_INV_LN_BETA + j] * b * inv_bp
        halley_lowest = b_halley - bpob * (1.0 + 2.0 * inv_ln_b)
        hh3_lowest = (b_hh3 + 2.0 * bpob * bpob * (1.0 + 3.0 * inv_ln_b * (1.0 + inv_ln_b))
                      - 3.0 * b_halley * bpob * (1.0 + 2.0 * inv_ln_b))
        newton = newton_lowest if lowest else newton_middle
        halley = halley_lowest if lowest else b_halley
        hh3 = hh3_lowest if lowest else b_hh3
        ds = newton * (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton * _SIXTH))
        ds = ds if bp > 0.0 else math.nan
        usable = in_bracket & (~lowest | (b >= _DBL_MIN))
        ds = -0.5 * s if ds < -0.5 * s else ds
        exact = b == beta
        next_state = _LEFT if not usable else (_DONE if exact or abs(ds) <= _STEP_TOL * s else _ACTIVE)
        active = state == _ACTIVE
        scratch[_STATE + j] = next_state if active else state
        scratch[_SIGMA_S + j] = (s if exact else s + ds) if active else s
        # where the row was last evaluated: the greeks are carried from there to the final s (_greeks_block)
        scratch[_S_LAST + j] = s if active else scratch[_S_LAST + j]
        scratch[_N1_LAST + j] = n1 if active else scratch[_N1_LAST + j]
        scratch[_N2_LAST + j] = n2 if active else scratch[_N2_LAST + j]
        scratch[_VEGA_LAST + j] = bp if active else scratch[_VEGA_LAST + j]
        scratch[_RIGHT_S + j] = s if active and b > beta else s_right
        scratch[_LEFT_S + j] = s if active and b < beta else s_left
        still_active += active and next_state == _ACTIVE
    return still_active


@_inline
def _cdf_step(d: float, h: float) -> float:
    """N(d + h) - N(d), over φ(d), for |d·h| and h² small (< 1e-4): ∫₀ʰ e^(-d·u - u²/2) du as the first four
    terms of its Hermite series; the next is below 1e-20 of the first."""
    dh = d * h
    return h * (1.0 - 0.5 * dh + (dh * d - 1.0) * h * h * _SIXTH - (dh * d * d - 3.0 * d) * h * h * h / 24.0)


@_jit
def _greeks_block(m, scratch):
    """`_solve_row`'s repricing check and greeks for the converged rows, into the scratch result rows.

    The last Householder step moved s by less than _STEP_TOL from where N(d1), N(d2) and the vega were last
    evaluated; they are carried over that step by a Taylor series (error below 1e-18 relative) instead of being
    evaluated again. Out-of-the-money (normalised) values map to the option's by put-call symmetry.
    """
    for j in range(m):
        p, spot, t, theta = scratch[_P + j], scratch[_S + j], scratch[_T + j], scratch[_THETA + j]
        fwd, strike, rate, dividend = scratch[_FWD + j], scratch[_STRIKE + j], scratch[_R + j], scratch[_Q + j]
        x, eh = scratch[_X + j], scratch[_EH + j]
        x_otm = -abs(x)
        s_last, s = scratch[_S_LAST + j], scratch[_SIGMA_S + j]
        ds = s - s_last
        d1 = x_otm / s_last + 0.5 * s_last
        d2 = d1 - s_last
        h1 = 0.5 * ds - x_otm * ds / (s_last * s)  # d1(s) - d1(s_last)
        h2 = h1 - ds
        vega_last = scratch[_VEGA_LAST + j]  # eh·φ(d1) = φ(d2)/eh
        pdf1, pdf2 = vega_last / eh, vega_last * eh
        n1 = scratch[_N1_LAST + j] + pdf1 * _cdf_step(d1, h1)
        n2 = scratch[_N2_LAST + j] + pdf2 * _cdf_step(d2, h2)
        decay = d1 * h1 + 0.5 * h1 * h1  # φ(d1 + h1) = φ(d1)·e^(-decay)
        vega_normalised = vega_last * (1.0 - decay * (1.0 - decay * (0.5 - decay * _SIXTH)))
        # the option's N(θ·d1), N(θ·d2) from the out-of-the-money call's N(d1), N(d2)
        otm = theta * x <= 0.0
        call_side = theta > 0.0
        if otm:
            cdf1, cdf2 = (n1, n2) if call_side else (n2, n1)
        else:
            cdf1, cdf2 = (1.0 - n2, 1.0 - n1) if call_side else (1.0 - n1, 1.0 - n2)
        sqrt_t = math.sqrt(t)
        sigma = s / sqrt_t
        value = theta * (fwd * cdf1 - strike * cdf2)
        fwd_pdf = math.sqrt(fwd * strike) * vega_normalised  # S·e^{-qT}·φ(d1), symmetric in x
        theta_per_day = (-fwd_pdf * sigma / (2.0 * sqrt_t) - theta * rate * strike * cdf2
                         + theta * dividend * fwd * cdf1) / 365.0
        gamma = fwd_pdf / (spot * spot * s)
        rho = theta * t * strike * cdf2 * 0.01
        scale = fwd_pdf * s if fwd_pdf * s > p else p
        ok = ((scratch[_STATE + j] == _DONE) & (sigma > 0.0) & (sigma < math.inf)
              & (abs(value - p) + _ROUNDING_MARGIN * (fwd * cdf1 + strike * cdf2 + p + fwd_pdf * s)
                 <= _REPRICE_TOL * scale)
              & (abs(gamma + theta_per_day + rho) < math.inf))
        scratch[_IV + j] = sigma
        scratch[_DELTA + j] = theta * scratch[_DQ + j] * cdf1
        scratch[_GAMMA + j] = gamma
        scratch[_THETA_DAY + j] = theta_per_day
        scratch[_VEGA + j] = fwd_pdf * sqrt_t * 0.01
        scratch[_RHO + j] = rho
        scratch[_OK + j] = 1.0 if ok else 0.0


@_jit
def _scatter_block(start, m, scratch, iv, delta, gamma, theta, vega, rho, reason):
    """Results into the outputs (separate copies: one loop writing seven arrays would not vectorize)."""
    iv[start:start + m] = scratch[_IV:_IV + m]
    delta[start:start + m] = scratch[_DELTA:_DELTA + m]
    gamma[start:start + m] = scratch[_GAMMA:_GAMMA + m]
    theta[start:start + m] = scratch[_THETA_DAY:_THETA_DAY + m]
    vega[start:start + m] = scratch[_VEGA:_VEGA + m]
    rho[start:start + m] = scratch[_RHO:_RHO + m]
    for j in range(m):
        reason[start + j] = OK if scratch[_OK + j] > 0.0 else _PENDING


@_jit
def _greeks_range(start, stop, price, S, K, T, r, q, flag, iv, delta, gamma, theta, vega, rho, reason):
    """Rows start..stop. Inputs of length n or 1 (a broadcast value), outputs of length n."""
    scratch = np.empty(_SCRATCH * BLOCK_ROWS)
    ip, iS, iK, iT = _step(price), _step(S), _step(K), _step(T)
    ir, iq, iflag = _step(r), _step(q), _step(flag)
    for block in range(start, stop, BLOCK_ROWS):
        m = min(BLOCK_ROWS, stop - block)
        _gather_block(block, m, price, S, K, T, r, q, flag, scratch)
        _initial_guess_block(m, scratch)
        _lowest_segment_block(m, scratch)
        for _ in range(_VECTOR_STEPS):
            if _householder_block(m, scratch) == 0:
                break
        _greeks_block(m, scratch)
        _scatter_block(block, m, scratch, iv, delta, gamma, theta, vega, rho, reason)
        for i in range(block, block + m):
            if reason[i] != OK:
                (iv[i], delta[i], gamma[i], theta[i], vega[i], rho[i], reason[i]) = _solve_row(
                    price[i * ip], S[i * iS], K[i * iK], T[i * iT], r[i * ir], q[i * iq], flag[i * iflag]
                )


@_jit
def _price_row(S: float, K: float, T: float, r: float, q: float, sigma: float, flag: int) -> float:
    theta = 1.0 if flag > 0 else -1.0
    t = 0.0 if T < 0.0 else T  # NaN stays NaN
    fwd = S * math.exp(-q * t)
    strike = K * math.exp(-r * t)
    s = sigma * math.sqrt(t)
    if s <= 0.0:  # at expiry or without volatility: the limit of the formula
        intrinsic = theta * (fwd - strike)
        return 0.0 if intrinsic < 0.0 else intrinsic
    return _black(math.log(fwd / strike), s, theta, fwd, strike)[0]


@_jit
def _price_range(start, stop, S, K, T, r, q, sigma, flag, out):
    iS, iK, iT, ir, iq = _step(S), _step(K), _step(T), _step(r), _step(q)
    isigma, iflag = _step(sigma), _step(flag)
    for i in range(start, stop):
        out[i] = _price_row(S[i * iS], K[i * iK], T[i * iT], r[i * ir], q[i * iq], sigma[i * isigma], flag[i * iflag])


# Threaded versions: chunks of rows spread over numba's threads. (Separate functions, not a second njit of the
# same one: numba's on-disk cache keys on the Python function, so the two would load each other's code.)
@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _greeks_threaded(price, S, K, T, r, q, flag, iv, delta, gamma, theta, vega, rho, reason):
    n = iv.size
    for chunk in prange((n + CHUNK_ROWS - 1) // CHUNK_ROWS):
        start = chunk * CHUNK_ROWS
        _greeks_range(start, min(n, start + CHUNK_ROWS), price, S, K, T, r, q, flag,
                      iv, delta, gamma, theta, vega, rho, reason)


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _price_threaded(S, K, T, r, q, sigma, flag, out):
    n = out.size
    for chunk in prange((n + CHUNK_ROWS - 1) // CHUNK_ROWS):
        start = chunk * CHUNK_ROWS
        _price_range(start, min(n, start + CHUNK_ROWS), S, K, T, r, q, sigma, flag, out)


def _threaded(kernel: Callable[..., None], *arrays: np.ndarray) -> None:
    """Run a threaded kernel with its chunks handed out one at a time, as threads finish the last: on a shared
    machine a busy core then does not hold the others up (numba's default splits the loop evenly up front)."""
    previous = set_parallel_chunksize(1)
    try:
        kernel(*arrays)
    finally:
        set_parallel_chunksize(previous)


def _flags(is_call: ArrayLike) -> np.ndarray:
    """int8 array, > 0 for calls: from bools, integers (1 call; -1 or 0 put) or strings ('c'/'p')."""
    flags = np.asarray(is_call)
    if flags.dtype == np.bool_:
        return flags.view(np.int8)
    if flags.dtype == np.int8:
        return flags
    if flags.dtype.kind in "iuf":
        return np.where(flags > 0, 1, -1).astype(np.int8)
    if flags.dtype.kind in "USO":
        lowered = np.char.lower(flags.astype(str))
        if not np.isin(lowered, ["c", "p"]).all():
            raise ValueError("string flags must be 'c' or 'p'")
        return np.where(lowered == "c", 1, -1).astype(np.int8)
    raise TypeError(f"is_call must be bool, integer (±1) or 'c'/'p', not {flags.dtype}")


def _columns(arrays: list[np.ndarray]) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """Broadcast shape, and each array as a contiguous 1-D column of the full length or of length 1."""
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    columns = []
    for a in arrays:
        if a.size == 1:
            column = np.ascontiguousarray(a.reshape(1))
        elif a.shape == shape:
            column = np.ascontiguousarray(a).reshape(-1)
        else:  # partly broadcast (a column against a row): materialise
            column = np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1)
        columns.append(column if column.flags.writeable else column.copy())  # one signature for numba
    return columns, shape


def implied_vol_and_greeks(
    price: ArrayLike,
    S: ArrayLike,
    K: ArrayLike,
    T_years: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    is_call: ArrayLike,
) -> GreeksResult:
    """Implied volatility and its greeks for each row; arguments broadcast together.

    `price` is the option's market value, `is_call` bools (True for calls), integers (1 call, -1 or 0 put) or
    'c'/'p'. Matches py_vollib's `implied_volatility(price, S, K, t, r, q, flag)` and its analytical greeks
    (theta per calendar day, vega and rho per point). A row with no implied volatility gets NaN everywhere and
    its reason code (see REASONS); nothing raises for bad rows.
    """
    values = [np.asarray(a, dtype=np.float64) for a in (price, S, K, T_years, r, q)]
    columns, shape = _columns([*values, _flags(is_call)])
    n = math.prod(shape)
    outputs = [np.empty(n) for _ in range(6)]
    reason = np.empty(n, dtype=np.int8)
    if n >= PARALLEL_MIN_ROWS:
        _threaded(_greeks_threaded, *columns, *outputs, reason)
    else:
        _greeks_range(0, n, *columns, *outputs, reason)
    return GreeksResult(*(a.reshape(shape) for a in outputs), reason=reason.reshape(shape))


def price(
    S: ArrayLike,
    K: ArrayLike,
    T_years: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
) -> np.ndarray:
    """Option values; all arguments broadcast together (is_call as in `implied_vol_and_greeks`).

    At expiry (T <= 0) or without volatility (sigma <= 0) the value is the limit of the formula:
    the discounted intrinsic value of the forward, max(±(S e^{-qT} - K e^{-rT}), 0).
    """
    values = [np.asarray(a, dtype=np.float64) for a in (S, K, T_years, r, q, sigma)]
    columns, shape = _columns([*values, _flags(is_call)])
    out = np.empty(math.prod(shape))
    if out.size >= PARALLEL_MIN_ROWS:
        _threaded(_price_threaded, *columns, out)
    else:
        _price_range(0, out.size, *columns, out)
    return out.reshape(shape)


def compile_kernels() -> None:
    """Compile every kernel (one row and threaded, greeks and prices) into numba's on-disk cache, or load it.

    `make` runs this once after installing, so that no process (a test worker, a Dagster step) pays the ≈ 30 s
    compile on its first call.
    """
    rows = PARALLEL_MIN_ROWS
    for n in (1, rows):
        implied_vol_and_greeks(np.full(n, 2.4), 49.0, 50.0, 0.38, 0.05, 0.0, np.ones(n, dtype=bool))
        price(np.full(n, 49.0), 50.0, 0.38, 0.05, 0.0, 0.3, np.ones(n, dtype=bool))
