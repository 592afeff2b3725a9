"""The window as a new user meets it (issue 8): each test does what the user did,
with the mouse, the wheel and the keyboard, and checks the model."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import Experiment, TrainSpec, save_experiment  # noqa: E402
from simulator.spec import uniform_spec  # noqa: E402
from simulator.theory import mean_field  # noqa: E402
from ui.app import MainWindow  # noqa: E402
from ui.views.flow import GradientFlowView  # noqa: E402

pytestmark = pytest.mark.qt


@pytest.fixture
def window(qtbot, controller, editor, settings):
    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    return w


def wheel(widget, steps: int = -1) -> None:
    """Turn the mouse wheel over the middle of ``widget`` (negative: towards the user)."""
    pos = QPointF(widget.rect().center())
    event = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * steps), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def answer_next_box(qtbot, button) -> list:
    """Press ``button`` in the next modal message box, the way the user would."""
    seen = []

    def press():
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, press)
            return
        seen.append(box.text())
        QTest.mouseClick(box.button(button), Qt.MouseButton.LeftButton)

    QTimer.singleShot(0, press)
    return seen


def type_into(qtbot, spin, text: str) -> None:
    spin.window().activateWindow()  # back from a message box
    qtbot.waitUntil(spin.window().isActiveWindow)
    QTest.mouseClick(spin.lineEdit(), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(spin.hasFocus)
    spin.lineEdit().selectAll()
    QTest.keyClicks(spin.lineEdit(), text)
    QTest.keyClick(spin.lineEdit(), Qt.Key.Key_Return)


# -- losing work and changing things by accident ----------------------------------------------
def test_wheel_scrolls_the_panel_and_changes_no_setting(qtbot, window, controller):
    controls = window.controls
    window.resize(1280, 640)  # the panel scrolls
    qtbot.waitUntil(lambda: controls.verticalScrollBar().maximum() > 0)
    exp0 = controller.sim.experiment
    for box in (controls.init, controls.seed, controls.depth, controls.lr, controls.kind):
        assert box.focusPolicy() == Qt.FocusPolicy.StrongFocus
        before = controls.verticalScrollBar().value()
        wheel(box, -1)
        assert controls.verticalScrollBar().value() > before or \
            before == controls.verticalScrollBar().maximum()
        controls.verticalScrollBar().setValue(0)
    assert controller.sim.experiment == exp0
    assert controller.undo_stack.count() == 0
    # a clicked (focused) field does take the wheel
    QTest.mouseClick(controls.lr.lineEdit(), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(controls.lr.hasFocus)
    wheel(controls.lr, 1)
    assert controller.sim.experiment.training.lr > exp0.training.lr


def test_space_plays_from_a_spin_box_but_not_from_a_text_field(qtbot, window, controller):
    controller.set_speed("quick")
    QTest.mouseClick(window.controls.batch.lineEdit(), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(window.controls.batch.hasFocus)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Space)
    assert controller.is_playing
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Space)
    assert not controller.is_playing


def test_unsaved_edits_ask_before_a_preset_a_file_or_quitting(qtbot, window, controller,
                                                              tmp_path, monkeypatch):
    assert not window.isWindowModified()
    type_into(qtbot, window.quick.lr, "0.5")  # the top bar's learning rate
    assert controller.sim.experiment.training.lr == 0.5
    assert window.isWindowModified() and "[*]" in window.windowTitle()
    assert window.windowTitle().startswith(controller.sim.experiment.name)
    # another preset: Cancel keeps the edits and their undo history
    seen = answer_next_box(qtbot, QMessageBox.StandardButton.Cancel)
    assert not window.open_preset("deep_sigmoid")
    assert seen and "before loading the preset" in seen[0]
    assert controller.sim.experiment.training.lr == 0.5 and controller.undo_stack.count() == 1
    # opening a file: Save writes the edits first (to a file the user picks)
    path = tmp_path / "mine.json"
    monkeypatch.setattr("ui.app.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(path), "Experiments (*.json)"))
    other = tmp_path / "other.json"
    save_experiment(Experiment("Other", "", uniform_spec(2, 2, 2, 4, "relu"),
                               DataSpec(kind="xor", n_samples=60), TrainSpec(lr=0.03)), other)
    answer_next_box(qtbot, QMessageBox.StandardButton.Save)
    assert window.open_path(str(other))
    assert '"lr": 0.5' in path.read_text().replace(" ", "").replace('"lr":0.5', '"lr": 0.5')
    assert controller.sim.experiment.name == "Other" and not window.isWindowModified()
    assert window.windowTitle().startswith("other.json")
    # quitting with Ctrl+Q: Cancel keeps the window, Discard closes it
    type_into(qtbot, window.quick.lr, "0.2")
    answer_next_box(qtbot, QMessageBox.StandardButton.Cancel)
    QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert window.isVisible()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    answer_next_box(qtbot, QMessageBox.StandardButton.Discard)
    QTest.keyClick(window.canvas, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible())


# -- fitting the screen -------------------------------------------------------------------------
def test_fits_1280_by_720_with_learning_rate_and_activation_in_view(qtbot, window):
    least = window.minimumSizeHint()
    assert least.width() <= 1280 and least.height() <= 720 - 60  # title bar and panel
    window.resize(1280, 680)
    qtbot.waitUntil(lambda: window.height() <= 700)
    for w in (window.quick.lr, window.quick.activation, window.canvas):
        assert w.isVisible()
        top_left = w.mapTo(window, QPoint(0, 0))
        assert window.rect().contains(top_left) and top_left.y() < 680


def test_a_saved_layout_bigger_than_the_screen_is_not_restored(qtbot, controller, editor,
                                                                settings):
    first = MainWindow(controller, editor, settings)
    qtbot.addWidget(first)
    first.docks["dock_boundary"].hide()
    screen = first.screen().availableGeometry()
    first.resize(screen.width() + 900, screen.height() + 700)
    first.save_settings()
    first.close()
    again = MainWindow(controller, editor, settings)
    qtbot.addWidget(again)
    assert again.width() < screen.width() + 900
    assert not again.docks["dock_boundary"].isHidden()  # the default layout


def test_layer_numbers_do_not_overlap_at_30_layers(qtbot, qapp):
    from ui.controller import SimulationController

    c = SimulationController(Experiment(
        "deep", "", uniform_spec(2, 2, 30, 4, "relu"), DataSpec(kind="xor", n_samples=60),
        TrainSpec()))
    view = GradientFlowView(c)
    qtbot.addWidget(view)
    view.resize(330, 220)
    view.show()
    qtbot.waitExposed(view)
    c.run_steps(1)
    axis = view.plot.getPlotItem().getAxis("bottom")
    vb = view.plot.getPlotItem().getViewBox()
    ticks = axis._tickLevels[0]
    xs = [vb.mapViewToScene(QPointF(x, 0)).x() for x, _ in ticks]
    widths = [axis.fontMetrics().horizontalAdvance(t) if hasattr(axis, "fontMetrics") else
              8 * len(t) for _, t in ticks]
    for i in range(len(xs) - 1):
        assert xs[i + 1] - xs[i] > (widths[i] + widths[i + 1]) / 2
    assert ticks[-1][1] == "out"
    c.shutdown()


def test_legends_hide_no_data(qtbot, window, controller):
    controller.run_steps(3)
    for plot_item, legend in ((window.views["flow"].plot.getPlotItem(),
                               window.views["flow"].legend),
                              (window.views["loss"].loss_plot, window.views["loss"].legend),
                              (window.views["boundary"].plot.getPlotItem(),
                               window.views["boundary"].legend)):
        plot_rect = plot_item.getViewBox().sceneBoundingRect()
        assert legend.isVisible()
        assert not legend.sceneBoundingRect().intersects(plot_rect)


# -- saying the right thing ---------------------------------------------------------------------
def test_stale_data_fields_show_the_data_set(qtbot, window, controller, tmp_path, monkeypatch):
    controls = window.controls
    assert controls.dims.value() == controller.sim.dataset.input_dim == 2
    rng = np.random.default_rng(0)
    lines = ["a,b,c,d,label"] + [",".join(f"{v:.3f}" for v in rng.normal(size=4)) + f",{i % 3}"
                                 for i in range(45)]
    path = tmp_path / "three.csv"
    path.write_text("\n".join(lines) + "\n")
    controller.error.emit("an earlier import failed")  # the banner of a failure
    assert window.banner.isVisible()
    monkeypatch.setattr("ui.views.controls.QFileDialog.getOpenFileName",
                        lambda *a, **k: (str(path), ""))
    QTest.mouseClick(controls.import_csv, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.sim.experiment.data.kind == "csv")
    assert (controls.samples.value(), controls.classes.value(), controls.dims.value()) == \
        (45, 3, 4)
    assert not window.banner.isVisible()  # success clears the old failure


def test_description_of_the_loaded_experiment_is_shown(qtbot, window, controller):
    note = window.note
    assert note.isVisible()
    assert controller.sim.experiment.description.split(".")[0] in note.label.text()
    exp = Experiment("Two sentences", "First part. Then the second part with more.",
                     uniform_spec(2, 2, 2, 4, "tanh"), DataSpec(kind="xor", n_samples=60),
                     TrainSpec())
    window._open(exp, None)
    assert "First part." in note.label.text() and "second part" not in note.label.text()
    QTest.mouseClick(note.more, Qt.MouseButton.LeftButton)
    assert "second part" in note.label.text()


def test_fast_mode_never_animates(qtbot, window, controller):
    controls = window.controls
    controls.animate.setChecked(True)
    controls.speed.setCurrentIndex(controls.speed.findData("fast"))
    assert not controls.animate.isEnabled()
    window.action_play.trigger()
    assert controller._worker is not None  # trained in the background, no micro-steps
    qtbot.waitUntil(lambda: controller.sim.step_count >= 20, timeout=20_000)
    window.action_play.trigger()
    assert not controller.is_playing


def test_jump_to_backward_pass_and_the_forward_value_bubble(qtbot, window, controller):
    canvas = window.canvas
    QTest.keyClick(canvas, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    snap = controller.snapshot
    assert (snap.phase, snap.layer) == ("forward", 1)
    a = np.asarray(snap.activations[0], dtype=np.float64)
    bubble = canvas._labels.norms[1]
    assert bubble.startswith("\u2016a\u2016")
    from ui.views.colors import fmt_sci
    assert bubble.endswith(fmt_sci(float(np.sqrt((a * a).sum()))))
    QTest.keyClick(canvas, Qt.Key.Key_B)
    assert controller.snapshot.phase == "loss"
    QTest.keyClick(canvas, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    snap = controller.snapshot
    assert (snap.phase, snap.layer) == ("backward", snap.n_layers)
    assert canvas._labels.norms[snap.n_layers] == fmt_sci(snap.delta_norm[-1])  # delta again


def test_hidden_units_are_counted_on_the_canvas(qtbot, controller, editor, settings):
    window = MainWindow(controller, editor, settings)
    qtbot.addWidget(window)
    editor.set_width(0, 16)
    shown = window.canvas.shown_units(1)
    assert shown < 16
    assert f"(+{16 - shown})" in window.canvas._labels.vertical_texts[1]


def test_flow_mode_buttons_show_which_is_on_and_the_header_speaks_plainly(qtbot, window,
                                                                           controller):
    flow = window.views["flow"]
    controller.run_steps(2)
    mf = mean_field(controller.sim.spec)
    percent = f"{100 * math.sqrt(mf.chi_star):.2g}\u2009%"
    assert flow._caveat.text().startswith("Theory: each layer")
    assert percent in flow._caveat.text() or mf.phase == "chaotic"
    assert "\u03c7*" not in flow._caveat.text() and "\u03c7*" in flow._caveat.toolTip()

    def blue(button) -> float:
        img = button.grab().toImage()
        c = img.pixelColor(img.width() // 2, 3)
        return c.blue() - c.red()

    delta, grad = flow._buttons["delta"], flow._buttons["grad"]
    assert blue(delta) > blue(grad) + 40
    QTest.mouseClick(grad, Qt.MouseButton.LeftButton)
    assert flow.mode == "grad" and blue(grad) > blue(delta) + 40


def test_step_axes_end_at_the_last_step_after_play_and_reset_on_loading(qtbot, window,
                                                                        controller):
    loss, history = window.views["loss"], window.views["history"]
    controller.run_steps(37)
    controller.set_speed("quick")
    QTest.keyClick(window.canvas, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: controller.sim.step_count >= 45, timeout=20_000)
    QTest.keyClick(window.canvas, Qt.Key.Key_Space)
    last = controller.sim.step_count
    qtbot.waitUntil(lambda: loss.loss_plot.getViewBox().viewRange()[0][1] == last)
    qtbot.waitUntil(lambda: abs(history.plot.getPlotItem().getViewBox().viewRange()[0][1]
                                - (last + 0.5)) < 1e-9)
    window._open(Experiment("Fresh", "", uniform_spec(2, 2, 2, 4, "tanh"),
                            DataSpec(kind="xor", n_samples=60), TrainSpec()), None)
    qtbot.waitUntil(lambda: loss.loss_plot.getViewBox().viewRange()[0][1] <= 10.0)


def test_dragging_shows_where_it_lands(qtbot, window, controller):
    from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDragMoveEvent

    canvas = window.canvas
    controller.run_steps(1)
    qtbot.waitUntil(lambda: canvas.layer_pos(3).x() > canvas.layer_pos(1).x() + 10)
    vp = canvas.viewport()
    # a skip link being dragged: a rubber band from the layer to the pointer
    start, end = canvas.layer_pos(1), canvas.layer_pos(3)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(vp, QPoint((start.x() + end.x()) // 2, start.y() - 30))
    assert canvas._rubber.isVisible() and not canvas._rubber.path().isEmpty()
    band = canvas._rubber.path().boundingRect()
    (x0, x1), (y0, y1) = canvas.vb.viewRange()
    assert y0 <= band.top() and band.bottom() <= y1 and band.width() > 0.5  # all in view
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=end)
    assert not canvas._rubber.isVisible()
    # an activation chip over layer 2: that layer is outlined until the chip leaves
    mime = window.controls.chips["relu"].mime_data()
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier)
    pos = canvas.layer_pos(2)
    QApplication.sendEvent(vp, QDragEnterEvent(pos, *args))
    QApplication.sendEvent(vp, QDragMoveEvent(pos, *args))
    assert canvas.drop_layer == 2 and canvas._drop_box.isVisible()
    QApplication.sendEvent(vp, QDragLeaveEvent())
    assert canvas.drop_layer == 0 and not canvas._drop_box.isVisible()


def test_a_costly_decision_map_follows_once_the_steps_pause(qtbot, window, controller,
                                                           monkeypatch):
    import ui.views.boundary as boundary_module

    view = window.views["boundary"]
    controller.run_steps(1)
    qtbot.waitUntil(lambda: view._cost_per_point is not None)
    monkeypatch.setattr(boundary_module, "DEFER_ABOVE_SECONDS", 0.0)  # as if a deep net
    before = np.array(view.image.image, copy=True)
    QTest.keyClick(window.canvas, Qt.Key.Key_Right)  # one step by hand
    assert view._deferred  # not drawn inside the frame
    qtbot.waitUntil(lambda: not view._deferred, timeout=5000)  # drawn once steps pause
    assert view.image.image is not None and view.image.image.shape[:2] != before.shape[:2] \
        or not np.array_equal(view.image.image, before)


def test_the_heatmap_and_loss_show_the_whole_run_thinned(qtbot, qapp, tiny_experiment):
    from ui.controller import SimulationController
    from ui.views.history import GradientHistoryView
    from ui.views.loss import LossView

    c = SimulationController(tiny_experiment, history_capacity=40)
    view = GradientHistoryView(c)
    qtbot.addWidget(view)
    view.resize(400, 200)
    view.show()
    qtbot.waitExposed(view)
    for n in (15, 30, 7, 60, 90):  # past the ring, through several thinnings
        c.run_steps(n)
        view.render_snapshot(c.snapshot, force=True)
    c.pause()
    c.running_changed.emit(False)  # as when play stops: the axis ends at the last step
    view.render_snapshot(c.snapshot, force=True)
    steps = c.sim.history.steps()
    assert steps[0] == 1 and steps[-1] == 202 and len(steps) <= 40
    rect = view.image.mapRectToParent(view.image.boundingRect())
    assert rect.left() == pytest.approx(0.5) and rect.right() == pytest.approx(202.5)
    # the logs kept from frame to frame give the picture a fresh view computes
    fresh = GradientHistoryView(c)
    qtbot.addWidget(fresh)
    fresh.resize(400, 200)
    fresh.show()
    qtbot.waitExposed(fresh)
    fresh.render_snapshot(c.snapshot, force=True)
    view.render_snapshot(c.snapshot, force=True)
    assert view.image_data.shape == fresh.image_data.shape
    np.testing.assert_array_equal(view.image_data, fresh.image_data)
    # Reset starts over: nothing of the old run is drawn
    c.reset()
    c.run_steps(3)
    view.render_snapshot(c.snapshot, force=True)
    expected = np.log10(np.abs(c.sim.history.layer_series(0)[:, 0]))
    np.testing.assert_allclose(view.image_data[0, :3], expected, rtol=1e-6)
    loss = LossView(c)
    qtbot.addWidget(loss)
    loss.render_snapshot(c.snapshot, force=True)
    assert len(loss.curves["loss"][0].xData) == 3
    c.shutdown()


def test_hand_steps_then_a_pause_fit_the_step_axis(qtbot, window, controller):
    loss = window.views["loss"]
    for _ in range(13):
        QTest.keyClick(window.canvas, Qt.Key.Key_Right)
    assert controller.sim.step_count == 13
    qtbot.waitUntil(lambda: loss.loss_plot.getViewBox().viewRange()[0][1] == 13, timeout=5000)
