"""Numba kernels: the arithmetic of forward, loss, backward and update, one layer at a time.

Everything here takes arrays and scalars only (no globals beyond integer
constants, which numba freezes at compile time) and works in place on
preallocated C-contiguous buffers. The network lives in three flat buffers:

* ``params`` / ``grads``: every parameter, back to back; ``lay`` gives offsets.
* ``ws``: the per-batch workspace (z, u, a, dL/da, dL/du, delta, xhat, ...),
  each block ``B * width`` long; offsets in ``lay`` are per example and get
  multiplied by the batch size ``B`` here, so one layout serves any batch.

``lay`` is an int64 table with one row per layer 0..L+1 and the ``C_*``
columns below; ``skp`` has one row (from, to, P offset or -1) per skip link.

The micro-step path (Python calls ``forward_layer`` for each k, then
``loss_and_delta`` ...) and the fused ``train_step`` call the very same
functions, so stepping through backprop shows exactly what training does.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import config, njit

# activation codes (order matches spec.ACTIVATIONS)
SIGMOID, TANH, RELU, LEAKY_RELU, PRELU, ELU, SELU, GELU, SILU, SOFTSIGN, LINEAR = range(11)

LEAKY_SLOPE = 0.01
SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
SATURATION_THRESHOLD = 1e-3

# columns of the layout table
(C_WIDTH, C_ACT, C_BN, C_W, C_B, C_GAMMA, C_BETA, C_ALPHA, C_Z, C_U, C_A, C_G, C_GU, C_D,
 C_XHAT, C_MU, C_ISTD, C_TMP, C_RMEAN, C_RVAR, C_DP) = range(21)
N_COLS = 21

# columns of the per-layer statistics table (one row per layer 0..L+1)
(S_DELTA, S_GRAD_W, S_GRAD_B, S_W, S_UPDATE, S_CHANGE, S_W0, S_DEAD, S_SAT, S_ACT_MEAN,
 S_ACT_STD, S_G) = range(12)
# The chain rule one layer at a time (hidden layers only; NaN for the output layer).
# g_k = delta_{k+1} W_{k+1}^T is what arrives through the weights above, s_k what
# arrives through skip links leaving k, G_k = g_k + s_k = dL/da_k, gu_k = phi'(u_k) * G_k:
#   S_G_DENSE = ||g_k||, S_G_SKIP = ||s_k||
#   S_WEIGHT_FACTOR = ||g_k|| / ||delta_{k+1}||      (what the weights do)
#   S_LOCAL_FACTOR  = ||phi'(u_k) * G_k|| / ||G_k||  (what phi' does)
#   S_NORM_FACTOR   = ||delta_k|| / ||gu_k||         (batch norm's backward; NaN without)
#   S_SKIP_SHARE    = ||s_k|| / (||g_k|| + ||s_k||)  (0 when no skip leaves k)
# Without batch norm and skips, weight x local = ||delta_k|| / ||delta_{k+1}|| exactly.
(S_G_DENSE, S_G_SKIP, S_WEIGHT_FACTOR, S_LOCAL_FACTOR, S_NORM_FACTOR,
 S_SKIP_SHARE) = range(12, 18)
N_STATS = 18

# optimizers and losses
OPT_SGD, OPT_MOMENTUM, OPT_RMSPROP, OPT_ADAM = range(4)
LOSS_XENT, LOSS_MSE = range(2)

# hyper-parameter vector for train_step
(H_LR, H_MOMENTUM, H_BETA1, H_BETA2, H_EPS, H_WD, H_CLIP_NORM, H_CLIP_VALUE, H_T) = range(9)
N_HYPER = 9

# status codes of train_step: 0 fine, else PHASE * 10000 + layer
ST_FORWARD, ST_LOSS, ST_BACKWARD, ST_GRAD, ST_UPDATE = 1, 2, 3, 4, 5

_opts = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")
# Sums of squares may be reassociated so LLVM can vectorize them; NaN and Inf still
# propagate (no 'nnan'/'ninf'), which divergence detection relies on.
_reduce_opts = dict(_opts, fastmath={"reassoc"})


def _kernel(fn, opts=None):
    """``njit`` with the options above. Under NUMBA_DISABLE_JIT=1 the loops run as plain
    Python on numpy scalars, which warn on overflow where compiled code quietly gives
    inf (as a diverging run must); silence that so both modes behave alike."""
    if not config.DISABLE_JIT:
        return njit(**(opts or _opts))(fn)

    @functools.wraps(fn)
    def plain(*args):
        with np.errstate(all="ignore"):
            return fn(*args)

    return plain


def _reduction(fn):
    return _kernel(fn, _reduce_opts)


# ---------------------------------------------------------------------------
# activations, elementwise


@_kernel
def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@_kernel
def phi(code, x, slope):
    """phi(x) for activation ``code``; ``slope`` is the PReLU unit's learned slope."""
    if code == SIGMOID:
        return _sigmoid(x)
    if code == TANH:
        return math.tanh(x)
    if code == RELU:
        return x if x > 0 else 0.0 * x
    if code == LEAKY_RELU:
        return x if x > 0 else LEAKY_SLOPE * x
    if code == PRELU:
        return x if x > 0 else slope * x
    if code == ELU:
        return x if x > 0 else math.expm1(x)
    if code == SELU:
        return SELU_LAMBDA * (x if x > 0 else SELU_ALPHA * math.expm1(x))
    if code == GELU:
        return 0.5 * x * (1.0 + math.erf(x * 0.7071067811865476))
    if code == SILU:
        return x * _sigmoid(x)
    if code == SOFTSIGN:
        return x / (1.0 + abs(x))
    return x


@_kernel
def dphi(code, x, slope):
    """phi'(x). At the ReLU kink the derivative is taken as 0 (as PyTorch does)."""
    if code == SIGMOID:
        s = _sigmoid(x)
        return s * (1.0 - s)
    if code == TANH:
        t = math.tanh(x)
        return 1.0 - t * t
    if code == RELU:
        return 1.0 if x > 0 else 0.0
    if code == LEAKY_RELU:
        return 1.0 if x > 0 else LEAKY_SLOPE
    if code == PRELU:
        return 1.0 if x > 0 else slope
    if code == ELU:
        return 1.0 if x > 0 else math.exp(x)
    if code == SELU:
        return SELU_LAMBDA if x > 0 else SELU_LAMBDA * SELU_ALPHA * math.exp(x)
    if code == GELU:
        # d/dx x Phi(x) = Phi(x) + x phi_N(x)
        return 0.5 * (1.0 + math.erf(x * 0.7071067811865476)) + x * 0.3989422804014327 * math.exp(
            -0.5 * x * x
        )
    if code == SILU:
        s = _sigmoid(x)
        return s + x * s * (1.0 - s)
    if code == SOFTSIGN:
        d = 1.0 + abs(x)
        return 1.0 / (d * d)
    return 1.0


@_kernel
def act_forward_dp(code, u, slopes, out, dp):
    """out = phi(u) and dp = phi'(u) in one pass, one loop per activation (no
    branch on the activation inside the loops). The backward pass and the
    saturation statistics reuse dp instead of evaluating phi' again."""
    B, n = u.shape
    if code == SIGMOID:
        for i in range(B):
            for j in range(n):
                x = u[i, j]
                # e = exp(-|x|) never overflows; s' = e / (1 + e)^2 keeps full
                # relative precision in the tails
                e = math.exp(-abs(x))
                r = 1.0 / (1.0 + e)
                out[i, j] = r if x >= 0 else e * r
                dp[i, j] = e * r * r
    elif code == TANH:
        for i in range(B):
            for j in range(n):
                t = math.tanh(u[i, j])
                out[i, j] = t
                dp[i, j] = 1.0 - t * t
    elif code == RELU:
        for i in range(B):
            for j in range(n):
                x = u[i, j]
                out[i, j] = x if x > 0 else 0.0 * x  # 0 * x keeps a NaN visible
                dp[i, j] = 1.0 if x > 0 else 0.0
    elif code == LEAKY_RELU:
        for i in range(B):
            for j in range(n):
                x = u[i, j]
                out[i, j] = x if x > 0 else LEAKY_SLOPE * x
                dp[i, j] = 1.0 if x > 0 else LEAKY_SLOPE
    elif code == PRELU:
        for i in range(B):
            for j in range(n):
                x = u[i, j]
                out[i, j] = x if x > 0 else slopes[j] * x
                dp[i, j] = 1.0 if x > 0 else slopes[j]
    elif code == ELU or code == SELU:
        scale = SELU_LAMBDA if code == SELU else 1.0
        alpha = SELU_ALPHA if code == SELU else 1.0
        for i in range(B):
            for j in range(n):
                x = u[i, j]
                m = min(x, 0.0)
                out[i, j] = scale * (x if x > 0 else alpha * math.expm1(m))
                dp[i, j] = scale * (1.0 if x > 0 else alpha * math.exp(m))
    elif code == GELU:
        for i in range(B):
            for j in range(n):
                x = u[i, j]
                cdf = 0.5 * (1.0 + math.erf(x * 0.7071067811865476))
                out[i, j] = x * cdf
                # d/dx x Phi(x) = Phi(x) + x phi_N(x)
                dp[i, j] = cdf + x * 0.3989422804014327 * math.exp(-0.5 * x * x)
    elif code == SILU:
        for i in range(B):
            for j in range(n):
                x = u[i, j]
                e = math.exp(-abs(x))
                r = 1.0 / (1.0 + e)
                sg = r if x >= 0 else e * r
                out[i, j] = x * sg
                dp[i, j] = sg + x * e * r * r
    elif code == SOFTSIGN:
        for i in range(B):
            for j in range(n):
                x = u[i, j]
                d = 1.0 + abs(x)
                out[i, j] = x / d
                dp[i, j] = 1.0 / (d * d)
    else:
        for i in range(B):
            for j in range(n):
                out[i, j] = u[i, j]
                dp[i, j] = 1.0


@_kernel
def act_backward_dp(code, u, slopes, dp, g, gu, dslopes):
    """gu = g * phi'(u) from the stored dp; for PReLU also dslopes[j] = sum_b g min(u, 0)."""
    B, n = u.shape
    for i in range(B):
        for j in range(n):
            gu[i, j] = g[i, j] * dp[i, j]
    if code == PRELU:
        for j in range(n):
            dslopes[j] = 0.0
        for i in range(B):
            for j in range(n):
                x = u[i, j]
                if x <= 0:
                    dslopes[j] += g[i, j] * x


@_kernel
def act_forward(code, u, slopes, out):
    """out = phi(u) elementwise; u, out (B, n); slopes (n,) for PReLU (ignored otherwise)."""
    act_forward_dp(code, u, slopes, out, np.empty_like(out))


@_kernel
def act_backward(code, u, slopes, g, gu, dslopes):
    """gu = g * phi'(u); for PReLU also dslopes[j] = sum_b g * min(u, 0)."""
    dp = np.empty_like(gu)
    act_forward_dp(code, u, slopes, np.empty_like(gu), dp)
    act_backward_dp(code, u, slopes, dp, g, gu, dslopes)


# ---------------------------------------------------------------------------
# dense layer and batch norm


@_kernel
def dense_forward(a_prev, W, b, z):
    """z = a_prev W + b."""
    np.dot(a_prev, W, z)
    B, n = z.shape
    for i in range(B):
        for j in range(n):
            z[i, j] += b[j]


@_kernel
def dense_backward(a_prev, W, delta, dW, db, g_prev, tmp, want_g_prev):
    """dW = a_prev^T delta, db = sum_b delta, g_prev += delta W^T (if want_g_prev)."""
    np.dot(a_prev.T, delta, dW)
    B, n = delta.shape
    for j in range(n):
        db[j] = 0.0
    for i in range(B):
        for j in range(n):
            db[j] += delta[i, j]
    if want_g_prev:
        np.dot(delta, W.T, tmp)
        B2, m = tmp.shape
        for i in range(B2):
            for j in range(m):
                g_prev[i, j] += tmp[i, j]


@_kernel
def batchnorm_forward(z, gamma, beta, u, xhat, mu, istd, rmean, rvar, training):
    """Ioffe & Szegedy 2015. Training: batch mean and biased variance; the running
    averages (unbiased variance, momentum 0.1) are updated for evaluation."""
    B, n = z.shape
    for j in range(n):
        if training:
            m = 0.0
            for i in range(B):
                m += z[i, j]
            m /= B
            v = 0.0
            for i in range(B):
                d = z[i, j] - m
                v += d * d
            v /= B
            mu[j] = m
            istd[j] = 1.0 / math.sqrt(v + BN_EPS)
            unbiased = v * B / (B - 1) if B > 1 else v
            rmean[j] = (1.0 - BN_MOMENTUM) * rmean[j] + BN_MOMENTUM * m
            rvar[j] = (1.0 - BN_MOMENTUM) * rvar[j] + BN_MOMENTUM * unbiased
        else:
            mu[j] = rmean[j]
            istd[j] = 1.0 / math.sqrt(rvar[j] + BN_EPS)
        for i in range(B):
            xh = (z[i, j] - mu[j]) * istd[j]
            xhat[i, j] = xh
            u[i, j] = gamma[j] * xh + beta[j]


@_kernel
def batchnorm_backward(gu, xhat, istd, gamma, delta, dgamma, dbeta):
    """delta = dL/dz from gu = dL/du (training mode):
    delta = gamma istd / B * (B gu - sum gu - xhat sum(gu xhat))."""
    B, n = gu.shape
    for j in range(n):
        s1 = 0.0
        s2 = 0.0
        for i in range(B):
            s1 += gu[i, j]
            s2 += gu[i, j] * xhat[i, j]
        dbeta[j] = s1
        dgamma[j] = s2
        c = gamma[j] * istd[j] / B
        for i in range(B):
            delta[i, j] = c * (B * gu[i, j] - s1 - xhat[i, j] * s2)


# ---------------------------------------------------------------------------
# losses


@_kernel
def softmax_xent(o, labels, idx, delta):
    """Mean softmax cross-entropy of logits o (B, K) against labels[idx[b]].
    delta = dL/do = (softmax - onehot) / B. Returns (loss, number correct)."""
    B, K = o.shape
    total = 0.0
    correct = 0
    for b in range(B):
        m = o[b, 0]
        best = 0
        for c in range(1, K):
            if o[b, c] > m:
                m = o[b, c]
                best = c
        s = 0.0
        for c in range(K):
            s += math.exp(o[b, c] - m)
        lse = m + math.log(s)
        y = labels[idx[b]]
        total += lse - o[b, y]
        if best == y:
            correct += 1
        for c in range(K):
            p = math.exp(o[b, c] - lse)
            delta[b, c] = (p - (1.0 if c == y else 0.0)) / B
    return total / B, correct


@_kernel
def mse_loss(o, targets, labels, idx, delta):
    """Mean over all elements of (o - y)^2; delta = 2 (o - y) / (B K).
    If labels are given (classification with MSE), also counts argmax hits."""
    B, K = o.shape
    total = 0.0
    correct = 0
    inv = 2.0 / (B * K)
    for b in range(B):
        r = idx[b]
        best = 0
        for c in range(K):
            d = o[b, c] - targets[r, c]
            total += d * d
            delta[b, c] = inv * d
            if o[b, c] > o[b, best]:
                best = c
        if labels.shape[0] > 0 and best == labels[r]:
            correct += 1
    return total / (B * K), correct


# ---------------------------------------------------------------------------
# helpers to view blocks of the flat buffers


@_kernel
def _mat(buf, off, rows, cols):
    return buf[off:off + rows * cols].reshape((rows, cols))


@_kernel
def _vec(buf, off, n):
    return buf[off:off + n]


@_reduction
def _norm2(x):
    # square in float64: a finite float32 above 1.8e19 would overflow to inf in float32
    s = 0.0
    y = x.ravel()
    for i in range(y.shape[0]):
        w = np.float64(y[i])
        s += w * w
    return s


# ---------------------------------------------------------------------------
# one named micro-step each


@_kernel
def load_batch(lay, ws, X, idx, B):
    """Copy the rows idx of X into a_0."""
    d = lay[0, C_WIDTH]
    a0 = _mat(ws, lay[0, C_A] * B, B, d)
    for b in range(B):
        r = idx[b]
        for j in range(d):
            a0[b, j] = X[r, j]


@_kernel
def forward_layer(k, lay, skp, params, ws, running, B, training, stats):
    """Layer k: z = a_{k-1} W + b; [batch norm]; a = phi(u) + skips into k.
    Records dead/saturated fractions and activation mean/std in stats[k].
    Returns False if a_k is not finite."""
    n_in = lay[k - 1, C_WIDTH]
    n = lay[k, C_WIDTH]
    code = lay[k, C_ACT]
    a_prev = _mat(ws, lay[k - 1, C_A] * B, B, n_in)
    W = _mat(params, lay[k, C_W], n_in, n)
    b = _vec(params, lay[k, C_B], n)
    z = _mat(ws, lay[k, C_Z] * B, B, n)
    dense_forward(a_prev, W, b, z)
    u = _mat(ws, lay[k, C_U] * B, B, n)
    if lay[k, C_BN] == 1:
        batchnorm_forward(
            z, _vec(params, lay[k, C_GAMMA], n), _vec(params, lay[k, C_BETA], n), u,
            _mat(ws, lay[k, C_XHAT] * B, B, n), _vec(ws, lay[k, C_MU] * B, n),
            _vec(ws, lay[k, C_ISTD] * B, n), _vec(running, lay[k, C_RMEAN], n),
            _vec(running, lay[k, C_RVAR], n), training)
    a = _mat(ws, lay[k, C_A] * B, B, n)
    slopes = _vec(params, max(lay[k, C_ALPHA], 0), n if lay[k, C_ALPHA] >= 0 else 0)
    dp = _mat(ws, lay[k, C_DP] * B, B, n)
    act_forward_dp(code, u, slopes, a, dp)
    # unit statistics of phi itself, before skips are added (training batches only:
    # evaluation, e.g. the decision-boundary grid, does not need them)
    dead = 0
    sat = 0
    saturating = code == SIGMOID or code == TANH or code == SOFTSIGN
    if training and (saturating or code == RELU):
        dsum = np.zeros(n)
        for i in range(B):
            for j in range(n):
                dsum[j] += dp[i, j]
        for j in range(n):
            # a ReLU unit is dead when phi' = 0 for the whole batch
            if code == RELU and dsum[j] == 0.0:
                dead += 1
            if saturating and dsum[j] / B < SATURATION_THRESHOLD:
                sat += 1
    for s in range(skp.shape[0]):
        if skp[s, 1] != k:
            continue
        i_from = skp[s, 0]
        n_from = lay[i_from, C_WIDTH]
        src = _mat(ws, lay[i_from, C_A] * B, B, n_from)
        if skp[s, 2] >= 0:
            tmp = _mat(ws, lay[k, C_TMP] * B, B, n)
            np.dot(src, _mat(params, skp[s, 2], n_from, n), tmp)
            for i in range(B):
                for j in range(n):
                    a[i, j] += tmp[i, j]
        else:
            for i in range(B):
                for j in range(n):
                    a[i, j] += src[i, j]
    if not training:
        return True
    m = 0.0
    for v in a.ravel():
        m += v
    m /= B * n
    var = 0.0
    for v in a.ravel():
        var += (v - m) * (v - m)
    var /= B * n
    stats[k, S_DEAD] = dead / n
    stats[k, S_SAT] = sat / n
    stats[k, S_ACT_MEAN] = m
    stats[k, S_ACT_STD] = math.sqrt(var)
    return math.isfinite(m) and math.isfinite(var)


@_kernel
def loss_and_delta(lay, skp, ws, B, L, loss_code, labels, targets, idx):
    """Loss of the output o = a_{L+1}, writes delta_{L+1} = dL/do and clears
    the dL/da accumulators of the layers that skip links start from.
    Returns (loss, number correct)."""
    K = lay[L + 1, C_WIDTH]
    o = _mat(ws, lay[L + 1, C_A] * B, B, K)
    delta = _mat(ws, lay[L + 1, C_D] * B, B, K)
    if loss_code == LOSS_XENT:
        loss, correct = softmax_xent(o, labels, idx, delta)
    else:
        loss, correct = mse_loss(o, targets, labels, idx, delta)
    # Only layers that feed a skip link collect dL/da from more than one place;
    # every other layer's dL/da is written whole by the dense step above it.
    for k in range(1, L + 1):
        if _is_skip_source(skp, k):
            g = _vec(ws, lay[k, C_G] * B, B * lay[k, C_WIDTH])
            g[:] = 0.0
    return loss, correct


@_kernel
def _is_skip_source(skp, k):
    for s in range(skp.shape[0]):
        if skp[s, 0] == k:
            return True
    return False


@_kernel
def _ratio(a, b):
    """a / b for norms (a, b >= 0): inf for a > 0 over 0, NaN for 0 / 0 (and for NaN),
    the same compiled or under NUMBA_DISABLE_JIT (where Python floats would raise)."""
    if b == 0.0:
        return math.inf if a > 0.0 else math.nan
    return a / b


@_kernel
def backward_layer(k, lay, skp, params, grads, ws, B, L, stats):
    """Layer k, given dL/da_k complete: delta_k, dW_k, db_k, batch-norm and PReLU
    gradients, skip-projection gradients, and pushes dL/da into the layers below.
    Records norms in stats[k]. Returns False if delta_k or dW_k is not finite."""
    n_in = lay[k - 1, C_WIDTH]
    n = lay[k, C_WIDTH]
    delta = _mat(ws, lay[k, C_D] * B, B, n)
    gun = 0.0  # ||dL/du_k|| (batch norm only)
    if k <= L:
        g = _mat(ws, lay[k, C_G] * B, B, n)
        u = _mat(ws, lay[k, C_U] * B, B, n)
        gu = _mat(ws, lay[k, C_GU] * B, B, n)
        has_alpha = lay[k, C_ALPHA] >= 0
        slopes = _vec(params, max(lay[k, C_ALPHA], 0), n if has_alpha else 0)
        dslopes = _vec(grads, max(lay[k, C_ALPHA], 0), n if has_alpha else 0)
        act_backward_dp(lay[k, C_ACT], u, slopes, _mat(ws, lay[k, C_DP] * B, B, n), g, gu,
                        dslopes)
        if lay[k, C_BN] == 1:
            batchnorm_backward(
                gu, _mat(ws, lay[k, C_XHAT] * B, B, n), _vec(ws, lay[k, C_ISTD] * B, n),
                _vec(params, lay[k, C_GAMMA], n), delta, _vec(grads, lay[k, C_GAMMA], n),
                _vec(grads, lay[k, C_BETA], n))
        # skip links ending here: a_k += S(a_i), so dL/dS = dL/da_k
        for s in range(skp.shape[0]):
            if skp[s, 1] != k:
                continue
            i_from = skp[s, 0]
            n_from = lay[i_from, C_WIDTH]
            src = _mat(ws, lay[i_from, C_A] * B, B, n_from)
            if skp[s, 2] >= 0:
                P = _mat(params, skp[s, 2], n_from, n)
                np.dot(src.T, g, _mat(grads, skp[s, 2], n_from, n))
                if i_from >= 1:
                    tmp = _mat(ws, lay[i_from, C_TMP] * B, B, n_from)
                    np.dot(g, P.T, tmp)
                    g_from = _mat(ws, lay[i_from, C_G] * B, B, n_from)
                    for i in range(B):
                        for j in range(n_from):
                            g_from[i, j] += tmp[i, j]
            elif i_from >= 1:
                g_from = _mat(ws, lay[i_from, C_G] * B, B, n_from)
                for i in range(B):
                    for j in range(n_from):
                        g_from[i, j] += g[i, j]
        gn = math.sqrt(_norm2(g))
        stats[k, S_G] = gn
        if not _is_skip_source(skp, k):
            # dL/da_k came through W_{k+1} alone (a skip source's two parts were
            # measured by backward_layer(k + 1))
            stats[k, S_G_DENSE] = gn
            stats[k, S_G_SKIP] = 0.0
        gd = stats[k, S_G_DENSE]
        gs = stats[k, S_G_SKIP]
        stats[k, S_WEIGHT_FACTOR] = _ratio(gd, stats[k + 1, S_DELTA])
        stats[k, S_SKIP_SHARE] = 0.0 if gs == 0.0 else _ratio(gs, gd + gs)
        if lay[k, C_BN] == 1:
            gun = math.sqrt(_norm2(gu))
            stats[k, S_LOCAL_FACTOR] = _ratio(gun, gn)
    a_prev = _mat(ws, lay[k - 1, C_A] * B, B, n_in)
    W = _mat(params, lay[k, C_W], n_in, n)
    dW = _mat(grads, lay[k, C_W], n_in, n)
    db = _vec(grads, lay[k, C_B], n)
    g_prev = _mat(ws, lay[k - 1, C_G] * B, B, n_in)
    tmp = _mat(ws, lay[k - 1, C_TMP] * B, B, n_in)
    # A layer that feeds a skip link collects dL/da from several places: delta W^T goes
    # to tmp and is added. (A plain bool, never a literal True/False: numba compiles a
    # separate specialization of the callee for each literal.)
    feeds_skip = k >= 2 and _is_skip_source(skp, k - 1)
    if feeds_skip:
        # what the skips brought is in g_prev already
        stats[k - 1, S_G_SKIP] = math.sqrt(_norm2(g_prev))
    dense_backward(a_prev, W, delta, dW, db, g_prev, tmp, feeds_skip)
    if feeds_skip:
        stats[k - 1, S_G_DENSE] = math.sqrt(_norm2(tmp))  # the part through the weights
    elif k >= 2:
        np.dot(delta, W.T, g_prev)
    dn = math.sqrt(_norm2(delta))
    gw = math.sqrt(_norm2(dW))
    if k <= L:
        if lay[k, C_BN] == 1:
            stats[k, S_NORM_FACTOR] = _ratio(dn, gun)
        else:
            # without batch norm gu is delta itself
            stats[k, S_LOCAL_FACTOR] = _ratio(dn, stats[k, S_G])
            stats[k, S_NORM_FACTOR] = math.nan
    stats[k, S_DELTA] = dn
    stats[k, S_GRAD_W] = gw
    stats[k, S_GRAD_B] = math.sqrt(_norm2(db))
    return math.isfinite(dn) and math.isfinite(gw)


@_kernel
def global_grad_norm(grads):
    return math.sqrt(_norm2(grads))


@_reduction
def _update_range(opt, params, grads, m1, m2, lr, mu, b1, b2, eps, wd, cv, c1, c2, scale, fmax):
    """The optimizer step for one run of the buffer (see update_params), given as equal
    slices. One loop per optimizer, free of branches so it vectorizes (indices run
    from 0: a loop from an arbitrary offset keeps numba's negative-index check and
    does not vectorize). An element whose new value would not be finite (or would
    overflow the array's dtype, |p| > fmax) keeps its old value.
    Returns (sum of squared steps, number of elements kept back)."""
    ss = 0.0
    nbad = 0
    n = params.shape[0]
    if opt == OPT_SGD:
        for i in range(n):
            p = params[i]
            g = grads[i] * scale
            if cv > 0.0:
                g = min(max(g, -cv), cv)
            step = lr * (g + wd * p)
            q = p - step
            ok = abs(q) <= fmax  # False for NaN and Inf too
            params[i] = q if ok else p
            nbad += 1 - ok
            ss += step * step if ok else 0.0
    elif opt == OPT_MOMENTUM:
        for i in range(n):
            p = params[i]
            g = grads[i] * scale
            if cv > 0.0:
                g = min(max(g, -cv), cv)
            v = mu * m1[i] + g + wd * p
            m1[i] = v
            step = lr * v
            q = p - step
            ok = abs(q) <= fmax
            params[i] = q if ok else p
            nbad += 1 - ok
            ss += step * step if ok else 0.0
    elif opt == OPT_RMSPROP:
        for i in range(n):
            p = params[i]
            g = grads[i] * scale
            if cv > 0.0:
                g = min(max(g, -cv), cv)
            g += wd * p
            v2 = b2 * m2[i] + (1.0 - b2) * g * g
            m2[i] = v2
            step = lr * g / (math.sqrt(v2) + eps)
            q = p - step
            ok = abs(q) <= fmax
            params[i] = q if ok else p
            nbad += 1 - ok
            ss += step * step if ok else 0.0
    else:
        for i in range(n):
            p = params[i]
            g = grads[i] * scale
            if cv > 0.0:
                g = min(max(g, -cv), cv)
            g += wd * p
            v = b1 * m1[i] + (1.0 - b1) * g
            v2 = b2 * m2[i] + (1.0 - b2) * g * g
            m1[i] = v
            m2[i] = v2
            step = lr * (v / c1) / (math.sqrt(v2 / c2) + eps)
            q = p - step
            ok = abs(q) <= fmax
            params[i] = q if ok else p
            nbad += 1 - ok
            ss += step * step if ok else 0.0
    return ss, nbad


@_kernel
def update_params(opt, params, grads, m1, m2, hyper, decay_mask, elem_layer, upd_sq, grad_scale):
    """One optimizer step over the flat parameter buffer.

    g = grad_scale * grad (global-norm clipping), clipped to +-clip_value if set,
    plus weight decay * p where decay_mask is 1 (weights, not biases). Then
    SGD: p -= lr g; momentum (PyTorch form): v = mu v + g, p -= lr v;
    RMSprop: s = rho s + (1 - rho) g^2, p -= lr g / (sqrt(s) + eps);
    Adam (Kingma & Ba 2015) with bias correction at step t.
    upd_sq[k] collects ||step||^2 of the weights W_k (elem_layer maps elements to k).
    Returns the start of the first run (one layer's weights, or its other
    parameters) in which a new value would not have been finite, or -1; such
    elements keep their old values."""
    lr = hyper[H_LR]
    wd = hyper[H_WD]
    t = hyper[H_T]
    c1 = 1.0 - hyper[H_BETA1] ** t
    c2 = 1.0 - hyper[H_BETA2] ** t
    fmax = 3.4028234663852886e38 if params.itemsize == 4 else 1.7976931348623157e308
    for k in range(upd_sq.shape[0]):
        upd_sq[k] = 0.0
    bad = -1
    n = params.shape[0]
    lo = 0
    # walk the buffer in runs of one layer and one decay setting
    while lo < n:
        k = elem_layer[lo]
        d = decay_mask[lo]
        hi = lo + 1
        while hi < n and elem_layer[hi] == k and decay_mask[hi] == d:
            hi += 1
        ss, nbad = _update_range(opt, params[lo:hi], grads[lo:hi], m1[lo:hi], m2[lo:hi], lr,
                                 hyper[H_MOMENTUM], hyper[H_BETA1], hyper[H_BETA2],
                                 hyper[H_EPS], wd if d != 0 else 0.0, hyper[H_CLIP_VALUE], c1,
                                 c2, grad_scale, fmax)
        if k >= 0:
            upd_sq[k] += ss
        if nbad > 0 and bad < 0:
            bad = lo  # the run lies in one layer, which is what the report names
        lo = hi
    return bad


@_reduction
def _weight_sums(w, w0):
    """(sum w^2, sum (w - w0)^2, sum w0^2) in float64."""
    s = 0.0
    c = 0.0
    s0 = 0.0
    for i in range(w.shape[0]):
        a = np.float64(w[i])  # float64: finite float32 squares can overflow float32
        b = np.float64(w0[i])
        s += a * a
        c += (a - b) * (a - b)
        s0 += b * b
    return s, c, s0


@_kernel
def weight_stats(lay, params, params0, L, stats):
    """||W_k||, ||W_k - W_k(init)|| and ||W_k(init)|| for k = 1..L+1.
    Returns the first layer whose weights are not finite, or 0."""
    bad = 0
    for k in range(1, L + 2):
        size = lay[k - 1, C_WIDTH] * lay[k, C_WIDTH]
        off = lay[k, C_W]
        s, c, s0 = _weight_sums(params[off:off + size], params0[off:off + size])
        stats[k, S_W] = math.sqrt(s)
        stats[k, S_CHANGE] = math.sqrt(c)
        stats[k, S_W0] = math.sqrt(s0)
        if bad == 0 and not math.isfinite(s):
            bad = k
    return bad


@_kernel
def forward_pass(lay, skp, params, ws, running, B, L, training, stats):
    """All layers forward. Returns 0, or the first layer whose output is not finite."""
    for k in range(1, L + 2):
        if not forward_layer(k, lay, skp, params, ws, running, B, training, stats):
            return k
    return 0


@_kernel
def backward_pass(lay, skp, params, grads, ws, B, L, stats):
    for k in range(L + 1, 0, -1):
        if not backward_layer(k, lay, skp, params, grads, ws, B, L, stats):
            return k
    return 0


@_kernel
def _update_block(opt, params, grads, m1, m2, lo, hi, hyper, wd, c1, c2, scale, fmax):
    # wd is the weight decay of this block (0.0 for biases and the like): a float, not a
    # bool flag, since a literal True/False would compile two specializations
    return _update_range(opt, params[lo:hi], grads[lo:hi], m1[lo:hi], m2[lo:hi], hyper[H_LR],
                         hyper[H_MOMENTUM], hyper[H_BETA1], hyper[H_BETA2], hyper[H_EPS],
                         wd, hyper[H_CLIP_VALUE], c1, c2, scale, fmax)


@_kernel
def update_by_layout(opt, lay, skp, L, params, grads, m1, m2, hyper, upd_sq, scale):
    """update_params, walking the parameter blocks the layout describes (W_k; the
    rest of layer k; each projection) instead of scanning per-element tables.
    Returns the start of the first block with a kept-back element, or -1."""
    t = hyper[H_T]
    c1 = 1.0 - hyper[H_BETA1] ** t
    c2 = 1.0 - hyper[H_BETA2] ** t
    fmax = 3.4028234663852886e38 if params.itemsize == 4 else 1.7976931348623157e308
    n = params.shape[0]
    first_p = n
    for s in range(skp.shape[0]):
        if skp[s, 2] >= 0:
            first_p = min(first_p, skp[s, 2])
    bad = -1
    for k in range(L + 2):
        upd_sq[k] = 0.0
    for k in range(1, L + 2):
        w_lo = lay[k, C_W]
        w_hi = w_lo + lay[k - 1, C_WIDTH] * lay[k, C_WIDTH]
        rest_hi = lay[k + 1, C_W] if k <= L else first_p
        ss, nbad = _update_block(opt, params, grads, m1, m2, w_lo, w_hi, hyper, hyper[H_WD],
                                 c1, c2, scale, fmax)
        upd_sq[k] = ss
        if nbad > 0 and bad < 0:
            bad = w_lo
        ss, nbad = _update_block(opt, params, grads, m1, m2, w_hi, rest_hi, hyper, 0.0, c1,
                                 c2, scale, fmax)
        if nbad > 0 and bad < 0:
            bad = w_hi
    for s in range(skp.shape[0]):
        lo = skp[s, 2]
        if lo < 0:
            continue
        hi = lo + lay[skp[s, 0], C_WIDTH] * lay[skp[s, 1], C_WIDTH]
        ss, nbad = _update_block(opt, params, grads, m1, m2, lo, hi, hyper, hyper[H_WD], c1,
                                 c2, scale, fmax)
        if nbad > 0 and bad < 0:
            bad = lo
    return bad


@_kernel
def param_layer(lay, skp, i, L):
    """The layer (1..L+1) a flat parameter index belongs to; a skip projection
    counts for the layer it ends at."""
    for s in range(skp.shape[0]):
        off = skp[s, 2]
        if off >= 0 and off <= i < off + lay[skp[s, 0], C_WIDTH] * lay[skp[s, 1], C_WIDTH]:
            return skp[s, 1]
    k = 1
    for j in range(1, L + 2):
        if lay[j, C_W] <= i:
            k = j
    return k


@_kernel
def apply_update(opt, lay, skp, params, grads, m1, m2, params0, hyper, decay_mask, elem_layer,
                 upd_sq, L, stats):
    """Clip, step the optimizer, then refresh the weight statistics.
    Returns 0, or the layer of the first parameter the step would have made
    non-finite (no parameter is ever set to NaN or Inf)."""
    scale = 1.0
    if hyper[H_CLIP_NORM] > 0.0:
        gn = global_grad_norm(grads)
        if gn > hyper[H_CLIP_NORM]:
            # Pascanu et al. 2013: g <- theta g / ||g||
            scale = hyper[H_CLIP_NORM] / gn
    bad = update_by_layout(opt, lay, skp, L, params, grads, m1, m2, hyper, upd_sq, scale)
    for k in range(1, L + 2):
        stats[k, S_UPDATE] = math.sqrt(upd_sq[k])
    weight_stats(lay, params, params0, L, stats)
    if bad >= 0:
        return param_layer(lay, skp, bad, L)
    return 0


@_kernel
def train_step(lay, skp, params, grads, ws, running, params0, m1, m2, decay_mask, elem_layer,
               upd_sq, X, labels, targets, idx, B, L, loss_code, opt, hyper, stats, out):
    """One whole iteration: load batch, forward, loss, backward, update.

    out[0] = loss, out[1] = number correct. Returns 0, or PHASE * 10000 + layer
    for the first non-finite quantity; then no update is applied."""
    load_batch(lay, ws, X, idx, B)
    # True, as a plain bool: a literal would compile forward_pass, forward_layer and
    # batchnorm_forward a second time
    training = B > 0
    bad = forward_pass(lay, skp, params, ws, running, B, L, training, stats)
    if bad:
        return ST_FORWARD * 10000 + bad
    loss, correct = loss_and_delta(lay, skp, ws, B, L, loss_code, labels, targets, idx)
    out[0] = loss
    out[1] = correct
    if not math.isfinite(loss):
        return ST_LOSS * 10000
    bad = backward_pass(lay, skp, params, grads, ws, B, L, stats)
    if bad:
        return ST_BACKWARD * 10000 + bad
    bad = apply_update(opt, lay, skp, params, grads, m1, m2, params0, hyper, decay_mask,
                       elem_layer, upd_sq, L, stats)
    if bad:
        return ST_UPDATE * 10000 + bad
    return 0


@_kernel
def train_steps(lay, skp, params, grads, ws, running, params0, m1, m2, decay_mask, elem_layer,
                upd_sq, X, labels, targets, batches, B, L, loss_code, opt, hyper, stats, out,
                hist_stats, hist_out):
    """Several iterations in one call (fast mode). batches is (n_steps, B) row indices.
    hist_stats[s] receives stats after step s, hist_out[s] = (loss, correct).
    Returns (steps done, status of the last one)."""
    n_steps = batches.shape[0]
    t0 = hyper[H_T]
    for s in range(n_steps):
        hyper[H_T] = t0 + s
        status = train_step(lay, skp, params, grads, ws, running, params0, m1, m2, decay_mask,
                            elem_layer, upd_sq, X, labels, targets, batches[s], B, L, loss_code,
                            opt, hyper, stats, out)
        hist_stats[s] = stats
        hist_out[s, 0] = out[0]
        hist_out[s, 1] = out[1]
        if status != 0:
            return s, status
    return n_steps, 0
