"""Benchmark (not a test): steps per second of the core's training step against numpy and PyTorch.

One step is the whole iteration the app runs while training: load the batch,
forward, loss, backward, the per-layer statistics (||delta_k||, ||dW_k||,
||W_k||, update norm, change since init, dead / saturated fraction, activation
mean and std) and the SGD update. Every implementation trains the same network:
float32, hidden layers cycling sigmoid / tanh / relu, glorot-uniform weights
taken from the core's own initialization, mean softmax cross-entropy, plain
SGD, random Gaussian inputs with random labels.

Implementations, timed in interleaved rounds (A, B, C, ... A, B, C, ...) after a
warm-up, in an order that rotates from round to round; the numbers are medians over
the rounds, ratios are medians of the per-round ratios:

* ``core run``: ``Simulation.run(n, snapshot=False)``, the app's training path
  (fused ``kernels.train_steps`` in chunks, plus the Python bookkeeping and
  the history recording per step).
* ``core raw``: ``kernels.train_steps`` called directly, 64 steps per call, on
  precomputed batches: the kernel alone.
* ``numpy``: bench/numpy_net.py, the same maths vectorized in numpy.
* ``torch 1 thread`` / ``torch default``: autograd with ``retain_grad`` on every
  pre-activation for delta_k, ``torch.optim.SGD``; statistics stay tensors
  and leave the step in one ``.numpy()`` call.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/core.py`` (``make bench``).
``--quick`` for a short run; the results replace the section
"## Core training step (bench/core.py)" of docs/PERFORMANCE.md unless ``--no-doc``.
"""

from __future__ import annotations

import os

# As the app does (main.py): one BLAS thread, set before numpy is imported. OMP_NUM_THREADS
# is left alone on purpose, because it would also pin PyTorch's default thread count.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import simulator  # noqa: E402
from bench import numpy_net as NP  # noqa: E402
from simulator import kernels as K  # noqa: E402
from simulator.data import Dataset, DataSpec  # noqa: E402
from simulator.experiment import Experiment, TrainSpec  # noqa: E402
from simulator.network import Network  # noqa: E402
from simulator.simulation import FUSED_CHUNK, Simulation  # noqa: E402
from simulator.spec import LayerSpec, NetworkSpec  # noqa: E402

try:
    import torch
except ImportError:  # the benchmark still runs, without the PyTorch columns
    torch = None

DOC = ROOT / "docs" / "PERFORMANCE.md"
SECTION = "## Core training step (bench/core.py)"
CYCLE = ("sigmoid", "tanh", "relu")
INPUT_DIM = 16
CLASSES = 4
N_SAMPLES = 4096
LR = 0.01
SEED = 0
BATCH_POOL = 256  # batches drawn once and cycled through by numpy, torch and core raw
PAUSE = 0.05  # seconds between two timed runs


@dataclass(frozen=True)
class Config:
    depth: int
    width: int
    batch: int
    vs_torch: float  # target: core run steps/s >= this x PyTorch (both thread settings)
    vs_numpy: float | None = None

    @property
    def label(self) -> str:
        return f"{self.depth} x {self.width}, batch {self.batch}"


CONFIGS = (
    Config(30, 32, 64, vs_torch=3.0, vs_numpy=2.0),
    Config(10, 16, 64, vs_torch=6.0),
    Config(100, 16, 32, vs_torch=6.0),
    Config(50, 64, 128, vs_torch=1.2),
)


# -- the network and the data, shared by every implementation -------------------------------


def make_spec(cfg: Config) -> NetworkSpec:
    hidden = tuple(LayerSpec(cfg.width, CYCLE[i % len(CYCLE)]) for i in range(cfg.depth))
    return NetworkSpec(INPUT_DIM, CLASSES, hidden=hidden, init="glorot_uniform",
                       loss="cross_entropy")


def make_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([SEED, 1])
    X = rng.standard_normal((N_SAMPLES, INPUT_DIM)).astype(np.float32)
    y = rng.integers(0, CLASSES, N_SAMPLES).astype(np.int64)
    return X, y


def make_simulation(cfg: Config, X, y) -> Simulation:
    """The core on the shared data. No held-out rows: held-out evaluation is not part of a
    training step, and neither reference does it."""
    dataset = Dataset(X_train=X.astype(np.float64), y_train=y, X_test=X[:0].astype(np.float64),
                      y_test=y[:0], task="classification", n_classes=CLASSES,
                      input_dim=INPUT_DIM, output_dim=CLASSES, name="random")
    exp = Experiment(name="bench", description="", network=make_spec(cfg),
                     data=DataSpec(kind="highdim", dims=INPUT_DIM),
                     training=TrainSpec(optimizer="sgd", lr=LR, batch_size=cfg.batch),
                     seed=SEED, dtype="float32")
    return Simulation(exp, dataset=dataset)


def initial_weights(net: Network) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The core's initial W_k and b_k, k = 1..L+1, as copies."""
    layers = range(1, net.L + 2)
    return ([net.view(net.params0, f"W{k}").copy() for k in layers],
            [net.view(net.params0, f"b{k}").copy() for k in layers])


def batch_pool(batch: int) -> np.ndarray:
    rng = np.random.default_rng([SEED, 2])
    return np.stack([rng.permutation(N_SAMPLES)[:batch] for _ in range(BATCH_POOL)])


# -- the core, raw: kernels.train_steps on its own buffers ------------------------------------


class CoreRaw:
    def __init__(self, cfg: Config, X, y):
        self.net = net = Network(make_spec(cfg), SEED, np.float32)
        net.ensure_batch(cfg.batch)
        self.B = cfg.batch
        self.X, self.labels = X, y
        self.targets = np.zeros((0, CLASSES), np.float32)
        self.m1 = np.zeros(net.n_params, np.float32)
        self.m2 = np.zeros(net.n_params, np.float32)
        self.upd_sq = np.zeros(net.L + 2)
        self.out = np.zeros(2)
        self.hyper = np.zeros(K.N_HYPER)
        self.hyper[K.H_LR] = LR
        self.hyper[K.H_T] = 1
        self.hist_stats = np.empty((FUSED_CHUNK, net.L + 2, K.N_STATS))
        self.hist_out = np.empty((FUSED_CHUNK, 2))
        self.pool = batch_pool(cfg.batch)
        self.pos = 0

    def run(self, n: int) -> None:
        net = self.net
        while n > 0:
            chunk = min(n, FUSED_CHUNK, BATCH_POOL - self.pos)
            batches = self.pool[self.pos:self.pos + chunk]
            done, status = K.train_steps(
                net.lay, net.skp, net.params_flat, net.grads_flat, net._ws, net.running,
                net.params0, self.m1, self.m2, net.decay_mask, net.elem_layer, self.upd_sq,
                self.X, self.labels, self.targets, batches, self.B, net.L, K.LOSS_XENT,
                K.OPT_SGD, self.hyper, net.stats, self.out, self.hist_stats, self.hist_out)
            if status:
                raise RuntimeError(f"core raw diverged (status {status})")
            self.pos = (self.pos + chunk) % BATCH_POOL
            n -= chunk


class CoreRun:
    """Simulation.run; ``inside`` accumulates the time spent in kernels.train_steps, so that
    the rest, the Python side of run(), is measured in the very same runs."""

    def __init__(self, cfg: Config, X, y):
        self.sim = make_simulation(cfg, X, y)
        self.inside = 0.0

    def run(self, n: int) -> None:
        real = K.train_steps

        def train_steps(*args):
            t = time.perf_counter()
            result = real(*args)
            self.inside += time.perf_counter() - t
            return result

        K.train_steps = train_steps  # Simulation.run looks it up on the module per chunk
        try:
            self.sim.run(n, snapshot=False)
        finally:
            K.train_steps = real
        if self.sim.divergence is not None:
            raise RuntimeError(self.sim.divergence.message)


class PublicRun:
    """The public API a notebook calls: ``Network.train_step(X, y, lr)`` on each batch
    (plain SGD; forward and backward through the whole-pass kernels)."""

    def __init__(self, cfg: Config, X, y):
        self.net = Network(make_spec(cfg), SEED, np.float32)
        self.X, self.y = X, y
        self.pool = batch_pool(cfg.batch)
        self.pos = 0

    def run(self, n: int) -> None:
        net = self.net
        for _ in range(n):
            idx = self.pool[self.pos]
            net.train_step(self.X[idx], self.y[idx], LR)
            self.pos = (self.pos + 1) % BATCH_POOL


class PublicPerLayer(PublicRun):
    """What ``Network.train_step`` did before it went through the whole-pass kernels: one
    kernel call per layer and direction from Python (kept here as the reference)."""

    def run(self, n: int) -> None:
        net = self.net
        L = net.L
        for _ in range(n):
            idx = self.pool[self.pos]
            X = net.as_input(self.X[idx])
            labels, targets = net.prepare_targets(self.y[idx])
            rows = np.arange(len(X), dtype=np.int64)
            net.load_batch(X, rows)
            for k in range(1, L + 2):
                net.forward_layer(k)
            net.loss(net.loss_code, labels, targets, rows)
            for k in range(L + 1, 0, -1):
                net.backward_layer(k)
            net.params_flat -= net.dtype.type(LR) * net.grads_flat
            self.pos = (self.pos + 1) % BATCH_POOL


class NumpyRun:
    def __init__(self, cfg: Config, X, y):
        spec = make_spec(cfg)
        W, b = initial_weights(Network(spec, SEED, np.float32))
        self.net = NP.NumpyNet(W, b, [h.activation for h in spec.hidden], LR, cfg.batch)
        self.X, self.y = X, y
        self.pool = batch_pool(cfg.batch)
        self.pos = 0

    def run(self, n: int) -> None:
        for _ in range(n):
            idx = self.pool[self.pos]
            self.net.train_step(self.X[idx], self.y[idx])
            self.pos = (self.pos + 1) % BATCH_POOL


# -- PyTorch -----------------------------------------------------------------------------------


class TorchNet:
    """The same network in PyTorch: autograd for the gradients, retain_grad() for delta_k."""

    def __init__(self, weights, biases, activations, lr: float):
        self.W = [torch.tensor(w).requires_grad_() for w in weights]
        self.b = [torch.tensor(b).requires_grad_() for b in biases]
        self.W0 = [w.detach().clone() for w in self.W]
        self.acts = (*activations, "linear")
        self.lr = lr
        self.opt = torch.optim.SGD([p for pair in zip(self.W, self.b, strict=True) for p in pair],
                                   lr=lr, foreach=True)
        self.zero = torch.zeros(())

    def train_step(self, X, labels) -> np.ndarray:
        """One SGD step. Returns [stats (L+1, N_STATS) row-major..., loss, correct]."""
        zs, acts = [], []
        a = X
        for W, b, act in zip(self.W, self.b, self.acts, strict=True):
            z = torch.addmm(b, a, W)
            z.retain_grad()
            if act == "sigmoid":
                a = torch.sigmoid(z)
            elif act == "tanh":
                a = torch.tanh(z)
            elif act == "relu":
                a = torch.relu(z)
            else:
                a = z
            zs.append(z)
            acts.append(a)
        loss = torch.nn.functional.cross_entropy(z, labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            fwd = []
            for z, a, act in zip(zs, acts, self.acts, strict=True):
                if act == "sigmoid":
                    d = a * (1.0 - a)
                elif act == "tanh":
                    d = 1.0 - a * a
                dead = (1.0 - (z > 0).any(dim=0).float().mean()) if act == "relu" else self.zero
                sat = ((d.mean(dim=0) < NP.SATURATION_THRESHOLD).float().mean()
                       if act in ("sigmoid", "tanh") else self.zero)
                fwd.append(torch.stack((dead, sat, a.mean(), a.std(correction=0))))
            # float64 sums of squares, as the core: a vanished delta's squares underflow float32
            delta_norm = torch.stack(torch._foreach_norm([z.grad for z in zs],
                                                         dtype=torch.float64))
            grad_norm = torch.stack(torch._foreach_norm([w.grad for w in self.W],
                                                        dtype=torch.float64))
            self.opt.step()
            weight_norm = torch.stack(torch._foreach_norm(self.W)).double()
            change = torch.stack(torch._foreach_norm(torch._foreach_sub(self.W, self.W0))).double()
            # plain SGD: the step applied to W_k is lr dW_k
            stats = torch.cat((torch.stack((delta_norm, grad_norm, weight_norm,
                                            self.lr * grad_norm, change), dim=1),
                               torch.stack(fwd).double()), dim=1)
            correct = (z.argmax(dim=1) == labels).sum()
            return torch.cat((stats.flatten(), loss.detach().double().view(1),
                              correct.double().view(1))).numpy()


class TorchRun:
    def __init__(self, cfg: Config, X, y, threads: int):
        self.threads = threads
        W, b = initial_weights(Network(make_spec(cfg), SEED, np.float32))
        self.net = TorchNet(W, b, [h.activation for h in make_spec(cfg).hidden], LR)
        self.X = torch.from_numpy(X.copy())
        self.y = torch.from_numpy(y.copy())
        self.pool = torch.from_numpy(batch_pool(cfg.batch))
        self.pos = 0

    def run(self, n: int) -> None:
        torch.set_num_threads(self.threads)
        for _ in range(n):
            idx = self.pool[self.pos]
            self.net.train_step(self.X[idx], self.y[idx])
            self.pos = (self.pos + 1) % BATCH_POOL


# -- sanity: the first step agrees -----------------------------------------------------------

# core stats column for each numpy_net column
_CORE_COLUMN = (K.S_DELTA, K.S_GRAD_W, K.S_W, K.S_UPDATE, K.S_CHANGE, K.S_DEAD, K.S_SAT,
                K.S_ACT_MEAN, K.S_ACT_STD)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-30)
    return float(np.max(np.abs(a - b) / scale))


def check_first_step(cfg: Config, X, y) -> dict:
    """Loss of the first batch and the per-layer statistics after the first step, all three ways."""
    sim = make_simulation(cfg, X, y)
    idx = sim._idx.copy()  # the first batch: its loss is computed when the Simulation is built
    core_loss = sim.snapshot().loss
    W, b = initial_weights(sim.network)
    acts = [h.activation for h in sim.spec.hidden]
    sim.run(1, snapshot=False)
    core_stats = sim.network.stats[1:, list(_CORE_COLUMN)]
    ref = NP.NumpyNet(W, b, acts, LR, cfg.batch)
    np_loss, _ = ref.train_step(X[idx], y[idx])
    result = {"core_loss": float(core_loss), "numpy_loss": np_loss,
              "numpy_loss_rel": _rel(core_loss, np_loss),
              "numpy_stats_rel": _rel(core_stats, ref.stats)}
    if torch is not None:
        tnet = TorchNet(W, b, acts, LR)
        out = tnet.train_step(torch.from_numpy(X[idx].copy()), torch.from_numpy(y[idx].copy()))
        n = len(W) * NP.N_STATS
        result.update(torch_loss=float(out[n]), torch_loss_rel=_rel(core_loss, out[n]),
                      torch_stats_rel=_rel(core_stats, out[:n].reshape(len(W), NP.N_STATS)))
    rels = [v for k, v in result.items() if k.endswith("_rel")]
    result["ok"] = max(rels) < 1e-3
    return result


# -- timing ----------------------------------------------------------------------------------


def implementations(cfg: Config, X, y) -> dict:
    impls = {"core run": CoreRun(cfg, X, y), "core raw": CoreRaw(cfg, X, y),
             "public train_step": PublicRun(cfg, X, y),
             "public, per layer": PublicPerLayer(cfg, X, y), "numpy": NumpyRun(cfg, X, y)}
    if torch is not None:
        impls["torch 1 thread"] = TorchRun(cfg, X, y, 1)
        impls["torch default"] = TorchRun(cfg, X, y, DEFAULT_TORCH_THREADS)
    return impls


def timed(impl, n: int) -> float:
    t = time.perf_counter()
    impl.run(n)
    return n / (time.perf_counter() - t)


def bench_config(cfg: Config, rounds: int, seconds: float, X, y) -> dict:
    impls = implementations(cfg, X, y)
    # warm-up (doubling until a batch of steps takes 0.2 s), then size each
    # implementation's share of a round to about ``seconds``
    steps = {}
    for name, impl in impls.items():
        n = 2
        while True:
            t = time.perf_counter()
            impl.run(n)
            if time.perf_counter() - t >= 0.2 or n >= 4096:
                break
            n *= 2
        rate = timed(impl, n)
        steps[name] = max(5, int(rate * seconds))
    rates = {name: [] for name in impls}
    python_share = []  # of core run's time, per round
    names = list(impls)
    for r in range(rounds):
        # Rotate the order each round, so that no implementation always follows the same
        # one (PyTorch's idle OpenMP threads spin for a while after a multi-threaded op and
        # would slow whatever runs next), and pause briefly so that they go to sleep.
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(PAUSE)
            impls["core run"].inside = 0.0
            rate = timed(impls[name], steps[name])
            rates[name].append(rate)
            if name == "core run":
                python_share.append(1.0 - impls[name].inside * rate / steps[name])
    if torch is not None:
        torch.set_num_threads(DEFAULT_TORCH_THREADS)
    med = {name: statistics.median(r) for name, r in rates.items()}
    spread = {name: (min(r), max(r)) for name, r in rates.items()}

    def ratio(a, b):
        return statistics.median(x / z for x, z in zip(rates[a], rates[b], strict=True))

    ratios = {("public train_step", "core run"): ratio("public train_step", "core run"),
              ("public, per layer", "core run"): ratio("public, per layer", "core run"),
              ("public train_step", "public, per layer"): ratio("public train_step",
                                                                "public, per layer")}
    for core in ("core run", "core raw"):
        for other in ("numpy", "torch 1 thread", "torch default"):
            if other in rates:
                ratios[(core, other)] = ratio(core, other)
    return {"steps_per_round": steps, "median": med, "spread": spread, "ratios": ratios,
            "python_share": statistics.median(python_share)}


def _best_us(f, reps: int, repeats: int = 7) -> float:
    """Microseconds per call, the minimum over ``repeats`` batches of ``reps`` calls: on a
    shared machine the minimum is the least disturbed measurement (as timeit advises)."""
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t) / reps * 1e6)
    return best


def python_side_of_run(cfg: Config, X, y, repeats: int = 5) -> tuple[float, float]:
    """(total, Python side) of Simulation.run in µs per step: the Python side is the run's
    time minus the time spent inside kernels.train_steps, measured in the same run."""
    sim = make_simulation(cfg, X, y)
    sim.run(20, snapshot=False)
    real = K.train_steps
    inside = 0.0

    def timed_train_steps(*args):
        nonlocal inside
        t = time.perf_counter()
        result = real(*args)
        inside += time.perf_counter() - t
        return result

    steps = max(50, 3000 // cfg.depth)
    best_total, best_python = math.inf, math.inf
    K.train_steps = timed_train_steps  # Simulation.run looks it up on the module per chunk
    try:
        for _ in range(repeats):
            inside = 0.0
            t = time.perf_counter()
            sim.run(steps, snapshot=False)
            total = time.perf_counter() - t
            best_total = min(best_total, total / steps * 1e6)
            best_python = min(best_python, (total - inside) / steps * 1e6)
    finally:
        K.train_steps = real
    return best_total, best_python


def profile_core(cfg: Config, X, y, reps: int = 100) -> dict:
    """Where a core step's time goes: each phase of the fused kernel (the same functions it
    calls) and one hidden layer of each activation split into its parts, in µs."""
    net = Network(make_spec(cfg), SEED, np.float32)
    B, L = cfg.batch, net.L
    net.ensure_batch(B)
    ws, st = net._ws, net.stats
    idx = batch_pool(B)[0].astype(np.int64)
    targets = np.zeros((0, CLASSES), np.float32)
    hyper = np.zeros(K.N_HYPER)
    hyper[K.H_LR] = 1e-12  # keep the weights (and so every timing) the same on each repeat
    hyper[K.H_T] = 1
    m = np.zeros(net.n_params, np.float32)
    upd = np.zeros(L + 2)
    K.load_batch(net.lay, ws, X, idx, B)
    phases = {
        "forward": lambda: K.forward_pass(
            net.lay, net.skp, net.params_flat, ws, net.running, B, L, True, st),
        "loss": lambda: K.loss_and_delta(net.lay, net.skp, ws, B, L, K.LOSS_XENT, y, targets, idx),
        "backward": lambda: K.backward_pass(
            net.lay, net.skp, net.params_flat, net.grads_flat, ws, B, L, st),
        "update + weight stats": lambda: K.apply_update(
            K.OPT_SGD, net.lay, net.skp, net.params_flat, net.grads_flat, m, m, net.params0, hyper,
            net.decay_mask, net.elem_layer, upd, L, st),
    }
    for f in phases.values():
        f()
    out = {"phases": {name: _best_us(f, max(5, reps // 10)) for name, f in phases.items()}}
    # one hidden layer of each activation (layers 2..4, so that a_{k-1} is a real activation)
    empty = np.zeros(0, np.float32)
    layers = {}
    for k in range(2, 5):
        act = make_spec(cfg).hidden[k - 1].activation
        code = int(net.lay[k, K.C_ACT])
        W, b = net.params[f"W{k}"], net.params[f"b{k}"]
        dW, db = net.grad_arrays[f"W{k}"], net.grad_arrays[f"b{k}"]
        a_prev, z = net.block(k - 1, K.C_A), net.block(k, K.C_Z)
        u, a, g, gu, dp = (net.block(k, c) for c in (K.C_U, K.C_A, K.C_G, K.C_GU, K.C_DP))
        g_prev, tmp = net.block(k - 1, K.C_G), net.block(k - 1, K.C_TMP)
        parts = {
            "forward_layer": lambda k=k: K.forward_layer(
                k, net.lay, net.skp, net.params_flat, ws, net.running, B, True, st),
            "dense forward": lambda W=W, b=b, a_prev=a_prev, z=z: K.dense_forward(
                a_prev, W, b, z),
            # the kernels forward_layer / backward_layer call: phi and phi' in one pass,
            # then gu = g * phi' from the stored values
            "phi": lambda c=code, u=u, a=a, dp=dp: K.act_forward_dp(c, u, empty, a, dp),
            "phi'": lambda c=code, u=u, g=g, gu=gu, dp=dp: K.act_backward_dp(
                c, u, empty, dp, g, gu, empty),
            "dense backward": lambda W=W, dW=dW, db=db, a_prev=a_prev, gu=gu, g_prev=g_prev,
            tmp=tmp: K.dense_backward(a_prev, W, gu, dW, db, g_prev, tmp, True),
        }
        for f in parts.values():
            f()
        t = {name: _best_us(f, reps) for name, f in parts.items()}
        # what forward_layer does besides the dense step and phi: the unit statistics
        t["unit stats"] = max(0.0, t["forward_layer"] - t["dense forward"] - t["phi"])
        layers[act] = t
    out["layers"] = layers
    out["elements_per_layer"] = B * cfg.width
    out["run_total_us"], out["run_python_us"] = python_side_of_run(cfg, X, y)
    return out


# -- startup: import compiles nothing; cold and warm warmup() ----------------------------------

_STARTUP_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import simulator
t1 = time.perf_counter()
# keep the function: importing the module simulator.warmup replaces the package attribute
warmup = simulator.warmup
import importlib, pkgutil
failed_imports = []
for info in pkgutil.iter_modules(simulator.__path__):  # every module, not only the package's
    try:
        importlib.import_module(f"simulator.{info.name}")
    except Exception as e:
        failed_imports.append(f"simulator.{info.name}: {e}")
from numba.core.dispatcher import Dispatcher
dispatchers = {}
for name, mod in list(sys.modules.items()):
    if name == "simulator" or name.startswith("simulator."):
        for attr, obj in vars(mod).items():
            if isinstance(obj, Dispatcher):
                dispatchers[f"{obj.py_func.__module__}.{obj.__name__}"] = obj
compiled_at_import = sorted(n for n, d in dispatchers.items() if d.signatures)
cached = simulator.kernels_cached() if hasattr(simulator, "kernels_cached") else None
from simulator.experiment import load_preset
from simulator.simulation import Simulation
t2 = time.perf_counter()
c2 = time.process_time()
# as the app starts: the first frame (the start-up preset built, its snapshot), then the rest
Simulation(load_preset("deep_sigmoid")).snapshot()
t_frame = time.perf_counter()
c_frame = time.process_time()
warmup()
t3 = time.perf_counter()
c3 = time.process_time()
sigs = {n: len(d.signatures) for n, d in dispatchers.items()}
print(json.dumps({"import_s": t1 - t0, "warmup_s": t3 - t2, "dispatchers": len(dispatchers),
                  "first_frame_s": t_frame - t2, "rest_s": t3 - t_frame, "cached": cached,
                  # CPU time of this process: what the compile costs, whatever else runs
                  "first_frame_cpu_s": c_frame - c2, "warmup_cpu_s": c3 - c2,
                  "compiled_at_import": compiled_at_import, "failed_imports": failed_imports,
                  "signatures_after_warmup": sum(sigs.values()),
                  "max_signatures": max(sigs.values()) if sigs else 0,
                  "several_signatures": sorted(n.rsplit(".", 1)[-1] for n, k in sigs.items()
                                               if k > 1)}))
"""


def measure_startup(warm_repeats: int = 3, tree: Path = ROOT) -> dict:
    """Cold: a fresh NUMBA_CACHE_DIR (every kernel compiles). Warm: the same folder again.
    ``tree``: the checkout whose ``simulator`` is measured (another one, e.g. an older
    commit, for a before/after comparison on the same machine)."""
    with tempfile.TemporaryDirectory(prefix="gfl-numba-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, OPENBLAS_NUM_THREADS="1",
                   PYTHONPATH=str(tree))

        def probe():
            proc = subprocess.run([sys.executable, "-c", _STARTUP_PROBE], cwd=tree, env=env,
                                  capture_output=True, text=True, timeout=600, check=True)
            return json.loads(proc.stdout.strip().splitlines()[-1])

        cold = probe()
        warm = [probe() for _ in range(warm_repeats)]
    return {"cold": cold, "warm_warmup_s": statistics.median(w["warmup_s"] for w in warm),
            "warm_first_frame_s": statistics.median(w["first_frame_s"] for w in warm),
            "warm_cached": (None if any(w["cached"] is None for w in warm)
                            else all(w["cached"] for w in warm)),
            "warm_import_s": statistics.median(w["import_s"] for w in warm),
            "warm_compiled_at_import": sorted({n for w in warm for n in w["compiled_at_import"]})}


# -- report ---------------------------------------------------------------------------------------


def machine_info() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba
    versions = (f"Python {platform.python_version()}, numpy {np.__version__}, "
                f"numba {numba.__version__}")
    if torch is not None:
        versions += f", torch {torch.__version__}"
    return [f"- CPU: {cpu}, {os.cpu_count()} logical CPUs; "
            f"{platform.system()} {platform.release()}",
            f"- {versions}",
            f"- OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; PyTorch default "
            f"threads: {DEFAULT_TORCH_THREADS if torch is not None else 'n/a'}"]


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def render(results: dict, sanity: dict, profiles: dict, startup: dict | None, args,
           elapsed: float) -> str:
    lines = [SECTION, ""]
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines += [f"Measured {date} in {elapsed:.0f} s with", "",
              "```", "OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/core.py"
              + (" " + " ".join(args.argv) if args.argv else ""), "```", ""]
    lines += machine_info()
    load0, load1 = args.load_before, os.getloadavg()[0]
    lines += [f"- 1-minute load average {load0:.1f} before, {load1:.1f} after "
              f"(other jobs share this machine; {os.cpu_count()} CPUs)", ""]
    lines += [
        "One step = load batch, forward, loss, backward, per-layer statistics, SGD update; "
        f"float32, hidden layers cycling {'/'.join(CYCLE)}, glorot-uniform init, softmax "
        f"cross-entropy, {INPUT_DIM} Gaussian inputs, {CLASSES} random classes, lr {LR}. "
        "`core run` is `Simulation.run(n, snapshot=False)` (the app's path, history "
        "included, no held-out set); `core raw` calls `kernels.train_steps` directly, "
        f"{FUSED_CHUNK} steps per call; `public train_step` is `Network.train_step` per "
        "batch (below). numpy is bench/numpy_net.py; torch is autograd + "
        "`retain_grad()` + `optim.SGD`, with the same statistics kept as tensors and read "
        "once per step.", "",
        f"{args.rounds} interleaved rounds of about {args.seconds:g} s per implementation "
        "after a warm-up, the order rotating from round to round; steps/s are medians "
        "(min-max in brackets), ratios are medians of the per-round ratios. A target is "
        "judged on `core run` and must hold against PyTorch with 1 thread **and** with its "
        "default thread count.", ""]
    head = "| network | core run | core raw | public train_step | public, per layer | numpy |"
    sep = "|---|---:|---:|---:|---:|---:|"
    if torch is not None:
        head += " torch 1 thread | torch default |"
        sep += "---:|---:|"
    head += " Python side of core run |"
    sep += "---:|"
    lines += ["Steps per second (the last column: the share of `core run`'s time spent outside "
              "`train_steps`, measured in the same rounds):", "", head, sep]
    for cfg, r in results.items():
        row = f"| {cfg.label} |"
        for name in r["median"]:
            lo, hi = r["spread"][name]
            row += f" {_fmt_rate(r['median'][name])} ({_fmt_rate(lo)}-{_fmt_rate(hi)}) |"
        lines.append(row + f" {r['python_share']:.0%} |")
    lines += ["", "Ratios (core run; core raw in brackets) against the targets:", "",
              "| network | target | vs numpy | vs torch 1 thread | vs torch default | result |",
              "|---|---|---:|---:|---:|---|"]
    verdicts = []
    for cfg, r in results.items():
        ra = r["ratios"]

        def cell(other, ra=ra):
            if ("core run", other) not in ra:
                return "n/a"
            return f"{ra[('core run', other)]:.2f}x ({ra[('core raw', other)]:.2f}x)"

        target = f">= {cfg.vs_torch:g}x torch"
        checks = []
        if torch is not None:
            checks += [ra[("core run", t)] >= cfg.vs_torch
                       for t in ("torch 1 thread", "torch default")]
        if cfg.vs_numpy is not None:
            target += f", >= {cfg.vs_numpy:g}x numpy"
            checks.append(ra[("core run", "numpy")] >= cfg.vs_numpy)
        verdict = "PASS" if checks and all(checks) else "FAIL"
        if torch is None:
            verdict += " (no torch)"
        verdicts.append(verdict)
        lines.append(f"| {cfg.label} | {target} | {cell('numpy')} | {cell('torch 1 thread')} | "
                     f"{cell('torch default')} | **{verdict}** |")
    lines += ["", "The public API (`Network.train_step(X, y, lr)`, what a notebook calls) against "
              "the app's path: `public train_step` goes through the whole-pass kernels "
              "(`forward_pass`, `loss_and_delta`, `backward_pass`: four kernel calls whatever "
              "the depth) and updates with one numpy expression; `public, per layer` is the "
              "former path, one kernel call per layer and direction from Python, timed in "
              "the same rounds. Medians of the per-round ratios of steps/s:", "",
              "| network | public / core run | per layer / core run | public / per layer |",
              "|---|---:|---:|---:|"]
    for cfg, r in results.items():
        ra = r["ratios"]
        lines.append(f"| {cfg.label} | {ra[('public train_step', 'core run')]:.2f} | "
                     f"{ra[('public, per layer', 'core run')]:.2f} | "
                     f"{ra[('public train_step', 'public, per layer')]:.2f}x |")
    slow_default = [cfg.label for cfg, r in results.items()
                    if r["median"].get("torch default", 0) < r["median"].get("torch 1 thread", 0)]
    if slow_default:
        lines += ["", f"PyTorch with its default {DEFAULT_TORCH_THREADS} threads was slower than "
                  f"with 1 thread on {', '.join(slow_default)}: its OpenMP threads wait for "
                  "CPUs that other jobs on this machine hold, so there the 1-thread column "
                  "is the binding comparison."]
    lines += ["", "Sanity, first step (relative differences to the core; loss of the first "
              "batch, then the largest over all per-layer statistics after one step):", "",
              "| network | core loss | numpy loss | torch loss | numpy stats | torch stats | ok |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for cfg, s in sanity.items():
        tl = f"{s['torch_loss']:.6f} ({s['torch_loss_rel']:.1e})" if "torch_loss" in s else "n/a"
        ts = f"{s['torch_stats_rel']:.1e}" if "torch_stats_rel" in s else "n/a"
        lines.append(f"| {cfg.label} | {s['core_loss']:.6f} | {s['numpy_loss']:.6f} "
                     f"({s['numpy_loss_rel']:.1e}) | {tl} | {s['numpy_stats_rel']:.1e} | {ts} | "
                     f"{'yes' if s['ok'] else 'NO'} |")
    if profiles:
        lines += render_profile(profiles, failed=any(v.startswith("FAIL") for v in verdicts))
    if startup is not None:
        cold = startup["cold"]
        clean = not cold["compiled_at_import"] and not startup["warm_compiled_at_import"]
        lines += ["", "Startup (fresh subprocesses, `NUMBA_CACHE_DIR` set to a new empty folder "
                  "for the cold run, then reused):", "",
                  f"- importing `simulator` and every module in it compiles nothing: "
                  f"**{'yes' if clean else 'NO'}** "
                  f"({cold['dispatchers']} numba dispatchers, "
                  f"{len(cold['compiled_at_import'])} with signatures after import"
                  + (": " + ", ".join(cold["compiled_at_import"]) if cold["compiled_at_import"]
                     else "") + ")"
                  + ("; could not import: " + "; ".join(cold["failed_imports"])
                     if cold["failed_imports"] else ""),
                  f"- `import simulator`: {cold['import_s'] * 1e3:.0f} ms cold, "
                  f"{startup['warm_import_s'] * 1e3:.0f} ms warm",
                  f"- the app's start-up order, first frame (the `deep_sigmoid` preset's "
                  f"Simulation built and its snapshot taken) then `simulator.warmup()` for the "
                  f"rest: **first frame {cold['first_frame_s']:.1f} s cold** "
                  f"({cold['first_frame_cpu_s']:.1f} s of CPU), "
                  f"{startup['warm_first_frame_s']:.2f} s warm; "
                  f"**all kernels {cold['warmup_s']:.1f} s cold** "
                  f"({cold['warmup_cpu_s']:.1f} s of CPU; compiles every "
                  f"kernel), **{startup['warm_warmup_s']:.2f} s warm** (loads numba's cache); "
                  f"`simulator.kernels_cached()` said {cold['cached']} before the cold run "
                  f"and {startup['warm_cached']} before the warm ones; "
                  f"{cold['signatures_after_warmup']} signatures over {cold['dispatchers']} "
                  f"kernels, at most {cold['max_signatures']} per kernel"
                  + (f" ({', '.join(cold['several_signatures'])} have more than one)"
                     if cold["several_signatures"] else "")]
    lines.append("")
    return "\n".join(lines), verdicts


def render_profile(profiles: dict, failed: bool) -> list[str]:
    lines = ["", "Where the core's time goes, in µs per step (best of 7; each kernel phase timed "
             "alone on the same buffers; the Python side is Simulation.run's time outside "
             "`train_steps`, measured in the same run):", "",
             "| network | Simulation.run | Python side | forward | loss | backward | "
             "update + weight stats |", "|---|" + "---:|" * 6]
    for cfg, p in profiles.items():
        ph = p["phases"]
        share = p["run_python_us"] / p["run_total_us"]
        lines.append(f"| {cfg.label} | {p['run_total_us']:.0f} | {p['run_python_us']:.0f} "
                     f"({share:.0%}) | {ph['forward']:.0f} | {ph['loss']:.0f} | "
                     f"{ph['backward']:.0f} | {ph['update + weight stats']:.0f} |")
    lines += ["", "One hidden layer, in µs per call: `phi` = act_forward_dp (phi and phi' in "
              "one pass), `unit stats` = the rest of forward_layer (dead / saturated counts "
              "from the stored phi', mean/std), `phi'` = act_backward_dp (g * stored phi'); "
              "*elementwise* = phi + unit stats + phi' as a share of the layer's forward and "
              "backward:", "",
              "| network | activation | elements | dense forward | phi | unit stats | phi' | "
              "dense backward | elementwise |", "|---|---|" + "---:|" * 7]
    for cfg, p in profiles.items():
        for act, t in p["layers"].items():
            dphi = t["phi'"]
            elementwise = t["phi"] + t["unit stats"] + dphi
            total = t["forward_layer"] + dphi + t["dense backward"]
            lines.append(f"| {cfg.label} | {act} | {p['elements_per_layer']} | "
                         f"{t['dense forward']:.1f} | {t['phi']:.1f} | {t['unit stats']:.1f} | "
                         f"{dphi:.1f} | {t['dense backward']:.1f} | "
                         f"{elementwise / total:.0%} |")
    if failed:
        lines += ["", RECOMMENDATIONS]
    return lines


RECOMMENDATIONS = """\
**Where to look when a target fails.** The tables above split a step into its
kernel phases and one hidden layer into its parts. Elementwise work (phi, phi' and
the unit statistics) is evaluated once per element in one loop per activation;
sigmoid, tanh, ELU, GELU and SiLU still call the scalar libm per element (numba here
has no SVML), which is where numpy's SIMD transcendental functions can catch up on
small, tanh-heavy layers. The update and the norms vectorize (loops over slices
from index 0, sums allowed to reassociate). If the Python side of `Simulation.run`
grows, it is the per-step history record and the chunking at evaluation steps."""


def write_doc(section: str, path: Path) -> None:
    """Replace this benchmark's section of the file, keeping every other section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        if text and not text.endswith("\n"):
            text += "\n"
        new = text + ("\n" if text.strip() else "") + section
    else:
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith("## ") or lines[i].startswith("# ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")


DEFAULT_TORCH_THREADS = torch.get_num_threads() if torch is not None else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15,
                        help="interleaved rounds (default 15)")
    parser.add_argument("--seconds", type=float, default=0.2,
                        help="time per implementation per round (default 0.2 s)")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.1 s, no startup")
    parser.add_argument("--config", action="append", default=None, metavar="DxW",
                        help="only this configuration (e.g. 30x32); repeatable")
    parser.add_argument("--no-startup", action="store_true", help="skip the cold/warm warmup")
    parser.add_argument("--startup-only", action="store_true",
                        help="only the cold/warm start-up, printed (the doc is not written)")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="with --startup-only: the checkout to measure (default: this one)")
    parser.add_argument("--no-profile", action="store_true", help="skip the core's breakdown")
    parser.add_argument("--no-doc", action="store_true", help=f"do not write {DOC.name}")
    parser.add_argument("--doc", type=Path, default=DOC, help="where to write the results")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.rounds, args.seconds, args.no_startup = 3, 0.1, True
    configs = CONFIGS
    if args.config:
        configs = tuple(c for c in CONFIGS if f"{c.depth}x{c.width}" in args.config)
        if not configs:
            parser.error(f"no configuration among {args.config}")
    t_start = time.perf_counter()
    args.load_before = os.getloadavg()[0]
    if args.startup_only:
        result = measure_startup(tree=args.tree.resolve())
        print(json.dumps({"tree": str(args.tree), "load_before": args.load_before,
                          "load_after": os.getloadavg()[0], **result}, indent=1))
        return 0
    startup = None if args.no_startup else measure_startup()
    simulator.warmup()
    X, y = make_data()
    results, sanity, profiles = {}, {}, {}
    for cfg in configs:
        print(f"{cfg.label}: checking the first step ...", flush=True)
        sanity[cfg] = check_first_step(cfg, X, y)
        print(f"  {sanity[cfg]}", flush=True)
        print(f"{cfg.label}: timing {args.rounds} rounds ...", flush=True)
        results[cfg] = bench_config(cfg, args.rounds, args.seconds, X, y)
        for name, rate in results[cfg]["median"].items():
            print(f"  {name:15s} {rate:10.0f} steps/s", flush=True)
        if not args.no_profile:
            try:
                profiles[cfg] = profile_core(cfg, X, y)
            except TypeError as e:  # the profile calls the kernels' phases one by one
                print(f"  profile skipped: the kernels' signatures changed ({e})", flush=True)
    text, verdicts = render(results, sanity, profiles, startup, args,
                            time.perf_counter() - t_start)
    print()
    print(text)
    if not args.no_doc:
        write_doc(text, args.doc)
        print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
