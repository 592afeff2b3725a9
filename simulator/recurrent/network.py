"""A recurrent network with its buffers: parameters, gradients and the BPTT workspace."""

from __future__ import annotations

import numpy as np

from .. import kernels as K
from . import kernels as RK
from .spec import RecurrentSpec

CELL_CODE = {"rnn": RK.RNN, "lstm": RK.LSTM, "lstm_no_forget": RK.LSTM_NO_FORGET, "gru": RK.GRU}
LOSS_CODE = {"cross_entropy": K.LOSS_XENT, "mse": K.LOSS_MSE}
PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "W_out", "b_out")


def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random orthogonal n x n matrix (QR of a Gaussian, signs fixed so it is uniform)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


class RecurrentNet:
    """One recurrent cell over a whole sequence, read out at the last time step.

    ``params`` and ``grads`` are dicts of views into flat buffers (PyTorch's names,
    shapes and gate order); writing into ``params["weight_hh"]`` changes the net.
    """

    def __init__(self, spec: RecurrentSpec, seed: int = 0, dtype=np.float32):
        self.spec = spec
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.cell_code = CELL_CODE[spec.cell]
        self.loss_code = LOSS_CODE[spec.loss]
        H, I, O, G = spec.hidden, spec.input_dim, spec.output_dim, spec.gates
        self.shapes = {"weight_ih": (G * H, I), "weight_hh": (G * H, H), "bias_ih": (G * H,),
                       "bias_hh": (G * H,), "W_out": (H, O), "b_out": (O,)}
        sizes = [int(np.prod(self.shapes[n])) for n in PARAM_NAMES]
        self.lay = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        n = int(sum(sizes))
        self.params_flat = np.zeros(n, self.dtype)
        self.grads_flat = np.zeros(n, self.dtype)
        self.params = self._views(self.params_flat)
        self.grads = self._views(self.grads_flat)
        # weights decay, biases do not; "layers" for the update statistics:
        # 0 = input weights, 1 = recurrent weights, 2 = readout (biases count with them)
        self.decay_mask = np.zeros(n, np.int64)
        self.elem_layer = np.zeros(n, np.int64)
        for k, name in enumerate(PARAM_NAMES):
            lo, hi = self.lay[k], self.lay[k] + sizes[k]
            self.decay_mask[lo:hi] = name.startswith(("weight", "W_"))
            self.elem_layer[lo:hi] = {"weight_ih": 0, "weight_hh": 1, "bias_ih": 0,
                                      "bias_hh": 1, "W_out": 2, "b_out": 2}[name]
        self.init_params(seed)
        self._B = self._T = -1
        self.hidden_grad_norms: np.ndarray | None = None
        self.cell_grad_norms: np.ndarray | None = None

    def _views(self, flat: np.ndarray) -> dict:
        out = {}
        for k, name in enumerate(PARAM_NAMES):
            size = int(np.prod(self.shapes[name]))
            out[name] = flat[self.lay[k]:self.lay[k] + size].reshape(self.shapes[name])
        return out

    # -- initialization ---------------------------------------------------------------------
    def init_params(self, seed: int) -> None:
        s = self.spec
        rng = np.random.default_rng(seed)
        H, I, O, G = s.hidden, s.input_dim, s.output_dim, s.gates
        p = {name: np.zeros(self.shapes[name]) for name in PARAM_NAMES}
        k = 1.0 / np.sqrt(H)
        if s.init == "uniform":  # PyTorch's default for nn.RNN/LSTM/GRU
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                p[name] = rng.uniform(-k, k, self.shapes[name])
        elif s.init == "glorot_uniform":
            for name, fan_in in (("weight_ih", I), ("weight_hh", H)):
                lim = np.sqrt(6.0 / (fan_in + H))
                p[name] = rng.uniform(-lim, lim, self.shapes[name])
        elif s.init == "orthogonal":
            lim = np.sqrt(6.0 / (I + H))
            p["weight_ih"] = rng.uniform(-lim, lim, self.shapes["weight_ih"])
            p["weight_hh"] = np.concatenate([_orthogonal(rng, H) for _ in range(G)])
        else:  # identity (IRNN, Le, Jaitly & Hinton 2015)
            p["weight_ih"] = rng.normal(0.0, 1e-3, self.shapes["weight_ih"])
            p["weight_hh"] = np.concatenate([np.eye(H) for _ in range(G)])
        p["weight_hh"] = p["weight_hh"] * s.recurrent_gain
        if s.cell == "lstm":
            p["bias_ih"][H:2 * H] = s.forget_bias
            p["bias_hh"][H:2 * H] = 0.0
        lim = np.sqrt(6.0 / (H + O))
        p["W_out"] = rng.uniform(-lim, lim, (H, O))
        for name in PARAM_NAMES:
            self.params[name][...] = p[name]
        self.params0 = self.params_flat.copy()

    # -- workspace --------------------------------------------------------------------------
    def ensure_workspace(self, B: int, T: int) -> None:
        if (B, T) == (self._B, self._T):
            return
        H, I, O, GH = self.spec.hidden, self.spec.input_dim, self.spec.output_dim, \
            self.spec.gates * self.spec.hidden
        d = self.dtype
        self.Xt = np.zeros((T, B, I), d)
        self.Hs = np.zeros((T + 1, B, H), d)
        self.Cs = np.zeros((T + 1, B, H), d)
        self.A = np.zeros((T, B, GH), d)
        self.Hn = np.zeros((T, B, H), d)
        self.dh = np.zeros((B, H), d)
        self.dc = np.zeros((B, H), d)
        self.dgx = np.zeros((T, B, GH), d)  # gate errors of every time step
        self.dgh = np.zeros((T, B, GH), d)
        self.out = np.zeros((B, O), d)
        self.delta = np.zeros((B, O), d)
        self.hnorm = np.zeros(T)
        self.cnorm = np.zeros(T)
        self._B, self._T = B, T

    @property
    def n_params(self) -> int:
        return self.params_flat.size

    def _targets(self, y, B: int):
        """(labels, targets) arrays as the loss kernels want them, rows = batch rows."""
        if self.spec.loss == "cross_entropy":
            labels = np.ascontiguousarray(y, np.int64).reshape(B)
            if labels.min() < 0 or labels.max() >= self.spec.output_dim:
                raise ValueError(f"y: labels must be in 0..{self.spec.output_dim - 1}")
            return labels, np.zeros((0, self.spec.output_dim), self.dtype)
        targets = np.ascontiguousarray(y, self.dtype).reshape(B, self.spec.output_dim)
        return np.zeros(0, np.int64), targets

    def _check_X(self, X) -> np.ndarray:
        X = np.ascontiguousarray(X, self.dtype)
        if X.ndim != 3 or X.shape[2] != self.spec.input_dim or X.shape[1] < 1:
            raise ValueError(f"X: must have shape (batch, T, {self.spec.input_dim}), "
                             f"got {X.shape}")
        return X

    # -- whole passes -----------------------------------------------------------------------
    def forward(self, X) -> np.ndarray:
        """Outputs (B, output_dim) for sequences X (B, T, input_dim)."""
        X = self._check_X(X)
        B, T, _ = X.shape
        self.ensure_workspace(B, T)
        RK.load_sequences(X, np.arange(B, dtype=np.int64), self.Xt)
        RK.forward_all(self.cell_code, self.lay, self.params_flat, self.Xt, self.Hs, self.Cs,
                       self.A, self.Hn, self.spec.output_dim)
        hT = self.Hs[T].astype(np.float64)
        return hT @ self.params["W_out"].astype(np.float64) + self.params["b_out"]

    def loss_and_gradients(self, X, y):
        """Loss and dL/dparam (a dict of copies) over the batch; sets hidden_grad_norms
        (and cell_grad_norms for LSTMs)."""
        X = self._check_X(X)
        B, T, _ = X.shape
        labels, targets = self._targets(y, B)
        self.ensure_workspace(B, T)
        idx = np.arange(B, dtype=np.int64)
        RK.load_sequences(X, idx, self.Xt)
        O = self.spec.output_dim
        RK.forward_all(self.cell_code, self.lay, self.params_flat, self.Xt, self.Hs, self.Cs,
                       self.A, self.Hn, O)
        loss, _ = RK.readout_loss(self.lay, self.params_flat, self.grads_flat, self.Hs, O,
                                  self.loss_code, labels, targets, idx, self.out, self.delta,
                                  self.dh, self.dc)
        RK.backward_all(self.cell_code, self.lay, self.params_flat, self.grads_flat, self.Xt,
                        self.Hs, self.Cs, self.A, self.Hn, self.dh, self.dc, self.dgx, self.dgh,
                        O, self.hnorm, self.cnorm)
        self.publish_norms()
        return float(loss), {name: g.copy() for name, g in self.grads.items()}

    def publish_norms(self) -> None:
        self.hidden_grad_norms = self.hnorm.copy()
        self.cell_grad_norms = self.cnorm.copy() if self.spec.cell.startswith("lstm") else None
