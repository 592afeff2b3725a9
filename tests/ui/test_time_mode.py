"""The main window's mode switch (issue 9): through depth | through time in one window.

Switching to time shows the through-time page (compiling its kernels the first time,
never at start-up), pauses the feedforward run and disables what belongs to it; the
top bar's Play/Step/Micro-step and their keys act on the active mode; switching back
restores the feedforward view as it was. Through-time presets, File > Open of a
``"mode": "recurrent"`` file and File > Save work in time mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QFileDialog, QMenu  # noqa: E402

pytestmark = pytest.mark.qt
ROOT = Path(__file__).resolve().parents[2]
LAG = 5


def small_file(tmp_path, name="small.json", **over) -> Path:
    d = {"format": "gradient-flow-lab/experiment", "version": 1, "mode": "recurrent",
         "name": "small through time", "recurrent": {"cell": "lstm", "hidden": 4},
         "task": {"kind": "adding", "lag": LAG, "n_samples": 40, "seed": 0},
         "training": {"optimizer": "adam", "lr": 0.01, "batch_size": 8, "clip_norm": 1.0},
         "seed": 0, "compare": ["rnn", "lstm"]}
    d.update(over)
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path


@pytest.fixture
def window(qtbot, controller, editor, settings):
    from ui.app import MainWindow

    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    w.show()
    return w


def click(qtbot, widget):
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def open_file(qtbot, monkeypatch, window, path) -> None:
    """File > Open, choosing ``path`` in the file dialog."""
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(path), "")))
    window.action_open.trigger()


def wait_time_ready(qtbot, window):
    """Until the through-time cells are built and the window has heard so (the top
    bar's Play is enabled for them)."""
    tm = window.time_mode
    qtbot.waitUntil(lambda: bool(tm.controller is not None and tm.controller.is_ready
                                 and tm.controller.snapshots
                                 and tm.view.buttons["reset"].isEnabled()
                                 and window.action_play.isEnabled()), timeout=300_000)


def test_start_up_never_loads_the_through_time_mode():
    """A main window that has started and built its simulation has not imported the
    recurrent package or the through-time view (so nothing of it compiled)."""
    code = (
        "import os, sys, tempfile\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from PySide6.QtCore import QSettings\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from ui.app import MainWindow, default_experiment\n"
        "from ui.commands import Editor\n"
        "from ui.controller import SimulationController\n"
        "c = SimulationController(default_experiment())\n"
        "s = QSettings(os.path.join(tempfile.mkdtemp(), 's.ini'), QSettings.Format.IniFormat)\n"
        "w = MainWindow(c, Editor(c), s); w.show(); app.processEvents()\n"
        "w.menu_presets.aboutToShow.emit()\n"
        "print(sorted(m for m in sys.modules if m.startswith('simulator.recurrent')"
        " or m == 'ui.views.through_time'))\n"
        "sys.stdout.flush(); os._exit(0)\n")  # no teardown: only the imports matter
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=180, env={**__import__("os").environ,
                                                      "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_clicking_the_switch_swaps_the_page_and_back(qtbot, window, monkeypatch):
    from ui import time_mode

    seen = []
    real = time_mode.TimeMode._on_compiling_changed
    monkeypatch.setattr(time_mode.TimeMode, "_on_compiling_changed",
                        lambda self, on: (seen.append((on, self.window.compiling_label.text())),
                                          real(self, on)))
    window.resize(1264, 680)  # a 1280x720 screen, less the window frame
    qtbot.waitUntil(lambda: window.size().toTuple() == (1264, 680))
    # the whole top bar fits, the switch first
    assert window.top_bar.sizeHint().width() <= 1264
    assert all(b.isVisible() for b in window.time_mode.switch.buttons.values())
    c = window.controller
    c.step()
    c.step()
    window.editor.update_training(lr=0.05)  # an undoable feedforward edit
    undo_index = c.undo_stack.index()
    visible_docks = {n for n, d in window.docks.items() if d.isVisible()}
    assert visible_docks
    size = window.size()
    geometry = {n: window.docks[n].geometry() for n in visible_docks}
    switch = window.time_mode.switch.buttons
    lr_tip = window.quick.lr.toolTip()

    click(qtbot, switch["time"])
    tm = window.time_mode
    assert tm.active and window.pages.currentWidget() is tm.view
    assert tm.actions["time"].isChecked() and switch["time"].isChecked()
    assert seen and seen[0][0] is True and "Compiling" in seen[0][1]  # the kernels: now
    assert not any(d.isVisible() for d in window.docks.values())
    assert not window.quick.isEnabled() and "depth" in window.quick.toolTip()
    assert "depth" in window.quick.lr.toolTip()
    assert not window.findChild(type(window.action_open), "action_compare").isEnabled()
    assert "through time" in window.windowTitle()
    wait_time_ready(qtbot, window)
    assert seen[-1][0] is False and not window.compiling_label.isVisible()

    click(qtbot, switch["depth"])
    assert not tm.active and window.pages.currentIndex() == 0
    qtbot.waitUntil(lambda: {n for n, d in window.docks.items() if d.isVisible()}
                    == visible_docks)
    # the dock layout and the window as they were (the time page is larger than the
    # depth page: it must not push them about)
    assert window.size() == size
    assert {n: window.docks[n].geometry() for n in visible_docks} == geometry
    assert window.quick.isEnabled() and window.quick.lr.toolTip() == lr_tip != ""
    assert c.sim.step_count == 2 and c.undo_stack.index() == undo_index
    assert c.sim.experiment.training.lr == 0.05
    assert "through time" not in window.windowTitle()
    window.action_undo.trigger()  # the feedforward undo stack is the active one again
    assert c.sim.experiment.training.lr != 0.05


def test_playback_acts_on_the_active_mode_and_the_other_one_pauses(qtbot, window,
                                                                  tmp_path, monkeypatch):
    c = window.controller
    window.action_play.trigger()
    qtbot.waitUntil(lambda: c.is_playing)
    open_file(qtbot, monkeypatch, window, small_file(tmp_path))  # switches to time mode
    assert window.time_mode.active and not c.is_playing
    wait_time_ready(qtbot, window)
    tt = window.time_mode.controller
    assert tt.experiment.name == "small through time" and list(tt.sims) == ["rnn", "lstm"]
    ff_step = c.sim.step_count

    window.action_step.trigger()  # Right
    assert all(s.step_count == 1 for s in tt.sims.values())
    window.action_micro.trigger()  # Shift+Right: forward t = 1 in every cell
    assert all(s.step == 1 and s.phase == "forward" and s.time_step == 1
               for s in tt.snapshots.values())
    assert not window.action_to_backward.isEnabled()
    window.action_play.trigger()  # Space
    qtbot.waitUntil(lambda: tt.playing and window.action_play.text() == "Pause")
    assert c.sim.step_count == ff_step  # the feedforward run stayed where it was
    window.time_mode.actions["depth"].trigger()  # Ctrl+1: time pauses
    assert not tt.playing and window.action_play.text() == "Play"
    window.action_step.trigger()
    assert c.sim.step_count == ff_step + 1


def test_a_through_time_preset_switches_and_asks_about_unsaved_edits(qtbot, window, tmp_path,
                                                                    monkeypatch):
    open_file(qtbot, monkeypatch, window, small_file(tmp_path))
    wait_time_ready(qtbot, window)
    tt = window.time_mode.controller
    window.time_mode.view.lag_box.setValue(LAG + 2)  # an undoable edit: unsaved work
    window.time_mode.view.lag_box.editingFinished.emit()
    assert tt.experiment.task.lag == LAG + 2 and window.isWindowModified()
    window.time_mode.actions["depth"].trigger()

    asked = []
    monkeypatch.setattr(window, "ask_unsaved", lambda doing, mode=None: asked.append(mode)
                        or "cancel")
    window.menu_presets.aboutToShow.emit()
    sub = window.findChild(QMenu, "menu_presets_time")
    sub.aboutToShow.emit()
    names = [a.objectName() for a in sub.actions()]
    assert "preset_time_rnn_vs_lstm_lag50" in names and "preset_time_exploding_rnn" in names
    action = next(a for a in sub.actions() if a.objectName() == "preset_time_exploding_rnn")
    action.trigger()
    assert asked == ["time"] and tt.experiment.task.lag == LAG + 2  # cancelled: kept
    monkeypatch.setattr(window, "ask_unsaved", lambda doing, mode=None: "discard")
    action.trigger()
    assert window.time_mode.active and tt.experiment.name == "Exploding RNN"
    assert not window.isWindowModified() and tt.undo_stack.count() == 0


def test_save_in_time_mode_writes_the_recurrent_experiment(qtbot, window, tmp_path,
                                                          monkeypatch):
    from simulator.recurrent.experiment import load_recurrent_experiment

    open_file(qtbot, monkeypatch, window, small_file(tmp_path))
    wait_time_ready(qtbot, window)
    tt = window.time_mode.controller
    view = window.time_mode.view
    view.lag_box.setValue(LAG + 1)
    view.lag_box.editingFinished.emit()
    out = tmp_path / "saved.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(out), "")))
    window.action_save_as.trigger()
    assert load_recurrent_experiment(out) == tt.experiment
    assert json.loads(out.read_text())["mode"] == "recurrent"
    assert not window.isWindowModified() and window.windowTitle().startswith("saved.json")
    window.action_undo.trigger()  # Ctrl+Z: the lag edit
    assert tt.experiment.task.lag == LAG and window.isWindowModified()


def test_a_bad_through_time_file_gets_the_error_banner(qtbot, window, tmp_path, monkeypatch):
    bad = small_file(tmp_path, "bad.json", recurrent={"cell": "lstm", "hidden": -3})
    open_file(qtbot, monkeypatch, window, bad)
    assert window.banner.isVisible() and window.banner.kind == "error"
    assert "recurrent.hidden" in window.banner.text and "bad.json" in window.banner.text
    assert not window.time_mode.active  # nothing was opened


def test_a_through_time_file_given_at_start_opens_in_time_mode(qtbot, tmp_path, settings):
    from ui.app import start_window

    path = small_file(tmp_path)
    window = start_window(str(path), settings)
    qtbot.addWidget(window)
    wait_time_ready(qtbot, window)
    assert window.time_mode.active and window.time_mode.path == str(path.resolve())
    assert window.time_mode.controller.experiment.name == "small through time"
    assert window.banner.kind != "error"
    qtbot.waitUntil(lambda: window.controller.is_ready, timeout=300_000)
    window.time_mode.controller.pause()
