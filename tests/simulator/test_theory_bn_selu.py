"""Mean field with batch norm, and SELU at q* = 0, against the core's wide random nets.

The network is the real one (simulator.network, float64) at initialization;
what is compared is the growth of ||delta||^2 per layer, averaged over the
middle layers, and the whole predicted ratio at layer 1.
"""

import math

import numpy as np
import pytest

from simulator.network import Network
from simulator.spec import LayerSpec, NetworkSpec
from simulator.theory import (
    SELU_ALPHA,
    SELU_LAMBDA,
    batchnorm_chi,
    chi1,
    fixed_point_q,
    mean_dphi2,
    mean_field,
)


def _measured_squared_factors(spec, batch, seed):
    """||delta_k||^2 / ||delta_{k+1}||^2 for k = 1..L, and ||delta_k|| / ||delta_out||."""
    net = Network(spec, seed, np.float64)
    rng = np.random.default_rng([seed, 99])
    X = rng.standard_normal((batch, spec.input_dim))  # q0 = 1
    y = rng.standard_normal((batch, spec.output_dim))
    net.loss_and_gradients(X, y)
    norms = np.array([np.linalg.norm(d) for d in net.deltas])
    return (norms[:-1] / norms[1:]) ** 2, norms / norms[-1]


def test_batchnorm_factor_closed_form_for_relu():
    # E[relu'^2] = 1/2, Var[relu(x)] = 1/2 - 1/(2 pi)
    assert batchnorm_chi("relu") == pytest.approx(math.pi / (math.pi - 1), rel=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("activation,init", [("relu", "he_normal"), ("tanh", "glorot_normal")])
def test_batchnorm_prediction_matches_a_wide_network(activation, init):
    depth, width, batch = 8, 256, 128
    spec = NetworkSpec(width, width, hidden=tuple(LayerSpec(width, activation, batchnorm=True)
                                                  for _ in range(depth)),
                       init=init, loss="mse")
    mf = mean_field(spec)
    factors, ratio = [], []
    for seed in range(3):
        f, r = _measured_squared_factors(spec, batch, seed)
        factors.append(f)
        ratio.append(r)
    measured = np.exp(np.mean(np.log(np.array(factors)[:, 1:depth]), axis=0))
    # per layer, the middle layers: the large-batch factor within 10 %
    np.testing.assert_allclose(measured, batchnorm_chi(activation), rtol=0.10)
    np.testing.assert_allclose(mf.chi[1:depth], batchnorm_chi(activation), rtol=1e-9)
    assert mf.chi_star == pytest.approx(batchnorm_chi(activation))
    assert mf.chi_star > 1.0  # batch norm makes the gradient grow towards the input
    # the whole prediction at layer 1, including the first layer's own scale, as an
    # average per-layer factor on ||delta||^2 (finite-batch corrections compound)
    measured_1 = math.exp(np.mean(np.log([r[0] for r in ratio])))
    assert measured_1 ** (2 / depth) == pytest.approx(mf.predicted_ratio[0] ** (2 / depth),
                                                      rel=0.05)


def test_selu_at_zero_fixed_point_uses_both_slopes():
    sigma_w2 = 1.0 / 3.0  # uniform_fanin
    assert fixed_point_q("selu", sigma_w2, 0.0) == 0.0
    both = 0.5 * (SELU_LAMBDA**2 + (SELU_LAMBDA * SELU_ALPHA) ** 2)
    assert mean_dphi2("selu", 0.0) == pytest.approx(both, rel=1e-12)
    assert chi1("selu", sigma_w2, 0.0) == pytest.approx(sigma_w2 * both, rel=1e-12)
    assert chi1("selu", sigma_w2, 0.0) < 1.0  # ordered, not chaotic
    # smooth activations are unchanged: tanh'(0)^2 = 1
    assert mean_dphi2("tanh", 0.0) == pytest.approx(1.0)


@pytest.mark.slow
def test_selu_uniform_fanin_matches_a_wide_network():
    depth, width, batch = 24, 256, 64
    spec = NetworkSpec(width, width, hidden=tuple(LayerSpec(width, "selu") for _ in range(depth)),
                       init="uniform_fanin", loss="mse")
    mf = mean_field(spec)
    factors = np.array([_measured_squared_factors(spec, batch, seed)[0] for seed in range(3)])
    # the deep layers, where q has decayed towards q* = 0
    measured = float(np.exp(np.mean(np.log(factors[:, depth // 2:depth]))))
    assert measured == pytest.approx(mf.chi_star, rel=0.10)
    assert mf.phase == "ordered"
    np.testing.assert_allclose(np.exp(np.mean(np.log(mf.chi[depth // 2:depth]))), measured,
                               rtol=0.10)
