"""Greedy layer-wise pretraining: autoencoder kernels against their numpy twins and
float64 centered finite differences; stages stepped, observed and handed over to
fine-tuning; the preset's stated effect over 5 seeds."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import ae_kernels as AK
from simulator import ae_reference as AR
from simulator.data import DataSpec
from simulator.experiment import Experiment, TrainSpec
from simulator.network import ACT_CODE
from simulator.pretrain import (
    MICRO_STEPS,
    Pretrainer,
    PretrainSpec,
    check_pretrainable,
)
from simulator.simulation import Simulation
from simulator.spec import LayerSpec, NetworkSpec, SpecError

ACTS = ("sigmoid", "tanh", "softsign", "elu", "linear")


def _params(rng, n_in, n_out, dtype=np.float64):
    W = rng.normal(0, 0.7, (n_in, n_out)).astype(dtype)
    b = rng.normal(0, 0.3, n_out).astype(dtype)
    D = rng.normal(0, 0.7, (n_out, n_in)).astype(dtype)
    c = rng.normal(0, 0.3, n_in).astype(dtype)
    return W, b, D, c


def _kernel_grads(x, W, b, D, c, act, tied, keep=None):
    B, n_in = x.shape
    n_out = W.shape[1]
    dt = x.dtype
    xt, z, h, dp = (np.zeros(s, dt) for s in ((B, n_in), (B, n_out), (B, n_out), (B, n_out)))
    r, gr, gh, gz = (np.zeros(s, dt) for s in ((B, n_in), (B, n_in), (B, n_out), (B, n_out)))
    gW, gb, gD, gc = (np.zeros_like(a) for a in (W, b, D, c))
    AK.ae_corrupt(x, keep if keep is not None else x, keep is not None, xt)
    assert AK.ae_encode(xt, W, b, ACT_CODE[act], z, h, dp)
    assert AK.ae_decode(h, W, D, c, tied, r)
    loss = AK.ae_loss(r, x, gr)
    AK.ae_backward_decoder(h, gr, W, D, tied, gD, gc, gh)
    AK.ae_backward_encoder(xt, gh, dp, h, gr, tied, gW, gb, gz)
    return loss, gW, gb, gD, gc


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("tied", (True, False))
@pytest.mark.parametrize("denoise", (False, True))
def test_kernels_match_numpy_twin(act, tied, denoise):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (7, 5))
    W, b, D, c = _params(rng, 5, 4)
    keep = (rng.random(x.shape) > 0.3).astype(np.float64) if denoise else None
    loss, gW, gb, gD, gc = _kernel_grads(x, W, b, D, c, act, tied, keep)
    rl, rW, rb, rD, rc = AR.ae_gradients(x, W, b, D, c, act, tied, keep)
    np.testing.assert_allclose(loss, rl, rtol=1e-12)
    for a, e in ((gW, rW), (gb, rb), (gc, rc)) + (() if tied else ((gD, rD),)):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("act", ("sigmoid", "tanh", "softsign"))
@pytest.mark.parametrize("tied", (True, False))
def test_twin_gradients_match_centered_finite_differences(act, tied):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (6, 4))
    params = list(_params(rng, 4, 3))
    keep = (rng.random(x.shape) > 0.25).astype(np.float64)
    _, *grads = AR.ae_gradients(x, *params, act, tied, keep)
    eps = 1e-6
    for which, g in enumerate(grads):
        if g is None:
            continue
        p = params[which]
        num = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = AR.ae_forward(x, *params, act, tied, keep)[4]
            p[i] = old - eps
            down = AR.ae_forward(x, *params, act, tied, keep)[4]
            p[i] = old
            num[i] = (up - down) / (2 * eps)
        rel = np.abs(g - num) / np.maximum(np.maximum(np.abs(g), np.abs(num)), 1e-12)
        assert rel.max() < 1e-6, (which, rel.max())


def test_fused_steps_match_numpy_twin_steps_and_micro_steps():
    rng = np.random.default_rng(9)
    X = rng.normal(0, 1, (20, 5))
    batches = np.stack([rng.permutation(20)[:4] for _ in range(6)]).astype(np.int64)
    W, b, D, c = _params(rng, 5, 3)
    keep = (rng.random((6, 4, 5)) > 0.2).astype(np.float64)
    ref = [a.copy() for a in (W, b, D, c)]
    vel = [np.zeros_like(a) for a in ref]
    ref_losses = [AR.ae_step(X[batches[s]], ref, vel, "tanh", False, 0.05, 0.9, keep[s])
                  for s in range(6)]
    p = [a.copy() for a in (W, b, D, c)]
    g = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    ws = [np.zeros((4, n)) for n in (5, 5, 3, 3, 3, 5, 5, 3, 3)]
    losses = np.zeros(6)
    done, status = AK.ae_train_steps(X, batches, keep, True, *p, *g, *v, ACT_CODE["tanh"],
                                     False, 0.05, 0.9, *ws, losses)
    assert (done, status) == (6, AK.ST_OK)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
    for a, e in zip(p, ref, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-13)


def _experiment(depth=3, width=6, seed=0, dtype="float64", act="sigmoid", **net):
    spec = NetworkSpec(2, 2, hidden=tuple(LayerSpec(width, act) for _ in range(depth)),
                       init="uniform_fanin", **net)
    return Experiment("t", "", spec, DataSpec(kind="circles", n_samples=80),
                      TrainSpec(optimizer="momentum", lr=0.1, batch_size=16), seed=seed,
                      dtype=dtype)


def test_each_stage_lowers_its_reconstruction_loss_and_writes_the_network():
    sim = Simulation(_experiment())
    w0 = [sim.network.params[f"W{k}"].copy() for k in (1, 2, 3)]
    p = Pretrainer(sim, PretrainSpec(steps_per_layer=60))
    p.pretrain_all()
    assert p.done and p.stage == "finetune" and p.divergence is None
    for k in range(3):
        assert p.loss_after[k] < p.loss_before[k]
        assert len(p.loss_history(k + 1)) == 60
        assert not np.allclose(sim.network.params[f"W{k + 1}"], w0[k])
    # fine-tuning starts from the pretrained weights: no step yet, change measured from them
    snap = sim.snapshot()
    assert snap.step == 0 and np.all(snap.weight_change == 0)
    before = sim.network.params_flat.copy()
    p.run(5)
    assert sim.step_count == 5 and not np.allclose(sim.network.params_flat, before)


def test_folded_standardization_keeps_the_trained_encoder_exactly():
    sim = Simulation(_experiment(depth=2))
    p = Pretrainer(sim, PretrainSpec(steps_per_layer=30))
    p.run(30)  # layer 1 finished: its standardized encoder is folded into W1, b1
    assert p.layer == 2
    X = sim._X.astype(np.float64)
    codes = AR.encode_all(X, sim.network.params["W1"], sim.network.params["b1"], "sigmoid")
    mean, scale = p._mean, p._scale
    np.testing.assert_allclose((codes - mean) / scale, p._inputs, rtol=1e-9, atol=1e-9)


def test_micro_steps_equal_fused_steps_and_are_named():
    a = Pretrainer(Simulation(_experiment()), PretrainSpec(steps_per_layer=4, denoise=0.2))
    b = Pretrainer(Simulation(_experiment()), PretrainSpec(steps_per_layer=4, denoise=0.2))
    phases = []
    for _ in range(3 * len(MICRO_STEPS)):
        phases.append(a.micro_step().phase)
    assert phases[:len(MICRO_STEPS)] == list(MICRO_STEPS)
    b.run(3)
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.loss_history(1), b.loss_history(1))
    snap = a.snapshot()
    assert (snap.stage, snap.layer, snap.step) == ("pretrain", 1, 3)
    assert "layer 1 of 3" in snap.label


def test_divergence_is_reported_like_trainings():
    sim = Simulation(_experiment(act="linear"))
    p = Pretrainer(sim, PretrainSpec(steps_per_layer=50, lr=90.0, momentum=0.99))
    p.pretrain_all()
    d = p.divergence
    assert d is not None and d.layer >= 1 and "diverged" in d.message
    assert p.step().divergence is d  # stays stopped


def test_bad_pretraining_specs_and_networks_name_the_field():
    with pytest.raises(SpecError, match="pretraining.lr"):
        PretrainSpec(lr=0)
    with pytest.raises(SpecError, match="pretraining.denoise"):
        PretrainSpec(denoise=1.0)
    with pytest.raises(SpecError, match="pretraining.tied"):
        PretrainSpec(tied="yes")
    with pytest.raises(SpecError, match="unknown field"):
        PretrainSpec.from_dict({"step": 3})
    with pytest.raises(SpecError, match="network.skips"):
        check_pretrainable(_experiment(skips=((1, 3),)).network)
    assert PretrainSpec.from_dict(PretrainSpec(tied=False).to_dict()) == PretrainSpec(tied=False)
