"""The Sweep dialog driven as a user drives it: type the axes, click Run, watch the
progress, cancel, run again to resume, click a point to open it in the window."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from simulator.sweep import read_results  # noqa: E402
from ui.views.sweep import SweepDialog  # noqa: E402

pytestmark = pytest.mark.qt


def _type(qtbot, widget, text: str) -> None:
    widget.setFocus()
    QTest.keyClick(widget, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(widget, Qt.Key.Key_Delete)
    qtbot.keyClicks(widget, text)


def _choose(qtbot, combo, text: str) -> None:
    """Pick a combo box entry with the keyboard, as a user does: type its start."""
    combo.setFocus()
    qtbot.keyClicks(combo, text)
    assert combo.currentText() == text


def _dialog(qtbot, tiny_experiment, tmp_path, depths="1, 2, 3", steps="8"):
    dialog = SweepDialog(tiny_experiment)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    _choose(qtbot, dialog.axis_names[0], "depth")
    _type(qtbot, dialog.axis_values[0], depths)
    _choose(qtbot, dialog.axis_names[1], "skips")
    _type(qtbot, dialog.axis_values[1], "none, residual")
    _type(qtbot, dialog.steps, steps)
    _type(qtbot, dialog.workers, "0")  # in this process: no worker start in a unit test
    _type(qtbot, dialog.out, str(tmp_path / "r.jsonl"))
    return dialog


def _point_pos(dialog, x_value, series_index) -> QPoint:
    """Viewport position of a plotted point (data coordinates -> scene -> viewport)."""
    plot = dialog.plot
    xs, ys = plot.curves[series_index].getData()
    i = list(plot.x_values).index(x_value)
    scene = plot.item.getViewBox().mapViewToScene(QPointF(xs[i], ys[i]))
    return plot.plot.mapFromScene(scene)


def test_run_draws_every_point_and_a_click_opens_it(qtbot, tiny_experiment, tmp_path):
    dialog = _dialog(qtbot, tiny_experiment, tmp_path)
    with qtbot.waitSignal(dialog.sweep_finished, timeout=60_000):
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    assert dialog.outcome is not None and not dialog.outcome.cancelled
    _, records = read_results(tmp_path / "r.jsonl")
    assert len(records) == 6 and dialog.progress.value() == 6
    assert "6 / 6 points" in dialog.status.text()
    # the line plot: one series per skips value, one point per depth
    assert [len(c.getData()[0]) for c in dialog.plot.curves] == [3, 3]
    # click the residual series at depth 3: that network opens
    pos = _point_pos(dialog, 3, 1)
    with qtbot.waitSignal(dialog.open_requested, timeout=5000) as sig:
        qtbot.mouseClick(dialog.plot.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    exp = sig.args[0]
    assert exp.network.depth == 3 and exp.network.skips == ((1, 3),)


def test_cancel_keeps_finished_points_and_run_again_resumes(qtbot, tiny_experiment, tmp_path):
    dialog = _dialog(qtbot, tiny_experiment, tmp_path, depths="1, 2, 3, 4, 5, 6",
                     steps="400")
    qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.progress.value() >= 1, timeout=60_000)
    with qtbot.waitSignal(dialog.sweep_finished, timeout=60_000):
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert dialog.outcome.cancelled
    _, kept = read_results(tmp_path / "r.jsonl")
    assert 1 <= len(kept) < 12
    with qtbot.waitSignal(dialog.sweep_finished, timeout=60_000):
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    assert (dialog.outcome.resumed, dialog.outcome.ran) == (len(kept), 12 - len(kept))
    _, records = read_results(tmp_path / "r.jsonl")
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 12


def test_a_bad_axis_is_refused_in_the_dialog_and_nothing_runs(qtbot, tiny_experiment,
                                                              tmp_path):
    dialog = _dialog(qtbot, tiny_experiment, tmp_path, depths="2, x")
    qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    assert "axis depth" in dialog.status.text() and not dialog.running
    assert not (tmp_path / "r.jsonl").exists()


def test_the_run_menu_opens_the_dialog_and_a_clicked_point_opens_in_the_window(
        qtbot, controller, editor, settings, tmp_path):
    from tests.ui.test_app import click_menu_path, make_window

    window = make_window(qtbot, controller, editor, settings)
    assert window.action_sweep.text().replace("&", "") == "Sweep…"
    click_menu_path(qtbot, window, "Run", "Sweep…")
    dialog = window._sweep_dialog
    qtbot.waitExposed(dialog)
    assert dialog.source.currentData() == "current"
    _type(qtbot, dialog.axis_values[0], "1, 2")
    _type(qtbot, dialog.steps, "5")
    _type(qtbot, dialog.workers, "0")
    _type(qtbot, dialog.out, str(tmp_path / "w.jsonl"))
    with qtbot.waitSignal(dialog.sweep_finished, timeout=60_000):
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    pos = _point_pos(dialog, 2, 0)
    qtbot.mouseClick(dialog.plot.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: controller.sim.spec.depth == 2)
    assert controller.sim.spec.skips == ()
    dialog.close()


def test_heatmap_cells_are_seed_means_and_the_boundary_sits_at_six_xi(qtbot):
    import math

    import numpy as np

    from simulator.sweep import load_sweep_preset
    from simulator.theory import chi1, depth_scale
    from ui.views.sweep_plot import SweepPlot

    sweep = load_sweep_preset("trainability").to_dict()
    s2, depths = [0.25, 0.5, 1.0], [2, 4, 8]
    sweep["axes"] = [{"name": "sigma_w2", "values": s2}, {"name": "depth", "values": depths}]
    plot = SweepPlot()
    qtbot.addWidget(plot)
    plot.set_sweep(sweep)
    assert plot.kind == "heatmap" and (plot.x_axis, plot.s_axis) == ("sigma_w2", "depth")
    records = [{"axes": {"sigma_w2": 0.5, "depth": 4}, "train_loss": v} for v in (0.2, 0.4)]
    records.append({"axes": {"sigma_w2": 1.0, "depth": 8}, "train_loss": None})  # diverged
    records.append({"axes": {"sigma_w2": 0.25, "depth": 2}, "train_loss": 0.7})
    plot.set_records(records)
    assert plot.grid[1, 1] == pytest.approx(0.3)  # row = depth 4, column = sigma_w2 0.5
    assert plot.grid[2, 2] == pytest.approx(0.7)  # diverged: the worst colour
    assert np.isnan(plot.grid[0, 1])  # not run yet: empty
    sb2 = load_sweep_preset("trainability").experiment.network.sigma_b ** 2
    xs, ys = plot.boundary.getData()
    for i, s in enumerate(s2):
        b = 6 * depth_scale(chi1("tanh", s, sb2))
        expected = np.interp(math.log(b), np.log(depths), [0, 1, 2], left=-0.5, right=2.5)
        assert ys[i] == pytest.approx(min(max(expected, -0.5), 2.5))
