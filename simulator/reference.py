"""Plain-numpy twins of the kernels, written from the maths: the test reference.

Nothing here is fast and nothing here is used by the program; each function
restates one formula with whole-array numpy so that the jitted loops in
``kernels.py`` can be checked against it (the role of napari's ``*_py`` twins
and stumpy's ``naive.py``). Where the maths leaves a choice open (the
derivative at a kink) the twins make the same documented choice as the
kernels: a unit counts as "on" only for x > 0.

Notation (see network.py): ``z_k = a_{k-1} W_k + b_k``; with batch norm
``u_k = gamma xhat + beta`` else ``u_k = z_k``; ``a_k = phi_k(u_k) + sum of
skips into k``; ``o = a_L W_{L+1} + b_{L+1}``; ``delta_k = dL/dz_k``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from .spec import ACTIVATIONS, NetworkSpec

LEAKY_SLOPE = 0.01
SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
_SQRT2 = np.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _name(activation) -> str:
    """Accept an activation name or its integer code (the order of spec.ACTIVATIONS)."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}")
        return activation
    return ACTIVATIONS[int(activation)]


# ---------------------------------------------------------------------------
# activations


def sigmoid(x):
    """1 / (1 + e^-x), written so that no exponent is ever positive (no overflow)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _neg_expm1(x):
    """e^x - 1 on the negative side only (positive inputs are clamped to 0 first)."""
    return np.expm1(np.minimum(x, 0.0))


def phi(activation, x, slope=0.25):
    """phi(x) elementwise, in float64. ``slope`` is PReLU's negative-side slope
    (a scalar or an array broadcasting against x)."""
    name = _name(activation)
    x = np.asarray(x, dtype=np.float64)
    if name == "sigmoid":
        return sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, x, LEAKY_SLOPE * x)
    if name == "prelu":
        return np.where(x > 0, x, slope * x)
    if name == "elu":
        return np.where(x > 0, x, _neg_expm1(x))
    if name == "selu":
        return SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * _neg_expm1(x))
    if name == "gelu":
        # x * Phi(x) with Phi the standard normal CDF
        return x * 0.5 * (1.0 + erf(x / _SQRT2))
    if name == "silu":
        return x * sigmoid(x)
    if name == "softsign":
        return x / (1.0 + np.abs(x))
    return x.copy()


def dphi(activation, x, slope=0.25):
    """phi'(x) elementwise, in float64. At a kink (x = 0) the left derivative is used."""
    name = _name(activation)
    x = np.asarray(x, dtype=np.float64)
    if name == "sigmoid":
        s = sigmoid(x)
        return s * (1.0 - s)
    if name == "tanh":
        # 1 - tanh^2 = sech^2; via cosh it underflows cleanly to 0 for large |x|
        return 1.0 / np.cosh(np.minimum(np.abs(x), 350.0)) ** 2
    if name == "relu":
        return (x > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(x > 0, 1.0, LEAKY_SLOPE)
    if name == "prelu":
        return np.where(x > 0, 1.0, slope * np.ones_like(x))
    if name == "elu":
        return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0)))
    if name == "selu":
        return SELU_LAMBDA * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))
    if name == "gelu":
        # d/dx [x Phi(x)] = Phi(x) + x N(x)
        return 0.5 * (1.0 + erf(x / _SQRT2)) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    if name == "silu":
        # d/dx [x s(x)] = s + x s (1 - s)
        s = sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    if name == "softsign":
        return 1.0 / (1.0 + np.abs(x)) ** 2
    return np.ones_like(x)


def act_forward(activation, u, slopes=None):
    """a = phi(u) for a (B, n) batch; ``slopes`` (n,) are the PReLU slopes."""
    return phi(activation, u, 0.25 if slopes is None else np.asarray(slopes, np.float64))


def act_backward(activation, u, slopes, g):
    """(dL/du, dL/dslopes) from g = dL/da. dL/dslopes is None unless PReLU:
    a = slope * u on u <= 0, so d a / d slope = min(u, 0)."""
    name = _name(activation)
    u = np.asarray(u, np.float64)
    g = np.asarray(g, np.float64)
    s = 0.25 if slopes is None else np.asarray(slopes, np.float64)
    gu = g * dphi(name, u, s)
    if name != "prelu":
        return gu, None
    return gu, (g * np.minimum(u, 0.0)).sum(axis=0)


# ---------------------------------------------------------------------------
# dense layer


def dense_forward(a_prev, W, b):
    return np.asarray(a_prev, np.float64) @ np.asarray(W, np.float64) + np.asarray(b, np.float64)


def dense_backward(a_prev, W, delta):
    """(dW, db, dL/da_prev) for z = a_prev W + b given delta = dL/dz."""
    a_prev = np.asarray(a_prev, np.float64)
    delta = np.asarray(delta, np.float64)
    return a_prev.T @ delta, delta.sum(axis=0), delta @ np.asarray(W, np.float64).T


# ---------------------------------------------------------------------------
# batch norm (Ioffe & Szegedy 2015)


def batchnorm_forward(z, gamma, beta, running_mean=None, running_var=None, training=True):
    """Returns (u, cache, new_running_mean, new_running_var).

    Training: batch mean and biased batch variance normalize; the running
    averages move by 10% towards the batch mean and the unbiased variance.
    Evaluation: the running averages normalize and are returned unchanged.
    cache = (xhat, mean, inv_std).
    """
    z = np.asarray(z, np.float64)
    n = z.shape[1]
    rm = np.zeros(n) if running_mean is None else np.asarray(running_mean, np.float64)
    rv = np.ones(n) if running_var is None else np.asarray(running_var, np.float64)
    if training:
        B = z.shape[0]
        mean = z.mean(axis=0)
        var = z.var(axis=0)  # biased: divides by B
        unbiased = var * B / (B - 1) if B > 1 else var
        new_rm = (1.0 - BN_MOMENTUM) * rm + BN_MOMENTUM * mean
        new_rv = (1.0 - BN_MOMENTUM) * rv + BN_MOMENTUM * unbiased
    else:
        mean, var = rm, rv
        new_rm, new_rv = rm.copy(), rv.copy()
    inv_std = 1.0 / np.sqrt(var + BN_EPS)
    xhat = (z - mean) * inv_std
    u = np.asarray(gamma, np.float64) * xhat + np.asarray(beta, np.float64)
    return u, (xhat, mean, inv_std), new_rm, new_rv


def batchnorm_backward(gu, cache, gamma):
    """(dL/dz, dL/dgamma, dL/dbeta) from gu = dL/du, training mode.

    With dxhat = gu gamma, the mean and the variance both depend on z:
    dL/dz = inv_std (dxhat - mean_b(dxhat) - xhat mean_b(dxhat xhat)).
    """
    xhat, _, inv_std = cache
    gu = np.asarray(gu, np.float64)
    dxhat = gu * np.asarray(gamma, np.float64)
    dz = inv_std * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0))
    return dz, (gu * xhat).sum(axis=0), gu.sum(axis=0)


# ---------------------------------------------------------------------------
# losses


def log_softmax(o):
    o = np.asarray(o, np.float64)
    shifted = o - o.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_xent(o, labels):
    """(mean cross-entropy, dL/do, number correct) for logits o (B, K), labels (B,)."""
    o = np.asarray(o, np.float64)
    labels = np.asarray(labels, np.int64)
    B, K = o.shape
    logp = log_softmax(o)
    rows = np.arange(B)
    loss = -logp[rows, labels].mean()
    delta = (np.exp(logp) - np.eye(K)[labels]) / B
    correct = int(np.sum(np.argmax(o, axis=1) == labels))
    return float(loss), delta, correct


def mse_loss(o, targets, labels=None):
    """(mean over all elements of (o - y)^2, dL/do, number of argmax hits or 0)."""
    o = np.asarray(o, np.float64)
    r = o - np.asarray(targets, np.float64)
    delta = 2.0 * r / r.size
    correct = 0 if labels is None or len(labels) == 0 else int(
        np.sum(np.argmax(o, axis=1) == np.asarray(labels)))
    return float(np.mean(r * r)), delta, correct


# ---------------------------------------------------------------------------
# optimizers (all on flat float64 vectors; state arrays are returned, not mutated)


def clip_by_value(g, clip_value):
    return np.clip(g, -clip_value, clip_value) if clip_value > 0 else np.array(g, np.float64)


def clip_global_norm(g, max_norm):
    """Pascanu et al. 2013: if ||g|| > theta, g <- theta g / ||g||."""
    g = np.asarray(g, np.float64)
    norm = np.sqrt(np.sum(g * g))
    if max_norm > 0 and norm > max_norm:
        return g * (max_norm / norm)
    return g.copy()


def sgd_step(g, lr):
    return lr * g


def momentum_step(g, v, lr, mu):
    """Heavy ball in PyTorch's form: v <- mu v + g, step = lr v."""
    v = mu * v + g
    return lr * v, v


def rmsprop_step(g, s, lr, rho, eps):
    s = rho * s + (1.0 - rho) * g * g
    return lr * g / (np.sqrt(s) + eps), s


def adam_step(g, m, v, t, lr, beta1, beta2, eps):
    """Kingma & Ba 2015, with the bias corrections 1 - beta^t."""
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** t)
    v_hat = v / (1.0 - beta2 ** t)
    return lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def optimizer_update(opt, params, grads, m1, m2, *, lr, t=1, momentum=0.9, beta1=0.9,
                     beta2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=0.0, clip_value=0.0,
                     decay_mask=None):
    """One optimizer step on a flat parameter vector. Returns (params, m1, m2, step).

    The gradient is first scaled to the global norm ``clip_norm`` (if longer),
    then clipped to +-clip_value, then weight decay (L2: + wd * p) is added
    where ``decay_mask`` is set. RMSprop uses ``beta2`` as its decay rate.
    """
    p = np.asarray(params, np.float64)
    m1 = np.asarray(m1, np.float64)
    m2 = np.asarray(m2, np.float64)
    g = clip_by_value(clip_global_norm(grads, clip_norm), clip_value)
    if weight_decay:
        mask = np.ones_like(p) if decay_mask is None else np.asarray(decay_mask) != 0
        g = g + weight_decay * p * mask
    if opt == "sgd":
        step = sgd_step(g, lr)
    elif opt == "momentum":
        step, m1 = momentum_step(g, m1, lr, momentum)
    elif opt == "rmsprop":
        step, m2 = rmsprop_step(g, m2, lr, beta2, eps)
    elif opt == "adam":
        step, m1, m2 = adam_step(g, m1, m2, t, lr, beta1, beta2, eps)
    else:
        raise ValueError(f"unknown optimizer {opt!r}")
    return p - step, m1, m2, step


# ---------------------------------------------------------------------------
# the whole network


def _hidden_activation(spec: NetworkSpec, k: int) -> str:
    return spec.hidden[k - 1].activation if k <= spec.depth else "linear"


def _skip_term(spec: NetworkSpec, params, i, k, a_i):
    if spec.skip_needs_projection((i, k)):
        return a_i @ np.asarray(params[f"P{i}_{k}"], np.float64)
    return a_i


def reference_forward(spec: NetworkSpec, params: dict, X, training=True, running=None,
                      taps=None):
    """Forward pass; returns a cache dict with lists z, u, a (index = layer) and bn caches.

    ``running`` maps k -> (mean, var) for evaluation-mode batch norm. ``taps`` maps
    (place, k) to an array added at that place, so that finite differences can take
    the loss's derivative there: "z" (before batch norm), "u" (before phi), "a" (the
    whole output of layer k), "a_dense" (a_k only where it enters W_{k+1}) and
    "a_skip" (a_k only where it enters skip links).
    """
    taps = taps or {}

    def tap(place, k, x):
        e = taps.get((place, k))
        return x if e is None else x + e

    L = spec.depth
    a = [tap("a", 0, np.asarray(X, np.float64))]
    z, u, bn = [None], [None], [None]
    for k in range(1, L + 2):
        zk = tap("z", k, dense_forward(tap("a_dense", k - 1, a[k - 1]), params[f"W{k}"],
                                       params[f"b{k}"]))
        cache = None
        if k <= L and spec.hidden[k - 1].batchnorm:
            rm, rv = (None, None) if running is None else running[k]
            uk, cache, _, _ = batchnorm_forward(zk, params[f"gamma{k}"], params[f"beta{k}"],
                                                rm, rv, training)
        else:
            uk = zk
        uk = tap("u", k, uk)
        act = _hidden_activation(spec, k)
        slopes = params.get(f"alpha{k}") if act == "prelu" else None
        ak = act_forward(act, uk, slopes)
        for i, j in spec.skips:
            if j == k:
                ak = ak + _skip_term(spec, params, i, k, tap("a_skip", i, a[i]))
        z.append(zk)
        u.append(uk)
        bn.append(cache)
        a.append(tap("a", k, ak))
    return {"z": z, "u": u, "a": a, "bn": bn}


def reference_loss(spec: NetworkSpec, o, y):
    """(loss, dL/do) of outputs o against labels (1-D) or a target matrix."""
    y = np.asarray(y)
    if spec.loss == "cross_entropy":
        loss, delta, _ = softmax_xent(o, y)
        return loss, delta
    if y.ndim == 1:
        y = np.eye(spec.output_dim)[y]
    loss, delta, _ = mse_loss(o, y)
    return loss, delta


def reference_loss_and_gradients(spec: NetworkSpec, params: dict, X, y):
    """(loss, grads, deltas) in float64 for one batch in training mode.

    grads has the keys of ``params``; deltas is [dL/dz_1, ..., dL/dz_{L+1}].
    """
    loss, grads, parts = _reference_backward(spec, params, X, y)
    return loss, grads, parts["delta"][1:]


def _reference_backward(spec: NetworkSpec, params: dict, X, y):
    """(loss, grads, parts): parts maps "delta", "gu", "g_dense", "g_skip" to lists
    indexed by layer (None where a quantity does not exist): dL/dz_k, dL/du_k, and
    dL/da_k split into what came through W_{k+1} and what came through skip links."""
    L = spec.depth
    fw = reference_forward(spec, params, X)
    a, u = fw["a"], fw["u"]
    loss, d_out = reference_loss(spec, a[L + 1], y)
    grads = {}
    # dL/da_k, from the dense layer above (gd) and from every skip leaving k (gs)
    gd = [np.zeros_like(ak) for ak in a]
    gs = [np.zeros_like(ak) for ak in a]
    deltas = [None] * (L + 2)
    gus = [None] * (L + 2)
    for k in range(L + 1, 0, -1):
        if k == L + 1:
            delta = d_out
        else:
            g = gd[k] + gs[k]
            act = _hidden_activation(spec, k)
            slopes = params.get(f"alpha{k}") if act == "prelu" else None
            gu, dslopes = act_backward(act, u[k], slopes, g)
            gus[k] = gu
            if dslopes is not None:
                grads[f"alpha{k}"] = dslopes
            if spec.hidden[k - 1].batchnorm:
                delta, grads[f"gamma{k}"], grads[f"beta{k}"] = batchnorm_backward(
                    gu, fw["bn"][k], params[f"gamma{k}"])
            else:
                delta = gu
            for i, j in spec.skips:
                if j != k:
                    continue
                if spec.skip_needs_projection((i, k)):
                    P = np.asarray(params[f"P{i}_{k}"], np.float64)
                    grads[f"P{i}_{k}"] = a[i].T @ g
                    gs[i] = gs[i] + g @ P.T
                else:
                    gs[i] = gs[i] + g
        dW, db, g_prev = dense_backward(a[k - 1], params[f"W{k}"], delta)
        grads[f"W{k}"] = dW
        grads[f"b{k}"] = db
        gd[k - 1] = gd[k - 1] + g_prev
        deltas[k] = delta
    return loss, grads, {"delta": deltas, "gu": gus, "g_dense": gd, "g_skip": gs}


def _norm(x) -> float:
    return float(np.sqrt(np.sum(np.square(np.asarray(x, np.float64)))))


def _div(a: float, b: float) -> float:
    if b == 0.0:
        return float("inf") if a > 0.0 else float("nan")
    return a / b


def factors_from_parts(spec: NetworkSpec, parts: dict) -> dict:
    """The per-layer factors of the chain rule (kernels.S_WEIGHT_FACTOR ...) from the
    pieces of one backward pass: arrays of L+1 entries (index i = layer i+1; NaN for
    the output layer and where a factor does not apply).

    With g_k = delta_{k+1} W_{k+1}^T, s_k what skips bring, G_k = g_k + s_k = dL/da_k:
    weight = ||g_k|| / ||delta_{k+1}||; local = ||dL/du_k|| / ||G_k|| (dL/du_k =
    phi'(u_k) * G_k); norm = ||delta_k|| / ||dL/du_k|| with batch norm, else NaN;
    skip_share = ||s_k|| / (||g_k|| + ||s_k||)."""
    L = spec.depth
    out = {name: np.full(L + 1, np.nan) for name in
           ("weight_factor", "local_factor", "norm_factor", "skip_share")}
    for k in range(1, L + 1):
        gd, gs = _norm(parts["g_dense"][k]), _norm(parts["g_skip"][k])
        G = _norm(np.asarray(parts["g_dense"][k]) + np.asarray(parts["g_skip"][k]))
        gu, d = _norm(parts["gu"][k]), _norm(parts["delta"][k])
        out["weight_factor"][k - 1] = _div(gd, _norm(parts["delta"][k + 1]))
        out["local_factor"][k - 1] = _div(gu, G)
        if spec.hidden[k - 1].batchnorm:
            out["norm_factor"][k - 1] = _div(d, gu)
        out["skip_share"][k - 1] = 0.0 if gs == 0.0 else _div(gs, gd + gs)
    return out


def reference_factors(spec: NetworkSpec, params: dict, X, y) -> dict:
    """factors_from_parts of the analytic backward pass of one batch (training mode)."""
    _, _, parts = _reference_backward(spec, params, X, y)
    return factors_from_parts(spec, parts)


def numerical_parts(spec: NetworkSpec, params: dict, X, y, h=1e-6) -> dict:
    """The same pieces as _reference_backward's, each from centered differences of the
    loss with respect to an additive tap at that place (see reference_forward)."""
    L = spec.depth
    fw = reference_forward(spec, params, X)

    def loss_with(taps):
        out = reference_forward(spec, params, X, taps=taps)["a"][L + 1]
        return reference_loss(spec, out, y)[0]

    def derivative(place, k, shape):
        return centered_difference(lambda e: loss_with({(place, k): e}), np.zeros(shape), h)

    parts = {name: [None] * (L + 2) for name in ("delta", "gu", "g_dense", "g_skip")}
    for k in range(1, L + 2):
        shape = fw["a"][k].shape
        parts["delta"][k] = derivative("z", k, shape)
        if k <= L:
            parts["gu"][k] = derivative("u", k, shape)
            parts["g_dense"][k] = derivative("a_dense", k, shape)
            parts["g_skip"][k] = derivative("a_skip", k, shape)
    return parts


def reference_outputs(spec: NetworkSpec, params: dict, X, training=True, running=None):
    """The network's output o for X."""
    return reference_forward(spec, params, X, training, running)["a"][spec.depth + 1]


# ---------------------------------------------------------------------------
# checking


def relative_error(a, n, floor=0.0):
    """max |a - n| / max(|a|, |n|, floor) elementwise (CS231n's gradient-check measure).

    ``floor`` keeps values that are zero in theory (where a and n are both
    round-off) from turning into 0/0 or a huge ratio.
    """
    a = np.asarray(a, np.float64)
    n = np.asarray(n, np.float64)
    if a.size == 0:
        return 0.0
    den = np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)
    diff = np.abs(a - n)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / np.where(den == 0, 1.0, den))
    return float(ratio.max())


def centered_difference(f, x, h=1e-5):
    """dF/dx of the scalar function f at the float64 array x, one entry at a time."""
    x = np.array(x, np.float64)
    grad = np.empty_like(x)
    flat = x.reshape(-1)
    out = grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + h
        up = f(x)
        flat[i] = keep - h
        down = f(x)
        flat[i] = keep
        out[i] = (up - down) / (2.0 * h)
    return grad
