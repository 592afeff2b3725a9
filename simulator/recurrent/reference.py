"""Plain-numpy twins of the recurrent kernels: the reference the tests compare against.

Written for clarity, one time step at a time, with the same conventions
(PyTorch gate order, h_0 = c_0 = 0, readout at the last step, loss as in the
feedforward core).
"""

from __future__ import annotations

import numpy as np


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def forward_step(cell, p, x, hp, cp):
    """One step; returns (h, c, cache) with everything the backward step needs."""
    H = hp.shape[1]
    gx = x @ p["weight_ih"].T + p["bias_ih"]
    gh = hp @ p["weight_hh"].T + p["bias_hh"]
    if cell == "rnn":
        h = np.tanh(gx + gh)
        return h, cp, {"h": h}
    if cell == "gru":
        r = _sig(gx[:, :H] + gh[:, :H])
        z = _sig(gx[:, H:2 * H] + gh[:, H:2 * H])
        m = gh[:, 2 * H:]
        n = np.tanh(gx[:, 2 * H:] + r * m)
        h = (1 - z) * n + z * hp
        return h, cp, {"r": r, "z": z, "n": n, "m": m}
    s = gx + gh
    if cell == "lstm":
        i, f, g, o = (s[:, k * H:(k + 1) * H] for k in range(4))
        i, f, g, o = _sig(i), _sig(f), np.tanh(g), _sig(o)
    else:  # lstm_no_forget
        i, g, o = (s[:, k * H:(k + 1) * H] for k in range(3))
        i, g, o = _sig(i), np.tanh(g), _sig(o)
        f = np.ones_like(i)
    c = f * cp + i * g
    h = o * np.tanh(c)
    return h, c, {"i": i, "f": f, "g": g, "o": o, "c": c}


def backward_step(cell, p, x, hp, cp, cache, dh, dc):
    """From dL/dh_t (total) and the cell-path error dc from t+1: the parameter
    gradients of this step, dL/dh_{t-1} (through this step), the cell-path error
    for t-1 and dL/dc_t (total, LSTMs; None otherwise)."""
    if cell == "rnn":
        dgx = dh * (1 - cache["h"] ** 2)
        dgh = dgx
        dh_prev_direct = 0.0
        dc_prev = dc
        dct = None
    elif cell == "gru":
        r, z, n, m = cache["r"], cache["z"], cache["n"], cache["m"]
        dn = dh * (1 - z) * (1 - n ** 2)
        dz = dh * (hp - n) * z * (1 - z)
        dr = dn * m * r * (1 - r)
        dgx = np.concatenate([dr, dz, dn], axis=1)
        dgh = np.concatenate([dr, dz, dn * r], axis=1)
        dh_prev_direct = dh * z
        dc_prev = dc
        dct = None
    else:
        i, f, g, o, c = cache["i"], cache["f"], cache["g"], cache["o"], cache["c"]
        tc = np.tanh(c)
        dct = dc + dh * o * (1 - tc ** 2)
        di = dct * g * i * (1 - i)
        dg = dct * i * (1 - g ** 2)
        do = dh * tc * o * (1 - o)
        if cell == "lstm":
            df = dct * cp * f * (1 - f)
            dgx = np.concatenate([di, df, dg, do], axis=1)
        else:
            dgx = np.concatenate([di, dg, do], axis=1)
        dgh = dgx
        dh_prev_direct = 0.0
        dc_prev = dct * f
    grads = {"weight_ih": dgx.T @ x, "weight_hh": dgh.T @ hp, "bias_ih": dgx.sum(0),
             "bias_hh": dgh.sum(0)}
    dh_prev = dgh @ p["weight_hh"] + dh_prev_direct
    return grads, dh_prev, dc_prev, dct


def _loss(loss, o, y):
    B, K = o.shape
    if loss == "cross_entropy":
        m = o.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(o - m).sum(axis=1))
        labels = np.asarray(y, np.int64)
        value = float(np.mean(lse - o[np.arange(B), labels]))
        P = np.exp(o - lse[:, None])
        P[np.arange(B), labels] -= 1.0
        return value, P / B
    d = o - np.asarray(y, np.float64).reshape(B, K)
    return float(np.mean(d * d)), 2.0 * d / (B * K)


def forward(cell, p, X):
    """All hidden states (T+1 entries, h_0 first), cell states and caches."""
    B, T, _ = X.shape
    H = p["weight_hh"].shape[1]
    hs, cs, caches = [np.zeros((B, H))], [np.zeros((B, H))], []
    for t in range(T):
        h, c, cache = forward_step(cell, p, X[:, t], hs[-1], cs[-1])
        hs.append(h)
        cs.append(c)
        caches.append(cache)
    return hs, cs, caches


def loss_value(cell, loss, p, X, y) -> float:
    hs, _, _ = forward(cell, p, np.asarray(X, np.float64))
    o = hs[-1] @ p["W_out"] + p["b_out"]
    return _loss(loss, o, y)[0]


def loss_and_gradients(cell, loss, p, X, y):
    """(loss, grads dict, ||dL/dh_t|| for t = 1..T, ||dL/dc_t|| or None)."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    X = np.asarray(X, np.float64)
    hs, cs, caches = forward(cell, p, X)
    o = hs[-1] @ p["W_out"] + p["b_out"]
    value, delta = _loss(loss, o, y)
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    grads["W_out"] = hs[-1].T @ delta
    grads["b_out"] = delta.sum(0)
    dh = delta @ p["W_out"].T
    dc = np.zeros_like(dh)
    T = X.shape[1]
    hnorm, cnorm = np.zeros(T), np.zeros(T)
    for t in range(T, 0, -1):
        hnorm[t - 1] = np.linalg.norm(dh)
        g, dh, dc, dct = backward_step(cell, p, X[:, t - 1], hs[t - 1], cs[t - 1],
                                       caches[t - 1], dh, dc)
        if dct is not None:
            cnorm[t - 1] = np.linalg.norm(dct)
        for k in g:
            grads[k] += g[k]
    return value, grads, hnorm, (cnorm if cell.startswith("lstm") else None)
