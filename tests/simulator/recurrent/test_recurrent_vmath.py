"""The branch-free exp, sigmoid and tanh of simulator.recurrent.vmath against numpy,
to a few ulps over the whole float range, with the limits and NaN exactly right."""

from __future__ import annotations

import platform
import re

import numpy as np
import pytest

from simulator.recurrent import vmath as V


def _grid(dtype):
    big = 800.0 if dtype == np.float64 else 120.0
    tiny = 1e-300 if dtype == np.float64 else 1e-37
    pos = np.geomspace(tiny, big, 20001)
    x = np.concatenate([np.linspace(-big, big, 40001), np.linspace(-2, 2, 40001), pos, -pos,
                        [0.0, -0.0]])
    return x.astype(dtype)


def _ulps(got, want):
    """|got - want| in units of the last place of want (where want is a normal number)."""
    dtype = want.dtype
    normal = np.isfinite(want) & (np.abs(want) >= np.finfo(dtype).tiny)
    g = got[normal].astype(np.float64)
    w = want[normal]
    return np.abs(g - w.astype(np.float64)) / np.spacing(np.abs(w)).astype(np.float64)


def _sigmoid_ref(x):
    """sigmoid in float64 from numpy's exp, both branches stable, rounded to x's dtype."""
    x64 = x.astype(np.float64)
    e = np.exp(-np.abs(x64))
    return np.where(x64 >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


@pytest.mark.parametrize("dtype, max_ulps", [(np.float64, 4), (np.float32, 2)])
def test_sigmoid_and_tanh_within_a_few_ulps(dtype, max_ulps):
    x = _grid(dtype)
    s = x.copy()
    V.sigmoid_inplace(s)
    t = x.copy()
    V.tanh_inplace(t)
    u = x.copy()
    t2 = np.empty_like(x)
    V.tanh_into(u, t2)
    assert _ulps(s, _sigmoid_ref(x)).max() <= max_ulps
    want_t = np.tanh(x.astype(np.float64)).astype(dtype) if dtype == np.float32 else np.tanh(x)
    assert _ulps(t, want_t).max() <= max_ulps
    np.testing.assert_array_equal(t2, t)
    # tanh keeps full relative accuracy near 0 (no 1 - e^-2x cancellation)
    small = np.geomspace(np.finfo(dtype).tiny, 1e-3, 500).astype(dtype)
    ts = small.copy()
    V.tanh_inplace(ts)
    want = np.tanh(small.astype(np.float64)).astype(dtype)
    assert _ulps(ts, want).max() <= max_ulps


def test_exp64_within_one_ulp_over_the_whole_range():
    x = np.concatenate([np.linspace(-745.0, 709.7, 30001), np.linspace(-1, 1, 2001)])
    got = np.array([V.exp64(v) for v in x])
    assert _ulps(got, np.exp(x)).max() <= 2
    # subnormal results are rounded once, overflow gives inf, far below gives 0
    assert V.exp64(-740.0) == pytest.approx(np.exp(-740.0), rel=1e-3)
    assert V.exp64(710.0) == np.inf and V.exp64(1e6) == np.inf
    assert V.exp64(-746.0) == 0.0 and V.exp64(-1e6) == 0.0
    assert V.exp64(0.0) == 1.0
    assert np.isnan(V.exp64(np.nan))
    got32 = np.array([V.exp32(np.float32(v)) for v in np.linspace(-87, 88, 5001)],
                     np.float32)
    want32 = np.exp(np.linspace(-87, 88, 5001).astype(np.float32).astype(np.float64))
    assert _ulps(got32, want32.astype(np.float32)).max() <= 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_limits_are_exact_and_nan_stays_nan(dtype):
    x = np.array([300.0, -300.0, 800.0, -800.0, 1e30, -1e30, np.inf, -np.inf, np.nan, 0.0],
                 dtype)
    s = x.copy()
    V.sigmoid_inplace(s)
    t = x.copy()
    V.tanh_inplace(t)
    np.testing.assert_array_equal(s[2:8], [1, 0, 1, 0, 1, 0])
    assert s[0] == 1.0 and s[1] == pytest.approx(np.exp(-300.0), rel=1e-14)  # 0 in float32
    np.testing.assert_array_equal(t[:8], [1, -1, 1, -1, 1, -1, 1, -1])
    assert np.isnan(s[8]) and np.isnan(t[8])  # divergence detection relies on this
    assert s[9] == 0.5 and t[9] == 0.0
    assert s.dtype == dtype and t.dtype == dtype


def test_reductions_propagate_nan_and_inf():
    v = np.arange(1000, dtype=np.float64)
    assert V.total(v) == v.sum()
    assert V.sum_squares(v) == pytest.approx((v * v).sum(), rel=1e-15)
    v[500] = np.nan
    assert np.isnan(V.total(v)) and np.isnan(V.sum_squares(v))
    v[500] = np.inf
    assert V.total(v) == np.inf and V.sum_squares(v) == np.inf


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 assembly")
@pytest.mark.parametrize("name", ["sigmoid_inplace", "tanh_inplace"])
def test_activation_loops_compile_to_packed_instructions(name):
    """The point of vmath: LLVM vectorizes these loops (packed mulpd/mulps), with no call
    to a scalar libm function left in them. Compiled afresh with the kernels' options
    (inspect_asm does not work on code loaded from numba's cache; error_model="numpy"
    matters: Python's would add a division-by-zero branch that stops the vectorizer)."""
    numba = pytest.importorskip("numba")
    if numba.config.DISABLE_JIT:
        pytest.skip("JIT disabled")
    from simulator.kernels import _opts
    fn = numba.njit(**dict(_opts, cache=False))(getattr(V, name).py_func)
    for dtype, packed in ((np.float64, "mulpd"), (np.float32, "mulps")):
        fn(np.zeros(64, dtype))
        asm = next(a for sig, a in fn.inspect_asm().items()
                   if str(sig[0].dtype) == np.dtype(dtype).name)
        assert re.search(rf"\bv?{packed}\b", asm), (name, dtype)
        assert not re.search(r"\b(exp|expf|tanh|tanhf)@?\w*\b", asm.split("cpython.")[0]
                             .replace("tanh_inplace", "")), (name, dtype)
