"""The gradient-flow view's mean-field line keeps its shape and moves with its anchor
(the output layer's measured ||delta||): drawn where the prediction is, every frame."""

import numpy as np
import pytest

pytest.importorskip("PySide6")

from simulator.theory import mean_field  # noqa: E402
from tests.ui.test_views import experiment, show  # noqa: E402
from ui.controller import SimulationController  # noqa: E402
from ui.views.flow import GradientFlowView  # noqa: E402

pytestmark = pytest.mark.qt


def test_the_line_follows_the_output_norm_each_frame(qtbot, qapp):
    c = SimulationController(experiment(depth=6, width=8))
    view = show(qtbot, GradientFlowView(c), (520, 320))
    ratio = np.log10(mean_field(c.sim.spec).predicted_ratio)
    c.step()
    data = view.prediction.getData()[1]
    anchors = set()
    for _ in range(4):
        c.step()
        out = np.log10(c.snapshot.delta_norm[-1])
        anchors.add(float(out))
        x, y = view.prediction_line()
        np.testing.assert_array_equal(x, np.arange(1, len(ratio) + 1))
        np.testing.assert_allclose(y, out + ratio, rtol=0, atol=1e-9)
        assert y[-1] == pytest.approx(out, abs=1e-12)
    assert len(anchors) > 1  # the anchor moved from frame to frame
    assert view.prediction.getData()[1] is data  # and the line was moved, not rebuilt
    c.shutdown()
    c.deleteLater()
