"""Colours and log-scale helpers shared by the views.

Gradient magnitudes span many decades, so every view colours them by
``log10``. A ``LogScale`` turns magnitudes into a small number of colour bins
(drawing is grouped by bin: one path or one point list per colour); bin 0 is
reserved for exact zeros (and -inf), the last bin for NaN.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import pyqtgraph as pg
import shiboken6
from PySide6.QtCore import QCoreApplication, QEvent, QTimer
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QDockWidget, QGraphicsItem, QLabel, QSizePolicy, QWidget

BACKGROUND = "#14171f"
PANEL = "#1c2030"
FOREGROUND = "#dde3ee"
MUTED = "#8e97aa"
GRID = "#2c3246"
FORWARD = "#4fb3ff"  # highlight of the layer being computed in the forward pass
BACKWARD = "#ff8a1f"  # ... in the backward pass
SELECTION = "#f5f5f5"
IDENTITY_SKIP = "#7ddc8f"
PROJECTION_SKIP = "#e58be0"
NEUTRAL = "#59627a"  # units without a gradient (the input)
ZERO = "#0d0714"  # exactly zero: darker than the darkest colour of the map
MEASURED = "#6fa8dc"
PREDICTION = "#ffd166"
SEVERITY = {"critical": "#ff5c5c", "warning": "#ffb020", "info": "#5cc8ff"}
# Categorical colours for classes (decision boundary): distinct on a dark background.
CLASS_COLORS = (
    (79, 163, 255),
    (255, 138, 31),
    (93, 211, 130),
    (232, 93, 117),
    (178, 132, 255),
    (240, 214, 74),
    (75, 215, 214),
    (255, 140, 200),
    (160, 160, 160),
    (190, 140, 90),
)

COLORMAP_NAME = "viridis"
DECADES = 8  # a log colour scale spans this many powers of ten
N_BINS = 24  # drawing colours per scale (3 per decade)


def colormap() -> pg.ColorMap:
    return pg.colormap.get(COLORMAP_NAME)


def lut256() -> np.ndarray:
    """The 256-entry RGBA lookup table every heatmap uses."""
    return colormap().getLookupTable(0.0, 1.0, 256, alpha=True)


def bin_colors(n_bins: int = N_BINS) -> list[QColor]:
    """Colours of bins 0..n_bins+1: zero, n_bins steps of the map, NaN."""
    table = colormap().getLookupTable(0.0, 1.0, n_bins, alpha=False)
    return [QColor(ZERO), *(QColor(int(r), int(g), int(b)) for r, g, b in table),
            QColor(NEUTRAL)]


def cosmetic_pen(color, width: float = 1.0, style=None) -> QPen:
    pen = QPen(QColor(color))
    pen.setWidthF(width)
    pen.setCosmetic(True)
    if style is not None:
        pen.setStyle(style)
    return pen


class LogScale:
    """Maps magnitudes to colour bins on a log10 axis spanning ``decades`` decades.

    The top follows the largest value seen, rounded up to a power of ten, with
    hysteresis so the colours do not flicker when the maximum wobbles around a
    decade boundary.
    """

    def __init__(self, decades: int = DECADES, n_bins: int = N_BINS, hi: float = 0.0):
        self.decades = decades
        self.n_bins = n_bins
        self.hi = float(hi)

    @property
    def lo(self) -> float:
        return self.hi - self.decades

    @property
    def nan_bin(self) -> int:
        return self.n_bins + 1

    def follow(self, *arrays) -> bool:
        """Move the top of the scale to the data's largest decade. True if it moved."""
        top = -math.inf
        for a in arrays:
            a = np.asarray(a, dtype=np.float64)
            ok = a[np.isfinite(a) & (a > 0)]
            if ok.size:
                top = max(top, float(ok.max()))
        if not math.isfinite(top):
            return False
        hi = math.ceil(math.log10(top) - 1e-9)
        if hi > self.hi or hi < self.hi - 2:
            self.hi = float(hi)
            return True
        return False

    def bins(self, values) -> np.ndarray:
        """Bin index per value: 0 for zero/-inf, 1..n_bins along the scale, n_bins+1 for NaN."""
        v = np.asarray(values, dtype=np.float64)
        out = np.full(v.shape, self.nan_bin, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            lv = np.log10(np.abs(v))
        finite = np.isfinite(lv)
        t = (lv[finite] - self.lo) / (self.hi - self.lo)
        out[finite] = 1 + np.clip((t * self.n_bins).astype(np.int64), 0, self.n_bins - 1)
        out[(v == 0) | np.isneginf(lv)] = 0
        out[np.isposinf(v) | np.isposinf(lv)] = self.n_bins
        return out


def log10_or_floor(values, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(log10 |values| with zeros/-inf/NaN replaced by ``floor``, mask of replaced entries)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lv = np.log10(np.abs(v))
    bad = ~np.isfinite(lv)
    lv[bad] = floor
    return lv, bad


def fmt_sci(value) -> str:
    """Short scientific notation for a magnitude: 3.1e-07, 0, or an en dash for NaN."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "\u2013"
    if math.isnan(v):
        return "\u2013"
    if v == 0:
        return "0"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.1e}"


def fmt_pct(value) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "\u2013"
    return "\u2013" if math.isnan(v) else f"{100 * v:.0f}%"


def decade_label(exponent: int) -> str:
    """'1e-8' for -8, '1' for 0, '10' for 1."""
    if exponent == 0:
        return "1"
    if exponent == 1:
        return "10"
    return f"1e{exponent}"


def blend(color: str, alpha: int) -> QColor:
    c = QColor(color)
    c.setAlpha(alpha)
    return c


class Subscriptions:
    """The controller signals a view listens to, so ``close()`` can undo them all."""

    def __init__(self):
        self._pairs: list = []

    def connect(self, signal, slot) -> None:
        signal.connect(slot)
        self._pairs.append((signal, slot))

    def disconnect_all(self) -> None:
        for signal, slot in self._pairs:
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):  # already gone with its sender
                pass
        self._pairs.clear()


# -- drawing fast ------------------------------------------------------------------------------


def cache_axes(*axes) -> None:
    """Draw these pyqtgraph axes (or every axis of these PlotItems) from a cached pixmap.

    An axis replays its recorded picture, every tick label laid out again, whenever
    anything under it repaints: with a grid that is the whole plot, every frame. Cached,
    it is one blit until its range, ticks, label or size change (pyqtgraph calls
    ``update()`` then, which refreshes the cache)."""
    for item in axes:
        if isinstance(item, pg.PlotItem):
            cache_axes(*(item.getAxis(name) for name in ("left", "bottom", "right", "top")))
        else:
            item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)


def nice_ceil(x: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= x (x > 0)."""
    e = math.floor(math.log10(x))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10.0 ** e >= x * (1 - 1e-12):
            return m * 10.0 ** e
    return 10.0 ** (e + 1)


def step_range(current, first: float, last: float, min_span: float = 10.0):
    """The x range of a plot over training steps ``first..last`` that changes rarely.

    A new range re-lays out the axis, the costliest part of a frame; so the range
    starts at ``first`` and ends a "nice" span (1, 2, 5 x 10^k steps) later, and is
    kept for as long as it holds the data and the data fills at least 40% of it
    (a reset or a new run shrinks it again). Returns ``current`` itself when kept."""
    if current is not None:
        lo, hi = current
        if lo <= first and last <= hi and (last - first) >= 0.4 * (hi - lo) - min_span:
            return current
    span = nice_ceil(max(1.25 * (last - first), min_span))
    return (float(first), float(first) + span)


def fit_steps(first: float, last: float, min_span: float = 10.0) -> tuple[float, float]:
    """The x range that ends at the last step (used when not playing): no empty room
    past the data, at least ``min_span`` steps wide."""
    return (float(first), float(max(last, first + min_span)))


class RowLegend(pg.LegendItem):
    """A legend that takes its own row in a graphics layout instead of floating over
    the data: pyqtgraph's sizes itself with ``setGeometry(0, 0, ...)``, which would
    pull it out of the layout, so this one sets its size hints instead."""

    def __init__(self, **kwargs):
        kwargs.setdefault("labelTextColor", FOREGROUND)
        kwargs.setdefault("frame", False)
        super().__init__(offset=None, **kwargs)

    def updateSize(self):
        height = width = 0.0
        for row in range(self.layout.rowCount()):
            row_h, row_w = 0.0, 0.0
            for col in range(self.layout.columnCount()):
                item = self.layout.itemAt(row, col)
                if item:
                    row_w += item.width() + 3
                    row_h = max(row_h, item.height())
            width, height = max(width, row_w), height + row_h
        self.setMinimumSize(width, height)
        self.setMaximumHeight(height)
        self.updateGeometry()


def value_range(current, lo: float, hi: float, pad: float = 0.08):
    """A y range for values in [lo, hi] that changes rarely: kept while it holds them
    and they span at least half of it; a new one has ``pad`` of the span either side.
    Returns ``current`` itself when kept."""
    if current is not None:
        a, b = current
        if a <= lo and hi <= b and (hi - lo) >= 0.5 * (b - a):
            return current
    span = hi - lo
    if not span > 0:
        span = max(abs(hi), 1.0) * 0.1
    return (lo - pad * span, hi + pad * span)


class QuietBox(QWidget):
    """Holds a label whose text changes with every step (numbers).

    A label's new text re-lays out every layout above it, up to the main window's
    (a millisecond or two a frame). This box has no layout of its own, so the
    label's request stops here, and goes on only when the new text needs more room:
    another height for a word-wrapped label, a larger size for a single line."""

    def __init__(self, label: QLabel):
        super().__init__()
        self.label = label
        label.setParent(self)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        policy.setHeightForWidth(label.wordWrap())
        self.setSizePolicy(policy)

    def hasHeightForWidth(self) -> bool:
        return self.label.wordWrap()

    def heightForWidth(self, width: int) -> int:
        return self.label.heightForWidth(width)

    def sizeHint(self):
        return self.label.sizeHint()

    def minimumSizeHint(self):
        return self.label.minimumSizeHint()

    def resizeEvent(self, ev) -> None:
        self.label.setGeometry(self.rect())
        super().resizeEvent(ev)

    def event(self, ev) -> bool:
        if ev.type() == QEvent.Type.LayoutRequest:  # posted by the label's setText
            if self.label.wordWrap():
                more = self.heightForWidth(self.width()) != self.height()
            else:
                hint = self.label.sizeHint()
                more = hint.width() > self.width() or hint.height() != self.height()
            if more:
                self.updateGeometry()
            return True
        return super().event(ev)


class _DrawQueue:
    """While the simulation plays, the docked views draw one per turn of the event loop.

    One snapshot reaching every panel in a row kept the GUI thread busy for 30 ms and
    more on a 50 x 64 network; a key press then waited for all of it. Each turn draws
    the next waiting view with the newest snapshot (a view waits at most once), and
    the event loop handles input and repaints in between."""

    def __init__(self):
        self._waiting: dict[int, DrawWhenSeen] = {}  # in order of arrival
        self._timer: QTimer | None = None

    def add(self, helper: DrawWhenSeen) -> None:
        self._waiting.setdefault(id(helper), helper)
        if self._timer is None or not shiboken6.isValid(self._timer):
            self._timer = QTimer(QCoreApplication.instance())  # goes with the application
            self._timer.setSingleShot(True)
            self._timer.timeout.connect(self._next)
        if not self._timer.isActive():
            self._timer.start(0)

    def discard(self, helper: DrawWhenSeen) -> None:
        self._waiting.pop(id(helper), None)

    def _next(self) -> None:
        if self._waiting:
            key = next(iter(self._waiting))
            self._waiting.pop(key)._draw_latest()
        if self._waiting:
            self._timer.start(0)  # started inside a timeout: fires on the next turn


_DRAW_QUEUE = _DrawQueue()


class DrawWhenSeen:
    """Draws a view's snapshots while the view can be seen, and the latest one when it
    can be seen again; while playing, in a turn of the event loop of its own
    (``_DrawQueue``).

    A dock widget whose tab is not the current one is not hidden: Qt moves it out of
    the window, and only ``QDockWidget.visibilityChanged`` says so. The view routes
    its controller signals through ``request``, calls ``attach`` from its showEvent,
    and keeps ``render_snapshot`` drawing unconditionally (the exporter calls it on
    views that are never on screen). ``throttled``: the view's render_snapshot takes
    ``force`` (to draw even while playing faster than it redraws).
    """

    def __init__(self, view, throttled: bool = False):
        # weakly: a view -> helper -> view cycle would leave a closed top-level view to
        # the garbage collector, which deletes its C++ side whenever it runs, even in the
        # middle of another widget's paint event (a crash)
        self._view = weakref.ref(view)
        self._throttled = throttled
        self._pending = False
        self._dock: QDockWidget | None = None
        self._dock_visible = True

    @property
    def visible(self) -> bool:
        view = self._view()
        return view is not None and self._dock_visible and view.isVisible()

    def request(self, snapshot, force: bool = False) -> None:
        if not self.visible:
            self._pending = True
            return
        self._pending = False
        view = self._view()
        if not force and getattr(view.controller, "is_playing", False):
            _DRAW_QUEUE.add(self)
            return
        _DRAW_QUEUE.discard(self)  # drawn now: an older wait must not draw after it
        self._draw(snapshot, force)

    def _draw_latest(self) -> None:
        view = self._view()
        if view is not None and self.visible:
            self._draw(view.controller.snapshot, False)

    def attach(self) -> None:
        """Find the dock the view sits in (it changes when the view is re-docked), then
        draw what was missed while hidden."""
        view = self._view()
        w = view.parentWidget() if view is not None else None
        while w is not None and not isinstance(w, QDockWidget):
            w = w.parentWidget()
        if w is not self._dock:
            self.detach()
            self._dock = w
            if w is not None:
                w.visibilityChanged.connect(self._on_visibility_changed)
                g = w.geometry()  # the test QDockWidget itself makes on a show event
                self._dock_visible = w.isFloating() or (g.right() >= 0 and g.bottom() >= 0)
        self._catch_up()

    def detach(self) -> None:
        _DRAW_QUEUE.discard(self)
        if self._dock is not None:
            try:
                self._dock.visibilityChanged.disconnect(self._on_visibility_changed)
            except (RuntimeError, TypeError):  # already gone with the dock
                pass
        self._dock = None
        self._dock_visible = True

    def _on_visibility_changed(self, visible: bool) -> None:
        self._dock_visible = bool(visible)
        self._catch_up()

    def _catch_up(self) -> None:
        if self._pending and self.visible:
            self._pending = False
            self._draw(self._view().controller.snapshot, True)

    def _draw(self, snapshot, force: bool) -> None:
        view = self._view()
        if view is None:
            return
        if self._throttled:
            view.render_snapshot(snapshot, force=force)
        else:
            view.render_snapshot(snapshot)


def _guard_graphicsview_paint() -> None:
    """Skip painting a pyqtgraph view whose scene (or itself) is already deleted on the
    C++ side. pyqtgraph's paintEvent calls scene().prepareForPaint() unconditionally; a
    paint event that reaches a view while Qt tears it down then crashes the process
    (seen, rarely, when many views are created and destroyed, as in the test suite)."""
    import shiboken6

    original = pg.GraphicsView.paintEvent
    if getattr(original, "_gfl_guarded", False):
        return

    def paintEvent(self, ev):
        if not shiboken6.isValid(self):
            return None
        scene = self.scene()
        if scene is None or not shiboken6.isValid(scene):
            return None
        return original(self, ev)

    paintEvent._gfl_guarded = True
    pg.GraphicsView.paintEvent = paintEvent


_guard_graphicsview_paint()
