"""Remedies through time, clicked (issue 9): each finding of the through-time diagnosis
shows its remedies as buttons; a click changes the experiment as the button says, as one
undoable step, and the run restarts from step 0, where training shows the effect the
remedy is for. Healthy experiments show no remedy buttons.

Lean settings: hidden 8 or 16, lags 20 to 100, 64 sequences, a few steps. The ratios
quoted in comments were measured with these settings (seed 0)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QFileDialog, QMenu  # noqa: E402

pytestmark = pytest.mark.qt


def experiment_file(tmp_path, cell="rnn", lag=20, hidden=8, compare=(), init="uniform",
                    gain=1.0, forget_bias=1.0, optimizer="adam", lr=0.01, clip=1.0):
    path = tmp_path / f"{cell}_{lag}_{init}.json"
    path.write_text(json.dumps({
        "format": "gradient-flow-lab/experiment", "version": 1, "mode": "recurrent",
        "name": f"{cell} lag {lag} (test)",
        "recurrent": {"cell": cell, "hidden": hidden, "init": init, "recurrent_gain": gain,
                      "forget_bias": forget_bias},
        "task": {"kind": "adding", "lag": lag, "n_samples": 64, "seed": 0},
        "training": {"optimizer": optimizer, "lr": lr, "batch_size": 16, "clip_norm": clip},
        "seed": 0, "compare": list(compare)}))
    return path


@pytest.fixture
def window(qtbot, controller, editor, settings):
    from ui.app import MainWindow

    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    w.show()
    return w


def wait_ready(qtbot, w):
    tm = w.time_mode
    qtbot.waitUntil(lambda: bool(tm.controller is not None and tm.controller.is_ready
                                 and tm.controller.snapshots
                                 and tm.view.buttons["reset"].isEnabled()
                                 and w.action_step.isEnabled()), timeout=300_000)


def open_in_time_mode(qtbot, monkeypatch, w, path):
    """File > Open of a through-time file (the window switches to time mode)."""
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(path), "")))
    w.action_open.trigger()
    wait_ready(qtbot, w)
    tt = w.time_mode.controller
    qtbot.waitUntil(lambda: tt.experiment.name == json.loads(path.read_text())["name"]
                    and tt.snapshots and set(tt.snapshots) == set(tt.experiment.cells))
    return tt


def step(qtbot, w, n=1):
    """Right n times; then the findings of the newest snapshots are on screen."""
    tt = w.time_mode.controller
    for _ in range(n):
        w.action_step.trigger()
    view = w.time_mode.view
    qtbot.waitUntil(lambda: all(col.diagnosed is tt.snapshots.get(cell)
                                for cell, col in view.columns.items()), timeout=10_000)


def buttons(w, cell):
    return w.time_mode.view.columns[cell].remedy_buttons


def click_remedy(qtbot, w, cell, key):
    qtbot.mouseClick(buttons(w, cell)[key], Qt.MouseButton.LeftButton)
    tt = w.time_mode.controller
    assert all(s.step == 0 for s in tt.snapshots.values())  # the run restarts


def ratio(w, cell):
    return w.time_mode.controller.snapshots[cell].gradient_ratio


@pytest.mark.parametrize("key, cell_after, gain", [
    ("switch_lstm", "lstm", 1e3),  # 3.9e-7 -> 2.4e-3
    ("switch_gru", "gru", 1e2),  # 3.9e-7 -> 4.2e-4
    ("orthogonal_init", "rnn", 1e3),  # 3.9e-7 -> 8.2e-3
])
def test_a_vanishing_rnn_remedy_brings_the_early_error_back(qtbot, window, tmp_path,
                                                           monkeypatch, key, cell_after, gain):
    tt = open_in_time_mode(qtbot, monkeypatch, window, experiment_file(tmp_path))
    step(qtbot, window)
    before = ratio(window, "rnn")
    assert list(buttons(window, "rnn")) == ["switch_lstm", "switch_gru", "orthogonal_init"]
    old = tt.experiment
    click_remedy(qtbot, window, "rnn", key)
    exp = tt.experiment
    assert exp.recurrent.cell == cell_after and list(tt.sims) == [cell_after]
    if key == "orthogonal_init":
        assert exp.recurrent.init == "orthogonal" and exp.recurrent.recurrent_gain == 1.0
    assert exp.task == old.task and exp.training == old.training
    step(qtbot, window)
    assert ratio(window, cell_after) > gain * before
    assert buttons(window, cell_after) == {}  # nothing left to remedy
    window.action_undo.trigger()  # Ctrl+Z: the experiment before the click, from step 0
    assert tt.experiment == old and list(tt.sims) == ["rnn"]
    assert tt.snapshots["rnn"].step == 0


def test_in_a_comparison_the_remedied_column_gives_way(qtbot, window, tmp_path,
                                                      monkeypatch):
    tt = open_in_time_mode(qtbot, monkeypatch, window, experiment_file(
        tmp_path, cell="lstm", compare=("rnn", "lstm", "gru")))
    step(qtbot, window)
    # the LSTM (2.4e-3) and the GRU (4.2e-4) carry the error back: no remedies for them
    assert buttons(window, "lstm") == {} and buttons(window, "gru") == {}
    before = ratio(window, "rnn")
    click_remedy(qtbot, window, "rnn", "switch_lstm")
    # the LSTM has its column already: the RNN's column goes, the comparison stays
    assert tt.experiment.cells == ("lstm", "gru")
    assert list(window.time_mode.view.columns) == ["lstm", "gru"]
    step(qtbot, window)
    assert ratio(window, "lstm") > 1e3 * before
    window.action_undo.trigger()
    assert tt.experiment.cells == ("rnn", "lstm", "gru")
    assert list(window.time_mode.view.columns) == ["rnn", "lstm", "gru"]


def test_forget_bias_remedy_opens_the_forget_gates(qtbot, window, tmp_path, monkeypatch):
    tt = open_in_time_mode(qtbot, monkeypatch, window, experiment_file(
        tmp_path, cell="lstm", forget_bias=-3.0))
    step(qtbot, window)
    before = ratio(window, "lstm")  # 1.3e-15: forget gates near 0.05 erase the cell path
    assert list(buttons(window, "lstm")) == ["forget_bias"]
    click_remedy(qtbot, window, "lstm", "forget_bias")
    assert tt.experiment.recurrent.forget_bias == 1.0
    step(qtbot, window)
    assert ratio(window, "lstm") > 1e6 * before  # 2.4e-3


def test_add_forget_gate_remedy(qtbot, window, tmp_path, monkeypatch):
    tt = open_in_time_mode(qtbot, monkeypatch, window, experiment_file(
        tmp_path, cell="lstm_no_forget", lag=100))
    step(qtbot, window)
    before = ratio(window, "lstm_no_forget")  # 3.3e-15
    assert list(buttons(window, "lstm_no_forget")) == ["add_forget_gate"]
    click_remedy(qtbot, window, "lstm_no_forget", "add_forget_gate")
    assert tt.experiment.recurrent.cell == "lstm" and list(tt.sims) == ["lstm"]
    step(qtbot, window)
    assert ratio(window, "lstm") > 1e3 * before  # 5.7e-10


def exploding_file(tmp_path):
    # identity recurrent weights times 1.5 and plain SGD at 0.5: the error grows back in
    # time (ratio about 270 after one step) and training diverges at step 12
    return experiment_file(tmp_path, lag=30, hidden=16, init="identity", gain=1.5,
                           optimizer="sgd", lr=0.5, clip=0.0)


def test_clipping_stops_the_exploding_rnn_from_diverging(qtbot, window, tmp_path,
                                                        monkeypatch):
    tt = open_in_time_mode(qtbot, monkeypatch, window, exploding_file(tmp_path))
    step(qtbot, window)
    assert ratio(window, "rnn") > 10
    assert list(buttons(window, "rnn")) == ["clip_norm", "orthogonal_init"]
    click_remedy(qtbot, window, "rnn", "clip_norm")
    assert tt.experiment.training.clip_norm == 1.0
    step(qtbot, window, 15)
    assert tt.snapshots["rnn"].step == 15 and tt.snapshots["rnn"].divergence is None
    # and without the remedy the same 15 steps diverge, where Clip at 1 is offered again
    window.action_undo.trigger()
    assert tt.experiment.training.clip_norm == 0.0
    step(qtbot, window, 15)
    assert tt.snapshots["rnn"].divergence is not None
    assert "clip_norm" in buttons(window, "rnn")


def test_orthogonal_init_stops_the_error_growing_back_in_time(qtbot, window, tmp_path,
                                                             monkeypatch):
    tt = open_in_time_mode(qtbot, monkeypatch, window, exploding_file(tmp_path))
    step(qtbot, window)
    click_remedy(qtbot, window, "rnn", "orthogonal_init")
    assert tt.experiment.recurrent.init == "orthogonal"
    step(qtbot, window)
    assert ratio(window, "rnn") < 10  # 7.5e-3: no longer exploding
    assert "clip_norm" not in buttons(window, "rnn")


@pytest.mark.parametrize("key", ["lstm_no_forget", "rnn_orthogonal"])
def test_healthy_presets_show_no_remedy_buttons(qtbot, window, key):
    window.menu_presets.aboutToShow.emit()
    sub = window.findChild(QMenu, "menu_presets_time")
    sub.aboutToShow.emit()
    next(a for a in sub.actions() if a.objectName() == f"preset_time_{key}").trigger()
    wait_ready(qtbot, window)
    step(qtbot, window)
    view = window.time_mode.view
    for cell, col in view.columns.items():
        assert col.remedy_buttons == {}, cell
        assert not col.remedy_row.findChildren(type(view.buttons["reset"]))
