"""A ratio ||dL/dh_1|| / ||dL/dh_T|| that underflowed to 0 is said in words, not as
"0.0e+00 times"."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from simulator.experiment import TrainSpec
from simulator.recurrent.diagnosis import diagnose
from simulator.recurrent.experiment import RecurrentExperiment
from simulator.recurrent.simulation import RecurrentSimulation
from simulator.recurrent.tasks import TaskSpec


def _finding(ratio):
    exp = RecurrentExperiment.build("u", TaskSpec(kind="adding", lag=5, n_samples=16),
                                    TrainSpec(batch_size=4), cell="rnn", hidden=3)
    norms = np.ones(5)
    norms[0] = ratio  # ||dL/dh_1|| / ||dL/dh_T|| = ratio
    snap = replace(RecurrentSimulation(exp).snapshot(), hidden_grad_norms=norms)
    assert snap.gradient_ratio == ratio
    return next(f for f in diagnose(exp, snap) if f.kind == "vanishing_through_time")


def test_an_underflowed_ratio_is_said_in_words():
    text = _finding(0.0).detail
    assert "0.0e+00" not in text and "for float32 to hold: it computes as 0" in text
    assert "3.0e-09 times the error" in _finding(3e-9).detail
