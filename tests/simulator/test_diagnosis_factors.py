"""The vanishing-gradient finding names which part of the lowest layer shrinks the
gradient, with the chain rule's factors the core measured (issue 13)."""

import math
import re

from simulator.diagnosis import diagnose
from simulator.experiment import load_preset
from simulator.simulation import Simulation


def _finding(key: str, steps: int = 1):
    sim = Simulation(load_preset(key))
    sim.run(steps)
    snap = sim.snapshot()
    found = [f for f in diagnose(sim.spec, snap, sim.history, sim.training)
             if f.kind == "vanishing"]
    return snap, found


def test_deep_sigmoid_finding_splits_layer_1_into_weights_and_sigmoid():
    snap, found = _finding("deep_sigmoid")
    assert found, "deep sigmoid must be diagnosed as vanishing"
    detail = found[0].detail
    m = re.search(r"By the chain rule, layer 1 passes on ([0-9.e+-]+) of the gradient: "
                  r"([0-9.e+-]+) from the weights and ([0-9.e+-]+) from sigmoid's derivative",
                  detail)
    assert m, detail
    passed, weights, local = (float(x) for x in m.groups())
    # the three printed numbers are the measured ones, to their two significant figures
    assert math.isclose(weights, snap.weight_factor[0], rel_tol=0.05)
    assert math.isclose(local, snap.local_factor[0], rel_tol=0.05)
    assert math.isclose(passed, snap.delta_norm[0] / snap.delta_norm[1], rel_tol=0.05)
    # without skips or batch norm the two factors multiply to the ratio passed on
    assert math.isclose(weights * local, passed, rel_tol=0.1)
    # sigmoid's derivative is at most 1/4, so its factor can be no larger
    assert local <= 0.25


def test_healthy_relu_net_gets_no_factor_sentence():
    _, found = _finding("relu_he_init")
    assert not found
