"""The core's training step written as plain vectorized numpy, for bench/core.py.

Same maths as ``simulator.kernels.train_step`` for the networks the benchmark
builds (dense layers, sigmoid/tanh/relu hidden layers, a linear output layer,
mean softmax cross-entropy, plain SGD) and the same per-layer statistics per
step, so that timing it against the core compares like with like:

    z_k = a_{k-1} W_k + b_k,  a_k = phi_k(z_k)
    delta_{L+1} = (softmax(z_{L+1}) - onehot(y)) / B
    dW_k = a_{k-1}^T delta_k,  db_k = sum_b delta_k,  delta_{k-1} = (delta_k W_k^T) * phi'(z_{k-1})
    W_k -= lr dW_k,  b_k -= lr db_k

This is a benchmark reference, not a test twin: it supports only what the
benchmark uses. Buffers are float32 throughout and preallocated where numpy
lets a ufunc write into them.
"""

from __future__ import annotations

import numpy as np

# Columns of the (L+1, N_STATS) statistics table both benchmark references return;
# row i is weight layer i+1 (the last row is the output layer).
STAT_NAMES = (
    "delta_norm",  # ||delta_k|| (Frobenius, over the batch)
    "grad_norm",  # ||dL/dW_k||
    "weight_norm",  # ||W_k|| after the update
    "update_norm",  # ||step applied to W_k||
    "weight_change",  # ||W_k - W_k(init)||
    "dead_fraction",  # relu units with z <= 0 for the whole batch
    "saturated_fraction",  # sigmoid/tanh units with batch-mean phi'(z) < 1e-3
    "act_mean",  # mean of a_k over batch and units
    "act_std",
)
(DELTA, GRAD_W, WEIGHT, UPDATE, CHANGE, DEAD, SAT, ACT_MEAN, ACT_STD) = range(len(STAT_NAMES))
N_STATS = len(STAT_NAMES)

ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear")
SATURATION_THRESHOLD = 1e-3  # the core's kernels.SATURATION_THRESHOLD


def _norm(x: np.ndarray) -> float:
    """||x||, with the sum of squares in float64 when float32 would under- or overflow.

    The core accumulates in float64, and a vanished gradient's norm (1e-30 in a deep
    sigmoid net) is exactly what the app shows, so float32's 0 will not do."""
    flat = x.ravel()
    s = float(np.dot(flat, flat))
    if not 1e-30 < s < 1e30:
        s = float(np.square(flat, dtype=np.float64).sum())
    return s ** 0.5


class NumpyNet:
    """A dense network trained by SGD on softmax cross-entropy, in float32 numpy.

    ``weights[k]`` is (width_k, width_{k+1}) so that z = a W + b, as in the core.
    ``activations`` has one name per hidden layer; the output layer is linear.
    """

    def __init__(self, weights, biases, activations, lr: float, batch_size: int):
        if len(weights) != len(biases) or len(activations) != len(weights) - 1:
            raise ValueError("need one weight and bias per layer, one activation per hidden one")
        for act in activations:
            if act not in ACTIVATIONS:
                raise ValueError(f"unsupported activation {act!r}")
        self.W = [np.array(w, np.float32) for w in weights]
        self.b = [np.array(b, np.float32) for b in biases]
        self.W0 = [w.copy() for w in self.W]
        self.acts = (*activations, "linear")
        self.lr = np.float32(lr)
        B = batch_size
        self.B = B
        widths = [self.W[0].shape[0], *(w.shape[1] for w in self.W)]
        # a_k, z_k, phi'(z_k) and delta_k per layer; dW_k, db_k and W_k - W0_k per layer
        self.a = [np.empty((B, n), np.float32) for n in widths]
        self.z = [np.empty((B, n), np.float32) for n in widths[1:]]
        self.dphi = [np.empty((B, n), np.float32) for n in widths[1:]]
        self.delta = [np.empty((B, n), np.float32) for n in widths[1:]]
        self.dW = [np.empty_like(w) for w in self.W]
        self.db = [np.empty_like(b) for b in self.b]
        self.diff = [np.empty_like(w) for w in self.W]
        self.stats = np.zeros((len(self.W), N_STATS))

    def _forward_layer(self, i: int) -> None:
        """Weight layer i+1: z = a W + b, a = phi(z), phi'(z) kept for the backward pass."""
        z, a, d = self.z[i], self.a[i + 1], self.dphi[i]
        np.matmul(self.a[i], self.W[i], out=z)
        z += self.b[i]
        act = self.acts[i]
        st = self.stats[i]
        if act == "sigmoid":
            # sigma(z) = (1 + tanh(z / 2)) / 2: one transcendental, no overflow for large |z|
            np.multiply(z, 0.5, out=a)
            np.tanh(a, out=a)
            a += 1.0
            a *= 0.5
            np.subtract(1.0, a, out=d)
            d *= a
        elif act == "tanh":
            np.tanh(z, out=a)
            np.multiply(a, a, out=d)
            np.subtract(1.0, d, out=d)
        elif act == "relu":
            np.maximum(z, 0.0, out=a)
            np.greater(z, 0.0, out=d)
        else:
            a[...] = z
            d.fill(1.0)
        if act == "relu":
            st[DEAD] = 1.0 - np.count_nonzero(d.any(axis=0)) / z.shape[1]
        else:
            st[DEAD] = 0.0
        if act in ("sigmoid", "tanh"):
            st[SAT] = np.count_nonzero(d.mean(axis=0) < SATURATION_THRESHOLD) / z.shape[1]
        else:
            st[SAT] = 0.0
        st[ACT_MEAN] = a.mean()
        st[ACT_STD] = a.std()

    def _loss_and_delta(self, labels: np.ndarray) -> tuple[float, int]:
        """Mean softmax cross-entropy; delta_{L+1} = (softmax - onehot) / B."""
        o = self.a[-1]
        B = self.B
        rows = np.arange(B)
        m = o.max(axis=1, keepdims=True)
        p = self.delta[-1]
        np.subtract(o, m, out=p)
        np.exp(p, out=p)
        s = p.sum(axis=1, keepdims=True)
        loss = float(np.mean(m[:, 0] + np.log(s[:, 0]) - o[rows, labels]))
        correct = int(np.count_nonzero(o.argmax(axis=1) == labels))
        p /= s
        p[rows, labels] -= 1.0
        p /= B
        return loss, correct

    def train_step(self, X: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        """One SGD step on the batch (X, labels). Returns (loss, number correct);
        the per-layer statistics are in ``self.stats`` afterwards."""
        self.a[0][...] = X
        n_layers = len(self.W)
        for i in range(n_layers):
            self._forward_layer(i)
        loss, correct = self._loss_and_delta(labels)
        stats = self.stats
        for i in range(n_layers - 1, -1, -1):
            delta = self.delta[i]
            np.matmul(self.a[i].T, delta, out=self.dW[i])
            np.sum(delta, axis=0, out=self.db[i])
            if i > 0:
                prev = self.delta[i - 1]
                np.matmul(delta, self.W[i].T, out=prev)
                prev *= self.dphi[i - 1]
            stats[i, DELTA] = _norm(delta)
            stats[i, GRAD_W] = _norm(self.dW[i])
        lr = self.lr
        for i in range(n_layers):
            dW = self.dW[i]
            dW *= lr  # dW now holds the step
            stats[i, UPDATE] = _norm(dW)
            self.W[i] -= dW
            self.db[i] *= lr
            self.b[i] -= self.db[i]
            stats[i, WEIGHT] = _norm(self.W[i])
            np.subtract(self.W[i], self.W0[i], out=self.diff[i])
            stats[i, CHANGE] = _norm(self.diff[i])
        return loss, correct
