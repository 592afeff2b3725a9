"""Recurrent cells: kernels against numpy twins, float64 centered finite differences
over whole sequences, the LSTM's constant error carousel, and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.recurrent import RecurrentNet, RecurrentSpec
from simulator.recurrent import kernels as RK
from simulator.recurrent import reference as ref
from simulator.spec import SpecError

CELLS = ("rnn", "lstm", "lstm_no_forget", "gru")


def _net(cell, loss="mse", I=3, H=4, O=2, init="uniform", seed=1, dtype=np.float64, **kw):
    spec = RecurrentSpec(cell=cell, input_dim=I, hidden=H, output_dim=O, loss=loss, init=init,
                         **kw)
    return RecurrentNet(spec, seed=seed, dtype=dtype)


def _data(loss, B=3, T=6, I=3, O=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, T, I))
    y = rng.integers(0, O, B) if loss == "cross_entropy" else rng.normal(size=(B, O))
    return X, y


def _rel(a, n):
    a, n = np.asarray(a, float), np.asarray(n, float)
    return np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), 1e-12))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_kernels_match_numpy_twin(cell, loss):
    net = _net(cell, loss)
    X, y = _data(loss)
    value, grads = net.loss_and_gradients(X, y)
    rv, rg, rh, rc = ref.loss_and_gradients(cell, loss, net.params, X, y)
    assert value == pytest.approx(rv, rel=1e-12)
    for name in grads:
        assert grads[name].shape == net.params[name].shape
        np.testing.assert_allclose(grads[name], rg[name], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(net.hidden_grad_norms, rh, rtol=1e-10, atol=1e-14)
    if cell.startswith("lstm"):
        np.testing.assert_allclose(net.cell_grad_norms, rc, rtol=1e-10, atol=1e-14)
    else:
        assert net.cell_grad_norms is None


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_whole_sequence_finite_differences(cell, loss):
    """Every parameter of every block, centered differences in float64 over T = 6 steps."""
    net = _net(cell, loss, forget_bias=0.3)
    X, y = _data(loss)
    _, grads = net.loss_and_gradients(X, y)
    h = 1e-5
    for name, p in net.params.items():
        num = np.zeros(p.shape)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + h
            up = ref.loss_value(cell, loss, net.params, X, y)
            p[i] = old - h
            down = ref.loss_value(cell, loss, net.params, X, y)
            p[i] = old
            num[i] = (up - down) / (2 * h)
        assert _rel(grads[name], num) < 1e-6, name


@pytest.mark.parametrize("cell", CELLS)
def test_hidden_grad_norms_by_finite_differences(cell):
    """||dL/dh_t|| is the derivative of the loss with respect to a perturbation added to
    h_t (the whole downstream path, through every later step)."""
    net = _net(cell, "mse")
    X, y = _data("mse", B=2, T=5)
    net.loss_and_gradients(X, y)
    norms = net.hidden_grad_norms.copy()
    p = {k: v.copy() for k, v in net.params.items()}
    hs, cs, _ = ref.forward(cell, p, X)

    def loss_from(t, dh):  # run on from step t with h_t replaced by h_t + dh
        h, c = hs[t] + dh, cs[t]
        for s in range(t, X.shape[1]):
            h, c, _ = ref.forward_step(cell, p, X[:, s], h, c)
        return ref._loss("mse", h @ p["W_out"] + p["b_out"], y)[0]

    eps = 1e-6
    for t in range(1, X.shape[1] + 1):
        g = np.zeros_like(hs[t])
        for i in np.ndindex(g.shape):
            e = np.zeros_like(g)
            e[i] = eps
            g[i] = (loss_from(t, e) - loss_from(t, -e)) / (2 * eps)
        assert norms[t - 1] == pytest.approx(np.linalg.norm(g), rel=1e-6)


def test_lstm_no_forget_cell_path_derivative_is_exactly_one():
    """Without a forget gate, c_t = c_{t-1} + i g: the error on the cell path passes
    to c_{t-1} unchanged, bit for bit; with a forget gate it is multiplied by f_t."""
    rng = np.random.default_rng(3)
    B, H = 3, 4
    for cell, G in (("lstm_no_forget", 3), ("lstm", 4)):
        a = rng.uniform(0.05, 0.95, (B, G * H))
        c = rng.normal(size=(B, H))
        cp = rng.normal(size=(B, H))
        hp = rng.normal(size=(B, H))
        dc = rng.normal(size=(B, H))
        dc0 = dc.copy()
        dh = np.zeros((B, H))  # no error through h_t: only the cell path
        RK.cell_step_backward(RK.LSTM if cell == "lstm" else RK.LSTM_NO_FORGET, hp, cp, c,
                              np.zeros((B, H)), a, np.zeros((B, H)), dh, dc,
                              np.zeros((B, G * H)), np.zeros((B, G * H)))
        if cell == "lstm_no_forget":
            assert np.array_equal(dc, dc0)
        else:
            np.testing.assert_allclose(dc, dc0 * a[:, H:2 * H], rtol=1e-15)
    # and the forward map's partial derivative dc_t/dc_{t-1} (gates held) is 1
    net = _net("lstm_no_forget", "mse", H=3)
    p = net.params
    x = rng.normal(size=(2, 3))
    hp = rng.normal(size=(2, 3))
    cp = rng.normal(size=(2, 3))
    eps = 2.0 ** -20
    up = ref.forward_step("lstm_no_forget", p, x, hp, cp + eps)[1]
    down = ref.forward_step("lstm_no_forget", p, x, hp, cp - eps)[1]
    np.testing.assert_allclose((up - down) / (2 * eps), 1.0, rtol=1e-9)


def test_forget_bias_and_inits():
    H = 5
    net = _net("lstm", forget_bias=2.5, H=H)
    f_bias = net.params["bias_ih"][H:2 * H] + net.params["bias_hh"][H:2 * H]
    np.testing.assert_array_equal(f_bias, 2.5)
    orth = _net("gru", init="orthogonal", H=H)
    for k in range(3):
        W = orth.params["weight_hh"][k * H:(k + 1) * H]
        np.testing.assert_allclose(W @ W.T, np.eye(H), atol=1e-12)
    irnn = _net("rnn", init="identity", H=H, recurrent_gain=0.9)
    np.testing.assert_array_equal(irnn.params["weight_hh"], 0.9 * np.eye(H))
    np.testing.assert_array_equal(irnn.params["bias_hh"], 0.0)
    a, b = _net("lstm", seed=4), _net("lstm", seed=4)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_params_are_live_views_with_pytorch_shapes():
    net = _net("lstm", I=3, H=4, O=2)
    assert {k: v.shape for k, v in net.params.items()} == {
        "weight_ih": (16, 3), "weight_hh": (16, 4), "bias_ih": (16,), "bias_hh": (16,),
        "W_out": (4, 2), "b_out": (2,)}
    X, y = _data("mse")
    before = net.loss_and_gradients(X, y)[0]
    net.params["W_out"][...] = 0.0
    net.params["b_out"][...] = 0.0
    after = net.loss_and_gradients(X, y)[0]
    assert after != before
    assert after == pytest.approx(np.mean(y ** 2))


@pytest.mark.parametrize("field,kw", [
    ("recurrent.cell", {"cell": "transformer"}),
    ("recurrent.hidden", {"hidden": 0}),
    ("recurrent.init", {"init": "zeros"}),
    ("recurrent.forget_bias", {"forget_bias": float("nan")}),
    ("recurrent.loss", {"loss": "hinge"}),
    ("recurrent.output_dim", {"loss": "cross_entropy", "output_dim": 1}),
])
def test_bad_spec_names_the_field(field, kw):
    with pytest.raises(SpecError) as e:
        RecurrentSpec(**kw)
    assert e.value.field == field


def test_bad_input_shapes_are_named():
    net = _net("rnn")
    with pytest.raises(ValueError, match="X: must have shape"):
        net.loss_and_gradients(np.zeros((2, 5)), np.zeros((2, 2)))


def test_float32_matches_float64():
    X, y = _data("mse")
    l64, g64 = _net("lstm").loss_and_gradients(X, y)
    l32, g32 = _net("lstm", dtype=np.float32).loss_and_gradients(X, y)
    assert l32 == pytest.approx(l64, rel=1e-5)
    np.testing.assert_allclose(g32["weight_hh"], g64["weight_hh"], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_same_loss_and_gradients_as_pytorch(cell, loss):
    torch = pytest.importorskip("torch")
    I, H, O = 3, 5, 3
    net = _net(cell, loss, I=I, H=H, O=O, seed=2)
    X, y = _data(loss, B=4, T=8, I=I, O=O)
    value, grads = net.loss_and_gradients(X, y)
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        I, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(module, name + "_l0").copy_(torch.from_numpy(net.params[name].copy()))
    W = torch.tensor(net.params["W_out"], requires_grad=True)
    b = torch.tensor(net.params["b_out"], requires_grad=True)
    seq, _ = module(torch.from_numpy(X))
    seq.retain_grad()
    o = seq[:, -1] @ W + b
    if loss == "mse":
        L = torch.nn.functional.mse_loss(o, torch.from_numpy(y))
    else:
        L = torch.nn.functional.cross_entropy(o, torch.from_numpy(y))
    L.backward()
    assert value == pytest.approx(L.item(), rel=1e-12)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        np.testing.assert_allclose(grads[name], getattr(module, name + "_l0").grad.numpy(),
                                   rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["W_out"], W.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["b_out"], b.grad.numpy(), rtol=1e-9, atol=1e-12)
    # ||dL/dh_T||: the last hidden state's gradient, which torch exposes directly
    assert net.hidden_grad_norms[-1] == pytest.approx(seq.grad[:, -1].norm().item(), rel=1e-9)
