"""The mean-field prediction, layer by layer, against a computation written here from
the formulas alone (nothing from ``simulator.theory`` is called to get the expected
values).

The networks are chosen so that neighbouring weight layers have different scales
(Glorot with an input narrower than the hidden layers, widths that change, PReLU
with He init whose linear output layer gets another gain): a prediction that takes
a layer's weight scale from the wrong layer cannot match.

The expectations E[f(sqrt(q) z)], z ~ N(0, 1), are computed by the midpoint rule on
240 000 cells of z in [-12, 12] with z = 0 on a cell boundary, so the kinks and the
jumps of phi' at 0 cost only O(h^2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.network import Network
from simulator.spec import LayerSpec, NetworkSpec
from simulator.theory import mean_field

SELU_L, SELU_A = 1.0507009873554805, 1.6732632423543772
PRELU_A, LEAKY_A = 0.25, 0.01

H = 1e-4
Z = -12.0 + H * (np.arange(240_000) + 0.5)  # cell midpoints; 0 is a cell boundary
PDF = np.exp(-0.5 * Z * Z) / math.sqrt(2.0 * math.pi)


def expect(f, q: float) -> float:
    y = f(math.sqrt(q) * Z) * PDF
    return float(H * y.sum())


def _sig(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -700, 700)))


def _Phi(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


# (phi, phi') written out from their definitions
ACT = {
    "tanh": (np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    "sigmoid": (_sig, lambda x: _sig(x) * _sig(-x)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "leaky_relu": (lambda x: np.where(x > 0, x, LEAKY_A * x),
                   lambda x: np.where(x > 0, 1.0, LEAKY_A)),
    "prelu": (lambda x: np.where(x > 0, x, PRELU_A * x), lambda x: np.where(x > 0, 1.0, PRELU_A)),
    "linear": (lambda x: x, lambda x: np.ones_like(x)),
    "elu": (lambda x: np.where(x > 0, x, np.exp(np.minimum(x, 0)) - 1.0),
            lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0)))),
    "selu": (lambda x: SELU_L * np.where(x > 0, x, SELU_A * (np.exp(np.minimum(x, 0)) - 1.0)),
             lambda x: SELU_L * np.where(x > 0, 1.0, SELU_A * np.exp(np.minimum(x, 0)))),
    "softsign": (lambda x: x / (1 + np.abs(x)), lambda x: 1.0 / (1 + np.abs(x)) ** 2),
    "gelu": (lambda x: x * _Phi(x),
             lambda x: _Phi(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * _sig(-x))),
}


def fan_in_times_var(spec: NetworkSpec, k: int) -> float:
    """fan_in * Var[W_k] of the distribution the initialization draws from (textbook
    formulas: U[-a, a] has variance a^2 / 3)."""
    n_in, n_out = spec.widths[k - 1], spec.widths[k]
    g = spec.gain
    act = spec.hidden[k - 1].activation if k <= spec.depth else "linear"
    slope = {"prelu": PRELU_A, "leaky_relu": LEAKY_A}.get(act, 0.0)
    var = {
        "uniform_fanin": (g / math.sqrt(n_in)) ** 2 / 3.0,
        "glorot_uniform": (g * math.sqrt(6.0 / (n_in + n_out))) ** 2 / 3.0,
        "glorot_normal": g * g * 2.0 / (n_in + n_out),
        "he_normal": g * g * 2.0 / ((1.0 + slope**2) * n_in),
        "he_uniform": g * g * 2.0 / ((1.0 + slope**2) * n_in),
        "lecun_normal": g * g / n_in,
        # orthonormal columns (n_in >= n_out) or rows: sum of squares g^2 min(n_in, n_out)
        "orthogonal": g * g * min(n_in, n_out) / (n_in * n_out),
        "mean_field": (g * spec.sigma_w) ** 2 / n_in,
    }[spec.init]
    return n_in * var


def independent_prediction(spec: NetworkSpec, q0: float = 1.0):
    """(q_k, chi_k, ratio_k) for weight layers 1..L+1, from the mean-field recursions."""
    L = spec.depth
    sw2 = [fan_in_times_var(spec, k) for k in range(1, L + 2)]
    sb2 = spec.sigma_b**2 if spec.init == "mean_field" else 0.0
    q, chi = [], []
    m2 = q0  # mean square of the layer's input
    for k in range(1, L + 2):
        qk = sw2[k - 1] * m2 + sb2
        q.append(qk)
        if k <= L:
            f, df = ACT[spec.hidden[k - 1].activation]
            m2 = expect(lambda u, f=f: f(u) ** 2, qk)
            # going down through layer k's activation and the weights W_{k+1} above it
            chi.append(sw2[k] * expect(lambda u, df=df: df(u) ** 2, qk))
    chi.append(1.0)
    ratio = np.ones(L + 1)
    for i in range(L - 1, -1, -1):
        ratio[i] = ratio[i + 1] * math.sqrt(chi[i])
    return np.array(q), np.array(chi), ratio


NETS = {
    # the issue's example: 2 inputs into 16 units, so W1 is much smaller than W2..W10
    "tanh_glorot_narrow_input": NetworkSpec(
        2, 2, hidden=tuple(LayerSpec(16, "tanh") for _ in range(10)), init="glorot_uniform"),
    # He with PReLU: hidden layers 2/(1 + 0.25^2), the linear output layer 2
    "prelu_he_output_scale": NetworkSpec(
        3, 4, hidden=(LayerSpec(12, "prelu"), LayerSpec(20, "prelu"), LayerSpec(8, "prelu"),
                      LayerSpec(8, "prelu")), init="he_normal"),
    "mixed_glorot_widths": NetworkSpec(
        5, 3, hidden=(LayerSpec(30, "sigmoid"), LayerSpec(10, "selu"), LayerSpec(20, "gelu"),
                      LayerSpec(8, "elu"), LayerSpec(40, "softsign")),
        init="glorot_normal", gain=1.3),
    "orthogonal_widening": NetworkSpec(
        4, 2, hidden=(LayerSpec(8, "tanh"), LayerSpec(32, "tanh"), LayerSpec(16, "silu")),
        init="orthogonal"),
    "mean_field_bias": NetworkSpec(
        6, 2, hidden=(LayerSpec(10, "tanh"), LayerSpec(10, "softsign"), LayerSpec(10, "tanh")),
        init="mean_field", sigma_w=1.5, sigma_b=0.3),
    "he_uniform_leaky_relu_then_relu": NetworkSpec(
        2, 5, hidden=(LayerSpec(24, "leaky_relu"), LayerSpec(24, "relu"), LayerSpec(6, "linear")),
        init="he_uniform", gain=0.9),
    "uniform_fanin_sigmoid": NetworkSpec(
        7, 2, hidden=(LayerSpec(9, "sigmoid"), LayerSpec(9, "sigmoid"), LayerSpec(9, "tanh")),
        init="uniform_fanin"),
}


@pytest.mark.parametrize("name", list(NETS))
def test_per_layer_prediction_matches_an_independent_computation(name):
    spec = NETS[name]
    q, chi, ratio = independent_prediction(spec)
    mf = mean_field(spec)
    np.testing.assert_allclose(mf.q, q, rtol=1e-6, err_msg="forward variances q_k")
    np.testing.assert_allclose(mf.chi, chi, rtol=1e-6, err_msg="chi_k per layer")
    np.testing.assert_allclose(mf.predicted_ratio, ratio, rtol=1e-6, err_msg="ratio per layer")
    # and the step from layer k+1 down to layer k is sqrt(chi_k), layer by layer
    steps = mf.predicted_ratio[:-1] / mf.predicted_ratio[1:]
    np.testing.assert_allclose(steps, np.sqrt(chi[:-1]), rtol=1e-6)


def test_the_issues_example_has_ratio_0_612_at_layer_1():
    """tanh 2 -> 16x10 -> 2, Glorot: ||delta_1|| / ||delta_out|| is expected at 0.612
    (taking chi_k's weights from layer k instead of k+1 gives 0.217)."""
    mf = mean_field(NETS["tanh_glorot_narrow_input"])
    assert mf.predicted_ratio[0] == pytest.approx(0.612, abs=5e-4)
    _, _, ratio = independent_prediction(NETS["tanh_glorot_narrow_input"])
    assert ratio[0] == pytest.approx(0.612, abs=5e-4)


def test_input_scale_q0_enters_only_the_first_layer():
    spec = NETS["mixed_glorot_widths"]
    q, chi, ratio = independent_prediction(spec, q0=2.7)
    mf = mean_field(spec, q0=2.7)
    np.testing.assert_allclose(mf.q, q, rtol=1e-6)
    np.testing.assert_allclose(mf.predicted_ratio, ratio, rtol=1e-6)


@pytest.mark.parametrize("name", ["tanh_glorot_narrow_input", "prelu_he_output_scale",
                                  "mixed_glorot_widths", "orthogonal_widening",
                                  "he_uniform_leaky_relu_then_relu"])
def test_the_weight_scales_used_here_are_those_of_the_real_network(name):
    """The textbook fan_in * Var[W_k] above agrees with the weights the network draws
    (pooled over seeds, within sampling error), so the comparison above is about the
    same network the app builds."""
    spec = NETS[name]
    sums = np.zeros(spec.depth + 1)
    counts = np.zeros(spec.depth + 1)
    for seed in range(40):
        net = Network(spec, seed=seed, dtype=np.float64)
        for k in range(1, spec.depth + 2):
            W = np.asarray(net.params[f"W{k}"], np.float64)
            sums[k - 1] += (W * W).sum()
            counts[k - 1] += W.size
    for k in range(1, spec.depth + 2):
        measured = spec.widths[k - 1] * sums[k - 1] / counts[k - 1]
        assert measured == pytest.approx(fan_in_times_var(spec, k), rel=0.08), k
