"""Every numba kernel against its plain-numpy twin in simulator.reference, plus
finite-difference checks of the derivatives the twins themselves encode."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import kernels as K
from simulator import reference as R
from simulator.network import Network
from simulator.spec import ACTIVATIONS, LayerSpec, NetworkSpec

DTYPES = (np.float32, np.float64)
# (batch, width) pairs: batch 1 and width 1 included on purpose
SHAPES = ((1, 1), (1, 7), (5, 1), (9, 4), (33, 17))
KINKED = ("relu", "leaky_relu", "prelu", "elu", "selu", "softsign")
EXTREMES = (-1e4, -300.0, -30.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 1.0, 30.0, 300.0, 1e4)


def rtol_for(dtype) -> float:
    return 1e-11 if np.dtype(dtype) == np.float64 else 2e-5


def assert_twin(actual, expected, dtype, rtol=None, scale=None):
    """actual (kernel, any dtype) equals expected (float64 twin) to the dtype's precision;
    the absolute slack scales with the largest expected magnitude (or ``scale``: for
    values that are zero in theory, such as the bias gradient in front of batch norm)."""
    expected = np.asarray(expected, np.float64)
    rtol = rtol_for(dtype) if rtol is None else rtol
    if scale is None:
        scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol,
                               atol=rtol * max(scale, 1e-30))


def code(name: str) -> int:
    return ACTIVATIONS.index(name)


def slopes_for(name, n, dtype, rng):
    if name != "prelu":
        return np.zeros(0, dtype)
    return rng.uniform(-0.5, 0.9, n).astype(dtype)


# -- activations ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_act_forward_and_backward_match_twin(name, dtype):
    rng = np.random.default_rng(ACTIVATIONS.index(name))
    for B, n in SHAPES:
        u = (3.0 * rng.standard_normal((B, n))).astype(dtype)
        g = rng.standard_normal((B, n)).astype(dtype)
        slopes = slopes_for(name, n, dtype, rng)
        out = np.full((B, n), np.nan, dtype)
        K.act_forward(code(name), u, slopes, out)
        twin_slopes = slopes if name == "prelu" else None
        assert_twin(out, R.act_forward(name, u, twin_slopes), dtype)

        gu = np.full((B, n), np.nan, dtype)
        dslopes = np.full(len(slopes), np.nan, dtype)
        K.act_backward(code(name), u, slopes, g, gu, dslopes)
        want_gu, want_ds = R.act_backward(name, u, twin_slopes, g)
        assert_twin(gu, want_gu, dtype)
        if name == "prelu":
            # a sum over the batch: float32 accumulates B roundings
            assert_twin(dslopes, want_ds, dtype, rtol=rtol_for(dtype) * B)


def test_prelu_slope_gradient_by_finite_differences():
    rng = np.random.default_rng(5)
    u = rng.standard_normal((6, 4))
    g = rng.standard_normal((6, 4))
    slopes = rng.uniform(0.0, 0.5, 4)
    dslopes = np.zeros(4)
    K.act_backward(code("prelu"), u, slopes, g, np.zeros_like(u), dslopes)

    def f(s):
        out = np.empty_like(u)
        K.act_forward(code("prelu"), u, s, out)
        return float(np.sum(g * out))

    assert R.relative_error(dslopes, R.centered_difference(f, slopes)) < 1e-7


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_at_extreme_inputs(name, dtype):
    x = np.array([EXTREMES], dtype)
    if dtype == np.float64:
        x = np.concatenate([x, np.array([[5e-324, -5e-324] + [0.0] * (x.shape[1] - 2)])])
    slopes = np.full(x.shape[1], 0.25, dtype) if name == "prelu" else np.zeros(0, dtype)
    out = np.empty_like(x)
    gu = np.empty_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        K.act_forward(code(name), x, slopes, out)
        K.act_backward(code(name), x, slopes, np.ones_like(x), gu, np.zeros(len(slopes), dtype))
        want_a = R.act_forward(name, x, slopes if name == "prelu" else None)
        want_d = R.dphi(name, x, 0.25)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(gu))
    assert np.all(np.isfinite(want_a)) and np.all(np.isfinite(want_d))
    assert_twin(out, want_a, dtype)
    np.testing.assert_allclose(gu, want_d, rtol=rtol_for(dtype), atol=1e-12)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_scalar_phi_dphi_at_extremes(name):
    """The scalar kernels as called inside every loop, in float64."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for x in EXTREMES:
            p = K.phi(code(name), x, 0.25)
            d = K.dphi(code(name), x, 0.25)
            assert np.isfinite(p) and np.isfinite(d), (name, x)
            assert p == pytest.approx(float(R.phi(name, x, 0.25)), rel=1e-12, abs=1e-300)
            assert d == pytest.approx(float(R.dphi(name, x, 0.25)), rel=1e-12, abs=1e-15)


def test_saturation_limits():
    big = np.array([[300.0, -300.0]])
    for name, want in (("sigmoid", [0, 0]), ("tanh", [0, 0]), ("softsign", [1.1e-5, 1.1e-5])):
        gu = np.empty_like(big)
        K.act_backward(code(name), big, np.zeros(0), np.ones_like(big), gu, np.zeros(0))
        np.testing.assert_allclose(gu[0], want, atol=1e-6)
    out = np.empty_like(big)
    K.act_forward(code("sigmoid"), big, np.zeros(0), out)
    np.testing.assert_allclose(out[0], [1.0, 0.0], atol=1e-100)


def _fd_points(name):
    x = np.linspace(-5.0, 5.0, 401)
    if name in KINKED:
        x = x[np.abs(x) > 1e-3]
    return x


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dphi_by_finite_differences(name):
    """phi' of kernel and twin against centered differences of phi (h = 1e-5, float64).

    The denominator floor 1e-4 covers points where phi' crosses zero (GELU, SiLU)
    or vanishes (ReLU's left side), where the difference quotient is pure round-off.
    """
    h = 1e-5
    x = _fd_points(name)[None, :]
    slopes = np.full(x.shape[1], 0.25) if name == "prelu" else np.zeros(0)

    def kernel_phi(v):
        out = np.empty_like(v)
        K.act_forward(code(name), v, slopes, out)
        return out

    numeric = (kernel_phi(x + h) - kernel_phi(x - h)) / (2 * h)
    gu = np.empty_like(x)
    K.act_backward(code(name), x, slopes, np.ones_like(x), gu, np.zeros(len(slopes)))
    assert R.relative_error(gu, numeric, floor=1e-4) < 1e-6

    twin_numeric = (R.phi(name, x + h) - R.phi(name, x - h)) / (2 * h)
    assert R.relative_error(R.dphi(name, x), twin_numeric, floor=1e-4) < 1e-6


def test_kink_conventions():
    """At exactly 0 the kernels take the left derivative; the twins agree."""
    x = np.zeros((1, 1))
    for name, want in (("relu", 0.0), ("leaky_relu", K.LEAKY_SLOPE), ("prelu", 0.25),
                       ("elu", 1.0), ("selu", K.SELU_LAMBDA * K.SELU_ALPHA), ("softsign", 1.0)):
        gu = np.empty_like(x)
        slopes = np.full(1, 0.25) if name == "prelu" else np.zeros(0)
        K.act_backward(code(name), x, slopes, np.ones_like(x), gu, np.zeros(len(slopes)))
        assert gu[0, 0] == pytest.approx(want)
        assert float(R.dphi(name, 0.0)) == pytest.approx(want)


# -- dense ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_forward_backward_match_twin(dtype):
    rng = np.random.default_rng(1)
    for (B, n_in), n_out in zip(SHAPES, (1, 3, 1, 6, 12), strict=True):
        a = rng.standard_normal((B, n_in)).astype(dtype)
        W = rng.standard_normal((n_in, n_out)).astype(dtype)
        b = rng.standard_normal(n_out).astype(dtype)
        z = np.empty((B, n_out), dtype)
        K.dense_forward(a, W, b, z)
        assert_twin(z, R.dense_forward(a, W, b), dtype, rtol=rtol_for(dtype) * n_in)

        delta = rng.standard_normal((B, n_out)).astype(dtype)
        dW = np.full((n_in, n_out), np.nan, dtype)
        db = np.full(n_out, np.nan, dtype)
        before = rng.standard_normal((B, n_in)).astype(dtype)
        g_prev = before.copy()
        tmp = np.empty((B, n_in), dtype)
        K.dense_backward(a, W, delta, dW, db, g_prev, tmp, True)
        want_dW, want_db, want_g = R.dense_backward(a, W, delta)
        tol = rtol_for(dtype) * max(B, n_out)
        assert_twin(dW, want_dW, dtype, rtol=tol)
        assert_twin(db, want_db, dtype, rtol=tol)
        # g_prev accumulates: skips may already have added to dL/da_{k-1}
        assert_twin(g_prev, before + want_g, dtype, rtol=tol)

        untouched = before.copy()
        K.dense_backward(a, W, delta, dW, db, untouched, tmp, False)
        np.testing.assert_array_equal(untouched, before)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 12), n_in=st.integers(1, 12), n_out=st.integers(1, 12),
       act=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 2**16),
       wide=st.booleans())
def test_random_shapes_dense_act_batchnorm(B, n_in, n_out, act, seed, wide):
    """One layer's kernels in a row on random shapes, float64, against the twins."""
    rng = np.random.default_rng(seed)
    scale = 30.0 if wide else 1.0
    a = scale * rng.standard_normal((B, n_in))
    W = rng.standard_normal((n_in, n_out))
    b = rng.standard_normal(n_out)
    z = np.empty((B, n_out))
    K.dense_forward(a, W, b, z)
    u, xhat, mu, istd = _bn_buffers(B, n_out, np.float64)
    gamma = rng.uniform(0.5, 2.0, n_out)
    beta = rng.standard_normal(n_out)
    K.batchnorm_forward(z, gamma, beta, u, xhat, mu, istd, np.zeros(n_out), np.ones(n_out), True)
    slopes = slopes_for(act, n_out, np.float64, rng)
    out = np.empty_like(u)
    K.act_forward(code(act), u, slopes, out)
    want_u, cache, _, _ = R.batchnorm_forward(R.dense_forward(a, W, b), gamma, beta)
    twin_slopes = slopes if act == "prelu" else None
    assert_twin(out, R.act_forward(act, want_u, twin_slopes), np.float64, rtol=1e-9)

    g = rng.standard_normal((B, n_out))
    gu = np.empty_like(g)
    K.act_backward(code(act), u, slopes, g, gu, np.zeros(len(slopes)))
    delta = np.empty_like(g)
    K.batchnorm_backward(gu, xhat, istd, gamma, delta, np.empty(n_out), np.empty(n_out))
    want_gu, _ = R.act_backward(act, want_u, twin_slopes, g)
    want_delta, _, _ = R.batchnorm_backward(want_gu, cache, gamma)
    dW, db, g_prev = np.empty_like(W), np.empty_like(b), np.zeros_like(a)
    K.dense_backward(a, W, delta, dW, db, g_prev, np.empty_like(a), True)
    want_dW, want_db, want_g = R.dense_backward(a, W, want_delta)
    # batch norm's gradient is a difference of nearly equal terms: compare on its own scale
    scale = float(np.abs(want_gu).max()) * float(np.max(istd * gamma)) + 1e-300
    assert_twin(delta, want_delta, np.float64, rtol=1e-9, scale=scale)
    assert_twin(dW, want_dW, np.float64, rtol=1e-9,
                scale=scale * float(np.abs(a).max()) * B)
    assert_twin(g_prev, want_g, np.float64, rtol=1e-9,
                scale=scale * float(np.abs(W).max()) * n_out)


# -- batch norm ----------------------------------------------------------------------


def _bn_buffers(B, n, dtype):
    return (np.empty((B, n), dtype), np.empty((B, n), dtype), np.empty(n, dtype),
            np.empty(n, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_forward_matches_twin(dtype):
    rng = np.random.default_rng(2)
    for B, n in SHAPES:
        z = (2.0 + 3.0 * rng.standard_normal((B, n))).astype(dtype)
        gamma = rng.uniform(0.5, 2.0, n).astype(dtype)
        beta = rng.standard_normal(n).astype(dtype)
        rmean = rng.standard_normal(n).astype(dtype)
        rvar = rng.uniform(0.5, 2.0, n).astype(dtype)
        for training in (True, False):
            u, xhat, mu, istd = _bn_buffers(B, n, dtype)
            rm, rv = rmean.copy(), rvar.copy()
            K.batchnorm_forward(z, gamma, beta, u, xhat, mu, istd, rm, rv, training)
            want_u, (want_xhat, want_mu, want_istd), want_rm, want_rv = R.batchnorm_forward(
                z, gamma, beta, rmean, rvar, training)
            tol = rtol_for(dtype) * B * 10
            assert_twin(u, want_u, dtype, rtol=tol)
            assert_twin(xhat, want_xhat, dtype, rtol=tol)
            assert_twin(mu, want_mu, dtype, rtol=tol)
            assert_twin(istd, want_istd, dtype, rtol=tol)
            assert_twin(rm, want_rm, dtype, rtol=tol)
            assert_twin(rv, want_rv, dtype, rtol=tol)


def test_batchnorm_output_is_standardized():
    rng = np.random.default_rng(3)
    B, n = 64, 5
    z = 4.0 + 3.0 * rng.standard_normal((B, n))
    u, xhat, mu, istd = _bn_buffers(B, n, np.float64)
    K.batchnorm_forward(z, np.ones(n), np.zeros(n), u, xhat, mu, istd, np.zeros(n), np.ones(n),
                        True)
    np.testing.assert_allclose(u.mean(axis=0), 0.0, atol=1e-12)
    # biased variance of xhat is var / (var + eps)
    np.testing.assert_allclose(u.var(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_backward_matches_twin(dtype):
    rng = np.random.default_rng(4)
    for B, n in SHAPES:
        z = rng.standard_normal((B, n)).astype(dtype)
        gamma = rng.uniform(0.5, 2.0, n).astype(dtype)
        beta = rng.standard_normal(n).astype(dtype)
        u, xhat, mu, istd = _bn_buffers(B, n, dtype)
        K.batchnorm_forward(z, gamma, beta, u, xhat, mu, istd, np.zeros(n, dtype),
                            np.ones(n, dtype), True)
        gu = rng.standard_normal((B, n)).astype(dtype)
        delta = np.empty((B, n), dtype)
        dgamma = np.empty(n, dtype)
        dbeta = np.empty(n, dtype)
        K.batchnorm_backward(gu, xhat, istd, gamma, delta, dgamma, dbeta)
        _, cache, _, _ = R.batchnorm_forward(z, gamma, beta)
        want_delta, want_dgamma, want_dbeta = R.batchnorm_backward(gu, cache, gamma)
        tol = rtol_for(dtype) * B * 20
        assert_twin(delta, want_delta, dtype, rtol=tol)
        assert_twin(dgamma, want_dgamma, dtype, rtol=tol)
        assert_twin(dbeta, want_dbeta, dtype, rtol=tol)


def test_batchnorm_backward_by_finite_differences():
    rng = np.random.default_rng(6)
    B, n = 7, 3
    z = rng.standard_normal((B, n))
    gamma = rng.uniform(0.5, 2.0, n)
    beta = rng.standard_normal(n)
    weights = rng.standard_normal((B, n))  # L = sum(weights * u)

    def loss(z_, gamma_=gamma, beta_=beta):
        u, xhat, mu, istd = _bn_buffers(B, n, np.float64)
        K.batchnorm_forward(z_, gamma_, beta_, u, xhat, mu, istd, np.zeros(n), np.ones(n), True)
        return float(np.sum(weights * u))

    u, xhat, mu, istd = _bn_buffers(B, n, np.float64)
    K.batchnorm_forward(z, gamma, beta, u, xhat, mu, istd, np.zeros(n), np.ones(n), True)
    delta, dgamma, dbeta = np.empty((B, n)), np.empty(n), np.empty(n)
    K.batchnorm_backward(weights, xhat, istd, gamma, delta, dgamma, dbeta)
    assert R.relative_error(delta, R.centered_difference(loss, z), floor=1e-8) < 1e-6
    assert R.relative_error(dgamma, R.centered_difference(lambda g: loss(z, g), gamma)) < 1e-6
    assert R.relative_error(dbeta, R.centered_difference(lambda b: loss(z, gamma, b), beta)) \
        < 1e-6


def test_batchnorm_gradient_sums_to_zero_over_batch():
    rng = np.random.default_rng(7)
    B, n = 16, 6
    z = 3.0 * rng.standard_normal((B, n)) + 1.0
    u, xhat, mu, istd = _bn_buffers(B, n, np.float64)
    K.batchnorm_forward(z, np.ones(n), np.zeros(n), u, xhat, mu, istd, np.zeros(n), np.ones(n),
                        True)
    gu = rng.standard_normal((B, n))
    delta = np.empty((B, n))
    K.batchnorm_backward(gu, xhat, istd, np.ones(n), delta, np.empty(n), np.empty(n))
    np.testing.assert_allclose(delta.sum(axis=0), 0.0, atol=1e-12 * np.abs(delta).max() * B)
    # shifting a feature's z by a constant cannot change u (hence the zero sum above), and
    # neither can scaling it (up to eps): the gradient is also orthogonal to xhat
    np.testing.assert_allclose((delta * xhat).sum(axis=0), 0.0, atol=1e-3)


def test_batchnorm_batch_of_one_is_finite():
    z = np.array([[3.0, -2.0]])
    u, xhat, mu, istd = _bn_buffers(1, 2, np.float64)
    rm, rv = np.zeros(2), np.ones(2)
    K.batchnorm_forward(z, np.ones(2), np.array([0.5, -0.5]), u, xhat, mu, istd, rm, rv, True)
    np.testing.assert_array_equal(u, [[0.5, -0.5]])
    delta = np.empty((1, 2))
    K.batchnorm_backward(np.ones((1, 2)), xhat, istd, np.ones(2), delta, np.empty(2),
                         np.empty(2))
    np.testing.assert_array_equal(delta, 0.0)
    assert np.all(np.isfinite(rv))


# -- losses --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_xent_matches_twin(dtype):
    rng = np.random.default_rng(8)
    for B, Kc in ((1, 2), (1, 5), (7, 3), (32, 10)):
        o = (2.0 * rng.standard_normal((B, Kc))).astype(dtype)
        labels = rng.integers(0, Kc, 3 * B)
        idx = rng.permutation(3 * B)[:B].astype(np.int64)  # labels are looked up via idx
        delta = np.full((B, Kc), np.nan, dtype)
        loss, correct = K.softmax_xent(o, labels, idx, delta)
        want_loss, want_delta, want_correct = R.softmax_xent(o, labels[idx])
        assert loss == pytest.approx(want_loss, rel=rtol_for(dtype) * 10)
        assert_twin(delta, want_delta, dtype)
        assert correct == want_correct


def test_softmax_xent_huge_logits_stay_finite():
    o = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3e3]])
    delta = np.empty_like(o)
    loss, correct = K.softmax_xent(o, np.array([1, 1]), np.array([0, 1]), delta)
    assert loss == pytest.approx(2e4 / 2)
    assert correct == 1
    assert np.all(np.isfinite(delta))
    assert R.softmax_xent(o, [1, 1])[0] == pytest.approx(loss)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_matches_twin(dtype):
    rng = np.random.default_rng(9)
    for B, Kc in ((1, 1), (1, 4), (6, 1), (20, 3)):
        o = rng.standard_normal((B, Kc)).astype(dtype)
        targets = rng.standard_normal((2 * B, Kc)).astype(dtype)
        labels = rng.integers(0, Kc, 2 * B)
        idx = rng.permutation(2 * B)[:B].astype(np.int64)
        delta = np.empty((B, Kc), dtype)
        loss, correct = K.mse_loss(o, targets, labels, idx, delta)
        want_loss, want_delta, want_correct = R.mse_loss(o, targets[idx], labels[idx])
        assert loss == pytest.approx(want_loss, rel=rtol_for(dtype) * 10)
        assert_twin(delta, want_delta, dtype)
        assert correct == want_correct
        # no labels (regression): nothing is counted
        _, none = K.mse_loss(o, targets, np.zeros(0, np.int64), idx, delta)
        assert none == 0


def test_losses_by_finite_differences():
    rng = np.random.default_rng(10)
    B, Kc = 5, 4
    o = rng.standard_normal((B, Kc))
    labels = rng.integers(0, Kc, B)
    targets = rng.standard_normal((B, Kc))
    idx = np.arange(B)
    delta = np.empty_like(o)
    K.softmax_xent(o, labels, idx, delta)
    numeric = R.centered_difference(
        lambda v: K.softmax_xent(v, labels, idx, np.empty_like(v))[0], o)
    assert R.relative_error(delta, numeric) < 1e-7
    K.mse_loss(o, targets, labels, idx, delta)
    numeric = R.centered_difference(
        lambda v: K.mse_loss(v, targets, labels, idx, np.empty_like(v))[0], o)
    assert R.relative_error(delta, numeric) < 1e-7


# -- optimizer -----------------------------------------------------------------------

OPTS = {"sgd": K.OPT_SGD, "momentum": K.OPT_MOMENTUM, "rmsprop": K.OPT_RMSPROP,
        "adam": K.OPT_ADAM}


def _hyper(lr=0.05, momentum=0.9, beta1=0.9, beta2=0.99, eps=1e-8, wd=0.0, clip_norm=0.0,
           clip_value=0.0, t=1):
    h = np.zeros(K.N_HYPER)
    h[K.H_LR], h[K.H_MOMENTUM], h[K.H_BETA1], h[K.H_BETA2] = lr, momentum, beta1, beta2
    h[K.H_EPS], h[K.H_WD], h[K.H_CLIP_NORM], h[K.H_CLIP_VALUE], h[K.H_T] = (
        eps, wd, clip_norm, clip_value, t)
    return h


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("wd,clip_value,scale", [(0.0, 0.0, 1.0), (0.1, 0.3, 0.5)])
def test_update_params_matches_twin(opt, dtype, wd, clip_value, scale):
    rng = np.random.default_rng(11)
    n = 40
    params = rng.standard_normal(n).astype(dtype)
    m1 = (0.1 * rng.standard_normal(n)).astype(dtype)
    m2 = rng.uniform(0.0, 0.1, n).astype(dtype)
    mask = (rng.random(n) < 0.6).astype(np.int8)
    elem_layer = rng.integers(-1, 3, n).astype(np.int32)
    p_ref, m1_ref, m2_ref = params.copy(), m1.copy(), m2.copy()
    for t in (1, 2, 3):
        grads = rng.standard_normal(n).astype(dtype)
        h = _hyper(wd=wd, clip_value=clip_value, t=t)
        upd_sq = np.full(4, np.nan)
        K.update_params(OPTS[opt], params, grads, m1, m2, h, mask, elem_layer, upd_sq, scale)
        p_ref, m1_ref, m2_ref, step = R.optimizer_update(
            opt, p_ref, scale * grads.astype(np.float64), m1_ref, m2_ref, lr=0.05, t=t,
            momentum=0.9, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=wd,
            clip_value=clip_value, decay_mask=mask)
        tol = rtol_for(dtype) * 10
        assert_twin(params, p_ref, dtype, rtol=tol)
        assert_twin(m1, m1_ref, dtype, rtol=tol)
        assert_twin(m2, m2_ref, dtype, rtol=tol)
        want_sq = [np.sum(step[elem_layer == k] ** 2) for k in range(4)]
        np.testing.assert_allclose(upd_sq, want_sq, rtol=1e-3 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_grad_norm_and_norm_clipping(dtype):
    rng = np.random.default_rng(12)
    net = Network(NetworkSpec(3, 2, hidden=(LayerSpec(4, "tanh"),)), dtype=dtype)
    grads = (10.0 * rng.standard_normal(net.n_params)).astype(dtype)
    norm = K.global_grad_norm(grads)
    assert norm == pytest.approx(np.linalg.norm(grads.astype(np.float64)), rel=1e-6)
    for theta in (0.0, 1.0, 1e6):
        params = net.params_flat.copy()
        upd_sq = np.zeros(net.L + 2)
        stats = np.zeros((net.L + 2, K.N_STATS))
        K.apply_update(K.OPT_SGD, net.lay, net.skp, params, grads.copy(), np.zeros_like(params),
                       np.zeros_like(params), net.params0, _hyper(lr=1.0, clip_norm=theta),
                       net.decay_mask, net.elem_layer, upd_sq, net.L, stats)
        step = net.params_flat.astype(np.float64) - params
        want = R.clip_global_norm(grads, theta)
        assert_twin(step, want, dtype, rtol=rtol_for(dtype) * 10)
        if 0 < theta < norm:
            assert np.linalg.norm(step) == pytest.approx(theta, rel=1e-5)
        # per-layer update norms and ||W|| come out of the same call
        for k in (1, 2):
            W_step = net.view(step, f"W{k}")
            assert stats[k, K.S_UPDATE] == pytest.approx(np.linalg.norm(W_step), rel=1e-4)


# -- whole-layer kernels through a real layout -------------------------------------------


def _mixed_spec(loss="cross_entropy"):
    hidden = (LayerSpec(4, "prelu", batchnorm=True), LayerSpec(4, "tanh"),
              LayerSpec(3, "gelu", batchnorm=True), LayerSpec(5, "elu"))
    return NetworkSpec(3, 3, hidden=hidden, skips=((0, 2), (1, 2), (2, 4), (0, 3)), loss=loss)


def _batch(rng, B, spec, dtype):
    X = rng.standard_normal((B, spec.input_dim)).astype(dtype)
    y = rng.integers(0, spec.output_dim, B)
    return X, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_forward_and_backward_pass_match_twin(dtype, loss):
    spec = _mixed_spec(loss)
    rng = np.random.default_rng(13)
    net = Network(spec, seed=3, dtype=dtype)
    for B in (1, 8):
        X, y = _batch(rng, B, spec, dtype)
        labels, targets = net.prepare_targets(y)
        idx = np.arange(B, dtype=np.int64)
        net.ensure_batch(B)
        K.load_batch(net.lay, net._ws, X, idx, B)
        np.testing.assert_array_equal(net.block(0, K.C_A), X)
        stats = np.zeros((net.L + 2, K.N_STATS))
        running = net.running.copy()
        assert K.forward_pass(net.lay, net.skp, net.params_flat, net._ws, running, B, net.L,
                              True, stats) == 0
        fw = R.reference_forward(spec, net.params, X)
        # float32 at its own precision: over 60 draws of this net the worst relative error
        # (to the largest entry of each array) is 1.2e-6, so 2e-5 leaves room for other
        # CPUs while a 0.1 % error in any derivative fails; float64 keeps its margin
        f64 = np.dtype(dtype) == np.float64
        tol = rtol_for(dtype) * (50 if f64 else 1)
        grad_tol = tol * (10 if f64 else 1)
        for k in range(1, net.L + 2):
            assert_twin(net.block(k, K.C_A), fw["a"][k], dtype, rtol=tol)
            assert stats[k, K.S_ACT_MEAN] == pytest.approx(fw["a"][k].mean(), abs=1e-4)
        loss_value, _ = K.loss_and_delta(net.lay, net.skp, net._ws, B, net.L, net.loss_code, labels,
                                         targets, idx)
        assert K.backward_pass(net.lay, net.skp, net.params_flat, net.grads_flat, net._ws, B,
                               net.L, stats) == 0
        want_loss, grads, deltas = R.reference_loss_and_gradients(spec, net.params, X, y)
        assert loss_value == pytest.approx(want_loss, rel=tol)
        gscale = max(float(np.max(np.abs(g))) for g in grads.values())
        # a bias in front of batch norm has gradient 0: what is left is rounding noise
        # of the size of the whole gradient
        bn_bias = {f"b{k}" for k, h in enumerate(spec.hidden, start=1) if h.batchnorm}
        for name, g in grads.items():
            scale = (gscale if name in bn_bias
                     else max(float(np.max(np.abs(g))), 1e-3 * gscale))
            assert_twin(net.grad_arrays[name], g, dtype, rtol=grad_tol, scale=scale)
        for k, d in enumerate(deltas, start=1):
            assert_twin(net.block(k, K.C_D), d, dtype, rtol=grad_tol)
            assert stats[k, K.S_DELTA] == pytest.approx(np.linalg.norm(d), rel=grad_tol)
            assert stats[k, K.S_GRAD_W] == pytest.approx(np.linalg.norm(grads[f"W{k}"]),
                                                         rel=grad_tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_layer_eval_mode_uses_running_averages(dtype):
    spec = _mixed_spec()
    net = Network(spec, seed=4, dtype=dtype)
    rng = np.random.default_rng(14)
    X, _ = _batch(rng, 6, spec, dtype)
    running = net.running.copy()
    running[:] = rng.uniform(0.5, 1.5, running.shape).astype(dtype)
    net.running[:] = running
    out = net.predict(X)
    run = {k: (net.running[net.lay[k, K.C_RMEAN]:net.lay[k, K.C_RMEAN] + spec.widths[k]],
               net.running[net.lay[k, K.C_RVAR]:net.lay[k, K.C_RVAR] + spec.widths[k]])
           for k in (1, 3)}
    want = R.reference_outputs(spec, net.params, X, training=False, running=run)
    assert_twin(out, want, dtype, rtol=rtol_for(dtype) * 100)
    np.testing.assert_array_equal(net.running, running)  # evaluation never moves them


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_train_step_and_train_steps_match_twin(dtype, opt):
    spec = _mixed_spec()
    rng = np.random.default_rng(15)
    net = Network(spec, seed=5, dtype=dtype)
    n, B = 20, 5
    X = rng.standard_normal((n, 3)).astype(dtype)
    y = rng.integers(0, 3, n)
    labels, targets = net.prepare_targets(y)
    batches = np.stack([rng.permutation(n)[:B] for _ in range(3)]).astype(np.int64)

    def fresh():
        return (net.params_flat.copy(), np.zeros(net.n_params, dtype),
                np.zeros(net.n_params, dtype), net.running.copy())

    hyper = _hyper(lr=0.05, wd=0.01, clip_norm=2.0, t=1)
    # fused multi-step kernel
    p, m1, m2, running = fresh()
    grads = np.zeros_like(p)
    net.ensure_batch(B)
    stats = np.zeros((net.L + 2, K.N_STATS))
    hist = np.zeros((3, net.L + 2, K.N_STATS))
    hout = np.zeros((3, 2))
    done, status = K.train_steps(net.lay, net.skp, p, grads, net._ws, running, net.params0, m1,
                                 m2, net.decay_mask, net.elem_layer, np.zeros(net.L + 2), X,
                                 labels, targets, batches, B, net.L, K.LOSS_XENT, OPTS[opt],
                                 hyper.copy(), stats, np.zeros(2), hist, hout)
    assert (done, status) == (3, 0)
    # one train_step at a time
    p1, m1b, m2b, running1 = fresh()
    for s in range(3):
        out = np.zeros(2)
        h = hyper.copy()
        h[K.H_T] = 1 + s
        assert K.train_step(net.lay, net.skp, p1, np.zeros_like(p1), net._ws, running1,
                            net.params0, m1b, m2b, net.decay_mask, net.elem_layer,
                            np.zeros(net.L + 2), X, labels, targets, batches[s], B, net.L,
                            K.LOSS_XENT, OPTS[opt], h, stats, out) == 0
        assert out[0] == hout[s, 0]
    np.testing.assert_array_equal(p, p1)
    np.testing.assert_array_equal(running, running1)
    # the twin: reference gradients, then the reference optimizer
    q, r1, r2 = net.params_flat.astype(np.float64), np.zeros(net.n_params), np.zeros(
        net.n_params)
    for s in range(3):
        params = {name: net.view(q, name) for name in net.param_names}
        loss, g, _ = R.reference_loss_and_gradients(spec, params, X[batches[s]],
                                                    y[batches[s]])
        assert hout[s, 0] == pytest.approx(loss, rel=rtol_for(dtype) * 100)
        flat_g = np.zeros(net.n_params)
        for name, v in g.items():
            net.view(flat_g, name)[...] = v
        q, r1, r2, _ = R.optimizer_update(opt, q, flat_g, r1, r2, lr=0.05, t=1 + s,
                                          beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.01,
                                          clip_norm=2.0, decay_mask=net.decay_mask)
    if dtype == np.float32 and opt == "adam":
        # The bias in front of batch norm has gradient 0 in theory, round-off in practice,
        # and Adam divides by sqrt(v): it takes a full-size step in a random direction.
        # Compare everything else.
        for k in (1, 3):
            net.view(p, f"b{k}")[...] = net.view(q, f"b{k}")
    assert_twin(p, q, dtype, rtol=1e-9 if dtype == np.float64 else 2e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_stats_match_numpy(dtype):
    net = Network(_mixed_spec(), seed=6, dtype=dtype)
    rng = np.random.default_rng(16)
    params = net.params_flat + (0.1 * rng.standard_normal(net.n_params)).astype(dtype)
    stats = np.zeros((net.L + 2, K.N_STATS))
    assert K.weight_stats(net.lay, params, net.params0, net.L, stats) == 0
    for k in range(1, net.L + 2):
        W = net.view(params, f"W{k}").astype(np.float64)
        W0 = net.view(net.params0, f"W{k}").astype(np.float64)
        assert stats[k, K.S_W] == pytest.approx(np.linalg.norm(W), rel=1e-5)
        assert stats[k, K.S_W0] == pytest.approx(np.linalg.norm(W0), rel=1e-5)
        assert stats[k, K.S_CHANGE] == pytest.approx(np.linalg.norm(W - W0), rel=1e-4)
    net.view(params, "W3")[0, 0] = np.inf
    assert K.weight_stats(net.lay, params, net.params0, net.L, stats) == 3


def test_norms_of_huge_finite_float32_values_stay_finite():
    """Squares are summed in float64: 1e20 is a finite float32 whose square is not."""
    x = np.array([1e20, -1e20, 1.0], np.float32)
    assert K.global_grad_norm(x) == pytest.approx(np.sqrt(2) * 1e20, rel=1e-6)
    net = Network(NetworkSpec(2, 2, hidden=(LayerSpec(2, "tanh"),)), dtype=np.float32)
    params = net.params_flat.copy()
    net.view(params, "W1")[0, 0] = 1e20
    stats = np.zeros((net.L + 2, K.N_STATS))
    assert K.weight_stats(net.lay, params, net.params0, net.L, stats) == 0
    assert stats[1, K.S_W] == pytest.approx(1e20, rel=1e-6)


def test_train_step_reports_first_non_finite_layer():
    spec = _mixed_spec()
    net = Network(spec, seed=7, dtype=np.float64)
    X = np.ones((4, 3))
    labels, targets = net.prepare_targets(np.array([0, 1, 2, 0]))
    net.ensure_batch(4)
    net.params["W2"][0, 0] = np.nan
    before = net.params_flat.copy()
    status = K.train_step(net.lay, net.skp, net.params_flat, net.grads_flat, net._ws,
                          net.running, net.params0, np.zeros(net.n_params),
                          np.zeros(net.n_params), net.decay_mask, net.elem_layer,
                          np.zeros(net.L + 2), X, labels, targets, np.arange(4), 4, net.L,
                          K.LOSS_XENT, K.OPT_SGD, _hyper(), net.stats, np.zeros(2))
    assert status == K.ST_FORWARD * 10000 + 2
    np.testing.assert_array_equal(net.params_flat, before)  # no update after a failure


@pytest.mark.slow
def test_kernels_pass_as_plain_python():
    """The same checks with NUMBA_DISABLE_JIT=1: the kernels are ordinary Python too."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider",
         "tests/simulator/test_kernels.py", "-k", "not random_shapes"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_never_stores_a_non_finite_weight(dtype):
    """A step that would overflow leaves the weight as it was and names its layer."""
    spec = NetworkSpec(3, 2, hidden=(LayerSpec(4, "tanh"), LayerSpec(5, "relu")),
                       skips=((0, 2),))
    net = Network(spec, dtype=dtype)
    params = net.params_flat.copy()
    grads = np.zeros(net.n_params, dtype)
    W2 = net.view(grads, "W2")
    W2[1, 2] = np.finfo(dtype).max  # times lr = 10 overflows
    P = net.view(grads, "P0_2")
    upd_sq = np.zeros(net.L + 2)
    stats = np.zeros((net.L + 2, K.N_STATS))
    bad = K.apply_update(K.OPT_SGD, net.lay, net.skp, params, grads, np.zeros_like(params),
                         np.zeros_like(params), net.params0, _hyper(lr=10.0),
                         net.decay_mask, net.elem_layer, upd_sq, net.L, stats)
    assert bad == 2
    assert np.all(np.isfinite(params))
    assert np.array_equal(params, net.params_flat)
    # a projection's parameters count for the layer the skip ends at
    grads[:] = 0
    P[0, 0] = np.finfo(dtype).max
    bad = K.apply_update(K.OPT_SGD, net.lay, net.skp, params, grads, np.zeros_like(params),
                         np.zeros_like(params), net.params0, _hyper(lr=10.0),
                         net.decay_mask, net.elem_layer, upd_sq, net.L, stats)
    assert bad == 2
    assert np.all(np.isfinite(params))
