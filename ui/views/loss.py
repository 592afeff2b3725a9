"""Loss and accuracy over training steps, for the training batches and the held-out set.

Held-out numbers are only evaluated every few steps; their curve joins the
evaluated points. While playing, the curves are redrawn at most ``PLAY_HZ`` times
a second. A new range re-lays out the axes, the costliest part of a frame, so the
ranges are set here (not by pyqtgraph's auto-range, which changes them while
painting and so paints twice) and change rarely: the step axis grows in nice
spans ahead of the data, the loss axis moves only when the loss leaves it or
fills less than half of it. The training curves use ``connect='finite'`` so a NaN
(a diverged step) leaves a gap instead of a line to nowhere.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

from . import colors as C
from .panel import StepAxisPanel

PLAY_HZ = 15.0  # while playing, redraw at most this often: axes re-layout on every range change
MAX_DOTS = 120  # held-out points drawn as dots up to this many; beyond, the line alone
EMPTY_RANGE = (0.0, 10.0)  # the step axis before the first step
TRAIN = "#6fa8dc"
HELD_OUT = "#ffb347"


class LossView(StepAxisPanel):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self._version = None
        self._history_id = None
        self._last_time = -math.inf
        self._x_range = None
        self._init_step_axis()  # the step axis fits the last step once steps pause
        self._y_range = None
        self._held_shown = {}  # kind -> (number of points, last value) drawn

        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setBackground(C.BACKGROUND)
        # the legend has a row of its own above the plots: over them it hid the curves
        self.legend = C.RowLegend(colCount=2)
        self.plots.addItem(self.legend, row=0, col=0)
        self.loss_plot = self.plots.addPlot(row=1, col=0)
        self.acc_plot = self.plots.addPlot(row=2, col=0)
        self.acc_plot.setXLink(self.loss_plot)
        self.loss_plot.setLabel("left", "loss")
        self.acc_plot.setLabel("left", "accuracy")
        self.acc_plot.setLabel("bottom", "training step")
        self.acc_plot.setYRange(0, 1.02, padding=0)
        self.curves = {}
        for plot, kind in ((self.loss_plot, "loss"), (self.acc_plot, "accuracy")):
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.disableAutoRange()
            C.cache_axes(plot)
            plot.setDownsampling(auto=True, mode="peak")  # mode alone leaves it off
            plot.setClipToView(True)
            plot.getAxis("left").enableAutoSIPrefix(False)
            # "peak" keeps each pixel column's min and max: 1 sample per pixel looks the same
            # as the default 5 and draws a fifth of the segments. One pixel wide: the dense
            # training curves drawn wider go through Qt's stroker, half the loss panel's paint
            train = plot.plot([], [], pen=pg.mkPen(TRAIN, width=1), connect="finite",
                              autoDownsampleFactor=1.0)
            held = plot.plot([], [], pen=pg.mkPen(HELD_OUT, width=1.8), symbol="o",
                             symbolSize=4, symbolBrush=HELD_OUT, symbolPen=None,
                             autoDownsampleFactor=1.0)
            self.curves[kind] = (train, held)
        # one legend for both plots: the colours mean the same in each
        self.legend.addItem(self.curves["loss"][0], "training batches")
        self.legend.addItem(self.curves["loss"][1], "held-out set")
        self.acc_plot.setMaximumHeight(16777215)
        self.plots.ci.layout.setRowStretchFactor(0, 0)
        self.plots.ci.layout.setRowStretchFactor(1, 3)
        self.plots.ci.layout.setRowStretchFactor(2, 2)
        self._no_acc = pg.TextItem("no accuracy: this is a regression task", color=C.MUTED,
                                   anchor=(0.5, 0.5))
        self.acc_plot.addItem(self._no_acc, ignoreBounds=True)
        self._no_acc.hide()

        page = QWidget()
        inner = QVBoxLayout(page)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.plots)
        self._stack_page(page)
        self.setMinimumSize(220, 130)

        # no drawing while tabbed away or closed; the latest snapshot when shown again
        self._subscribe(controller, throttled=True)
        self.render_snapshot(controller.snapshot)

    def _on_structure_changed(self, spec) -> None:
        self._version = None

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
            if id(history) != self._history_id:  # another run: its own ranges
                self._x_range = self._y_range = None
            self._history_id, self._version = id(history), history.version
            self._last_time = now
            steps = history.steps()
            playing = self.controller.is_playing
            series = {name: history.scalar(name)
                      for name in ("loss", "accuracy", "val_loss", "val_accuracy")}
            regression = sim.dataset.task != "classification"
        if len(steps):  # ranges first: the curves clip to the view when given their data
            self._set_ranges(steps, series["loss"], series["val_loss"], playing)
        elif self._x_range != EMPTY_RANGE:  # a new run (reset, preset, file): start afresh
            self._x_range, self._y_range = EMPTY_RANGE, None
            self.loss_plot.setXRange(*EMPTY_RANGE, padding=0)
            self.loss_plot.setYRange(0.0, 1.0, padding=0)
        for kind, held_name in (("loss", "val_loss"), ("accuracy", "val_accuracy")):
            train, held = self.curves[kind]
            train.setData(steps, series[kind], connect="finite")
            v = series[held_name]
            ok = np.isfinite(v)
            # held-out numbers change every few steps only: re-making the symbols is not free
            shown = (int(ok.sum()), float(v[ok][-1]) if ok.any() else math.nan,
                     float(steps[ok][0]) if ok.any() else math.nan)
            if self._held_shown.get(kind) != shown:
                self._held_shown[kind] = shown
                dots = "o" if shown[0] <= MAX_DOTS else None  # hundreds of dots: a frame's cost
                if held.opts["symbol"] != dots:
                    held.setSymbol(dots)
                held.setData(steps[ok], v[ok])
        if self._no_acc.isVisible() != regression:
            self._no_acc.setVisible(regression)
        if regression:
            self._no_acc.setPos(float(steps[-1]) / 2 if len(steps) else 0.5, 0.5)

    def _set_ranges(self, steps: np.ndarray, loss: np.ndarray, val_loss: np.ndarray,
                    playing: bool = False) -> None:
        """The step axis grows in nice spans ahead of the data (a new range re-lays out
        the axis: not at every step), and ends at the last step once play stops."""
        first, last = float(steps[0]), float(steps[-1])
        x = (C.fit_steps(first, last) if self._fit_last and not playing
             else C.step_range(self._x_range, first, last))
        self._fit_last = False
        if x == self._x_range:
            x = self._x_range
        if x is not self._x_range:
            self._x_range = x
            self.loss_plot.setXRange(*x, padding=0)  # the accuracy plot is linked
        finite = np.concatenate([loss[np.isfinite(loss)], val_loss[np.isfinite(val_loss)]])
        if finite.size:
            y = C.value_range(self._y_range, float(finite.min()), float(finite.max()))
            if y is not self._y_range:
                self._y_range = y
                self.loss_plot.setYRange(*y, padding=0)
