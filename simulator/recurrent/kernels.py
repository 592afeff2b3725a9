"""Numba kernels of backpropagation through time: one time step at a time.

A recurrent net keeps its parameters in one flat buffer (as the feedforward
core does), in the order of ``lay``: weight_ih (G*H, I), weight_hh (G*H, H),
bias_ih (G*H,), bias_hh (G*H,), W_out (H, O), b_out (O,), with PyTorch's
names, shapes and gate order (LSTM i, f, g, o; GRU r, z, n). The LSTM without
forget gate has three gates, i, g, o.

The per-sequence workspace is time-major: ``Xt`` (T, B, I) holds the inputs,
``Hs`` and ``Cs`` (T+1, B, H) the hidden and cell states with h_0 = c_0 = 0 at
index 0, ``A`` (T, B, G*H) the gate activations and ``Hn`` (T, B, H) the GRU's
W_hn h_{t-1} + b_hn (the part its reset gate multiplies), or for LSTMs tanh(c_t).

The micro-step path calls ``forward_step`` for t = 1..T, ``readout_loss``,
``backward_step`` for t = T..1, then the update; the fused ``train_step`` calls
the very same functions, so stepping through time shows what training does.
"""

from __future__ import annotations

import math

import numpy as np

from .. import kernels as K
from ..kernels import _kernel
from . import vmath as V

RNN, LSTM, LSTM_NO_FORGET, GRU = range(4)
GATES = (1, 4, 3, 3)  # gate blocks per cell, in the order above

# offsets of the parameter blocks in the flat buffer
(P_WIH, P_WHH, P_BIH, P_BHH, P_WOUT, P_BOUT) = range(6)

# status of train_step: 0 fine, else PHASE * 10000 + time step (the feedforward codes)
ST_FORWARD, ST_LOSS, ST_BACKWARD, ST_UPDATE = K.ST_FORWARD, K.ST_LOSS, K.ST_BACKWARD, K.ST_UPDATE


@_kernel
def _blocks(lay, params, G, H, I, O):
    """Views of the six parameter blocks of the flat buffer ``params``."""
    GH = G * H
    wih = params[lay[P_WIH]:lay[P_WIH] + GH * I].reshape((GH, I))
    whh = params[lay[P_WHH]:lay[P_WHH] + GH * H].reshape((GH, H))
    bih = params[lay[P_BIH]:lay[P_BIH] + GH]
    bhh = params[lay[P_BHH]:lay[P_BHH] + GH]
    wout = params[lay[P_WOUT]:lay[P_WOUT] + H * O].reshape((H, O))
    bout = params[lay[P_BOUT]:lay[P_BOUT] + O]
    return wih, whh, bih, bhh, wout, bout


@_kernel
def forward_step(cell, t, lay, params, Xt, Hs, Cs, A, Hn, O):
    """h_t (and c_t) from x_t and h_{t-1}, t = 1..T. Returns False if h_t is not finite.

    rnn:  h = tanh(W_ih x + b_ih + W_hh h' + b_hh)
    lstm: i, f, g, o = sig, sig, tanh, sig of the four blocks; c = f c' + i g; h = o tanh(c)
    lstm_no_forget: i, g, o; c = c' + i g (the 1997 constant error carousel)
    gru:  r, z = sig; n = tanh(W_in x + b_in + r (W_hn h' + b_hn)); h = (1 - z) n + z h'
    """
    T, B, I = Xt.shape
    H = Hs.shape[2]
    G = GATES[cell]
    wih, whh, bih, bhh, _, _ = _blocks(lay, params, G, H, I, O)
    gx = np.dot(Xt[t - 1], wih.T)
    gh = np.dot(Hs[t - 1], whh.T)
    return cell_forward(cell, t, gx, gh, bih, bhh, Hs, Cs, A, Hn)


@_kernel
def cell_forward(cell, t, gx, gh, bih, bhh, Hs, Cs, A, Hn):
    """The elementwise part of forward step t, given the input projection gx = x_t W_ih^T
    and the recurrent one gh = h_{t-1} W_hh^T (B, G*H) without biases (gh may be A[t-1]
    itself: each element is read before it is overwritten).

    The pre-activations of all gates of the step are summed first, then the activations
    run over whole contiguous gate blocks with the branch-free, vectorizable sigmoid and
    tanh of ``vmath``. For LSTMs, Hn[t-1] receives tanh(c_t), which the backward step
    reuses."""
    B = gx.shape[0]
    H = Hs.shape[2]
    GH = A.shape[2]
    hp = Hs[t - 1]
    a = A[t - 1]
    h = Hs[t]
    if cell == GRU:
        hn = Hn[t - 1]
        for b in range(B):
            for j in range(2 * H):
                a[b, j] = gx[b, j] + gh[b, j] + bih[j] + bhh[j]
            for j in range(H):
                hn[b, j] = gh[b, 2 * H + j] + bhh[2 * H + j]
            V.sigmoid_inplace(a[b, :2 * H])
            for j in range(H):
                a[b, 2 * H + j] = gx[b, 2 * H + j] + bih[2 * H + j] + a[b, j] * hn[b, j]
            V.tanh_inplace(a[b, 2 * H:])
            for j in range(H):
                z = a[b, H + j]
                h[b, j] = (1.0 - z) * a[b, 2 * H + j] + z * hp[b, j]
        return math.isfinite(V.total(h.reshape(B * H)))
    for b in range(B):
        for k in range(GH):
            a[b, k] = gx[b, k] + gh[b, k] + bih[k] + bhh[k]
    if cell == RNN:
        V.tanh_inplace(a.reshape(B * H))
        h[:, :] = a
        return math.isfinite(V.total(h.reshape(B * H)))
    cp = Cs[t - 1]
    c = Cs[t]
    tc = Hn[t - 1]
    if cell == LSTM:  # gates i, f, g, o
        for b in range(B):
            V.sigmoid_inplace(a[b, :2 * H])
            V.tanh_inplace(a[b, 2 * H:3 * H])
            V.sigmoid_inplace(a[b, 3 * H:])
            for j in range(H):
                c[b, j] = a[b, H + j] * cp[b, j] + a[b, j] * a[b, 2 * H + j]
    else:  # lstm_no_forget, gates i, g, o; c = c' + i g (the 1997 constant error carousel)
        for b in range(B):
            V.sigmoid_inplace(a[b, :H])
            V.tanh_inplace(a[b, H:2 * H])
            V.sigmoid_inplace(a[b, 2 * H:])
            for j in range(H):
                c[b, j] = cp[b, j] + a[b, j] * a[b, H + j]
    V.tanh_into(c.reshape(B * H), tc.reshape(B * H))
    o0 = (GATES[cell] - 1) * H
    for b in range(B):
        for j in range(H):
            h[b, j] = a[b, o0 + j] * tc[b, j]
    return math.isfinite(V.total(h.reshape(B * H)) + V.total(c.reshape(B * H)))


@_kernel
def readout_loss(lay, params, grads, Hs, O, loss_code, labels, targets, idx, out, delta, dh, dc):
    """o = h_T W_out + b_out, the loss, dL/dW_out, dL/db_out, and dL/dh_T into dh
    (dc, the cell-path error, starts at 0). Returns (loss, number correct)."""
    T1, B, H = Hs.shape
    hT = Hs[T1 - 1]
    wout = params[lay[P_WOUT]:lay[P_WOUT] + H * O].reshape((H, O))
    bout = params[lay[P_BOUT]:lay[P_BOUT] + O]
    o = np.dot(hT, wout)
    for b in range(B):
        for k in range(O):
            o[b, k] += bout[k]
            out[b, k] = o[b, k]
    if loss_code == K.LOSS_XENT:
        loss, correct = K.softmax_xent(o, labels, idx, delta)
    else:
        loss, correct = K.mse_loss(o, targets, labels, idx, delta)
    gw = grads[lay[P_WOUT]:lay[P_WOUT] + H * O].reshape((H, O))
    gb = grads[lay[P_BOUT]:lay[P_BOUT] + O]
    gw[:, :] = np.dot(hT.T, delta)
    for k in range(O):
        acc = 0.0
        for b in range(B):
            acc += delta[b, k]
        gb[k] = acc
    dh[:, :] = np.dot(delta, wout.T)
    dc[:, :] = 0.0
    return loss, correct


@_kernel
def zero_recurrent_grads(lay, grads, G, H, I):
    GH = G * H
    grads[lay[P_WIH]:lay[P_WIH] + GH * I] = 0.0
    grads[lay[P_WHH]:lay[P_WHH] + GH * H] = 0.0
    grads[lay[P_BIH]:lay[P_BIH] + GH] = 0.0
    grads[lay[P_BHH]:lay[P_BHH] + GH] = 0.0


@_kernel
def cell_step_backward(cell, hp, cp, c, h, a, hn, dh, dc, dgx, dgh):
    """The local part of one backward time step: from dL/dh_t (dh, total) and the
    cell-path error dc arriving from t+1, the gate pre-activation errors dgx (input
    side) and dgh (recurrent side; written only for the GRU, where its n block differs
    from dgx; for the other cells the recurrent side is dgx itself),
    dc <- the cell-path error passed to t-1, and dh <- the part of dL/dh_{t-1}
    that does not go through W_hh (the GRU's z h' term; 0 otherwise).
    ``hn`` is the GRU's W_hn h' + b_hn, and for LSTMs tanh(c_t) (both as the forward
    step stored them in Hn). Returns (||dL/dh_t||^2, ||dL/dc_t||^2) over the batch."""
    B, H = dh.shape
    sh = V.sum_squares(dh.reshape(B * H))
    sc = 0.0
    if cell == RNN:
        for b in range(B):
            for j in range(H):
                v = h[b, j]
                d = dh[b, j] * (1.0 - v * v)
                dgx[b, j] = d
                dh[b, j] = 0.0
    elif cell == LSTM or cell == LSTM_NO_FORGET:
        G = 4 if cell == LSTM else 3
        ko = (G - 1) * H  # the o block; g is the block before it
        kg = ko - H
        for b in range(B):
            for j in range(H):
                g = dh[b, j]
                tc = hn[b, j]
                og = a[b, ko + j]
                dc[b, j] += g * og * (1.0 - tc * tc)  # dL/dc_t in total
                dgx[b, ko + j] = g * tc * og * (1.0 - og)
                dh[b, j] = 0.0
        sc = V.sum_squares(dc.reshape(B * H))
        for b in range(B):
            for j in range(H):
                dct = dc[b, j]
                ig = a[b, j]
                gg = a[b, kg + j]
                dgx[b, j] = dct * gg * ig * (1.0 - ig)
                dgx[b, kg + j] = dct * ig * (1.0 - gg * gg)
        if cell == LSTM:
            for b in range(B):
                for j in range(H):
                    fg = a[b, H + j]
                    dgx[b, H + j] = dc[b, j] * cp[b, j] * fg * (1.0 - fg)
                    dc[b, j] = dc[b, j] * fg  # dc_t/dc_{t-1} = f_t along the cell path
        # without a forget gate dc_t/dc_{t-1} = 1: dc passes on unchanged
    else:
        for b in range(B):
            for j in range(H):
                g = dh[b, j]
                r = a[b, j]
                z = a[b, H + j]
                n = a[b, 2 * H + j]
                dn = g * (1.0 - z) * (1.0 - n * n)
                dz = g * (hp[b, j] - n) * z * (1.0 - z)
                dr = dn * hn[b, j] * r * (1.0 - r)
                dgx[b, j] = dr
                dgx[b, H + j] = dz
                dgx[b, 2 * H + j] = dn
                dgh[b, j] = dr
                dgh[b, H + j] = dz
                dgh[b, 2 * H + j] = dn * r
                dh[b, j] = g * z
    return sh, sc


@_kernel
def backward_step(cell, t, lay, params, grads, Xt, Hs, Cs, A, Hn, dh, dc, dgx, dgh, O):
    """Backward through time step t (T..1): dh holds dL/dh_t on entry and dL/dh_{t-1}
    on exit, dc the cell-path error likewise; the weight gradients of step t accumulate
    (dgx, dgh: (T, B, G*H), the gate errors of every step).
    Returns (||dL/dh_t||, ||dL/dc_t||, finite)."""
    T, B, I = Xt.shape
    H = Hs.shape[2]
    G = GATES[cell]
    gwih, gwhh, gbih, gbhh, _, _ = _blocks(lay, grads, G, H, I, O)
    nh, nc, ok = backward_through(cell, t, lay, params, Xt, Hs, Cs, A, Hn, dh, dc, dgx, dgh, O)
    x = Xt[t - 1]
    gx = dgx[t - 1]
    gh = dgh[t - 1] if cell == GRU else gx
    gwih += np.dot(gx.T, x)
    gwhh += np.dot(gh.T, Hs[t - 1])
    GH = G * H
    for b in range(B):
        for j in range(GH):
            gbih[j] += gx[b, j]
            gbhh[j] += gh[b, j]
    return nh, nc, ok


@_kernel
def backward_through(cell, t, lay, params, Xt, Hs, Cs, A, Hn, dh, dc, dgx, dgh, O):
    """The part of backward step t that the next one waits for: the gate errors of step t
    into dgx[t-1], dgh[t-1], and dh <- dL/dh_{t-1}, dc <- the cell-path error for t-1.
    Returns (||dL/dh_t||, ||dL/dc_t||, finite)."""
    T, B, I = Xt.shape
    H = Hs.shape[2]
    G = GATES[cell]
    _, whh, _, _, _, _ = _blocks(lay, params, G, H, I, O)
    gh = dgh[t - 1] if cell == GRU else dgx[t - 1]
    sh, sc = cell_step_backward(cell, Hs[t - 1], Cs[t - 1], Cs[t], Hs[t], A[t - 1], Hn[t - 1], dh,
                                dc, dgx[t - 1], gh)
    if cell == GRU:  # dh holds the z h' part; dc (unused by the GRU) takes the product
        np.dot(gh, whh, dc)
        for b in range(B):
            for j in range(H):
                dh[b, j] += dc[b, j]
    else:  # dh is 0 here: the product goes straight into it, no temporary
        np.dot(gh, whh, dh)
    return math.sqrt(sh), math.sqrt(sc), math.isfinite(sh + sc)


@_kernel
def load_sequences(X, idx, Xt):
    """Xt[t, b] = X[idx[b], t]: the batch, time-major."""
    B = idx.shape[0]
    T = X.shape[1]
    for b in range(B):
        r = idx[b]
        for t in range(T):
            for i in range(X.shape[2]):
                Xt[t, b, i] = X[r, t, i]


@_kernel
def forward_all(cell, lay, params, Xt, Hs, Cs, A, Hn, O):
    """Every forward step; returns 0 or the first time step whose state is not finite."""
    T, B, I = Xt.shape
    H = Hs.shape[2]
    G = GATES[cell]
    wih, whh, bih, bhh, _, _ = _blocks(lay, params, G, H, I, O)
    # every step's input projection in one product; only h_{t-1} W_hh^T must wait for t-1
    GX = np.dot(Xt.reshape((T * B, I)), wih.T)
    for t in range(1, T + 1):
        # h_{t-1} W_hh^T straight into the step's gate block, which cell_forward then
        # turns into activations in place (no temporary per step)
        np.dot(Hs[t - 1], whh.T, A[t - 1])
        if not cell_forward(cell, t, GX[(t - 1) * B:t * B], A[t - 1], bih, bhh, Hs, Cs, A, Hn):
            return t
    return 0


@_kernel
def backward_all(cell, lay, params, grads, Xt, Hs, Cs, A, Hn, dh, dc, dgx, dgh, O, hnorm,
                 cnorm):
    """Every backward step from T down to 1; hnorm[t-1] = ||dL/dh_t||, cnorm[t-1] =
    ||dL/dc_t||. Returns 0 or the first time step whose error is not finite."""
    T, B, I = Xt.shape
    H = Hs.shape[2]
    G = GATES[cell]
    GH = G * H
    for t in range(T, 0, -1):
        nh, nc, ok = backward_through(cell, t, lay, params, Xt, Hs, Cs, A, Hn, dh, dc, dgx,
                                      dgh, O)
        hnorm[t - 1] = nh
        cnorm[t - 1] = nc
        if not ok:
            return t
    # the weight gradients of all steps at once: sum_t dgx_t^T x_t is one product over
    # the T * B rows (the same sums backward_step accumulates step by step)
    gwih, gwhh, gbih, gbhh, _, _ = _blocks(lay, grads, G, H, I, O)
    DX = dgx.reshape((T * B, GH))
    DH = dgh.reshape((T * B, GH)) if cell == GRU else DX  # equal but for the GRU
    np.dot(DX.T, Xt.reshape((T * B, I)), gwih)
    np.dot(DH.T, Hs[:T].reshape((T * B, H)), gwhh)
    # the bias gradients are column sums, as one matrix-vector product each
    ones = np.ones(T * B, dgx.dtype)
    np.dot(ones, DX, gbih)
    if cell == GRU:
        np.dot(ones, DH, gbhh)
    else:
        gbhh[:] = gbih
    return 0


@_kernel
def clip_and_update(opt, params, grads, m1, m2, hyper, decay_mask, elem_layer, upd_sq):
    """Global-norm clipping (Pascanu et al. 2013), then the feedforward core's optimizer
    step. Returns (gradient norm before clipping, first bad index or -1)."""
    gn = K.global_grad_norm(grads)
    scale = 1.0
    if hyper[K.H_CLIP_NORM] > 0.0 and gn > hyper[K.H_CLIP_NORM]:
        scale = hyper[K.H_CLIP_NORM] / gn
    bad = K.update_params(opt, params, grads, m1, m2, hyper, decay_mask, elem_layer, upd_sq,
                          scale)
    return gn, bad


@_kernel
def train_step(cell, lay, params, grads, m1, m2, hyper, decay_mask, elem_layer, upd_sq, X,
               labels, targets, idx, Xt, Hs, Cs, A, Hn, dh, dc, dgx, dgh, out, delta, O,
               loss_code, opt, hnorm, cnorm, res):
    """One whole BPTT iteration: load, forward t = 1..T, loss, backward t = T..1, update.
    res = (loss, correct, gradient norm). Returns 0 or PHASE * 10000 + time step."""
    load_sequences(X, idx, Xt)
    bad = forward_all(cell, lay, params, Xt, Hs, Cs, A, Hn, O)
    if bad:
        return ST_FORWARD * 10000 + bad
    loss, correct = readout_loss(lay, params, grads, Hs, O, loss_code, labels, targets, idx, out,
                                 delta, dh, dc)
    res[0] = loss
    res[1] = correct
    if not math.isfinite(loss):
        return ST_LOSS * 10000
    bad = backward_all(cell, lay, params, grads, Xt, Hs, Cs, A, Hn, dh, dc, dgx, dgh, O, hnorm,
                       cnorm)
    if bad:
        return ST_BACKWARD * 10000 + bad
    gn, badp = clip_and_update(opt, params, grads, m1, m2, hyper, decay_mask, elem_layer, upd_sq)
    res[2] = gn
    if badp >= 0:
        return ST_UPDATE * 10000
    return 0


@_kernel
def train_steps(cell, lay, params, grads, m1, m2, hyper, decay_mask, elem_layer, upd_sq, X,
                labels, targets, batches, Xt, Hs, Cs, A, Hn, dh, dc, dgx, dgh, out, delta, O,
                loss_code, opt, hnorm, cnorm, res, hist):
    """Several iterations in one call. hist[s] = (loss, correct, gradient norm,
    ||dL/dh_1||, ||dL/dh_T||) after step s. Returns (steps done, status of the last)."""
    n_steps = batches.shape[0]
    T = Xt.shape[0]
    t0 = hyper[K.H_T]
    for s in range(n_steps):
        hyper[K.H_T] = t0 + s
        status = train_step(cell, lay, params, grads, m1, m2, hyper, decay_mask, elem_layer,
                            upd_sq, X, labels, targets, batches[s], Xt, Hs, Cs, A, Hn, dh, dc,
                            dgx, dgh, out, delta, O, loss_code, opt, hnorm, cnorm, res)
        hist[s, 0] = res[0]
        hist[s, 1] = res[1]
        hist[s, 2] = res[2]
        hist[s, 3] = hnorm[0]
        hist[s, 4] = hnorm[T - 1]
        if status != 0:
            return s, status
    return n_steps, 0
