"""File > Export animation... in the main window's time mode (issue 9): the dialog offers
the through-time view, and its frames are byte for byte those of ``main.py export`` for
the same experiment and steps; an unwritable folder is refused with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QFileDialog  # noqa: E402

pytestmark = pytest.mark.qt
ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
SIZE = (640, 600)


@pytest.fixture
def experiment_file(tmp_path):
    path = tmp_path / "tiny_tt.json"
    path.write_text(json.dumps({
        "format": "gradient-flow-lab/experiment", "version": 1, "mode": "recurrent",
        "name": "tiny through time", "recurrent": {"cell": "lstm", "hidden": 4},
        "task": {"kind": "adding", "lag": 4, "n_samples": 40, "seed": 0},
        "training": {"optimizer": "adam", "lr": 0.01, "batch_size": 8},
        "seed": 0, "compare": ["rnn", "lstm"]}))
    return path


@pytest.fixture
def window(qtbot, qapp, controller, editor, settings, experiment_file, monkeypatch):
    """The main window in time mode on ``experiment_file`` (opened with File > Open)."""
    from ui.app import MainWindow
    from ui.export.cli import apply_app_theme

    apply_app_theme(qapp)  # the command line draws with the window's theme too
    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    w.show()
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(experiment_file), "")))
    w.action_open.trigger()
    tm = w.time_mode
    qtbot.waitUntil(lambda: bool(tm.active and tm.controller.is_ready
                                 and tm.view.buttons["reset"].isEnabled()), timeout=300_000)
    return w


@contextmanager
def unwritable(folder: Path):
    """``folder`` cannot be written to (a root test process acts as nobody meanwhile)."""
    folder.chmod(0o500)
    try:
        if os.geteuid() == 0:
            os.seteuid(NOBODY)
            try:
                yield
            finally:
                os.seteuid(0)
        else:
            yield
    finally:
        folder.chmod(0o755)


def open_dialog(window):
    window.action_export.trigger()  # File > Export animation... (Ctrl+E)
    dialog = window.exporter.dialog
    assert dialog is not None and dialog.through_time
    assert [dialog.view_box.itemData(i) for i in range(dialog.view_box.count())] == ["canvas"]
    assert "Through time" in dialog.view_box.currentText()
    return dialog


def test_dialog_export_writes_the_frames_of_the_command_line(qtbot, window, experiment_file,
                                                            tmp_path):
    cli_out = tmp_path / "cli"
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "export", "--experiment",
                        str(experiment_file), "--steps", "2", "--format", "png", "--size",
                        f"{SIZE[0]}x{SIZE[1]}", "--out", str(cli_out)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr

    window.action_step.trigger()  # the window's own run moves: the export starts at 0
    dialog = open_dialog(window)
    dialog.set_size(*SIZE)
    dialog.steps_spin.setValue(2)
    dialog.set_micro(False)
    dialog.set_format("png")
    out = tmp_path / "dialog"
    dialog.dest_edit.setText(str(out))
    assert dialog.ok_button.isEnabled(), dialog.problem_label.text()
    assert "3 frames, steps 0 to 2" in dialog.summary.text()
    dialog.accept()
    exporter = window.exporter
    qtbot.waitUntil(lambda: exporter.last_result is not None, timeout=120_000)
    result = exporter.last_result
    assert result.status == "done", result.message
    assert result.frames == 3 and "Saved 3 frames" in result.message
    cli_frames = sorted(cli_out.glob("frame_*.png"))
    assert [p.name for p in cli_frames] == sorted(p.name for p in out.glob("frame_*.png"))
    assert len(cli_frames) == 3
    for p in cli_frames:
        assert p.read_bytes() == (out / p.name).read_bytes(), p.name
    manifest = json.loads((out / "frames.json").read_text())
    assert manifest["view"] == "through_time" and manifest["cells"] == ["rnn", "lstm"]
    # the window's own cells were not stepped by the export
    assert all(s.step == 1 for s in window.time_mode.controller.snapshots.values())
    if exporter.message_box is not None:
        exporter.message_box.close()


def test_dialog_refuses_an_unwritable_folder_and_too_small_frames(qtbot, window, tmp_path):
    dialog = open_dialog(window)
    dialog.set_size(320, 240)
    assert not dialog.ok_button.isEnabled()
    assert "480x600" in dialog.problem_label.text()
    dialog.set_size(*SIZE)
    folder = tmp_path / "locked"
    folder.mkdir()
    dialog.set_format("gif")
    dialog.dest_edit.setText(str(folder / "clip.gif"))
    with unwritable(folder):
        dialog.accept()
    assert dialog.isVisible() and not window.exporter.busy
    assert "permission denied" in dialog.problem_label.text()
    assert list(folder.iterdir()) == []
    dialog.reject()
