"""The through-time training machine: micro-steps, fused runs, history, divergence,
tasks and experiment files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simulator.experiment import ExperimentError, TrainSpec
from simulator.recurrent.experiment import (
    RecurrentExperiment,
    list_recurrent_presets,
    load_recurrent_experiment,
    load_recurrent_preset,
    save_recurrent_experiment,
)
from simulator.recurrent.simulation import RecurrentSimulation
from simulator.recurrent.tasks import TaskSpec


def _exp(cell="lstm", kind="adding", lag=5, **train):
    task = TaskSpec(kind=kind, lag=lag, n_samples=40, symbols=3, seed=2)
    training = TrainSpec(**{"optimizer": "adam", "lr": 0.01, "batch_size": 4, **train})
    return RecurrentExperiment.build("t", task, training, cell=cell, hidden=3, seed=1,
                                     dtype="float64")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "lstm_no_forget", "gru"])
def test_micro_steps_do_what_the_fused_run_does(cell):
    a = RecurrentSimulation(_exp(cell, kind="marked_recall", clip_norm=0.5))
    b = RecurrentSimulation(_exp(cell, kind="marked_recall", clip_norm=0.5))
    names = [a.micro_step_name(p) for p in range(a.n_micro_steps)]
    assert names[0] == ("forward", 1) and names[4] == ("forward", 5)
    assert names[5] == ("loss", 0) and names[6] == ("backward", 5)
    assert names[10] == ("backward", 1) and names[11] == ("update", 0)
    for _ in range(2):
        for pos in range(a.n_micro_steps):
            snap = a.micro_step()
            if pos == 7:  # backward has reached t = 4: later steps known, earlier not yet
                assert np.isfinite(snap.hidden_grad_norms[3:]).all()
                assert np.isnan(snap.hidden_grad_norms[:3]).all()
        b.run(1)
    assert a.step_count == b.step_count == 2
    np.testing.assert_allclose(a.network.params_flat, b.network.params_flat, rtol=1e-12)
    sa, sb = a.snapshot(), b.snapshot()
    np.testing.assert_allclose(sa.hidden_grad_norms, sb.hidden_grad_norms, rtol=1e-12)
    assert sa.loss == pytest.approx(sb.loss, rel=1e-12)
    np.testing.assert_allclose(a.history.column("loss"), b.history.column("loss"), rtol=1e-12)


def test_history_is_bounded_and_ordered():
    sim = RecurrentSimulation(_exp("gru"), history_capacity=7, eval_every=5)
    sim.run(23)
    assert len(sim.history) == 7
    np.testing.assert_array_equal(sim.history.column("step"), np.arange(17, 24))
    val = sim.history.column("val_loss")
    assert np.isfinite(val[sim.history.column("step") == 20]).all()
    nbytes = sim.history.nbytes
    sim.run(30)
    assert sim.history.nbytes == nbytes


def test_divergence_is_reported_with_phase_and_time_step():
    sim = RecurrentSimulation(_exp("rnn"))
    sim.network.params["weight_hh"][0, 0] = np.nan
    snap = sim.run(3)
    rep = snap.divergence
    assert rep is not None and rep.phase == "forward" and rep.layer == 1 and snap.step == 0
    assert "time step 1" in rep.message and "clipping" in rep.message
    assert sim.run(2).step == 0  # stopped until reset
    sim.reset()
    assert sim.run(2).divergence is None


def test_clipping_bounds_the_applied_gradient():
    sim = RecurrentSimulation(_exp("rnn", optimizer="sgd", lr=0.5, clip_norm=1e-3))
    p0 = sim.network.params_flat.copy()
    snap = sim.run(1)
    step = np.linalg.norm(sim.network.params_flat - p0)
    assert snap.grad_norm > 1e-3
    assert step == pytest.approx(0.5 * 1e-3, rel=1e-9)


def test_tasks_are_what_they_say():
    add = TaskSpec(kind="adding", lag=500, n_samples=4000, seed=3)
    X, y = add.generate()
    assert X.shape == (4000, 500, 2)
    np.testing.assert_array_equal(X[:, :, 1].sum(axis=1), 2.0)
    assert (X[:, :50, 1].sum(axis=1) == 1).all()  # the first marker within the first tenth
    np.testing.assert_allclose(y[:, 0], (X[:, :, 0] * X[:, :, 1]).sum(axis=1))
    # predicting the mean scores the variance of a sum of two U(0,1): 1/6
    assert np.mean((y - 1.0) ** 2) == pytest.approx(add.baseline, abs=0.01)
    assert add.baseline == pytest.approx(0.1667, abs=5e-5)
    first = TaskSpec(kind="first_symbol", lag=30, n_samples=50, symbols=5, seed=1)
    X, y = first.generate()
    np.testing.assert_array_equal(X[:, 0].argmax(axis=1), y)
    assert first.baseline == 0.2
    rec = TaskSpec(kind="marked_recall", lag=40, n_samples=50, symbols=4, seed=1)
    X, y = rec.generate()
    mark = X[:, :, 4].argmax(axis=1)
    assert (mark < 4).all()
    np.testing.assert_array_equal(X[np.arange(50), mark, :4].argmax(axis=1), y)
    X2, y2 = rec.generate()
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(TaskSpec(kind="marked_recall", lag=40, n_samples=50,
                                       seed=2).generate()[1], y)


def test_experiment_round_trip(tmp_path):
    exp = _exp("gru")
    exp = RecurrentExperiment.build("r", exp.task, exp.training, compare=("rnn", "lstm"),
                                    cell="gru", init="orthogonal", hidden=7)
    path = tmp_path / "e.json"
    save_recurrent_experiment(exp, path)
    assert load_recurrent_experiment(path) == exp
    assert exp.cells == ("rnn", "lstm")
    assert exp.with_cell("rnn").recurrent.cell == "rnn"


@pytest.mark.parametrize("edit,field", [
    (lambda d: d.pop("mode"), "mode"),
    (lambda d: d["task"].update(lag=1), "task.lag"),
    (lambda d: d["task"].update(kind="sorting"), "task.kind"),
    (lambda d: d["recurrent"].update(cell="lstmm"), "recurrent.cell"),
    (lambda d: d["recurrent"].update(input_dim=5), "recurrent.input_dim"),
    (lambda d: d["recurrent"].update(hidden="many"), "recurrent.hidden"),
    (lambda d: d.update(compare=["rnn", "mlp"]), "compare[1]"),
    (lambda d: d["training"].update(lr=-1), "training.lr"),
    (lambda d: d.update(extra=1), "experiment"),
])
def test_bad_experiment_names_the_field(edit, field):
    d = json.loads(_exp().to_json())
    edit(d)
    with pytest.raises(ExperimentError) as e:
        RecurrentExperiment.from_dict(d, source="x.json")
    assert e.value.field == field


def test_presets_load():
    presets = list_recurrent_presets()
    names = [name for _, name, _ in presets]
    for want in ("RNN vs LSTM, lag 50", "LSTM without forget gate", "RNN with orthogonal init",
                 "Exploding RNN"):
        assert want in names
    for key, _, desc in presets:
        exp = load_recurrent_preset(key)
        assert desc and exp.task.lag >= 2
    with pytest.raises(ExperimentError, match="no through-time preset"):
        load_recurrent_preset("nope")


def test_evaluation_leaves_the_training_batch_in_the_snapshot():
    sim = RecurrentSimulation(_exp("lstm"), eval_every=1)
    for _ in range(sim.lag + 1):
        sim.micro_step()
    before = sim.snapshot()
    sim.evaluate()
    after = sim.snapshot()
    np.testing.assert_array_equal(before.hidden_norms, after.hidden_norms)
    np.testing.assert_array_equal(before.forget_mean, after.forget_mean)
    sim.step()  # and the iteration finishes as if nothing had happened
    twin = RecurrentSimulation(_exp("lstm"), eval_every=1)
    twin.run(1)
    np.testing.assert_allclose(sim.network.params_flat, twin.network.params_flat, rtol=1e-12)


def test_the_feedforward_start_never_loads_the_recurrent_kernels():
    """The through-time kernels compile when the mode is first used, never at start-up."""
    import subprocess
    import sys

    code = ("import sys, simulator, simulator._warmup, cli; "
            "print(any(m.startswith('simulator.recurrent') for m in sys.modules))")
    root = __import__("pathlib").Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
