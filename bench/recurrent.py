"""Benchmark (not a test): BPTT training steps per second, the core against PyTorch.

One step: load the batch of sequences, forward through T time steps, readout
and MSE loss, backward through time (T steps, with ||dL/dh_t|| and ||dL/dc_t||
per time step, which the core always computes), global-norm clipping and the
SGD update. Every implementation trains the same one-layer net (float32,
PyTorch's default init, taken from the core's parameters) on the adding
problem: input size 2, one output read at the last step.

* ``core``: ``recurrent.kernels.train_steps`` on precomputed batches, 16 steps
  per call (the fused path ``RecurrentSimulation.run`` takes).
* ``torch 1 thread`` / ``torch default``: ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``
  plus a ``Linear`` readout, ``mse_loss``, ``backward``, clipping with
  ``clip_grad_norm_`` and ``torch.optim.SGD``.

Timed in interleaved rounds after a warm-up; medians over the rounds, ratios
are medians of per-round ratios. Then a profile of the core: the time of each
phase (forward, loss, backward, update) called as separate kernels.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/recurrent.py`` (``--quick``
for a short run). The results replace the section
"## Through time: BPTT training step (bench/recurrent.py)" of docs/PERFORMANCE.md
unless ``--no-doc``.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator import kernels as K  # noqa: E402
from simulator.recurrent import RecurrentNet, RecurrentSpec  # noqa: E402
from simulator.recurrent import kernels as RK  # noqa: E402
from simulator.recurrent import vmath as VM  # noqa: E402
from simulator.recurrent.tasks import TaskSpec  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

DOC = ROOT / "docs" / "PERFORMANCE.md"
SECTION = "## Through time: BPTT training step (bench/recurrent.py)"
CONFIGS = ((32, 100, 32, 3.0), (128, 100, 64, 1.0))  # hidden, T, batch, target vs torch
CELLS = ("rnn", "lstm", "gru")
LR = 0.01
CLIP = 1.0
STEPS_PER_CALL = 16
DEFAULT_TORCH_THREADS = torch.get_num_threads() if torch is not None else 0


def make_data(T: int):
    X, y = TaskSpec(kind="adding", lag=T, n_samples=1024, seed=0).generate()
    return X.astype(np.float32), y.astype(np.float32)


class Core:
    name = "core"

    def __init__(self, cell, H, T, B, X, y):
        self.net = RecurrentNet(RecurrentSpec(cell=cell, input_dim=2, hidden=H, output_dim=1,
                                              loss="mse"), seed=0, dtype=np.float32)
        self.net.ensure_workspace(B, T)
        n = self.net.n_params
        self.m1 = np.zeros(n, np.float32)
        self.m2 = np.zeros(n, np.float32)
        self.upd = np.zeros(3)
        self.hyper = np.zeros(K.N_HYPER)
        self.hyper[K.H_LR] = LR
        self.hyper[K.H_CLIP_NORM] = CLIP
        self.hyper[K.H_T] = 1
        self.X, self.y = X, y
        rng = np.random.default_rng(1)
        self.batches = rng.integers(0, len(X), (STEPS_PER_CALL, B)).astype(np.int64)
        self.res = np.zeros(3)
        self.hist = np.zeros((STEPS_PER_CALL, 5))
        self.labels = np.zeros(0, np.int64)

    def steps(self, n_calls: int) -> int:
        net = self.net
        for _ in range(n_calls):
            RK.train_steps(net.cell_code, net.lay, net.params_flat, net.grads_flat, self.m1,
                           self.m2, self.hyper, net.decay_mask, net.elem_layer, self.upd, self.X,
                           self.labels, self.y, self.batches, net.Xt, net.Hs, net.Cs, net.A,
                           net.Hn, net.dh, net.dc, net.dgx, net.dgh, net.out, net.delta, 1,
                           net.loss_code, K.OPT_SGD, net.hnorm, net.cnorm, self.res, self.hist)
        return n_calls * STEPS_PER_CALL

    def profile(self, reps: int) -> dict:
        """Seconds per step of each phase, called as separate kernels (medians over reps:
        on a shared machine one preempted repetition would dominate a mean)."""
        net = self.net
        idx = self.batches[0]
        t = {"forward": [], "loss": [], "backward": [], "update": [], "BLAS": []}
        for _ in range(reps):
            t0 = time.perf_counter()
            RK.load_sequences(self.X, idx, net.Xt)
            RK.forward_all(net.cell_code, net.lay, net.params_flat, net.Xt, net.Hs, net.Cs,
                           net.A, net.Hn, 1)
            t1 = time.perf_counter()
            RK.readout_loss(net.lay, net.params_flat, net.grads_flat, net.Hs, 1, net.loss_code,
                            self.labels, self.y, idx, net.out, net.delta, net.dh, net.dc)
            t2 = time.perf_counter()
            RK.backward_all(net.cell_code, net.lay, net.params_flat, net.grads_flat, net.Xt,
                            net.Hs, net.Cs, net.A, net.Hn, net.dh, net.dc, net.dgx, net.dgh, 1,
                            net.hnorm, net.cnorm)
            t3 = time.perf_counter()
            RK.clip_and_update(K.OPT_SGD, net.params_flat, net.grads_flat, self.m1, self.m2,
                               self.hyper, net.decay_mask, net.elem_layer, self.upd)
            t4 = time.perf_counter()
            for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=False):
                t[k].append(dt)
        # the same BLAS products alone (forward and backward per step, weight gradients),
        # on copies so the workspace is left as it was
        whh = np.ascontiguousarray(net.params["weight_hh"])
        A, dgx, dh = net.A.copy(), net.dgx.copy(), net.dh.copy()
        _blas_products(net.Hs, whh, A, dgx, dh)
        for _ in range(reps):
            t0 = time.perf_counter()
            _blas_products(net.Hs, whh, A, dgx, dh)
            t["BLAS"].append(time.perf_counter() - t0)
        return {k: statistics.median(v) for k, v in t.items()}


def _blas_products_py(Hs, whh, A, dgx, dh):
    T = A.shape[0]
    for t in range(T):
        np.dot(Hs[t], whh.T, A[t])
        np.dot(dgx[t], whh, dh)
    TB = T * A.shape[1]
    return np.dot(dgx.reshape((TB, A.shape[2])).T, Hs[:T].reshape((TB, Hs.shape[2])))


_blas_products = K._kernel(_blas_products_py)


class Torch:
    def __init__(self, cell, H, T, B, X, y, threads, core: Core, onednn: bool = True):
        self.name = f"torch {'1 thread' if threads == 1 else 'default'}"
        if not onednn:
            self.name += ", oneDNN off"
        self.threads = threads
        self.onednn = onednn
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = cls(2, H, batch_first=True)
        self.lin = torch.nn.Linear(H, 1)
        p = core.net.params
        with torch.no_grad():
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.rnn, n + "_l0").copy_(torch.from_numpy(p[n].copy()))
            self.lin.weight.copy_(torch.from_numpy(p["W_out"].T.copy()))
            self.lin.bias.copy_(torch.from_numpy(p["b_out"].copy()))
        self.params = list(self.rnn.parameters()) + list(self.lin.parameters())
        self.opt = torch.optim.SGD(self.params, lr=LR)
        self.Xb = [torch.from_numpy(X[b]) for b in core.batches]
        self.yb = [torch.from_numpy(y[b]) for b in core.batches]

    def steps(self, n_calls: int) -> int:
        torch.set_num_threads(self.threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a note about Intel GPUs when the flag is set
            with torch.backends.mkldnn.flags(enabled=self.onednn):
                return self._steps(n_calls)

    def _steps(self, n_calls: int) -> int:
        for _ in range(n_calls):
            for xb, yb in zip(self.Xb, self.yb, strict=True):
                self.opt.zero_grad(set_to_none=True)
                seq, _ = self.rnn(xb)
                loss = torch.nn.functional.mse_loss(self.lin(seq[:, -1]), yb)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, CLIP)
                self.opt.step()
        return n_calls * STEPS_PER_CALL


def timed(impl, n_calls: int) -> float:
    t0 = time.perf_counter()
    n = impl.steps(n_calls)
    return n / (time.perf_counter() - t0)


def run_config(cell, H, T, B, rounds, calls):
    X, y = make_data(T)
    core = Core(cell, H, T, B, X, y)
    impls = [core]
    if torch is not None:
        impls += [Torch(cell, H, T, B, X, y, 1, core),
                  Torch(cell, H, T, B, X, y, DEFAULT_TORCH_THREADS, core)]
        if cell == "lstm":  # nn.LSTM on CPU runs oneDNN's fused LSTM; the plain path too
            impls.append(Torch(cell, H, T, B, X, y, 1, core, onednn=False))
    for impl in impls:  # warm-up (compiles the core's kernels)
        impl.steps(1)
    rates = {impl.name: [] for impl in impls}
    for r in range(rounds):
        order = impls[r % len(impls):] + impls[:r % len(impls)]
        for impl in order:
            rates[impl.name].append(timed(impl, calls))
            time.sleep(0.05)
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratios = {k: statistics.median(c / t for c, t in zip(rates["core"], v, strict=True))
              for k, v in rates.items() if k != "core"}
    core.profile(1)  # loads the separately called kernels from the cache
    prof = core.profile(max(5, calls * 4))
    return med, ratios, prof


def transcendental_cost(n: int = 2_000_000) -> dict:
    """Nanoseconds per element: a scalar libm exp in a compiled loop (what the gate loops
    used to call), and the vectorized sigmoid of ``vmath`` in float32 and float64."""
    x = np.linspace(-3, 3, n)
    out = np.empty_like(x)
    RK_exp_loop(x, out)
    t0 = time.perf_counter()
    RK_exp_loop(x, out)
    cost = {"libm exp": (time.perf_counter() - t0) / n * 1e9}
    for dtype in (np.float32, np.float64):
        v = x.astype(dtype)
        VM.sigmoid_inplace(v.copy())
        t0 = time.perf_counter()
        VM.sigmoid_inplace(v)
        cost[f"sigmoid {np.dtype(dtype).name}"] = (time.perf_counter() - t0) / n * 1e9
    return cost


def _gemm(a, b, c):
    np.dot(a, b, c)


_gemm_kernel = K._kernel(_gemm)


def peak_gemm_gflops(n: int = 1024, reps: int = 5) -> float:
    """float32 GFLOP/s of one large n x n x n product through the BLAS the core calls
    (numba's np.dot), best of reps: about the most this core can do per second."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    _gemm_kernel(a, b, c)
    best = min(_timed_once(_gemm_kernel, a, b, c) for _ in range(reps))
    return 2.0 * n ** 3 / best / 1e9


def _timed_once(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def product_flops(cell: str, H: int, T: int, B: int) -> float:
    """Floating-point operations of the three recurrent products of one step, which no
    implementation can skip: h_{t-1} W_hh^T forward and dz_t W_hh backward for every t,
    and sum_t dz_t^T h_{t-1}, each B x H x G*H multiply-adds per time step."""
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    return 3 * 2.0 * T * B * H * G * H


def _exp_loop(x, out):
    for i in range(x.shape[0]):
        out[i] = np.exp(x[i])


RK_exp_loop = K._kernel(_exp_loop)


def _rate(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def section(results, rounds, calls, exp_ns, peak) -> str:
    off = "torch 1 thread, oneDNN off"
    lines = [SECTION, "",
             f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, "
             f"{os.cpu_count()} logical CPUs, "
             f"torch {torch.__version__ if torch else 'absent'} (default "
             f"{DEFAULT_TORCH_THREADS} threads), {rounds} interleaved rounds of "
             f"{calls * STEPS_PER_CALL} steps per implementation, load average "
             f"{os.getloadavg()[0]:.1f} at the end. float32, plain SGD with "
             "clipping at norm 1, MSE on the adding problem. Command: "
             "`OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/recurrent.py"
             f"{''.join(' ' + a for a in sys.argv[1:])}`.", "",
             "| cell | hidden, T, batch | core steps/s | torch 1 thread | torch default | "
             "core / torch 1 | core / torch default | target (vs torch 1 thread) | met | "
             "torch 1 thread, oneDNN off |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (cell, H, T, B, target), (med, ratios, _) in results:
        t1 = med.get("torch 1 thread", float("nan"))
        td = med.get("torch default", float("nan"))
        lines.append(f"| {cell} | {H}, {T}, {B} | {_rate(med['core'])} | {_rate(t1)} | "
                     f"{_rate(td)} | "
                     f"{ratios.get('torch 1 thread', float('nan')):.2f} | "
                     f"{ratios.get('torch default', float('nan')):.2f} | >= {target:g} | "
                     f"{'yes' if ratios.get('torch 1 thread', 0.0) >= target else 'no'} | "
                     + (f"{_rate(med[off])} |" if off in med else "- |"))
    lines += ["", "Where the core's time goes (one step, phases called as separate kernels, "
              "milliseconds), and the ceiling the matrix products set:", "",
              "| cell | hidden, T, batch | forward | loss | backward | update | "
              "of these, the BLAS products alone | their GFLOP/s | core / torch 1 if "
              "the step were its products alone | ... at the peak GEMM rate |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for (cell, H, T, B, _), (med, _, prof) in results:
        flops = product_flops(cell, H, T, B)
        t1 = med.get("torch 1 thread", float("nan"))
        lines.append(f"| {cell} | {H}, {T}, {B} | " + " | ".join(
            f"{1e3 * prof[k]:.2f}" for k in ("forward", "loss", "backward", "update", "BLAS"))
            + f" | {flops / prof['BLAS'] / 1e9:.0f} | {1.0 / prof['BLAS'] / t1:.2f} | "
            f"{peak * 1e9 / flops / t1:.2f} |")
    lines += ["", f"Peak GEMM rate: a 1024 x 1024 x 1024 float32 product through the same "
              f"BLAS runs at {peak:.0f} GFLOP/s on one core here. The last two columns "
              "divide the fastest a step could possibly be, if it were nothing but its "
              "three recurrent products (h_{t-1} W_hh^T and dz_t W_hh for every t, and "
              "sum_t dz_t^T h_{t-1}), by PyTorch's measured step: first at the rate those "
              "products reach at the step's sizes, then at the peak rate. Where the first "
              "is below the target, no elementwise code can meet the target with this "
              "BLAS." + "".join(_ceiling_notes(results, peak)), "",
              f"Per element, a compiled scalar libm `exp` costs {exp_ns['libm exp']:.1f} ns "
              "here; the branch-free vectorized sigmoid of `simulator/recurrent/vmath.py` "
              f"costs {exp_ns['sigmoid float32']:.2f} ns in float32 and "
              f"{exp_ns['sigmoid float64']:.2f} ns in float64. An LSTM step at hidden 32, "
              "T 100, batch 32 evaluates 3 sigmoids and 2 tanh per unit, time step and "
              "sequence forward (512 000 transcendentals): "
              f"{512_000 * exp_ns['libm exp'] * 1e-6:.2f} ms per step with scalar libm "
              f"calls, {512_000 * exp_ns['sigmoid float32'] * 1e-6:.2f} ms vectorized "
              "(float32).", "",
              "How the step is built: per time step, h_{t-1} W_hh^T is one small BLAS "
              "product written straight into the step's gate block; the biases and the "
              "input projection x_t W_ih^T (a few inputs: a handful of vectorized "
              "multiply-adds per gate, no product over all steps written to memory and "
              "read back) are added in place, and the activations run over whole "
              "contiguous gate blocks with `vmath`'s sigmoid/tanh (Cody-Waite exp, Taylor "
              "polynomial, 2^n from integer bits; no calls or branches, so LLVM emits "
              "packed AVX instructions; a few ulps from numpy's exp/tanh, NaN kept). The "
              "LSTM keeps tanh(c_t) for the backward. The backward runs, per step, the "
              "elementwise gate errors, dL/dh_{t-1} = dz_t W_hh (one small BLAS product "
              "into a preallocated buffer), and adds the step's share of the input "
              "weights' and biases' gradients while its gate errors are in cache; the "
              "recurrent weights' gradient is one product over all T x batch rows at the "
              "end. Two details decide whether the elementwise loops vectorize: each loop "
              "writes one array (so LLVM's overlap checks stay few), and every gate "
              "block's offset is a constant multiple of H (an offset known only at run "
              "time keeps numba's negative-index check in the loop). The "
              "core also returns ||dL/dh_t|| and ||dL/dc_t|| for every t, which the "
              "PyTorch reference does not compute. This is a shared virtual machine: "
              "absolute rates vary from run to run (PyTorch's one-thread LSTM between "
              "about 380 and 560 steps/s at hidden 32 in runs on the same day), and "
              "PyTorch's multi-threaded default suffers most when other work runs; "
              "compare the interleaved ratios rather than the rates.", ""]
    return "\n".join(lines) + "\n"


def _ceiling_notes(results, peak) -> list:
    """One sentence per missed target: what its products' ceiling is, from the numbers."""
    notes = []
    for (cell, H, T, B, target), (med, ratios, prof) in results:
        t1 = med.get("torch 1 thread")
        if t1 is None or ratios.get("torch 1 thread", 0.0) >= target:
            continue
        c1 = 1.0 / prof["BLAS"] / t1
        c2 = peak * 1e9 / product_flops(cell, H, T, B) / t1
        verdict = ("below the target: with this BLAS it cannot be met" if c1 < target else
                   "above the target, so the elementwise code is what falls short")
        notes.append(f" For the {cell.upper()} at hidden {H} (target {target:g}x) the "
                     f"products alone would give {c1:.2f}x ({c2:.2f}x at the peak rate): "
                     f"{verdict}.")
        off = med.get("torch 1 thread, oneDNN off")
        if off is not None:
            notes.append(f" PyTorch's `nn.LSTM` runs oneDNN's fused LSTM here: with oneDNN "
                         f"switched off the same model takes {t1 / off:.1f} times as long "
                         f"per step (last column of the first table).")
    return notes


def write_doc(text: str, path: Path) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    path.write_text(new, encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2, help="fused calls of 16 steps per timing")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args(argv)
    rounds, calls = (2, 1) if args.quick else (args.rounds, args.calls)
    results = []
    for H, T, B, target in CONFIGS:
        for cell in CELLS:
            med, ratios, prof = run_config(cell, H, T, B, rounds, calls)
            print(f"{cell:5s} H={H:3d} T={T} B={B:3d}  " + "  ".join(
                f"{k} {v:7.1f}/s" for k, v in med.items()) + "  ratios " + "  ".join(
                f"{k} {v:.2f}" for k, v in ratios.items()) + "  profile ms " + " ".join(
                f"{k} {1e3 * v:.2f}" for k, v in prof.items()), flush=True)
            results.append(((cell, H, T, B, target), (med, ratios, prof)))
    exp_ns = transcendental_cost()
    print("ns per element: " + "  ".join(f"{k} {v:.2f}" for k, v in exp_ns.items()))
    peak = peak_gemm_gflops()
    print(f"peak GEMM {peak:.0f} GFLOP/s")
    text = section(results, rounds, calls, exp_ns, peak)
    if not args.no_doc:
        write_doc(text, DOC)
        print(f"wrote the section to {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
