"""The picture of a sweep: a line plot (one axis across, a series per value of a
second) or a heatmap (two numeric axes) with the mean-field depth-scale boundary
6 xi drawn over it where the theory applies. The Sweep dialog draws it live; the
``sweep-plot`` command renders the same widget offscreen to a PNG.

Values are means over seeds (``simulator.sweep.table``). A heatmap cell whose
points all finished without a number (diverged) is drawn at the worst colour;
cells not run yet stay empty.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, QEvent, Qt, Signal
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QVBoxLayout, QWidget

from simulator.sweep import METRICS, depth_scale_boundary, plot_layout, table

from . import colors as C

SERIES_COLORS = ("#4fb3ff", "#ff8a1f", "#7ddc8f", "#e58be0", "#ffd166", "#ff5c5c",
                 "#a0a0ff", "#5cc8ff")
LOG_METRICS = ("delta_ratio_start", "delta_ratio_end")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class SweepPlot(QWidget):
    """Draws records of one sweep. ``point_clicked`` carries the axis values
    ({axis: value}) of the clicked point or cell."""

    point_clicked = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget(background=C.BACKGROUND)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)
        self.item = self.plot.getPlotItem()
        for side in ("bottom", "left"):
            self.item.getAxis(side).enableAutoSIPrefix(False)
        self.legend = self.item.addLegend(offset=(10, 10))
        self.metric_key = "train_loss"
        self.sweep: dict | None = None
        self.records: list[dict] = []
        self.kind = "line"
        self.x_axis: str | None = None
        self.s_axis: str | None = None
        self.x_values: list = []
        self.s_values: list = []
        self.curves: list[pg.PlotDataItem] = []
        self.image: pg.ImageItem | None = None
        self.colorbar = None
        self.boundary: pg.PlotDataItem | None = None
        self.boundary_values: list[float] | None = None
        self.grid = np.zeros((0, 0))
        self.plot.scene().sigMouseClicked.connect(self._on_scene_clicked)

    # -- model ---------------------------------------------------------------------------
    def set_sweep(self, sweep: dict, metric: str | None = None) -> None:
        """Lay the plot out for ``sweep`` (a Sweep.to_dict()); items are built here once."""
        self.sweep = sweep
        if metric is not None:
            self.metric_key = metric
        axes = [(a["name"], list(a["values"])) for a in sweep["axes"]]
        self.kind, self.x_axis, self.s_axis = plot_layout(axes)
        values = dict(axes)
        self.x_values = values.get(self.x_axis, [])
        self.s_values = values.get(self.s_axis, [None]) if self.s_axis else [None]
        self._clear_items()
        if self.kind == "line":
            self._build_line()
        else:
            self._build_heatmap()
        self.records = []
        self._draw()

    def set_records(self, records: list[dict]) -> None:
        self.records = list(records)
        self._draw()

    def add_record(self, record: dict) -> None:
        self.records.append(record)
        self._draw()

    def set_metric(self, metric: str) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        self.metric_key = metric
        if self.sweep is not None:
            self.set_sweep(self.sweep)
            self._draw()

    # -- building ------------------------------------------------------------------------
    def _clear_items(self) -> None:
        self.item.clear()
        self.legend.clear()
        if self.colorbar is not None:
            self.colorbar.setParentItem(None)
            self.plot.scene().removeItem(self.colorbar)
            self.colorbar = None
        self.curves, self.image, self.boundary = [], None, None
        self.item.setLogMode(False, False)
        for side in ("bottom", "left"):
            self.item.getAxis(side).setTicks(None)

    def _numeric_x(self) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   for v in self.x_values)

    def _build_line(self) -> None:
        log_x = self._numeric_x() and min(self.x_values) > 0 and (
            max(self.x_values) / min(self.x_values) >= 8)
        self.item.setLogMode(x=log_x, y=self.metric_key in LOG_METRICS)
        if not self._numeric_x():
            self.item.getAxis("bottom").setTicks(
                [[(i, _fmt(v)) for i, v in enumerate(self.x_values)]])
        elif log_x:  # ticks at the swept values, not at powers of ten
            self.item.getAxis("bottom").setTicks(
                [[(math.log10(v), _fmt(v)) for v in self.x_values]])
        # the whole axis from the start, so the picture does not jump as points arrive
        if self._numeric_x():
            lo, hi = float(min(self.x_values)), float(max(self.x_values))
            if log_x:
                lo, hi = math.log10(lo), math.log10(hi)
        else:
            lo, hi = 0.0, float(len(self.x_values) - 1)
        self.item.setXRange(lo, hi, padding=0.05)
        for i, s in enumerate(self.s_values):
            color = SERIES_COLORS[i % len(SERIES_COLORS)]
            name = f"{self.s_axis} = {_fmt(s)}" if self.s_axis else METRICS[self.metric_key]
            curve = self.item.plot([], [], pen=pg.mkPen(color, width=2), symbol="o",
                                   symbolSize=8, symbolBrush=color, symbolPen=None, name=name)
            self.curves.append(curve)
        self.item.setLabel("bottom", self.x_axis or "")
        self.item.setLabel("left", METRICS[self.metric_key])
        self.item.setTitle(self.sweep.get("name", "Sweep"), color=C.FOREGROUND)

    def _build_heatmap(self) -> None:
        nx, ny = len(self.x_values), len(self.s_values)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setRect(-0.5, -0.5, nx, ny)
        self.item.addItem(self.image)
        label = METRICS[self.metric_key]
        if self.metric_key in LOG_METRICS:
            label = f"log10 {label}"
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=C.colormap(), width=14,
                                        label=label, interactive=False)
        self.colorbar.setImageItem(self.image, insert_in=self.item)
        self.item.getAxis("bottom").setTicks([[(i, _fmt(v)) for i, v in
                                               enumerate(self.x_values)]])
        self.item.getAxis("left").setTicks([[(j, _fmt(v)) for j, v in
                                             enumerate(self.s_values)]])
        self.item.setLabel("bottom", self.x_axis)
        self.item.setLabel("left", self.s_axis)
        self.item.setTitle(self.sweep.get("name", "Sweep"), color=C.FOREGROUND)
        self.item.setXRange(-0.5, nx - 0.5, padding=0)
        self.item.setYRange(-0.5, ny - 0.5, padding=0)
        self.boundary_values = None
        if self.x_axis == "sigma_w2" and self.s_axis == "depth":
            self.boundary_values = depth_scale_boundary(self.sweep, self.x_values)
        if self.boundary_values is not None:
            ys = self._depth_positions(self.boundary_values)
            xs = np.arange(nx, dtype=float)
            self.boundary = self.item.plot(
                xs, ys, pen=pg.mkPen("#ffffff", width=3, style=Qt.PenStyle.DashLine),
                name="6 \u03be (mean-field depth scale)")

    def _depth_positions(self, depths) -> np.ndarray:
        """Depths as vertical positions on the heatmap's row index (log-interpolated,
        clipped to the plotted rows)."""
        grid = np.log(np.asarray(self.s_values, dtype=float))
        rows = np.arange(len(grid), dtype=float)
        ny = len(grid)
        out = []
        for d in depths:
            if not math.isfinite(d) or d <= 0:
                out.append(ny - 0.5 if d > 0 else -0.5)
                continue
            out.append(float(np.clip(np.interp(math.log(d), grid, rows,
                                                left=-0.5, right=ny - 0.5), -0.5, ny - 0.5)))
        return np.array(out)

    # -- drawing -------------------------------------------------------------------------
    def _draw(self) -> None:
        if self.sweep is None:
            return
        axes = [self.x_axis] + ([self.s_axis] if self.s_axis else [])
        means = table(self.records, axes, self.metric_key)
        if self.kind == "line":
            for curve, s in zip(self.curves, self.s_values, strict=True):
                xs, ys = [], []
                for i, x in enumerate(self.x_values):
                    key = (x, s) if self.s_axis else (x,)
                    v = means.get(key)
                    if v is not None and math.isfinite(v):
                        xs.append(float(x) if self._numeric_x() else float(i))
                        ys.append(v)
                curve.setData(xs, ys)
            return
        nx, ny = len(self.x_values), len(self.s_values)
        grid = np.full((ny, nx), np.nan, np.float32)
        ran = np.zeros((ny, nx), bool)
        for (x, s), v in means.items():
            if x in self.x_values and s in self.s_values:
                i, j = self.x_values.index(x), self.s_values.index(s)
                grid[j, i] = v
                ran[j, i] = True
        if self.metric_key in LOG_METRICS:  # ratios span decades: colour by log10
            with np.errstate(divide="ignore", invalid="ignore"):
                grid = np.where(grid > 0, np.log10(grid), np.nan).astype(np.float32)
        finite = grid[np.isfinite(grid)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        grid[ran & ~np.isfinite(grid)] = hi  # finished without a number: diverged
        self.grid = grid
        self.image.setImage(grid, levels=(lo, hi), autoLevels=False)
        self.image.setRect(-0.5, -0.5, nx, ny)  # after setImage: the rect scales its size
        self.colorbar.setLevels((lo, hi))

    # -- clicks --------------------------------------------------------------------------
    def values_at(self, view_x: float, view_y: float) -> dict | None:
        """Axis values of the point or cell nearest to a position in view coordinates."""
        if self.sweep is None or not self.x_values:
            return None
        if self.kind == "heatmap":
            i, j = round(view_x), round(view_y)
            if not (0 <= i < len(self.x_values) and 0 <= j < len(self.s_values)):
                return None
            return {self.x_axis: self.x_values[i], self.s_axis: self.s_values[j]}
        log_x = self.item.ctrl.logXCheck.isChecked()
        if self._numeric_x():
            pos = [math.log10(v) if log_x else float(v) for v in self.x_values]
        else:
            pos = list(range(len(self.x_values)))
        i = int(np.argmin([abs(p - view_x) for p in pos]))
        out = {self.x_axis: self.x_values[i]}
        if self.s_axis:
            log_y = self.item.ctrl.logYCheck.isChecked()
            best, best_d = None, math.inf
            for curve, s in zip(self.curves, self.s_values, strict=True):
                xs, ys = curve.getData()
                if xs is None:
                    continue
                for x, y in zip(xs, ys, strict=True):
                    if abs(x - pos[i]) < 1e-9:
                        d = abs(y - view_y) if not log_y else abs(y - view_y)
                        if d < best_d:
                            best, best_d = s, d
            if best is None:
                return None
            out[self.s_axis] = best
        return out

    def _on_scene_clicked(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        vb = self.item.getViewBox()
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        p = vb.mapSceneToView(ev.scenePos())
        values = self.values_at(p.x(), p.y())
        if values is not None:
            self.point_clicked.emit(values)

    def render_png(self, path: str, size: tuple[int, int] = (900, 600)) -> None:
        """Save the plot as drawn at ``size``: shown without a window on screen (which
        lays it out), then painted into an image, as the frame export does."""
        self.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        self.setFixedSize(*size)
        self.show()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        QCoreApplication.processEvents()
        image = QImage(size[0], size[1], QImage.Format.Format_RGB32)
        image.setDevicePixelRatio(1.0)
        image.fill(QColor(C.BACKGROUND))
        QWidget.render(self, image)
        if not image.save(str(path), "PNG"):
            raise OSError(f"cannot write {path}")
