"""The compare window's loss plot keeps its key off the data, and B's pretraining plot
says why it is empty until there is a reconstruction loss to draw."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from simulator.spec import LayerSpec, NetworkSpec  # noqa: E402
from tests.ui.test_compare_window import accept_pretrain_settings  # noqa: E402, F401
from ui.compare_window import (  # noqa: E402
    COLOR_A,
    COLOR_B,
    RECON_HINT_NONE,
    RECON_HINT_WAITING,
    CompareWindow,
)

pytestmark = pytest.mark.qt


def _window(qtbot, experiment) -> CompareWindow:
    w = CompareWindow(experiment)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_the_loss_key_is_in_the_title_not_over_the_curves(qtbot, tiny_experiment):
    w = _window(qtbot, tiny_experiment)
    qtbot.mouseClick(w.button_step, Qt.MouseButton.LeftButton)
    item = w.loss_plot.getPlotItem()
    assert item.legend is None  # nothing drawn inside the plot's view
    title = item.titleLabel.text
    assert "Training loss" in title
    assert f"color: {COLOR_A}'>\u2014 A" in title and f"color: {COLOR_B}'>\u2014 B" in title
    assert w.loss_a.opts["pen"].color().name() == COLOR_A
    assert w.loss_b.opts["pen"].color().name() == COLOR_B
    w.close()


def test_the_pretraining_plot_says_why_it_is_empty(qtbot, tiny_experiment):
    w = _window(qtbot, tiny_experiment)  # B not pretrained
    assert w.recon_stack.currentWidget() is w.recon_hint
    assert w.recon_hint.text() == RECON_HINT_NONE and w.recon_hint.isVisible()
    qtbot.mouseClick(w.button_step, Qt.MouseButton.LeftButton)
    assert w.recon_hint.isVisible()  # still nothing to draw
    w.close()

    spec = NetworkSpec(2, 2, hidden=tuple(LayerSpec(8, "sigmoid") for _ in range(2)))
    w = _window(qtbot, replace(tiny_experiment, network=spec))
    qtbot.mouseClick(w.button_pretrain, Qt.MouseButton.LeftButton)
    assert w.driver.comparison.b_pretraining
    assert w.recon_hint.text() == RECON_HINT_WAITING and w.recon_hint.isVisible()
    qtbot.mouseClick(w.button_step, Qt.MouseButton.LeftButton)  # B's first pretraining step
    assert w.recon_stack.currentWidget() is w.recon_plot and w.recon_plot.isVisible()
    assert not w.recon_hint.isVisible()
    x, y = w.recon_curves[0].getData()  # log axis: log10 of the loss
    first = w.driver.comparison.pretrainer.loss_history(1)[0]
    assert len(x) == 1 and 10 ** y[0] == pytest.approx(first, rel=1e-9)
    w.close()
