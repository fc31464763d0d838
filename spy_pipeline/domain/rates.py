"""The risk-free rate of the greeks and implied volatility: one default, and the range a rate may take.

The default is what SPY_PIPELINE_RISK_FREE_RATE falls back to and what the sandbox prices its synthetic options
with, so that implied volatility computed on sandbox data recovers the volatility the sandbox priced with.
"""

from __future__ import annotations

import math

DEFAULT_RISK_FREE_RATE = 0.045  # continuously compounded, per year (4.5%)
# Per year; wider than any rate seen, narrow enough to catch a percentage typed as a number (4.5 for 4.5%).
MIN_RISK_FREE_RATE, MAX_RISK_FREE_RATE = -0.05, 0.5


def check_risk_free_rate(rate: float) -> float:
    """`rate` if it is a rate per year in [MIN_RISK_FREE_RATE, MAX_RISK_FREE_RATE], else a one-line ValueError."""
    if not (math.isfinite(rate) and MIN_RISK_FREE_RATE <= rate <= MAX_RISK_FREE_RATE):
        raise ValueError(
            f"{rate:g} is not a rate per year between {MIN_RISK_FREE_RATE:g} and {MAX_RISK_FREE_RATE:g} "
            f"(write 4.5% as 0.045)"
        )
    return rate
