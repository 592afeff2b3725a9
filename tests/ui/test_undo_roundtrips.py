"""Undo and redo of every kind of edit on a network whose layers all differ (activation,
width, batch norm, PReLU, a skip link with a projection), comparing the whole
experiment and every parameter array, skip projections included.

On a stack of identical layers an undo that copies one layer's settings to all the
others looks right; here it cannot.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.data import DataSpec
from simulator.experiment import Experiment, TrainSpec
from simulator.spec import LayerSpec, NetworkSpec
from ui.commands import Editor
from ui.controller import SimulationController

pytestmark = pytest.mark.qt

HIDDEN = (LayerSpec(6, "tanh"), LayerSpec(9, "relu", batchnorm=True), LayerSpec(5, "prelu"),
          LayerSpec(7, "sigmoid", batchnorm=True))
SPEC = NetworkSpec(2, 2, hidden=HIDDEN, skips=((1, 3),), init="glorot_uniform")


@pytest.fixture
def ctl(qapp):
    exp = Experiment(name="mixed", description="", network=SPEC,
                     data=DataSpec(kind="spiral", n_samples=80),
                     training=TrainSpec(optimizer="adam", lr=0.01, batch_size=16), seed=4)
    c = SimulationController(exp)
    yield c
    c.shutdown()
    c.deleteLater()


def state(ctl):
    """The experiment and a copy of every parameter array by name (W, b, gamma, beta,
    alpha of every layer and the skip projections)."""
    sim = ctl.sim
    return sim.experiment, {name: np.array(v, copy=True) for name, v in sim.network.params.items()}


def assert_same(a, b, fresh=()):
    """Same experiment, same parameter names, every array equal bit for bit (except the
    arrays named in ``fresh``: drawn anew by design, compared by shape only)."""
    exp_a, params_a = a
    exp_b, params_b = b
    assert exp_a == exp_b
    assert exp_a.network.hidden == exp_b.network.hidden  # spelled out for the message
    assert params_a.keys() == params_b.keys()
    for name in params_a:
        if name in fresh:
            assert params_a[name].shape == params_b[name].shape, name
        else:
            np.testing.assert_array_equal(params_a[name], params_b[name], err_msg=name)


# (id, edit(editor), parameters that redo draws afresh[, setup(editor)])
EDITS = [
    ("add_skip", lambda ed: ed.add_skip(0, 2), ()),
    ("remove_skip", lambda ed: ed.remove_skip(1, 3), ()),
    ("activation_one", lambda ed: ed.set_activation(2, "elu"), ()),
    ("activation_all", lambda ed: ed.set_activation(0, "selu"), ()),
    ("activation_from_prelu", lambda ed: ed.set_activation(3, "tanh"), ()),
    ("activation_to_prelu", lambda ed: ed.set_activation(1, "prelu"), ()),
    ("batchnorm_on", lambda ed: ed.set_batchnorm(3, True), ()),
    ("batchnorm_off", lambda ed: ed.set_batchnorm(2, False), ()),
    ("batchnorm_all_on", lambda ed: ed.set_batchnorm(0, True), ()),
    ("batchnorm_all_off", lambda ed: ed.set_batchnorm(0, False), ()),
    ("width_narrower", lambda ed: ed.set_width(2, 4), ()),
    ("width_wider", lambda ed: ed.set_width(3, 11), ("W3", "b3", "alpha3", "W4", "P1_3")),
    ("width_all", lambda ed: ed.set_width(0, 6), ()),
    ("insert_middle", lambda ed: ed.insert_layer(2), ("W3", "b3", "gamma3", "beta3")),
    ("insert_above_input", lambda ed: ed.insert_layer(0), ("W1", "b1", "W2")),
    ("insert_below_output", lambda ed: ed.insert_layer(5), ("W5", "b5", "gamma5", "beta5")),
    ("delete_middle", lambda ed: ed.delete_layer(2), ()),
    ("delete_prelu", lambda ed: ed.delete_layer(3), ()),
    ("delete_first", lambda ed: ed.delete_layer(1), ()),
    ("depth_fewer", lambda ed: ed.set_depth(2), ()),
    ("depth_more", lambda ed: ed.set_depth(6), ()),
    ("init", lambda ed: ed.set_init("he_normal"), ()),
    ("init_gain", lambda ed: ed.set_init(gain=0.7), ()),
    ("init_mean_field", lambda ed: ed.set_init("mean_field", sigma_w=1.4, sigma_b=0.2), ()),
    ("training", lambda ed: ed.set_training(TrainSpec(optimizer="sgd", lr=0.2, batch_size=8,
                                                      clip_norm=1.5)), ()),
    ("data_same_shape", lambda ed: ed.set_data(DataSpec(kind="circles", n_samples=60)), ()),
    ("data_more_classes", lambda ed: ed.set_data(DataSpec(kind="spiral", n_samples=90,
                                                          classes=3)), ()),
    ("data_more_inputs", lambda ed: ed.set_data(DataSpec(kind="highdim", n_samples=80,
                                                         dims=5)), ()),
    ("remedy_relu", lambda ed: ed.apply_remedy("relu"), ()),
    ("remedy_leaky_relu", lambda ed: ed.apply_remedy("leaky_relu"), ()),
    ("remedy_residual", lambda ed: ed.apply_remedy("residual"), ()),
    ("remedy_batchnorm", lambda ed: ed.apply_remedy("batchnorm"), ()),
    # He init is offered only when every layer is a rectifier
    ("remedy_he_init", lambda ed: ed.apply_remedy("he_init"), (),
     lambda ed: ed.set_activation(1, "relu") and ed.set_activation(4, "leaky_relu")),
    ("remedy_lecun_selu", lambda ed: ed.apply_remedy("lecun_selu"), ()),
    ("remedy_clip_norm", lambda ed: ed.apply_remedy("clip_norm"), ()),
    ("remedy_lower_lr", lambda ed: ed.apply_remedy("lower_lr"), ()),
    ("remedy_raise_lr", lambda ed: ed.apply_remedy("raise_lr"), ()),
    ("remedy_revive", lambda ed: ed.apply_remedy("revive"), ()),
    ("remedy_leaky_revive", lambda ed: ed.apply_remedy("leaky_revive"), ()),
]


@pytest.mark.parametrize("edit, fresh, setup", [(*e[1:], None)[:3] for e in EDITS],
                         ids=[e[0] for e in EDITS])
def test_undo_and_redo_restore_everything(ctl, edit, fresh, setup):
    ed = Editor(ctl)
    spec0 = SPEC
    if setup is not None:
        assert setup(ed)
        spec0 = ctl.sim.spec
        assert [h.width for h in spec0.hidden] == [h.width for h in SPEC.hidden]
    ctl.run_steps(3)  # trained weights, BN scales and PReLU slopes, not the initial ones
    before = state(ctl)
    stack = ctl.undo_stack
    n0 = stack.count()
    assert edit(ed) is True
    assert stack.count() == n0 + 1
    after = state(ctl)
    assert after[0] != before[0], "the edit changed the experiment"

    stack.undo()
    assert_same(state(ctl), before)
    assert ctl.sim.spec == spec0

    stack.redo()
    assert_same(state(ctl), after, fresh)
    stack.undo()
    assert_same(state(ctl), before)


def test_a_sequence_of_edits_unwinds_and_rewinds_step_by_step(ctl):
    """Several different edits in a row; undo walks back through every intermediate
    state exactly, redo walks forward through them again."""
    ed = Editor(ctl)
    ctl.run_steps(2)
    states = [state(ctl)]
    for edit in (lambda: ed.set_activation(0, "selu"), lambda: ed.set_width(1, 3),
                 lambda: ed.set_batchnorm(2, False), lambda: ed.delete_layer(3),
                 lambda: ed.add_skip(0, 3), lambda: ed.set_activation(2, "prelu")):
        assert edit() is True
        states.append(state(ctl))
    stack = ctl.undo_stack
    for i in range(len(states) - 1, 0, -1):
        stack.undo()
        assert_same(state(ctl), states[i - 1])
    assert ctl.sim.spec == SPEC
    for i in range(1, len(states)):
        stack.redo()
        assert state(ctl)[0] == states[i][0], f"redo to state {i}"


def test_undo_all_activations_keeps_every_layers_own(ctl):
    """The issue's case: [tanh, relu, prelu, sigmoid] -> all selu -> undo."""
    ed = Editor(ctl)
    ctl.run_steps(2)
    alpha = ctl.sim.network.params["alpha3"].copy()
    assert ed.set_activation(0, "selu")
    assert [h.activation for h in ctl.sim.spec.hidden] == ["selu"] * 4
    assert "alpha3" not in ctl.sim.network.params
    ctl.undo_stack.undo()
    assert [h.activation for h in ctl.sim.spec.hidden] == ["tanh", "relu", "prelu", "sigmoid"]
    assert [h.batchnorm for h in ctl.sim.spec.hidden] == [False, True, False, True]
    assert [h.width for h in ctl.sim.spec.hidden] == [6, 9, 5, 7]
    np.testing.assert_array_equal(ctl.sim.network.params["alpha3"], alpha)
