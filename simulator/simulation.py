"""Simulation: training as a sequence of named micro-steps, edits that keep weights,
immutable snapshots for views, a bounded history, and divergence caught as data.

One iteration of a network with N = L+1 weight layers is 2N + 2 micro-steps::

    forward 1, forward 2, ..., forward N, loss, backward N, ..., backward 1, update

``micro_step()`` does one of them, ``step()`` finishes the iteration, ``run(n)``
does n whole iterations through one fused kernel call (no per-layer Python).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import kernels as K
from .data import Dataset, make_dataset
from .experiment import Experiment, TrainSpec
from .network import Network
from .snapshot import HIST_COLUMNS, DivergenceReport, History, Snapshot
from .spec import LayerSpec, NetworkSpec, SpecError

OPT_CODE = {"sgd": K.OPT_SGD, "momentum": K.OPT_MOMENTUM, "rmsprop": K.OPT_RMSPROP,
            "adam": K.OPT_ADAM}
_PHASE_OF_STATUS = {K.ST_FORWARD: ("forward", "activations"), K.ST_LOSS: ("loss", "loss"),
                    K.ST_BACKWARD: ("backward", "delta"), K.ST_UPDATE: ("update", "weights")}
# Copy weight gradients into snapshots only below this many parameters (memory per frame).
SNAPSHOT_GRAD_LIMIT = 4_000_000
FUSED_CHUNK = 64
# stats columns of the factors, in the order of HIST_COLUMNS[4:8] (a slice: no copy to gather)
_FACTOR_COLUMNS = slice(K.S_WEIGHT_FACTOR, K.S_SKIP_SHARE + 1)
assert (K.S_LOCAL_FACTOR, K.S_NORM_FACTOR) == (K.S_WEIGHT_FACTOR + 1, K.S_WEIGHT_FACTOR + 2)


@dataclass(frozen=True)
class SavedState:
    """Structure and every trained value, for undo of edits that redraw weights."""

    experiment: Experiment
    params: np.ndarray
    params0: np.ndarray
    running: np.ndarray
    m1: np.ndarray
    m2: np.ndarray
    adam_t: int


@dataclass(frozen=True)
class LayerParams:
    """Saved values of one layer's parameters (for undo of delete / width changes)."""

    layer: int
    values: dict  # short name ("W", "b", "gamma", "beta", "alpha") -> array copy


class Simulation:
    """Owns the network, the data, the optimizer state and the history."""

    def __init__(self, experiment: Experiment, dataset: Dataset | None = None,
                 history_capacity: int = 5000, eval_every: int = 10):
        self._experiment = experiment
        self.dataset = dataset if dataset is not None else make_dataset(experiment.data)
        self._check_dims(experiment.network)
        self.history_capacity = history_capacity
        self.eval_every = max(1, int(eval_every))
        self.dtype = np.dtype(experiment.dtype)
        self._prepare_data()
        self._new_network(Network(experiment.network, experiment.seed, self.dtype))
        self.reset()

    # -- construction ------------------------------------------------------------
    def _check_dims(self, spec: NetworkSpec) -> None:
        ds = self.dataset
        if spec.input_dim != ds.input_dim:
            raise SpecError("network.input_dim",
                            f"the data has {ds.input_dim} input features but the network "
                            f"expects {spec.input_dim}; set input_dim to {ds.input_dim}")
        if spec.output_dim != ds.output_dim:
            raise SpecError("network.output_dim",
                            f"the data needs {ds.output_dim} outputs but the network has "
                            f"{spec.output_dim}; set output_dim to {ds.output_dim}")
        if ds.task == "regression" and spec.loss == "cross_entropy":
            raise SpecError("network.loss", "the data is a regression task: use loss \"mse\"")

    def _prepare_data(self) -> None:
        ds = self.dataset
        # writable copies: read-only arrays would make numba compile a second
        # specialization of every kernel
        self._X = np.array(ds.X_train, dtype=self.dtype, order="C", copy=True)
        self._Xtest = np.array(ds.X_test, dtype=self.dtype, order="C", copy=True)
        net_like = Network.__new__(Network)  # only for prepare_targets' rules
        net_like.spec, net_like.dtype = self._experiment.network, self.dtype
        self._labels, self._targets = (np.array(a, copy=True) for a in
                                       Network.prepare_targets(net_like, ds.y_train))
        self._test_labels, self._test_targets = Network.prepare_targets(net_like, ds.y_test)

    def _new_network(self, net: Network, keep_optimizer_from: Network | None = None,
                     mapping=None) -> None:
        old_m1 = getattr(self, "_m1", None)
        old_m2 = getattr(self, "_m2", None)
        self.network = net
        self._m1 = np.zeros(net.n_params, self.dtype)
        self._m2 = np.zeros(net.n_params, self.dtype)
        if keep_optimizer_from is not None and old_m1 is not None:
            keep_optimizer_from.transfer(old_m1, net, self._m1, mapping)
            keep_optimizer_from.transfer(old_m2, net, self._m2, mapping)
        self._upd_sq = np.zeros(net.L + 2)
        self._out = np.zeros(2)
        self._pos = 0
        self._last_phase = ("ready", 0)
        self._backward_done = np.zeros(net.L + 1, bool)

    # -- properties ------------------------------------------------------------------
    @property
    def experiment(self) -> Experiment:
        """The experiment as it stands now, edits included (what Save writes)."""
        return self._experiment

    @property
    def spec(self) -> NetworkSpec:
        return self._experiment.network

    @property
    def training(self) -> TrainSpec:
        return self._experiment.training

    @property
    def n_micro_steps(self) -> int:
        """Micro-steps in one iteration: 2 (L+1) + 2."""
        return 2 * (self.network.L + 1) + 2

    @property
    def batch_size(self) -> int:
        return max(1, min(self.training.batch_size, len(self._X)))

    @property
    def position(self) -> int:
        """How many micro-steps of the current iteration are done (0 = between iterations)."""
        return self._pos

    def micro_step_name(self, pos: int | None = None) -> tuple[str, int]:
        """(phase, layer) of micro-step ``pos`` (default: the next one)."""
        pos = self._pos if pos is None else pos
        N = self.network.L + 1
        if pos < N:
            return "forward", pos + 1
        if pos == N:
            return "loss", 0
        if pos <= 2 * N:
            return "backward", 2 * N - pos + 1
        return "update", 0

    # -- reset ---------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Snapshot:
        """Fresh weights from the spec and seed; step 0; history cleared."""
        if seed is not None:
            self._experiment = replace(self._experiment, seed=int(seed))
        exp = self._experiment
        self._new_network(Network(exp.network, exp.seed, self.dtype))
        self.step_count = 0
        self._adam_t = 0
        self.divergence: DivergenceReport | None = None
        self.history = History(self.network.L + 1, self.history_capacity)
        self._batch_rng = np.random.default_rng([exp.seed, 7])
        self._perm = self._batch_rng.permutation(len(self._X))
        self._perm_pos = 0
        self._idx = self._take_batch()
        self._loss = np.nan
        self._acc = np.nan
        self._val = (-1, np.nan, np.nan)
        self._refresh()
        return self.snapshot()

    def _take_batch(self) -> np.ndarray:
        B = self.batch_size
        n = len(self._X)
        if self._perm_pos + B > n:
            self._perm = self._batch_rng.permutation(n)
            self._perm_pos = 0
        idx = self._perm[self._perm_pos:self._perm_pos + B].astype(np.int64)
        self._perm_pos += B
        return np.ascontiguousarray(idx)

    def _batches(self, n: int) -> np.ndarray:
        return np.stack([self._take_batch() for _ in range(n)]) if n else np.zeros(
            (0, self.batch_size), np.int64)

    def _refresh(self) -> None:
        """Forward and backward on the current batch without an update, so the
        gradient flow of a just-edited or just-reset network shows at once."""
        net = self.network
        running = net.running.copy()
        self._pos = 0
        self._last_phase = ("ready", 0)
        net.load_batch(self._X, self._idx)
        bad = K.forward_pass(net.lay, net.skp, net.params_flat, net._ws, net.running,
                             net.batch_size, net.L, True, net.stats)
        net.running[:] = running
        net.weight_stats()
        net.stats[:, K.S_UPDATE] = np.nan
        if bad:
            return
        loss, correct = net.loss(net.loss_code, self._labels, self._targets, self._idx)
        if np.isfinite(loss):
            self._loss, self._acc = float(loss), self._accuracy(correct)
            K.backward_pass(net.lay, net.skp, net.params_flat, net.grads_flat, net._ws,
                            net.batch_size, net.L, net.stats)
            self._backward_done[:] = True

    # -- stepping ------------------------------------------------------------------
    def _hyper(self) -> np.ndarray:
        t = self.training
        h = np.zeros(K.N_HYPER)
        h[K.H_LR] = t.lr
        h[K.H_MOMENTUM] = t.momentum
        h[K.H_BETA1] = t.beta1
        h[K.H_BETA2] = t.beta2
        h[K.H_EPS] = t.eps
        h[K.H_WD] = t.weight_decay
        h[K.H_CLIP_NORM] = t.clip_norm
        h[K.H_CLIP_VALUE] = t.clip_value
        h[K.H_T] = self._adam_t + 1
        return h

    def _accuracy(self, correct) -> float:
        if self.dataset.task != "classification":
            return float("nan")
        return float(correct) / self.batch_size

    def _diverge(self, phase: str, layer: int, quantity: str) -> None:
        self.divergence = DivergenceReport(self.step_count, phase, int(layer), quantity)
        self._pos = 0

    def micro_step(self) -> Snapshot:
        """Do the next named micro-step and return the snapshot after it."""
        if self.divergence is not None:
            return self.snapshot()
        net = self.network
        phase, layer = self.micro_step_name()
        if phase == "forward":
            if layer == 1:
                if net.batch_size != self.batch_size:
                    self._idx = self._take_batch()
                net.load_batch(self._X, self._idx)
                self._backward_done[:] = False
            if not net.forward_layer(layer):
                self._diverge("forward", layer, "activations")
                return self.snapshot()
        elif phase == "loss":
            loss, correct = net.loss(net.loss_code, self._labels, self._targets, self._idx)
            self._loss, self._acc = float(loss), self._accuracy(correct)
            if not np.isfinite(loss):
                self._diverge("loss", 0, "loss")
                return self.snapshot()
        elif phase == "backward":
            if not net.backward_layer(layer):
                self._diverge("backward", layer, "delta")
                return self.snapshot()
            self._backward_done[layer - 1] = True
        else:
            bad = K.apply_update(OPT_CODE[self.training.optimizer], net.lay, net.skp,
                                 net.params_flat,
                                 net.grads_flat, self._m1, self._m2, net.params0, self._hyper(),
                                 net.decay_mask, net.elem_layer, self._upd_sq, net.L, net.stats)
            if bad:
                self._diverge("update", bad, "weights")
                return self.snapshot()
            self._finish_iteration()
            return self.snapshot()
        self._pos += 1
        self._last_phase = (phase, layer)
        return self.snapshot()

    def _finish_iteration(self) -> None:
        self._adam_t += 1
        self.step_count += 1
        self._record(self.network.stats, self._loss, self._acc)
        self._idx = self._take_batch()
        self._pos = 0
        self._last_phase = ("update", 0)

    @staticmethod
    def _history_columns(stats: np.ndarray) -> np.ndarray:
        """HIST_* columns from stats tables: (..., L+2, N_STATS) -> (..., L+1, columns)."""
        st = stats[..., 1:, :]
        per_layer = np.empty(st.shape[:-1] + (len(HIST_COLUMNS),))
        with np.errstate(divide="ignore", invalid="ignore"):
            per_layer[..., 0] = st[..., K.S_DELTA]
            per_layer[..., 1] = st[..., K.S_GRAD_W]
            per_layer[..., 2] = st[..., K.S_UPDATE] / st[..., K.S_W]
            per_layer[..., 3] = st[..., K.S_CHANGE] / st[..., K.S_W0]
        per_layer[..., 4:8] = st[..., _FACTOR_COLUMNS]
        return per_layer

    def _record(self, stats: np.ndarray, loss: float, acc: float) -> None:
        """One step into the history (micro-stepping); run() records whole chunks."""
        val_loss = val_acc = np.nan
        if self.step_count % self.eval_every == 0 or self.step_count == 1:
            val_loss, val_acc = self.evaluate()
        # History keeps float32: a float64 run on its way to diverging has finite norms
        # beyond float32's range, which are stored as inf instead of raising a warning.
        with np.errstate(over="ignore"):
            self.history.record(self.step_count, loss, acc, val_loss, val_acc,
                                self._history_columns(stats))

    def _record_chunk(self, hist_stats: np.ndarray, hist_out: np.ndarray, done: int) -> None:
        """The steps of one fused chunk into the history at once (the worker thread's
        Python time per step is what fast mode shares with drawing, under the GIL).
        Chunks end at evaluation steps, so only the last step can need held-out numbers,
        and it is the one the network's weights belong to now."""
        steps = self.step_count + 1 + np.arange(done)
        losses = hist_out[:done, 0]
        if self.dataset.task == "classification":
            accs = hist_out[:done, 1] / self.batch_size
        else:
            accs = np.full(done, np.nan)
        val = np.full((done, 2), np.nan)
        self.step_count += done
        self._adam_t += done
        if self.step_count % self.eval_every == 0 or self.step_count == 1:
            val[-1] = self.evaluate()
        with np.errstate(over="ignore"):
            self.history.record_many(steps, losses, accs, val[:, 0], val[:, 1],
                                     self._history_columns(hist_stats[:done]))
        self._loss = float(losses[-1])
        self._acc = float(accs[-1])

    def step(self) -> Snapshot:
        """Finish the current iteration (or do one whole one)."""
        if self.divergence is not None:
            return self.snapshot()
        if self._pos == 0:
            self.run(1, snapshot=False)
            return self.snapshot()
        start = self.step_count
        while self.step_count == start and self.divergence is None:
            self.micro_step()
        return self.snapshot()

    def run(self, n: int, snapshot: bool = True) -> Snapshot | None:
        """n whole iterations through the fused kernel. Stops early on divergence."""
        if self.divergence is not None or n <= 0:
            return self.snapshot() if snapshot else None
        if self._pos != 0:
            self.step()
            n -= 1
        net = self.network
        B = self.batch_size
        net.ensure_batch(B)
        opt = OPT_CODE[self.training.optimizer]
        hyper = self._hyper()
        while n > 0 and self.divergence is None:
            # chunks end at evaluation steps so held-out numbers land in the history
            to_eval = self.eval_every - (self.step_count % self.eval_every)
            if self.step_count == 0:
                to_eval = 1  # step 1 is evaluated too: the start of the held-out curve
            chunk = min(n, FUSED_CHUNK, to_eval)
            batches = np.empty((chunk, B), np.int64)
            batches[0] = self._idx
            if chunk > 1:
                batches[1:] = self._batches(chunk - 1)
            hist_stats = np.empty((chunk, net.L + 2, K.N_STATS))
            hist_out = np.empty((chunk, 2))
            hyper[K.H_T] = self._adam_t + 1
            done, status = K.train_steps(
                net.lay, net.skp, net.params_flat, net.grads_flat, net._ws, net.running,
                net.params0, self._m1, self._m2, net.decay_mask, net.elem_layer, self._upd_sq,
                self._X, self._labels, self._targets, batches, B, net.L, net.loss_code, opt,
                hyper, net.stats, self._out, hist_stats, hist_out)
            if done:
                self._record_chunk(hist_stats, hist_out, done)
            self._backward_done[:] = True
            self._last_phase = ("update", 0)
            if status:
                phase, quantity = _PHASE_OF_STATUS[status // 10000]
                if phase != "forward":  # the loss of the failed step was computed
                    self._loss = float(hist_out[done, 0])
                if phase in ("forward", "loss"):
                    self._backward_done[:] = False
                self._diverge(phase, status % 10000, quantity)
                break
            self._idx = self._take_batch()
            n -= done
        return self.snapshot() if snapshot else None

    # -- evaluation -----------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Class probabilities (cross-entropy) or raw outputs (mse) for X, evaluation mode."""
        o = self.network.predict(X).astype(np.float64)
        if self.spec.loss == "cross_entropy":
            with np.errstate(all="ignore"):  # a diverged net may output inf: NaN, no warning
                o = o - o.max(axis=1, keepdims=True)
                np.exp(o, out=o)
                o /= o.sum(axis=1, keepdims=True)
        return o

    def evaluate(self) -> tuple[float, float]:
        """Held-out loss and accuracy (nan if there is no held-out set). Cached per step."""
        if self._val[0] == self.step_count:
            return self._val[1], self._val[2]
        if len(self._Xtest) == 0:
            return float("nan"), float("nan")
        with np.errstate(all="ignore"):
            o = self.network.predict(self._Xtest).astype(np.float64)
            if self.spec.loss == "cross_entropy":
                m = o.max(axis=1, keepdims=True)
                lse = m[:, 0] + np.log(np.exp(o - m).sum(axis=1))
                loss = float(np.mean(lse - o[np.arange(len(o)), self._test_labels]))
            else:
                loss = float(np.mean((o - self._test_targets) ** 2))
        acc = float("nan")
        if self.dataset.task == "classification":
            acc = float(np.mean(np.argmax(o, axis=1) == self._test_labels))
        self._val = (self.step_count, loss, acc)
        return loss, acc

    # -- snapshot ------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        net = self.network
        st = net.stats
        N = net.L + 1
        have_ws = net.batch_size > 0
        acts = tuple(net.block(k, K.C_A).copy() for k in range(1, N + 1)) if have_ws else ()
        deltas = tuple(net.block(k, K.C_D).copy() for k in range(1, N + 1)) if have_ws else ()
        weights = tuple(net.params[f"W{k}"].copy() for k in range(1, N + 1))
        if net.n_params <= SNAPSHOT_GRAD_LIMIT:
            wgrads = tuple(net.grad_arrays[f"W{k}"].copy() for k in range(1, N + 1))
        else:
            wgrads = ()
        val_loss, val_acc = self.evaluate()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = st[1:, K.S_UPDATE] / st[1:, K.S_W]
            change = st[1:, K.S_CHANGE] / st[1:, K.S_W0]
        phase, layer = self._last_phase
        fields = dict(
            delta_norm=st[1:, K.S_DELTA], grad_norm=st[1:, K.S_GRAD_W],
            bias_grad_norm=st[1:, K.S_GRAD_B], weight_norm=st[1:, K.S_W], update_ratio=ratio,
            weight_change=change, dead_fraction=st[1:, K.S_DEAD],
            saturated_fraction=st[1:, K.S_SAT], act_mean=st[1:, K.S_ACT_MEAN],
            act_std=st[1:, K.S_ACT_STD], backward_done=self._backward_done,
            weight_factor=st[1:, K.S_WEIGHT_FACTOR], local_factor=st[1:, K.S_LOCAL_FACTOR],
            norm_factor=st[1:, K.S_NORM_FACTOR], skip_share=st[1:, K.S_SKIP_SHARE],
            grad_a_norm=st[1:, K.S_G])
        fields = {k: _frozen(v) for k, v in fields.items()}
        return Snapshot(
            spec=self.spec, step=self.step_count, phase=phase, layer=layer,
            micro_index=self._pos, batch_size=self.batch_size, loss=self._loss,
            accuracy=self._acc, val_loss=val_loss, val_accuracy=val_acc,
            activations=_freeze_all(acts), deltas=_freeze_all(deltas),
            weights=_freeze_all(weights), weight_grads=_freeze_all(wgrads),
            unit_delta=_freeze_all(tuple(np.abs(d).mean(axis=0) for d in deltas)),
            divergence=self.divergence, **fields)

    # -- edits -----------------------------------------------------------------------
    def set_spec(self, new_spec: NetworkSpec, old_of_new=None) -> None:
        """Replace the network structure, keeping every weight that carries over.

        The current iteration restarts; the step count and history continue (rows
        for inserted or deleted layers are added or dropped)."""
        self._check_dims(new_spec)
        # made first: it refuses a network over the memory budget before allocating it
        experiment = replace(self._experiment, network=new_spec)
        old = self.network
        new = old.rebuilt(new_spec, old_of_new)
        mapping = old.param_mapping(new, old_of_new)
        if old_of_new is not None:
            kept = {j for j in old_of_new if j is not None}
            for k in sorted((k for k in range(1, old.L + 2) if k not in kept), reverse=True):
                self.history.delete_layer(k - 1)
            for j, o in enumerate(old_of_new):
                if o is None:
                    self.history.insert_layer(j - 1)
        self._experiment = experiment
        self._new_network(new, keep_optimizer_from=old, mapping=mapping)
        self.divergence = None
        self._refresh()

    def set_activation(self, k: int, activation: str) -> None:
        self.set_spec(self.spec.with_layer(k, activation=activation))

    def set_activation_all(self, activation: str) -> None:
        hidden = tuple(replace(h, activation=activation) for h in self.spec.hidden)
        self.set_spec(replace(self.spec, hidden=hidden))

    def set_batchnorm(self, k: int, on: bool) -> None:
        self.set_spec(self.spec.with_layer(k, batchnorm=bool(on)))

    def set_batchnorm_all(self, on: bool) -> None:
        hidden = tuple(replace(h, batchnorm=bool(on)) for h in self.spec.hidden)
        self.set_spec(replace(self.spec, hidden=hidden))

    def set_width(self, k: int, width: int) -> None:
        self.set_spec(self.spec.with_layer(k, width=width))

    def add_skip(self, i: int, j: int) -> None:
        self.set_spec(self.spec.with_skip(i, j))

    def remove_skip(self, i: int, j: int) -> None:
        self.set_spec(self.spec.without_skip(i, j))

    def set_skips(self, skips) -> None:
        self.set_spec(replace(self.spec, skips=tuple(tuple(s) for s in skips)))

    def insert_layer(self, k: int, layer: LayerSpec, params: LayerParams | None = None) -> None:
        spec, old_of_new = self.spec.with_inserted_layer(k, layer)
        self.set_spec(spec, old_of_new)
        if params is not None:
            self.set_layer_params(params, layer=k)

    def delete_layer(self, k: int) -> LayerParams:
        """Delete hidden layer k; returns its parameters so an undo can put them back."""
        saved = self.layer_params(k)
        spec, old_of_new = self.spec.with_deleted_layer(k)
        self.set_spec(spec, old_of_new)
        return saved

    def set_depth(self, depth: int) -> None:
        """Add copies of the top hidden layer, or remove layers from the top."""
        if depth < 0:
            raise SpecError("depth", "must be 0 or more")
        spec, L = self.spec, self.spec.depth
        if depth == L:
            return
        if depth > L:
            template = spec.hidden[-1] if L else LayerSpec(16, "relu")
            hidden = spec.hidden + (template,) * (depth - L)
            old_of_new = list(range(L + 1)) + [None] * (depth - L) + [L + 1]
            self.set_spec(replace(spec, hidden=hidden), old_of_new)
        else:
            hidden = spec.hidden[:depth]
            skips = tuple(s for s in spec.skips if s[1] <= depth)
            old_of_new = list(range(depth + 1)) + [L + 1]
            self.set_spec(replace(spec, hidden=hidden, skips=skips), old_of_new)

    def set_width_all(self, width: int) -> None:
        hidden = tuple(replace(h, width=width) for h in self.spec.hidden)
        self.set_spec(replace(self.spec, hidden=hidden))

    def layer_params(self, k: int) -> LayerParams:
        net = self.network
        values = {}
        for short in ("W", "b", "gamma", "beta", "alpha"):
            name = f"{short}{k}"
            if name in net.params:
                values[short] = net.params[name].copy()
        return LayerParams(k, values)

    def set_layer_params(self, saved: LayerParams, layer: int | None = None) -> None:
        """Write saved values back (the overlapping block, if shapes differ)."""
        k = saved.layer if layer is None else layer
        net = self.network
        for short, value in saved.values.items():
            name = f"{short}{k}"
            if name in net.params:
                dst = net.params[name]
                region = tuple(slice(0, min(a, b))
                               for a, b in zip(dst.shape, value.shape, strict=False))
                dst[region] = value[region]
        self._refresh()

    def projection_params(self) -> dict[str, np.ndarray]:
        """Copies of every skip projection ``P{i}_{j}``, by name."""
        return {f"P{i}_{j}": self.network.params[f"P{i}_{j}"].copy()
                for i, j in self.spec.skips if f"P{i}_{j}" in self.network.params}

    def set_projection_params(self, saved: dict[str, np.ndarray]) -> None:
        """Write back saved projections whose name and shape the network still has
        (others are ignored): what an undo uses to put back a projection that the edit
        threw away, instead of the fresh one the restored structure drew."""
        net = self.network
        written = False
        for name, value in saved.items():
            dst = net.params.get(name)
            if dst is not None and dst.shape == np.shape(value):
                dst[...] = value
                written = True
        if written:
            self._refresh()

    def set_init(self, init: str | None = None, gain: float | None = None,
                 sigma_w: float | None = None, sigma_b: float | None = None) -> None:
        """Change the initialization and re-draw every weight (training goes on from
        the new weights; the step count and history continue)."""
        changes = {k: v for k, v in dict(init=init, gain=gain, sigma_w=sigma_w,
                                         sigma_b=sigma_b).items() if v is not None}
        spec = replace(self.spec, **changes)
        self._experiment = replace(self._experiment, network=spec)
        self._new_network(Network(spec, self._experiment.seed, self.dtype))
        self._adam_t = 0
        self.divergence = None
        self._refresh()

    def set_training(self, training: TrainSpec) -> None:
        """New optimizer settings. Changing the optimizer clears its state;
        a diverged run may go on from its last finite weights."""
        old = self.training
        self._experiment = replace(self._experiment, training=training)
        if training.optimizer != old.optimizer:
            self._m1[:] = 0
            self._m2[:] = 0
            self._adam_t = 0
        if training.batch_size != old.batch_size:
            self._idx = self._take_batch()
            self._pos = 0
            self._last_phase = ("ready", 0)
        self.divergence = None

    def set_data(self, data, dataset: Dataset | None = None) -> None:
        """New data. If its dimensions differ, the input and output layers follow."""
        dataset = dataset if dataset is not None else make_dataset(data)
        spec = self.spec
        changes = {}
        if dataset.input_dim != spec.input_dim:
            changes["input_dim"] = dataset.input_dim
        if dataset.output_dim != spec.output_dim:
            changes["output_dim"] = dataset.output_dim
        if dataset.task == "regression" and spec.loss == "cross_entropy":
            changes["loss"] = "mse"
        new_spec = replace(spec, **changes) if changes else spec
        self.dataset = dataset
        self._experiment = replace(self._experiment, data=data, network=new_spec)
        self._prepare_data()
        self._perm = self._batch_rng.permutation(len(self._X))
        self._perm_pos = 0
        self._idx = self._take_batch()
        self._val = (-1, np.nan, np.nan)
        if changes:
            self.set_spec(new_spec)
        else:
            self.divergence = None
            self._refresh()

    def capture_state(self) -> SavedState:
        net = self.network
        return SavedState(self._experiment, net.params_flat.copy(), net.params0.copy(),
                          net.running.copy(), self._m1.copy(), self._m2.copy(), self._adam_t)

    def restore_state(self, state: SavedState) -> None:
        """Put back a captured structure and its values (the step count and history go on)."""
        exp = state.experiment
        if exp.data != self._experiment.data:
            self.set_data(exp.data)
        old_L = self.network.L
        self._experiment = exp
        net = Network(exp.network, exp.seed, self.dtype)
        net.params_flat[:] = state.params
        net.params0[:] = state.params0
        net.running[:] = state.running
        self._new_network(net)
        self._m1[:] = state.m1
        self._m2[:] = state.m2
        self._adam_t = state.adam_t
        if net.L != old_L:
            self.history = History(net.L + 1, self.history_capacity)
        self.divergence = None
        self._refresh()

    def set_experiment(self, experiment: Experiment) -> Snapshot:
        """Start over with another experiment (open a file, pick a preset)."""
        dataset = make_dataset(experiment.data)
        old_ds, old_exp = self.dataset, self._experiment
        self.dataset = dataset
        try:
            self._check_dims(experiment.network)
        except SpecError:
            self.dataset = old_ds
            raise
        self._experiment = experiment
        self.dtype = np.dtype(experiment.dtype)
        try:
            self._prepare_data()
        except Exception:
            self.dataset, self._experiment = old_ds, old_exp
            raise
        return self.reset()


def _frozen(a) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


def _freeze_all(arrays: tuple) -> tuple:
    for a in arrays:
        a.setflags(write=False)
    return arrays
