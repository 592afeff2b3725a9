"""Compare mode: two simulations in lockstep, bit-identical without edits, edits to one
side only, the label of what differs, and B pretrained against A from random weights."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.compare import Comparison, difference_label
from simulator.data import DataSpec
from simulator.experiment import Experiment, TrainSpec
from simulator.pretrain import PretrainSpec
from simulator.spec import LayerSpec, NetworkSpec


def _experiment(depth=5, act="sigmoid", init="glorot_uniform", dtype="float32"):
    spec = NetworkSpec(2, 2, hidden=tuple(LayerSpec(8, act) for _ in range(depth)), init=init)
    return Experiment("t", "", spec, DataSpec(kind="spiral", n_samples=120),
                      TrainSpec(optimizer="adam", lr=0.01, batch_size=16), seed=3, dtype=dtype)


def _same(a, b):
    na, nb = a.network, b.network
    return (np.array_equal(na.params_flat, nb.params_flat)
            and np.array_equal(a.history.scalar("loss"), b.history.scalar("loss"), equal_nan=True)
            and a.step_count == b.step_count)


def test_no_edit_stays_bit_identical_for_1000_steps_through_every_kind_of_step():
    c = Comparison(_experiment())
    assert _same(c.a, c.b) and c.label == "A and B are the same"
    for _ in range(3 * c.a.n_micro_steps + 2):
        c.micro_step()
    assert _same(c.a, c.b)
    for _ in range(30):
        c.step()
    c.run(1000 - c.a.step_count)
    assert c.a.step_count == 1000 and _same(c.a, c.b)
    assert np.array_equal(c.a.history.layer_series(1), c.b.history.layer_series(1),
                          equal_nan=True)


def test_edit_to_b_leaves_a_untouched_and_is_labelled():
    exp = _experiment()
    alone = Comparison(exp).a
    c = Comparison(exp)
    c.b.set_skips(((1, 3), (3, 5)))
    assert c.label == "B: residual links (1,3) (3,5)"
    c.run(40)
    alone.run(40)
    assert np.array_equal(c.a.network.params_flat, alone.network.params_flat)
    assert not np.array_equal(c.a.history.scalar("loss"), c.b.history.scalar("loss"))
    # B kept A's weights where the edit did not touch them: same first batch, same start
    c2 = Comparison(exp)
    c2.b.set_skips(((1, 3),))
    np.testing.assert_array_equal(c2.a.network.params["W1"], c2.b.network.params["W1"])


def test_micro_steps_stay_in_lockstep_when_b_has_more_layers():
    c = Comparison(_experiment(depth=3))
    c.b.set_depth(5)
    assert "5 hidden layers instead of 3" in c.label
    for _ in range(3 * c.b.n_micro_steps):
        c.micro_step()
    assert c.a.step_count == c.b.step_count == 3
    c.step()
    assert c.a.step_count == c.b.step_count == 4


def test_undo_per_side_by_saved_state():
    c = Comparison(_experiment(act="relu"))
    before = c.b.capture_state()
    c.b.set_init("he_normal")
    assert c.label == "B: He init"
    c.run(5)
    c.b.restore_state(before)
    assert c.label == "A and B are the same"
    assert np.array_equal(c.a.network.params["W2"], _experiment_w2())


def _experiment_w2():
    c = Comparison(_experiment(act="relu"))
    c.run(5)
    return c.a.network.params["W2"]


@pytest.mark.parametrize("change, text", [
    (lambda s: s.set_activation_all("relu"), "B: relu"),
    (lambda s: s.set_batchnorm(2, True), "B: batch norm in layer 2"),
    (lambda s: s.set_training(TrainSpec(optimizer="adam", lr=0.001, batch_size=16)),
     "B: lr 0.001"),
])
def test_labels_name_the_difference(change, text):
    c = Comparison(_experiment())
    change(c.b)
    assert c.label == text


def test_b_pretrains_first_while_a_waits_then_both_fine_tune_the_same_steps():
    c = Comparison(_experiment(depth=3, dtype="float64"))
    c.pretrain_b(PretrainSpec(steps_per_layer=20))
    assert c.label == "B: pretrained" and c.b_pretraining
    c.run(25)
    assert c.a.step_count == 0 and c.pretrainer.layer == 2
    c.run(100)
    assert not c.b_pretraining and c.a.step_count == c.b.step_count == 100 - 35
    assert not np.array_equal(c.a.network.params["W1"], c.b.network.params["W1"])


def test_difference_label_of_identical_experiments():
    exp = _experiment()
    assert difference_label(exp, exp) == "A and B are the same"
    assert difference_label(exp, exp, b_pretrained=True) == "B: pretrained"
