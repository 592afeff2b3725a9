"""Plain-numpy twins of ``simulator.ae_kernels`` (the test oracle), in float64.

Same formulas as the kernels' module docstring, written with whole-array numpy.
"""

from __future__ import annotations

import numpy as np

from . import reference as R


def ae_forward(x, W, b, D, c, activation, tied, keep=None):
    """(xt, z, h, r, loss) of one autoencoder pass on the batch x."""
    x = np.asarray(x, np.float64)
    xt = x * keep if keep is not None else x.copy()
    z = xt @ W + b
    h = R.phi(activation, z, 0.0)
    dec = np.asarray(W, np.float64).T if tied else np.asarray(D, np.float64)
    r = h @ dec + c
    loss = float(np.mean((r - x) ** 2))
    return xt, z, h, r, loss


def ae_gradients(x, W, b, D, c, activation, tied, keep=None):
    """loss and its gradients (gW, gb, gD or None, gc)."""
    xt, z, h, r, loss = ae_forward(x, W, b, D, c, activation, tied, keep)
    gr = 2.0 * (r - x) / x.size
    gc = gr.sum(axis=0)
    dec = np.asarray(W, np.float64).T if tied else np.asarray(D, np.float64)
    gh = gr @ dec.T
    gz = gh * R.dphi(activation, z, 0.0)
    gb = gz.sum(axis=0)
    gW = xt.T @ gz
    gD = None
    if tied:
        gW = gW + (h.T @ gr).T
    else:
        gD = h.T @ gr
    return loss, gW, gb, gD, gc


def ae_step(x, params, velocity, activation, tied, lr, mu, keep=None):
    """One SGD-with-momentum step on params = [W, b, D, c] (in place); returns the loss."""
    W, b, D, c = params
    loss, gW, gb, gD, gc = ae_gradients(x, W, b, D, c, activation, tied, keep)
    for p, g, v in zip(params, (gW, gb, gD, gc), velocity, strict=True):
        if g is None:
            continue
        v *= mu
        v -= lr * g
        p += v
    return loss


def encode_all(X, W, b, activation):
    return R.phi(activation, np.asarray(X, np.float64) @ W + b, 0.0)
