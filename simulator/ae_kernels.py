"""Numba kernels of one autoencoder layer, the unit of greedy layer-wise pretraining.

Hidden layer k is trained to reconstruct its own input ``x`` (the data for k = 1,
the codes of layer k-1 above that)::

    x~ = x * keep                   (masking noise when denoising, else keep = 1)
    z  = x~ W + b,   h = phi(z)     (encode: the network's own W_k, b_k and phi_k)
    r  = h D + c                    (decode: linear; D = W^T when tied)
    loss = sum (r - x)^2 / (B n_in) (mean squared error per input value)

Gradients (``g*`` = dloss/d*)::

    gr = 2 (r - x) / (B n_in),   gc = sum_b gr,   gh = gr D^T
    gz = gh * phi'(z),           gb = sum_b gz,   gW = x~^T gz  (+ (h^T gr)^T when tied)
    gD = h^T gr                                   (untied only)

The update is SGD with momentum: v = mu v - lr g, p += v.

One kernel per named micro-step (encode, decode, loss, backward decoder, backward
encoder, update), and ``ae_train_steps`` that runs whole iterations through the
same functions. Every kernel works in place on preallocated C-contiguous arrays and
has a numpy twin in ``simulator.ae_reference``.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import config, njit

from .kernels import dphi, phi

ST_OK, ST_ENCODE, ST_DECODE, ST_LOSS, ST_UPDATE = 0, 1, 2, 3, 4


def _kernel(fn):
    """``@njit(cache=True, nogil=True)``, NaN and Inf propagating as in numpy. Under
    NUMBA_DISABLE_JIT=1 the loops run as plain Python on numpy scalars, which warn on
    overflow where compiled code quietly gives inf (as a diverging run must): silenced."""
    if not config.DISABLE_JIT:
        return njit(cache=True, nogil=True, error_model="numpy")(fn)

    @functools.wraps(fn)
    def plain(*args):
        with np.errstate(all="ignore"):
            return fn(*args)

    return plain


@_kernel
def ae_corrupt(x, keep, denoise, xt):
    """xt = x * keep (denoising) or a copy of x."""
    B, n = x.shape
    for i in range(B):
        for j in range(n):
            xt[i, j] = x[i, j] * keep[i, j] if denoise else x[i, j]


@_kernel
def ae_encode(xt, W, b, code, z, h, dp):
    """z = xt W + b, h = phi(z), dp = phi'(z). Returns False on a non-finite code."""
    B, n_in = xt.shape
    n_out = W.shape[1]
    ok = True
    for i in range(B):
        for j in range(n_out):
            z[i, j] = b[j]
        for a in range(n_in):
            v = xt[i, a]
            if v != 0.0:
                for j in range(n_out):
                    z[i, j] += v * W[a, j]
        for j in range(n_out):
            h[i, j] = phi(code, z[i, j], 0.0)
            dp[i, j] = dphi(code, z[i, j], 0.0)
            if not np.isfinite(h[i, j]):
                ok = False
    return ok


@_kernel
def ae_decode(h, W, D, c, tied, r):
    """r = h D + c, with D = W^T when tied. Returns False on a non-finite output."""
    B, n_out = h.shape
    n_in = c.shape[0]
    ok = True
    for i in range(B):
        for a in range(n_in):
            s = c[a]
            if tied:
                for j in range(n_out):
                    s += h[i, j] * W[a, j]
            else:
                for j in range(n_out):
                    s += h[i, j] * D[j, a]
            r[i, a] = s
            if not np.isfinite(s):
                ok = False
    return ok


@_kernel
def ae_loss(r, x, gr):
    """Mean squared reconstruction error per input value; gr = its gradient wrt r."""
    B, n = x.shape
    scale = 1.0 / (B * n)
    total = 0.0
    for i in range(B):
        for a in range(n):
            e = r[i, a] - x[i, a]
            total += e * e
            gr[i, a] = 2.0 * scale * e
    return total * scale


@_kernel
def ae_backward_decoder(h, gr, W, D, tied, gD, gc, gh):
    """gc = sum_b gr; gD = h^T gr (untied); gh = gr D^T."""
    B, n_out = h.shape
    n_in = gr.shape[1]
    for a in range(n_in):
        gc[a] = 0.0
    if not tied:
        for j in range(n_out):
            for a in range(n_in):
                gD[j, a] = 0.0
    for i in range(B):
        for a in range(n_in):
            gc[a] += gr[i, a]
        for j in range(n_out):
            s = 0.0
            if tied:
                for a in range(n_in):
                    s += gr[i, a] * W[a, j]
            else:
                hij = h[i, j]
                for a in range(n_in):
                    s += gr[i, a] * D[j, a]
                    gD[j, a] += hij * gr[i, a]
            gh[i, j] = s


@_kernel
def ae_backward_encoder(xt, gh, dp, h, gr, tied, gW, gb, gz):
    """gz = gh * phi'(z); gb = sum_b gz; gW = xt^T gz, plus gr^T h when tied."""
    B, n_in = xt.shape
    n_out = gh.shape[1]
    for j in range(n_out):
        gb[j] = 0.0
    for a in range(n_in):
        for j in range(n_out):
            gW[a, j] = 0.0
    for i in range(B):
        for j in range(n_out):
            g = gh[i, j] * dp[i, j]
            gz[i, j] = g
            gb[j] += g
        for a in range(n_in):
            v = xt[i, a]
            t = gr[i, a] if tied else 0.0
            for j in range(n_out):
                gW[a, j] += v * gz[i, j] + t * h[i, j]


@_kernel
def ae_momentum_update(p, g, v, lr, mu):
    """v = mu v - lr g; p += v (flattened views). Returns False on a non-finite value."""
    ok = True
    for i in range(p.size):
        v[i] = mu * v[i] - lr * g[i]
        p[i] += v[i]
        if not np.isfinite(p[i]):
            ok = False
    return ok


@_kernel
def ae_update(W, b, D, c, gW, gb, gD, gc, vW, vb, vD, vc, tied, lr, mu):
    ok = ae_momentum_update(W.reshape(W.size), gW.reshape(W.size), vW.reshape(W.size),
                            lr, mu)
    ok = ae_momentum_update(b, gb, vb, lr, mu) and ok
    if not tied:
        ok = ae_momentum_update(D.reshape(D.size), gD.reshape(D.size), vD.reshape(D.size),
                                lr, mu) and ok
    ok = ae_momentum_update(c, gc, vc, lr, mu) and ok
    return ok


@_kernel
def ae_gather(X, idx, x):
    for i in range(idx.shape[0]):
        x[i, :] = X[idx[i], :]


@_kernel
def ae_train_steps(X, batches, keep, denoise, W, b, D, c, gW, gb, gD, gc, vW, vb, vD, vc,
                   code, tied, lr, mu, x, xt, z, h, dp, r, gr, gh, gz, losses):
    """Whole iterations, one per row of ``batches``, through the micro-step kernels.

    ``keep`` is (steps, B, n_in) when denoising (else any 3-d array). ``losses[s]``
    gets step s's reconstruction loss (before its update). Returns (done, status):
    the number of finished steps and ST_* of the micro-step that went non-finite."""
    for s in range(batches.shape[0]):
        ae_gather(X, batches[s], x)
        ae_corrupt(x, keep[s] if denoise else x, denoise, xt)
        if not ae_encode(xt, W, b, code, z, h, dp):
            return s, ST_ENCODE
        if not ae_decode(h, W, D, c, tied, r):
            return s, ST_DECODE
        loss = ae_loss(r, x, gr)
        losses[s] = loss
        if not np.isfinite(loss):
            return s, ST_LOSS
        ae_backward_decoder(h, gr, W, D, tied, gD, gc, gh)
        ae_backward_encoder(xt, gh, dp, h, gr, tied, gW, gb, gz)
        if not ae_update(W, b, D, c, gW, gb, gD, gc, vW, vb, vD, vc, tied, lr, mu):
            return s + 1, ST_UPDATE
    return batches.shape[0], ST_OK


@_kernel
def encode_all(X, W, b, code, out):
    """out = phi(X W + b) for a whole data set (the next layer's training inputs)."""
    n, n_in = X.shape
    n_out = W.shape[1]
    for i in range(n):
        for j in range(n_out):
            out[i, j] = b[j]
        for a in range(n_in):
            v = X[i, a]
            if v != 0.0:
                for j in range(n_out):
                    out[i, j] += v * W[a, j]
        for j in range(n_out):
            out[i, j] = phi(code, out[i, j], 0.0)
