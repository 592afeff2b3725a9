"""Every undoable edit: it changes the model, undo gives back the exact structure and
weights from before, redo gives back the edited structure; refused edits leave
nothing behind."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import TrainSpec  # noqa: E402
from ui.commands import residual_links  # noqa: E402

pytestmark = pytest.mark.qt


def _state(controller):
    """The experiment, and every layer's parameters (skip projections are left out:
    an undone skip link gets a freshly drawn projection)."""
    sim = controller.sim
    layers = {(k, name): v.copy() for k in range(1, sim.spec.depth + 2)
              for name, v in sim.layer_params(k).values.items()}
    return sim.experiment, layers


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))


def _setup_relu(ed):
    ed.set_activation(0, "relu")


def _setup_prelu_bn(ed):
    ed.set_activation(3, "prelu")
    ed.set_batchnorm(2, True)


def _setup_skips(ed):
    ed.add_skip(1, 3)
    ed.add_skip(0, 2)


# (id, setup(editor) or None, edit(editor))
CASES = [
    ("add_skip", None, lambda ed: ed.add_skip(1, 3)),
    ("add_skip_projection", None, lambda ed: ed.add_skip(0, 2)),
    ("remove_skip", _setup_skips, lambda ed: ed.remove_skip(1, 3)),
    ("remove_skip_projection", _setup_skips, lambda ed: ed.remove_skip(0, 2)),
    ("activation_one", None, lambda ed: ed.set_activation(2, "relu")),
    ("activation_all", None, lambda ed: ed.set_activation(0, "selu")),
    ("activation_from_prelu", _setup_prelu_bn, lambda ed: ed.set_activation(3, "elu")),
    ("batchnorm_on", None, lambda ed: ed.set_batchnorm(2, True)),
    ("batchnorm_all", None, lambda ed: ed.set_batchnorm(0, True)),
    ("batchnorm_off", _setup_prelu_bn, lambda ed: ed.set_batchnorm(2, False)),
    ("width_narrower", None, lambda ed: ed.set_width(2, 3)),
    ("width_wider", None, lambda ed: ed.set_width(2, 13)),
    ("width_all", None, lambda ed: ed.set_width(0, 5)),
    ("insert_middle", _setup_skips, lambda ed: ed.insert_layer(2)),
    ("insert_above_input", None, lambda ed: ed.insert_layer(0)),
    ("insert_below_output", None, lambda ed: ed.insert_layer(5)),
    ("delete_middle", _setup_skips, lambda ed: ed.delete_layer(1)),
    ("delete_top", _setup_prelu_bn, lambda ed: ed.delete_layer(4)),
    ("delete_bn_layer", _setup_prelu_bn, lambda ed: ed.delete_layer(2)),
    ("depth_fewer", _setup_skips, lambda ed: ed.set_depth(1)),
    ("depth_more", _setup_skips, lambda ed: ed.set_depth(7)),
    ("init", None, lambda ed: ed.set_init("he_normal")),
    ("init_gain", None, lambda ed: ed.set_init(gain=2.5)),
    ("init_mean_field", None, lambda ed: ed.set_init("mean_field", sigma_w=1.5, sigma_b=0.1)),
    ("training", None, lambda ed: ed.set_training(TrainSpec(
        optimizer="adam", lr=0.003, batch_size=8, weight_decay=1e-4, clip_norm=2.0,
        clip_value=0.5))),
    ("data_same_shape", None, lambda ed: ed.set_data(DataSpec(kind="circles", n_samples=60))),
    ("data_more_classes", None, lambda ed: ed.set_data(
        DataSpec(kind="spiral", n_samples=90, classes=3))),
    ("data_more_inputs", None, lambda ed: ed.set_data(
        DataSpec(kind="highdim", n_samples=80, dims=5))),
    ("remedy_relu", None, lambda ed: ed.apply_remedy("relu")),
    ("remedy_leaky_relu", _setup_relu, lambda ed: ed.apply_remedy("leaky_relu")),
    ("remedy_residual", None, lambda ed: ed.apply_remedy("residual")),
    ("remedy_batchnorm", None, lambda ed: ed.apply_remedy("batchnorm")),
    ("remedy_he_init", _setup_relu, lambda ed: ed.apply_remedy("he_init")),
    ("remedy_lecun_selu", None, lambda ed: ed.apply_remedy("lecun_selu")),
    ("remedy_clip_norm", None, lambda ed: ed.apply_remedy("clip_norm")),
    ("remedy_lower_lr", None, lambda ed: ed.apply_remedy("lower_lr")),
    ("remedy_raise_lr", None, lambda ed: ed.apply_remedy("raise_lr")),
]


@pytest.mark.parametrize("setup, edit", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_edit_undo_redo(controller, editor, setup, edit):
    if setup is not None:
        setup(editor)
    controller.run_steps(3)  # trained weights, not just the initial ones
    stack = controller.undo_stack
    n0 = stack.count()
    exp0, params0 = _state(controller)

    assert edit(editor) is True
    assert stack.count() == n0 + 1, "one edit, one undo step"
    exp1, _ = _state(controller)
    assert exp1 != exp0, "the edit changed the experiment"

    stack.undo()
    exp_undone, params_undone = _state(controller)
    assert exp_undone == exp0
    assert controller.sim.spec == exp0.network
    assert_same_params(params_undone, params0)

    stack.redo()
    assert _state(controller)[0] == exp1
    # and the simulation still trains after all that
    controller.run_steps(2)
    assert controller.sim.divergence is None


def test_undo_keeps_training_done_since_the_edit(controller, editor):
    editor.set_activation(2, "relu")
    controller.run_steps(5)
    trained = controller.sim.layer_params(1).values["W"].copy()
    controller.undo_stack.undo()
    assert controller.sim.spec.hidden[1].activation == "tanh"
    np.testing.assert_array_equal(controller.sim.layer_params(1).values["W"], trained)


def test_delete_then_undo_brings_back_the_trained_layer(controller, editor):
    controller.run_steps(4)
    w2 = controller.sim.layer_params(2).values["W"].copy()
    assert editor.delete_layer(2)
    assert controller.sim.spec.depth == 3
    controller.undo_stack.undo()
    assert controller.sim.spec.depth == 4
    np.testing.assert_array_equal(controller.sim.layer_params(2).values["W"], w2)


def test_each_edit_announces_itself(qtbot, controller, editor):
    with qtbot.waitSignals([controller.structure_changed, controller.experiment_changed,
                            controller.snapshot_changed]):
        editor.add_skip(1, 3)
    with qtbot.waitSignal(controller.structure_changed) as blocker:
        controller.undo_stack.undo()
    assert blocker.args[0].skips == ()
    assert "skip" in controller.undo_stack.redoText().lower()


@pytest.mark.parametrize("edit, fragment", [
    (lambda ed: ed.set_width(2, 0), "width"),
    (lambda ed: ed.set_width(0, 0), "width"),
    (lambda ed: ed.update_training(lr=0.0), "lr"),
    (lambda ed: ed.update_training(lr=1000.0), "lr"),
    (lambda ed: ed.update_training(batch_size=0), "batch_size"),
    (lambda ed: ed.add_skip(3, 1), "skip"),
    (lambda ed: ed.add_skip(1, 9), "skip"),
    (lambda ed: ed.delete_layer(9), "layer"),
    (lambda ed: ed.delete_layer(0), "layer"),
    (lambda ed: ed.set_activation(1, "swoosh"), "activation"),
    (lambda ed: ed.set_depth(-1), "depth"),
    (lambda ed: ed.set_depth(100_000), "hidden"),
    (lambda ed: ed.set_init(gain=0.0), "gain"),
    (lambda ed: ed.set_data(DataSpec(kind="csv", path="/no/such/file.csv")), "does not exist"),
    (lambda ed: ed.apply_remedy("homeopathy"), "remedy"),
], ids=["width0", "width_all0", "lr0", "lr_huge", "batch0", "skip_backwards", "skip_too_far",
        "delete_missing", "delete_input", "bad_activation", "depth_negative", "depth_huge",
        "gain0", "csv_missing", "unknown_remedy"])
def test_refused_edits_change_nothing(qtbot, controller, editor, edit, fragment):
    exp0, params0 = _state(controller)
    n0 = controller.undo_stack.count()
    with qtbot.waitSignal(controller.error) as blocker:
        assert edit(editor) is False
    assert fragment in blocker.args[0]
    assert controller.undo_stack.count() == n0
    exp1, params1 = _state(controller)
    assert exp1 == exp0
    assert_same_params(params1, params0)


def test_edits_that_change_nothing_leave_no_undo_step(controller, editor):
    n0 = controller.undo_stack.count()
    assert editor.set_batchnorm(0, False)
    assert editor.set_activation(0, "tanh")
    assert editor.set_width(0, 8)
    assert editor.set_depth(4)
    assert editor.update_training(lr=controller.sim.training.lr)
    assert controller.undo_stack.count() == n0


def test_remedy_relu_is_one_step_over_all_saturating_layers(controller, editor):
    editor.set_activation(2, "sigmoid")
    editor.set_activation(3, "softsign")
    editor.set_activation(4, "gelu")
    n0 = controller.undo_stack.count()
    assert editor.apply_remedy("relu")
    assert controller.undo_stack.count() == n0 + 1
    assert [h.activation for h in controller.sim.spec.hidden] == ["relu", "relu", "relu", "gelu"]
    controller.undo_stack.undo()
    assert [h.activation for h in controller.sim.spec.hidden] == [
        "tanh", "sigmoid", "softsign", "gelu"]


def test_remedy_lecun_selu_is_one_step(controller, editor):
    n0 = controller.undo_stack.count()
    editor.apply_remedy("lecun_selu")
    spec = controller.sim.spec
    assert spec.init == "lecun_normal" and {h.activation for h in spec.hidden} == {"selu"}
    assert controller.undo_stack.count() == n0 + 1


def test_remedy_residual_adds_only_missing_links(controller, editor):
    editor.add_skip(1, 3)
    assert editor.apply_remedy("residual")
    # a skip around every layer above the first (simulator.remedies.RESIDUAL_BLOCK = 1)
    assert set(controller.sim.spec.skips) == {(1, 3), (1, 2), (2, 3), (3, 4)}
    assert editor.apply_remedy("residual") is False  # nothing left to add


@pytest.mark.parametrize("depth, links", [
    (0, ()), (1, ()), (2, ((1, 2),)), (3, ((1, 2), (2, 3))), (4, ((1, 2), (2, 3), (3, 4))),
    (6, ((1, 2), (2, 3), (3, 4), (4, 5), (5, 6)))])
def test_residual_links(depth, links):
    assert residual_links(depth) == links


def test_learning_rate_remedies(controller, editor):
    lr = controller.sim.training.lr
    editor.apply_remedy("lower_lr")
    assert controller.sim.training.lr == pytest.approx(lr / 10)
    editor.apply_remedy("raise_lr")
    assert controller.sim.training.lr == pytest.approx(lr * 3 / 10)
    editor.apply_remedy("clip_norm")
    assert controller.sim.training.clip_norm == 1.0


def test_seed_restarts_and_clears_undo(controller, editor):
    editor.add_skip(1, 3)
    controller.run_steps(3)
    w_before = controller.sim.network.params_flat.copy()
    assert editor.set_seed(7)
    assert controller.sim.experiment.seed == 7
    assert controller.sim.step_count == 0
    assert controller.undo_stack.count() == 0
    assert controller.sim.spec.skips == ((1, 3),)
    assert not np.array_equal(controller.sim.network.params_flat, w_before)


def test_training_text_names_the_change(controller, editor):
    editor.update_training(lr=0.02, batch_size=4)
    assert controller.undo_stack.undoText() == "Training: learning rate 0.02, batch size 4"


def test_editor_does_nothing_before_the_simulation_exists(qapp, tiny_experiment):
    from ui.commands import Editor
    from ui.controller import SimulationController

    c = SimulationController(tiny_experiment, build_now=False)
    ed = Editor(c)
    assert ed.add_skip(1, 3) is False
    assert ed.apply_remedy("relu") is False
    assert c.undo_stack.count() == 0
    c.deleteLater()


def test_training_replace_keeps_other_fields(controller, editor):
    t0 = controller.sim.training
    editor.update_training(clip_value=0.25)
    assert controller.sim.training == replace(t0, clip_value=0.25)
