"""The main window, driven the way a user drives it: keys, clicks, drags, menus,
file dialogs. Every test checks that the model changed, not only that nothing crashed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QContextMenuEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent  # noqa: E402,E501
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QMenu,
    QMessageBox,
    QPushButton,
)

import simulator.experiment as experiment_module  # noqa: E402
from simulator import glossary  # noqa: E402
from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import (  # noqa: E402
    Experiment,
    TrainSpec,
    load_experiment,
    save_experiment,
)
from simulator.spec import uniform_spec  # noqa: E402
from ui import app as app_module  # noqa: E402
from ui.app import MainWindow, choose_experiment  # noqa: E402
from ui.controller import SimulationController  # noqa: E402

pytestmark = pytest.mark.qt

DOCK_NAMES = ("dock_controls", "dock_flow", "dock_history", "dock_loss", "dock_boundary",
              "dock_inspector", "dock_diagnosis")


def make_window(qtbot, controller, editor, settings, **kwargs) -> MainWindow:
    window = MainWindow(controller, editor, settings, **kwargs)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    return window


@pytest.fixture
def window(qtbot, controller, editor, settings):
    return make_window(qtbot, controller, editor, settings)


# Waits for the window system to catch up, sized for a loaded machine: they end as
# soon as the condition holds, so they cost nothing when it is quick.
SLOW_MS = 30_000


def focus_canvas(qtbot, window):
    """Give the canvas keyboard focus as a click would. Focus (and a window shortcut
    such as Ctrl+Z) needs the window to be the active one: after a popup menu closes,
    Qt reactivates the window only once the closing has been processed, which on a
    loaded machine can take longer than the focus request. So activate it first and
    wait for that, then ask for focus (issue 12, item 11: this test failed 2 in 10)."""
    canvas = window.canvas
    qtbot.waitUntil(lambda: QApplication.activePopupWidget() is None, timeout=SLOW_MS)
    window.raise_()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=SLOW_MS)
    canvas.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(lambda: canvas.hasFocus() or canvas.isAncestorOf(
        QApplication.focusWidget()), timeout=SLOW_MS)
    return QApplication.focusWidget()


def deep_sigmoid() -> Experiment:
    return Experiment(
        name="Deep sigmoid (test)", description="",
        network=uniform_spec(2, 2, depth=10, width=8, activation="sigmoid",
                             init="uniform_fanin"),
        data=DataSpec(kind="xor", n_samples=100), training=TrainSpec(lr=0.1, batch_size=16))


def click_menu_path(qtbot, window, *texts: str) -> None:
    """Open the menu bar's menu ``texts[0]`` with the mouse, then go through the
    (sub)menu entries named by the other texts, the way a user does."""
    bar = window.menuBar()
    top = next(a for a in bar.actions() if a.text().replace("&", "") == texts[0])
    QTest.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.actionGeometry(top).center())
    qtbot.waitUntil(lambda: isinstance(QApplication.activePopupWidget(), QMenu))
    for text in texts[1:]:
        menu = QApplication.activePopupWidget()
        action = next(a for a in menu.actions() if a.text().replace("&", "") == text)
        submenu = action.menu()
        if submenu is None:
            QTest.mouseClick(menu, Qt.MouseButton.LeftButton,
                             pos=menu.actionGeometry(action).center())
            continue
        # into a submenu with the keyboard (Down to it, then Right): a click opens it on
        # some platforms and toggles it shut again on others
        for _ in range(len(menu.actions())):
            if menu.activeAction() is action:
                break
            QTest.keyClick(menu, Qt.Key.Key_Down)
        QTest.keyClick(menu, Qt.Key.Key_Right)
        qtbot.waitUntil(lambda m=submenu: QApplication.activePopupWidget() is m)
    qtbot.waitUntil(lambda: QApplication.activePopupWidget() is None, timeout=SLOW_MS)


# -- the window ----------------------------------------------------------------------------
def test_title_docks_and_panels(window):
    assert window.windowTitle() == "Tiny tanh[*] — Gradient Flow Lab"
    for name in DOCK_NAMES:
        dock = window.findChild(QDockWidget, name)
        assert dock is not None and dock.isVisible(), name
        assert dock.widget() is not None
    assert window.centralWidget().isAncestorOf(window.canvas)
    export = window.findChild(type(window.action_open), "action_export")
    # File > Export animation is live once the simulation exists (ui.export wires it)
    assert export is not None and export.isEnabled()
    assert export.shortcut().toString() == "Ctrl+E"


def test_dock_toggles_from_the_view_menu(qtbot, window):
    dock = window.docks["dock_history"]
    click_menu_path(qtbot, window, "View", "Gradient history")
    qtbot.waitUntil(lambda: not dock.isVisible())
    click_menu_path(qtbot, window, "View", "Gradient history")
    qtbot.waitUntil(dock.isVisible)
    window.docks["dock_loss"].close()
    window.docks["dock_flow"].setFloating(True)
    click_menu_path(qtbot, window, "View", "Reset layout")
    qtbot.waitUntil(lambda: window.docks["dock_loss"].isVisible())
    assert not window.docks["dock_flow"].isFloating()


def test_status_bar_follows_the_simulation(qtbot, window, controller):
    focus_canvas(qtbot, window)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: window.status["step"].text() == "Step 1")
    assert window.status["loss"].text().startswith("Loss ")
    assert window.status["phase"].text() == "update"
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: window.status["phase"].text() == "forward · layer 1")


# -- the network canvas: context menus, drags, drops ------------------------------------------
def drive_popup(qtbot, texts, open_popup) -> None:
    """Call ``open_popup()``, which opens a popup menu and waits in it (QMenu.exec), and
    click through the entries named ``texts`` (submenus included) with the mouse."""
    done = []

    def step(i, tries=0):
        menu = QApplication.activePopupWidget()
        action = None
        if isinstance(menu, QMenu):
            action = next((a for a in menu.actions()
                           if a.text().replace("&", "") == texts[i]), None)
        if action is None:
            if tries > SLOW_MS // 10:  # give up without hanging the test run
                while QApplication.activePopupWidget() is not None:
                    QApplication.activePopupWidget().close()
                return
            QTimer.singleShot(10, lambda: step(i, tries + 1))
            return
        QTest.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(action).center())
        if i + 1 < len(texts):
            QTimer.singleShot(0, lambda: step(i + 1))
        else:
            done.append(True)

    QTimer.singleShot(0, lambda: step(0))
    open_popup()
    qtbot.waitUntil(lambda: bool(done) and QApplication.activePopupWidget() is None,
                    timeout=SLOW_MS)


def right_click(canvas, pos: QPoint) -> None:
    """A right click as the window system delivers it: press, release, context menu."""
    vp = canvas.viewport()
    QTest.mousePress(vp, Qt.MouseButton.RightButton, pos=pos)
    QTest.mouseRelease(vp, Qt.MouseButton.RightButton, pos=pos)
    QApplication.sendEvent(vp, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos,
                                                 vp.mapToGlobal(pos)))


def canvas_ready(qtbot, window):
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.isVisible() and canvas.layer_pos(1) != canvas.layer_pos(2))
    return canvas


def test_context_menu_swaps_a_layers_activation(qtbot, window, controller):
    canvas = canvas_ready(qtbot, window)
    drive_popup(qtbot, ["Activation", "relu"], lambda: right_click(canvas, canvas.layer_pos(2)))
    assert [h.activation for h in controller.sim.spec.hidden] == ["tanh", "relu", "tanh", "tanh"]
    QTest.keyClick(focus_canvas(qtbot, window), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert {h.activation for h in controller.sim.spec.hidden} == {"tanh"}


def test_context_menu_batchnorm_width_insert_delete(qtbot, window, controller, monkeypatch):
    canvas = canvas_ready(qtbot, window)
    drive_popup(qtbot, ["Batch norm"], lambda: right_click(canvas, canvas.layer_pos(3)))
    assert [h.batchnorm for h in controller.sim.spec.hidden] == [False, False, True, False]

    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(lambda *a, **k: (5, True)))
    drive_popup(qtbot, ["Change width…"], lambda: right_click(canvas, canvas.layer_pos(1)))
    assert controller.sim.spec.widths == (2, 5, 8, 8, 8, 2)

    drive_popup(qtbot, ["Insert layer above"], lambda: right_click(canvas, canvas.layer_pos(1)))
    assert controller.sim.spec.depth == 5
    assert controller.sim.spec.hidden[1] == controller.sim.spec.hidden[0]  # a copy of layer 1

    canvas = canvas_ready(qtbot, window)
    drive_popup(qtbot, ["Delete layer"], lambda: right_click(canvas, canvas.layer_pos(4)))
    assert controller.sim.spec.depth == 4
    assert [h.batchnorm for h in controller.sim.spec.hidden] == [False, False, False, False]
    for _ in range(4):
        window.action_undo.trigger()
    assert controller.sim.spec.widths == (2, 8, 8, 8, 8, 2)
    assert controller.undo_stack.count() == 4


def test_dragging_from_a_layer_to_a_later_one_adds_a_skip(qtbot, window, controller):
    canvas = canvas_ready(qtbot, window)
    vp = canvas.viewport()
    start, end = canvas.layer_pos(1), canvas.layer_pos(3)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, pos=start)
    for t in (0.25, 0.5, 0.75, 1.0):
        QTest.mouseMove(vp, QPoint(int(start.x() + t * (end.x() - start.x())), start.y()))
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=end)
    assert controller.sim.spec.skips == ((1, 3),)

    # right-click the new arc to remove it
    qtbot.waitUntil(lambda: (1, 3) in canvas._arcs)
    drive_popup(qtbot, ["Remove skip link"], lambda: right_click(canvas, canvas.skip_pos(1, 3)))
    assert controller.sim.spec.skips == ()


def test_clicking_a_layer_selects_it(qtbot, window, controller):
    canvas = canvas_ready(qtbot, window)
    with qtbot.waitSignal(controller.selection_changed) as blocker:
        QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=canvas.layer_pos(3))
    assert blocker.args == [3] and controller.selected_layer == 3


def drop_chip(canvas, chip, pos: QPoint) -> None:
    """What Qt delivers to the canvas when a chip is dragged in and let go at ``pos``."""
    mime: QMimeData = chip.mime_data()
    vp = canvas.viewport()
    actions = Qt.DropAction.CopyAction
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(pos, actions, mime, buttons, mods)
    QApplication.sendEvent(vp, enter)
    assert enter.isAccepted()
    move = QDragMoveEvent(pos, actions, mime, buttons, mods)
    QApplication.sendEvent(vp, move)
    QApplication.sendEvent(vp, QDropEvent(QPointF(pos), actions, mime, buttons, mods))


def test_dropping_a_palette_chip_on_a_layer(qtbot, window, controller):
    canvas = canvas_ready(qtbot, window)
    drop_chip(canvas, window.controls.chips["elu"], canvas.layer_pos(4))
    assert [h.activation for h in controller.sim.spec.hidden] == ["tanh", "tanh", "tanh", "elu"]
    all_target = canvas.mapFromScene(canvas._drop_all.sceneBoundingRect().center())
    drop_chip(canvas, window.controls.chips["selu"], all_target)
    assert {h.activation for h in controller.sim.spec.hidden} == {"selu"}


def test_steps_per_second_while_playing(qtbot, window, controller):
    controller.set_speed("quick")
    controller.play()
    controller.rate_changed.emit(123.4)
    assert window.status["rate"].text() == "123 steps/s"
    controller.pause()
    assert window.status["rate"].text() == ""


def test_ctrl_q_quits_and_saves_the_layout(qtbot, window, controller, settings):
    target = focus_canvas(qtbot, window)
    controller.play()
    QTest.keyClick(target, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert not window.isVisible()
    assert not controller.is_playing
    assert settings.value("window/state") is not None


# -- keyboard shortcuts, with the focus in the canvas ----------------------------------------
def test_right_steps(qtbot, window, controller):
    target = focus_canvas(qtbot, window)
    QTest.keyClick(target, Qt.Key.Key_Right)
    assert controller.sim.step_count == 1
    QTest.keyClick(target, Qt.Key.Key_Right)
    assert controller.sim.step_count == 2


def test_shift_right_micro_steps(qtbot, window, controller):
    target = focus_canvas(qtbot, window)
    QTest.keyClick(target, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert controller.sim.position == 1
    assert controller.snapshot.phase == "forward" and controller.snapshot.layer == 1
    for _ in range(controller.sim.n_micro_steps - 1):
        QTest.keyClick(target, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert controller.sim.step_count == 1 and controller.sim.position == 0


def test_space_plays_and_pauses(qtbot, window, controller):
    target = focus_canvas(qtbot, window)
    controller.set_speed("quick")
    QTest.keyClick(target, Qt.Key.Key_Space)
    assert controller.is_playing
    assert window.action_play.text() == "Pause"
    qtbot.waitUntil(lambda: controller.sim.step_count >= 3, timeout=10_000)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Space)
    assert not controller.is_playing
    assert window.action_play.text() == "Play"
    steps = controller.sim.step_count
    qtbot.wait(150)  # an event-loop turn: nothing trains while paused
    assert controller.sim.step_count == steps


def test_r_resets(qtbot, window, controller):
    target = focus_canvas(qtbot, window)
    params0 = controller.sim.network.params_flat.copy()
    controller.run_steps(5)
    QTest.keyClick(target, Qt.Key.Key_R)
    assert controller.sim.step_count == 0
    np.testing.assert_array_equal(controller.sim.network.params_flat, params0)


def test_undo_redo_keys(qtbot, window, controller, editor):
    target = focus_canvas(qtbot, window)
    editor.add_skip(1, 3)
    assert controller.sim.spec.skips == ((1, 3),)
    QTest.keyClick(target, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert controller.sim.spec.skips == ()
    QTest.keyClick(target, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert controller.sim.spec.skips == ((1, 3),)
    QTest.keyClick(target, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(target, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert controller.sim.spec.skips == ((1, 3),)


def test_text_fields_keep_their_own_keys(qtbot, window, controller):
    """Typing R or an arrow into a number field edits the field, not the simulation.
    (Space is the exception: a number has no use for it, so it plays; see
    test_walkthrough.py.)"""
    lr = window.controls.lr
    lr.setFocus()
    qtbot.waitUntil(lr.hasFocus)
    lr.lineEdit().selectAll()
    QTest.keyClicks(lr.lineEdit(), "0.05")
    QTest.keyClick(lr.lineEdit(), Qt.Key.Key_Left)
    QTest.keyClick(lr.lineEdit(), Qt.Key.Key_R)
    assert not controller.is_playing
    assert controller.sim.step_count == 0
    assert controller.sim.position == 0


# -- controls ---------------------------------------------------------------------------------
def type_into(qtbot, spin, text: str) -> None:
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    spin.lineEdit().selectAll()
    QTest.keyClicks(spin.lineEdit(), text)
    QTest.keyClick(spin.lineEdit(), Qt.Key.Key_Return)


def test_controls_edit_the_model_and_undo(qtbot, window, controller):
    c = window.controls
    type_into(qtbot, c.width, "12")
    assert {h.width for h in controller.sim.spec.hidden} == {12}
    type_into(qtbot, c.depth, "6")
    assert controller.sim.spec.depth == 6
    type_into(qtbot, c.lr, "0.02")
    assert controller.sim.training.lr == pytest.approx(0.02)
    type_into(qtbot, c.batch, "8")
    assert controller.sim.training.batch_size == 8
    type_into(qtbot, c.clip_norm, "2")
    assert controller.sim.training.clip_norm == 2.0
    n = controller.undo_stack.count()
    assert n == 5
    window.action_undo.trigger()
    assert controller.sim.training.clip_norm == 0.0
    assert c.clip_norm.value() == 0.0  # the control follows the model
    assert controller.undo_stack.count() == n  # and syncing made no new command


def test_combo_boxes_edit_the_model(qtbot, window, controller):
    c = window.controls
    c.activation.setCurrentText("relu")
    c.activation.activated.emit(c.activation.currentIndex())
    assert {h.activation for h in controller.sim.spec.hidden} == {"relu"}
    c.optimizer.setCurrentIndex(c.optimizer.findData("adam"))
    c.optimizer.activated.emit(c.optimizer.currentIndex())
    assert controller.sim.training.optimizer == "adam"
    assert not c.sigma_w.isVisible()
    c.init.setCurrentIndex(c.init.findData("mean_field"))
    c.init.activated.emit(c.init.currentIndex())
    assert controller.sim.spec.init == "mean_field"
    assert c.sigma_w.isVisible() and c.sigma_b.isVisible()
    type_into(qtbot, c.sigma_w, "1.7")
    assert controller.sim.spec.sigma_w == pytest.approx(1.7)


def test_activation_combo_with_the_keyboard(qtbot, window, controller):
    combo = window.controls.activation
    combo.setFocus()
    qtbot.waitUntil(combo.hasFocus)
    QTest.keyClick(combo, Qt.Key.Key_Down)
    assert {h.activation for h in controller.sim.spec.hidden} == {"relu"}


def test_invalid_values_show_a_message_and_change_nothing(qtbot, window, controller):
    c = window.controls
    exp0 = controller.sim.experiment
    type_into(qtbot, c.width, "0")
    assert window.banner.isVisible()
    assert "width" in window.banner.text
    assert controller.sim.experiment == exp0
    assert c.width.value() == 8  # snapped back to the model's value
    window.banner.dismiss()
    type_into(qtbot, c.lr, "0")
    assert window.banner.isVisible() and "lr" in window.banner.text
    assert controller.sim.training.lr == exp0.training.lr
    assert c.lr.value() == pytest.approx(exp0.training.lr)
    assert controller.undo_stack.count() == 0


def test_data_controls(qtbot, window, controller):
    c = window.controls
    c.kind.setCurrentIndex(c.kind.findData("spiral"))
    c.kind.activated.emit(c.kind.currentIndex())
    assert controller.sim.experiment.data.kind == "spiral"
    assert c.classes.isEnabled()
    type_into(qtbot, c.classes, "3")
    assert controller.sim.experiment.data.classes == 3
    assert controller.sim.spec.output_dim == 3  # the output layer followed the data
    type_into(qtbot, c.noise, "0.3")
    assert controller.sim.experiment.data.noise == pytest.approx(0.3)
    c.kind.setCurrentIndex(c.kind.findData("moons"))
    c.kind.activated.emit(c.kind.currentIndex())
    assert controller.sim.experiment.data.kind == "moons"
    assert controller.sim.spec.output_dim == 2
    window.action_undo.trigger()
    assert controller.sim.experiment.data.kind == "spiral"


def test_csv_import_of_a_bad_file_shows_the_error(qtbot, window, controller, monkeypatch,
                                                   tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y,label\n1,2,0\n3,oops,1\n")
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(bad), "")))
    exp0 = controller.sim.experiment
    qtbot.mouseClick(window.controls.import_csv, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.banner.isVisible)
    assert "bad.csv" in window.banner.text
    assert "line 3" in window.banner.text
    assert controller.sim.experiment == exp0
    assert controller.undo_stack.count() == 0


def test_csv_import_of_a_good_file(qtbot, window, controller, monkeypatch, tmp_path):
    good = tmp_path / "good.csv"
    rows = ["a,b,c,label"] + [f"{i % 7},{(i * 3) % 5},{i % 2},{int(i % 7 > 3)}"
                              for i in range(40)]
    good.write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(good), "")))
    qtbot.mouseClick(window.controls.import_csv, Qt.MouseButton.LeftButton)
    assert controller.sim.experiment.data.kind == "csv"
    assert controller.sim.spec.input_dim == 3
    # the file name, then the import summary (issue 8: the header line and the classes)
    name, summary = window.controls.csv_name.text().split("\n")
    assert name == "good.csv"
    assert summary == "40 rows, 3 inputs; line 1 taken as the header; 2 classes: 0 = 0, 1 = 1"


def test_palette_chips_carry_the_activation(window):
    from ui.views.controls import ACTIVATION_MIME

    chip = window.controls.chips["selu"]
    mime = chip.mime_data()
    assert bytes(mime.data(ACTIVATION_MIME)).decode() == "selu"
    assert mime.text() == "selu"


def test_speed_and_animation_controls(qtbot, window, controller):
    c = window.controls
    c.speed.setCurrentIndex(c.speed.findData("fast"))
    assert controller.speed == "fast"
    assert not c.animate.isEnabled()  # fast mode never animates (issue 8)
    c.speed.setCurrentIndex(c.speed.findData("slow"))
    qtbot.mouseClick(c.animate, Qt.MouseButton.LeftButton)
    assert controller.animate_micro_steps


def test_playback_buttons(qtbot, window, controller):
    buttons = window.controls.playback_buttons
    qtbot.mouseClick(buttons["step"], Qt.MouseButton.LeftButton)
    assert controller.sim.step_count == 1
    qtbot.mouseClick(buttons["micro"], Qt.MouseButton.LeftButton)
    assert controller.sim.position == 1
    qtbot.mouseClick(buttons["reset"], Qt.MouseButton.LeftButton)
    assert controller.sim.step_count == 0 and controller.sim.position == 0


# -- files ------------------------------------------------------------------------------------
def test_save_and_open_round_trip(qtbot, window, controller, editor, settings, monkeypatch,
                                  tmp_path):
    path = tmp_path / "mine.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(path), "")))
    editor.add_skip(1, 3)
    editor.set_activation(2, "elu")
    saved = controller.sim.experiment
    target = focus_canvas(qtbot, window)
    QTest.keyClick(target, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert path.exists()
    assert load_experiment(path) == saved
    assert window.current_path == str(path)

    editor.remove_skip(1, 3)
    editor.set_depth(2)
    QTest.keyClick(target, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)  # no dialog now
    assert load_experiment(path).network.depth == 2

    other = tmp_path / "other.json"
    save_experiment(saved, other)
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(other), "")))
    QTest.keyClick(target, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert controller.sim.experiment == saved
    assert controller.sim.step_count == 0
    assert controller.undo_stack.count() == 0
    assert window.current_path == str(other)
    assert settings.value("experiment/last_path") == str(other)


def test_save_as_shortcut(qtbot, window, controller, monkeypatch, tmp_path):
    path = tmp_path / "copy"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(path), "")))
    QTest.keyClick(focus_canvas(qtbot, window), Qt.Key.Key_S,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert load_experiment(tmp_path / "copy.json") == controller.sim.experiment


def test_open_a_broken_file_changes_nothing(qtbot, window, controller, monkeypatch, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "gradient-flow-lab/experiment", "version": 1,')
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(broken), "")))
    exp0 = controller.sim.experiment
    window.action_open.trigger()
    assert window.banner.isVisible() and "broken.json" in window.banner.text
    assert controller.sim.experiment == exp0


@pytest.fixture
def preset_dir(tmp_path, monkeypatch, tiny_experiment):
    folder = tmp_path / "presets"
    folder.mkdir()
    save_experiment(replace(tiny_experiment, name="First steps"), folder / "01_first.json")
    save_experiment(deep_sigmoid(), folder / "02_deep_sigmoid.json")
    monkeypatch.setattr(experiment_module, "PRESET_DIR", folder)
    return folder


def test_presets_menu(qtbot, preset_dir, window, controller):
    click_menu_path(qtbot, window, "File", "New from preset", "Deep sigmoid (test)")
    assert controller.sim.spec.depth == 10
    assert window.windowTitle() == "Deep sigmoid (test)[*] — Gradient Flow Lab"
    assert window.current_path is None
    click_menu_path(qtbot, window, "File", "New from preset", "First steps")
    assert controller.sim.spec.depth == 4


# -- diagnosis, divergence, errors --------------------------------------------------------------
def test_remedy_button_changes_the_spec_and_undo_reverts_it(qtbot, window, controller):
    controller.open_experiment(deep_sigmoid())
    panel = window.diagnosis

    def relu_button():
        for b in panel.findChildren(QPushButton):
            if b.isVisible() and "relu" in b.text().lower() and "leaky" not in b.text().lower():
                return b
        return None

    qtbot.waitUntil(lambda: relu_button() is not None)
    qtbot.mouseClick(relu_button(), Qt.MouseButton.LeftButton)
    assert {h.activation for h in controller.sim.spec.hidden} == {"relu"}
    QTest.keyClick(focus_canvas(qtbot, window), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert {h.activation for h in controller.sim.spec.hidden} == {"sigmoid"}


def test_divergence_shows_the_banner_and_stops_play(qtbot, window, controller):
    exploding = Experiment(
        name="Exploding", description="",
        network=uniform_spec(2, 2, depth=6, width=8, activation="linear", gain=6.0),
        data=DataSpec(kind="xor", n_samples=100), training=TrainSpec(lr=50.0, batch_size=16))
    controller.open_experiment(exploding)
    controller.set_speed("quick")
    QTest.keyClick(focus_canvas(qtbot, window), Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=10_000)
    assert window.banner.kind == "diverged"
    assert window.banner.text == controller.sim.divergence.message
    assert not controller.is_playing
    assert window.action_play.text() == "Play"
    # an edit that makes training possible again clears the banner
    window.editor.update_training(lr=0.01)
    assert not window.banner.isVisible()


def test_controller_errors_show_without_blocking(qtbot, window, controller):
    controller.error.emit("Something went wrong: details")
    assert window.banner.isVisible() and window.banner.text == "Something went wrong: details"
    assert "Something went wrong" in window.statusBar().currentMessage()
    qtbot.mouseClick(window.banner.close_button, Qt.MouseButton.LeftButton)
    assert not window.banner.isVisible()
    assert QApplication.activeModalWidget() is None


# -- help -----------------------------------------------------------------------------------------
def test_help_window_opens_at_a_topic(qtbot, window):
    help_window = window.show_help("residual")
    assert help_window.isVisible() and help_window.current_topic == "residual"
    assert glossary.TOPICS["residual"].title in help_window.browser.toPlainText()
    assert help_window.list.count() == len(glossary.TOPICS)
    help_window.list.setCurrentRow(0)
    first = next(iter(glossary.TOPICS.values()))
    assert first.title in help_window.browser.toPlainText()
    assert QApplication.activeModalWidget() is None


def test_help_from_the_diagnosis(qtbot, window):
    panel = window.diagnosis
    panel.help_requested.emit("batchnorm")
    assert window.help_window.isVisible()
    assert window.help_window.current_topic == "batchnorm"


def test_help_and_about_from_the_menu(qtbot, window):
    click_menu_path(qtbot, window, "Help", "Help topics")
    qtbot.waitUntil(lambda: window.help_window is not None and window.help_window.isVisible())
    click_menu_path(qtbot, window, "Help", "About")
    box = window.findChild(QMessageBox, "about_box")
    assert box is not None and box.isVisible() and not box.isModal()
    box.close()


# -- start-up, compiling, settings ---------------------------------------------------------------
def test_compiling_indicator_and_open_while_building(qtbot, tiny_experiment, settings,
                                                     tmp_path):
    """One test, because the simulation is built in the background once per process."""
    from ui.commands import Editor

    controller = SimulationController(tiny_experiment, build_now=False)
    window = make_window(qtbot, controller, Editor(controller), settings,
                         experiment=tiny_experiment)
    assert window.windowTitle() == "Tiny tanh[*] — Gradient Flow Lab"
    assert not window.action_step.isEnabled()
    with qtbot.waitSignal(controller.ready, timeout=120_000):
        controller.build_in_background()
        assert window.compiling_label.isVisible() and window.compiling_bar.isVisible()
        # a file opened meanwhile is opened as soon as the simulation exists
        path = tmp_path / "deep.json"
        save_experiment(deep_sigmoid(), path)
        window.open_path(str(path))
        assert window.windowTitle() == "Deep sigmoid (test)[*] — Gradient Flow Lab"
    assert not window.compiling_label.isVisible()
    assert window.action_step.isEnabled()
    qtbot.waitUntil(lambda: controller.sim.spec.depth == 10)
    assert window.current_path == str(path)
    window.action_step.trigger()
    assert controller.sim.step_count == 1
    controller.shutdown()
    controller.deleteLater()


def test_layout_and_last_experiment_are_remembered(qtbot, controller, editor, settings,
                                                   tmp_path):
    first = make_window(qtbot, controller, editor, settings)
    first.docks["dock_history"].close()
    path = tmp_path / "e.json"
    save_experiment(controller.sim.experiment, path)
    first.open_path(str(path))
    first.close()
    assert settings.value("experiment/last_path") == str(path)

    second = make_window(qtbot, controller, editor, settings)
    assert not second.docks["dock_history"].isVisible()
    assert second.docks["dock_loss"].isVisible()
    exp, found, problem = choose_experiment(None, settings)
    assert found == str(path) and problem is None and exp == load_experiment(path)


def test_choose_experiment_order(preset_dir, settings, tmp_path, tiny_experiment):
    # no file, no last experiment: the deep_sigmoid preset
    exp, path, problem = choose_experiment(None, settings)
    assert exp.name == "Deep sigmoid (test)" and path is None and problem is None
    # a file on the command line wins
    f = tmp_path / "f.json"
    save_experiment(tiny_experiment, f)
    exp, path, _ = choose_experiment(str(f), settings)
    assert exp == tiny_experiment and Path(path) == f.resolve()
    # a last experiment that no longer loads is forgotten
    settings.setValue("experiment/last_path", str(tmp_path / "gone.json"))
    exp, path, _ = choose_experiment(None, settings)
    assert exp.name == "Deep sigmoid (test)"
    assert settings.value("experiment/last_path") is None
    # a bad file is reported, and a preset opens instead
    exp, path, problem = choose_experiment(str(tmp_path / "nope.json"), settings)
    assert "nope.json" in problem and exp.name == "Deep sigmoid (test)"


def test_choose_experiment_without_presets(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(experiment_module, "PRESET_DIR", tmp_path / "empty")
    exp, path, problem = choose_experiment(None, settings)
    assert exp == app_module.fallback_experiment() and path is None
