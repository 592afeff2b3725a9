"""The chain-rule factors panel: the per-layer curves follow the snapshot, and during a
micro-stepped backward pass the layer being computed shows its product, with the
numbers the core computed."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import Experiment, TrainSpec  # noqa: E402
from simulator.factors import format_factor  # noqa: E402
from simulator.spec import uniform_spec  # noqa: E402
from ui.app import MainWindow  # noqa: E402
from ui.controller import SimulationController  # noqa: E402
from ui.views.factors import FactorsView  # noqa: E402

pytestmark = pytest.mark.qt


def sigmoid_experiment(**net) -> Experiment:
    return Experiment(name="factors", description="",
                      network=uniform_spec(2, 2, 4, 6, "sigmoid", **net),
                      data=DataSpec(kind="spiral", n_samples=80),
                      training=TrainSpec(lr=0.1, batch_size=16), seed=0)


@pytest.fixture
def ctl(qapp):
    c = SimulationController(sigmoid_experiment())
    yield c
    c.shutdown()
    c.deleteLater()


def show(qtbot, view):
    qtbot.addWidget(view)
    view.resize(520, 480)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_curves_follow_the_snapshot_on_a_log_axis(qtbot, ctl):
    view = show(qtbot, FactorsView(ctl))
    snap = ctl.snapshot
    np.testing.assert_allclose(view.plotted("weight_factor"), np.log10(snap.weight_factor[:4]))
    local = view.plotted("local_factor")
    np.testing.assert_allclose(local, np.log10(snap.local_factor[:4]))
    assert np.all(local <= math.log10(0.25))  # sigmoid's phi' is at most 1/4
    assert view.plotted("norm_factor").size == 0  # no batch norm


def test_micro_stepped_backward_pass_shows_the_layer_being_computed(qtbot, ctl):
    view = show(qtbot, FactorsView(ctl))
    L = ctl.sim.spec.depth
    for _ in range(L + 2):  # forward 1..L+1, loss
        ctl.micro_step()
    ctl.micro_step()  # backward of the output layer: not a hidden layer
    seen = []
    for k in range(L, 0, -1):
        ctl.micro_step()
        snap = ctl.snapshot
        assert snap.phase == "backward" and snap.layer == k
        qtbot.waitUntil(lambda k=k: view.layer_shown == k and view.computing)
        shown = view.equation_values()
        i = k - 1
        assert shown["ahead"] == pytest.approx(snap.delta_norm[i + 1], rel=0.06)
        assert shown["result"] == pytest.approx(snap.delta_norm[i], rel=0.06)
        assert view.terms["weight"][1].text() == format_factor(snap.weight_factor[i])
        assert view.terms["local"][1].text() == format_factor(snap.local_factor[i])
        # the product of the two factors is the layer-to-layer ratio (no BN, no skips)
        ratio = snap.delta_norm[i] / snap.delta_norm[i + 1]
        assert snap.weight_factor[i] * snap.local_factor[i] == pytest.approx(ratio, rel=1e-9)
        bars = view.bar_fractions()
        assert bars["local"] < 0.5  # phi' <= 1/4 shrinks: the bar ends left of 1
        assert not view.terms["norm"][2].isVisible()
        assert "being computed" in view.title.text()
        seen.append(k)
    assert seen == list(range(L, 0, -1))
    ctl.micro_step()  # the update: no layer is being computed
    qtbot.waitUntil(lambda: not view.computing)


def test_batch_norm_adds_its_factor(qtbot, qapp):
    c = SimulationController(sigmoid_experiment(batchnorm=True))
    try:
        view = show(qtbot, FactorsView(c))
        snap = c.snapshot
        assert view.plotted("norm_factor").size == 4
        assert view.terms["norm"][2].isVisible()
        assert view.terms["norm"][1].text() == format_factor(snap.norm_factor[0])
    finally:
        c.shutdown()
        c.deleteLater()


def test_the_window_docks_the_panel_and_shift_right_drives_it(qtbot, controller, editor,
                                                              settings):
    window = MainWindow(controller, editor, settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    dock = window.docks["dock_factors"]
    view = window.views["factors"]
    assert isinstance(view, FactorsView)
    dock.raise_()
    qtbot.waitUntil(view.isVisible)
    window.canvas.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(lambda: window.canvas.hasFocus()
                    or window.canvas.isAncestorOf(QApplication.focusWidget()))
    target = QApplication.focusWidget()
    L = controller.sim.spec.depth
    for _ in range(L + 4):  # forward, loss, backward of the output layer and of layer L
        QTest.keyClick(target, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert controller.snapshot.phase == "backward" and controller.snapshot.layer == L
    qtbot.waitUntil(lambda: view.layer_shown == L and view.computing)
    snap = controller.snapshot
    assert view.terms["weight"][1].text() == format_factor(snap.weight_factor[L - 1])
