"""Run every kernel once on tiny arrays of the exact types the program uses, and tell
beforehand whether that will compile or only load numba's cache."""

from __future__ import annotations

import numpy as np

from . import kernels as K
from .data import DataSpec
from .experiment import Experiment, TrainSpec
from .network import Network
from .simulation import Simulation
from .spec import LayerSpec, NetworkSpec

# the kernels Python calls (the rest are compiled into these); a cached entry of each,
# for the source as it is now, means start-up only loads
ENTRY_POINTS = ("load_batch", "forward_pass", "loss_and_delta", "backward_pass", "weight_stats",
                "forward_layer", "backward_layer", "apply_update", "train_steps")


def _tiny_spec(loss: str) -> NetworkSpec:
    hidden = (LayerSpec(3, "prelu", batchnorm=True), LayerSpec(2, "tanh"), LayerSpec(3, "relu"))
    return NetworkSpec(2, 2, hidden=hidden, skips=((0, 2), (1, 3)), loss=loss)


def run_warmup(dtypes=("float32",)) -> None:
    for dtype in dtypes:
        for loss in ("cross_entropy", "mse"):
            exp = Experiment(name="warmup", description="", network=_tiny_spec(loss),
                             data=DataSpec(kind="xor", n_samples=16), training=TrainSpec(
                                 optimizer="adam", batch_size=4), seed=0, dtype=dtype)
            sim = Simulation(exp, history_capacity=4)
            for _ in range(sim.n_micro_steps):
                sim.micro_step()
            sim.run(2)
        net = Network(_tiny_spec("mse"), dtype=np.dtype(dtype))
        X = np.zeros((3, 2), dtype)
        net.loss_and_gradients(X, np.zeros((3, 2), dtype))
        net.train_step(X, np.zeros(3, np.int64), 0.1)


def kernels_cached(dtypes=("float32",)) -> bool:
    """True when numba's cache holds, for every entry point and dtype, a compiled version
    of the kernels' current source (so ``warmup`` will load, not compile). Reads only the
    cache's index files; compiles nothing. Relies on numba's cache layout: anything
    unexpected counts as "not cached", which at worst words a status message wrongly."""
    try:
        for name in ENTRY_POINTS:
            dispatcher = getattr(K, name)
            cache = getattr(dispatcher, "_cache", None)
            if cache is None:  # NUMBA_DISABLE_JIT: plain Python, nothing to compile
                return True
            index = cache._cache_file._load_index()  # {} when missing or stale
            codegen = dispatcher.targetctx.codegen()
            for dtype in dtypes:
                if not any(f"Array({dtype}, 1" in str(key[0])
                           and cache._index_key(key[0], codegen) == key for key in index):
                    return False
        return True
    except Exception:  # noqa: BLE001 - a guess for a status line, never worth a crash
        return False
