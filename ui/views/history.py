"""Gradient history: log10 ||delta_k|| as a heatmap over (layer x training step).

A vanishing gradient shows as a dark band along the lowest layers; a fix
applied mid-run shows as the band lighting up from that step on. The history
is copied out of the simulation (under its lock) only when ``History.version``
changed (and, while playing, at most ``PLAY_HZ`` times a second), and squeezed in
time to about one column per pixel.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QLabel, QStackedLayout, QVBoxLayout, QWidget

from simulator.snapshot import HIST_DELTA

from . import colors as C
from .flow import layer_ticks

PLAY_HZ = 15.0  # while playing, the heatmap is redrawn at most this often


def squeeze_columns(values: np.ndarray, max_cols: int) -> tuple[np.ndarray, int]:
    """Average (n_layers, n_steps) into at most ``max_cols`` columns, ignoring NaN.

    Returns the squeezed array and the number of steps per column."""
    n = values.shape[1]
    if n <= max_cols:
        return values, 1
    f = math.ceil(n / max_cols)
    n_cols = math.ceil(n / f)
    pad = n_cols * f - n
    if pad:
        values = np.concatenate(
            [np.full((values.shape[0], pad), np.nan, values.dtype), values], axis=1)
    blocks = values.reshape(values.shape[0], n_cols, f)
    ok = np.isfinite(blocks)
    count = ok.sum(axis=2)
    total = np.where(ok, blocks, 0).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (total / count).astype(np.float32)
    out[count == 0] = np.nan
    return out, f


class GradientHistoryView(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self._version = None
        self._history_id = None
        self._last_time = -math.inf
        self.image_data = np.zeros((0, 0), np.float32)
        self.steps_per_column = 1

        self.plot = pg.PlotWidget(background=C.BACKGROUND)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        pi = self.plot.getPlotItem()
        pi.setLabel("bottom", "training step")
        pi.setLabel("left", "layer")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(C.lut256())
        pi.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(-8, 0), colorMap=C.colormap(),
                                        label="log10 ||\u03b4||", interactive=False, width=14)
        self.colorbar.setImageItem(self.image, insert_in=pi)
        self._empty = pg.TextItem("no steps yet: press Step or Play", color=C.MUTED,
                                  anchor=(0.5, 0.5))
        pi.addItem(self._empty)

        self._placeholder = QLabel("Compiling kernels\u2026")
        self._placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._placeholder.setStyleSheet(f"color: {C.MUTED}; font-size: 12pt;")
        page = QWidget()
        inner = QVBoxLayout(page)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.plot)
        self._stack = QStackedLayout(self)
        self._stack.addWidget(self._placeholder)
        self._stack.addWidget(page)
        self.setMinimumSize(260, 160)

        self._subs = C.Subscriptions()
        self._subs.connect(controller.snapshot_changed, self._on_snapshot_changed)
        self._subs.connect(controller.structure_changed, self._on_structure_changed)
        self._subs.connect(controller.running_changed, self._on_running_changed)
        self._subs.connect(controller.ready, self._on_ready_changed)
        self.render_snapshot(controller.snapshot)

    def _on_snapshot_changed(self, snapshot) -> None:
        self.render_snapshot(snapshot)

    def _on_structure_changed(self, spec) -> None:
        self._version = None  # rows were added or removed: re-read

    def _on_running_changed(self, running: bool) -> None:
        if not running:  # the last frame of a run is always drawn
            self.render_snapshot(self.controller.snapshot, force=True)

    def _on_ready_changed(self) -> None:
        self._placeholder.setText("Building the network\u2026")

    def close(self) -> bool:
        self._subs.disconnect_all()
        return super().close()

    def closeEvent(self, ev) -> None:
        self._subs.disconnect_all()
        super().closeEvent(ev)

    def _max_columns(self) -> int:
        width = int(self.plot.getPlotItem().getViewBox().width())
        return max(64, width if width > 0 else 600)

    def render_snapshot(self, snapshot, force: bool = False) -> None:
        if snapshot is None or self.controller.sim is None:
            self._stack.setCurrentIndex(0)
            return
        self._stack.setCurrentIndex(1)
        now = time.perf_counter()
        if not force and self.controller.is_playing and now - self._last_time < 1.0 / PLAY_HZ:
            return
        with self.controller.locked() as sim:
            history = sim.history
            if id(history) == self._history_id and history.version == self._version:
                return
            self._history_id, self._version = id(history), history.version
            self._last_time = now
            steps = history.steps()
            deltas = history.layer_series(HIST_DELTA)  # fancy-indexed: already a copy
        self._draw(steps, deltas)

    def _draw(self, steps: np.ndarray, deltas: np.ndarray) -> None:
        n_layers = deltas.shape[1] if deltas.ndim == 2 else 0
        pi = self.plot.getPlotItem()
        if len(steps) == 0 or n_layers == 0:
            self.image.clear()
            self.image_data = np.zeros((n_layers, 0), np.float32)
            self._empty.show()
            self._empty.setPos(0.5, 0.5)
            pi.setXRange(0, 1, padding=0)
            pi.setYRange(0, 1, padding=0)
            return
        self._empty.hide()
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(np.abs(deltas.T.astype(np.float32)))  # (layers, steps)
        finite = np.isfinite(logs)
        if finite.any():
            lo = math.floor(float(np.min(logs[finite])))
            hi = math.ceil(float(np.max(logs[finite])))
        else:
            lo, hi = -8, 0
        if hi <= lo:
            hi = lo + 1
        # exact zeros sit at the bottom of the scale; NaN (not measured) stays transparent
        logs[np.isneginf(logs)] = lo
        img, f = squeeze_columns(logs, self._max_columns())
        self.image_data = img
        self.steps_per_column = f
        self.image.setImage(img, levels=(lo, hi), autoLevels=False)
        first, last = float(steps[0]), float(steps[-1])
        span = max(last - first + 1.0, 1.0)
        self.image.setRect(QRectF(first - 0.5, 0.5, span, float(n_layers)))
        self.colorbar.setLevels((lo, hi))
        pi.getAxis("left").setTicks([layer_ticks(n_layers, max_labels=12)])
        pi.setXRange(first - 0.5, first - 0.5 + span, padding=0)
        pi.setYRange(0.5, n_layers + 0.5, padding=0)
