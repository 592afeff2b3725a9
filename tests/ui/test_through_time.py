"""The through-time window: buttons drive every compared cell, the bars show the
per-time-step norms, the backward pulse runs from the last step to the first, and
the main window opens the mode from its View menu."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from simulator.experiment import TrainSpec  # noqa: E402
from simulator.recurrent.experiment import RecurrentExperiment  # noqa: E402
from simulator.recurrent.tasks import TaskSpec  # noqa: E402
from ui.views.through_time import ThroughTimeController, ThroughTimeWindow  # noqa: E402

pytestmark = pytest.mark.qt
LAG = 6


def small_experiment(lag=LAG) -> RecurrentExperiment:
    task = TaskSpec(kind="adding", lag=lag, n_samples=40, seed=0)
    return RecurrentExperiment.build("small (test)", task, TrainSpec(
        optimizer="adam", lr=0.01, batch_size=8, clip_norm=1.0), cell="lstm", hidden=4,
        compare=("rnn", "lstm", "gru"))


@pytest.fixture
def window(qtbot):
    w = ThroughTimeWindow(ThroughTimeController(small_experiment()))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.buttons["step"].isEnabled(), timeout=300_000)  # compiles
    qtbot.waitUntil(lambda: len(w.controller.snapshots) == 3)
    yield w
    w.close()


def click(qtbot, button):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_one_column_per_cell(window):
    assert list(window.columns) == ["rnn", "lstm", "gru"]
    assert window.columns["lstm"].bars_c.isVisible()
    assert not window.columns["rnn"].bars_c.isVisible()


def test_step_trains_every_cell_and_the_pulse_reveals_the_bars(qtbot, window):
    click(qtbot, window.buttons["step"])
    c = window.controller
    assert {cell: sim.step_count for cell, sim in c.sims.items()} == {
        "rnn": 1, "lstm": 1, "gru": 1}
    assert window.pulse_position is not None and window.pulse_position > 1
    seen = []
    qtbot.waitUntil(lambda: seen.append(window.pulse_position) or window.pulse_position is None,
                    timeout=10_000)
    positions = [p for p in seen if p is not None]
    assert positions == sorted(positions, reverse=True)  # from the last step towards the first
    for cell, col in window.columns.items():
        snap = c.snapshots[cell]
        np.testing.assert_allclose(col.shown_heights, np.log10(snap.hidden_grad_norms))
    bars = window.columns["lstm"].bars_c.opts["height"]
    assert np.all(np.asarray(bars) > 0)


def test_micro_steps_walk_forward_then_backward_through_time(qtbot, window):
    for _ in range(LAG):
        click(qtbot, window.buttons["micro"])
    snap = window.controller.snapshots["gru"]
    assert (snap.phase, snap.time_step) == ("forward", LAG)
    click(qtbot, window.buttons["micro"])  # the loss
    click(qtbot, window.buttons["micro"])  # backward through t = T
    for cell, col in window.columns.items():
        snap = window.controller.snapshots[cell]
        assert (snap.phase, snap.time_step) == ("backward", LAG)
        assert list(col.pulse.data["x"]) == [LAG]
        shown = col.shown_heights
        assert np.isfinite(shown[-1]) and np.isnan(shown[:-1]).all()
    click(qtbot, window.buttons["micro"])
    assert window.controller.snapshots["rnn"].time_step == LAG - 1


def test_play_then_pause(qtbot, window):
    click(qtbot, window.buttons["play"])
    c = window.controller
    qtbot.waitUntil(lambda: window.buttons["play"].text() == "Pause")
    assert not window.buttons["step"].isEnabled()
    qtbot.waitUntil(lambda: min(s.step for s in c.snapshots.values()) >= 30, timeout=60_000)
    click(qtbot, window.buttons["play"])
    qtbot.waitUntil(lambda: window.buttons["play"].text() == "Play")
    assert window.buttons["step"].isEnabled() and not c.playing
    steps, y = c.curves["lstm"]
    assert len(steps) >= 2 and np.isfinite(y).all()
    x_drawn, _ = window.curves["lstm"].getData()
    assert len(x_drawn) == len(steps)


def test_lag_box_rebuilds_every_cell(qtbot, window):
    box = window.lag_box
    box.setFocus()
    box.selectAll()
    QTest.keyClicks(box, "9")
    QTest.keyClick(box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.controller.experiment.task.lag == 9)
    assert all(sim.n_micro_steps == 20 for sim in window.controller.sims.values())
    assert window.controller.snapshots["lstm"].lag == 9


def test_view_menu_holds_the_mode_switch(qtbot, controller, editor, settings):
    """The separate window gave way to a mode of the main window (tests/ui/test_time_mode.py
    switches it); the View menu offers both modes, one checked."""
    from PySide6.QtWidgets import QMenu

    from ui import app as app_module

    window = app_module.MainWindow(controller, editor, settings)
    qtbot.addWidget(window)
    view = window.findChild(QMenu, "menu_view")
    names = [a.objectName() for a in view.actions()]
    assert "action_mode_depth" in names and "action_mode_time" in names
    assert window.time_mode.actions["depth"].isChecked()
    assert not window.time_mode.actions["time"].isChecked()
