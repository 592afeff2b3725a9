"""The views: build the model, build the view, change the model, check the view; and
the reverse for the canvas and the diagnosis panel (mouse in, signal out)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import (  # noqa: E402
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QWheelEvent,
)
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QInputDialog, QLabel, QPushButton  # noqa: E402

from simulator import glossary  # noqa: E402
from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import Experiment, TrainSpec  # noqa: E402
from simulator.snapshot import Snapshot  # noqa: E402
from simulator.spec import ACTIVATIONS, uniform_spec  # noqa: E402
from ui.controller import SimulationController  # noqa: E402
from ui.views import colors as C  # noqa: E402
from ui.views.boundary import DecisionBoundaryView  # noqa: E402
from ui.views.canvas import ACTIVATION_MIME, MAX_SHOWN_UNITS, NetworkCanvas  # noqa: E402
from ui.views.diagnosis import DiagnosisPanel  # noqa: E402
from ui.views.flow import GradientFlowView  # noqa: E402
from ui.views.history import GradientHistoryView  # noqa: E402
from ui.views.inspector import LayerInspector  # noqa: E402
from ui.views.loss import LossView  # noqa: E402

pytestmark = pytest.mark.qt

VIEWS = (NetworkCanvas, GradientFlowView, GradientHistoryView, LossView, DecisionBoundaryView,
         LayerInspector, DiagnosisPanel)


def experiment(depth=4, width=8, activation="tanh", data=None, **net) -> Experiment:
    return Experiment(
        name="views", description="",
        network=uniform_spec(2, 2, depth, width, activation, **net),
        data=data or DataSpec(kind="spiral", n_samples=100),
        training=TrainSpec(lr=0.1, batch_size=16), seed=0)


@pytest.fixture
def ctl(qapp):
    c = SimulationController(experiment())
    yield c
    c.shutdown()
    c.deleteLater()


def show(qtbot, view, size=(900, 480)):
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    qtbot.waitExposed(view)
    return view


def backward_micro_steps(ctl):
    """Micro-step into a fresh iteration and yield the snapshot of every backward step."""
    n = len(ctl.snapshot.delta_norm)
    while ctl.sim.position != 0:
        ctl.micro_step()
    for _ in range(n + 1):  # forward 1..N, loss
        ctl.micro_step()
    for _ in range(n):
        ctl.micro_step()
        yield ctl.snapshot


# -- every view -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", VIEWS, ids=lambda c: c.__name__)
def test_view_waits_for_the_simulation_then_draws_it(qtbot, qapp, cls):
    c = SimulationController(experiment(), build_now=False)
    view = show(qtbot, cls(c), (600, 400))
    texts = [w.text() for w in view.findChildren(QLabel) if w.isVisibleTo(view)]
    assert any("Compiling" in t for t in texts)
    c._build(c._experiment0)  # what build_in_background does when it finishes
    c.run_steps(3)
    view.render_snapshot(c.snapshot)
    assert not any("Compiling" in w.text() for w in view.findChildren(QLabel)
                   if w.isVisibleTo(view))
    view.grab()
    view.close()
    c.snapshot_changed.emit(c.snapshot)  # a closed view no longer listens (nor crashes)
    c.shutdown()
    c.deleteLater()


# -- the canvas -------------------------------------------------------------------------------
def test_canvas_draws_every_layer_with_headers_and_norms(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    spec = ctl.sim.spec
    assert canvas.n_columns == spec.depth + 2
    assert canvas.layer_texts(0)[0] == "in" and canvas.layer_texts(spec.depth + 1)[0] == "out"
    assert canvas.layer_texts(1)[0] == "tanh"
    ctl.step()
    snap = ctl.snapshot
    for k in range(1, spec.depth + 2):
        assert canvas.layer_texts(k)[1] == C.fmt_sci(snap.delta_norm[k - 1])
    xs = [canvas.layer_pos(k).x() for k in range(spec.depth + 2)]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)


def test_backward_highlight_moves_from_output_to_input(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    ctl.step()
    seen = []
    for snap in backward_micro_steps(ctl):
        assert snap.phase == "backward"
        assert canvas.highlighted_layer == snap.layer
        assert canvas.highlight_color == C.BACKWARD
        header, norm = canvas.layer_texts(snap.layer)
        assert norm == C.fmt_sci(snap.delta_norm[snap.layer - 1])
        seen.append(canvas.highlighted_layer)
    n = ctl.sim.spec.depth + 1
    assert seen == list(range(n, 0, -1))
    ctl.micro_step()  # the update: nothing is highlighted
    assert canvas.highlighted_layer == 0


def test_forward_phase_highlights_in_another_colour(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    ctl.micro_step()
    assert ctl.snapshot.phase == "forward" and ctl.snapshot.layer == 1
    assert canvas.highlighted_layer == 1 and canvas.highlight_color == C.FORWARD


def _has_colour_near(image, center: QPoint, color: str, half_w: int, half_h: int,
                     tol: int = 40) -> bool:
    target = QColor(color)
    for y in range(center.y() - half_h, center.y() + half_h, 2):
        for x in range(center.x() - half_w, center.x() + half_w + 1):
            if not (0 <= x < image.width() and 0 <= y < image.height()):
                continue
            c = QColor(image.pixel(x, y))
            if (abs(c.red() - target.red()) + abs(c.green() - target.green())
                    + abs(c.blue() - target.blue())) < tol:
                return True
    return False


def test_highlighted_column_is_drawn_in_the_highlight_colour(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    ctl.step()
    snaps = backward_micro_steps(ctl)
    next(snaps)
    snap = next(snaps)  # backward at layer L
    k = snap.layer
    image = canvas.viewport().grab().toImage()
    assert _has_colour_near(image, canvas.layer_pos(k), C.BACKWARD, 3, 60)
    # the neighbouring column, not highlighted, has none of it
    assert not _has_colour_near(image, canvas.layer_pos(k - 2), C.BACKWARD, 3, 60)


def test_adding_skips_draws_identity_and_projection_arcs(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    assert canvas.skip_links() == {}
    ctl.apply(lambda s: s.add_skip(1, 3))
    assert canvas.skip_links() == {(1, 3): "identity"}
    ctl.apply(lambda s: s.add_skip(0, 2))  # 2 inputs -> 8 units: a learned projection
    assert canvas.skip_links() == {(1, 3): "identity", (0, 2): "projection"}
    ctl.apply(lambda s: s.remove_skip(1, 3))
    assert list(canvas.skip_links()) == [(0, 2)]


def drag(vp, start: QPoint, end: QPoint) -> None:
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, pos=start)
    for t in (0.2, 0.4, 0.6, 0.8, 1.0):
        QTest.mouseMove(vp, QPoint(int(start.x() + t * (end.x() - start.x())),
                                   int(start.y() + t * (end.y() - start.y()))))
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=end)


def test_dragging_between_layers_asks_for_a_skip(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    vp = canvas.viewport()
    with qtbot.waitSignal(canvas.skip_requested) as blocker:
        drag(vp, canvas.layer_pos(1), canvas.layer_pos(3))
    assert blocker.args == [1, 3]
    with qtbot.waitSignal(canvas.skip_requested) as blocker:  # from the input, backwards
        drag(vp, canvas.layer_pos(4), canvas.layer_pos(0))
    assert blocker.args == [0, 4]
    with qtbot.assertNotEmitted(canvas.skip_requested):
        drag(vp, canvas.layer_pos(2), canvas.layer_pos(5))  # the output layer: not a target
        drag(vp, canvas.layer_pos(2), canvas.layer_pos(2) + QPoint(0, 400))  # empty space
    ctl.apply(lambda s: s.add_skip(1, 3))
    with qtbot.assertNotEmitted(canvas.skip_requested):
        drag(vp, canvas.layer_pos(1), canvas.layer_pos(3))  # already there
    assert not canvas._rubber.isVisible()


def test_clicking_a_layer_selects_it(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    with qtbot.waitSignal(ctl.selection_changed) as blocker:
        QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=canvas.layer_pos(2))
    assert blocker.args == [2] and ctl.selected_layer == 2


def _action(menu, *path):
    for text in path[:-1]:
        menu = next(a.menu() for a in menu.actions() if a.text() == text)
    return next(a for a in menu.actions() if a.text() == path[-1])


def test_layer_context_menu_emits_the_edits(qtbot, ctl, monkeypatch):
    canvas = show(qtbot, NetworkCanvas(ctl))
    pos = canvas.layer_pos(2)
    menu = canvas.context_menu_for(pos)
    acts = _action(menu, "Activation", "tanh").parent()
    names = [a.text() for a in menu.actions()[1].menu().actions()]
    assert names == list(ACTIVATIONS) and acts is not None
    assert _action(menu, "Activation", "tanh").isChecked()
    with qtbot.waitSignal(canvas.activation_requested) as blocker:
        _action(menu, "Activation", "relu").trigger()
    assert blocker.args == [2, "relu"]
    menu = canvas.context_menu_for(pos)
    assert not _action(menu, "Batch norm").isChecked()
    with qtbot.waitSignal(canvas.batchnorm_requested) as blocker:
        _action(menu, "Batch norm").trigger()
    assert blocker.args == [2, True]
    monkeypatch.setattr(QInputDialog, "getInt", staticmethod(lambda *a, **k: (24, True)))
    with qtbot.waitSignal(canvas.width_requested) as blocker:
        _action(canvas.context_menu_for(pos), "Change width\u2026").trigger()
    assert blocker.args == [2, 24]
    with qtbot.waitSignal(canvas.insert_layer_requested) as blocker:
        _action(canvas.context_menu_for(pos), "Insert layer above").trigger()
    assert blocker.args == [2]
    with qtbot.waitSignal(canvas.delete_layer_requested) as blocker:
        _action(canvas.context_menu_for(pos), "Delete layer").trigger()
    assert blocker.args == [2]
    assert canvas.context_menu_for(canvas.layer_pos(5)) is None  # output layer
    assert canvas.context_menu_for(QPoint(2, canvas.height() - 3)) is None  # empty corner


def test_delete_is_disabled_for_the_only_hidden_layer(qtbot, qapp):
    c = SimulationController(experiment(depth=1))
    canvas = show(qtbot, NetworkCanvas(c))
    assert not _action(canvas.context_menu_for(canvas.layer_pos(1)), "Delete layer").isEnabled()
    c.shutdown()
    c.deleteLater()


def test_right_click_on_an_arc_offers_to_remove_it(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    ctl.apply(lambda s: s.add_skip(1, 3))
    menu = canvas.context_menu_for(canvas.skip_pos(1, 3))
    assert [a.text() for a in menu.actions()] == ["Remove skip link"]
    with qtbot.waitSignal(canvas.skip_remove_requested) as blocker:
        menu.actions()[0].trigger()
    assert blocker.args == [1, 3]


def _drop(canvas, pos: QPoint, name: str) -> None:
    mime = QMimeData()
    mime.setData(ACTIVATION_MIME, name.encode())
    vp = canvas.viewport()
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(pos, *args)
    QApplication.sendEvent(vp, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(vp, QDragMoveEvent(pos, *args))
    QApplication.sendEvent(vp, QDropEvent(QPointF(pos), *args))


def test_dropping_an_activation_chip(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    with qtbot.waitSignal(canvas.activation_requested) as blocker:
        _drop(canvas, canvas.layer_pos(3), "elu")
    assert blocker.args == [3, "elu"]
    all_layers = canvas.mapFromScene(canvas._drop_all.sceneBoundingRect().center())
    with qtbot.waitSignal(canvas.activation_requested) as blocker:
        _drop(canvas, all_layers, "selu")
    assert blocker.args == [0, "selu"]
    with qtbot.assertNotEmitted(canvas.activation_requested):
        _drop(canvas, canvas.layer_pos(3), "not_an_activation")
        _drop(canvas, canvas.layer_pos(5), "relu")  # the output layer has no activation


def test_hover_tooltips_give_the_numbers(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    ctl.step()
    pos = canvas.layer_pos(2)
    text = canvas.tooltip_at(QPoint(pos.x() + 1, canvas.layer_pos(2).y() + 300))
    assert text == ""  # far below the column: nothing there
    # the column's centre lies between two of its 8 units: the layer read-out
    layer_text = canvas.tooltip_at(pos)
    assert "Layer 2" in layer_text and "||\u03b4||" in layer_text and "update ratio" in layer_text
    top_unit = canvas._to_viewport(2.0, float(canvas._unit_y[2][0]))
    assert "mean |\u03b4|" in canvas.tooltip_at(top_unit)


def test_wheel_zooms_and_double_click_fits(qtbot, ctl):
    canvas = show(qtbot, NetworkCanvas(ctl))
    fitted = canvas.vb.viewRange()
    pos = canvas.layer_pos(2)
    wheel = QWheelEvent(QPointF(pos), QPointF(canvas.viewport().mapToGlobal(pos)), QPoint(0, 0),
                        QPoint(0, 240), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas.viewport(), wheel)
    zoomed = canvas.vb.viewRange()
    assert zoomed[0][1] - zoomed[0][0] < fitted[0][1] - fitted[0][0]
    QTest.mouseDClick(canvas.viewport(), Qt.MouseButton.LeftButton,
                      pos=QPoint(5, canvas.viewport().height() - 5))
    np.testing.assert_allclose(canvas.vb.viewRange(), fitted, rtol=1e-6)


def test_wide_deep_network_is_sampled_and_draws_quickly(qtbot, qapp):
    """200 layers of 1024 units: at most 12 units per column, and a frame in well under
    a second (a synthetic snapshot: training such a net is not what is tested here)."""
    c = SimulationController(experiment(), build_now=False)
    canvas = show(qtbot, NetworkCanvas(c), (1200, 600))
    spec = uniform_spec(2, 2, 200, 1024, "sigmoid")
    snap = fake_snapshot(spec, phase="backward", layer=120)
    t0 = time.perf_counter()
    canvas.render_snapshot(snap)
    canvas.grab()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    canvas.render_snapshot(fake_snapshot(spec, phase="backward", layer=119))
    canvas.grab()
    again = time.perf_counter() - t0
    assert canvas.shown_units(5) == MAX_SHOWN_UNITS and canvas.shown_units(0) == 2
    assert canvas.highlighted_layer == 119
    assert first < 3.0 and again < 1.0, (first, again)
    c.deleteLater()


def fake_snapshot(spec, phase="ready", layer=0, zeros=False):
    rng = np.random.default_rng(0)
    n = spec.depth + 1
    widths = spec.widths
    norms = np.zeros(n) if zeros else 10.0 ** -np.linspace(8, 1, n)
    per_layer = {name: np.full(n, 0.1) for name in (
        "bias_grad_norm", "weight_norm", "update_ratio", "weight_change", "dead_fraction",
        "saturated_fraction", "act_mean", "act_std")}
    done = np.zeros(n, bool)
    if phase == "backward":
        done[layer - 1:] = True
    return Snapshot(
        spec=spec, step=1, phase=phase, layer=layer, micro_index=0, batch_size=4,
        loss=0.5, accuracy=0.5, val_loss=np.nan, val_accuracy=np.nan,
        delta_norm=norms, grad_norm=norms.copy(), backward_done=done,
        activations=(), deltas=(), weights=(), weight_grads=(),
        unit_delta=tuple(rng.random(w) * norms[i] for i, w in enumerate(widths[1:])),
        **per_layer)


# -- gradient flow ----------------------------------------------------------------------------
def test_flow_bars_follow_the_norms_and_the_micro_step(qtbot, ctl):
    view = show(qtbot, GradientFlowView(ctl), (500, 300))
    n = ctl.sim.spec.depth + 1
    ctl.run_steps(5)
    heights = view.bar_heights()
    assert len(heights) == n
    logs = np.log10(ctl.snapshot.delta_norm)
    np.testing.assert_allclose(np.diff(heights), np.diff(logs), rtol=1e-6, atol=1e-9)
    assert view.plot.getPlotItem().getAxis("left").labelText == "log10 ||\u03b4||"
    labels = [label.text for _, label in view.legend.items]
    assert "mean-field prediction" in labels and view.prediction.isVisible()
    assert len(view.prediction.getData()[0]) == n
    for snap in backward_micro_steps(ctl):
        assert view.highlighted_layer() == snap.layer
    view._buttons["grad"].click()
    assert view.mode == "grad"
    assert view.plot.getPlotItem().getAxis("left").labelText == "log10 ||dL/dW||"
    assert not view.prediction.isVisible()
    np.testing.assert_allclose(np.diff(view.bar_heights()),
                               np.diff(np.log10(ctl.snapshot.grad_norm)), rtol=1e-6, atol=1e-9)


def test_flow_survives_zero_norms(qtbot, ctl):
    view = show(qtbot, GradientFlowView(ctl), (500, 300))
    snap = fake_snapshot(ctl.sim.spec, zeros=True)
    view.render_snapshot(snap)
    assert np.all(view.bar_heights() == 0)
    assert len(view.floor_marks.data) == ctl.sim.spec.depth + 1
    assert not view.prediction.isVisible()  # nothing to scale it to
    view.grab()


def test_flow_caveats_mention_skips(qtbot, ctl):
    view = show(qtbot, GradientFlowView(ctl), (500, 300))
    ctl.apply(lambda s: s.add_skip(1, 3))
    assert "Skip links" in view._caveat.toolTip()


# -- gradient history -------------------------------------------------------------------------
def test_history_heatmap_grows_with_training_and_layers(qtbot, ctl):
    view = show(qtbot, GradientHistoryView(ctl), (600, 300))
    n = ctl.sim.spec.depth + 1
    ctl.run_steps(30)
    assert view.image_data.shape == (n, 30)
    assert view.image_data.dtype == np.float32
    expected = np.log10(ctl.sim.history.layer_series(0)[:, 0])
    np.testing.assert_allclose(view.image_data[0], expected, rtol=1e-5)
    lo, hi = view.image.getLevels()
    assert lo < hi and view.colorbar.levels() == (lo, hi)
    version = view._version
    view.render_snapshot(ctl.snapshot)  # nothing new: nothing re-read
    assert view._version == version
    ctl.apply(lambda s: s.insert_layer(2, s.spec.hidden[0]))
    assert view.image_data.shape == (n + 1, 30)


def test_history_is_squeezed_to_the_pixels(qtbot, qapp):
    c = SimulationController(experiment(depth=2, width=4))
    view = show(qtbot, GradientHistoryView(c), (300, 200))
    c.run_steps(1500)
    cols = view.image_data.shape[1]
    assert cols <= max(64, view.plot.getPlotItem().getViewBox().width()) + 1
    assert view.steps_per_column > 1
    c.shutdown()
    c.deleteLater()


# -- loss -------------------------------------------------------------------------------------
def test_loss_curves_follow_the_history(qtbot, ctl):
    view = show(qtbot, LossView(ctl), (500, 350))
    ctl.run_steps(25)
    x, y = view.curves["loss"][0].getData()
    # the plot may downsample; the full data is what the item holds
    xs, ys = view.curves["loss"][0].xData, view.curves["loss"][0].yData
    assert len(xs) == 25 and np.allclose(ys, ctl.sim.history.scalar("loss"))
    hx, hy = view.curves["loss"][1].xData, view.curves["loss"][1].yData
    assert 0 < len(hx) < 25 and np.all(np.isfinite(hy))
    ax = view.curves["accuracy"][0].yData
    assert len(ax) == 25 and np.nanmax(ax) <= 1.0
    labels = [label.text for _, label in view.legend.items]
    assert labels == ["training batches", "held-out set"]


# -- decision boundary ------------------------------------------------------------------------
def test_boundary_image_covers_the_data(qtbot, ctl):
    view = show(qtbot, DecisionBoundaryView(ctl), (400, 400))
    image = view.image.image
    assert image is not None and image.ndim == 3 and image.shape[2] == 3
    ds = ctl.sim.dataset
    rect = view.image.mapRectToParent(view.image.boundingRect())
    assert rect.left() < ds.X_train[:, 0].min() and rect.right() > ds.X_train[:, 0].max()
    assert len(view.train_points.data) == ds.n_train
    assert len(view.test_points.data) == ds.n_test
    before = image.copy()
    ctl.run_steps(50)
    assert not np.array_equal(before, view.image.image)
    assert view.last_update_seconds < 0.5


def test_boundary_explains_itself_for_other_data(qtbot, qapp):
    exp = experiment(data=DataSpec(kind="highdim", dims=5, n_samples=100))
    exp = Experiment(exp.name, "", uniform_spec(5, 2, 2, 8), exp.data, exp.training)
    c = SimulationController(exp)
    view = show(qtbot, DecisionBoundaryView(c), (400, 300))
    assert view._message.isVisibleTo(view)
    assert "needs 2-D input data (this data set has 5 features)" in view._message.text()
    c.shutdown()
    c.deleteLater()


def test_boundary_is_throttled_while_playing(qtbot, ctl, monkeypatch):
    view = show(qtbot, DecisionBoundaryView(ctl), (400, 400))
    calls = []
    real = ctl.predict
    monkeypatch.setattr(ctl, "predict", lambda X: calls.append(len(X)) or real(X))
    monkeypatch.setattr(type(ctl), "is_playing", property(lambda self: True))
    for _ in range(10):
        ctl.step()
        view.render_snapshot(ctl.snapshot)
    assert len(calls) <= 2


# -- inspector --------------------------------------------------------------------------------
def test_inspector_follows_the_selection(qtbot, ctl):
    view = show(qtbot, LayerInspector(ctl), (420, 420))
    ctl.step()
    assert view.layer == 1 and "Layer 1" in view.title.text()
    ctl.select_layer(3)
    assert view.layer == 3 and "Layer 3" in view.title.text()
    snap = ctl.snapshot
    assert view.values["delta"].text() == C.fmt_sci(snap.delta_norm[2])
    assert view.values["activation"].text() == "tanh"
    counts, edges = snap.histogram("weights", 3)
    x, y = view.curves["weights"].getData()
    np.testing.assert_allclose(y, counts)
    ctl.select_layer(5)
    assert "Output layer" in view.title.text()


# -- diagnosis --------------------------------------------------------------------------------
def deep_sigmoid_controller():
    spec = uniform_spec(2, 2, 10, 16, "sigmoid", init="uniform_fanin")
    exp = Experiment("deep sigmoid", "", spec,
                     DataSpec(kind="spiral", n_samples=100), TrainSpec(lr=0.1, batch_size=16))
    return SimulationController(exp)


def test_diagnosis_cards_buttons_and_links(qtbot, qapp):
    c = deep_sigmoid_controller()
    panel = show(qtbot, DiagnosisPanel(c), (380, 600))
    c.step()
    kinds = [card.kind for card in panel.cards]
    assert "vanishing" in kinds
    card = panel.cards[kinds.index("vanishing")]
    assert "Layer" in card.detail.text() and "e-" in card.detail.text()
    button = next(b for b in card.buttons if "ReLU" in b.text())
    assert button.toolTip()
    with qtbot.waitSignal(panel.remedy_requested) as blocker:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["relu"]
    with qtbot.waitSignal(panel.help_requested) as blocker:
        card.why.linkActivated.emit("why")
    assert blocker.args[0] in glossary.TOPICS
    # the same findings again: the cards (and their buttons) are kept
    cards = list(panel.cards)
    c.step()
    assert panel.cards == cards
    c.shutdown()
    c.deleteLater()


def test_diagnosis_shows_divergence_prominently(qtbot, qapp):
    exp = Experiment("boom", "", uniform_spec(2, 2, 6, 8, "linear", gain=6.0),
                     DataSpec(kind="xor", n_samples=100), TrainSpec(lr=50.0, batch_size=16))
    c = SimulationController(exp)
    panel = show(qtbot, DiagnosisPanel(c), (380, 500))
    boundary = show(qtbot, DecisionBoundaryView(c), (300, 300))  # predicts on inf weights
    canvas = show(qtbot, NetworkCanvas(c), (600, 300))
    for _ in range(50):
        c.step()
        if c.snapshot.divergence is not None:
            break
    assert c.snapshot.divergence is not None
    assert panel.banner.isVisible() and "diverged" in panel.banner.text()
    assert [card.kind for card in panel.cards] == ["diverged"]
    assert any(isinstance(b, QPushButton) for b in panel.cards[0].buttons)
    boundary.grab()
    canvas.grab()
    c.shutdown()
    c.deleteLater()


def test_a_tooltip_event_on_the_viewport_shows_the_layer_text(qtbot, ctl):
    """The real hover path: a ToolTip event on the viewport goes through the canvas's
    event filter, which shows the same text tooltip_at computes."""
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QHelpEvent
    from PySide6.QtWidgets import QApplication, QToolTip

    canvas = NetworkCanvas(ctl)
    qtbot.addWidget(canvas)
    canvas.resize(900, 500)
    canvas.show()
    qtbot.waitExposed(canvas)
    ctl.step()
    pos = canvas.layer_pos(2)
    event = QHelpEvent(QEvent.Type.ToolTip, pos, canvas.viewport().mapToGlobal(pos))
    QApplication.sendEvent(canvas.viewport(), event)
    assert QToolTip.isVisible()
    assert QToolTip.text() == canvas.tooltip_at(pos)
    QToolTip.hideText()
