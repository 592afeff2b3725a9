"""Run every kernel once on tiny arrays of the exact types the program uses."""

from __future__ import annotations

import numpy as np

from .data import DataSpec
from .experiment import Experiment, TrainSpec
from .network import Network
from .simulation import Simulation
from .spec import LayerSpec, NetworkSpec


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
