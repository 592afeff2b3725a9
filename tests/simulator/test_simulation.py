"""Simulation: micro-steps, optimizers, divergence, history, the vanishing gradient,
edits that keep weights, snapshots, and a run with Qt unimportable."""

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from simulator import reference as R
from simulator.data import DataSpec
from simulator.experiment import Experiment, TrainSpec
from simulator.simulation import LayerParams, Simulation
from simulator.snapshot import HIST_DELTA, HIST_GRAD_W, PHASES
from simulator.spec import LayerSpec, NetworkSpec, residual_skips, uniform_spec

ROOT = Path(__file__).resolve().parents[2]
SPIRAL = DataSpec(kind="spiral", n_samples=120, noise=0.05, classes=3, seed=1)


def mixed_spec(loss="cross_entropy", output_dim=3):
    hidden = (LayerSpec(6, "prelu", batchnorm=True), LayerSpec(6, "tanh"),
              LayerSpec(5, "relu", batchnorm=True), LayerSpec(6, "gelu"))
    return NetworkSpec(2, output_dim, hidden=hidden, skips=((0, 2), (1, 2), (2, 4)), loss=loss,
                       init="he_normal")


def make_sim(network=None, training=None, data=SPIRAL, seed=0, dtype="float64", **kwargs):
    exp = Experiment(name="test", description="", network=network or mixed_spec(), data=data,
                     training=training or TrainSpec(optimizer="adam", lr=0.01, batch_size=16),
                     seed=seed, dtype=dtype)
    return Simulation(exp, **kwargs)


def state(sim):
    return (sim.network.params_flat.copy(), sim._m1.copy(), sim._m2.copy(),
            sim.network.running.copy())


def assert_same_state(a, b):
    for x, y in zip(state(a), state(b), strict=True):
        np.testing.assert_array_equal(x, y)


# -- micro-steps ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_micro_steps_step_and_run_agree_exactly(dtype):
    training = TrainSpec(optimizer="adam", lr=0.01, batch_size=16, weight_decay=1e-3,
                         clip_norm=1.0)
    sims = [make_sim(training=training, dtype=dtype) for _ in range(3)]
    micro, stepper, runner = sims
    for _ in range(3):
        for _ in range(micro.n_micro_steps):
            micro.micro_step()
        for _ in range(3):  # start an iteration by hand, let step() finish it
            stepper.micro_step()
        stepper.step()
        runner.run(1)
        assert micro.step_count == stepper.step_count == runner.step_count
        assert_same_state(micro, runner)
        assert_same_state(stepper, runner)
    runner.run(2)
    stepper.step()
    stepper.step()
    assert_same_state(stepper, runner)
    # the same losses were recorded on both paths
    np.testing.assert_array_equal(micro.history.scalar("loss"), runner.history.scalar("loss")[:3])
    np.testing.assert_array_equal(micro.history.layer_series(HIST_DELTA),
                                  runner.history.layer_series(HIST_DELTA)[:3])


def test_micro_step_sequence_and_snapshot_fields():
    sim = make_sim()
    L = sim.network.L
    N = L + 1
    assert sim.n_micro_steps == 2 * N + 2
    names = [sim.micro_step_name(p) for p in range(sim.n_micro_steps)]
    assert names == ([("forward", k) for k in range(1, N + 1)] + [("loss", 0)]
                     + [("backward", k) for k in range(N, 0, -1)] + [("update", 0)])
    snap = sim.snapshot()
    assert snap.phase == "ready" and snap.micro_index == 0 and snap.step == 0
    for pos, (phase, layer) in enumerate(names):
        assert sim.micro_step_name() == (phase, layer)
        snap = sim.micro_step()
        assert snap.phase in PHASES
        assert (snap.phase, snap.layer) == (phase, layer)
        if phase == "update":
            assert snap.step == 1 and snap.micro_index == 0
            assert snap.backward_done.all()
        else:
            assert snap.step == 0 and snap.micro_index == pos + 1
            done = {k for p, k in names[:pos + 1] if p == "backward"}
            np.testing.assert_array_equal(snap.backward_done,
                                          [k in done for k in range(1, N + 1)])
        if phase == "backward":
            # the delta just computed is in the snapshot
            assert snap.delta_norm[layer - 1] == pytest.approx(
                np.linalg.norm(snap.deltas[layer - 1]), rel=1e-9)
    assert sim.history.steps().tolist() == [1.0]


# -- optimizers ------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("momentum", 0.05), ("rmsprop", 0.005),
                                          ("adam", 0.01)])
def test_every_optimizer_reduces_the_loss(optimizer, lr):
    data = DataSpec(kind="gaussians", n_samples=200, noise=0.3, classes=3, seed=2)
    spec = uniform_spec(2, 3, depth=2, width=12, activation="tanh")
    sim = make_sim(spec, TrainSpec(optimizer=optimizer, lr=lr, batch_size=32), data=data,
                   eval_every=1000)
    sim.run(150)
    losses = sim.history.scalar("loss")
    assert np.all(np.isfinite(losses))
    assert losses[-20:].mean() < 0.5 * losses[:5].mean()
    assert sim.snapshot().accuracy > 0.8


def _reference_adam(sim, steps, **hyper):
    """Full-batch Adam on the numpy reference, from the simulation's initial weights."""
    net = sim.network
    q = net.params_flat.astype(np.float64)
    m1, m2 = np.zeros_like(q), np.zeros_like(q)
    X, y = sim.dataset.X_train, sim.dataset.y_train
    for t in range(1, steps + 1):
        params = {name: net.view(q, name) for name in net.param_names}
        _, grads, _ = R.reference_loss_and_gradients(sim.spec, params, X, y)
        flat = np.zeros_like(q)
        for name, g in grads.items():
            net.view(flat, name)[...] = g
        q, m1, m2, _ = R.optimizer_update("adam", q, flat, m1, m2, t=t,
                                          decay_mask=net.decay_mask, **hyper)
    return q


def test_adam_matches_the_reference():
    # full batch: the rows come in a shuffled order, the mean gradient is the same
    training = TrainSpec(optimizer="adam", lr=0.02, batch_size=10_000, beta1=0.8, beta2=0.99,
                         eps=1e-7, weight_decay=0.01)
    spec = NetworkSpec(2, 3, hidden=(LayerSpec(5, "tanh"), LayerSpec(4, "prelu"),
                                     LayerSpec(5, "silu")), skips=((1, 3), (0, 2)))
    sim = make_sim(spec, training)
    want = _reference_adam(sim, 4, lr=0.02, beta1=0.8, beta2=0.99, eps=1e-7,
                           weight_decay=0.01)
    for _ in range(4):
        sim.step()
    np.testing.assert_allclose(sim.network.params_flat, want, rtol=1e-9, atol=1e-12)


def test_clipping_by_norm_caps_the_global_gradient_norm():
    theta, lr = 0.05, 0.1
    training = TrainSpec(optimizer="sgd", lr=lr, batch_size=32, clip_norm=theta)
    spec = uniform_spec(2, 3, depth=3, width=8, activation="relu", init="he_normal", gain=3.0)
    sim = make_sim(spec, training)
    for _ in range(3):
        before = sim.network.params_flat.copy()
        sim.step()
        raw_norm = np.linalg.norm(sim.network.grads_flat)
        assert raw_norm > theta  # so the clip was needed
        step = np.linalg.norm(sim.network.params_flat - before)
        assert step == pytest.approx(lr * theta, rel=1e-9)
    # without clipping the same gradient makes a longer step
    free = make_sim(spec, replace(training, clip_norm=0.0))
    before = free.network.params_flat.copy()
    free.step()
    assert np.linalg.norm(free.network.params_flat - before) > 2 * lr * theta


# -- divergence ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["run", "step", "micro"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divergence_is_reported_not_raised(how, dtype):
    spec = uniform_spec(2, 3, depth=6, width=16, activation="relu", init="he_normal", gain=30.0)
    sim = make_sim(spec, TrainSpec(optimizer="sgd", lr=50.0, batch_size=16), dtype=dtype)
    for _ in range(200):
        if how == "run":
            snap = sim.run(5)
        elif how == "step":
            snap = sim.step()
        else:
            snap = sim.micro_step()
        if snap.divergence is not None:
            break
    report = snap.divergence
    assert report is not None, "this network should blow up"
    assert report.step == sim.step_count
    assert report.phase in ("forward", "loss", "backward", "update")
    assert report.quantity in ("activations", "loss", "delta", "weight gradient", "weights")
    assert 0 <= report.layer <= spec.depth + 1
    assert (report.layer == 0) == (report.phase == "loss")
    assert f"step {report.step}" in report.message

    # nothing moves until the settings change or the network is reset
    frozen = state(sim)
    for do in (sim.micro_step, sim.step, lambda: sim.run(3)):
        again = do()
        assert again.divergence == report
        assert sim.step_count == report.step
        for a, b in zip(frozen, state(sim), strict=True):
            np.testing.assert_array_equal(a, b)
    sim.set_training(replace(sim.training, lr=1e-4))
    assert sim.snapshot().divergence is None
    sim.reset()
    assert sim.divergence is None and sim.step_count == 0
    sim.set_init(gain=1.0)
    sim.run(2)
    assert sim.step_count == 2 and sim.divergence is None


# -- history -------------------------------------------------------------------------


def test_history_memory_is_bounded():
    sim = make_sim(history_capacity=16, eval_every=7)
    sim.run(16)
    size = sim.history.nbytes
    assert len(sim.history) == 16
    sim.run(50)
    for _ in range(sim.n_micro_steps * 3):
        sim.micro_step()
    assert sim.history.nbytes == size
    # the newest half at full resolution, the older run thinned out (the first step kept)
    steps = sim.history.steps()
    assert len(sim.history) <= 16
    np.testing.assert_array_equal(steps[-8:], np.arange(62, 70))
    assert steps[0] == 1 and np.all(np.diff(steps) > 0)
    assert sim.history.layer_series(HIST_DELTA).shape == (len(steps), sim.network.L + 1)
    assert np.all(np.isfinite(sim.history.scalar("loss")))
    val = sim.history.scalar("val_loss")
    assert np.all(np.isfinite(val[steps % 7 == 0]))


# -- the vanishing gradient and its remedies -------------------------------------------


def _flow_ratio(spec):
    """||delta_1|| / ||delta_out|| of a fresh network on one batch."""
    snap = make_sim(spec, TrainSpec(batch_size=64), seed=0).snapshot()
    assert np.all(np.isfinite(snap.delta_norm))
    return snap.delta_norm[0] / snap.delta_norm[-1]


def test_vanishing_gradient_and_remedies():
    depth, width = 10, 16
    plain = uniform_spec(2, 3, depth=depth, width=width, activation="sigmoid",
                         init="uniform_fanin")
    ratio = _flow_ratio(plain)
    assert ratio < 1e-4
    remedies = {
        "residual": replace(plain, skips=residual_skips(depth, every=1)),
        "relu + he": uniform_spec(2, 3, depth=depth, width=width, activation="relu",
                                  init="he_normal"),
        "batch norm": uniform_spec(2, 3, depth=depth, width=width, activation="sigmoid",
                                   batchnorm=True, init="uniform_fanin"),
    }
    for name, spec in remedies.items():
        assert _flow_ratio(spec) > 1e4 * ratio, name


def test_sigmoid_decay_per_layer_matches_glorot_bengio():
    """Linear regime (Glorot & Bengio 2010): each layer multiplies ||delta|| by about
    sqrt(n Var[W] E[phi'^2]) = sqrt(1/3 * 1/16) for sigmoid with U[-1/sqrt(n), 1/sqrt(n)]."""
    spec = uniform_spec(2, 3, depth=10, width=64, activation="sigmoid", init="uniform_fanin")
    norms = make_sim(spec, TrainSpec(batch_size=64)).snapshot().delta_norm
    per_layer = (norms[0] / norms[spec.depth - 1]) ** (1.0 / (spec.depth - 1))
    assert per_layer == pytest.approx(np.sqrt(1.0 / 48.0), rel=0.2)


def test_same_experiment_same_run_different_seed_different():
    a, b, c = make_sim(seed=5), make_sim(seed=5), make_sim(seed=6)
    for sim in (a, b, c):
        sim.run(7)
    assert_same_state(a, b)
    np.testing.assert_array_equal(a.history.scalar("loss"), b.history.scalar("loss"))
    assert not np.array_equal(a.network.params_flat, c.network.params_flat)


def test_vanishing_shows_in_the_history_of_weight_gradients():
    spec = uniform_spec(2, 3, depth=8, width=16, activation="sigmoid", init="uniform_fanin")
    sim = make_sim(spec, TrainSpec(optimizer="sgd", lr=0.1, batch_size=32))
    sim.run(5)
    deltas = sim.history.layer_series(HIST_DELTA)
    grads = sim.history.layer_series(HIST_GRAD_W)
    assert np.all(deltas[:, 0] < 1e-2 * deltas[:, -1])
    assert np.all(grads[:, 0] < grads[:, -1])


# -- edits -----------------------------------------------------------------------------


def _plain(depth=4, width=6, activation="tanh", **kw):
    return uniform_spec(2, 3, depth=depth, width=width, activation=activation, **kw)


def _weights(sim):
    return {n: v.copy() for n, v in sim.network.params.items()}


def test_set_activation_keeps_every_weight():
    sim = make_sim(_plain(skips=((1, 3),)))
    sim.run(3)
    before = _weights(sim)
    sim.set_activation(2, "prelu")
    after = _weights(sim)
    assert "alpha2" in after and sim.spec.hidden[1].activation == "prelu"
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value)
    sim.set_activation_all("gelu")
    for name, value in before.items():
        np.testing.assert_array_equal(sim.network.params[name], value)


def test_insert_and_delete_layer_map_the_other_weights():
    sim = make_sim(_plain(depth=4))
    sim.run(2)
    before = _weights(sim)
    sim.insert_layer(3, LayerSpec(6, "relu"))
    assert sim.spec.depth == 5
    after = _weights(sim)
    for k in (1, 2):
        np.testing.assert_array_equal(after[f"W{k}"], before[f"W{k}"])
        np.testing.assert_array_equal(after[f"b{k}"], before[f"b{k}"])
    for k in (3, 4, 5):  # old layer k is new layer k + 1
        np.testing.assert_array_equal(after[f"W{k + 1}"], before[f"W{k}"])
        np.testing.assert_array_equal(after[f"b{k + 1}"], before[f"b{k}"])

    sim = make_sim(_plain(depth=4))
    before = _weights(sim)
    sim.delete_layer(2)
    after = _weights(sim)
    np.testing.assert_array_equal(after["W1"], before["W1"])
    for k in (3, 4, 5):  # old layer k is new layer k - 1
        np.testing.assert_array_equal(after[f"W{k - 1}"], before[f"W{k}"])


def test_set_width_keeps_the_overlapping_block():
    sim = make_sim(_plain(depth=3, width=6))
    sim.run(2)
    before = _weights(sim)
    sim.set_width(2, 9)
    after = _weights(sim)
    assert after["W2"].shape == (6, 9) and after["W3"].shape == (9, 6)
    np.testing.assert_array_equal(after["W2"][:, :6], before["W2"])
    np.testing.assert_array_equal(after["W3"][:6, :], before["W3"])
    np.testing.assert_array_equal(after["b2"][:6], before["b2"])
    for name in ("W1", "b1", "W4", "b4", "b3"):
        np.testing.assert_array_equal(after[name], before[name])
    sim.set_width(2, 4)
    np.testing.assert_array_equal(sim.network.params["W2"], before["W2"][:, :4])
    np.testing.assert_array_equal(sim.network.params["W3"], before["W3"][:4, :])


def test_adding_and_removing_skips_keeps_the_weights():
    sim = make_sim(_plain(depth=4))
    sim.run(2)
    before = _weights(sim)
    sim.add_skip(1, 3)
    sim.add_skip(0, 4)  # width 2 -> 6: a projection P0_4 appears
    assert "P0_4" in sim.network.params and "P1_3" not in sim.network.params
    for name, value in before.items():
        np.testing.assert_array_equal(sim.network.params[name], value)
    sim.run(1)
    trained = _weights(sim)
    sim.remove_skip(0, 4)
    assert "P0_4" not in sim.network.params
    for name, value in trained.items():
        if name != "P0_4":
            np.testing.assert_array_equal(sim.network.params[name], value)


def test_delete_then_insert_restores_exactly():
    spec = NetworkSpec(2, 3, hidden=(LayerSpec(6, "tanh"), LayerSpec(6, "prelu", True),
                                     LayerSpec(6, "relu"), LayerSpec(6, "gelu")),
                       skips=((1, 3), (3, 4)))
    sim = make_sim(spec)
    sim.run(3)
    before = _weights(sim)
    layer = sim.spec.hidden[1]
    saved = sim.delete_layer(2)
    assert isinstance(saved, LayerParams) and set(saved.values) == {"W", "b", "gamma", "beta",
                                                                      "alpha"}
    assert sim.spec.depth == 3
    sim.insert_layer(2, layer, saved)
    assert sim.spec == spec
    after = _weights(sim)
    assert set(after) == set(before)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_history_rows_follow_inserted_and_deleted_layers():
    sim = make_sim(_plain(depth=3))
    sim.run(4)
    before = sim.history.layer_series(HIST_DELTA).copy()
    assert before.shape == (4, 4)
    sim.delete_layer(2)
    after = sim.history.layer_series(HIST_DELTA)
    np.testing.assert_array_equal(after, before[:, [0, 2, 3]])
    sim.insert_layer(1, LayerSpec(6, "tanh"))
    after = sim.history.layer_series(HIST_DELTA)
    assert after.shape == (4, 4)
    assert np.all(np.isnan(after[:, 0]))
    np.testing.assert_array_equal(after[:, 1:], before[:, [0, 2, 3]])
    sim.run(1)
    assert sim.history.layer_series(HIST_DELTA).shape == (5, 4)


# -- snapshots -------------------------------------------------------------------------


def test_snapshot_arrays_are_read_only_copies():
    sim = make_sim()
    sim.run(1)
    snap = sim.snapshot()
    arrays = [snap.delta_norm, snap.grad_norm, snap.weight_norm, snap.update_ratio,
              snap.dead_fraction, snap.backward_done, *snap.weights, *snap.deltas,
              *snap.activations, *snap.weight_grads, *snap.unit_delta]
    for a in arrays:
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[...] = 0
    W1 = snap.weights[0].copy()
    d = snap.delta_norm.copy()
    assert not np.shares_memory(snap.weights[0], sim.network.params["W1"])
    sim.run(3)
    np.testing.assert_array_equal(snap.weights[0], W1)
    np.testing.assert_array_equal(snap.delta_norm, d)
    assert not np.array_equal(sim.snapshot().weights[0], W1)


def test_dead_and_saturated_fractions_on_constructed_cases():
    spec = NetworkSpec(2, 3, hidden=(LayerSpec(4, "relu"), LayerSpec(4, "sigmoid"),
                                     LayerSpec(5, "tanh")))
    sim = make_sim(spec)
    W1, b1 = sim.network.params["W1"].copy(), sim.network.params["b1"].copy()
    W1[:, :2] = 0.0
    b1[:2] = -1.0  # units 0 and 1 never switch on
    b1[2:] = 50.0  # units 2 and 3 are always on
    W2, b2 = sim.network.params["W2"].copy(), sim.network.params["b2"].copy()
    W2[:, :3] = 0.0
    b2[:3] = [40.0, -40.0, 40.0]  # phi'(+-40) ~ 4e-18: saturated
    b2[3] = 0.0
    W2[:, 3] = 0.0  # phi'(0) = 1/4: alive
    W3, b3 = sim.network.params["W3"].copy(), sim.network.params["b3"].copy()
    W3[:] = 0.0
    b3[:] = [0.0, 30.0, -30.0, 0.5, -0.5]
    sim.set_layer_params(LayerParams(1, {"W": W1, "b": b1}))
    sim.set_layer_params(LayerParams(2, {"W": W2, "b": b2}))
    sim.set_layer_params(LayerParams(3, {"W": W3, "b": b3}))
    snap = sim.snapshot()
    np.testing.assert_array_equal(snap.dead_fraction, [0.5, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(snap.saturated_fraction, [0.0, 0.75, 0.4, 0.0])


def test_update_ratio_for_sgd():
    lr = 0.2
    sim = make_sim(_plain(depth=3), TrainSpec(optimizer="sgd", lr=lr, batch_size=16))
    for _ in range(2):
        before = _weights(sim)
        snap = sim.step()
        for k in range(1, sim.network.L + 2):
            W = sim.network.params[f"W{k}"]
            dW = sim.network.grad_arrays[f"W{k}"]
            want = lr * np.linalg.norm(dW) / np.linalg.norm(W)
            assert snap.update_ratio[k - 1] == pytest.approx(want, rel=1e-9)
            moved = np.linalg.norm(W - before[f"W{k}"]) / np.linalg.norm(W)
            assert snap.update_ratio[k - 1] == pytest.approx(moved, rel=1e-6)


def test_snapshot_during_the_backward_pass_holds_partial_deltas():
    sim = make_sim(_plain(depth=3))
    N = sim.network.L + 1
    for _ in range(N + 2):  # forward 1..N, loss, backward N
        snap = sim.micro_step()
    assert (snap.phase, snap.layer) == ("backward", N)
    assert snap.backward_done.tolist() == [False] * (N - 1) + [True]


# -- no Qt -----------------------------------------------------------------------------

_NO_QT = textwrap.dedent("""
    import importlib, pkgutil, sys

    class NoQt:
        blocked = ("PySide6", "pyqtgraph", "ui", "shiboken6")

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, NoQt())
    import simulator
    for mod in pkgutil.walk_packages(simulator.__path__, "simulator."):
        importlib.import_module(mod.name)
    sys.path.insert(0, "tests/simulator")
    for name in ("test_kernels", "test_network", "test_simulation"):
        importlib.import_module(name)

    from simulator.data import DataSpec
    from simulator.experiment import Experiment, TrainSpec
    from simulator.simulation import Simulation
    from simulator.spec import uniform_spec

    exp = Experiment(name="headless", description="",
                     network=uniform_spec(2, 2, depth=2, width=4, activation="relu"),
                     data=DataSpec(kind="xor", n_samples=40), training=TrainSpec(batch_size=8))
    sim = Simulation(exp)
    for _ in range(sim.n_micro_steps):
        sim.micro_step()
    sim.run(3)
    assert sim.step_count == 4, sim.step_count
    for bad in ("PySide6", "pyqtgraph", "ui"):
        assert bad not in sys.modules, bad
    print("headless ok")
""")


def test_simulator_runs_with_qt_unimportable():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", _NO_QT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "headless ok" in proc.stdout


def test_history_record_many_equals_one_at_a_time_across_the_wrap():
    from simulator.snapshot import History

    rng = np.random.default_rng(3)
    one, many = History(3, capacity=7), History(3, capacity=7)
    start = 0
    for n in (2, 4, 5, 1, 9):  # crosses the ring's end several times; 9 > capacity
        steps = np.arange(start + 1, start + n + 1, dtype=float)
        cols = rng.normal(size=(n, 5))
        per_layer = rng.normal(size=(n, 3, 4))
        for i in range(n):
            one.record(steps[i], *cols[i, :4], per_layer[i])
        many.record_many(steps, *(cols[:, c] for c in range(4)), per_layer)
        start += n
        assert len(one) == len(many)
        for name in History.SCALARS:
            assert np.array_equal(one.scalar(name), many.scalar(name), equal_nan=True)
        assert np.array_equal(one.layer_series(0), many.layer_series(0), equal_nan=True)


def test_run_records_the_same_history_as_stepping():
    stepped, fused = make_sim(), make_sim()
    # micro-stepping records one step at a time; run() records whole chunks
    for _ in range(23):
        for _ in range(stepped.n_micro_steps):
            stepped.micro_step()
    fused.run(23)
    for name in ("step", "loss", "accuracy", "val_loss", "val_accuracy"):
        assert np.allclose(stepped.history.scalar(name), fused.history.scalar(name),
                           equal_nan=True), name
    assert np.allclose(stepped.history.layer_series(0), fused.history.layer_series(0),
                       equal_nan=True)
