"""Export with the chain-rule factor panel (issue 13): the ``composed_factors`` view is
the composed frame plus the window's FactorsView, which during a micro-stepped
backward pass follows the layer being computed; from the command line and the dialog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.qt

ROOT = Path(__file__).resolve().parents[2]
VIEW = "composed_factors"


@pytest.fixture
def make_controller(qapp, tiny_experiment):
    from ui.controller import SimulationController

    made = []

    def make():
        c = SimulationController(tiny_experiment)
        made.append(c)
        return c

    yield make
    for c in made:
        c.shutdown()
        c.deleteLater()


def read_png(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im).copy()


def region(widget, top_level) -> tuple[slice, slice]:
    """(rows, columns) of ``widget`` in a frame of ``top_level``."""
    from PySide6.QtCore import QPoint

    p = widget.mapTo(top_level, QPoint(0, 0))
    return slice(p.y(), p.y() + widget.height()), slice(p.x(), p.x() + widget.width())


def orange(picture: np.ndarray) -> np.ndarray:
    """Pixels in the backward highlight's orange (#ff8a1f), as in test_export."""
    rgb = picture.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r > 120) & (r > 1.3 * g) & (g > 1.5 * b + 10)


def test_the_factor_panel_follows_the_backward_pass(make_controller):
    """Frame by frame, as ExportJob draws them: in each backward micro-step the panel
    writes out the product of the layer being computed, its marker in the plot walks
    from the output side to layer 1, and the panel's pixels change from one backward
    micro-step to the next. The plain composed view has no factor panel."""
    from ui.export import FrameSource, build_capture
    from ui.views.factors import FactorsView

    c = make_controller()
    capture, used = build_capture(VIEW, c, (960, 540), title="Tiny tanh")
    try:
        assert used == VIEW
        top = capture.widget
        panel = top.factors
        assert isinstance(panel, FactorsView)
        rows, cols = region(panel, top)
        assert panel.width() > 200 and panel.height() > 200  # a readable share of the frame
        p_rows, p_cols = region(panel.plot, top)
        # the whole plot fits in the panel: nothing scrolled out of view
        assert p_rows.start >= rows.start and p_rows.stop <= rows.stop
        assert p_cols.start >= cols.start and p_cols.stop <= cols.stop
        assert panel.plot.height() >= 90

        frames = []
        for snap, info in FrameSource(c, 1, micro=True):
            rgb = capture.grab(snap)
            assert rgb.shape == (540, 960, 3)
            frames.append((info, rgb, panel.layer_shown, panel.computing,
                           panel.equation_values()))
        n_hidden = c.snapshot.spec.depth
        backward = [f for f in frames if f[0].phase == "backward" and f[0].layer <= n_hidden]
        assert [f[0].layer for f in backward] == list(range(n_hidden, 0, -1))

        marker_x = []
        for info, rgb, shown, computing, values in backward:
            assert (shown, computing) == (info.layer, True)
            # the numbers shown are this layer's, just computed
            assert np.isfinite(values["weight"]) and np.isfinite(values["local"])
            assert np.isfinite(values["result"]) and values["result"] > 0
            # the marker in the plot: the column with the most orange (the local-factor
            # curve is the same orange but lies flat, spread over many columns)
            hot = orange(rgb[p_rows, p_cols]).sum(axis=0)
            assert hot.max() > 0.5 * panel.plot.height() * 0.5, info
            marker_x.append(int(np.argmax(hot)))
        assert all(a > b for a, b in zip(marker_x, marker_x[1:], strict=False)), marker_x

        for (_, a, *_), (_, b, *_) in zip(backward, backward[1:], strict=False):
            changed = np.abs(a[rows, cols].astype(np.int16) - b[rows, cols]).sum(axis=2) > 24
            assert changed.sum() > 200, "the factor panel looks the same in two micro-steps"

        # before the backward pass reaches a layer, the panel does not say it is computing
        forward = [f for f in frames if f[0].phase == "forward"]
        assert forward and not any(f[3] for f in forward)
    finally:
        capture.close()

    plain, used = build_capture("composed", make_controller(), (960, 540))
    try:
        assert used == "composed" and plain.widget.factors is None
        assert not plain.widget.findChildren(FactorsView)
    finally:
        plain.close()


def run_cli(*args, timeout=180):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "export", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_cli_writes_factor_frames_of_the_requested_size(tmp_path, tiny_experiment):
    exp = tmp_path / "tiny.json"
    exp.write_text(tiny_experiment.to_json(), encoding="utf-8")
    out = tmp_path / "frames"
    r = run_cli("--experiment", exp, "--steps", 1, "--micro", "--view", VIEW,
                "--size", "720x400", "--format", "png", "--out", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "frames.json").read_text(encoding="utf-8"))
    assert m["view"] == VIEW
    frames = m["frames"]
    assert len(frames) == 1 + 12  # 4 hidden layers + output: 12 micro-steps
    pictures = {f["file"]: read_png(out / f["file"]) for f in frames}
    assert all(p.shape == (400, 720, 3) for p in pictures.values())
    # the right-hand part of the top row is the factor panel: it changes between two
    # backward micro-steps, and shows the backward orange while the pass runs
    b = [f["file"] for f in frames if f["phase"] == "backward"]
    right = (slice(20, 240), slice(540, 720))
    first, second = pictures[b[1]][right], pictures[b[2]][right]
    assert (np.abs(first.astype(np.int16) - second).sum(axis=2) > 24).sum() > 100
    assert orange(first).sum() > 50
    assert "composed_factors" in run_cli("--help").stdout


@pytest.mark.slow
def test_the_dialog_offers_the_factor_view_and_exports_it(qtbot, controller, editor, settings,
                                                         tmp_path):
    from PySide6.QtCore import Qt

    from ui.app import MainWindow
    from ui.export import VIEW_LABELS, install_export_action

    window = MainWindow(controller, editor, settings)
    qtbot.addWidget(window)
    window.exporter = install_export_action(window)
    dialog = window.exporter.open_dialog()
    box = dialog.view_box
    offered = {box.itemData(i): box.itemText(i) for i in range(box.count())}
    assert offered[VIEW] == VIEW_LABELS[VIEW] and "factors" in offered[VIEW]
    qtbot.keyClick(box, Qt.Key.Key_Home)  # chosen as a user would, with the arrow keys
    for _ in range(box.count()):
        if box.currentData() == VIEW:
            break
        qtbot.keyClick(box, Qt.Key.Key_Down)
    assert dialog.export_settings().view == VIEW
    out = tmp_path / "out" / "frames"
    out.parent.mkdir()
    dialog.set_size(640, 360)
    dialog.steps_spin.setValue(1)
    dialog.set_micro(False)
    dialog.set_format("png")
    dialog.dest_edit.setText(str(out))
    assert dialog.ok_button.isEnabled(), dialog.problem_label.text()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.exporter.last_result is not None, timeout=60_000)
    result = window.exporter.last_result
    assert result.status == "done", result.message
    m = json.loads((out / "frames.json").read_text(encoding="utf-8"))
    assert m["view"] == VIEW and len(m["frames"]) == 2
    assert read_png(out / m["frames"][0]["file"]).shape == (360, 640, 3)
    if window.exporter.message_box is not None:
        window.exporter.message_box.close()
