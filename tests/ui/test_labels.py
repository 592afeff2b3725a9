"""Numbers as the user reads them: ``fmt_sci`` against literal strings, literal labels on
the canvas and in the layer inspector, and the mean-field line of the gradient-flow view
at the heights the theory gives, layer by layer."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest
from PySide6.QtCore import Qt

from simulator.data import DataSpec
from simulator.experiment import Experiment, TrainSpec
from simulator.spec import LayerSpec, NetworkSpec
from simulator.theory import mean_field
from ui.controller import SimulationController
from ui.views import colors as C
from ui.views.canvas import NetworkCanvas
from ui.views.flow import GradientFlowView
from ui.views.inspector import LayerInspector

pytestmark = pytest.mark.qt

EN_DASH = "\u2013"
SCI = re.compile(r"^-?\d\.\de[+-]\d\d$")


FMT_CASES = [
    (3.1e-07, "3.1e-07"),
    (3.14159e-07, "3.1e-07"),
    (0.0, "0"),
    (-0.0, "0"),
    (0, "0"),
    (1.0, "1.0e+00"),
    (12345.0, "1.2e+04"),
    (9.96e-3, "1.0e-02"),
    (-2.5e-12, "-2.5e-12"),
    (-4.0, "-4.0e+00"),
    (1e300, "1.0e+300"),
    (5e-324, "4.9e-324"),
    (math.nan, EN_DASH),
    (np.float32("nan"), EN_DASH),
    (math.inf, "inf"),
    (-math.inf, "-inf"),
    (np.float32(3.0e-3), "3.0e-03"),
    (np.float64(0.5), "5.0e-01"),
    (None, EN_DASH),
    ("abc", EN_DASH),
]


def test_fmt_sci_literal_strings():
    shown = [C.fmt_sci(value) for value, _ in FMT_CASES]
    assert shown == [text for _, text in FMT_CASES]


def _experiment() -> Experiment:
    # layers that differ, so a label taken from the wrong layer shows
    spec = NetworkSpec(2, 2, hidden=(LayerSpec(6, "tanh"), LayerSpec(9, "relu"),
                                     LayerSpec(5, "sigmoid"), LayerSpec(7, "tanh")),
                       init="glorot_uniform")
    return Experiment(name="labels", description="", network=spec,
                      data=DataSpec(kind="spiral", n_samples=80),
                      training=TrainSpec(lr=0.1, batch_size=16), seed=2)


@pytest.fixture
def ctl(qapp):
    c = SimulationController(_experiment())
    yield c
    c.shutdown()
    c.deleteLater()


def _show(qtbot, view, size=(800, 420)):
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    qtbot.waitExposed(view)
    return view


# five weight layers: these norms, shown as these strings
NORMS = np.array([3.14159e-07, 0.0, np.nan, np.inf, 12345.0])
SHOWN = ["3.1e-07", "0", EN_DASH, "inf", "1.2e+04"]


def test_canvas_shows_literal_norm_labels(qtbot, ctl):
    canvas = _show(qtbot, NetworkCanvas(ctl))
    ctl.step()
    snap = replace(ctl.snapshot, delta_norm=NORMS)
    canvas.render_snapshot(snap)
    assert [canvas.layer_texts(k)[1] for k in range(1, 6)] == SHOWN
    assert canvas.layer_texts(0)[1] == ""  # the input has no delta


def test_canvas_labels_read_back_as_the_measured_norms(qtbot, ctl):
    """A real step: every label is in x.xe+yy form and reads back as its layer's norm
    to the two digits shown."""
    canvas = _show(qtbot, NetworkCanvas(ctl))
    ctl.run_steps(2)
    norms = ctl.snapshot.delta_norm
    for k in range(1, 6):
        text = canvas.layer_texts(k)[1]
        assert SCI.match(text), text
        assert float(text) == pytest.approx(norms[k - 1], rel=0.05)


def test_inspector_shows_literal_values(qtbot, ctl):
    view = _show(qtbot, LayerInspector(ctl), (420, 460))
    ctl.step()
    ctl.select_layer(2)
    snap = replace(ctl.snapshot, delta_norm=NORMS, grad_norm=NORMS[::-1].copy(),
                   update_ratio=np.array([1e-3, 2.5e-4, 0.0, 1.0, -7e-9]))
    view.render_snapshot(snap)
    assert view.layer == 2
    assert view.values["delta"].text() == "0"
    assert view.values["grad"].text() == "inf"
    assert view.values["update"].text() == "2.5e-04"
    assert view.values["width"].text() == "9"
    assert view.values["activation"].text() == "relu"
    ctl.select_layer(1)
    view.render_snapshot(snap)
    assert view.values["delta"].text() == "3.1e-07"
    assert view.values["grad"].text() == "1.2e+04"
    assert view.values["update"].text() == "1.0e-03"
    ctl.select_layer(3)
    view.render_snapshot(snap)
    assert view.values["delta"].text() == EN_DASH
    assert view.values["grad"].text() == EN_DASH


def test_inspector_value_reads_back_as_the_measured_norm(qtbot, ctl):
    view = _show(qtbot, LayerInspector(ctl), (420, 460))
    ctl.run_steps(2)
    for k in (1, 3, 5):
        ctl.select_layer(k)
        view.render_snapshot(ctl.snapshot)
        text = view.values["delta"].text()
        assert SCI.match(text), text
        assert float(text) == pytest.approx(ctl.snapshot.delta_norm[k - 1], rel=0.05)


def test_canvas_click_then_inspector_literal(qtbot, ctl):
    """The user clicks layer 4 on the canvas; the inspector shows that layer's norm."""
    canvas = _show(qtbot, NetworkCanvas(ctl))
    view = _show(qtbot, LayerInspector(ctl), (420, 460))
    ctl.step()
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=canvas.layer_pos(4))
    qtbot.waitUntil(lambda: ctl.selected_layer == 4)
    view.render_snapshot(replace(ctl.snapshot, delta_norm=NORMS))
    assert view.layer == 4 and view.values["delta"].text() == "inf"


# -- the mean-field line of the gradient-flow view -----------------------------------------------
@pytest.mark.parametrize("spec", [
    # narrow input: W1 is much smaller than the rest, so the line is far from level
    NetworkSpec(2, 2, hidden=tuple(LayerSpec(16, "tanh") for _ in range(6))),
    # widths and activations that differ: the ratios are not symmetric about the middle
    NetworkSpec(2, 4, hidden=(LayerSpec(12, "prelu"), LayerSpec(20, "sigmoid"),
                              LayerSpec(8, "tanh"), LayerSpec(30, "relu")), init="he_normal"),
], ids=["tanh_glorot", "mixed_he"])
def test_flow_prediction_line_is_anchored_at_the_output(qtbot, qapp, spec):
    exp = Experiment(name="flow", description="", network=spec,
                     data=DataSpec(kind="spiral", n_samples=80,
                                   classes=spec.output_dim),
                     training=TrainSpec(lr=0.05, batch_size=16), seed=1)
    c = SimulationController(exp)
    try:
        view = _show(qtbot, GradientFlowView(c), (520, 320))
        c.step()
        snap = c.snapshot
        x, y = view.prediction.getData()
        n = spec.depth + 1
        np.testing.assert_array_equal(x, np.arange(1, n + 1))
        ratio = mean_field(spec).predicted_ratio
        want = np.log10(snap.delta_norm[-1]) + np.log10(ratio)
        assert np.ptp(want) > 0.1  # a level line would not tell a reversal apart
        np.testing.assert_allclose(y, want, rtol=0, atol=1e-9)
        assert y[-1] == pytest.approx(np.log10(snap.delta_norm[-1]), abs=1e-12)
    finally:
        c.shutdown()
        c.deleteLater()
