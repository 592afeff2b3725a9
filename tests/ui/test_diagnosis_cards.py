"""The diagnosis panel's "faster hardware" card and its fast-mode button."""

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt  # noqa: E402

from simulator.diagnosis import WINDOW  # noqa: E402
from simulator.remedies import hardware_outlook  # noqa: E402
from simulator.snapshot import HIST_UPDATE_RATIO  # noqa: E402
from tests.ui.test_views import deep_sigmoid_controller, experiment, show  # noqa: E402
from ui.controller import SimulationController  # noqa: E402
from ui.views.diagnosis import DiagnosisPanel  # noqa: E402

pytestmark = pytest.mark.qt


def test_hardware_card_uses_the_lowest_layer_and_the_measured_speed(qtbot, qapp):
    c = deep_sigmoid_controller()
    panel = show(qtbot, DiagnosisPanel(c), (380, 700))
    c.step()
    assert panel.hardware.isVisible()
    assert "Play for a moment to measure" in panel.hardware.detail.text()  # no speed yet
    c.rate_changed.emit(1234.0)
    c.step()
    col = c.sim.history.layer_series(HIST_UPDATE_RATIO)[-WINDOW:, 0].astype(np.float64)
    expected = hardware_outlook(float(np.median(col[np.isfinite(col)])), 1234.0)
    assert panel.hardware.outlook == expected
    text = panel.hardware.detail.text()
    assert text == expected.text
    assert "1.23e+03 steps per second" in text and "hardware 1000x faster" in text
    # the card's button starts fast mode
    qtbot.mouseClick(panel.hardware.button, Qt.MouseButton.LeftButton)
    assert c.is_playing
    c.pause()
    qtbot.waitUntil(lambda: not c.is_playing)
    c.shutdown()
    c.deleteLater()


def test_hardware_card_only_with_a_vanishing_gradient(qtbot, qapp):
    c = SimulationController(experiment(depth=2, width=8, activation="relu", init="he_normal"))
    panel = show(qtbot, DiagnosisPanel(c), (380, 500))
    c.step()
    assert "vanishing" not in [card.kind for card in panel.cards]
    assert not panel.hardware.isVisible()
    c.shutdown()
    c.deleteLater()


def test_hardware_outlook_numbers():
    tiny = hardware_outlook(1e-15, 1000.0)
    assert tiny.steps == pytest.approx(1e14)
    assert tiny.seconds == pytest.approx((1e11, 1e10, 1e8))
    assert "No hardware closes a gap this wide" in tiny.text
    useful = hardware_outlook(1e-3, 1000.0)
    assert useful.steps == pytest.approx(100) and useful.seconds[0] == pytest.approx(0.1)
    assert "within reach" in useful.text and "0.1 s here" in useful.text
    assert hardware_outlook(math.nan, 1000.0) is None
    assert hardware_outlook(1e-3, math.nan) is None
