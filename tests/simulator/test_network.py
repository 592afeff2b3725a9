"""Whole-network gradient checks, initialization statistics and the Network contract."""

import numpy as np
import pytest

from simulator import kernels as K
from simulator import reference as R
from simulator.network import PRELU_INIT, Network, init_weight
from simulator.spec import ACTIVATIONS, INITS, LayerSpec, NetworkSpec, uniform_spec

# Activations with a kink (a jump in phi' or phi''): a centered difference that
# straddles one is off by O(h), so these get CS231n's looser bound.
KINKED = ("relu", "leaky_relu", "prelu", "elu", "selu", "softsign")
SMOOTH_TOL = 1e-6
KINK_TOL = 1e-4
# Below this magnitude (times the largest gradient, when that is above 1) a float64
# centered difference (h = 1e-5) has no six correct digits left: its absolute error
# is ~ eps |L| / h + h^2 |d3L| ~ 1e-10 for a loss of order 1. It is also the floor for
# gradients that are exactly zero in theory (the bias in front of batch norm).
FD_FLOOR = 1e-4


def batch(spec, B=6, seed=0, targets=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((B, spec.input_dim))
    if targets:
        return X, rng.standard_normal((B, spec.output_dim))
    return X, rng.integers(0, spec.output_dim, B)


def fd_gradients(net, X, y, h=1e-5):
    """Centered differences of the network's own loss wrt every parameter (float64)."""

    def loss_at():
        return net.loss_and_gradients(X, y)[0]

    out = {}
    for name in net.param_names:
        p = net.params[name]
        g = np.empty(p.shape)
        for i in np.ndindex(p.shape):
            keep = p[i]
            p[i] = keep + h
            up = loss_at()
            p[i] = keep - h
            down = loss_at()
            p[i] = keep
            g[i] = (up - down) / (2 * h)
        out[name] = g
    return out


def check_gradients(spec, seed=0, B=6, tol=None, targets=False):
    """Network.loss_and_gradients against finite differences and the numpy reference."""
    net = Network(spec, seed=seed, dtype=np.float64)
    X, y = batch(spec, B, seed, targets)
    loss, grads = net.loss_and_gradients(X, y)
    deltas = net.deltas
    assert set(grads) == set(net.params)
    for name, g in grads.items():
        assert g.shape == net.params[name].shape, name

    ref_loss, ref_grads, ref_deltas = R.reference_loss_and_gradients(spec, net.params, X, y)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    gscale = max(float(np.abs(g).max()) for g in ref_grads.values())
    for name in grads:
        err = R.relative_error(grads[name], ref_grads[name], floor=1e-6 * gscale)
        assert err < 1e-9, (name, err)
    assert len(deltas) == spec.depth + 1
    for k, (d, rd) in enumerate(zip(deltas, ref_deltas, strict=True), start=1):
        assert d.shape == (B, spec.widths[k])
        assert R.relative_error(d, rd, floor=1e-6 * gscale) < 1e-9, k

    if tol is None:
        kinked = any(h.activation in KINKED for h in spec.hidden)
        tol = KINK_TOL if kinked else SMOOTH_TOL
    numeric = fd_gradients(net, X, y)
    for name in grads:
        err = R.relative_error(grads[name], numeric[name], floor=FD_FLOOR * max(1.0, gscale))
        assert err < tol, (name, err)
    # the finite differences left the parameters as they were
    again, _ = net.loss_and_gradients(X, y)
    assert again == loss
    return net, grads


# -- gradient checks -----------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_every_activation(activation):
    spec = uniform_spec(3, 3, depth=3, width=4, activation=activation, init="glorot_normal")
    check_gradients(spec, seed=ACTIVATIONS.index(activation))


@pytest.mark.parametrize("activation", ["tanh", "gelu", "prelu", "relu"])
def test_gradients_with_batchnorm(activation):
    spec = uniform_spec(3, 3, depth=3, width=4, activation=activation, batchnorm=True)
    net, grads = check_gradients(spec, seed=1, B=7)
    # the bias in front of batch norm is subtracted out with the batch mean
    for k in (1, 2, 3):
        assert np.abs(grads[f"b{k}"]).max() < 1e-12
    assert {"gamma1", "beta3"} <= set(net.params)


def test_gradients_with_identity_skips():
    spec = NetworkSpec(3, 3, hidden=tuple(LayerSpec(4, "tanh") for _ in range(5)),
                       skips=((1, 3), (2, 4), (1, 5), (3, 5)))
    net, _ = check_gradients(spec, seed=2)
    assert not any(name.startswith("P") for name in net.params)


def test_gradients_with_projection_skips():
    widths = (4, 6, 3, 5)
    spec = NetworkSpec(3, 2, hidden=tuple(LayerSpec(w, "silu") for w in widths),
                       skips=((1, 2), (1, 4), (2, 3)))
    net, _ = check_gradients(spec, seed=3)
    assert net.params["P1_2"].shape == (4, 6)
    assert net.params["P1_4"].shape == (4, 5)
    assert net.params["P2_3"].shape == (6, 3)


@pytest.mark.parametrize("input_width", [3, 4])
def test_gradients_with_skip_from_the_input(input_width):
    # width 4 = identity from the input, width 3 = projection P0_k
    spec = NetworkSpec(input_width, 3, hidden=tuple(LayerSpec(4, "softsign") for _ in range(3)),
                       skips=((0, 2), (0, 3)))
    net, _ = check_gradients(spec, seed=4)
    assert ("P0_2" in net.params) == (input_width != 4)


@pytest.mark.parametrize("targets", [False, True])
def test_gradients_mse(targets):
    spec = uniform_spec(3, 2, depth=2, width=5, activation="tanh", loss="mse",
                        init="lecun_normal")
    check_gradients(spec, seed=5, targets=targets)


def test_gradients_single_example_and_width_one():
    spec = NetworkSpec(1, 2, hidden=(LayerSpec(1, "sigmoid"), LayerSpec(1, "gelu")),
                       skips=((0, 2),))
    check_gradients(spec, seed=6, B=1)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_gradients_deep_smooth_mixture(loss):
    """Ten layers mixing every smooth activation, batch norm, both kinds of skip."""
    acts = ("tanh", "gelu", "sigmoid", "silu", "tanh", "linear", "gelu", "silu", "tanh",
            "sigmoid")
    widths = (5, 5, 4, 4, 5, 3, 5, 5, 4, 4)
    bn = (False, True, False, False, True, False, False, True, False, False)
    hidden = tuple(LayerSpec(w, a, b) for w, a, b in zip(widths, acts, bn, strict=True))
    skips = ((0, 3), (1, 2), (2, 5), (3, 4), (4, 7), (6, 9), (7, 10), (1, 10))
    spec = NetworkSpec(3, 3, hidden=hidden, skips=skips, loss=loss, init="glorot_normal",
                       gain=1.2)
    check_gradients(spec, seed=7, B=5)


def test_gradients_deep_mixture_with_kinks():
    """Twelve layers with every activation, batch norm and skips, across ReLU kinks."""
    acts = ("relu", "prelu", "elu", "selu", "leaky_relu", "tanh", "relu", "softsign",
            "gelu", "prelu", "sigmoid", "silu")
    hidden = tuple(LayerSpec(4 + (k % 2), a, batchnorm=k % 3 == 1) for k, a in enumerate(acts))
    skips = ((0, 2), (1, 3), (2, 6), (4, 5), (5, 9), (8, 12), (3, 11))
    spec = NetworkSpec(3, 3, hidden=hidden, skips=skips, init="he_normal")
    check_gradients(spec, seed=8, B=6, tol=KINK_TOL)


def test_prelu_slopes_get_gradients_and_learn():
    spec = uniform_spec(2, 2, depth=2, width=3, activation="prelu")
    net = Network(spec, seed=1, dtype=np.float64)
    np.testing.assert_array_equal(net.params["alpha1"], PRELU_INIT)
    X, y = batch(spec, B=16, seed=1)
    _, grads = net.loss_and_gradients(X, y)
    assert np.abs(grads["alpha1"]).max() > 0
    before = net.params["alpha1"].copy()
    net.train_step(X, y, lr=0.5)
    np.testing.assert_allclose(net.params["alpha1"], before - 0.5 * grads["alpha1"])


def test_train_step_is_params_minus_lr_grads():
    spec = NetworkSpec(3, 3, hidden=(LayerSpec(4, "tanh", True), LayerSpec(5, "prelu")),
                       skips=((0, 2),))
    for dtype in (np.float32, np.float64):
        net = Network(spec, seed=9, dtype=dtype)
        X, y = batch(spec, 8, 9)
        before = {n: v.copy() for n, v in net.params.items()}
        ref = Network(spec, seed=9, dtype=dtype)
        loss_ref, grads = ref.loss_and_gradients(X, y)
        loss = net.train_step(X, y, lr=0.3)
        assert loss == loss_ref
        for name, p in net.params.items():
            want = before[name] - dtype(0.3) * grads[name]
            np.testing.assert_array_equal(p, want.astype(dtype))


# -- determinism ---------------------------------------------------------------------


def test_same_seed_same_network_different_seed_different():
    spec = NetworkSpec(4, 3, hidden=(LayerSpec(6, "relu"), LayerSpec(5, "prelu", True)),
                       skips=((0, 2),), init="he_normal")
    X, _ = batch(spec, 10, 0)
    a, b, c = Network(spec, seed=3), Network(spec, seed=3), Network(spec, seed=4)
    np.testing.assert_array_equal(a.params_flat, b.params_flat)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert not np.array_equal(a.params_flat, c.params_flat)
    assert not np.array_equal(a.predict(X), c.predict(X))


# -- initialization ------------------------------------------------------------------

FAN_IN, FAN_OUT = 300, 500


def expected_var(init, fan_in, fan_out, activation="relu", gain=1.0, sigma_w=1.0):
    slope = {"leaky_relu": K.LEAKY_SLOPE, "prelu": PRELU_INIT}.get(activation, 0.0)
    var = {
        "uniform_fanin": 1.0 / (3.0 * fan_in),
        "glorot_uniform": 2.0 / (fan_in + fan_out),
        "glorot_normal": 2.0 / (fan_in + fan_out),
        "he_uniform": 2.0 / ((1.0 + slope ** 2) * fan_in),
        "he_normal": 2.0 / ((1.0 + slope ** 2) * fan_in),
        "lecun_normal": 1.0 / fan_in,
        "mean_field": sigma_w ** 2 / fan_in,
    }[init]
    return gain ** 2 * var


@pytest.mark.parametrize("init", [i for i in INITS if i != "orthogonal"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "prelu", "tanh"])
def test_init_variance_matches_formula(init, activation):
    spec = NetworkSpec(2, 2, init=init, sigma_w=1.7)
    W = init_weight(spec, FAN_IN, FAN_OUT, activation, np.random.default_rng(0))
    assert W.shape == (FAN_IN, FAN_OUT)
    want = expected_var(init, FAN_IN, FAN_OUT, activation, sigma_w=1.7)
    # 150 000 draws: the sample variance is within ~0.4% (normal) / 0.3% (uniform)
    assert W.var() == pytest.approx(want, rel=0.02)
    assert abs(W.mean()) < 5 * np.sqrt(want / W.size)
    if init.endswith("uniform") or init == "uniform_fanin":
        assert np.abs(W).max() <= np.sqrt(3 * want)


@pytest.mark.parametrize("init", INITS)
def test_gain_scales_the_weights(init):
    rng_seed = 11
    base = init_weight(NetworkSpec(2, 2, init=init), 40, 60, "tanh",
                       np.random.default_rng(rng_seed))
    scaled = init_weight(NetworkSpec(2, 2, init=init, gain=2.5), 40, 60, "tanh",
                         np.random.default_rng(rng_seed))
    np.testing.assert_allclose(scaled, 2.5 * base, rtol=1e-12)


@pytest.mark.parametrize("shape", [(50, 80), (80, 50), (64, 64)])
@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_orthogonal_init(shape, gain):
    spec = NetworkSpec(2, 2, init="orthogonal", gain=gain)
    W = init_weight(spec, *shape, "tanh", np.random.default_rng(1))
    assert W.shape == shape
    small = min(shape)
    gram = W @ W.T if shape[0] <= shape[1] else W.T @ W
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(small), atol=1e-12)


def test_network_init_per_layer_and_mean_field_bias():
    hidden = (LayerSpec(400, "leaky_relu"), LayerSpec(300, "prelu"))
    spec = NetworkSpec(200, 250, hidden=hidden, init="he_normal")
    net = Network(spec, seed=0, dtype=np.float64)
    for k, (fan_in, fan_out, act) in enumerate(
            ((200, 400, "leaky_relu"), (400, 300, "prelu"), (300, 250, "linear")), start=1):
        assert net.params[f"W{k}"].var() == pytest.approx(
            expected_var("he_normal", fan_in, fan_out, act), rel=0.03)
        np.testing.assert_array_equal(net.params[f"b{k}"], 0.0)

    spec = NetworkSpec(300, 400, hidden=(LayerSpec(500, "tanh"),), init="mean_field",
                       sigma_w=1.3, sigma_b=0.4)
    net = Network(spec, seed=0, dtype=np.float64)
    assert net.params["W1"].var() == pytest.approx(1.3 ** 2 / 300, rel=0.03)
    assert net.params["W2"].var() == pytest.approx(1.3 ** 2 / 500, rel=0.03)
    biases = np.concatenate([net.params["b1"], net.params["b2"]])
    assert biases.std() == pytest.approx(0.4, rel=0.1)


# -- the contract ------------------------------------------------------------------


def _contract_spec():
    hidden = (LayerSpec(5, "prelu", batchnorm=True), LayerSpec(4, "tanh"),
              LayerSpec(5, "relu", batchnorm=True))
    return NetworkSpec(3, 2, hidden=hidden, skips=((0, 2), (1, 3), (2, 3)), init="he_uniform",
                       loss="cross_entropy", gain=1.2)


def test_spec_json_round_trip():
    spec = _contract_spec()
    assert NetworkSpec.from_json(spec.to_json()) == spec
    mf = NetworkSpec(2, 1, hidden=(LayerSpec(3, "selu"),), init="mean_field", loss="mse",
                     sigma_w=1.4, sigma_b=0.05)
    assert NetworkSpec.from_json(mf.to_json(indent=None)) == mf


def test_default_dtype_is_float32():
    net = Network(_contract_spec())
    assert net.dtype == np.float32
    assert net.params_flat.dtype == np.float32
    assert all(v.dtype == np.float32 for v in net.params.values())
    X, y = batch(net.spec, 4)
    assert net.predict(X).dtype == np.float32
    _, grads = net.loss_and_gradients(X, y)
    assert all(g.dtype == np.float32 for g in grads.values())


def test_param_names_and_shapes():
    spec = _contract_spec()
    net = Network(spec)
    want = {"W1": (3, 5), "b1": (5,), "gamma1": (5,), "beta1": (5,), "alpha1": (5,),
            "W2": (5, 4), "b2": (4,), "W3": (4, 5), "b3": (5,), "gamma3": (5,), "beta3": (5,),
            "W4": (5, 2), "b4": (2,), "P0_2": (3, 4), "P2_3": (4, 5)}
    # no "P1_3": (1, 3) joins two width-5 layers, an identity skip needs no projection
    assert {n: v.shape for n, v in net.params.items()} == want
    X, y = batch(spec, 4)
    _, grads = net.loss_and_gradients(X, y)
    assert {n: g.shape for n, g in grads.items()} == want


def test_writing_into_params_changes_the_output():
    spec = _contract_spec()
    net = Network(spec, dtype=np.float64)
    X, _ = batch(spec, 5)
    before = net.predict(X)
    net.params["W4"][...] = 0.0
    net.params["b4"][...] = [1.0, -2.0]
    np.testing.assert_array_equal(net.predict(X), np.tile([1.0, -2.0], (5, 1)))
    net.params["b4"][0] = 3.0
    assert net.predict(X)[0, 0] == 3.0
    assert not np.array_equal(before, net.predict(X))
    # and the reference, reading the same dict, agrees
    np.testing.assert_allclose(R.reference_outputs(spec, net.params, X, training=True)[:, 0],
                               3.0)


def test_grads_are_copies():
    spec = _contract_spec()
    net = Network(spec, dtype=np.float64)
    X, y = batch(spec, 5)
    _, g1 = net.loss_and_gradients(X, y)
    g1["W1"][...] = 1e9
    _, g2 = net.loss_and_gradients(X, y)
    assert np.abs(g2["W1"]).max() < 1e3


def test_deltas_before_backward_raise():
    net = Network(_contract_spec())
    with pytest.raises(RuntimeError):
        net.deltas  # noqa: B018


def test_bad_inputs_are_refused():
    net = Network(_contract_spec())
    with pytest.raises(ValueError):
        net.loss_and_gradients(np.zeros((3, 4)), np.zeros(3, np.int64))
    with pytest.raises(ValueError):
        net.loss_and_gradients(np.zeros((3, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError):
        Network(_contract_spec(), dtype=np.float16)


def test_predict_leaves_training_state_alone():
    spec = _contract_spec()
    net = Network(spec, dtype=np.float64)
    X, y = batch(spec, 6)
    net.loss_and_gradients(X, y)
    deltas = net.deltas
    running = net.running.copy()
    net.predict(np.ones((50, 3)))
    np.testing.assert_array_equal(net.running, running)
    for a, b in zip(deltas, net.deltas, strict=True):
        np.testing.assert_array_equal(a, b)


def test_depth_200_runs():
    spec = uniform_spec(4, 3, depth=200, width=16, activation="tanh", init="orthogonal")
    net = Network(spec)
    X, y = batch(spec, 8)
    loss, grads = net.loss_and_gradients(X, y)
    assert np.isfinite(loss)
    assert len(net.deltas) == 201
    assert all(np.all(np.isfinite(g)) for g in grads.values())


def test_width_1024_runs():
    spec = uniform_spec(2, 2, depth=3, width=1024, activation="relu", batchnorm=True,
                        init="he_normal", skips=((1, 3),))
    net = Network(spec)
    X, y = batch(spec, 4)
    loss, grads = net.loss_and_gradients(X, y)
    assert np.isfinite(loss)
    assert grads["W2"].shape == (1024, 1024)
    assert np.all(np.isfinite(grads["W2"]))
