"""Every number a preset description or the README quotes, recomputed from the run.

Each claim names the preset, the exact words it checks (so an edited text
fails here until its number is checked again), and how to compute the number
at the shipped seed (or, where the text says so, averaged over seeds).
"""

import math
import re
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from simulator.diagnosis import diagnose
from simulator.experiment import load_preset
from simulator.glossary import TOPICS
from simulator.simulation import Simulation
from simulator.spec import uniform_spec
from simulator.theory import batchnorm_chi, mean_field

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
TRAINED = 2000


@cache
def trained(key: str, **training):
    """(held-out loss, held-out accuracy, snapshot) of the shipped seed after 2000 steps."""
    exp = load_preset(key)
    if training:
        exp = replace(exp, training=replace(exp.training, **training))
    sim = Simulation(exp)
    sim.run(TRAINED, snapshot=False)
    loss, acc = sim.evaluate()
    return loss, acc, sim.snapshot()


def start_ratios(key: str, seed: int | None = None, exp=None) -> np.ndarray:
    """||delta_k|| / ||delta_out|| at step 0 (the first batch, no update yet)."""
    exp = exp or load_preset(key)
    if seed is not None:
        exp = replace(exp, seed=seed)
    d = Simulation(exp).snapshot().delta_norm.astype(np.float64)
    return d / d[-1]


def says(key: str, words: str) -> None:
    assert words in load_preset(key).description, (key, words)


def percent(acc: float) -> str:
    return f"{100 * acc:.3g}%"


def test_shallow_sigmoid():
    says("shallow_sigmoid", "the first layer's gradient is about 7 times smaller than the "
         "second's")
    r = start_ratios("shallow_sigmoid")
    assert round(r[1] / r[0]) == 7
    says("shallow_sigmoid", "(100% held-out accuracy after 2000 steps)")
    assert trained("shallow_sigmoid")[1] == 1.0


def test_deep_sigmoid_and_the_readme():
    r = start_ratios("deep_sigmoid")
    says("deep_sigmoid", "16 sigmoid layers deep")
    assert load_preset("deep_sigmoid").network.depth == 16
    says("deep_sigmoid", "the first layer receives about 1e-14 of the output layer's gradient")
    assert 0.5e-14 < r[0] < 2e-14
    says("deep_sigmoid", "shrinks by a factor of about 0.13 at every layer")
    assert round(r[0] ** (1 / 16), 2) == 0.13
    loss, acc, _ = trained("deep_sigmoid")
    says("deep_sigmoid", "the loss sits near 0.69 (guessing)")
    assert abs(loss - math.log(2)) < 0.01
    says("deep_sigmoid", "after 2000 steps the held-out accuracy is still 49%")
    assert percent(acc) == "48.8%" and round(100 * acc) == 49
    # README: the diagnosis's own words at step 0, and the per-layer factor
    assert '("Layer 1 receives 1.1e-14\n   of the output layer\'s gradient")' in README
    sim = Simulation(load_preset("deep_sigmoid"))
    found = diagnose(sim.spec, sim.snapshot(), None, sim.training)
    assert "Layer 1 receives 1.1e-14 of the output layer's gradient" in found[0].detail
    assert "fall by about an order of magnitude per layer" in README
    assert 0.05 < r[0] ** (1 / 16) < 0.2
    assert "**Switch to ReLU with He init\n   and a safe learning rate**" in README


def test_fixed_by_relu():
    says("fixed_by_relu", "The learning rate is ten times smaller than for the sigmoid net")
    assert load_preset("fixed_by_relu").training.lr * 10 == load_preset("deep_sigmoid").training.lr
    says("fixed_by_relu", "at 0.1 this network's first steps switch off every unit of a layer, "
         "and it stays at chance")
    _, acc, snap = trained("fixed_by_relu", lr=0.1)
    assert np.nanmax(snap.dead_fraction[:-1]) == 1.0 and acc < 0.55


def test_fixed_by_residual():
    spec = load_preset("fixed_by_residual").network
    says("fixed_by_residual", "every layer above the first also adds its input to its output")
    assert set(spec.skips) == {(k, k + 1) for k in range(1, spec.depth)}
    says("fixed_by_residual", "the first layer receives about 14% of the output layer's gradient "
         "instead of 1e-14")
    assert round(100 * start_ratios("fixed_by_residual")[0]) == 14
    says("fixed_by_residual", "after 2000 steps the held-out accuracy is 97.5%")
    assert percent(trained("fixed_by_residual")[1]) == "97.5%"


def test_fixed_by_batchnorm():
    says("fixed_by_batchnorm", "the first layer receives about 18 times the output layer's "
         "gradient.")
    assert round(start_ratios("fixed_by_batchnorm")[0]) == 18
    says("fixed_by_batchnorm", "after 2000 steps the held-out accuracy is 96%")
    assert round(100 * trained("fixed_by_batchnorm")[1]) == 96


def test_relu_inits():
    says("relu_standard_init", "A 30-layer ReLU network")
    assert load_preset("relu_standard_init").network.depth == 30
    says("relu_standard_init", "the first layer receives about 7e-13 of the output layer's")
    assert f"{start_ratios('relu_standard_init')[0]:.0e}" == "7e-13"
    says("relu_standard_init", "after 2000 steps the held-out accuracy is 49%, chance")
    assert round(100 * trained("relu_standard_init")[1]) == 49
    says("relu_he_init", "between 0.6 and 2.7 times the output layer's at the start")
    r = start_ratios("relu_he_init")[:-1]
    assert f"{r.min():.1f}" == "0.6" and f"{r.max():.1f}" == "2.7"
    says("relu_he_init", "89% held-out accuracy after 2000 steps")
    assert round(100 * trained("relu_he_init")[1]) == 89


def test_dying_relu():
    says("dying_relu", "Reset with lr 0.02 and the same network learns (87.5% held-out")
    assert percent(trained("dying_relu", lr=0.02)[1]) == "87.5%"
    says("dying_relu", "still leaves it at chance (51%)")
    exp = load_preset("dying_relu")
    leaky = replace(exp, network=replace(exp.network, hidden=tuple(
        replace(h, activation="leaky_relu") for h in exp.network.hidden)))
    sim = Simulation(leaky)
    sim.run(TRAINED, snapshot=False)
    assert round(100 * sim.evaluate()[1]) == 51
    assert np.nanmax(sim.snapshot().dead_fraction[:-1]) == 0.0  # "no unit dies"


def test_tanh_edge_of_chaos():
    t = load_preset("tanh_edge_of_chaos")
    says("tanh_edge_of_chaos", "30 tanh layers")
    assert t.network.depth == 30
    says("tanh_edge_of_chaos", "the first layer still receives about a tenth of the output "
         "layer's gradient")
    assert 0.08 < start_ratios("tanh_edge_of_chaos")[0] < 0.13
    says("tanh_edge_of_chaos", "theory predicts the first layer gets about 1.4e-5 of the output "
         "layer's gradient, and ten random draws of the weights give about 6e-6 on average")
    ordered = replace(t.network, sigma_w=0.7)
    assert f"{mean_field(ordered).predicted_ratio[0]:.1e}" == "1.4e-05"
    draws = [start_ratios("", seed, replace(t, network=ordered))[0] for seed in range(10)]
    assert f"{math.exp(np.mean(np.log(draws))):.0e}" == "6e-06"


def test_exploding():
    says("exploding", "15 ReLU layers")
    exp = load_preset("exploding")
    assert exp.network.depth == 15
    says("exploding", "sigma_w = 2.5, where 1.41 would keep the signal steady")
    assert exp.network.sigma_w == 2.5 and round(math.sqrt(2), 2) == 1.41
    says("exploding", "the first layer receives about 150 times the output layer's gradient")
    assert 140 < start_ratios("exploding")[0] < 160
    says("exploding", "the first step is about 9 times the size of the output layer's weights")
    sim = Simulation(exp)
    snap = sim.snapshot()
    assert round(exp.training.lr * snap.grad_norm[-1] / snap.weight_norm[-1]) == 9
    says("exploding", "The starting loss is about 41; one step later the held-out loss is "
         "about 1e9, and at step 2 training blows up into NaN")
    assert round(snap.loss) == 41
    sim.step()
    assert f"{sim.evaluate()[0]:.0e}" == "1e+09"
    sim.run(10, snapshot=False)
    assert sim.divergence is not None and sim.divergence.step == 2
    says("exploding_clipped", "(97.5% held-out accuracy after 2000 steps)")
    assert percent(trained("exploding_clipped")[1]) == "97.5%"


def test_glossary_batchnorm_numbers():
    text = TOPICS["batchnorm"].plain
    assert "π/(π−1) ≈ 1.47 for ReLU" in text
    assert f"{batchnorm_chi('relu'):.2f}" == "1.47"
    assert "30 ReLU layers with batch norm give the first layer roughly 180 times" in text
    spec = uniform_spec(2, 2, 30, 16, "relu", init="he_normal", batchnorm=True)
    assert round(mean_field(spec).predicted_ratio[0], -1) == 180


@pytest.mark.parametrize("key", ["shallow_sigmoid", "deep_sigmoid", "fixed_by_relu",
                                 "fixed_by_residual", "fixed_by_batchnorm",
                                 "relu_standard_init", "relu_he_init", "dying_relu",
                                 "selu_lecun", "tanh_edge_of_chaos", "exploding",
                                 "exploding_clipped"])
def test_every_number_in_a_description_is_one_of_the_checked_ones(key):
    """A new number in a description fails here until a test above checks it."""
    checked = {
        "shallow_sigmoid": {"7", "100", "2000"},
        "deep_sigmoid": {"16", "0.13", "1e-14", "0.69", "2000", "49"},
        "fixed_by_relu": {"1", "0.1"},
        "fixed_by_residual": {"1", "14", "1e-14", "2000", "97.5"},
        "fixed_by_batchnorm": {"0", "1", "18", "2000", "96"},
        "relu_standard_init": {"30", "7e-13", "2000", "49"},
        "relu_he_init": {"2", "0.6", "2.7", "89", "2000"},
        "dying_relu": {"1.0", "0", "0.02", "87.5", "2000", "51"},
        "selu_lecun": {"20", "1", "0"},
        "tanh_edge_of_chaos": {"30", "1", "0", "0.7", "1.4e-5", "6e-6", "2"},
        "exploding": {"15", "2.5", "1.41", "150", "9", "41", "1e9", "2"},
        "exploding_clipped": {"1", "0.1", "10", "97.5", "2000"},
    }[key]
    text = load_preset(key).description
    numbers = set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?", text))
    assert numbers <= checked, numbers - checked
