"""Black-Scholes-Merton for European options on a dividend-paying underlying, vectorized over numpy arrays.

Conventions follow vollib's `black_scholes_merton`: time in years, continuously compounded rate `r` and
dividend yield `q`, volatility as a decimal (0.20 for 20%). No Dagster, no I/O.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr


def price(
    S: ArrayLike,
    K: ArrayLike,
    T_years: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
) -> np.ndarray:
    """Option values; all arguments broadcast together (is_call is a bool array, True for calls).

    At expiry (T <= 0) or without volatility (sigma <= 0) the value is the limit of the formula:
    the discounted intrinsic value of the forward, max(±(S e^{-qT} - K e^{-rT}), 0).
    """
    S, K, T, r, q, sigma = (np.asarray(x, dtype=np.float64) for x in (S, K, T_years, r, q, sigma))
    sign = np.where(np.asarray(is_call, dtype=bool), 1.0, -1.0)
    T_pos = np.maximum(T, 0.0)
    spot = S * np.exp(-q * T_pos)  # discounted forward: the spot less the dividends paid until expiry
    strike = K * np.exp(-r * T_pos)
    stdev = sigma * np.sqrt(T_pos)
    degenerate = stdev <= 0.0
    safe_stdev = np.where(degenerate, 1.0, stdev)
    d1 = (np.log(spot / strike) + 0.5 * safe_stdev**2) / safe_stdev
    d2 = d1 - safe_stdev
    value = sign * (spot * ndtr(sign * d1) - strike * ndtr(sign * d2))
    return np.where(degenerate, np.maximum(sign * (spot - strike), 0.0), value)
