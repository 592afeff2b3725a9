"""Gradient history: log10 ||delta_k|| as a heatmap over (layer x training step).

A vanishing gradient shows as a dark band along the lowest layers; a fix
applied mid-run shows as the band lighting up from that step on. The history
is read (under the simulation's lock) only when ``History.version`` changed (and,
while playing, at most ``PLAY_HZ`` times a second), averaged in time to about one
column per pixel on a grid fixed to the step axis, and only the columns whose
steps changed since the last frame are read and recomputed. Ranges, ticks and
colour levels are set only when they change (each change re-lays out an axis), and
the step axis grows in nice spans ahead of the data rather than with every step.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QVBoxLayout, QWidget

from simulator.snapshot import HIST_DELTA

from . import colors as C
from .flow import layer_ticks
from .panel import StepAxisPanel

PLAY_HZ = 15.0  # while playing, the heatmap is redrawn at most this often


def column_sums(raw: np.ndarray, cols: np.ndarray):
    """What the heatmap keeps per column for the entries ``raw`` ((m, n_layers)
    ||delta||, oldest first) falling in columns ``cols`` (nondecreasing, one per entry).

    Returns (the columns used, and per used column: entries, sum of the finite
    log10 |delta| per layer, how many were finite, zero, infinite (float32, per
    layer), the smallest and largest finite log over all its layers (+inf / -inf when
    none)). A column's sums are the same whichever other columns are computed with it,
    so recomputing only the columns that changed gives a from-scratch result."""
    m, n_layers = raw.shape
    starts = np.flatnonzero(np.diff(cols, prepend=-1))
    used = cols[starts]
    entries = np.diff(np.append(starts, m))
    shape = (len(starts), n_layers)
    # one array of m x n_layers, worked in place: a history's worth is a million values
    logs = np.abs(raw, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.log10(logs, out=logs)  # 0 -> -inf, inf -> inf, NaN (not measured) stays NaN
    finite = np.isfinite(logs)
    none = np.zeros(shape, np.float32)
    if finite.all():  # the usual case, and the quick one: nothing to leave out
        total = np.add.reduceat(logs, starts, axis=0, dtype=np.float32)
        count = np.repeat(entries.astype(np.float32)[:, None], n_layers, axis=1)
        zero = inf = none
        row_lo, row_hi = logs.min(axis=1), logs.max(axis=1)
    else:
        row_lo = np.min(logs, axis=1, where=finite, initial=np.inf)
        row_hi = np.max(logs, axis=1, where=finite, initial=-np.inf)
        count = np.add.reduceat(finite, starts, axis=0, dtype=np.float32)
        # the exact zeros (log10 = -inf) and the infinite values
        zero, inf = (np.add.reduceat(at, starts, axis=0, dtype=np.float32) if at.any() else none
                     for at in (logs == -np.inf, logs == np.inf))
        np.copyto(logs, np.float32(0), where=~finite)
        total = np.add.reduceat(logs, starts, axis=0, dtype=np.float32)
    lo, hi = np.minimum.reduceat(row_lo, starts), np.maximum.reduceat(row_hi, starts)
    return used, entries, total, count, zero, inf, lo, hi


class _Columns:
    """The heatmap's columns on a fixed grid: column c holds steps ``first + c * f``
    to ``first + (c + 1) * f - 1``. Between frames only the columns whose entries
    changed (new steps, and steps the history dropped or thinned out) are recomputed
    (all of them when the colour scale moves: exact zeros and inf are drawn at its
    ends); everything shown is what a from-scratch computation of the same history
    gives."""

    def __init__(self, key, first: float, f: int, n_layers: int):
        self.key, self.first, self.f, self.n_layers = key, first, f, n_layers
        self.steps = np.zeros(0)  # the entries' steps at the last update
        self.cols = 0
        self.levels = None
        self._alloc(64)

    def _alloc(self, cap: int) -> None:
        old = getattr(self, "entries", None)
        L = self.n_layers
        entries = np.zeros(cap, np.int64)
        total, finite, zero, inf = (np.zeros((cap, L), np.float32) for _ in range(4))
        lo, hi = np.full(cap, np.inf), np.full(cap, -np.inf)
        values = np.full((L, cap), np.nan, np.float32)  # (layers, columns): the image's
        if old is not None:
            n = len(old)
            entries[:n], lo[:n], hi[:n] = old, self.lo, self.hi
            for new, cur in ((total, self.total), (finite, self.finite), (zero, self.zero),
                             (inf, self.inf)):
                new[:n] = cur
            values[:, :n] = self.values
        self.entries, self.total, self.finite, self.zero, self.inf = \
            entries, total, finite, zero, inf
        self.lo, self.hi, self.values = lo, hi, values

    def column_of(self, steps: np.ndarray) -> np.ndarray:
        return ((steps - self.first) // self.f).astype(np.int64)

    def changed_columns(self, steps: np.ndarray) -> np.ndarray:
        """The columns holding a step that arrived or left since the last update."""
        old = self.steps
        if not len(old) or not len(steps):
            return self.column_of(np.concatenate([old, steps]))
        at = np.minimum(np.searchsorted(steps, old), len(steps) - 1)
        gone = old[steps[at] != old]
        at = np.minimum(np.searchsorted(old, steps), len(old) - 1)
        new = steps[old[at] != steps]
        return np.unique(self.column_of(np.concatenate([gone, new])))

    def update(self, steps: np.ndarray, columns: np.ndarray, parts) -> None:
        """Recompute ``columns`` (sorted) from ``parts``: (raw rows, their columns) read
        from the history for exactly the entries of those columns."""
        cols = int(self.column_of(steps[-1:])[0]) + 1 if len(steps) else 0
        if cols > len(self.entries):
            self._alloc(max(cols, 2 * len(self.entries)))
        if len(columns):
            self.entries[columns] = 0  # columns left without entries
            self.total[columns] = self.finite[columns] = 0
            self.zero[columns] = self.inf[columns] = 0
            self.lo[columns], self.hi[columns] = np.inf, -np.inf
        for raw, col in parts:
            if len(col):
                used, e, t, n, z, i, lo, hi = column_sums(raw, col)
                self.entries[used], self.total[used], self.finite[used] = e, t, n
                self.zero[used], self.inf[used], self.lo[used], self.hi[used] = z, i, lo, hi
        self.entries[cols:] = 0
        self.cols, self.steps = cols, steps
        levels = self._levels()
        if levels != self.levels:  # exact zeros and inf are drawn at the ends of the scale
            self.levels = levels
            columns = np.arange(cols)
        self._colour(columns[columns < cols])

    def _levels(self) -> tuple[int, int]:
        """The colour scale: whole decades around every finite log10 |delta|."""
        lo, hi = float(self.lo[:self.cols].min(initial=np.inf)), \
            float(self.hi[:self.cols].max(initial=-np.inf))
        if not (math.isfinite(lo) and math.isfinite(hi)):  # nothing finite measured
            lo, hi = -8.0, 0.0
        lo, hi = math.floor(lo), math.ceil(hi)
        return lo, (hi if hi > lo else lo + 1)

    def _colour(self, columns: np.ndarray) -> None:
        """Each column's mean log10 |delta| per layer, NaN where nothing was measured;
        exact zeros count as the bottom of the scale, inf as the top."""
        if not len(columns):
            return
        lo, hi = self.levels
        n = self.finite[columns] + self.zero[columns] + self.inf[columns]
        s = self.total[columns] + self.zero[columns] * np.float32(lo) \
            + self.inf[columns] * np.float32(hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / n
        mean[n == 0] = np.nan
        self.values[:, columns] = mean.T

    def image(self) -> np.ndarray:
        """(layers, columns); a column without entries (the thinned-out older part)
        shows the last column before it that has some."""
        cols = self.cols
        has = self.entries[:cols] > 0
        if has.all():
            return self.values[:, :cols].copy()
        src = np.maximum.accumulate(np.where(has, np.arange(cols), -1))
        out = self.values[:, np.maximum(src, 0)]
        out[:, src < 0] = np.nan
        return out


def read_columns(grid: _Columns | None, history, steps: np.ndarray, f: int) -> _Columns:
    """``grid`` brought up to date with ``history`` (whose ``steps()`` are ``steps``),
    ``f`` steps per column: only the columns whose entries changed are read and
    recomputed, unless the grid itself changed (another run or generation of the
    history, layers added or removed, another ``f``) or most columns did; then a new
    grid is computed from the whole history."""
    grid, columns, parts = read_rows(grid, history, steps, f)
    grid.update(steps, columns, parts)
    return grid


def read_rows(grid: _Columns | None, history, steps: np.ndarray, f: int):
    """The reading half of ``read_columns`` (all of it that needs the simulation's lock):
    (the grid to update, or a new one; the columns to recompute; (rows, their columns)
    read for them). ``grid.update(steps, columns, parts)`` then needs no lock."""
    key = (id(history), history.generation, float(steps[0]), f, history.n_layers)
    if grid is not None and grid.key == key:
        columns = grid.changed_columns(steps)
        if len(columns) > max(16, grid.cols // 2):
            grid = None
    if grid is None or grid.key != key:
        grid = _Columns(key, float(steps[0]), f, history.n_layers)
        col = grid.column_of(steps)
        return grid, np.arange(col[-1] + 1), [(history.layer_series(HIST_DELTA), col)]
    col = grid.column_of(steps)
    begin = np.searchsorted(col, columns, side="left")
    end = np.searchsorted(col, columns, side="right")
    runs: list[list[int]] = []
    for a, b in zip(begin.tolist(), end.tolist(), strict=True):
        if runs and a == runs[-1][1]:
            runs[-1][1] = b  # the next column's entries follow: one read
        else:
            runs.append([a, b])
    return grid, columns, [(history.rows(HIST_DELTA, a, b - a), col[a:b])
                           for a, b in runs if b > a]


class GradientHistoryView(StepAxisPanel):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self._version = None
        self._history_id = None
        self._last_time = -math.inf
        self.image_data = np.zeros((0, 0), np.float32)
        self.steps_per_column = 1
        self._x_range = None
        self._columns: _Columns | None = None  # the heatmap's columns, kept between frames
        self._init_step_axis()  # the step axis fits the last step once steps pause
        self._shown = {}  # what the axes and colour bar show: only re-set when it changes

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
        pi.disableAutoRange()
        C.cache_axes(pi, self.colorbar.axis)
        self._empty = pg.TextItem("no steps yet: press Step or Play", color=C.MUTED,
                                  anchor=(0.5, 0.5))
        pi.addItem(self._empty)

        page = QWidget()
        inner = QVBoxLayout(page)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.plot)
        self._stack_page(page)
        self.setMinimumSize(220, 120)

        # no drawing while tabbed away or closed; the latest snapshot when shown again
        self._subscribe(controller, throttled=True)
        self.render_snapshot(controller.snapshot)

    def _on_structure_changed(self, spec) -> None:
        self._version = None  # rows were added or removed: re-read
        self._columns = None

    def _max_columns(self) -> int:
        width = int(self.plot.getPlotItem().getViewBox().width())
        return width if width > 0 else 600

    def render_snapshot(self, snapshot, force: bool = False) -> None:
        if snapshot is None or self.controller.sim is None:
            self._stack.setCurrentIndex(0)
            return
        self._stack.setCurrentIndex(1)
        now = time.perf_counter()
        playing = self.controller.is_playing
        if not force and playing and now - self._last_time < 1.0 / PLAY_HZ:
            return
        with self.controller.locked() as sim:
            history = sim.history
            if id(history) == self._history_id and history.version == self._version:
                return
            if id(history) != self._history_id:  # another run: its own step axis
                self._x_range = None
            self._history_id, self._version = id(history), history.version
            self._last_time = now
            steps = history.steps()
            n_layers = history.n_layers
            if len(steps) and n_layers:
                self._step_axis(steps, playing)
                x0, x1 = self._x_range  # about one column per pixel of the step axis
                f = max(1, math.ceil((x1 - x0) / self._max_columns()))
                grid, columns, parts = read_rows(self._columns, history, steps, f)
        if len(steps) and n_layers:
            grid.update(steps, columns, parts)  # the computing, outside the lock
            self._columns = grid
            self._draw(steps)
        else:
            self._draw_empty(n_layers)

    def _step_axis(self, steps: np.ndarray, playing: bool) -> None:
        """The step axis grows in nice spans ahead of the data (fewer re-layouts) and
        ends at the last step once play stops."""
        first, last = float(steps[0]), float(steps[-1])
        self._x_range = (C.fit_steps(first - 0.5, last + 0.5) if self._fit_last and not playing
                         else C.step_range(self._x_range, first - 0.5, last + 0.5))
        self._fit_last = False

    def _draw_empty(self, n_layers: int) -> None:
        pi = self.plot.getPlotItem()
        self.image.clear()
        self.image_data = np.zeros((n_layers, 0), np.float32)
        self._columns = None
        self._empty.show()
        self._empty.setPos(0.5, 0.5)
        self._x_range = None
        self._set("x", (0.0, 1.0), lambda r: pi.setXRange(*r, padding=0))
        self._set("y", (0.0, 1.0), lambda r: pi.setYRange(*r, padding=0))

    def _draw(self, steps: np.ndarray) -> None:
        grid = self._columns
        n_layers = grid.n_layers
        pi = self.plot.getPlotItem()
        self._empty.hide()
        lo, hi = grid.levels
        first, last = float(steps[0]), float(steps[-1])
        span = max(last - first + 1.0, 1.0)
        img = grid.image()  # (layers, columns): the image's rows are layers
        self.image_data = img
        self.steps_per_column = grid.f
        self.image.setImage(img, levels=(lo, hi), autoLevels=False)
        # the columns fill the steps from the first to the last: the last column may
        # hold fewer than f steps so far, under a pixel's worth of stretch
        self.image.setRect(QRectF(first - 0.5, 0.5, span, float(n_layers)))
        self._set("levels", (lo, hi), self.colorbar.setLevels)
        self._set("ticks", n_layers, lambda n: pi.getAxis("left").setTicks(
            [layer_ticks(n, max_labels=12)]))
        self._set("x", self._x_range, lambda r: pi.setXRange(*r, padding=0))
        self._set("y", (0.5, n_layers + 0.5), lambda r: pi.setYRange(*r, padding=0))

    def _set(self, key: str, value, apply) -> None:
        if self._shown.get(key) != value:
            self._shown[key] = value
            apply(value)
