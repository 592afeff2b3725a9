"""Compile (or load from numba's cache) every recurrent kernel on tiny arrays.

Called when the through-time mode is first used, never by the feedforward warmup,
so a user who never opens the mode never waits for these kernels."""

from __future__ import annotations

from ..experiment import TrainSpec
from .experiment import RecurrentExperiment
from .simulation import RecurrentSimulation
from .spec import CELLS
from .tasks import TaskSpec


def run_warmup(dtypes=("float32",)) -> None:
    for dtype in dtypes:
        for kind in ("adding", "first_symbol"):
            task = TaskSpec(kind=kind, lag=3, n_samples=8, symbols=2)
            for cell in CELLS:
                exp = RecurrentExperiment.build("warmup", task, TrainSpec(
                    optimizer="adam", batch_size=2), dtype=dtype, cell=cell, hidden=2)
                sim = RecurrentSimulation(exp, history_capacity=4)
                for _ in range(sim.n_micro_steps):
                    sim.micro_step()
                sim.run(2)
