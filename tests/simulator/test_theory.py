"""Mean-field predictions: exact values where they exist, Monte-Carlo otherwise."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.network import init_weight
from simulator.spec import ACTIVATIONS, LayerSpec, NetworkSpec, residual_skips, uniform_spec
from simulator.theory import (
    SELU_ALPHA,
    SELU_LAMBDA,
    MeanFieldPrediction,
    chi1,
    depth_scale,
    dphi,
    effective_sigma_b2,
    effective_sigma_w2,
    fixed_point_q,
    gaussian_mean,
    mean_dphi2,
    mean_field,
    mean_phi2,
    phi,
)

# -- activations -------------------------------------------------------------------


def test_phi_known_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(phi("relu", x), [0, 0, 0, 0.5, 2])
    np.testing.assert_allclose(phi("leaky_relu", x), [-0.02, -0.005, 0, 0.5, 2])
    np.testing.assert_allclose(phi("prelu", x), [-0.5, -0.125, 0, 0.5, 2])
    np.testing.assert_allclose(phi("linear", x), x)
    np.testing.assert_allclose(phi("sigmoid", x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(phi("tanh", x), np.tanh(x))
    np.testing.assert_allclose(phi("elu", x), np.where(x > 0, x, np.exp(x) - 1))
    np.testing.assert_allclose(
        phi("selu", x), SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1))
    )
    erf = np.vectorize(math.erf)
    np.testing.assert_allclose(phi("gelu", x), 0.5 * x * (1 + erf(x / math.sqrt(2))))
    np.testing.assert_allclose(phi("silu", x), x / (1 + np.exp(-x)))
    np.testing.assert_allclose(phi("softsign", x), x / (1 + np.abs(x)))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dphi_matches_centered_difference(name):
    # away from the kink at 0
    x = np.array([-3.1, -1.2, -0.3, 0.4, 1.1, 2.7])
    h = 1e-6
    numeric = (phi(name, x + h) - phi(name, x - h)) / (2 * h)
    np.testing.assert_allclose(dphi(name, x), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_are_finite_at_extreme_inputs(name):
    x = np.array([-1e4, -300.0, 300.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert np.all(np.isfinite(phi(name, x)))
        assert np.all(np.isfinite(dphi(name, x)))


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError):
        phi("swish", 1.0)
    with pytest.raises(ValueError):
        fixed_point_q("swish", 1.0, 0.0)


# -- quadrature --------------------------------------------------------------------


def test_quadrature_gaussian_moments():
    for q in (1e-8, 0.1, 1.0, 7.0, 1e6):
        assert gaussian_mean(lambda u: u**2, q) == pytest.approx(q, rel=1e-12)
        assert gaussian_mean(lambda u: u**4, q) == pytest.approx(3 * q * q, rel=1e-12)
        # a kink at 0 costs nothing: the panels are split there
        assert gaussian_mean(np.abs, q) == pytest.approx(math.sqrt(2 * q / math.pi), rel=1e-12)
    assert gaussian_mean(np.cos, 0.0) == 1.0


def test_quadrature_closed_forms_for_kinked_activations():
    # E[elu'(z)^2] = 1/2 + E[exp(2z); z < 0] = 1/2 + e^2 Phi(-2)
    phi_minus_2 = 0.5 * math.erfc(2 / math.sqrt(2))
    assert mean_dphi2("elu", 1.0) == pytest.approx(0.5 + math.e**2 * phi_minus_2, rel=1e-12)
    # E[softsign'(z)^2] for a narrow spike at large q: integral of 1/(1+|u|)^4 = 2/3
    q = 1e8
    assert mean_dphi2("softsign", q) == pytest.approx(
        (2 / 3) / math.sqrt(2 * math.pi * q), rel=1e-3
    )


def test_quadrature_resolves_the_saturated_derivative_spike():
    # at large q, tanh'(sqrt(q) z)^2 is a spike of area (4/3)/sqrt(q) around z = 0
    for q in (1e2, 1e4, 1e8):
        expected = (4 / 3) / math.sqrt(2 * math.pi * q)
        # the next term of the expansion is relatively O(1/q)
        assert mean_dphi2("tanh", q) == pytest.approx(expected, rel=1.0 / q)
    # sigmoid: integral of (s (1 - s))^2 = 1/6
    assert mean_dphi2("sigmoid", 1e8) == pytest.approx((1 / 6) / math.sqrt(2 * math.pi * 1e8),
                                                        rel=1e-6)


def test_piecewise_linear_moments_are_exact():
    assert mean_phi2("relu", 3.0) == 1.5
    assert mean_dphi2("relu", 3.0) == 0.5
    assert mean_dphi2("leaky_relu", 1.0) == pytest.approx((1 + 0.01**2) / 2)
    assert mean_phi2("prelu", 2.0) == pytest.approx(1 + 0.25**2)
    assert mean_dphi2("linear", 5.0) == 1.0


def test_tanh_derivative_moment_against_monte_carlo():
    z = np.random.default_rng(1).standard_normal(2_000_000)
    q = 1.7
    expected = np.mean((1 - np.tanh(math.sqrt(q) * z) ** 2) ** 2)
    assert mean_dphi2("tanh", q) == pytest.approx(expected, rel=3e-3)


# -- fixed points and chi_1 --------------------------------------------------------


@pytest.mark.parametrize("sigma_w2", [0.25, 0.5, 0.9, 1.0])
def test_tanh_without_bias_fixed_point_is_zero_and_chi_is_sigma_w2(sigma_w2):
    assert fixed_point_q("tanh", sigma_w2, 0.0) == 0.0
    assert chi1("tanh", sigma_w2, 0.0) == sigma_w2


def test_tanh_above_one_has_positive_fixed_point_and_is_chaotic():
    q_star = fixed_point_q("tanh", 2.0, 0.0)
    assert q_star > 0.1
    # it really is a fixed point of q = sigma_w^2 E[tanh^2] + sigma_b^2
    assert 2.0 * mean_phi2("tanh", q_star) == pytest.approx(q_star, rel=1e-10)
    assert 1.0 < chi1("tanh", 2.0, 0.0) < 2.0


def test_tanh_with_bias_fixed_point_solves_the_recursion():
    sw2, sb2 = 1.76**2, 0.05**2
    q_star = fixed_point_q("tanh", sw2, sb2)
    assert sw2 * mean_phi2("tanh", q_star) + sb2 == pytest.approx(q_star, rel=1e-10)


def test_near_critical_tanh_converges_quickly_and_correctly():
    # plain iteration needs ~10^4 steps here; the bracketed solve must not
    q_star = fixed_point_q("tanh", 1.0001, 0.0)
    assert q_star > 0
    assert 1.0001 * mean_phi2("tanh", q_star) == pytest.approx(q_star, rel=1e-8)


@pytest.mark.parametrize("sigma_w2", [0.5, 1.0, 2.0, 3.0])
def test_relu_chi_is_half_sigma_w2(sigma_w2):
    assert chi1("relu", sigma_w2, 0.0) == sigma_w2 / 2


def test_relu_is_critical_at_two():
    assert chi1("relu", 2.0, 0.0) == 1.0
    assert fixed_point_q("relu", 2.0, 0.0, q_start=0.7) == 0.7
    assert fixed_point_q("relu", 1.0, 0.0) == 0.0
    assert fixed_point_q("relu", 3.0, 0.0) == math.inf
    assert fixed_point_q("relu", 1.0, 0.1) == pytest.approx(0.2)


@pytest.mark.parametrize("sigma_w2", [0.3, 1.0, 1.7])
def test_linear_chi_is_sigma_w2(sigma_w2):
    assert chi1("linear", sigma_w2, 0.0) == sigma_w2


def test_leaky_and_prelu_he_init_is_critical():
    for name, a in (("leaky_relu", 0.01), ("prelu", 0.25)):
        assert chi1(name, 2.0 / (1 + a * a), 0.0) == pytest.approx(1.0, rel=1e-12)


def test_sigmoid_standard_init_vanishes():
    # uniform_fanin gives sigma_w^2 = 1/3; Glorot-normalized gives 1 for equal widths
    assert chi1("sigmoid", 1 / 3, 0.0) < 0.1
    assert chi1("sigmoid", 1.0, 0.0) < 0.25
    # phi' <= 1/4, so chi_1 <= sigma_w^2 / 16 at any q
    assert chi1("sigmoid", 4.0, 0.0) <= 4.0 / 16


def test_selu_with_lecun_has_unit_variance_fixed_point():
    assert fixed_point_q("selu", 1.0, 0.0) == pytest.approx(1.0, abs=1e-3)
    assert fixed_point_q("selu", 1.0, 0.0, q_start=4.0) == pytest.approx(1.0, abs=1e-3)
    assert fixed_point_q("selu", 1.0, 0.0, q_start=0.2) == pytest.approx(1.0, abs=1e-3)
    assert 1.0 < chi1("selu", 1.0, 0.0) < 1.1


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("sigma_w2,sigma_b2", [(0.5, 0.0), (1.0, 0.0), (2.0, 0.05), (5.0, 0.5)])
def test_every_activation_gives_a_finite_chi(name, sigma_w2, sigma_b2):
    c = chi1(name, sigma_w2, sigma_b2)
    assert math.isfinite(c) and c >= 0
    q = fixed_point_q(name, sigma_w2, sigma_b2)
    assert q >= 0


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["tanh", "sigmoid", "elu", "selu", "gelu", "silu", "softsign"]),
    sigma_w2=st.floats(0.05, 6.0),
    sigma_b2=st.floats(0.001, 1.0),
)
def test_finite_fixed_points_solve_the_recursion(name, sigma_w2, sigma_b2):
    q = fixed_point_q(name, sigma_w2, sigma_b2)
    if math.isfinite(q):
        assert sigma_w2 * mean_phi2(name, q) + sigma_b2 == pytest.approx(q, rel=1e-8, abs=1e-12)


def test_depth_scale():
    assert depth_scale(1.0) == math.inf
    assert depth_scale(math.exp(-0.1)) == pytest.approx(10.0)
    assert depth_scale(math.exp(0.05)) == pytest.approx(20.0)
    assert depth_scale(0.0) == 0.0


# -- initializations ---------------------------------------------------------------


def _spec(init, activation="relu", **kw):
    hidden = (LayerSpec(100, activation), LayerSpec(300, activation))
    return NetworkSpec(50, 10, hidden=hidden, init=init, **kw)


def test_effective_sigma_w2_per_init():
    # widths 50 -> 100 -> 300 -> 10
    s = _spec("uniform_fanin", gain=2.0)
    assert effective_sigma_w2(s, 1) == pytest.approx(4 / 3)
    s = _spec("glorot_uniform")
    assert effective_sigma_w2(s, 1) == pytest.approx(2 * 50 / 150)
    assert effective_sigma_w2(s, 3) == pytest.approx(2 * 300 / 310)
    assert effective_sigma_w2(_spec("glorot_normal"), 2) == pytest.approx(2 * 100 / 400)
    assert effective_sigma_w2(_spec("he_normal"), 2) == pytest.approx(2.0)
    assert effective_sigma_w2(_spec("he_uniform", "leaky_relu"), 1) == pytest.approx(2 / 1.0001)
    assert effective_sigma_w2(_spec("he_normal", "prelu"), 2) == pytest.approx(2 / 1.0625)
    # the output layer is linear: slope 0
    assert effective_sigma_w2(_spec("he_normal", "prelu"), 3) == pytest.approx(2.0)
    assert effective_sigma_w2(_spec("lecun_normal", gain=0.5), 2) == pytest.approx(0.25)
    s = _spec("orthogonal")
    assert effective_sigma_w2(s, 1) == pytest.approx(50 / 100)
    assert effective_sigma_w2(s, 3) == pytest.approx(1.0)
    s = _spec("mean_field", gain=2.0, sigma_w=1.5, sigma_b=0.3)
    assert effective_sigma_w2(s, 2) == pytest.approx(9.0)
    assert effective_sigma_b2(s) == pytest.approx(0.09)
    assert effective_sigma_b2(_spec("he_normal", sigma_b=0.3)) == 0.0
    with pytest.raises(ValueError):
        effective_sigma_w2(s, 0)
    with pytest.raises(ValueError):
        effective_sigma_w2(s, 4)


# -- whole-network prediction ------------------------------------------------------


def test_mean_field_shapes_and_output_entries():
    spec = uniform_spec(8, 3, 6, 64, "tanh", init="glorot_uniform")
    p = mean_field(spec)
    assert isinstance(p, MeanFieldPrediction)
    for arr in (p.q, p.chi, p.predicted_ratio, p.sigma_w2):
        assert arr.shape == (7,)
        assert not arr.flags.writeable
    assert p.chi[-1] == 1.0
    assert p.predicted_ratio[-1] == 1.0
    np.testing.assert_allclose(p.predicted_ratio[:-1] / p.predicted_ratio[1:], np.sqrt(p.chi[:-1]))


def test_mean_field_first_layer_variance_comes_from_q0():
    spec = uniform_spec(10, 2, 3, 10, "relu", init="lecun_normal")
    assert mean_field(spec).q[0] == pytest.approx(1.0)
    p = mean_field(spec, q0=4.0)
    assert p.q[0] == pytest.approx(4.0)
    # relu halves the second moment, lecun keeps it: q halves per layer
    assert p.q[1] == pytest.approx(2.0)
    assert p.q[2] == pytest.approx(1.0)


def test_mean_field_relu_phases():
    he = mean_field(uniform_spec(4, 2, 10, 64, "relu", init="he_normal"))
    assert he.chi_star == 1.0 and he.phase == "critical" and he.depth_scale == math.inf
    np.testing.assert_allclose(he.predicted_ratio, 1.0)
    glorot = mean_field(uniform_spec(4, 2, 10, 64, "relu", init="glorot_normal"))
    assert glorot.chi_star == pytest.approx(0.5) and glorot.phase == "ordered"
    assert glorot.depth_scale == pytest.approx(1 / math.log(2))


def test_mean_field_sigmoid_standard_init_is_ordered():
    p = mean_field(uniform_spec(4, 2, 10, 64, "sigmoid", init="uniform_fanin"))
    assert p.phase == "ordered"
    assert p.chi_star < 0.1
    assert p.predicted_ratio[0] < 1e-6


def test_mean_field_chaotic_tanh():
    spec = uniform_spec(4, 2, 10, 64, "tanh", init="mean_field", sigma_w=2.5, sigma_b=0.3)
    p = mean_field(spec)
    assert p.phase == "chaotic"
    assert p.chi_star == pytest.approx(chi1("tanh", 6.25, 0.09))
    assert p.predicted_ratio[0] > 3


def test_mean_field_caveats():
    plain = mean_field(uniform_spec(4, 2, 5, 64, "relu", init="he_normal"))
    assert plain.caveats == []
    skips = uniform_spec(4, 2, 5, 64, "relu", skips=residual_skips(5))
    assert any("skip" in c.lower() for c in mean_field(skips).caveats)
    bn = uniform_spec(4, 2, 5, 64, "relu", batchnorm=True)
    assert any("batch norm" in c.lower() for c in mean_field(bn).caveats)
    mixed = NetworkSpec(4, 2, hidden=(LayerSpec(64, "tanh"), LayerSpec(128, "relu")))
    text = " ".join(mean_field(mixed).caveats).lower()
    assert "widths vary" in text and "geometric mean" in text
    assert any("prelu" in c.lower() for c in mean_field(uniform_spec(4, 2, 3, 64, "prelu")).caveats)


def test_mean_field_mixed_stack_uses_geometric_mean():
    spec = NetworkSpec(4, 2, hidden=(LayerSpec(64, "tanh"), LayerSpec(64, "relu"),
                                     LayerSpec(64, "sigmoid")))
    p = mean_field(spec)
    assert p.chi_star == pytest.approx(float(np.prod(p.chi[:3]) ** (1 / 3)))


def test_mean_field_without_hidden_layers():
    p = mean_field(NetworkSpec(3, 2))
    assert p.predicted_ratio.tolist() == [1.0]
    assert p.phase == "critical"
    assert p.caveats


def test_mean_field_deep_sigmoid_underflow_is_quiet():
    spec = uniform_spec(4, 2, 400, 16, "sigmoid", init="uniform_fanin")
    p = mean_field(spec)
    assert p.predicted_ratio[0] == 0.0 or p.predicted_ratio[0] < 1e-300
    assert np.all(np.isfinite(p.predicted_ratio))


# -- Monte-Carlo check against a real random network -------------------------------


def _measured_log_ratios(activation, sigma_w, sigma_b, depth=20, width=512, batch=16, seed=0):
    """Forward a random batch through a random wide net, backprop a random output delta.

    Plain numpy, the chain rule written out: delta_{k-1} = (delta_k W_k^T) * phi'(z_{k-1}).
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((batch, width))  # q0 = 1
    weights, pre_activations = [], []
    for k in range(depth + 1):
        w = rng.standard_normal((width, width)) * sigma_w / math.sqrt(width)
        b = rng.standard_normal(width) * sigma_b
        z = a @ w + b
        weights.append(w)
        pre_activations.append(z)
        if k < depth:
            a = phi(activation, z)
    delta = rng.standard_normal((batch, width))
    norms = [np.linalg.norm(delta)]
    for k in range(depth, 0, -1):
        delta = (delta @ weights[k].T) * dphi(activation, pre_activations[k - 1])
        norms.append(np.linalg.norm(delta))
    norms = np.array(norms[::-1])
    return np.log10(norms / norms[-1])


@pytest.mark.parametrize(
    "activation,sigma_w,sigma_b",
    [
        ("tanh", 0.8, 0.0),  # ordered: ~2 decades lost over 20 layers
        ("tanh", 2.5, 0.3),  # chaotic: ~2 decades gained
        ("relu", math.sqrt(1.5), 0.0),  # ordered
        ("relu", math.sqrt(2.0), 0.0),  # critical (He)
    ],
)
def test_prediction_matches_a_random_wide_network(activation, sigma_w, sigma_b):
    depth, width = 20, 512
    spec = uniform_spec(width, width, depth, width, activation, init="mean_field",
                        sigma_w=sigma_w, sigma_b=sigma_b, loss="mse")
    predicted = np.log10(mean_field(spec).predicted_ratio)
    measured = _measured_log_ratios(activation, sigma_w, sigma_b, depth, width)
    assert measured.shape == predicted.shape == (depth + 1,)
    # finite-width fluctuations: well under a factor 1.8 at every layer
    np.testing.assert_allclose(measured, predicted, atol=0.25)


@pytest.mark.parametrize(
    "init,activation",
    [("uniform_fanin", "tanh"), ("glorot_uniform", "tanh"), ("glorot_normal", "relu"),
     ("he_uniform", "leaky_relu"), ("he_normal", "prelu"), ("lecun_normal", "selu"),
     ("orthogonal", "tanh"), ("mean_field", "tanh")],
)
def test_effective_sigma_w2_matches_the_network_initializer(init, activation):
    spec = NetworkSpec(200, 10, hidden=(LayerSpec(400, activation), LayerSpec(400, activation)),
                       init=init, gain=1.3, sigma_w=1.7)
    rng = np.random.default_rng(5)
    for k in (1, 2, 3):
        fan_in, fan_out = spec.widths[k - 1], spec.widths[k]
        act = spec.hidden[k - 1].activation if k <= spec.depth else "linear"
        w = init_weight(spec, fan_in, fan_out, act, rng)
        measured = fan_in * float(np.mean(w.astype(np.float64) ** 2))
        assert measured == pytest.approx(effective_sigma_w2(spec, k), rel=0.05), (init, k)
