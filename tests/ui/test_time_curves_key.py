"""The held-out curves of the through-time view carry their key in the axis label, not
in a legend box drawn over the curves."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import pyqtgraph as pg  # noqa: E402

from simulator.experiment import TrainSpec  # noqa: E402
from simulator.recurrent.experiment import RecurrentExperiment  # noqa: E402
from simulator.recurrent.tasks import TaskSpec  # noqa: E402
from ui.views.through_time import ThroughTimeController, ThroughTimeWindow  # noqa: E402

pytestmark = pytest.mark.qt


def test_the_curves_key_is_beside_the_plot_not_on_it(qtbot):
    exp = RecurrentExperiment.build(
        "key (test)", TaskSpec(kind="adding", lag=5, n_samples=40), TrainSpec(batch_size=8),
        cell="lstm", hidden=4, compare=("rnn", "lstm", "gru"))
    w = ThroughTimeWindow(ThroughTimeController(exp))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: len(w.controller.snapshots) == 3, timeout=300_000)
    plot = w.curves_plot.getPlotItem()
    assert not any(isinstance(i, pg.LegendItem) for i in plot.scene().items()
                   if i.parentItem() is plot or i.parentItem() is plot.vb)
    assert plot.legend is None
    label = plot.getAxis("bottom").labelText
    assert all(name in label for name in ("tanh RNN", "LSTM", "GRU"))
    w.close()


def test_an_underflowed_ratio_reads_as_underflow_not_as_zero(qtbot):
    from dataclasses import replace

    import numpy as np

    from simulator.recurrent.simulation import RecurrentSimulation
    from ui.views.through_time import CellColumn

    exp = RecurrentExperiment.build("u", TaskSpec(kind="adding", lag=5, n_samples=16),
                                    TrainSpec(batch_size=4), cell="rnn", hidden=3)
    norms = np.array([0.0, 1e-30, 1e-20, 1e-10, 1.0])
    snap = replace(RecurrentSimulation(exp).snapshot(), hidden_grad_norms=norms)
    col = CellColumn("rnn")
    qtbot.addWidget(col)
    col.render(snap, None, (-40.0, 0.0))
    assert "||dL/dh_1|| / ||dL/dh_T|| = 0 (underflow)" in col.numbers.text()
    col.render(replace(snap, hidden_grad_norms=norms + 1e-12), None, (-40.0, 0.0))
    assert "= 1.0e-12" in col.numbers.text()


def test_before_any_score_the_curves_span_whole_decades_then_auto_range(qtbot):
    exp = RecurrentExperiment.build(
        "range (test)", TaskSpec(kind="adding", lag=5, n_samples=40),
        TrainSpec(batch_size=8), cell="gru", hidden=4)
    w = ThroughTimeWindow(ThroughTimeController(exp))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.buttons["step"].isEnabled(), timeout=300_000)
    vb = w.curves_plot.getPlotItem().vb
    lo, hi = vb.viewRange()[1]  # log10 units: the baseline 1/6 lies in [-2, 0.2]
    assert (lo, hi) == pytest.approx((-2.0, 0.2)) and hi - lo >= 1.0
    assert not vb.autoRangeEnabled()[1]
    w.controller.play()
    qtbot.waitUntil(lambda: any(len(s) > 1 for s, _ in w.controller.curves.values()),
                    timeout=60_000)
    w.controller.pause()
    qtbot.waitUntil(lambda: vb.autoRangeEnabled()[1], timeout=10_000)
    w.close()
