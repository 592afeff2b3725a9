"""Network: parameters in one flat buffer, forward and backward one layer at a time.

``Network.params`` maps names ("W1", "b1", "gamma2", "alpha3", "P1_4", ...) to
views of one flat array; writing into a view changes the network. The layout
table built here tells the kernels where everything is (see kernels.py).
"""

from __future__ import annotations

import numpy as np

from . import kernels as K
from .spec import ACTIVATIONS, NetworkSpec

ACT_CODE = {name: i for i, name in enumerate(ACTIVATIONS)}
PRELU_INIT = 0.25
_EMPTY_LABELS = np.zeros(0, np.int64)


def _he_slope(activation: str) -> float:
    return {"leaky_relu": K.LEAKY_SLOPE, "prelu": PRELU_INIT}.get(activation, 0.0)


def init_weight(spec: NetworkSpec, fan_in: int, fan_out: int, activation: str,
                rng: np.random.Generator) -> np.ndarray:
    """Draw one weight matrix (fan_in, fan_out) by the spec's rule, in float64."""
    g = spec.gain
    name = spec.init
    if name == "uniform_fanin":
        bound = g / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, (fan_in, fan_out))
    if name == "glorot_uniform":
        bound = g * np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, (fan_in, fan_out))
    if name == "glorot_normal":
        return rng.normal(0.0, g * np.sqrt(2.0 / (fan_in + fan_out)), (fan_in, fan_out))
    if name in ("he_uniform", "he_normal"):
        # He et al. 2015: Var[W] = 2 / ((1 + a^2) fan_in), a = negative slope
        var = 2.0 / ((1.0 + _he_slope(activation) ** 2) * fan_in)
        if name == "he_uniform":
            bound = g * np.sqrt(3.0 * var)
            return rng.uniform(-bound, bound, (fan_in, fan_out))
        return rng.normal(0.0, g * np.sqrt(var), (fan_in, fan_out))
    if name == "lecun_normal":
        return rng.normal(0.0, g / np.sqrt(fan_in), (fan_in, fan_out))
    if name == "orthogonal":
        tall = fan_in >= fan_out
        a = rng.standard_normal((fan_in, fan_out) if tall else (fan_out, fan_in))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))  # makes the draw uniform over orthogonal matrices
        return g * (q if tall else q.T)
    if name == "mean_field":
        return rng.normal(0.0, g * spec.sigma_w / np.sqrt(fan_in), (fan_in, fan_out))
    raise ValueError(f"unknown init {name!r}")


class Network:
    """A feed-forward network with per-layer activation, batch norm and skip links.

    Layer 0 is the input, 1..L hidden, L+1 the (linear) output layer.
    """

    def __init__(self, spec: NetworkSpec, seed: int = 0, dtype=np.float32):
        if not isinstance(spec, NetworkSpec):
            raise TypeError("spec must be a NetworkSpec")
        self.spec = spec
        self.seed = int(seed)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError("dtype must be float32 or float64")
        self.L = spec.depth
        self._build_layout()
        self.params_flat = np.zeros(self.n_params, self.dtype)
        self.grads_flat = np.zeros(self.n_params, self.dtype)
        self.running = np.zeros(max(self._n_running, 1), self.dtype)
        self.params = {n: self._view(self.params_flat, n) for n in self._slots}
        self.grad_arrays = {n: self._view(self.grads_flat, n) for n in self._slots}
        self._init_params()
        self.params0 = self.params_flat.copy()
        self.stats = np.full((self.L + 2, K.N_STATS), np.nan)
        self._ws = np.zeros(0, self.dtype)
        self.batch_size = 0
        self._upd_sq = np.zeros(self.L + 2)
        self._have_deltas = False

    # -- layout ------------------------------------------------------------------
    def _build_layout(self):
        spec = self.spec
        widths = spec.widths
        L = self.L
        lay = np.full((L + 2, K.N_COLS), -1, np.int64)
        slots = {}  # name -> (offset, shape)
        p = 0

        def param(name, shape):
            nonlocal p
            slots[name] = (p, shape)
            off = p
            p += int(np.prod(shape))
            return off

        ws = 0

        def block(width):
            nonlocal ws
            off = ws
            ws += width
            return off

        run = 0
        for k in range(L + 2):
            n = widths[k]
            lay[k, K.C_WIDTH] = n
            lay[k, K.C_A] = block(n)
            lay[k, K.C_G] = block(n)
            lay[k, K.C_TMP] = block(n)
            if k == 0:
                continue
            hidden = k <= L
            act = spec.hidden[k - 1].activation if hidden else "linear"
            bn = hidden and spec.hidden[k - 1].batchnorm
            lay[k, K.C_ACT] = ACT_CODE[act]
            lay[k, K.C_BN] = int(bn)
            lay[k, K.C_W] = param(f"W{k}", (widths[k - 1], n))
            lay[k, K.C_B] = param(f"b{k}", (n,))
            if bn:
                lay[k, K.C_GAMMA] = param(f"gamma{k}", (n,))
                lay[k, K.C_BETA] = param(f"beta{k}", (n,))
            if act == "prelu":
                lay[k, K.C_ALPHA] = param(f"alpha{k}", (n,))
            lay[k, K.C_Z] = block(n)
            lay[k, K.C_D] = block(n)
            lay[k, K.C_DP] = block(n)
            if bn:
                lay[k, K.C_U] = block(n)
                lay[k, K.C_GU] = block(n)
                lay[k, K.C_XHAT] = block(n)
                lay[k, K.C_MU] = block(n)
                lay[k, K.C_ISTD] = block(n)
                lay[k, K.C_RMEAN] = run
                lay[k, K.C_RVAR] = run + n
                run += 2 * n
            else:
                lay[k, K.C_U] = lay[k, K.C_Z]
                lay[k, K.C_GU] = lay[k, K.C_D]
        skp = np.zeros((len(spec.skips), 3), np.int64)
        for s, (i, j) in enumerate(spec.skips):
            skp[s, 0], skp[s, 1] = i, j
            skp[s, 2] = param(f"P{i}_{j}", (widths[i], widths[j])) if widths[i] != widths[j] else -1
        self.lay = lay
        self.skp = skp
        self._slots = slots
        self.n_params = p
        self._ws_per_example = ws
        self._n_running = run
        self.decay_mask = np.zeros(p, np.int8)
        self.elem_layer = np.full(p, -1, np.int32)
        for name, (off, shape) in slots.items():
            size = int(np.prod(shape))
            if name[0] in "WP":
                self.decay_mask[off:off + size] = 1
            if name[0] == "W":
                self.elem_layer[off:off + size] = int(name[1:])

    def _view(self, flat, name):
        off, shape = self._slots[name]
        return flat[off:off + int(np.prod(shape))].reshape(shape)

    def view(self, flat: np.ndarray, name: str) -> np.ndarray:
        """The block of any parameter-shaped flat buffer (grads, optimizer state) for ``name``."""
        return self._view(flat, name)

    @property
    def param_names(self) -> list[str]:
        return list(self._slots)

    def _rng(self, *key) -> np.random.Generator:
        # One independent stream per parameter: editing one layer leaves the others'
        # initial values unchanged.
        return np.random.default_rng([self.seed, *key])

    def _init_params(self):
        spec = self.spec
        widths = spec.widths
        for k in range(1, self.L + 2):
            act = spec.hidden[k - 1].activation if k <= self.L else "linear"
            self.params[f"W{k}"][...] = init_weight(spec, widths[k - 1], widths[k], act,
                                                    self._rng(k, 0))
            if spec.init == "mean_field" and spec.sigma_b > 0:
                self.params[f"b{k}"][...] = self._rng(k, 1).normal(0.0, spec.sigma_b, widths[k])
            if f"gamma{k}" in self.params:
                self.params[f"gamma{k}"][...] = 1.0
                rvar = self.lay[k, K.C_RVAR]
                self.running[rvar:rvar + widths[k]] = 1.0
            if f"alpha{k}" in self.params:
                self.params[f"alpha{k}"][...] = PRELU_INIT
        for i, j in spec.skips:
            name = f"P{i}_{j}"
            if name in self.params:
                self.params[name][...] = init_weight(spec, widths[i], widths[j], "linear",
                                                     self._rng(1000 + i, j))

    # -- workspace -----------------------------------------------------------------
    def ensure_batch(self, B: int) -> None:
        if B != self.batch_size:
            self._ws = np.zeros(self._ws_per_example * B, self.dtype)
            self.batch_size = B
            self._have_deltas = False

    def block(self, k: int, column: int) -> np.ndarray:
        """A (B, width_k) view of workspace block ``column`` (K.C_A, K.C_D, ...) of layer k."""
        B = self.batch_size
        n = int(self.lay[k, K.C_WIDTH])
        off = int(self.lay[k, column]) * B
        return self._ws[off:off + B * n].reshape(B, n)

    # -- micro-steps ---------------------------------------------------------------
    def load_batch(self, X: np.ndarray, idx: np.ndarray) -> None:
        self.ensure_batch(len(idx))
        K.load_batch(self.lay, self._ws, X, idx, len(idx))

    def forward_layer(self, k: int, training: bool = True) -> bool:
        return K.forward_layer(k, self.lay, self.skp, self.params_flat, self._ws, self.running,
                               self.batch_size, training, self.stats)

    def loss(self, loss_code, labels, targets, idx):
        loss, correct = K.loss_and_delta(self.lay, self.skp, self._ws, self.batch_size, self.L,
                                         loss_code, labels, targets, idx)
        return loss, correct

    def backward_layer(self, k: int) -> bool:
        ok = K.backward_layer(k, self.lay, self.skp, self.params_flat, self.grads_flat, self._ws,
                              self.batch_size, self.L, self.stats)
        self._have_deltas = True
        return ok

    @property
    def loss_code(self) -> int:
        return K.LOSS_XENT if self.spec.loss == "cross_entropy" else K.LOSS_MSE

    def prepare_targets(self, y) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64, targets float) for the kernels from labels or a target matrix."""
        y = np.asarray(y)
        out = self.spec.output_dim
        if y.ndim == 1:
            labels = np.ascontiguousarray(y, dtype=np.int64)
            if labels.size and (labels.min() < 0 or labels.max() >= out):
                raise ValueError(f"labels must lie in 0..{out - 1}")
            if self.spec.loss == "mse":
                targets = np.zeros((len(labels), out), self.dtype)
                targets[np.arange(len(labels)), labels] = 1.0
            else:
                targets = np.zeros((0, out), self.dtype)
            return labels, targets
        if self.spec.loss == "cross_entropy":
            raise ValueError("cross-entropy needs integer class labels, not a target matrix")
        if y.shape[1] != out:
            raise ValueError(f"targets need {out} columns, got {y.shape[1]}")
        return _EMPTY_LABELS, np.ascontiguousarray(y, dtype=self.dtype)

    def as_input(self, X) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if X.ndim != 2 or X.shape[1] != self.spec.input_dim:
            raise ValueError(f"X must have shape (n, {self.spec.input_dim}), got {X.shape}")
        return X

    # -- public contract -----------------------------------------------------------------
    def loss_and_gradients(self, X, y):
        """Loss of the whole batch (X, y) and every parameter's gradient; no update.
        The gradients are views of one copy of the flat gradient buffer."""
        loss = self._forward_backward(X, y)
        grads = self.grads_flat.copy()
        return loss, {n: self._view(grads, n) for n in self._slots}

    def _forward_backward(self, X, y) -> float:
        """Load, forward, loss and backward through the whole-pass kernels (the ones the
        fused training step calls): four kernel calls whatever the depth."""
        X = self.as_input(X)
        labels, targets = self.prepare_targets(y)
        B = len(X)
        idx = np.arange(B, dtype=np.int64)
        self.ensure_batch(B)
        L = self.L
        K.load_batch(self.lay, self._ws, X, idx, B)
        K.forward_pass(self.lay, self.skp, self.params_flat, self._ws, self.running, B, L, True,
                       self.stats)
        loss, _ = K.loss_and_delta(self.lay, self.skp, self._ws, B, L, self.loss_code, labels,
                                   targets, idx)
        K.backward_pass(self.lay, self.skp, self.params_flat, self.grads_flat, self._ws, B, L,
                        self.stats)
        self._have_deltas = True
        return float(loss)

    @property
    def deltas(self) -> list[np.ndarray]:
        """[dL/dz_1, ..., dL/dz_{L+1}] of the last backward pass, each (batch, width)."""
        if not self._have_deltas:
            raise RuntimeError("no backward pass has run yet")
        return [self.block(k, K.C_D).copy() for k in range(1, self.L + 2)]

    def train_step(self, X, y, lr: float) -> float:
        """One plain SGD step on every parameter. Returns the loss before the step."""
        loss = self._forward_backward(X, y)
        self.params_flat -= self.dtype.type(lr) * self.grads_flat
        return loss

    def predict(self, X, chunk: int = 1024) -> np.ndarray:
        """Outputs o for X in evaluation mode (batch norm uses its running averages).
        Uses a separate workspace, so the training state is untouched."""
        X = self.as_input(X)
        out = np.empty((len(X), self.spec.output_dim), self.dtype)
        stats = np.zeros_like(self.stats)
        L = self.L
        c = min(chunk, max(len(X), 1))
        ws = np.zeros(self._ws_per_example * c, self.dtype)
        o_off = int(self.lay[L + 1, K.C_A])
        width = self.spec.output_dim
        for start in range(0, len(X), c):
            rows = X[start:start + c]
            B = len(rows)
            idx = np.arange(B, dtype=np.int64)
            K.load_batch(self.lay, ws, rows, idx, B)
            K.forward_pass(self.lay, self.skp, self.params_flat, ws, self.running, B, L, False,
                           stats)
            out[start:start + B] = ws[o_off * B:o_off * B + B * width].reshape(B, width)
        return out

    # -- edits -------------------------------------------------------------------------
    def rebuilt(self, new_spec: NetworkSpec, old_of_new=None) -> Network:
        """A network for ``new_spec`` that keeps every weight this one can hand over.

        ``old_of_new[j]`` is this network's index of the new layer j (None if new);
        identity when omitted. Each new parameter takes the overlapping block of
        its old counterpart; the rest keeps its fresh initialization.
        """
        new = Network(new_spec, self.seed, self.dtype)
        mapping = self.param_mapping(new, old_of_new)
        self.transfer(self.params_flat, new, new.params_flat, mapping)
        self.transfer(self.params0, new, new.params0, mapping)
        for k in range(1, new.L + 1):
            old_k = mapping.get(f"gamma{k}", "").replace("gamma", "")
            if old_k and new.lay[k, K.C_RMEAN] >= 0:
                ko = int(old_k)
                n = min(new.lay[k, K.C_WIDTH], self.lay[ko, K.C_WIDTH])
                for col in (K.C_RMEAN, K.C_RVAR):
                    a, b = new.lay[k, col], self.lay[ko, col]
                    new.running[a:a + n] = self.running[b:b + n]
        return new

    def param_mapping(self, new: Network, old_of_new=None) -> dict[str, str]:
        """new parameter name -> old name, for those that have a counterpart."""
        if old_of_new is None:
            old_of_new = list(range(new.L + 2))
        mapping = {}
        for name in new.param_names:
            if name[0] == "P":
                i, j = (int(t) for t in name[1:].split("_"))
                oi, oj = old_of_new[i], old_of_new[j]
                old = None if oi is None or oj is None else f"P{oi}_{oj}"
            else:
                prefix = name.rstrip("0123456789")
                k = old_of_new[int(name[len(prefix):])]
                old = None if k is None else f"{prefix}{k}"
            if old is not None and old in self._slots:
                mapping[name] = old
        return mapping

    def transfer(self, old_flat, new: Network, new_flat, mapping) -> None:
        """Copy the overlapping block of every mapped parameter from old_flat to new_flat."""
        for name, old in mapping.items():
            dst = new.view(new_flat, name)
            src = self.view(old_flat, old)
            region = tuple(slice(0, min(a, b)) for a, b in zip(dst.shape, src.shape, strict=False))
            dst[region] = src[region]

    def weight_stats(self) -> None:
        """Refresh ||W_k||, ||W_k - W0_k|| in self.stats."""
        K.weight_stats(self.lay, self.params_flat, self.params0, self.L, self.stats)
