"""exp, sigmoid and tanh that LLVM can vectorize, for the recurrent gate loops.

numba (without Intel's SVML) compiles ``math.exp``/``math.tanh`` to calls of the
scalar libm functions, one call per element, which no loop vectorizer can turn
into packed instructions. The functions here contain no calls and no branches,
only arithmetic, integer bit operations and selects, so a plain loop over a
contiguous array of them compiles to packed AVX code.

exp(x), Cody-Waite style:

* n = round(x / ln 2), found by adding 1.5 * 2^52 (float32: 1.5 * 2^23): the sum's
  low mantissa bits then hold n as an integer, which we read back with a bit view
  instead of a float-to-int conversion;
* r = x - n ln2_hi - n ln2_lo, |r| <= ln2 / 2 (ln2_hi has enough trailing zero
  bits that n ln2_hi is exact);
* exp(r) by its Taylor polynomial to degree 13 (float32: 7), whose truncation
  error is below 1e-17 (float32: 1e-8) relative on that interval;
* 2^n assembled as the bit pattern (n + bias) << mantissa bits, in two factors
  2^(n//2) 2^(n - n//2), each a normal number, so that results near overflow and
  in the subnormal range round once, as they should.

Inputs are clamped first (to where the result is already 0, 1 or inf), with
comparisons that are false for NaN, so NaN stays NaN (divergence detection relies
on it) and +-inf give the right limits. sigmoid(x) = 1 / (1 + e) or e / (1 + e)
with e = exp(-|x|) <= 1, never overflowing; tanh(x) = sign(x) * -m / (2 + m) with
m = expm1(-2|x|), computed as 2^n expm1(r) + (2^n - 1) so that it keeps full
relative accuracy near 0 (where 1 - exp(-2|x|) would cancel).

Each scalar function exists for float64 (``*64``) and float32 (``*32``: float32
arithmetic, twice the lanes per instruction); the in-place array loops pick one by
the array's item size.
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels import _kernel, _opts, _reduction


def _inline(fn):
    """Inlined into the caller at numba's IR level, so the caller's loop sees only
    arithmetic and can be vectorized."""
    return _kernel(fn, dict(_opts, inline="always"))

# -- float64 ----------------------------------------------------------------------------
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # 32 significant bits: n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_SHIFT = 6755399441055744.0  # 1.5 * 2**52
_SHIFT_BITS = int(np.float64(_SHIFT).view(np.int64))
_EXP_LO, _EXP_HI = -746.0, 710.0  # exp is 0 below, inf above
_TANH_SAT = 20.0  # tanh(20) rounds to 1.0 in float64

# 1 / k!, k = 0..13
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (
    1.0 / math.factorial(k) for k in range(14))

# -- float32 ----------------------------------------------------------------------------
_F = np.float32
_LOG2E_F = _F(1.4426950408889634)
_LN2_HI_F = _F(0.693145751953125)  # 0x3f317200: n * _LN2_HI_F exact for |n| < 512
_LN2_LO_F = _F(1.428606765330187045e-06)
_SHIFT_F = _F(12582912.0)  # 1.5 * 2**23
_SHIFT_BITS_F = np.int32(np.float32(12582912.0).view(np.int32))
_EXP_LO_F, _EXP_HI_F = _F(-104.0), _F(89.0)
_TANH_SAT_F = _F(10.0)
_ZERO_F, _ONE_F, _TWO_F = _F(0.0), _F(1.0), _F(2.0)
_D0, _D1, _D2, _D3, _D4, _D5, _D6, _D7 = (_F(1.0 / math.factorial(k)) for k in range(8))
_I127 = np.int32(127)
_I23 = np.int32(23)
_I1 = np.int32(1)


@_inline
def _reduce64(x):
    """(n as a float, n as an int64, r) with x = n ln2 + r."""
    k = x * _LOG2E + _SHIFT
    n = k - _SHIFT
    r = (x - n * _LN2_HI) - n * _LN2_LO
    ni = np.float64(k).view(np.int64) - _SHIFT_BITS
    return ni, r


@_inline
def _pow2_64(n):
    """2^n for -1022 <= n <= 1023, from its bit pattern."""
    return np.int64((n + 1023) << 52).view(np.float64)


@_inline
def exp64(x):
    """e^x, float64, branch-free, to about 1 ulp."""
    x = _EXP_LO if x < _EXP_LO else x
    x = _EXP_HI if x > _EXP_HI else x
    ni, r = _reduce64(x)
    p = _C13
    p = p * r + _C12
    p = p * r + _C11
    p = p * r + _C10
    p = p * r + _C9
    p = p * r + _C8
    p = p * r + _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    p = p * r + _C1
    p = p * r + _C0
    n1 = ni >> 1
    return (p * _pow2_64(n1)) * _pow2_64(ni - n1)


@_inline
def _expm1_nonpos64(y):
    """e^y - 1 for -40 <= y <= 0 (NaN passes through), full relative accuracy near 0."""
    ni, r = _reduce64(y)
    q = _C13
    q = q * r + _C12
    q = q * r + _C11
    q = q * r + _C10
    q = q * r + _C9
    q = q * r + _C8
    q = q * r + _C7
    q = q * r + _C6
    q = q * r + _C5
    q = q * r + _C4
    q = q * r + _C3
    q = q * r + _C2
    pm = r + (r * r) * q  # e^r - 1
    s = _pow2_64(ni)
    return s * pm + (s - 1.0)


@_inline
def sigmoid64(x):
    """1 / (1 + e^-x), float64, branch-free."""
    ax = math.fabs(x)
    e = exp64(-ax)  # in (0, 1]; exp64 clamps, so sigmoid(-800) = 0 and sigmoid(800) = 1
    d = 1.0 / (1.0 + e)
    return d if x >= 0.0 else e * d


@_inline
def tanh64(x):
    """tanh(x), float64, branch-free."""
    ax = math.fabs(x)
    ax = _TANH_SAT if ax > _TANH_SAT else ax
    m = _expm1_nonpos64(-2.0 * ax)
    return math.copysign(-m / (2.0 + m), x)


@_inline
def _reduce32(x):
    k = x * _LOG2E_F + _SHIFT_F
    n = k - _SHIFT_F
    r = (x - n * _LN2_HI_F) - n * _LN2_LO_F
    ni = np.float32(k).view(np.int32) - _SHIFT_BITS_F
    return ni, r


@_inline
def _pow2_32(n):
    """2^n for -126 <= n <= 127, from its bit pattern."""
    return np.int32((n + _I127) << _I23).view(np.float32)


@_inline
def exp32(x):
    """e^x in float32 arithmetic, branch-free, to about 1 ulp of float32."""
    x = _EXP_LO_F if x < _EXP_LO_F else x
    x = _EXP_HI_F if x > _EXP_HI_F else x
    ni, r = _reduce32(x)
    p = _D7
    p = p * r + _D6
    p = p * r + _D5
    p = p * r + _D4
    p = p * r + _D3
    p = p * r + _D2
    p = p * r + _D1
    p = p * r + _D0
    n1 = ni >> _I1
    return (p * _pow2_32(n1)) * _pow2_32(ni - n1)


@_inline
def _expm1_nonpos32(y):
    ni, r = _reduce32(y)
    q = _D7
    q = q * r + _D6
    q = q * r + _D5
    q = q * r + _D4
    q = q * r + _D3
    q = q * r + _D2
    pm = r + (r * r) * q
    s = _pow2_32(ni)
    return s * pm + (s - _ONE_F)


@_inline
def sigmoid32(x):
    ax = abs(x)
    e = exp32(-ax)
    d = _ONE_F / (_ONE_F + e)
    return d if x >= _ZERO_F else e * d


@_inline
def tanh32(x):
    ax = abs(x)
    ax = _TANH_SAT_F if ax > _TANH_SAT_F else ax
    m = _expm1_nonpos32(-_TWO_F * ax)
    return np.float32(math.copysign(-m / (_TWO_F + m), x))


# -- loops over whole contiguous 1-D arrays (range(n) from 0: numba then knows the index is
# never negative and emits no wraparound select, which would stop the vectorizer) ---------
@_kernel
def sigmoid_inplace(v):
    """v <- sigmoid(v) in place (v 1-D contiguous, float32 or float64)."""
    if v.itemsize == 4:
        for i in range(v.shape[0]):
            v[i] = sigmoid32(np.float32(v[i]))
    else:
        for i in range(v.shape[0]):
            v[i] = sigmoid64(np.float64(v[i]))


@_kernel
def tanh_inplace(v):
    """v <- tanh(v) in place (v 1-D contiguous, float32 or float64)."""
    if v.itemsize == 4:
        for i in range(v.shape[0]):
            v[i] = tanh32(np.float32(v[i]))
    else:
        for i in range(v.shape[0]):
            v[i] = tanh64(np.float64(v[i]))


@_kernel
def tanh_into(src, dst):
    """dst <- tanh(src) elementwise (both 1-D contiguous, same length and dtype)."""
    if src.itemsize == 4:
        for i in range(src.shape[0]):
            dst[i] = tanh32(np.float32(src[i]))
    else:
        for i in range(src.shape[0]):
            dst[i] = tanh64(np.float64(src[i]))


@_reduction
def total(v):
    """Sum of a 1-D array (reassociated, so it vectorizes; NaN and inf still propagate)."""
    s = 0.0
    for i in range(v.shape[0]):
        s += v[i]
    return s


@_reduction
def sum_squares(v):
    """Sum of squares of a 1-D array (reassociated; NaN and inf still propagate)."""
    s = 0.0
    for i in range(v.shape[0]):
        s += v[i] * v[i]
    return s
