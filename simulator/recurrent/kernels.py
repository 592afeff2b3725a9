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

_ONE = np.float32(1.0)  # float32 op float32 stays float32; float64 op float32 is float64


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


def _lstm_kernels(forget: bool):
    """The elementwise forward and backward step of an LSTM, with the forget gate
    (gates i, f, g, o) or without it (i, g, o: the 1997 cell).

    One pair of kernels per variant, so that every gate block's offset is a constant
    multiple of H (KG * H, KO * H). numba checks each index for being negative (and
    wraps it round); for k * H + j with a constant k >= 0 LLVM proves it is not and
    drops the check, but for an offset such as (G - 1) * H with G known only at run
    time the check stays in the loop and stops it from vectorizing (measured: the
    backward step a fifth slower)."""
    KG = 2 if forget else 1  # block of g; the blocks before it are sigmoid gates
    KO = KG + 1  # block of o

    @_kernel
    def forward(a, cp, c, tc, h):
        """a (B, G*H): the gate pre-activations, turned into activations in place;
        c <- f c' + i g (c' + i g without forget gate), tc <- tanh(c), h <- o tc.
        Returns False if h or c is not finite."""
        B, H = c.shape
        for b in range(B):
            ab = a[b]
            V.sigmoid_inplace(ab[:KG * H])
            V.tanh_inplace(ab[KG * H:KO * H])
            V.sigmoid_inplace(ab[KO * H:])
        for b in range(B):
            ab = a[b]
            cb = c[b]
            cpb = cp[b]
            if forget:
                for j in range(H):
                    cb[j] = ab[H + j] * cpb[j] + ab[j] * ab[KG * H + j]
            else:
                for j in range(H):
                    cb[j] = cpb[j] + ab[j] * ab[KG * H + j]
        V.tanh_into(c.reshape(B * H), tc.reshape(B * H))
        for b in range(B):
            ab = a[b]
            tcb = tc[b]
            hb = h[b]
            for j in range(H):
                hb[j] = ab[KO * H + j] * tcb[j]
        return math.isfinite(V.total(h.reshape(B * H)) + V.total(c.reshape(B * H)))

    @_kernel
    def backward(cp, a, tc, dh, dc, dgx):
        """From dL/dh_t (dh) and the cell-path error dc from t+1: the gate errors dgx,
        and dc <- the cell-path error passed to t-1 (times f_t; unchanged without a
        forget gate). Returns ||dL/dc_t||^2."""
        B, H = dh.shape
        ko = KO * H
        kg = KG * H
        for b in range(B):
            ab = a[b]
            dhb = dh[b]
            tcb = tc[b]
            gb = dgx[b]
            for j in range(H):
                og = ab[ko + j]
                gb[ko + j] = dhb[j] * tcb[j] * og * (_ONE - og)
        for b in range(B):
            ab = a[b]
            dhb = dh[b]
            tcb = tc[b]
            dcb = dc[b]
            for j in range(H):
                v = tcb[j]
                dcb[j] += dhb[j] * ab[ko + j] * (_ONE - v * v)  # dL/dc_t in total
        sc = V.sum_squares(dc.reshape(B * H))
        for b in range(B):
            ab = a[b]
            dcb = dc[b]
            gb = dgx[b]
            for j in range(H):
                ig = ab[j]
                gb[j] = dcb[j] * ab[kg + j] * ig * (_ONE - ig)
            for j in range(H):
                gg = ab[kg + j]
                gb[kg + j] = dcb[j] * ab[j] * (_ONE - gg * gg)
            if forget:
                cpb = cp[b]
                for j in range(H):
                    fg = ab[H + j]
                    gb[H + j] = dcb[j] * cpb[j] * fg * (_ONE - fg)
                for j in range(H):
                    dcb[j] *= ab[H + j]  # dc_t/dc_{t-1} = f_t along the cell path
            # without a forget gate dc_t/dc_{t-1} = 1: dc passes on unchanged
        return sc

    return forward, backward


_lstm_forward, _lstm_backward = _lstm_kernels(True)
_lstm_nf_forward, _lstm_nf_backward = _lstm_kernels(False)


@_kernel
def forward_constants(cell, wih, bih, bhh):
    """(W_ih^T as a contiguous (I, G*H) array, the summed biases) for the forward steps:
    b_ih + b_hh for every gate block, except the GRU's n block, which takes b_ih alone
    (its b_hn sits inside the reset gate's product)."""
    wihT = np.ascontiguousarray(wih.T)
    bsum = bih + bhh
    if cell == GRU:
        H = bih.shape[0] // 3
        bsum[2 * H:] = bih[2 * H:]
    return wihT, bsum


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
    wihT, bsum = forward_constants(cell, wih, bih, bhh)
    np.dot(Hs[t - 1], whh.T, A[t - 1])
    return cell_forward(cell, t, Xt[t - 1], wihT, bsum, bhh, Hs, Cs, A, Hn)


@_kernel
def _add_input(a, x, wihT, bsum):
    """a[b] += bsum + x[b] W_ih^T, row by row (for the short inputs of these tasks this
    beats a separate matrix product: the rows of a are hot in cache, and no (B, G*H)
    temporary is written and read back)."""
    B, GH = a.shape
    I = x.shape[1]
    for b in range(B):
        ab = a[b]
        for k in range(GH):
            ab[k] += bsum[k]
        for i in range(I):
            xi = x[b, i]
            wi = wihT[i]
            for k in range(GH):
                ab[k] += xi * wi[k]


@_kernel
def cell_forward(cell, t, x, wihT, bsum, bhh, Hs, Cs, A, Hn):
    """The elementwise part of forward step t. On entry A[t-1] holds the recurrent
    projection h_{t-1} W_hh^T (B, G*H) without biases; the input projection x_t W_ih^T
    (x = Xt[t-1], wihT = W_ih^T) and the biases (``forward_constants``) are added here,
    then the activations run in place over whole contiguous gate blocks with the
    branch-free, vectorizable sigmoid and tanh of ``vmath``. For LSTMs, Hn[t-1] receives
    tanh(c_t), which the backward step reuses; for the GRU, W_hn h' + b_hn.

    Each loop writes one array (and reads others): LLVM vectorizes a loop only when it
    can rule out overlap between what it writes and what it reads, and the runtime
    checks for that stay few this way."""
    B = x.shape[0]
    H = Hs.shape[2]
    hp = Hs[t - 1]
    a = A[t - 1]
    h = Hs[t]
    if cell == GRU:
        hn = Hn[t - 1]
        for b in range(B):
            ab = a[b]
            hnb = hn[b]
            for j in range(H):
                hnb[j] = ab[2 * H + j] + bhh[2 * H + j]
            for j in range(H):
                ab[2 * H + j] = 0.0
        _add_input(a, x, wihT, bsum)
        for b in range(B):
            ab = a[b]
            hnb = hn[b]
            V.sigmoid_inplace(ab[:2 * H])
            for j in range(H):
                ab[2 * H + j] += ab[j] * hnb[j]
            V.tanh_inplace(ab[2 * H:])
        for b in range(B):
            ab = a[b]
            hb = h[b]
            hpb = hp[b]
            for j in range(H):
                z = ab[H + j]
                hb[j] = ab[2 * H + j] + z * (hpb[j] - ab[2 * H + j])
        return math.isfinite(V.total(h.reshape(B * H)))
    _add_input(a, x, wihT, bsum)
    if cell == RNN:
        V.tanh_inplace(a.reshape(B * H))
        h[:, :] = a
        return math.isfinite(V.total(h.reshape(B * H)))
    if cell == LSTM:
        return _lstm_forward(a, Cs[t - 1], Cs[t], Hn[t - 1], h)
    return _lstm_nf_forward(a, Cs[t - 1], Cs[t], Hn[t - 1], h)


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
    from dgx; for the other cells the recurrent side is dgx itself), and dc <- the
    cell-path error passed to t-1. For the GRU, dh <- the part of dL/dh_{t-1} that does
    not go through W_hh (its z h' term); for the other cells that part is 0 and dh is
    left for the caller to overwrite with dgx W_hh.
    ``hn`` is the GRU's W_hn h' + b_hn, and for LSTMs tanh(c_t) (both as the forward
    step stored them in Hn). Returns (||dL/dh_t||^2, ||dL/dc_t||^2) over the batch.

    As in the forward step, each loop writes one array, so that each vectorizes; the
    constant 1 is a float32, so float32 arrays stay in float32 arithmetic (a float64
    literal would widen every product to float64 and halve the vector lanes)."""
    B, H = dh.shape
    sh = V.sum_squares(dh.reshape(B * H))
    sc = 0.0
    if cell == RNN:
        for b in range(B):
            hb = h[b]
            dhb = dh[b]
            gb = dgx[b]
            for j in range(H):
                v = hb[j]
                gb[j] = dhb[j] * (_ONE - v * v)
    elif cell == LSTM:
        sc = _lstm_backward(cp, a, hn, dh, dc, dgx)
    elif cell == LSTM_NO_FORGET:
        sc = _lstm_nf_backward(cp, a, hn, dh, dc, dgx)
    else:
        for b in range(B):
            ab = a[b]
            dhb = dh[b]
            hpb = hp[b]
            hnb = hn[b]
            gb = dgx[b]
            for j in range(H):
                n = ab[2 * H + j]
                gb[2 * H + j] = dhb[j] * (_ONE - ab[H + j]) * (_ONE - n * n)  # dn
            for j in range(H):
                z = ab[H + j]
                gb[H + j] = dhb[j] * (hpb[j] - ab[2 * H + j]) * z * (_ONE - z)  # dz
            for j in range(H):
                r = ab[j]
                gb[j] = gb[2 * H + j] * hnb[j] * r * (_ONE - r)  # dr
            hb = dgh[b]
            for j in range(2 * H):
                hb[j] = gb[j]
            for j in range(H):
                hb[2 * H + j] = gb[2 * H + j] * ab[j]
            for j in range(H):
                dhb[j] *= ab[H + j]
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
    wihT, bsum = forward_constants(cell, wih, bih, bhh)
    for t in range(1, T + 1):
        # h_{t-1} W_hh^T straight into the step's gate block, which cell_forward then
        # completes and turns into activations in place (no temporary per step)
        np.dot(Hs[t - 1], whh.T, A[t - 1])
        if not cell_forward(cell, t, Xt[t - 1], wihT, bsum, bhh, Hs, Cs, A, Hn):
            return t
    return 0


@_kernel
def _accumulate_input_grads(g, x, gwihT, gb):
    """gwihT += x^T g (the input weights' gradient, transposed) and gb += the column
    sums of g, for one time step's gate errors g (B, G*H) and inputs x (B, I)."""
    B, GH = g.shape
    I = x.shape[1]
    for b in range(B):
        gr = g[b]
        for k in range(GH):
            gb[k] += gr[k]
        for i in range(I):
            xi = x[b, i]
            wr = gwihT[i]
            for k in range(GH):
                wr[k] += xi * gr[k]


@_kernel
def backward_all(cell, lay, params, grads, Xt, Hs, Cs, A, Hn, dh, dc, dgx, dgh, O, hnorm,
                 cnorm):
    """Every backward step from T down to 1; hnorm[t-1] = ||dL/dh_t||, cnorm[t-1] =
    ||dL/dc_t||. Returns 0 or the first time step whose error is not finite.

    The input weights' and the biases' gradients are summed step by step while the
    step's gate errors are still in cache (with I inputs, a product over all T * B
    rows at the end would read every gate error again to do 2 I flops with each);
    the recurrent weights' gradient, sum_t dgh_t^T h_{t-1}, is one product over the
    T * B rows at the end."""
    T, B, I = Xt.shape
    H = Hs.shape[2]
    G = GATES[cell]
    GH = G * H
    gwih, gwhh, gbih, gbhh, _, _ = _blocks(lay, grads, G, H, I, O)
    gwihT = np.zeros((I, GH), gwih.dtype)
    gbih[:] = 0.0
    gbhh[:] = 0.0
    for t in range(T, 0, -1):
        nh, nc, ok = backward_through(cell, t, lay, params, Xt, Hs, Cs, A, Hn, dh, dc, dgx,
                                      dgh, O)
        hnorm[t - 1] = nh
        cnorm[t - 1] = nc
        if not ok:
            return t
        _accumulate_input_grads(dgx[t - 1], Xt[t - 1], gwihT, gbih)
        if cell == GRU:
            gh = dgh[t - 1]
            for b in range(B):
                ghb = gh[b]
                for k in range(GH):
                    gbhh[k] += ghb[k]
    gwih[:, :] = gwihT.T
    if cell != GRU:
        gbhh[:] = gbih  # the recurrent side's gate errors are the input side's
    DH = dgh.reshape((T * B, GH)) if cell == GRU else dgx.reshape((T * B, GH))
    np.dot(DH.T, Hs[:T].reshape((T * B, H)), gwhh)
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
