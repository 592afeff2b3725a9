"""The chain rule one layer at a time: per-layer factors in the kernels, snapshots and
history, against their numpy twin and finite differences; and their wording."""

import math
import re

import numpy as np
import pytest

from simulator import kernels as K
from simulator import reference as R
from simulator.data import DataSpec
from simulator.experiment import Experiment, TrainSpec
from simulator.factors import describe_factors, describe_layer, format_factor
from simulator.network import Network
from simulator.simulation import Simulation
from simulator.snapshot import (
    HIST_LOCAL_FACTOR,
    HIST_NORM_FACTOR,
    HIST_SKIP_SHARE,
    HIST_WEIGHT_FACTOR,
)
from simulator.spec import ACTIVATIONS, LayerSpec, NetworkSpec

FACTORS = {"weight_factor": K.S_WEIGHT_FACTOR, "local_factor": K.S_LOCAL_FACTOR,
           "norm_factor": K.S_NORM_FACTOR, "skip_share": K.S_SKIP_SHARE}


def _batch(spec, B=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((B, spec.input_dim))
    y = rng.integers(0, spec.output_dim, B)
    return X, y


def _kernel_factors(net):
    return {name: net.stats[1:, col].copy() for name, col in FACTORS.items()}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_weight_times_local_is_the_layer_to_layer_ratio(activation):
    """Without batch norm and skips, ||delta_k|| = ||delta_{k+1}|| x weight x local."""
    hidden = tuple(LayerSpec(w, activation) for w in (5, 4, 6, 4))
    spec = NetworkSpec(3, 3, hidden=hidden, init="glorot_normal")
    net = Network(spec, seed=3, dtype=np.float64)
    X, y = _batch(spec)
    net.loss_and_gradients(X, y)
    st = net.stats
    L = spec.depth
    for k in range(1, L + 1):
        ratio = st[k, K.S_DELTA] / st[k + 1, K.S_DELTA]
        product = st[k, K.S_WEIGHT_FACTOR] * st[k, K.S_LOCAL_FACTOR]
        assert product == pytest.approx(ratio, rel=1e-12), (activation, k)
        assert math.isnan(st[k, K.S_NORM_FACTOR])
        assert st[k, K.S_SKIP_SHARE] == 0.0
    # the output layer has no factors
    assert all(math.isnan(st[L + 1, c]) for c in FACTORS.values())
    ref = R.reference_factors(spec, net.params, X, y)
    for name, values in _kernel_factors(net).items():
        np.testing.assert_allclose(values, ref[name], rtol=1e-10, equal_nan=True)


def test_sigmoid_local_factor_is_at_most_a_quarter():
    spec = NetworkSpec(3, 2, hidden=(LayerSpec(8, "sigmoid"),) * 3)
    net = Network(spec, seed=0, dtype=np.float64)
    net.loss_and_gradients(*_batch(spec, B=16))
    local = net.stats[1:4, K.S_LOCAL_FACTOR]
    assert np.all(local <= 0.25) and np.all(local > 0)


def _bn_skip_spec(activation="tanh"):
    hidden = (LayerSpec(4, activation, batchnorm=True), LayerSpec(5, "sigmoid"),
              LayerSpec(4, "softsign", batchnorm=True), LayerSpec(4, activation))
    # (0, 2) and (1, 3) need projections (widths differ); (2, 4)... 5 -> 4 too; (3, 4) is identity
    return NetworkSpec(3, 2, hidden=hidden, skips=((0, 2), (1, 3), (3, 4), (1, 4)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batchnorm_and_skips_match_the_numpy_twin(dtype):
    spec = _bn_skip_spec()
    net = Network(spec, seed=5, dtype=dtype)
    X, y = _batch(spec, B=8, seed=2)
    net.loss_and_gradients(X.astype(dtype), y)
    ref = R.reference_factors(spec, net.params, X.astype(dtype), y)
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    for name, values in _kernel_factors(net).items():
        np.testing.assert_allclose(values, ref[name], rtol=rtol, equal_nan=True, err_msg=name)
    # the cases the definitions single out
    assert np.isfinite(ref["norm_factor"][[0, 2]]).all()
    assert np.isnan(ref["norm_factor"][[1, 3]]).all()
    assert 0 < ref["skip_share"][0] < 1 and 0 < ref["skip_share"][2] < 1  # layers 1 and 3
    assert ref["skip_share"][1] == 0.0 and ref["skip_share"][3] == 0.0


def test_the_twin_matches_finite_differences_of_the_same_definitions():
    """Every piece the factors are made of (dL/dz, dL/du, dL/da through the weights and
    through the skips) taken by centered differences of the loss, then the same ratios."""
    spec = _bn_skip_spec("gelu")
    net = Network(spec, seed=7, dtype=np.float64)
    params = {n: v.copy() for n, v in net.params.items()}
    X, y = _batch(spec, B=5, seed=4)
    analytic = R._reference_backward(spec, params, X, y)[2]
    numeric = R.numerical_parts(spec, params, X, y)
    for name in ("delta", "gu", "g_dense", "g_skip"):
        for k in range(1, spec.depth + 1):
            # a floor of 1 % of the largest entry: entries far smaller than the rest are
            # all round-off in a centered difference and weigh nothing in a norm
            floor = 0.01 * np.abs(analytic[name][k]).max()
            assert R.relative_error(analytic[name][k], numeric[name][k], floor) < 1e-5, (
                name, k)
    a = R.factors_from_parts(spec, analytic)
    n = R.factors_from_parts(spec, numeric)
    for name in FACTORS:
        np.testing.assert_allclose(a[name], n[name], rtol=1e-6, equal_nan=True, err_msg=name)
    net.loss_and_gradients(X, y)
    for name, values in _kernel_factors(net).items():
        np.testing.assert_allclose(values, n[name], rtol=1e-6, equal_nan=True, err_msg=name)


def _sim(network, dtype="float64"):
    exp = Experiment(name="t", description="", network=network,
                     data=DataSpec(kind="spiral", n_samples=60, classes=2, seed=1),
                     training=TrainSpec(optimizer="sgd", lr=0.05, batch_size=12), seed=0,
                     dtype=dtype)
    return Simulation(exp, history_capacity=50)


def test_micro_steps_record_each_layers_factors_as_its_backward_step_runs():
    spec = NetworkSpec(2, 2, hidden=(LayerSpec(5, "tanh"), LayerSpec(5, "relu", batchnorm=True),
                                     LayerSpec(5, "sigmoid")), skips=((1, 3),))
    micro, fused = _sim(spec), _sim(spec)
    snap = micro.snapshot()
    assert snap.weight_factor.shape == (4,) and not snap.weight_factor.flags.writeable
    for _ in range(micro.n_micro_steps):
        snap = micro.micro_step()
        if snap.phase == "backward" and snap.layer <= spec.depth:
            i = snap.layer - 1
            expected = snap.delta_norm[i] / snap.delta_norm[i + 1]
            product = snap.weight_factor[i] * snap.local_factor[i]
            if snap.layer == 1:  # no batch norm; a skip leaves layer 1, so the product
                assert snap.skip_share[i] > 0  # covers only what came through W_2
                assert product < expected
            elif snap.layer == 2:
                assert product * snap.norm_factor[i] == pytest.approx(expected, rel=1e-12)
            else:
                assert product == pytest.approx(expected, rel=1e-12)
    fused.run(1)
    # the fused kernel records the very same numbers
    for name in FACTORS:
        np.testing.assert_array_equal(getattr(micro.snapshot(), name),
                                      getattr(fused.snapshot(), name))
    for col in (HIST_WEIGHT_FACTOR, HIST_LOCAL_FACTOR, HIST_NORM_FACTOR, HIST_SKIP_SHARE):
        np.testing.assert_array_equal(micro.history.layer_series(col),
                                      fused.history.layer_series(col))
    row = fused.history.layer_series(HIST_WEIGHT_FACTOR)[-1]
    np.testing.assert_allclose(row, fused.snapshot().weight_factor.astype(np.float32))
    assert np.isnan(fused.history.layer_series(HIST_NORM_FACTOR)[-1][[0, 2, 3]]).all()


# -- wording ---------------------------------------------------------------------------------


def test_format_factor():
    assert format_factor(0.1349) == "0.13"
    assert format_factor(1.94) == "1.9"
    assert format_factor(0.0) == "0"
    assert format_factor(3.14e-5) == "3.1e-5"
    assert format_factor(2.5e4) == "2.5e4"


def test_describe_factors_words_the_issue_example():
    text = describe_factors(1, "sigmoid", 0.13, 0.52, 0.25)
    assert text == ("layer 1 passes on 0.13 of the gradient: 0.52 from the weights and "
                    "0.25 from sigmoid's derivative")
    bn = describe_factors(2, "relu", 0.9, 1.4, 0.5, norm_factor=1.3)
    assert bn.endswith("1.4 from the weights, 0.5 from ReLU's derivative and 1.3 from batch norm")
    assert describe_factors(1, "tanh", math.nan, 0.5, 0.5) is None
    assert describe_factors(1, "tanh", 0.2, math.inf, 0.5) is None


def _numbers(text):
    return [float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?", text)]


def test_describe_layer_quotes_the_snapshot_numbers():
    """Every number in the sentence is recomputed from the snapshot."""
    spec = NetworkSpec(2, 2, hidden=(LayerSpec(6, "sigmoid"), LayerSpec(6, "tanh", batchnorm=True),
                                     LayerSpec(6, "relu")), skips=((1, 3),))
    snap = _sim(spec).snapshot()
    for k in (1, 2, 3):
        text = describe_layer(snap, k)
        i = k - 1
        expected = [k, snap.delta_norm[i] / snap.delta_norm[i + 1], snap.weight_factor[i],
                    snap.local_factor[i]]
        if k == 2:
            expected.append(snap.norm_factor[i])
        if k == 1:
            expected.append(100 * snap.skip_share[i])
            assert "skip links bring" in text
        got = _numbers(text)
        assert len(got) == len(expected), text
        for g, e in zip(got, expected, strict=True):
            assert g == pytest.approx(e, rel=0.06, abs=0.5 if e > 10 else 0.006), text
    assert describe_layer(snap, spec.depth + 1) is None  # the output layer
    assert describe_layer(snap, 0) is None


def test_he_init_gives_a_weight_factor_near_sqrt2():
    """||delta W^T||^2 ~ n Var[W] ||delta||^2 for random W, and He's Var[W] = 2 / n."""
    spec = NetworkSpec(16, 4, hidden=(LayerSpec(400, "relu"),) * 3, init="he_normal")
    net = Network(spec, seed=1, dtype=np.float64)
    net.loss_and_gradients(*_batch(spec, B=32))
    np.testing.assert_allclose(net.stats[1:4, K.S_WEIGHT_FACTOR], math.sqrt(2), rtol=0.05)
