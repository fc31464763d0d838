"""exp, log and the normal CDF as straight-line arithmetic, so that numba (LLVM) vectorizes loops calling them.

A loop that calls libm's `exp` or `erfc` runs one row at a time: LLVM has no vector version of them without
Intel's SVML. These have no calls and no data-dependent branches (only selects), and are inlined into the
caller (`inline="always"`), so a loop over rows runs 4 rows per AVX2 instruction. Accuracy is that of libm
to a few units in the last place (measured in spy_pipeline_tests/test_black_scholes.py against `math`):

- `exp`: Cody-Waite reduction by k·ln2, a degree-13 Taylor polynomial on |r| ≤ ln2/2, 2^k built from bits;
  an optional low part `lo` of the argument keeps e^(hi + lo) accurate when hi is large (the CDF's -z²).
- `log`: fdlibm's e_log.c (Sun Microsystems, freely distributable): exponent from bits, a rational in
  s = f/(2 + f) on [√½, √2).
- `norm_cdf`: erfc(z) = t·exp(-z² + P(t)), t = 2/(2 + z), P Numerical Recipes' 28-term Chebyshev series
  (Press et al., 3rd ed. §6.2.2, `Erf::erfccheb`) as a polynomial, relative error ~1e-16 for all z ≥ 0;
  -z² is carried as an exact hi + lo pair (fma) so the tails keep their relative accuracy.

Arguments outside a function's domain (NaN, ±inf, log of x ≤ 0 or subnormal) give garbage, not a trap:
callers check their inputs and use another path for such rows.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["exp", "exp_hi_lo", "fma", "log", "norm_cdf", "norm_pdf"]

_inline = njit(cache=True, nogil=True, fastmath=False, error_model="numpy", forceinline=True)


@intrinsic
def fma(typingctx, a, b, c):
    """a·b + c rounded once (llvm.fma: one instruction on CPUs with FMA)."""

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return types.float64(types.float64, types.float64, types.float64), codegen


@intrinsic
def _float_from_bits(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _bits_from_float(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 in two parts: k·_LN2_HI is exact for |k| < 2^11
_LN2_LO = 1.90821492927058770002e-10
_ROUND = 6755399441055744.0  # 1.5·2^52: x + _ROUND rounds x to an integer, held in the low mantissa bits
_ROUND_BITS = 0x4338000000000000
_MANTISSA = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000
_TWO52_BITS = 0x4330000000000000  # 2^52: bits | n is 2^52 + n for 0 ≤ n < 2^52
_TWO52 = 4503599627370496.0
_SQRT2 = 1.4142135623730951
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327


@_inline
def exp_hi_lo(hi: float, lo: float) -> float:
    """e^(hi + lo) for |lo| small against ln2 (0 for a plain exp); 0 below -745, inf above 709.78."""
    hi = 710.0 if hi > 710.0 else hi  # NaN passes both clamps
    hi = -760.0 if hi < -760.0 else hi
    rounded = hi * _LOG2E + _ROUND
    k = rounded - _ROUND
    r = ((hi - k * _LN2_HI) - k * _LN2_LO) + lo
    p = fma(1.0 / 6227020800.0, r, 1.0 / 479001600.0)
    p = fma(p, r, 1.0 / 39916800.0)
    p = fma(p, r, 1.0 / 3628800.0)
    p = fma(p, r, 1.0 / 362880.0)
    p = fma(p, r, 1.0 / 40320.0)
    p = fma(p, r, 1.0 / 5040.0)
    p = fma(p, r, 1.0 / 720.0)
    p = fma(p, r, 1.0 / 120.0)
    p = fma(p, r, 1.0 / 24.0)
    p = fma(p, r, 1.0 / 6.0)
    p = fma(p, r, 0.5)
    p = fma(p, r, 1.0)
    p = fma(p, r, 1.0)
    k_int = _bits_from_float(rounded) - _ROUND_BITS
    half = k_int >> 1  # 2^k as 2^half·2^(k-half): both factors stay normal down to the subnormal results
    return p * _float_from_bits((half + 1023) << 52) * _float_from_bits((k_int - half + 1023) << 52)


@_inline
def exp(x: float) -> float:
    return exp_hi_lo(x, 0.0)


_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01


@_inline
def log(x: float) -> float:
    """Natural log of a positive normal finite x."""
    bits = _bits_from_float(x)
    m = _float_from_bits((bits & _MANTISSA) | _ONE_BITS)  # in [1, 2)
    biased = _float_from_bits(_TWO52_BITS | (bits >> 52)) - _TWO52  # the biased exponent, as a float
    big = m > _SQRT2
    m = 0.5 * m if big else m
    k = biased - (1022.0 if big else 1023.0)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + t1 + t2) + k * _LN2_LO)) - f)


# Numerical Recipes' 28-term Chebyshev series for ln(erfc(z)·e^(z²)/t), t = 2/(2 + z), rewritten exactly (in
# rationals) as a polynomial in y = 2t - 1 ∈ (-1, 1]: its coefficients sum to 1.46 in absolute value, so the
# polynomial loses nothing to cancellation, and Estrin's scheme evaluates it in 6 dependent steps instead of the
# 27 of Clenshaw's recurrence.
_A0, _A1 = -0.6717940840566923, 0.6726432239776567
_A2, _A3 = 0.047343306841904534, -0.04689561023117734
_A4, _A5 = -0.00987268936639228, 0.008824938557113696
_A6, _A7 = 0.001758933557808736, -0.002345812501075328
_A8, _A9 = -0.00014624686329856, 0.00067367879913856
_A10, _A11 = -9.3735032187904e-05, -0.000174302959455232
_A12, _A13 = 7.1401019131904e-05, 3.174520193024e-05
_A14, _A15 = -3.018789900288e-05, 1.3772128256e-07
_A16, _A17 = 8.562650611712e-06, -2.948059037696e-06
_A18, _A19 = -1.272346443776e-06, 1.2502106112e-06
_A20, _A21 = -1.68468414464e-07, -2.4981274624e-07
_A22, _A23 = 1.53326977024e-07, 1.610612736e-09
_A24, _A25 = -3.9166410752e-08, 1.1106516992e-08
_A26, _A27 = 4.060086272e-09, -1.879048192e-09


@_inline
def _erfc_nonnegative(z: float) -> float:
    t = 2.0 / (2.0 + z)
    y = 2.0 * t - 1.0
    y2 = y * y
    y4 = y2 * y2
    y8 = y4 * y4
    q0 = fma(fma(_A3, y, _A2), y2, fma(_A1, y, _A0))
    q1 = fma(fma(_A7, y, _A6), y2, fma(_A5, y, _A4))
    q2 = fma(fma(_A11, y, _A10), y2, fma(_A9, y, _A8))
    q3 = fma(fma(_A15, y, _A14), y2, fma(_A13, y, _A12))
    q4 = fma(fma(_A19, y, _A18), y2, fma(_A17, y, _A16))
    q5 = fma(fma(_A23, y, _A22), y2, fma(_A21, y, _A20))
    q6 = fma(fma(_A27, y, _A26), y2, fma(_A25, y, _A24))
    low = fma(fma(q3, y4, q2), y8, fma(q1, y4, q0))
    high = fma(q6, y8, fma(q5, y4, q4))
    series = fma(high, y8 * y8, low)
    # exponent -z² + series as hi + lo: z² exactly (fma), then the sum's rounding error (two-sum)
    square = z * z
    square_lo = fma(z, z, -square)
    hi = series - square
    back = hi - series
    lo = (series - (hi - back)) - (square + back)
    return t * exp_hi_lo(hi, lo - square_lo)


@_inline
def norm_cdf(z: float) -> float:
    """Standard normal CDF, accurate to a few ulp relative in the lower tail (down to ~1e-308)."""
    half_tail = 0.5 * _erfc_nonnegative(abs(z) * _INV_SQRT2)
    return half_tail if z < 0.0 else 1.0 - half_tail


@_inline
def norm_pdf(z: float) -> float:
    return _INV_SQRT_2PI * exp(-0.5 * z * z)
