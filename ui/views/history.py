"""Gradient history: log10 ||delta_k|| as a heatmap over (layer x training step).

A vanishing gradient shows as a dark band along the lowest layers; a fix
applied mid-run shows as the band lighting up from that step on. The history
is copied out of the simulation (under its lock) only when ``History.version``
changed (and, while playing, at most ``PLAY_HZ`` times a second), and squeezed in
time to about one column per pixel. Ranges, ticks and colour levels are set only
when they change (each change re-lays out an axis), and the step axis grows in
nice spans ahead of the data rather than with every step.
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


def squeeze_steps(values: np.ndarray, max_rows: int) -> tuple[np.ndarray, int]:
    """Average (n_steps, n_layers) over blocks of consecutive steps, ignoring NaN, into at
    most ``max_rows`` rows (float32; the oldest block is the short one).

    Returns the squeezed array and the number of steps per row. Blocks run along the
    first axis and are views of ``values``: no copy of the (large) input."""
    n = values.shape[0]
    if n <= max_rows:
        return values.astype(np.float32, copy=False), 1
    f = math.ceil(n / max_rows)
    n_full, rem = divmod(n, f)
    blocks = values[rem:].reshape(n_full, f, values.shape[1])
    out = blocks.mean(axis=1, dtype=np.float32)
    # a block with a NaN (a step not measured) is averaged over the rest, if any
    nan_rows = np.flatnonzero(np.isnan(out).any(axis=1))
    if nan_rows.size:
        out[nan_rows] = _nan_mean(blocks[nan_rows])
    if rem:
        out = np.concatenate([_nan_mean(values[None, :rem]), out])
    return out, f


def resample_steps(values: np.ndarray, steps: np.ndarray, first: float, span: float,
                   columns: int) -> np.ndarray:
    """(n_entries, n_layers) at increasing, unevenly spaced ``steps`` (the history thins
    out its older part) -> (columns, n_layers) over equal step intervals from ``first``:
    the NaN-ignoring mean of the entries in each interval, or, for an interval with
    none (the thinned part), the entry before it."""
    n_layers = values.shape[1]
    col = np.minimum(((steps - first) * (columns / span)).astype(np.int64), columns - 1)
    starts = np.flatnonzero(np.diff(col, prepend=-1))  # first entry of each used column
    ok = ~np.isnan(values)
    total = np.add.reduceat(np.where(ok, values, 0), starts, axis=0, dtype=np.float32)
    count = np.add.reduceat(ok, starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (total / count).astype(np.float32)
    means[count == 0] = np.nan
    # each column shows the last used column at or before it
    src = np.searchsorted(col[starts], np.arange(columns), side="right") - 1
    out = means[np.maximum(src, 0)]
    if src[0] < 0:
        out[src < 0] = np.nan
    return out.reshape(columns, n_layers)


def _nan_mean(blocks: np.ndarray) -> np.ndarray:
    """(k, f, n_layers) -> (k, n_layers) means over f ignoring NaN; NaN where all are."""
    ok = ~np.isnan(blocks)
    count = ok.sum(axis=1)
    total = np.where(ok, blocks, 0).sum(axis=1, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (total / count).astype(np.float32)
    out[count == 0] = np.nan
    return out


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
        self._log_cache = None  # (history key, steps, log10|delta|, zero) of the last read
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
        self._log_cache = None

    def _max_columns(self) -> int:
        width = int(self.plot.getPlotItem().getViewBox().width())
        return width if width > 0 else 600

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
            if id(history) != self._history_id:  # another run: its own step axis
                self._x_range = None
            self._history_id, self._version = id(history), history.version
            self._last_time = now
            steps = history.steps()
            key = (id(history), history.generation)
            old, start = self._kept_rows(key, steps)
            new = history.layer_series(HIST_DELTA, start)  # fancy-indexed: already a copy
        logs, zero = self._logs(key, steps, old, new)
        self._draw(steps, logs, self.controller.is_playing, zero)

    def _kept_rows(self, key, steps: np.ndarray):
        """Which of ``steps`` were read before (their logs are kept): (their places in
        the kept logs, or None to read everything; how many leading steps they are)."""
        cache = self._log_cache
        if cache is None or cache[0] != key or not len(steps) or not len(cache[1]):
            return None, 0
        kept_steps = cache[1]
        start = int(np.searchsorted(steps, kept_steps[-1], side="right"))
        idx = np.searchsorted(kept_steps, steps[:start])
        if np.any(idx >= len(kept_steps)) or not np.array_equal(kept_steps[idx], steps[:start]):
            return None, 0
        return idx, start

    def _logs(self, key, steps, old, new: np.ndarray):
        """log10 |delta| (NaN where not measured or exactly zero) and where it is zero,
        for every entry: the kept rows' logs and the new rows' computed now. Rows of a
        history never change until ``History.generation`` moves, so each row's log is
        taken once, not at every frame."""
        logs = new.astype(np.float32, copy=False)  # layer_series hands out a copy
        np.abs(logs, out=logs)
        zero = logs == 0
        logs[zero] = np.nan  # no log of 0, and out of the min and max
        with np.errstate(invalid="ignore", divide="ignore"):
            np.log10(logs, out=logs)
        if old is not None:
            _, _, kept_logs, kept_zero = self._log_cache
            logs = np.concatenate([kept_logs[old], logs])
            zero = np.concatenate([kept_zero[old], zero])
        self._log_cache = (key, steps, logs, zero)
        return logs, zero

    def _draw(self, steps: np.ndarray, logs: np.ndarray, playing: bool = False,
              zero: np.ndarray | None = None) -> None:
        """``logs``: log10 |delta| per (step, layer), NaN where not measured or zero;
        ``zero`` marks the exact zeros (drawn at the bottom of the scale)."""
        n_layers = logs.shape[1] if logs.ndim == 2 else 0
        pi = self.plot.getPlotItem()
        if len(steps) == 0 or n_layers == 0:
            self.image.clear()
            self.image_data = np.zeros((n_layers, 0), np.float32)
            self._empty.show()
            self._empty.setPos(0.5, 0.5)
            self._x_range = None
            self._set("x", (0.0, 1.0), lambda r: pi.setXRange(*r, padding=0))
            self._set("y", (0.0, 1.0), lambda r: pi.setYRange(*r, padding=0))
            return
        self._empty.hide()
        if zero is None:
            zero = np.zeros(logs.shape, bool)
        # (steps, layers) throughout: a 5000-step history of 200 layers is a million
        # values, and every pass (and new array) over them counts
        with np.errstate(invalid="ignore"):
            lo, hi = np.fmin.reduce(logs, axis=None), np.fmax.reduce(logs, axis=None)
        if not (math.isfinite(lo) and math.isfinite(hi)):  # diverged (inf) or nothing measured
            finite = logs[np.isfinite(logs)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-8.0, 0.0)
        lo, hi = math.floor(lo), math.ceil(hi)
        if hi <= lo:
            hi = lo + 1
        # exact zeros sit at the bottom of the scale, inf (diverged) at the top; NaN (not
        # measured) stays transparent
        logs = np.clip(logs, lo, hi)  # a new array: the logs are kept for the next frame
        logs[zero] = lo
        first, last = float(steps[0]), float(steps[-1])
        span = max(last - first + 1.0, 1.0)
        # the step axis grows in nice spans ahead of the data (fewer re-layouts) and
        # ends at the last step once play stops
        x = (C.fit_steps(first - 0.5, last + 0.5) if self._fit_last and not playing
             else C.step_range(self._x_range, first - 0.5, last + 0.5))
        self._fit_last = False
        if x != self._x_range:
            self._x_range = x
        x0, x1 = self._x_range
        # about one column per pixel of the part of the plot the steps cover
        cols = max(64, int(self._max_columns() * min(1.0, span / (x1 - x0))))
        if len(steps) == span:  # one entry per step
            img, f = squeeze_steps(logs, cols)
        else:  # the older part is thinned out: put every entry at its own step
            cols = min(cols, int(span))
            img = resample_steps(logs, steps, first, span, cols)
            f = math.ceil(span / cols)
        img = np.ascontiguousarray(img.T)  # (layers, columns): the image's rows are layers
        self.image_data = img
        self.steps_per_column = f
        self.image.setImage(img, levels=(lo, hi), autoLevels=False)
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
