"""Training a recurrent net through time: the micro-step machine, fused runs, history.

The same shape as the feedforward ``Simulation``: one iteration is a row of
named micro-steps (forward t = 1..T, loss, backward t = T..1, update),
``run(n)`` does whole iterations through one fused kernel, a bounded history
keeps per-step numbers, and NaN/Inf stops training with a report naming the
phase and the time step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import kernels as K
from ..simulation import OPT_CODE
from ..snapshot import DivergenceReport
from . import kernels as RK
from .experiment import RecurrentExperiment
from .network import RecurrentNet

FUSED_CHUNK = 25
PHASES = ("ready", "forward", "loss", "backward", "update")
_PHASE_OF_STATUS = {RK.ST_FORWARD: ("forward", "hidden state"), RK.ST_LOSS: ("loss", "loss"),
                    RK.ST_BACKWARD: ("backward", "error dL/dh"),
                    RK.ST_UPDATE: ("update", "weights")}


@dataclass(frozen=True)
class RecurrentDivergence(DivergenceReport):
    """Training produced NaN or Inf; ``layer`` is the time step (0 for the loss/update)."""

    @property
    def message(self) -> str:
        where = "the loss" if self.phase == "loss" else (
            "the update" if self.phase == "update" else f"time step {self.layer}")
        return (
            f"Training diverged at step {self.step}: the {self.quantity} at {where} became "
            f"NaN or infinite during the {self.phase} pass. Turn on gradient clipping, lower "
            "the learning rate or the recurrent gain, then reset.")


class RecurrentHistory:
    """Fixed-capacity ring buffer of per-iteration numbers; never grows past capacity."""

    COLUMNS = ("step", "loss", "accuracy", "val_loss", "val_accuracy", "grad_norm",
               "h1_grad_norm", "hT_grad_norm")

    def __init__(self, capacity: int = 5000):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = int(capacity)
        self._data = np.full((self.capacity, len(self.COLUMNS)), np.nan)
        self._next = 0
        self._count = 0
        self.version = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def record_many(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.float64)[-self.capacity:]
        for row in rows:  # a chunk is at most FUSED_CHUNK rows
            self._data[self._next] = row
            self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + len(rows), self.capacity)
        self.version += 1

    def _order(self) -> np.ndarray:
        if self._count < self.capacity:
            return np.arange(self._count)
        return (np.arange(self.capacity) + self._next) % self.capacity

    def column(self, name: str) -> np.ndarray:
        return self._data[self._order(), self.COLUMNS.index(name)]

    def clear(self) -> None:
        self._data[:] = np.nan
        self._next = self._count = 0
        self.version += 1


def _frozen(a):
    if a is None:
        return None
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class RecurrentSnapshot:
    cell: str
    lag: int
    step: int  # completed iterations
    phase: str  # what the last micro-step did (PHASES)
    time_step: int  # the time step it touched (1..T), 0 for loss/update/ready
    micro_index: int
    batch_size: int
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    grad_norm: float  # ||dL/dtheta|| of the last finished backward pass, before clipping
    # per time step t = 1..T (index t-1); NaN where the current pass has not reached yet
    hidden_grad_norms: np.ndarray  # ||dL/dh_t|| over the batch
    cell_grad_norms: np.ndarray | None  # ||dL/dc_t|| (LSTMs)
    hidden_norms: np.ndarray  # ||h_t|| over the batch
    forget_mean: np.ndarray | None  # mean forget gate f_t (1 for lstm_no_forget)
    first_input: np.ndarray  # (T, input_dim): the first sequence of the current batch
    divergence: DivergenceReport | None = None

    @property
    def gradient_ratio(self) -> float:
        """||dL/dh_1|| / ||dL/dh_T||: how much of the error reaches the first step."""
        g = self.hidden_grad_norms
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(g[0] / g[-1])


class RecurrentSimulation:
    def __init__(self, experiment: RecurrentExperiment, history_capacity: int = 5000,
                 eval_every: int = 25):
        self.history = RecurrentHistory(history_capacity)
        self.eval_every = int(eval_every)
        self.set_experiment(experiment)

    # -- setup ------------------------------------------------------------------------------
    def set_experiment(self, experiment: RecurrentExperiment) -> RecurrentSnapshot:
        self.experiment = experiment
        task = experiment.task
        dtype = np.dtype(experiment.dtype)
        Xtr, ytr, Xte, yte = task.split()
        self._X = np.ascontiguousarray(Xtr, dtype)
        self._Xte = np.ascontiguousarray(Xte, dtype)
        if task.task == "classification":
            self._labels, self._targets = ytr.astype(np.int64), np.zeros((0, 1), dtype)
            self._labels_te, self._targets_te = yte.astype(np.int64), np.zeros((0, 1), dtype)
        else:
            self._labels, self._targets = np.zeros(0, np.int64), np.ascontiguousarray(ytr, dtype)
            self._labels_te = np.zeros(0, np.int64)
            self._targets_te = np.ascontiguousarray(yte, dtype)
        return self.reset()

    @property
    def spec(self):
        return self.experiment.recurrent

    @property
    def training(self):
        return self.experiment.training

    @property
    def lag(self) -> int:
        return self.experiment.task.lag

    @property
    def batch_size(self) -> int:
        return min(self.training.batch_size, self._X.shape[0])

    @property
    def n_micro_steps(self) -> int:
        return 2 * self.lag + 2

    def reset(self, seed: int | None = None) -> RecurrentSnapshot:
        exp = self.experiment
        self.seed = exp.seed if seed is None else int(seed)
        self.network = RecurrentNet(exp.recurrent, seed=self.seed, dtype=np.dtype(exp.dtype))
        self.network.ensure_workspace(self.batch_size, self.lag)
        n = self.network.n_params
        self._m1 = np.zeros(n, self.network.dtype)
        self._m2 = np.zeros(n, self.network.dtype)
        self._upd_sq = np.zeros(3)
        self._rng = np.random.default_rng(self.seed + 1)
        self._res = np.zeros(3)
        self.step_count = 0
        self._adam_t = 0
        self._pos = 0
        self._last = ("ready", 0)
        self._loss = self._acc = self._val_loss = self._val_acc = float("nan")
        self._grad_norm = float("nan")
        T = self.lag
        self._hnorm = np.full(T, np.nan)
        self._cnorm = np.full(T, np.nan)
        self.divergence: DivergenceReport | None = None
        self.history.clear()
        self._idx = self._take_batch()
        self._shown_row = int(self._idx[0])  # the sequence the snapshot's inputs show
        return self.snapshot()

    def _take_batch(self) -> np.ndarray:
        return self._rng.integers(0, self._X.shape[0], self.batch_size).astype(np.int64)

    def _hyper(self) -> np.ndarray:
        t = self.training
        h = np.zeros(K.N_HYPER)
        h[K.H_LR], h[K.H_MOMENTUM], h[K.H_BETA1], h[K.H_BETA2] = (t.lr, t.momentum, t.beta1,
                                                                  t.beta2)
        h[K.H_EPS], h[K.H_WD], h[K.H_CLIP_NORM], h[K.H_CLIP_VALUE] = (
            t.eps, t.weight_decay, t.clip_norm, t.clip_value)
        h[K.H_T] = self._adam_t + 1
        return h

    def _accuracy(self, correct) -> float:
        if self.experiment.task.task != "classification":
            return float("nan")
        return float(correct) / self.batch_size

    def _diverge(self, phase: str, t: int, quantity: str) -> None:
        self.divergence = RecurrentDivergence(self.step_count, phase, int(t), quantity)
        self._pos = 0

    # -- micro-steps ------------------------------------------------------------------------
    def micro_step_name(self, pos: int | None = None) -> tuple[str, int]:
        """(phase, time step) of micro-step ``pos`` (default: the next one)."""
        pos = self._pos if pos is None else pos
        T = self.lag
        if pos < T:
            return "forward", pos + 1
        if pos == T:
            return "loss", 0
        if pos <= 2 * T:
            return "backward", 2 * T + 1 - pos
        return "update", 0

    def micro_step(self) -> RecurrentSnapshot:
        """Do the next named micro-step and return the snapshot after it."""
        if self.divergence is not None:
            return self.snapshot()
        net = self.network
        phase, t = self.micro_step_name()
        O = net.spec.output_dim
        if phase == "forward":
            if t == 1:
                RK.load_sequences(self._X, self._idx, net.Xt)
                self._shown_row = int(self._idx[0])
                self._hnorm[:] = np.nan
                self._cnorm[:] = np.nan
            if not RK.forward_step(net.cell_code, t, net.lay, net.params_flat, net.Xt, net.Hs,
                                   net.Cs, net.A, net.Hn, O):
                self._diverge("forward", t, "hidden state")
                return self.snapshot()
        elif phase == "loss":
            loss, correct = RK.readout_loss(net.lay, net.params_flat, net.grads_flat, net.Hs, O,
                                            net.loss_code, self._labels, self._targets,
                                            self._idx, net.out, net.delta, net.dh, net.dc)
            self._loss, self._acc = float(loss), self._accuracy(correct)
            if not np.isfinite(loss):
                self._diverge("loss", 0, "loss")
                return self.snapshot()
            RK.zero_recurrent_grads(net.lay, net.grads_flat, net.spec.gates, net.spec.hidden,
                                    net.spec.input_dim)
        elif phase == "backward":
            nh, nc, ok = RK.backward_step(net.cell_code, t, net.lay, net.params_flat,
                                          net.grads_flat, net.Xt, net.Hs, net.Cs, net.A, net.Hn,
                                          net.dh, net.dc, net.dgx, net.dgh, O)
            self._hnorm[t - 1] = nh
            self._cnorm[t - 1] = nc
            if not ok:
                self._diverge("backward", t, "error dL/dh")
                return self.snapshot()
        else:
            gn, bad = RK.clip_and_update(OPT_CODE[self.training.optimizer], net.params_flat,
                                         net.grads_flat, self._m1, self._m2, self._hyper(),
                                         net.decay_mask, net.elem_layer, self._upd_sq)
            self._grad_norm = float(gn)
            if bad >= 0:
                self._diverge("update", 0, "weights")
                return self.snapshot()
            self._publish()
            row = np.array([[self.step_count + 1, self._loss, self._acc, np.nan, np.nan, gn,
                             self._hnorm[0], self._hnorm[-1]]])
            self._finish(row)
            self._idx = self._take_batch()
            self._pos = 0
            self._last = ("update", 0)
            return self.snapshot()
        self._pos += 1
        self._last = (phase, t)
        return self.snapshot()

    def _publish(self) -> None:
        self.network.hnorm[:] = self._hnorm
        self.network.cnorm[:] = self._cnorm
        self.network.publish_norms()

    def _finish(self, rows: np.ndarray) -> None:
        """Count the iterations in ``rows`` and record them, held-out numbers on the last
        row when an evaluation is due."""
        n = len(rows)
        self.step_count += n
        self._adam_t += n
        if self.step_count % self.eval_every == 0 or self.step_count == n:
            self._val_loss, self._val_acc = self.evaluate()
            rows[-1, 3], rows[-1, 4] = self._val_loss, self._val_acc
        self.history.record_many(rows)

    def step(self) -> RecurrentSnapshot:
        """Finish the current iteration (or do one whole one)."""
        if self._pos == 0:
            return self.run(1)
        start = self.step_count
        while self.step_count == start and self.divergence is None:
            self.micro_step()
        return self.snapshot()

    def run(self, n: int, snapshot: bool = True) -> RecurrentSnapshot | None:
        """n whole iterations through the fused kernel; stops early on divergence."""
        if self.divergence is None and n > 0 and self._pos != 0:
            self.step()
            n -= 1
        net = self.network
        B = self.batch_size
        opt = OPT_CODE[self.training.optimizer]
        hyper = self._hyper()
        while n > 0 and self.divergence is None:
            to_eval = self.eval_every - (self.step_count % self.eval_every)
            if self.step_count == 0:
                to_eval = 1
            chunk = min(n, FUSED_CHUNK, to_eval)
            batches = np.empty((chunk, B), np.int64)
            batches[0] = self._idx
            for s in range(1, chunk):
                batches[s] = self._take_batch()
            hist = np.zeros((chunk, 5))
            hyper[K.H_T] = self._adam_t + 1
            done, status = RK.train_steps(
                net.cell_code, net.lay, net.params_flat, net.grads_flat, self._m1, self._m2,
                hyper, net.decay_mask, net.elem_layer, self._upd_sq, self._X, self._labels,
                self._targets, batches, net.Xt, net.Hs, net.Cs, net.A, net.Hn, net.dh, net.dc,
                net.dgx, net.dgh, net.out, net.delta, net.spec.output_dim, net.loss_code, opt,
                net.hnorm, net.cnorm, self._res, hist)
            if done:
                self._shown_row = int(batches[min(done, chunk - 1)][0])
                rows = np.full((done, 8), np.nan)
                rows[:, 0] = self.step_count + 1 + np.arange(done)
                rows[:, 1] = hist[:done, 0]
                if self.experiment.task.task == "classification":
                    rows[:, 2] = hist[:done, 1] / B
                rows[:, 5:8] = hist[:done, 2:5]
                self._loss, self._acc = float(rows[-1, 1]), float(rows[-1, 2])
                self._grad_norm = float(rows[-1, 5])
                self._hnorm[:] = net.hnorm
                self._cnorm[:] = net.cnorm
                self.network.publish_norms()
                self._finish(rows)
            self._last = ("update", 0)
            n -= chunk
            if status:
                phase, quantity = _PHASE_OF_STATUS[status // 10000]
                self._loss = float(hist[done, 0]) if phase != "forward" else self._loss
                self._hnorm[:] = net.hnorm if phase == "backward" else np.nan
                self._diverge(phase, status % 10000, quantity)
                break
            self._idx = self._take_batch()
        return self.snapshot() if snapshot else None

    # -- held-out ---------------------------------------------------------------------------
    def evaluate(self, X=None, labels=None, targets=None) -> tuple[float, float]:
        """(loss, accuracy) on the held-out sequences, in chunks of the training batch size
        so the training workspace is reused (the current iteration must be complete)."""
        net = self.network
        if X is None:
            X, labels, targets = self._Xte, self._labels_te, self._targets_te
        n = X.shape[0]
        if n == 0:
            return float("nan"), float("nan")
        # the training batch's states stay what snapshots show
        saved = [a.copy() for a in (net.Xt, net.Hs, net.Cs, net.A, net.Hn)]
        try:
            return self._evaluate_chunks(X, labels, targets)
        finally:
            for dst, src in zip((net.Xt, net.Hs, net.Cs, net.A, net.Hn), saved, strict=True):
                dst[...] = src

    def _evaluate_chunks(self, X, labels, targets) -> tuple[float, float]:
        net = self.network
        n = X.shape[0]
        B = self.batch_size
        O = net.spec.output_dim
        total = 0.0
        correct = 0
        for lo in range(0, n, B):
            rows = np.arange(lo, lo + B) % n  # the last chunk wraps; the extras are dropped
            keep = min(B, n - lo)
            RK.load_sequences(X, rows.astype(np.int64), net.Xt)
            if RK.forward_all(net.cell_code, net.lay, net.params_flat, net.Xt, net.Hs, net.Cs,
                              net.A, net.Hn, O):
                return float("nan"), float("nan")
            o = net.Hs[-1].astype(np.float64) @ net.params["W_out"] + net.params["b_out"]
            o = o[:keep]
            if labels.shape[0]:
                y = labels[lo:lo + keep]
                m = o.max(axis=1, keepdims=True)
                lse = m[:, 0] + np.log(np.exp(o - m).sum(axis=1))
                total += float(np.sum(lse - o[np.arange(keep), y]))
                correct += int(np.sum(o.argmax(axis=1) == y))
            else:
                d = o - targets[lo:lo + keep]
                total += float(np.sum(d * d)) / O
        acc = correct / n if labels.shape[0] else float("nan")
        return total / n, acc

    # -- snapshot ---------------------------------------------------------------------------
    def snapshot(self) -> RecurrentSnapshot:
        net = self.network
        T = self.lag
        phase, t = self._last
        fwd_done = (self._pos > 0) or phase in ("update", "backward", "loss")
        hs = net.Hs[1:]
        hidden_norms = np.sqrt(np.sum(np.square(hs, dtype=np.float64), axis=(1, 2)))
        if not fwd_done and self.step_count == 0:
            hidden_norms = np.full(T, np.nan)
        forget = None
        if net.spec.cell == "lstm":
            H = net.spec.hidden
            forget = net.A[:, :, H:2 * H].mean(axis=(1, 2), dtype=np.float64)
        elif net.spec.cell == "lstm_no_forget":
            forget = np.ones(T)
        lstm = net.spec.cell.startswith("lstm")
        return RecurrentSnapshot(
            cell=net.spec.cell, lag=T, step=self.step_count, phase=phase, time_step=t,
            micro_index=self._pos, batch_size=self.batch_size, loss=self._loss,
            accuracy=self._acc, val_loss=self._val_loss, val_accuracy=self._val_acc,
            grad_norm=self._grad_norm, hidden_grad_norms=_frozen(self._hnorm),
            cell_grad_norms=_frozen(self._cnorm) if lstm else None,
            hidden_norms=_frozen(hidden_norms), forget_mean=_frozen(forget),
            first_input=_frozen(self._X[self._shown_row]), divergence=self.divergence)
