"""The compare window, driven as a user drives it: the Compare menu and its shortcut,
buttons and keys for lockstep stepping, edits and undo on one side, B pretrained."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QKeySequence  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from simulator.spec import LayerSpec, NetworkSpec  # noqa: E402
from ui.app import MainWindow  # noqa: E402
from ui.compare_window import CompareWindow  # noqa: E402

pytestmark = pytest.mark.qt


@pytest.fixture(autouse=True)
def accept_pretrain_settings(monkeypatch):
    """The settings dialog, filled in as shown and accepted (its own test clicks it)."""
    from ui import pretrain_action

    def accept(parent, spec=None):
        dialog = pretrain_action.PretrainSettingsDialog(spec, parent)
        try:
            return dialog.spec()
        finally:
            dialog.deleteLater()

    monkeypatch.setattr(pretrain_action, "ask_pretrain_spec", accept)


def _same(a, b) -> bool:
    return (a.step_count == b.step_count
            and np.array_equal(a.network.params_flat, b.network.params_flat))


@pytest.fixture
def main_window(qtbot, controller, editor, settings):
    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    return w


@pytest.fixture
def compare(qtbot, tiny_experiment):
    w = CompareWindow(tiny_experiment)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    return w


def test_ctrl_k_forks_the_current_experiment_into_a_and_b(qtbot, main_window, controller):
    controller.run_steps(3)
    QTest.keySequence(main_window, QKeySequence("Ctrl+K"))
    qtbot.waitUntil(lambda: bool(getattr(main_window, "compare_windows", [])))
    w = main_window.compare_windows[-1]
    c = w.driver.comparison
    assert c.a.experiment == controller.sim.experiment == c.b.experiment
    assert c.a.step_count == 0 and _same(c.a, c.b)
    assert w.label.text() == "A and B are the same"
    w.close()


def test_buttons_step_both_in_lockstep_and_keys_too(qtbot, compare):
    c = compare.driver.comparison
    qtbot.mouseClick(compare.button_step, Qt.MouseButton.LeftButton)
    assert c.a.step_count == c.b.step_count == 1
    for _ in range(c.a.n_micro_steps):
        qtbot.mouseClick(compare.button_micro, Qt.MouseButton.LeftButton)
    assert c.a.step_count == c.b.step_count == 2
    QTest.keyClick(compare, Qt.Key.Key_Right)
    assert c.a.step_count == 3 and _same(c.a, c.b)
    assert compare.bars_a.opts["height"] is not None
    assert "step 3" in compare.status.text()


def test_fast_mode_trains_both_and_pauses(qtbot, compare):
    c = compare.driver.comparison
    qtbot.mouseClick(compare.button_fast, Qt.MouseButton.LeftButton)
    assert compare.button_fast.text() == "Pause"
    qtbot.waitUntil(lambda: compare.driver.frame.a.step > 100, timeout=20000)
    qtbot.mouseClick(compare.button_fast, Qt.MouseButton.LeftButton)
    assert not compare.driver.is_playing and compare.button_fast.text() == "Fast"
    assert _same(c.a, c.b)
    # curves of both sides drawn from their histories
    xa, _ = compare.loss_a.getData()
    assert len(xa) > 0 and xa[-1] == c.a.history.steps()[-1]


def test_play_and_space(qtbot, compare):
    c = compare.driver.comparison
    QTest.keyClick(compare, Qt.Key.Key_Space)
    assert compare.driver.is_playing
    qtbot.waitUntil(lambda: c.a.step_count >= 2, timeout=10000)
    QTest.keyClick(compare, Qt.Key.Key_Space)
    assert not compare.driver.is_playing and _same(c.a, c.b)


def test_edit_goes_to_b_only_and_undo_is_per_side(qtbot, compare):
    c = compare.driver.comparison
    a_before = c.a.network.params_flat.copy()
    index = compare.remedy_box.findData("relu")
    compare.remedy_box.setCurrentIndex(index)
    qtbot.mouseClick(compare.button_apply, Qt.MouseButton.LeftButton)
    assert c.b.spec.hidden[0].activation == "relu"
    assert c.a.spec.hidden[0].activation == "tanh"
    assert compare.label.text() == "B: relu"
    assert compare.button_undo_b.isEnabled() and not compare.button_undo_a.isEnabled()
    qtbot.mouseClick(compare.button_step, Qt.MouseButton.LeftButton)
    assert not np.array_equal(c.a.network.params_flat, a_before)  # A trained, not edited
    QTest.keySequence(compare, QKeySequence("Ctrl+Z"))
    assert c.b.spec.hidden[0].activation == "tanh"
    assert compare.label.text() == "A and B are the same"
    # A edited through its own stack, undone on its own
    compare.driver.editors["a"].set_activation(0, "relu")
    assert c.a.spec.hidden[1].activation == "relu" and c.b.spec.hidden[1].activation == "tanh"
    assert compare.button_undo_a.isEnabled()
    qtbot.mouseClick(compare.button_undo_a, Qt.MouseButton.LeftButton)
    assert c.a.spec.hidden[1].activation == "tanh"


def test_pretrain_b_layer_by_layer_then_both_train(qtbot, tiny_experiment):
    spec = NetworkSpec(2, 2, hidden=tuple(LayerSpec(8, "sigmoid") for _ in range(3)),
                       init="uniform_fanin")
    w = CompareWindow(replace(tiny_experiment, network=spec))
    qtbot.addWidget(w)
    w.show()
    qtbot.mouseClick(w.button_pretrain, Qt.MouseButton.LeftButton)
    c = w.driver.comparison
    assert w.label.text() == "B: pretrained" and c.b_pretraining
    qtbot.mouseClick(w.button_step, Qt.MouseButton.LeftButton)
    assert c.pretrainer.layer_step == 1 and c.a.step_count == 0
    assert "pretraining layer 1 of 3" in w.status.text() and "A waits" in w.status.text()
    assert list(w.pretrain_mark.opts["x"]) == [1]
    w.driver.run_steps(3 * c.pretrainer.spec.steps_per_layer - 1)
    assert not c.b_pretraining and len(w.recon_curves) == 3
    qtbot.mouseClick(w.button_step, Qt.MouseButton.LeftButton)
    assert c.a.step_count == c.b.step_count == 1
    assert not np.array_equal(c.a.network.params["W1"], c.b.network.params["W1"])
    # undo on B: back to random weights, no pretraining, same as A's start
    qtbot.mouseClick(w.button_undo_b, Qt.MouseButton.LeftButton)
    assert c.pretrainer is None and w.label.text() == "A and B are the same"


def test_pretraining_refused_with_a_message_on_a_network_with_skips(qtbot, tiny_experiment):
    spec = replace(tiny_experiment.network, skips=((1, 3),))
    w = CompareWindow(replace(tiny_experiment, network=spec))
    qtbot.addWidget(w)
    w.show()
    qtbot.mouseClick(w.button_pretrain, Qt.MouseButton.LeftButton)
    assert w.driver.comparison.pretrainer is None
    assert "skip" in w.statusBar().currentMessage()


def test_diagnosis_of_each_side_is_shown(qtbot, compare):
    compare.driver.run_steps(20)
    assert "Diagnosis of A" in compare.diag_a.toPlainText()
    assert "Diagnosis of B" in compare.diag_b.toPlainText()


def test_compare_menu_opens_a_comparison_preset(qtbot, main_window):
    menu = main_window.compare_actions["menu"]
    presets = next(a.menu() for a in menu.actions() if a.menu() is not None)
    action = next(a for a in presets.actions()
                  if a.text() == "ReLU: Glorot vs He init at 30 layers")
    action.trigger()
    qtbot.waitUntil(lambda: bool(getattr(main_window, "compare_windows", [])))
    w = main_window.compare_windows[-1]
    assert w.label.text() == "B: He init"
    assert w.driver.comparison.b.spec.init == "he_normal"
    assert w.driver.comparison.a.spec.depth == 30
    w.close()


def test_save_then_open_as_one_file_keeps_both_sides(qtbot, main_window, compare, tmp_path,
                                                     monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    compare.driver.editors["b"].apply_remedy("relu")
    assert compare.driver.pretrain_b()  # B: ReLU layers, pretrained first
    out = tmp_path / "cmp.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    QTest.keySequence(compare, QKeySequence("Ctrl+S"))
    assert out.exists()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(out), ""))
    main_window.compare_actions["open"].trigger()
    qtbot.waitUntil(lambda: bool(getattr(main_window, "compare_windows", [])))
    w = main_window.compare_windows[-1]
    c, c0 = w.driver.comparison, compare.driver.comparison
    assert c.a.experiment == c0.a.experiment and c.b.experiment == c0.b.experiment
    assert w.label.text() == compare.label.text() == "B: relu; pretrained"
    assert np.array_equal(c.b.network.params_flat, c0.b.network.params_flat)
    w.close()


def test_opening_a_bad_comparison_file_shows_the_field(qtbot, main_window, tmp_path,
                                                       monkeypatch):
    import json

    from PySide6.QtWidgets import QFileDialog

    from simulator.compare_experiment import load_comparison

    d = load_comparison("glorot_vs_he").to_dict()
    d["b_edits"][0]["init"] = "he"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    shown = []
    monkeypatch.setattr(main_window, "show_message", lambda text, kind="error": shown.append(text))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    main_window.compare_actions["open"].trigger()
    assert shown and "b_edits[0].init" in shown[0]


def test_history_and_boundary_tabs_draw_both_sides(qtbot, compare):
    c = compare.driver.comparison
    compare.driver.editors["b"].apply_remedy("relu")
    compare.driver.run_steps(30)
    compare.tabs.setCurrentIndex(1)  # what a click on the tab does
    for image, sim in zip(compare.history_images, c.sides, strict=True):
        assert image.image.shape == (sim.network.L + 1, len(sim.history))
    a, b = (img.image for img in compare.history_images)
    assert not np.array_equal(a, b)
    assert "10^" in compare.history_plots[0].plotItem.titleLabel.text
    compare.tabs.setCurrentIndex(2)
    ia, ib = (img.image for img in compare.boundary_images)
    assert ia.shape == ib.shape == (70, 70, 3) and not np.array_equal(ia, ib)
    assert len(compare.points_a.data) == len(c.a.dataset.X_train)


def test_opening_an_experiment_that_pretrains_compares_it_with_random(qtbot, main_window,
                                                                      tiny_experiment,
                                                                      tmp_path, monkeypatch):
    import json

    from PySide6.QtWidgets import QFileDialog

    from simulator.compare_experiment import PretrainedExperiment
    from simulator.pretrain import PretrainSpec

    path = tmp_path / "pre.json"
    path.write_text(json.dumps(PretrainedExperiment(
        tiny_experiment, PretrainSpec(steps_per_layer=9)).to_dict()))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    main_window.compare_actions["open"].trigger()
    qtbot.waitUntil(lambda: bool(getattr(main_window, "compare_windows", [])))
    w = main_window.compare_windows[-1]
    c = w.driver.comparison
    assert w.label.text() == "B: pretrained" and c.pretrainer.spec.steps_per_layer == 9
    assert c.a.experiment == tiny_experiment
    w.close()


def test_network_tab_toggles_between_a_and_b_and_its_gestures_edit_that_side(qtbot, compare):
    c = compare.driver.comparison
    compare.tabs.setCurrentIndex(3)
    assert compare.canvas_stack.currentWidget() is compare.canvases["b"]
    assert compare.driver.sides["b"].shown and not compare.driver.sides["a"].shown
    # the user drops "relu" on B's first layer (what the canvas asks for)
    compare.canvases["b"].activation_requested.emit(1, "relu")
    assert c.b.spec.hidden[0].activation == "relu" and c.a.spec.hidden[0].activation == "tanh"
    assert compare.label.text() == "B: relu in layer 1"
    assert compare.canvases["b"]._spec == c.b.spec
    qtbot.mouseClick(compare.canvas_buttons["a"], Qt.MouseButton.LeftButton)
    assert compare.canvas_stack.currentWidget() is compare.canvases["a"]
    assert compare.driver.sides["a"].shown and not compare.driver.sides["b"].shown
    compare.canvases["a"].skip_requested.emit(1, 3)
    assert c.a.spec.skips == ((1, 3),) and c.b.spec.skips == ()
    qtbot.mouseClick(compare.button_step, Qt.MouseButton.LeftButton)
    assert compare.driver.sides["a"].snapshot.step == 1
    assert compare.canvases["a"]._spec == c.a.spec
