"""Export of the through-time mode (issue 9): `main.py export` with a through-time
experiment draws the through-time window's own widgets, one frame per micro-step with
--micro, so the backward pulse moves from the last time step to the first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.qt

ROOT = Path(__file__).resolve().parents[2]
LAG = 8
SIZE = (640, 600)
BACKWARD_RGB = np.array([0xFF, 0x8A, 0x1F])  # ui.views.colors.BACKWARD, the pulse's ring


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "export", *map(str, args)],
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tt") / "tiny_through_time.json"
    path.write_text(json.dumps({
        "format": "gradient-flow-lab/experiment", "version": 1, "mode": "recurrent",
        "name": "tiny through time",
        "recurrent": {"cell": "lstm", "hidden": 8},
        "task": {"kind": "adding", "lag": LAG, "n_samples": 200, "seed": 0},
        "training": {"optimizer": "adam", "lr": 0.01, "batch_size": 16},
        "seed": 0, "compare": ["rnn", "lstm"]}))
    return path


@pytest.fixture(scope="module")
def micro_export(experiment_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("tt_out") / "frames"
    r = run_cli("--experiment", experiment_file, "--steps", 1, "--micro", "--format", "png",
                "--size", f"{SIZE[0]}x{SIZE[1]}", "--out", out)
    assert r.returncode == 0, r.stderr
    return out, json.loads((out / "frames.json").read_text())


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def ring_x(rgb: np.ndarray) -> float:
    """Mean x of the backward pulse's ring pixels in the left (first cell's) column."""
    left = rgb[:, : rgb.shape[1] // 2].astype(int)
    near = np.all(np.abs(left - BACKWARD_RGB) <= 24, axis=2)
    ys, xs = np.nonzero(near)
    assert xs.size > 10, "no pulse ring in this frame"
    return float(xs.mean())


def test_micro_export_writes_one_frame_per_micro_step_at_the_requested_size(micro_export):
    out, manifest = micro_export
    frames = manifest["frames"]
    assert len(frames) == 1 + (2 * LAG + 2)  # the start, forward T, loss, backward T, update
    assert manifest["view"] == "through_time" and manifest["granularity"] == "micro-step"
    assert manifest["lag"] == LAG and manifest["cells"] == ["rnn", "lstm"]
    assert sorted(p.name for p in out.glob("*.png")) == [f["file"] for f in frames]
    for f in (frames[0], frames[-1]):
        assert load_rgb(out / f["file"]).shape == (SIZE[1], SIZE[0], 3)


def test_manifest_records_phase_and_time_step(micro_export):
    frames = micro_export[1]["frames"]
    got = [(f["phase"], f["time_step"]) for f in frames]
    want = ([("ready", 0)] + [("forward", t) for t in range(1, LAG + 1)] + [("loss", 0)]
            + [("backward", t) for t in range(LAG, 0, -1)] + [("update", 0)])
    assert got == want
    assert frames[-1]["step"] == 1 and all(f["step"] == 0 for f in frames[:-1])


def test_backward_pulse_moves_from_the_last_time_step_toward_the_first(micro_export):
    out, manifest = micro_export
    back = [f for f in manifest["frames"] if f["phase"] == "backward"]
    xs = [ring_x(load_rgb(out / f["file"])) for f in back]
    steps = np.diff(xs)
    assert np.all(steps < 0), xs  # every backward micro-step moves the ring left
    # evenly: one time step apart each time
    assert np.ptp(steps) < 0.25 * abs(steps.mean()), xs
    # the forward pass draws no backward ring
    fwd = next(f for f in manifest["frames"] if f["phase"] == "forward")
    left = load_rgb(out / fwd["file"])[:, : SIZE[0] // 2].astype(int)
    assert not np.any(np.all(np.abs(left - BACKWARD_RGB) <= 24, axis=2))


def test_iteration_gif_has_one_frame_per_iteration(experiment_file, tmp_path):
    from PIL import Image

    out = tmp_path / "tt.gif"
    r = run_cli("--experiment", experiment_file, "--steps", 2, "--format", "gif",
                "--size", "480x600", "--out", out)
    assert r.returncode == 0, r.stderr
    with Image.open(out) as im:
        assert im.size == (480, 600) and im.n_frames == 3


@pytest.mark.parametrize("args, words", [
    (("--view", "flow"), ("--view flow", "through-time")),
    (("--size", "320x180"), ("480x600", "320x180")),
])
def test_feedforward_view_or_tiny_size_with_a_through_time_preset_is_a_clear_error(
        tmp_path, args, words):
    out = tmp_path / "x.gif"
    r = run_cli("--preset", "rnn_vs_lstm_lag50", "--steps", 1, "--format", "gif",
                "--out", out, *args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_window_export_button_saves_a_gif_of_the_backward_pass(qtbot, tmp_path, monkeypatch,
                                                               experiment_file):
    from PIL import Image
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QFileDialog

    from simulator.recurrent.experiment import load_recurrent_experiment
    from ui.views.through_time import ThroughTimeController, ThroughTimeWindow

    out = tmp_path / "pulse.gif"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(out), "GIF (*.gif)")))
    w = ThroughTimeWindow(ThroughTimeController(load_recurrent_experiment(experiment_file)))
    qtbot.addWidget(w)
    w.show()
    button = w.buttons["export"]
    qtbot.waitUntil(button.isEnabled, timeout=300_000)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.status.text().startswith(("Saved", "Export")) and
                    "Exporting" not in w.status.text(), timeout=60_000)
    assert w.status.text().startswith("Saved 19 frames"), w.status.text()
    with Image.open(out) as im:
        assert im.size == (1280, 720) and im.n_frames == 19
    # the window's own simulations were not stepped by the export
    assert all(s.step == 0 and s.phase == "ready" for s in w.controller.snapshots.values())
