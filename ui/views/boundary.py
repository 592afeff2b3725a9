"""Decision boundary: the network's class probabilities over the plane of 2-D data.

Each grid cell's colour is the class colours mixed by the predicted
probabilities, so confident regions are saturated and the boundary is where
colours blend. ``controller.predict`` costs tens of microseconds per point on a
deep network, so the grid size is chosen from a measured cost per point to keep
one update within ``BUDGET_SECONDS`` and drawn with bilinear filtering; while
playing it is recomputed at most every ``PLAY_INTERVAL`` seconds. Once the
snapshots stop coming for ``REFINE_AFTER_MS`` (stepping by hand, or paused), a
finer grid is drawn within ``REFINE_SECONDS``: sharp at rest, cheap in motion.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QStackedLayout, QVBoxLayout, QWidget

from . import colors as C
from .panel import Panel

BUDGET_SECONDS = 0.0015  # per snapshot: part of a frame's 16 ms
PLAY_INTERVAL = 0.25
REFINE_AFTER_MS = 250
REFINE_SECONDS = 0.03  # the finer grid, drawn while nothing else happens
DEFER_ABOVE_SECONDS = 0.004  # a map costing more waits for the steps to pause
MIN_GRID, MAX_GRID = 12, 90


class _SmoothImage(pg.ImageItem):
    """An ImageItem drawn with bilinear filtering: a coarse probability grid then shows
    as smooth colour gradients instead of blocks, at no cost to the update."""

    def paint(self, painter, *args):
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        super().paint(painter, *args)


class DecisionBoundaryView(Panel):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.grid_size = 40
        self._cost_per_point = None
        self._last_time = -math.inf
        self._dataset = None
        self._extent = None
        self.last_update_seconds = 0.0
        self._deferred = False  # a snapshot's map left for the refine timer

        self.plot = pg.PlotWidget(background=C.BACKGROUND)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setAspectLocked(True)
        pi = self.plot.getPlotItem()
        pi.setLabel("bottom", "x\u2081")
        pi.setLabel("left", "x\u2082")
        C.cache_axes(pi)  # the axes change only with the data set
        self.image = _SmoothImage(axisOrder="row-major")
        pi.addItem(self.image)
        self.train_points = pg.ScatterPlotItem(size=6, pxMode=True)
        self.test_points = pg.ScatterPlotItem(size=7, pxMode=True)
        pi.addItem(self.train_points)
        pi.addItem(self.test_points)
        # the legend in the title's row, above the plot: inside it covered points
        legend = self.legend = C.RowLegend(colCount=2)
        pi.layout.removeItem(pi.titleLabel)
        pi.titleLabel.hide()
        pi.layout.addItem(legend, 0, 1)
        pi.layout.setRowStretchFactor(0, 0)
        legend.addItem(pg.ScatterPlotItem(size=6, brush=C.FOREGROUND, pen=pg.mkPen("#000")),
                       "training")
        hollow = pg.ScatterPlotItem(size=7, brush=None, pen=pg.mkPen(C.FOREGROUND, width=1.6))
        legend.addItem(hollow, "held-out")

        self._message = QLabel("Compiling kernels\u2026")
        self._message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._message.setWordWrap(True)
        self._message.setStyleSheet(f"color: {C.MUTED}; font-size: 11pt; padding: 12px;")
        page = QWidget()
        inner = QVBoxLayout(page)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.plot)
        self._stack = QStackedLayout(self)
        self._stack.addWidget(self._message)
        self._stack.addWidget(page)
        self.setMinimumSize(180, 130)

        self._refine_timer = QTimer(self)
        self._refine_timer.setSingleShot(True)
        self._refine_timer.setInterval(REFINE_AFTER_MS)
        self._refine_timer.timeout.connect(self._refine)
        # no drawing while tabbed away or closed; the latest snapshot when shown again
        self._subscribe(controller, throttled=True,
                        extra=[(controller.experiment_changed, self._on_experiment_changed)])
        self.render_snapshot(controller.snapshot, force=True)

    # -- controller signals ------------------------------------------------------------
    def _on_snapshot_changed(self, snapshot) -> None:
        if (not self.controller.is_playing and self._cost_per_point
                and self._cost_per_point * self.grid_size ** 2 > DEFER_ABOVE_SECONDS
                and self._dataset is not None and self.controller.sim is not None
                and self._dataset is self.controller.sim.dataset):
            # a deep network: even the coarsest grid would take the frame over its
            # budget. Stepping by hand, the map follows once the steps pause (the
            # refine timer); exported frames call render_snapshot and are not deferred
            self._deferred = True
        else:
            super()._on_snapshot_changed(snapshot)
        self._refine_later()

    def _on_structure_changed(self, spec) -> None:
        self._cost_per_point = None  # depth or width changed: measure again
        self._seen.request(self.controller.snapshot, force=True)

    def _on_experiment_changed(self, experiment) -> None:
        if self.controller.sim is not None and self.controller.sim.dataset is not self._dataset:
            self._seen.request(self.controller.snapshot, force=True)

    def _on_running_changed(self, running: bool) -> None:
        super()._on_running_changed(running)
        self._refine_later()

    def _on_ready_changed(self) -> None:
        self._message.setText("Building the network\u2026")

    # -- data ----------------------------------------------------------------------------
    def _set_dataset(self, ds) -> None:
        self._dataset = ds
        X = np.concatenate([ds.X_train, ds.X_test]) if ds.n_test else np.asarray(ds.X_train)
        lo, hi = X.min(axis=0), X.max(axis=0)
        pad = 0.08 * np.maximum(hi - lo, 1e-6)
        self._extent = (lo - pad, hi + pad)
        self._classes = max(ds.n_classes, 1)
        colors = np.array([C.CLASS_COLORS[i % len(C.CLASS_COLORS)]
                           for i in range(self._classes)], dtype=np.float64)
        self._class_rgb = colors
        for item, X_, y, hollow in ((self.train_points, ds.X_train, ds.y_train, False),
                                    (self.test_points, ds.X_test, ds.y_test, True)):
            if len(X_) == 0:
                item.setData([], [])
                continue
            labels = np.asarray(y) if ds.task == "classification" else np.zeros(len(X_), int)
            labels = labels.astype(np.int64).ravel() % len(C.CLASS_COLORS)
            if hollow:
                pens = [pg.mkPen(C.CLASS_COLORS[c], width=1.6) for c in range(len(C.CLASS_COLORS))]
                item.setData(x=X_[:, 0], y=X_[:, 1], pen=[pens[c] for c in labels],
                             brush=None, symbol="o")
            else:
                brushes = [pg.mkBrush(*C.CLASS_COLORS[c]) for c in range(len(C.CLASS_COLORS))]
                item.setData(x=X_[:, 0], y=X_[:, 1], brush=[brushes[c] for c in labels],
                             pen=pg.mkPen("#0b0d12", width=0.8), symbol="o")
        (x0, y0), (x1, y1) = self._extent
        self.plot.getPlotItem().setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0)

    def _grid_for(self, budget: float) -> int:
        n = budget / self._cost_per_point
        return int(np.clip(math.isqrt(max(int(n), 1)), MIN_GRID, MAX_GRID))

    def _choose_grid(self) -> None:
        if self._cost_per_point:
            self.grid_size = self._grid_for(BUDGET_SECONDS)

    def _refine_later(self) -> None:
        """Restarted by every snapshot: fires once they stop coming. Not from
        render_snapshot, so exported frames all share one grid size."""
        if self.controller.is_playing:
            self._refine_timer.stop()
        else:
            self._refine_timer.start()

    def _refine(self) -> None:
        ds = self._dataset
        if (self.controller.sim is None or self.controller.is_playing or not self._seen.visible
                or ds is None or ds is not self.controller.sim.dataset or ds.input_dim != 2
                or not self._cost_per_point):
            return
        g = self._grid_for(REFINE_SECONDS)
        if g > self.grid_size or self._deferred:
            self._deferred = False
            self._draw_grid(ds, max(g, self.grid_size))

    # -- drawing ----------------------------------------------------------------------------
    def render_snapshot(self, snapshot, force: bool = False) -> None:
        sim = self.controller.sim
        if snapshot is None or sim is None:
            self._message.setText("Compiling kernels\u2026")
            self._stack.setCurrentIndex(0)
            return
        ds = sim.dataset
        if ds.input_dim != 2:
            self._message.setText(
                f"Decision boundary needs 2-D input data (this data set has {ds.input_dim} "
                f"features).")
            self._stack.setCurrentIndex(0)
            self._dataset = ds
            return
        self._stack.setCurrentIndex(1)
        if ds is not self._dataset:
            self._set_dataset(ds)
            force = True
        now = time.perf_counter()
        if not force and self.controller.is_playing and now - self._last_time < PLAY_INTERVAL:
            return
        self._last_time = now
        self._draw_grid(ds)
        self.last_update_seconds = time.perf_counter() - now

    def _draw_grid(self, ds, g: int | None = None) -> None:
        g = g or self.grid_size
        (x0, y0), (x1, y1) = self._extent
        xs = np.linspace(x0, x1, g)
        ys = np.linspace(y0, y1, g)
        gx, gy = np.meshgrid(xs, ys)  # row = y, column = x: row-major image order
        pts = np.column_stack([gx.ravel(), gy.ravel()])
        t0 = time.perf_counter()
        try:
            # a diverging network predicts inf/NaN: drawn as "no preference", not a warning
            with np.errstate(all="ignore"):
                out = np.asarray(self.controller.predict(pts), dtype=np.float64)
        except (ValueError, FloatingPointError):
            return
        cost = (time.perf_counter() - t0) / len(pts)
        first = self._cost_per_point is None
        self._cost_per_point = cost if first else 0.7 * self._cost_per_point + 0.3 * cost
        if ds.task == "classification" and out.shape[1] == self._classes:
            probs = np.where(np.isfinite(out), out, 1.0 / self._classes)
            rgb = probs @ self._class_rgb  # colours mixed by probability
        else:  # regression: the first output on the colour map
            v = out[:, 0]
            finite = np.isfinite(v)
            lo = float(v[finite].min()) if finite.any() else 0.0
            hi = float(v[finite].max()) if finite.any() else 1.0
            t = np.clip((np.nan_to_num(v, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
            rgb = C.lut256()[(t * 255).astype(int), :3].astype(np.float64)
        rgb = rgb.reshape(g, g, 3)
        # darken towards the panel background so the data points stand out
        rgb = 0.55 * rgb + 0.45 * np.array([20, 23, 31])
        self.image.setImage(np.clip(rgb, 0, 255).astype(np.uint8), levels=(0, 255),
                            autoLevels=False)
        self.image.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        if first:
            self._choose_grid()
            if self.grid_size != g:
                self._draw_grid(ds)
        else:
            self._choose_grid()
