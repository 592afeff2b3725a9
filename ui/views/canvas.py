"""The network canvas: layers as columns of units, connections, skip links as arcs.

Data coordinates: layer k (0 = input, L+1 = output) sits at x = k; its units
at y in [-1, 1]; skip arcs rise from y = ARC_BASE, or from higher up when the
layer names (drawn in pixels) reach above it. Everything that changes every
frame (unit colours, connection colours, highlight, dimming, numbers) is
updated in place on a fixed set of items; the items themselves are rebuilt
only when the structure changes.

Connections are grouped by colour bin and each bin is one ``drawLines`` call on
a QPolygonF filled from numpy, never one graphics item per edge. Wide layers
show at most ``MAX_SHOWN_UNITS`` units, and the number of connections drawn per
layer pair shrinks with depth so a frame stays cheap at 200 layers.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pyqtgraph as pg
from pyqtgraph import functions as fn
from pyqtgraph.Qt import internals as Qt_internals
from PySide6.QtCore import QEvent, QLineF, QObject, QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QActionGroup,
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QStaticText,
    QTransform,
)
from PySide6.QtWidgets import (
    QApplication,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QGraphicsView,
    QInputDialog,
    QLabel,
    QMenu,
    QToolTip,
)

from simulator.spec import ACTIVATIONS

from . import colors as C

ACTIVATION_MIME = "application/x-gfl-activation"
MAX_SHOWN_UNITS = 12
EDGE_BUDGET = 1000  # connections drawn in total, at most
MAX_WIDTH_EDIT = 1024
COL_HALF = 1.0  # units span y in [-COL_HALF, COL_HALF]
MAX_UNIT_GAP = 0.4
ARC_BASE = 1.55
UNIT_PX = 8.0
ARC_SAMPLES = 41
MAX_ARCS = 2000  # skip links drawn at most (evenly chosen); a note counts the others


def unit_sample(width: int, limit: int = MAX_SHOWN_UNITS) -> np.ndarray:
    """Indices of the units shown for a layer of ``width`` units: evenly spread."""
    n = min(width, limit)
    return np.unique(np.linspace(0, width - 1, n).round().astype(np.int64))


def _unit_ys(n: int) -> np.ndarray:
    if n <= 1:
        return np.zeros(max(n, 0))
    gap = min(2 * COL_HALF / (n - 1), MAX_UNIT_GAP)
    return (n - 1) / 2 * gap - gap * np.arange(n)


def _spread(n: int, m: int) -> np.ndarray:
    """m positions out of range(n), evenly spread (all of them if m >= n)."""
    if m >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, m).round().astype(np.int64))


def _arc_height(span: int) -> float:
    return min(0.35 + 0.3 * math.log2(max(span, 1)), 1.9)


def _fill_polygon(points: np.ndarray):
    poly = fn.create_qpolygonf(len(points))
    fn.ndarray_from_qpolygonf(poly)[:] = points
    return poly


class _BinnedLines(pg.GraphicsObject):
    """Line segments grouped by colour bin, each bin drawn with one ``drawLines`` call."""

    def __init__(self, pens: list[QPen]):
        super().__init__()
        self._pens = pens
        self._coords = np.zeros((0, 4))
        self._polys: list = []
        self._rect = QRectF()

    def set_geometry(self, coords: np.ndarray, rect: QRectF) -> None:
        """coords: (n, 4) segments x0, y0, x1, y1 in data coordinates."""
        self.prepareGeometryChange()
        self._coords = np.ascontiguousarray(coords, dtype=np.float64)
        self._rect = rect
        self._polys = []
        self.update()

    def set_bins(self, bins: np.ndarray) -> None:
        polys = []
        if len(bins):
            order = np.argsort(bins, kind="stable")
            counts = np.bincount(bins, minlength=len(self._pens))
            start = 0
            for b, count in enumerate(counts):
                if count:
                    sel = self._coords[order[start:start + count]]
                    polys.append((b, _fill_polygon(sel.reshape(-1, 2))))
                start += count
        self._polys = polys
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, *args) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for b, poly in self._polys:
            painter.setPen(self._pens[b])
            painter.drawLines(poly)


class _Arcs(pg.GraphicsObject):
    """Every skip arc of one kind as line segments, drawn with one ``drawLines`` call.

    One path item per arc made opening a network with 125 000 skips take half a
    minute, and one joined path is no better (Qt strokes it as a whole). Separate
    segments cost linear time; when there are very many, they are drawn one pixel
    wide without antialiasing (Qt's fast path)."""

    SMOOTH_SEGMENTS = 10_000

    def __init__(self, pen: QPen):
        super().__init__()
        self._pen = pen
        self._thin = QPen(pen)  # for very many: one-pixel lines are drawn without stroking
        self._thin.setWidthF(1.0)
        self._lines = None
        self._n = 0
        self._rect = QRectF()

    def pen(self) -> QPen:
        return self._pen

    def set_arcs(self, pts: np.ndarray) -> None:
        """pts: (n_arcs, samples, 2) points along each arc, in data coordinates."""
        self.prepareGeometryChange()
        if len(pts) == 0:
            self._lines, self._n, self._rect = None, 0, QRectF()
        else:
            pairs = np.stack([pts[:, :-1], pts[:, 1:]], axis=2)  # (n, samples-1, 2, 2)
            self._lines = _fill_polygon(pairs.reshape(-1, 2))
            self._n = pairs.shape[0] * pairs.shape[1]
            lo, hi = pts.reshape(-1, 2).min(axis=0), pts.reshape(-1, 2).max(axis=0)
            self._rect = QRectF(lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, *args) -> None:
        if not self._n:
            return
        smooth = self._n <= self.SMOOTH_SEGMENTS
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, smooth)
        painter.setPen(self._pen if smooth else self._thin)
        painter.drawLines(self._lines)


class _UnitDots(pg.GraphicsObject):
    """Units as round dots of a fixed pixel size, coloured by bin.

    Each colour's dot is rendered once into an atlas pixmap; a frame is a single
    ``drawPixmapFragments`` call (the technique pyqtgraph's ScatterPlotItem uses),
    so a thousand antialiased dots cost well under a millisecond.
    """

    def __init__(self, colors: list[QColor], outline: QColor, size: float):
        super().__init__()
        self._colors = colors
        self._outline = outline
        self._size = size
        self._cell = int(math.ceil(size + 4))
        self._atlas = None
        self._atlas_dpr = 0.0
        self._pts = np.zeros((0, 2))
        self._bins = np.zeros(0, np.int64)
        self._frags = Qt_internals.PrimitiveArray(QPainter.PixmapFragment, 10)
        self._rect = QRectF()

    def set_geometry(self, pts: np.ndarray, rect: QRectF) -> None:
        self.prepareGeometryChange()
        self._pts = np.ascontiguousarray(pts, dtype=np.float64)
        self._bins = np.zeros(len(pts), np.int64)
        self._rect = rect
        self.update()

    def set_bins(self, bins: np.ndarray) -> None:
        self._bins = np.asarray(bins, np.int64)
        self.update()

    def _make_atlas(self, dpr: float) -> None:
        cell = self._cell
        pix = QPixmap(int(math.ceil(cell * len(self._colors) * dpr)), int(math.ceil(cell * dpr)))
        pix.setDevicePixelRatio(dpr)
        pix.fill(Qt.GlobalColor.transparent)
        p = QPainter(pix)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        r = self._size / 2
        for i, color in enumerate(self._colors):
            center = QPointF(i * cell + cell / 2, cell / 2)
            p.setPen(QPen(self._outline, 1.3))
            p.setBrush(color)
            p.drawEllipse(center, r, r)
        p.end()
        self._atlas, self._atlas_dpr = pix, dpr

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, *args) -> None:
        n = len(self._pts)
        if n == 0 or len(self._bins) != n:
            return
        device = painter.device()
        dpr = device.devicePixelRatioF() if device is not None else 1.0
        if self._atlas is None or dpr != self._atlas_dpr:
            self._make_atlas(dpr)
        t = painter.transform()
        x, y = self._pts[:, 0], self._pts[:, 1]
        self._frags.resize(n)
        frags = self._frags.ndarray()
        frags[:, 0] = t.m11() * x + t.m21() * y + t.dx()
        frags[:, 1] = t.m12() * x + t.m22() * y + t.dy()
        cell = self._cell * dpr
        frags[:, 2] = self._bins * cell
        frags[:, 3] = 0.0
        frags[:, 4] = cell
        frags[:, 5] = cell
        frags[:, 6:10] = (1 / dpr, 1 / dpr, 0.0, 1.0)
        painter.save()
        painter.resetTransform()
        painter.drawPixmapFragments(*self._frags.drawargs(), self._atlas)
        painter.restore()


class _DimBands(pg.GraphicsObject):
    """Translucent bands over the layers whose delta is not computed yet in this iteration.

    Plain ``fillRect`` calls without antialiasing: a path item would send the same
    rectangles through the (much slower) antialiased path filler every frame."""

    def __init__(self, color: QColor):
        super().__init__()
        self._color = color
        self._rects: list[QRectF] = []
        self._rect = QRectF()

    def set_area(self, rect: QRectF) -> None:
        self.prepareGeometryChange()
        self._rect = rect

    def set_rects(self, rects: list[QRectF]) -> None:
        if rects != self._rects:
            self._rects = rects
            self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, *args) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for r in self._rects:
            painter.fillRect(r, self._color)


class _LayerLabels(pg.GraphicsObject):
    """Every per-layer text (header, batch-norm badge, +N, ||delta||) in one item.

    Texts are drawn in pixels, so they keep their size when zooming; when the
    columns are too close for horizontal text they turn vertical, and when
    even that does not fit only every n-th layer is labelled (the highlighted
    one always is).
    """

    def __init__(self):
        super().__init__()
        self.font = QFont()
        self.font.setPointSizeF(8.5)
        self.bold = QFont(self.font)
        self.bold.setBold(True)
        self.bold.setPointSizeF(9.5)
        self.headers: list[str] = []
        self.bn: list[bool] = []
        self.extra: list[int] = []
        self.norms: list[str] = []
        self.highlight = -1
        self.highlight_color = QColor(C.BACKWARD)
        self._static: dict[str, QStaticText] = {}
        self._advance: dict[str, float] = {}  # text width per string, in self.font
        self._widest = 0.0
        self.selected = -1
        self._rect = QRectF()

    def set_structure(self, headers, bn, extra, rect: QRectF) -> None:
        self.prepareGeometryChange()
        self.headers, self.bn, self.extra = list(headers), list(bn), list(extra)
        # upright (narrow columns): one line per layer, with the hidden units' count
        self.vertical_texts = [h + (" +BN" if b else "") + (f"  (+{e})" if e > 0 else "")
                               for h, b, e in zip(self.headers, self.bn, self.extra,
                                                  strict=True)]
        # headers only change with the structure: lay their text out once
        self._static = {}
        for text in {*self.headers, *self.vertical_texts}:
            st = QStaticText(text)
            st.prepare(QTransform(), self.font)
            self._static[text] = st
        self.norms = [""] * len(headers)
        fm = QFontMetricsF(self.font)
        self._widest = max(fm.horizontalAdvance(s) for s in (*self.headers, "8.8e-88"))
        self._rect = rect
        self.update()

    def set_values(self, norms: list[str], highlight: int, color: str) -> None:
        self.norms = norms
        self.highlight = highlight
        self.highlight_color = QColor(color)
        self.update()

    def set_selected(self, k: int) -> None:
        if k != self.selected:
            self.selected = k
            self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, *args) -> None:
        n = len(self.headers)
        if n == 0:
            return
        t = painter.transform()
        x0 = t.map(QPointF(0.0, 0.0)).x()
        spacing = abs(t.map(QPointF(1.0, 0.0)).x() - x0)
        top = t.map(QPointF(0.0, COL_HALF)).y()
        bottom = t.map(QPointF(0.0, -COL_HALF)).y()
        device = painter.device()
        device_w = device.width() / device.devicePixelRatioF() if device is not None else 1e9
        fm = QFontMetricsF(self.font)
        line_h = fm.height()
        horizontal = spacing >= self._widest + 8
        stride = 1 if spacing >= line_h + 2 else math.ceil((line_h + 2) / max(spacing, 1e-6))
        painter.save()
        painter.resetTransform()
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if 0 <= self.selected < n:  # a frame around the selected column's units, in pixels
            sx = t.map(QPointF(float(self.selected), 0.0)).x()
            half = min(max(0.3 * spacing, 7.0), 16.0)
            painter.setPen(C.cosmetic_pen(C.SELECTION, 1.2, Qt.PenStyle.DotLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(sx - half, top - 5, 2 * half, bottom - top + 10), 3, 3)
        fg, muted = QColor(C.FOREGROUND), QColor(C.MUTED)
        # the highlighted value's box hides the numbers of the columns it covers
        hi_x, hi_half = -1e9, 0.0
        if 0 <= self.highlight < n and self.norms[self.highlight]:
            hi_x = t.map(QPointF(float(self.highlight), 0.0)).x()
            hi_half = QFontMetricsF(self.bold).horizontalAdvance(self.norms[self.highlight]) / 2 + 8
        advance = self._advance_of(fm)
        # x of column k: the view maps data to pixels by scale and offset only
        x_scale, x_offset = t.m11(), t.dx()
        painter.setFont(self.font)
        for k in range(n):
            x = x_scale * k + x_offset
            if x < -60 or x > device_w + 60:
                continue
            is_hi = k == self.highlight
            reach = advance(self.norms[k]) / 2 + 2 if horizontal else line_h / 2
            covered = not is_hi and abs(x - hi_x) < hi_half + reach
            if not is_hi and k % stride and k != n - 1:
                continue
            header = self.headers[k]
            if horizontal:
                w = fm.horizontalAdvance(header)
                painter.setPen(fg)
                painter.drawStaticText(QPointF(x - w / 2, top - 8 - fm.height()),
                                       self._static[header])
                if self.bn[k]:
                    self._badge(painter, QPointF(x, top - 10 - line_h), "BN")
                below = bottom + 8 + fm.ascent()
                if self.extra[k] > 0:
                    s = f"+{self.extra[k]}"
                    painter.setPen(muted)
                    painter.drawText(QPointF(x - fm.horizontalAdvance(s) / 2, below), s)
                    below += line_h
                if not is_hi and not covered and self.norms[k]:
                    s = self.norms[k]
                    painter.setPen(fg)
                    painter.drawText(QPointF(x - fm.horizontalAdvance(s) / 2, below), s)
            else:
                text = self.vertical_texts[k]
                self._vertical(painter, x, top - 8, text, fg, fm, up_from=True,
                               static=self._static.get(text))
                if not is_hi and not covered and self.norms[k]:
                    self._vertical(painter, x, bottom + 8, self.norms[k], fg, fm, up_from=False)
            if is_hi and self.norms[k]:
                self._highlight_value(painter, x, bottom + 8 + (line_h if horizontal and
                                                             self.extra[k] > 0 else 0),
                                      self.norms[k])
                painter.setFont(self.font)
        painter.restore()

    def _advance_of(self, fm: QFontMetricsF):
        """Text width in self.font, remembered per string (a frame asks for the same
        few dozen strings; the cache is dropped when it grows past a few thousand)."""
        cache = self._advance
        if len(cache) > 4096:
            cache.clear()

        def advance(text: str) -> float:
            w = cache.get(text)
            if w is None:
                w = cache[text] = fm.horizontalAdvance(text)
            return w

        return advance

    def _vertical(self, painter, x, y, text, color, fm, up_from: bool, static=None) -> None:
        """Text rotated by -90 degrees, reading upwards, starting (up_from) or ending at y.
        The painter's transform is the identity here (paint() reset it) and is again after."""
        w = self._advance_of(fm)(text)
        # rotate by -90 degrees about the origin, then move there: one transform, no save
        painter.setTransform(QTransform(0.0, -1.0, 1.0, 0.0, x + fm.ascent() / 2 - fm.descent(),
                                        y if up_from else y + w))
        painter.setPen(color)
        if static is not None:
            painter.drawStaticText(QPointF(0, -fm.ascent()), static)
        else:
            painter.drawText(QPointF(0, 0), text)
        painter.resetTransform()

    def _badge(self, painter, center: QPointF, text: str) -> None:
        fm = QFontMetricsF(self.font)
        w, h = fm.horizontalAdvance(text) + 6, fm.height()
        rect = QRectF(center.x() - w / 2, center.y() - h + 2, w, h)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor("#3c6e9e"))
        painter.drawRoundedRect(rect, 3, 3)
        painter.setPen(QColor("#ffffff"))
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)

    def _highlight_value(self, painter, x, y, text) -> None:
        painter.setFont(self.bold)
        fm = QFontMetricsF(self.bold)
        w, h = fm.horizontalAdvance(text) + 10, fm.height() + 4
        device = painter.device()
        right = device.width() / device.devicePixelRatioF() if device is not None else 1e9
        rect = QRectF(min(max(x - w / 2, 2.0), right - w - 2), y, w, h)
        painter.setPen(QPen(self.highlight_color, 1.5))
        painter.setBrush(QColor(C.PANEL))
        painter.drawRoundedRect(rect, 4, 4)
        painter.setPen(self.highlight_color)
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)


class _ColorLegend(pg.GraphicsWidget):
    """A vertical log colour bar with one label per decade and a swatch for exact zeros."""

    def __init__(self, scale: C.LogScale):
        super().__init__()
        self.scale = scale
        self.setPreferredWidth(96)
        self.setMinimumWidth(96)
        self.setMaximumWidth(96)
        self._lut = C.lut256()
        self.font = QFont()
        self.font.setPointSizeF(8)

    def paint(self, painter: QPainter, *args) -> None:
        r = self.boundingRect()
        fm = QFontMetricsF(self.font)
        painter.setFont(self.font)
        painter.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        painter.setPen(QColor(C.FOREGROUND))
        title = ["units: mean |\u03b4|", "links: |dL/dW|"]
        y = r.top() + 4
        for line in title:
            y += fm.height()
            painter.drawText(QPointF(r.left() + 4, y - fm.descent()), line)
        bar_top = y + fm.height() * 0.6
        bar_bottom = r.bottom() - 2.2 * fm.height()
        if bar_bottom - bar_top < 30:
            return
        bar = QRectF(r.left() + 8, bar_top, 14, bar_bottom - bar_top)
        grad = QLinearGradient(bar.bottomLeft(), bar.topLeft())
        for i in range(0, 256, 15):
            c = self._lut[i]
            grad.setColorAt(i / 255, QColor(int(c[0]), int(c[1]), int(c[2])))
        c = self._lut[255]
        grad.setColorAt(1.0, QColor(int(c[0]), int(c[1]), int(c[2])))
        painter.setPen(QColor(C.GRID))
        painter.setBrush(QBrush(grad))
        painter.drawRect(bar)
        lo, hi = int(self.scale.lo), int(self.scale.hi)
        n = hi - lo
        step = max(1, math.ceil(n * fm.height() / max(bar.height(), 1)))
        painter.setPen(QColor(C.FOREGROUND))
        for e in range(hi, lo - 1, -step):
            yy = bar.bottom() - (e - lo) / n * bar.height()
            painter.drawLine(QLineF(bar.right(), yy, bar.right() + 4, yy))
            label = ("\u2264" if e == lo else "") + C.decade_label(e)
            painter.drawText(QPointF(bar.right() + 7, yy + fm.ascent() / 2 - 1), label)
        swatch = QRectF(bar.left(), bar.bottom() + 0.7 * fm.height(), 14, fm.height() * 0.9)
        painter.setPen(QColor(C.GRID))
        painter.setBrush(QColor(C.ZERO))
        painter.drawRect(swatch)
        painter.setPen(QColor(C.FOREGROUND))
        painter.drawText(QPointF(swatch.right() + 7, swatch.bottom() - 2), "0")


class _DropAllTarget(pg.GraphicsWidget):
    """A strip that takes an activation chip and applies it to every hidden layer."""

    TEXT = "All layers \u2013 drop an activation here to set every hidden layer"

    def __init__(self):
        super().__init__()
        self.hot = False
        self.setPreferredHeight(26)
        self.setMaximumHeight(26)
        self.font = QFont()
        self.font.setPointSizeF(8.5)

    def set_hot(self, hot: bool) -> None:
        if hot != self.hot:
            self.hot = hot
            self.update()

    def paint(self, painter: QPainter, *args) -> None:
        r = self.boundingRect().adjusted(4, 3, -4, -3)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        pen = QPen(QColor(C.FORWARD if self.hot else C.GRID), 1.2, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(QColor(40, 70, 110) if self.hot else QColor(C.PANEL))
        painter.drawRoundedRect(r, 5, 5)
        painter.setFont(self.font)
        painter.setPen(QColor(C.FOREGROUND if self.hot else C.MUTED))
        painter.drawText(r, Qt.AlignmentFlag.AlignCenter, self.TEXT)


class NetworkCanvas(pg.GraphicsView):
    """The network drawn as columns of units; drag to add skips, right-click to edit."""

    skip_requested = Signal(int, int)
    skip_remove_requested = Signal(int, int)
    activation_requested = Signal(int, str)  # layer 0 means all hidden layers
    batchnorm_requested = Signal(int, bool)
    width_requested = Signal(int, int)
    insert_layer_requested = Signal(int)
    delete_layer_requested = Signal(int)

    def __init__(self, controller, parent=None):
        super().__init__(parent, background=C.BACKGROUND)
        self.controller = controller
        self.setAcceptDrops(True)
        self.setMinimumSize(320, 220)
        self.setMouseTracking(True)
        self._spec = None
        self._snap = None
        self._samples: list[np.ndarray] = []
        self._unit_y: list[np.ndarray] = []
        self._unit_start: np.ndarray = np.zeros(1, np.int64)
        self._gaps: list[tuple[np.ndarray, np.ndarray]] = []
        self._gap_flat: list[np.ndarray] = []
        self._edge_flat: np.ndarray | None = None
        # skip (i, j) -> its row in _arc_pts (n_skips, samples, 2) and _arc_proj
        self._arcs: dict[tuple[int, int], int] = {}
        self._arc_pts = np.zeros((0, ARC_SAMPLES, 2))
        self._arc_proj = np.zeros(0, bool)
        self._arc_keys: list[tuple[int, int]] = []
        self._arc_base = ARC_BASE  # data y of the arcs' feet: above the layer names
        self._press: tuple[int, QPoint] | None = None
        self._dragging = False
        self._menu: QMenu | None = None
        self._highlight = (-1, "")
        self.scale = C.LogScale()

        self._layout = pg.GraphicsLayout()
        self._layout.setContentsMargins(2, 2, 2, 2)
        self._layout.setSpacing(2)
        self.setCentralItem(self._layout)
        self._drop_all = _DropAllTarget()
        self._layout.addItem(self._drop_all, row=0, col=0, colspan=2)
        self.vb = pg.ViewBox(enableMenu=False, defaultPadding=0.0)
        self.vb.disableAutoRange()
        self._layout.addItem(self.vb, row=1, col=0)
        self._legend = _ColorLegend(self.scale)
        self._layout.addItem(self._legend, row=1, col=1)

        colors = C.bin_colors(self.scale.n_bins)
        # opaque (pre-mixed with the background): blending every pixel of every line
        # costs more than the look is worth
        bg = QColor(C.BACKGROUND)
        edge_pens = []
        for c in colors:
            mixed = QColor(int(0.75 * c.red() + 0.25 * bg.red()),
                           int(0.75 * c.green() + 0.25 * bg.green()),
                           int(0.75 * c.blue() + 0.25 * bg.blue()))
            edge_pens.append(C.cosmetic_pen(mixed, 1.0))
        self._edges = _BinnedLines(edge_pens)
        self._units = _UnitDots(colors, QColor("#7a849c"), UNIT_PX)
        self._glow = QGraphicsRectItem()
        self._glow.setPen(QPen(Qt.PenStyle.NoPen))
        self._dim = _DimBands(C.blend(C.BACKGROUND, 175))
        self._rubber = QGraphicsPathItem()
        self._rubber.setPen(C.cosmetic_pen(C.FOREGROUND, 2.0, Qt.PenStyle.DashLine))
        self._rubber.hide()
        self._labels = _LayerLabels()
        # every skip link of a kind is one path: a network may have 125 000 of them
        self._identity_arcs = _Arcs(C.cosmetic_pen(C.IDENTITY_SKIP, 2.4))
        self._projection_arcs = _Arcs(C.cosmetic_pen(C.PROJECTION_SKIP, 2.2,
                                                     Qt.PenStyle.DashLine))
        self._arc_note = pg.TextItem(color=C.MUTED, anchor=(0, 1))
        self._arc_note.hide()
        self._arcs_not_drawn = 0
        # the layer an activation chip would land on, while it is dragged over the canvas
        self._drop_box = QGraphicsRectItem(QRectF(-0.45, -COL_HALF - 0.12, 0.9,
                                                  2 * COL_HALF + 0.24))
        self._drop_box.setPen(C.cosmetic_pen(C.FORWARD, 2.0))
        self._drop_box.setBrush(QBrush(C.blend(C.FORWARD, 40)))
        self._drop_box.hide()
        self.drop_layer = 0  # the layer highlighted for a drop, 0 for none
        for z, item in ((-5, self._glow), (0, self._edges), (2, self._units), (4, self._dim),
                        (5, self._identity_arcs), (5, self._projection_arcs),
                        (6, self._arc_note), (6, self._drop_box),
                        (7, self._labels), (8, self._rubber)):
            item.setZValue(z)
            self.vb.addItem(item, ignoreBounds=True)

        self._placeholder = QLabel("Compiling kernels\u2026", self.viewport())
        self._placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._placeholder.setStyleSheet(f"color: {C.MUTED}; font-size: 14pt;")
        self._placeholder.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)

        self._tooltip_filter = _TooltipFilter(self)
        self.viewport().installEventFilter(self._tooltip_filter)
        self._subs = C.Subscriptions()
        self._subs.connect(controller.snapshot_changed, self._on_snapshot_changed)
        self._subs.connect(controller.structure_changed, self._on_structure_changed)
        self._subs.connect(controller.selection_changed, self._on_selection_changed)
        self._subs.connect(controller.ready, self._on_ready_changed)
        self._auto_fit = True  # until the user zooms or pans, resizing keeps it all in view
        self.vb.sigRangeChangedManually.connect(self._on_range_changed_manually)
        # the arcs rise from above the layer names, whose height is in pixels: a zoom or
        # a resize moves their feet
        self.vb.sigRangeChanged.connect(self._place_arcs_above_names)
        if controller.snapshot is not None:
            self._rebuild(controller.snapshot.spec)
            self.fit()
            self.render_snapshot(controller.snapshot)
        else:
            self._set_empty(True)

    # -- controller signals ------------------------------------------------------------
    def _on_snapshot_changed(self, snapshot) -> None:
        self.render_snapshot(snapshot)

    def _on_structure_changed(self, spec) -> None:
        self._rebuild(spec)
        self.fit()

    def _on_selection_changed(self, k: int) -> None:
        self._place_selection()

    def _on_range_changed_manually(self, *_) -> None:
        self._auto_fit = False

    def _on_ready_changed(self) -> None:
        self._placeholder.setText("Building the network\u2026")

    def set_drop_target_visible(self, on: bool) -> None:
        """Show or hide the "All layers" drop bar (hidden in exported frames, where
        nothing can be dropped)."""
        self._drop_all.setVisible(on)
        self._drop_all.setMaximumHeight(16777215 if on else 0)

    def close(self) -> bool:
        self._subs.disconnect_all()
        if self._menu is not None:
            self._menu.deleteLater()
            self._menu = None
        # Hover text comes through an event filter (not a Python viewportEvent override),
        # removed here so no Python code runs on a viewport being torn down.
        self.viewport().removeEventFilter(self._tooltip_filter)
        # Not pg.GraphicsView.close(): it destroys the viewport itself; the scene goes
        # with the widget when it is deleted.
        return QGraphicsView.close(self)

    def closeEvent(self, ev) -> None:
        self._subs.disconnect_all()
        super().closeEvent(ev)

    # -- structure ---------------------------------------------------------------------
    @property
    def n_columns(self) -> int:
        return len(self._samples)

    def _rebuild(self, spec) -> None:
        self._spec = spec
        widths = spec.widths
        n_cols = len(widths)
        self._samples = [unit_sample(w) for w in widths]
        self._unit_y = [_unit_ys(len(s)) for s in self._samples]
        counts = np.array([len(s) for s in self._samples])
        self._unit_start = np.concatenate(([0], np.cumsum(counts)))
        pts = np.column_stack([
            np.repeat(np.arange(n_cols, dtype=np.float64), counts),
            np.concatenate(self._unit_y),
        ])
        rect = QRectF(-0.6, -COL_HALF - 0.3, n_cols + 0.2, 2 * COL_HALF + 0.6)
        self._units.set_geometry(pts, rect)

        n_gaps = n_cols - 1
        m = int(np.clip(math.isqrt(max(EDGE_BUDGET // max(n_gaps, 1), 1)), 2, MAX_SHOWN_UNITS))
        self._gaps = []
        self._gap_flat = []  # per gap: the drawn connections' flat indices into dL/dW_k
        self._edge_flat = None  # the same, into all dL/dW_k end to end (made when needed)
        segs = []
        for k in range(1, n_cols):
            a = _spread(len(self._samples[k - 1]), m)
            b = _spread(len(self._samples[k]), m)
            self._gaps.append((self._samples[k - 1][a], self._samples[k][b]))
            si, dj = self._gaps[-1]
            self._gap_flat.append((si[:, None] * widths[k] + dj[None, :]).ravel())
            ya = np.repeat(self._unit_y[k - 1][a], len(b))
            yb = np.tile(self._unit_y[k][b], len(a))
            seg = np.empty((len(ya), 4))
            seg[:, 0], seg[:, 1], seg[:, 2], seg[:, 3] = k - 1, ya, k, yb
            segs.append(seg)
        self._edges.set_geometry(np.concatenate(segs) if segs else np.zeros((0, 4)), rect)

        self._set_arcs(spec)

        headers = ["in"] + [h.activation for h in spec.hidden] + ["out"]
        bn = [False] + [h.batchnorm for h in spec.hidden] + [False]
        extra = [int(w - len(s)) for w, s in zip(widths, self._samples, strict=True)]
        top = self._top()
        self._labels.set_structure(headers, bn, extra,
                                   QRectF(-1.5, -COL_HALF - 2.5, n_cols + 2, top + 4))
        self._glow.hide()
        self._dim.set_area(rect)
        self._dim.set_rects([])
        self._place_selection()
        self._place_arcs_above_names()  # the names may be longer now

    def _top(self) -> float:
        if self._spec is None or not self._spec.skips:
            return ARC_BASE
        return self._arc_base + self._arcs_extent()

    def _arcs_extent(self) -> float:
        """How far the arcs (and the note about arcs not drawn) reach above their feet,
        in data units (0 without skips)."""
        if self._spec is None or not self._spec.skips:
            return 0.0
        longest = max(j - i for i, j in self._arc_keys) if self._arc_keys else 1
        extent = _arc_height(longest) + 0.15
        return extent + 0.35 if self._arcs_not_drawn else extent  # room for the note

    def _names_height(self, spacing: float) -> float:
        """Pixels the layer names (and BN badges) take above the units, with a small
        gap, when the columns are ``spacing`` pixels apart: flat when they fit side by
        side, else upright and as tall as the longest."""
        labels = self._labels
        fm = QFontMetricsF(labels.font)
        if not labels.headers or spacing >= labels._widest + 8:
            return 2 * fm.height() + 12
        return max(fm.horizontalAdvance(t) for t in labels.vertical_texts) + 14

    def _arc_base_for(self, spacing: float, scale: float) -> float:
        """Where the arcs' feet go (data y) at ``spacing`` pixels per layer and ``scale``
        pixels per data unit up: ARC_BASE, or higher when the names reach above it."""
        if scale <= 0:
            return ARC_BASE
        return max(ARC_BASE, COL_HALF + self._names_height(spacing) / scale)

    def _place_arcs_above_names(self, *_) -> None:
        """Move the arcs' feet above the layer names for the view's current scale (the
        names are drawn in pixels, the arcs in data units)."""
        if self._spec is None or not self._spec.skips:
            return
        (x0, x1), (y0, y1) = self.vb.viewRange()
        w, h = self.vb.width(), self.vb.height()
        if w <= 0 or h <= 0 or x1 <= x0 or y1 <= y0:
            return
        base = self._arc_base_for(w / (x1 - x0), h / (y1 - y0))
        if abs(base - self._arc_base) > 1e-3 * max(abs(base), 1.0):
            self._arc_base = base
            self._set_arcs(self._spec)

    def _arc_points(self, i: float, j: float, h: float) -> np.ndarray:
        t = np.linspace(0.0, 1.0, ARC_SAMPLES)[:, None]
        base = self._arc_base
        p0 = np.array([i, base])
        p1 = np.array([i, base + h * 4 / 3])
        p2 = np.array([j, base + h * 4 / 3])
        p3 = np.array([j, base])
        return ((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2
                + t ** 3 * p3)

    def _set_arcs(self, spec) -> None:
        """All skip arcs, computed at once into two items (identity, projection). Fewer
        samples per arc when there are thousands, so the segment lists stay small."""
        skips = list(spec.skips)
        hidden = max(0, len(skips) - MAX_ARCS)
        if hidden:  # an even choice across the list (sorted by source, then target)
            keep = np.unique(np.linspace(0, len(skips) - 1, MAX_ARCS).round().astype(int))
            skips = [skips[r] for r in keep]
            hidden = len(spec.skips) - len(skips)
        self._arcs_not_drawn = hidden
        self._arcs = {key: row for row, key in enumerate(skips)}
        self._arc_keys = skips
        samples = max(9, min(ARC_SAMPLES, 40_000 // max(len(skips), 1)))
        if not skips:
            self._arc_pts = np.zeros((0, samples, 2))
            self._arc_proj = np.zeros(0, bool)
        else:
            ij = np.array(skips, float)
            i, j = ij[:, 0:1], ij[:, 1:2]
            h = np.minimum(0.35 + 0.3 * np.log2(np.maximum(j - i, 1.0)), 1.9)  # _arc_height
            t = np.linspace(0.0, 1.0, samples)[None, :]
            base = self._arc_base
            top = base + h * 4 / 3
            # the cubic Bezier of _arc_points, for every skip at once
            a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
            x = (a + b) * i + (c + d) * j
            y = (a + d) * base + (b + c) * top
            self._arc_pts = np.stack([x, y], axis=-1)
            self._arc_proj = np.array([spec.skip_needs_projection(k) for k in skips], bool)
        self._identity_arcs.set_arcs(self._arc_pts[~self._arc_proj])
        self._projection_arcs.set_arcs(self._arc_pts[self._arc_proj])
        if hidden:
            self._arc_note.setText(f"{len(skips):,} of {len(spec.skips):,} skip links drawn")
            self._arc_note.setPos(-0.5, self._arc_base + 2.2)
        self._arc_note.setVisible(bool(hidden))

    def fit(self) -> None:
        """Show the whole network (and keep doing so on resizes until the user zooms)."""
        self._auto_fit = True
        if self._spec is None:
            return
        n = self.n_columns
        bottom, top = self._fit_y_range(n)
        self.vb.setRange(xRange=(-0.8, n - 1 + 0.8), yRange=(bottom, top), padding=0.0)

    def _fit_y_range(self, n: int) -> tuple[float, float]:
        """The y range that shows the units, the skip arcs, and the layer texts in full:
        the texts are drawn in pixels above and below the units, so on a short canvas
        the units get less height until the texts fit (within reason)."""
        arcs = self._arcs_extent()  # the arcs stand on top of the names
        lo_pad, hi_pad = 0.75, ARC_BASE + arcs + 0.1 - COL_HALF  # data units below / above
        h, w = self.vb.height(), self.vb.width()
        labels = self._labels
        if h <= 0 or w <= 0 or not labels.headers:
            return -COL_HALF - lo_pad, COL_HALF + hi_pad
        fm = QFontMetricsF(labels.font)
        spacing = w / max(n - 1 + 1.6, 1.0)
        need_top = self._names_height(spacing)
        if spacing >= labels._widest + 8:  # texts lie flat: a couple of lines each side
            need_bottom = 3 * fm.height() + 16
        else:  # upright: as long as the longest text
            need_bottom = fm.horizontalAdvance("\u2016a\u2016 8.8e-88") + 14
        span = 2 * COL_HALF
        s0 = h / (lo_pad + span + hi_pad)  # pixels per data unit without the texts
        scale = s0
        for _ in range(8):  # settles in a few rounds
            top_pad = max(hi_pad, need_top / scale + (arcs + 0.1 if arcs else 0.0))
            bottom_pad = max(lo_pad, need_bottom / scale)
            scale = max(h / (top_pad + span + bottom_pad), 0.35 * s0)
        bottom = -COL_HALF - max(lo_pad, need_bottom / scale)
        return bottom, bottom + h / scale

    # -- drawing a snapshot --------------------------------------------------------------
    def _set_empty(self, empty: bool) -> None:
        self._placeholder.setVisible(empty)
        for item in (self._edges, self._units, self._labels, self._dim):
            item.setVisible(not empty)
        for item in (self._identity_arcs, self._projection_arcs):
            item.setVisible(not empty)
        self._arc_note.setVisible(bool(self._arcs_not_drawn) and not empty)
        if empty:
            self._glow.hide()

    def render_snapshot(self, snapshot) -> None:
        """Draw ``snapshot`` now (the signal handler and the exporter both call this)."""
        if snapshot is None:
            self._snap = None
            self._set_empty(True)
            return
        spec = snapshot.spec
        if self._spec is None or (spec is not self._spec and spec != self._spec):
            first = self._spec is None
            self._rebuild(spec)
            if first:
                self.fit()
        self._set_empty(False)
        self._snap = snapshot
        n_w = self.n_columns - 1  # weight layers
        ok = len(snapshot.delta_norm) == n_w

        unit_vals = np.full(int(self._unit_start[-1]), np.nan)
        if ok and len(snapshot.unit_delta) == n_w:
            for k in range(1, n_w + 1):
                s, e = self._unit_start[k], self._unit_start[k + 1]
                unit_vals[s:e] = snapshot.unit_delta[k - 1][self._samples[k]]
        edge_vals = self._edge_values(snapshot) if ok else np.full(len(self._edges._coords),
                                                                  np.nan)
        if self.scale.follow(unit_vals, edge_vals):
            self._legend.update()
        self._units.set_bins(self.scale.bins(unit_vals))
        self._edges.set_bins(self.scale.bins(edge_vals))

        phase, layer = snapshot.phase, int(snapshot.layer)
        hi = layer if phase in ("forward", "backward") and 1 <= layer <= n_w else -1
        color = C.BACKWARD if phase == "backward" else C.FORWARD
        if hi > 0:
            if self._highlight[1] != color:
                grad = QLinearGradient(0, 0, 1, 0)
                grad.setCoordinateMode(QLinearGradient.CoordinateMode.ObjectBoundingMode)
                grad.setColorAt(0.0, C.blend(color, 0))
                grad.setColorAt(0.3, C.blend(color, 140))
                grad.setColorAt(0.5, C.blend(color, 235))
                grad.setColorAt(0.7, C.blend(color, 140))
                grad.setColorAt(1.0, C.blend(color, 0))
                self._glow.setBrush(QBrush(grad))
            # at least ~16 px wide, so the band stays visible on a zoomed-out deep network
            half = max(0.42, 8.0 / self._px_per_layer())
            self._glow.setRect(QRectF(-half, -COL_HALF - 0.06, 2 * half, 2 * COL_HALF + 0.12))
            self._glow.setPos(hi, 0)
            self._glow.show()
        else:
            self._glow.hide()
        self._highlight = (hi, color if hi > 0 else "")

        rects = []
        if ok and phase in ("forward", "loss", "backward"):
            dim = ~np.asarray(snapshot.backward_done, bool)
            if hi > 0:
                dim[hi - 1] = False
            # one rectangle per run of dimmed layers: a few big fills, not one per layer
            edges = np.flatnonzero(np.diff(np.concatenate(([0], dim.astype(np.int8), [0]))))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                rects.append(QRectF(a + 0.5, -COL_HALF - 0.3, b - a, 2 * COL_HALF + 0.6))
        self._dim.set_rects(rects)

        norms = [""] + ([C.fmt_sci(v) for v in snapshot.delta_norm] if ok else [""] * n_w)
        if hi > 0 and phase == "forward" and len(snapshot.activations) >= hi:
            # the forward pass computes the activations: show that, not last step's delta
            a = np.asarray(snapshot.activations[hi - 1], dtype=np.float64)
            norms[hi] = "\u2016a\u2016 " + C.fmt_sci(float(np.sqrt(np.sum(a * a))))
        self._labels.set_values(norms, hi, color)

    def _edge_values(self, snapshot) -> np.ndarray:
        parts = []
        grads = snapshot.weight_grads
        if len(grads) == len(self._gaps) and self._gaps:
            # W_k is (widths[k-1], widths[k]), row-major: all layers' drawn entries at once
            flat = self._edge_index()
            if flat is not None:
                return np.abs(np.concatenate([np.ravel(g) for g in grads])[flat])
        for k, (si, dj) in enumerate(self._gaps, start=1):
            if len(grads) == len(self._gaps):
                parts.append(np.abs(np.take(grads[k - 1], self._gap_flat[k - 1])))
            else:  # too large to copy: the layer's RMS entry stands for every connection
                w_in, w_out = self._spec.widths[k - 1], self._spec.widths[k]
                rms = float(snapshot.grad_norm[k - 1]) / math.sqrt(w_in * w_out)
                parts.append(np.full(len(si) * len(dj), rms))
        return np.concatenate(parts) if parts else np.zeros(0)

    def _edge_index(self) -> np.ndarray | None:
        """The drawn connections' indices into all dL/dW_k laid end to end (None when
        there are too many weights to gather them in one array)."""
        if self._edge_flat is None:
            widths = self._spec.widths
            sizes = [widths[k - 1] * widths[k] for k in range(1, len(widths))]
            if sum(sizes) > 4_000_000:
                return None
            starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
            self._edge_flat = np.concatenate(
                [flat + start for flat, start in zip(self._gap_flat, starts, strict=True)])
        return self._edge_flat

    def _place_selection(self) -> None:
        k = self.controller.selected_layer
        self._labels.set_selected(k if self._spec is not None and 1 <= k < self.n_columns else -1)

    # -- read-outs for tests and the exporter ---------------------------------------------
    @property
    def highlighted_layer(self) -> int:
        """The layer lit up as the current micro-step's (0 for none)."""
        return max(self._highlight[0], 0)

    @property
    def highlight_color(self) -> str:
        return self._highlight[1]

    def skip_links(self) -> dict[tuple[int, int], str]:
        """The arcs drawn: (from, to) -> 'identity' or 'projection' (all of them up to
        MAX_ARCS; beyond, an even choice, and ``arcs_not_drawn`` counts the rest)."""
        return {key: ("projection" if self._arc_proj[row] else "identity")
                for key, row in self._arcs.items()}

    @property
    def arcs_not_drawn(self) -> int:
        return self._arcs_not_drawn

    def arc_note(self) -> str:
        """The note shown when not every skip link is drawn ('' when all are)."""
        return self._arc_note.toPlainText() if self._arcs_not_drawn else ""

    def shown_units(self, k: int) -> int:
        return len(self._samples[k])

    def layer_texts(self, k: int) -> tuple[str, str]:
        """(header, ||delta|| text) drawn for layer k."""
        return self._labels.headers[k], self._labels.norms[k]

    # -- coordinates -------------------------------------------------------------------
    def _to_viewport(self, x: float, y: float) -> QPoint:
        return self.mapFromScene(self.vb.mapViewToScene(QPointF(x, y)))

    def _to_data(self, pos) -> QPointF:
        return self.vb.mapSceneToView(self.mapToScene(QPoint(pos)))

    def _px_per_layer(self) -> float:
        a, b = self._to_viewport(0.0, 0.0), self._to_viewport(1.0, 0.0)
        return max(abs(b.x() - a.x()), 1e-6)

    def layer_pos(self, k: int) -> QPoint:
        """Viewport position of the centre of layer k's column (0 = input, L+1 = output)."""
        return self._to_viewport(float(k), 0.0)

    def skip_pos(self, i: int, j: int) -> QPoint:
        """Viewport position of a point on the arc of skip (i, j): its apex."""
        pts = self._arc_pts[self._arcs[(i, j)]]
        x, y = pts[len(pts) // 2]
        return self._to_viewport(float(x), float(y))

    def _layer_at(self, pos) -> int | None:
        if self._spec is None:
            return None
        d = self._to_data(pos)
        k = int(round(d.x()))
        if not 0 <= k < self.n_columns:
            return None
        tol = min(0.5, max(0.3, 8.0 / self._px_per_layer()))
        if abs(d.x() - k) > tol or not -COL_HALF - 0.7 <= d.y() <= self._arc_base - 0.05:
            return None
        return k

    def _skip_at(self, pos) -> tuple[int, int] | None:
        """The skip whose arc passes within 7 px of ``pos`` (the nearest), all arcs
        measured at once."""
        if not self._arcs:
            return None
        p = QPointF(pos)
        o = self._to_viewport(0.0, 0.0)
        one = self._to_viewport(1.0, 1.0)
        sx, sy = one.x() - o.x(), one.y() - o.y()
        px = o.x() + self._arc_pts[..., 0] * sx
        py = o.y() + self._arc_pts[..., 1] * sy
        lo = np.minimum(px[:, 0], px[:, -1]) - 8
        hi = np.maximum(px[:, 0], px[:, -1]) + 8
        near = np.flatnonzero((lo <= p.x()) & (p.x() <= hi))
        if len(near) == 0:
            return None
        d = np.hypot(px[near] - p.x(), py[near] - p.y()).min(axis=1)
        best = int(np.argmin(d))
        if d[best] >= 7.0:
            return None
        row = int(near[best])
        return self._arc_keys[row]

    def _unit_at(self, pos, k: int) -> int | None:
        """Index (into the layer's units) of the unit drawn under ``pos``, if any."""
        o = self._to_viewport(float(k), 0.0)
        one = self._to_viewport(float(k), 1.0)
        ys = o.y() + self._unit_y[k] * (one.y() - o.y())
        if abs(pos.x() - o.x()) > UNIT_PX:
            return None
        i = int(np.argmin(np.abs(ys - pos.y())))
        return int(self._samples[k][i]) if abs(ys[i] - pos.y()) <= UNIT_PX else None

    # -- mouse -------------------------------------------------------------------------
    def mousePressEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            pos = ev.position().toPoint()
            k = self._layer_at(pos)
            if k is not None and self._skip_at(pos) is None:
                self._press = (k, pos)
                self._dragging = False
                ev.accept()
                return
        super().mousePressEvent(ev)

    def mouseMoveEvent(self, ev) -> None:
        if self._press is not None:
            pos = ev.position().toPoint()
            if not self._dragging and (pos - self._press[1]).manhattanLength() >= \
                    QApplication.startDragDistance():
                self._dragging = True
            if self._dragging:
                self._draw_rubber(pos)
            ev.accept()
            return
        super().mouseMoveEvent(ev)

    def mouseReleaseEvent(self, ev) -> None:
        if self._press is not None and ev.button() == Qt.MouseButton.LeftButton:
            k0, _ = self._press
            pos = ev.position().toPoint()
            self._press = None
            self._rubber.hide()
            if self._dragging:
                self._dragging = False
                pair = self._skip_target(k0, self._layer_at(pos))
                if pair is not None:
                    self.skip_requested.emit(*pair)
            elif k0 >= 1:
                self.controller.select_layer(k0)
            ev.accept()
            return
        super().mouseReleaseEvent(ev)

    def mouseDoubleClickEvent(self, ev) -> None:
        self.fit()
        ev.accept()

    def _skip_target(self, k0: int, k1: int | None) -> tuple[int, int] | None:
        """The skip a drag from layer k0 to k1 asks for, or None if it is not a valid one."""
        if k1 is None or k1 == k0 or self._spec is None:
            return None
        a, b = min(k0, k1), max(k0, k1)
        if not (0 <= a < b <= self._spec.depth) or (a, b) in self._spec.skips:
            return None
        return a, b

    def _draw_rubber(self, pos) -> None:
        k0 = self._press[0]
        d = self._to_data(pos)
        target = self._layer_at(pos)
        valid = self._skip_target(k0, target) is not None
        x1 = float(target) if valid else d.x()
        # inside the part of the view that is shown: without skips yet, the room above
        # the layers where arcs go is off the top, and the band showed as two ticks
        view_top = self.vb.viewRange()[1][1]
        base = min(self._arc_base, view_top - 0.1)
        y1 = base if valid else d.y()
        room = view_top - max(y1, base) - 0.05
        h = max(min(_arc_height(int(abs(x1 - k0)) or 1), room), 0.05)
        path = QPainterPath(QPointF(k0, base))
        path.cubicTo(QPointF(k0, base + h * 4 / 3), QPointF(x1, max(y1, base) + h * 4 / 3),
                     QPointF(x1, y1))
        self._rubber.setPen(C.cosmetic_pen(C.IDENTITY_SKIP if valid else C.MUTED, 2.0,
                                           Qt.PenStyle.DashLine))
        self._rubber.setPath(path)
        self._rubber.show()

    # -- context menu ------------------------------------------------------------------
    def context_menu_for(self, pos) -> QMenu | None:
        """The menu a right click at viewport position ``pos`` opens (None: no menu there)."""
        if self._spec is None:
            return None
        pos = QPoint(pos)
        if self._menu is not None:
            self._menu.deleteLater()
            self._menu = None
        skip = self._skip_at(pos)
        if skip is not None:
            menu = QMenu(self)
            act = menu.addAction("Remove skip link")
            act.triggered.connect(partial(self.skip_remove_requested.emit, *skip))
            self._menu = menu
            return menu
        k = self._layer_at(pos)
        if k is None or not 1 <= k <= self._spec.depth:
            return None
        layer = self._spec.hidden[k - 1]
        menu = QMenu(self)
        title = menu.addAction(f"Layer {k}: {layer.width} units")
        title.setEnabled(False)
        sub = menu.addMenu("Activation")
        group = QActionGroup(sub)
        group.setExclusive(True)
        for name in ACTIVATIONS:
            a = sub.addAction(name)
            a.setCheckable(True)
            a.setChecked(name == layer.activation)
            group.addAction(a)
            a.triggered.connect(partial(self.activation_requested.emit, k, name))
        bn = menu.addAction("Batch norm")
        bn.setCheckable(True)
        bn.setChecked(layer.batchnorm)
        bn.triggered.connect(lambda *_: self.batchnorm_requested.emit(k, bn.isChecked()))
        width = menu.addAction("Change width\u2026")
        width.triggered.connect(partial(self._ask_width, k))
        menu.addSeparator()
        ins = menu.addAction("Insert layer above")
        ins.triggered.connect(partial(self.insert_layer_requested.emit, k))
        delete = menu.addAction("Delete layer")
        delete.setEnabled(self._spec.depth > 1)
        delete.triggered.connect(partial(self.delete_layer_requested.emit, k))
        self._menu = menu
        return menu

    def _ask_width(self, k: int, *_) -> None:
        current = self._spec.hidden[k - 1].width
        value, ok = QInputDialog.getInt(self, "Change width", f"Units in layer {k}:",
                                        min(current, MAX_WIDTH_EDIT), 1, MAX_WIDTH_EDIT, 1)
        if ok and value != current:
            self.width_requested.emit(k, int(value))

    def contextMenuEvent(self, ev) -> None:
        menu = self.context_menu_for(ev.pos())
        if menu is not None:
            menu.exec(ev.globalPos())
        ev.accept()

    # -- drag and drop of activation chips ----------------------------------------------
    def _drop_target(self, pos) -> int | None:
        """0 for the all-layers strip, k for hidden layer k, None elsewhere."""
        if self._drop_all.sceneBoundingRect().contains(self.mapToScene(QPoint(pos))):
            return 0
        k = self._layer_at(pos)
        if k is not None and self._spec is not None and 1 <= k <= self._spec.depth:
            return k
        return None

    def dragEnterEvent(self, ev) -> None:
        if ev.mimeData().hasFormat(ACTIVATION_MIME):
            ev.acceptProposedAction()
        else:
            ev.ignore()

    def dragMoveEvent(self, ev) -> None:
        if not ev.mimeData().hasFormat(ACTIVATION_MIME):
            ev.ignore()
            return
        target = self._drop_target(ev.position().toPoint())
        self._drop_all.set_hot(target == 0)
        self._show_drop_layer(target or 0)
        if target is None:
            ev.ignore()
        else:
            ev.acceptProposedAction()

    def _show_drop_layer(self, k: int) -> None:
        if k == self.drop_layer:
            return
        self.drop_layer = k
        if k >= 1:
            self._drop_box.setPos(k, 0)
            self._drop_box.show()
        else:
            self._drop_box.hide()

    def dragLeaveEvent(self, ev) -> None:
        self._drop_all.set_hot(False)
        self._show_drop_layer(0)
        ev.accept()

    def dropEvent(self, ev) -> None:
        self._drop_all.set_hot(False)
        self._show_drop_layer(0)
        mime = ev.mimeData()
        if not mime.hasFormat(ACTIVATION_MIME):
            ev.ignore()
            return
        name = bytes(mime.data(ACTIVATION_MIME)).decode("utf-8", "replace").strip()
        target = self._drop_target(ev.position().toPoint())
        if name not in ACTIVATIONS or target is None:
            ev.ignore()
            return
        ev.acceptProposedAction()
        self.activation_requested.emit(target, name)

    # -- hover read-outs -----------------------------------------------------------------
    def _show_tooltip(self, ev) -> None:
        text = self.tooltip_at(ev.pos())
        if text:
            QToolTip.showText(ev.globalPos(), text, self.viewport())
        else:
            QToolTip.hideText()

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        placeholder = getattr(self, "_placeholder", None)  # resized once inside __init__
        if placeholder is not None:
            placeholder.setGeometry(self.viewport().rect())
            if self._auto_fit:
                self.fit()

    def tooltip_at(self, pos) -> str:
        """The hover text for viewport position ``pos`` ('' when there is nothing there)."""
        if self._spec is None:
            return ""
        pos = QPoint(pos)
        skip = self._skip_at(pos)
        if skip is not None:
            i, j = skip
            src = "the input" if i == 0 else f"layer {i}"
            if self._spec.skip_needs_projection(skip):
                how = (f"through a learned projection ({self._spec.widths[i]} \u2192 "
                       f"{self._spec.widths[j]} units)")
            else:
                how = "unchanged (identity: its local derivative is exactly 1)"
            return f"Skip link {i} \u2192 {j}\n{src}'s output is added to layer {j}'s, {how}."
        k = self._layer_at(pos)
        if k is None:
            return ""
        unit = self._unit_at(pos, k)
        if unit is not None:
            return self._unit_tooltip(k, unit)
        return self._layer_tooltip(k)

    def _layer_tooltip(self, k: int) -> str:
        spec, snap = self._spec, self._snap
        n_w = spec.depth + 1
        if k == 0:
            return f"Input: {spec.input_dim} features"
        name = "Output layer" if k == n_w else f"Layer {k}"
        lines = [f"{name}: {spec.widths[k]} units"]
        if k <= spec.depth:
            h = spec.hidden[k - 1]
            lines[0] += f", {h.activation}" + (", batch norm" if h.batchnorm else "")
        if snap is not None and len(snap.delta_norm) == n_w:
            i = k - 1
            lines += [
                f"||\u03b4|| = {C.fmt_sci(snap.delta_norm[i])}",
                f"||dL/dW|| = {C.fmt_sci(snap.grad_norm[i])}",
                f"update ratio = {C.fmt_sci(snap.update_ratio[i])}",
            ]
            if k <= spec.depth:
                lines.append(f"dead {C.fmt_pct(snap.dead_fraction[i])}, saturated "
                             f"{C.fmt_pct(snap.saturated_fraction[i])}")
        lines.append("Drag to a later layer to add a skip link; right-click to edit.")
        return "\n".join(lines)

    def _unit_tooltip(self, k: int, unit: int) -> str:
        snap = self._snap
        if k == 0:
            return f"Input feature {unit + 1}"
        text = f"Layer {'out' if k == self._spec.depth + 1 else k}, unit {unit + 1}"
        if snap is not None and len(snap.unit_delta) == self._spec.depth + 1:
            text += f"\nmean |\u03b4| = {C.fmt_sci(snap.unit_delta[k - 1][unit])}"
            if len(snap.activations) == len(snap.unit_delta):
                a = np.asarray(snap.activations[k - 1])
                if a.ndim == 2 and a.shape[1] > unit and a.shape[0]:
                    text += f"\nmean activation = {float(a[:, unit].mean()):.3g}"
        return text


class _TooltipFilter(QObject):
    """Shows the canvas's hover text for ToolTip events on its viewport."""

    def __init__(self, canvas):
        super().__init__(canvas)
        self._canvas = canvas

    def eventFilter(self, obj, ev) -> bool:
        if ev.type() == QEvent.Type.ToolTip:
            self._canvas._show_tooltip(ev)
            return True
        return False
