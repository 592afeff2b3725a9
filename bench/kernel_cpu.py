"""Benchmark (not a test): CPU time per step of the fused kernel, for before/after
comparisons of kernel changes on a machine other jobs share.

``kernels.train_steps`` (64 steps per call) on the networks of bench/core.py; for each,
the process CPU time per step, best of 15 calls (CPU time, not wall time: other jobs
on the machine delay the process but do not add to its CPU time). ``--tree A --tree B``
measures several checkouts, alternating, ``--rounds`` times, each in a fresh process
with its own numba cache folder (under /tmp), and prints one JSON line per process.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/kernel_cpu.py --tree OLD --tree .``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_PROBE = r"""
import json, time
import numpy as np
from simulator import kernels as K
from simulator.network import Network
from simulator.spec import LayerSpec, NetworkSpec
CYCLE = ("sigmoid", "tanh", "relu")
out = {}
for depth, width, B in ((30, 32, 64), (100, 16, 32), (10, 16, 64)):
    hidden = tuple(LayerSpec(width, CYCLE[i % 3]) for i in range(depth))
    net = Network(NetworkSpec(16, 4, hidden=hidden, init="glorot_uniform"), 0, np.float32)
    net.ensure_batch(B)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4096, 16)).astype(np.float32)
    y = rng.integers(0, 4, 4096).astype(np.int64)
    targets = np.zeros((0, 4), np.float32)
    m1 = np.zeros(net.n_params, np.float32)
    m2 = m1.copy()
    upd, o = np.zeros(net.L + 2), np.zeros(2)
    hyper = np.zeros(K.N_HYPER)
    hyper[K.H_LR], hyper[K.H_T] = 0.01, 1
    hs, ho = np.empty((64, net.L + 2, K.N_STATS)), np.empty((64, 2))
    batches = np.stack([rng.permutation(4096)[:B] for _ in range(64)])

    def run():
        K.train_steps(net.lay, net.skp, net.params_flat, net.grads_flat, net._ws, net.running,
                      net.params0, m1, m2, net.decay_mask, net.elem_layer, upd, X, y, targets,
                      batches, B, net.L, K.LOSS_XENT, K.OPT_SGD, hyper, net.stats, o, hs, ho)

    run()
    best = 1e9
    for _ in range(15):
        c = time.process_time()
        run()
        best = min(best, (time.process_time() - c) / 64)
    out[f"{depth}x{width}"] = round(best * 1e6, 1)
print(json.dumps(out))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, action="append", default=None,
                        help="a checkout to measure (repeatable; default: this one)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    caches = {t: tempfile.mkdtemp(prefix="gfl-kernel-cpu-") for t in trees}
    for r in range(args.rounds):
        for tree in trees:
            env = dict(os.environ, NUMBA_CACHE_DIR=caches[tree], PYTHONPATH=str(tree),
                       OPENBLAS_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
            load = os.getloadavg()[0]
            out = subprocess.run([sys.executable, "-c", _PROBE], cwd=tempfile.gettempdir(),
                                 env=env, capture_output=True, text=True, check=True).stdout
            print(f"round {r + 1}  load {load:.1f}  {tree}  {out.strip()}  (us CPU per step)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
