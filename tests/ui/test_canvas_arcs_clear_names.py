"""Skip arcs stand on top of the layer names: whatever the canvas size or zoom, no
arc crosses the (upright or flat) names above the units."""

import numpy as np
import pytest

pytest.importorskip("PySide6")

from PySide6.QtGui import QFontMetricsF  # noqa: E402

from tests.ui.test_views import experiment, show  # noqa: E402
from ui.controller import SimulationController  # noqa: E402
from ui.views.canvas import COL_HALF, NetworkCanvas  # noqa: E402

pytestmark = pytest.mark.qt


def _names_top_px(canvas) -> float:
    """Viewport y of the top of the tallest layer name (they start 8 px above the units;
    upright ones are as tall as their text, flat ones take two lines)."""
    labels = canvas._labels
    fm = QFontMetricsF(labels.font)
    units_top = canvas._to_viewport(0.0, COL_HALF).y()
    spacing = canvas._px_per_layer()
    if spacing >= labels._widest + 8:
        return units_top - 8 - 2 * fm.height()
    return units_top - 8 - max(fm.horizontalAdvance(t) for t in labels.vertical_texts)


def _arcs_lowest_px(canvas) -> float:
    o, one = canvas._to_viewport(0.0, 0.0), canvas._to_viewport(1.0, 1.0)
    return float((o.y() + canvas._arc_pts[..., 1] * (one.y() - o.y())).max())


@pytest.mark.parametrize("size", [(450, 350), (900, 480), (700, 260)])
def test_arcs_start_above_the_names(qtbot, qapp, size):
    c = SimulationController(experiment(depth=12, width=8, activation="softsign"))
    canvas = show(qtbot, NetworkCanvas(c), size)
    c.apply(lambda s: (s.add_skip(0, 4), s.add_skip(1, 3), s.add_skip(3, 12)))
    assert len(canvas.skip_links()) == 3
    assert _arcs_lowest_px(canvas) < _names_top_px(canvas)  # image y grows downwards
    # the highest arc is still in view
    top = float(canvas._arc_pts[..., 1].max())
    assert top <= canvas.vb.viewRange()[1][1]
    # zooming out shrinks the data but not the names: the arcs move up with them
    canvas.vb.scaleBy((1.6, 1.6))
    qtbot.waitUntil(lambda: _arcs_lowest_px(canvas) < _names_top_px(canvas), timeout=2000)
    # and the apex of each arc is still what skip_pos reports
    for (i, j), row in canvas._arcs.items():
        pts = canvas._arc_pts[row]
        apex = canvas.skip_pos(i, j)
        x, y = pts[len(pts) // 2]
        assert apex == canvas._to_viewport(float(x), float(y))
    assert np.isfinite(canvas._arc_pts).all()
    c.shutdown()
    c.deleteLater()
