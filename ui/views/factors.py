"""Chain-rule factors: what each hidden layer's weights and phi' do to the gradient.

Backpropagation makes delta_k from delta_{k+1} in steps: through the weights
above (the *weight factor*, ||delta_{k+1} W_{k+1}^T|| / ||delta_{k+1}||), then
elementwise through the activation's derivative (the *local factor*), then,
with batch norm, through its backward (the *norm factor*). The plot shows the
factors of every hidden layer on a log axis with 1 marked, so "sigmoid's phi'
is at most 1/4" and "He init keeps the weight factor near sqrt(2)" can be read
off. Above it, one layer's product is written out with a bar per term: during a
micro-stepped backward pass, the layer being computed; otherwise the selected
layer (or layer 1). Every number comes from the Snapshot (simulator/kernels.py
computes them in the backward step itself).
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from simulator.factors import ACTIVATION_WORDS, format_factor

from . import colors as C
from .flow import layer_ticks
from .panel import Panel, vertical_scroll

WEIGHT_COLOR = "#6fa8dc"
LOCAL_COLOR = "#ff8a1f"
NORM_COLOR = "#7ddc8f"
# the plot shows at most this many decades below and above 1
MAX_DECADES = 12


class FactorBar(QWidget):
    """A small horizontal bar for one term of the product. The tick in the middle is 1:
    a factor below one ends left of it (it shrinks the gradient), above one right of it;
    the scale is logarithmic over ``decades`` powers of ten either side."""

    def __init__(self, color: str, decades: float = 2.0, parent=None):
        super().__init__(parent)
        self._color = QColor(color)
        self._decades = decades
        self.value = math.nan
        self.setFixedHeight(10)
        self.setMinimumWidth(40)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_value(self, value: float) -> None:
        value = float(value)
        if value != self.value and not (math.isnan(value) and math.isnan(self.value)):
            self.value = value
            self.update()

    def fraction(self) -> float:
        """Where the bar ends, 0..1 of the width (0.5 = a factor of exactly 1); NaN if none."""
        v = self.value
        if not math.isfinite(v) or v < 0:
            return math.nan
        if v == 0:
            return 0.0
        return min(1.0, max(0.0, 0.5 + math.log10(v) / (2 * self._decades)))

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QColor(C.GRID))
        f = self.fraction()
        if not math.isnan(f):
            p.fillRect(QRectF(0, 1, f * w, h - 2), self._color)
        p.fillRect(QRectF(w / 2 - 0.5, 0, 1, h), QColor(C.FOREGROUND))
        p.end()


class _FactorPlot(pg.PlotWidget):
    """The factor plot, preferring a modest height. The panel's page word-wraps its
    note, so the scroll area sizes the page to its *preferred* height for the width;
    a graphics view's default 480-pixel preference made the page taller than any
    panel and the plot always scrolled half out of view."""

    def sizeHint(self) -> QSize:
        return QSize(240, 160)


class FactorsView(Panel):
    """Per-layer weight and local factors on a log axis, and one layer's product in full."""

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self._n = 0
        self._range = None
        self._with_bn = None
        self.layer_shown = 0
        self.computing = False

        self.plot = _FactorPlot(background=C.BACKGROUND)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        pi = self.plot.getPlotItem()
        pi.showGrid(x=False, y=True, alpha=0.25)
        pi.setLabel("bottom", "hidden layer")
        pi.setLabel("left", "factor (log scale)")
        pi.disableAutoRange()
        pi.getAxis("left").setTicks([[(e, C.decade_label(e)) for e in range(-MAX_DECADES,
                                                                              MAX_DECADES + 1)]])
        C.cache_axes(pi)
        self.unity = pg.InfiniteLine(pos=0.0, angle=0,
                                     pen=pg.mkPen(C.MUTED, width=1, style=Qt.PenStyle.DashLine))
        pi.addItem(self.unity)
        self.current = pg.InfiniteLine(pos=1.0, angle=90, pen=pg.mkPen(C.BACKWARD, width=2))
        self.current.hide()
        pi.addItem(self.current)
        self.curves = {}
        for key, color in (("weight_factor", WEIGHT_COLOR), ("local_factor", LOCAL_COLOR),
                           ("norm_factor", NORM_COLOR)):
            self.curves[key] = pg.PlotDataItem([], [], pen=pg.mkPen(color, width=2), symbol="o",
                                               symbolSize=6, symbolBrush=color, symbolPen=None,
                                               connect="finite")
            pi.addItem(self.curves[key])
        # the key sits above the plot, where it hides no point
        self.key = QLabel("")
        self.key.setStyleSheet("font-size: 8pt;")
        self.key.setToolTip("weights: ||δ_{k+1} W_{k+1}^T|| / ||δ_{k+1}||\n"
                            "φ': ||φ'(u_k) * dL/da_k|| / ||dL/da_k||\n"
                            "batch norm: ||δ_k|| / ||dL/du_k||\n"
                            "dashed line: 1, the gradient passed on unchanged")
        self._set_key(False)

        # the product, written out: delta ahead x weights x phi' [x BN] = this layer's delta
        self.title = QLabel("")
        self.title.setStyleSheet(f"color: {C.FOREGROUND}; font-weight: bold;")
        self.terms = {}
        grid = QGridLayout()
        grid.setContentsMargins(6, 2, 6, 2)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(1)
        specs = (("ahead", "\u2016\u03b4\u2016 from ahead", C.MEASURED, 4.0),
                 ("weight", "\u00d7 weights", WEIGHT_COLOR, 2.0),
                 ("local", "\u00d7 \u03c6'", LOCAL_COLOR, 2.0),
                 ("norm", "\u00d7 batch norm", NORM_COLOR, 2.0),
                 ("result", "= this layer's \u2016\u03b4\u2016", C.BACKWARD, 4.0))
        for row, (key, name, color, decades) in enumerate(specs):
            label = QLabel(name)
            label.setStyleSheet(f"color: {C.MUTED};")
            value = QLabel("\u2013")
            value.setStyleSheet(f"color: {C.FOREGROUND}; font-family: monospace;")
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            value.setMinimumWidth(value.fontMetrics().horizontalAdvance("0.000e-00"))
            bar = FactorBar(color, decades)
            grid.addWidget(label, row, 0)
            grid.addWidget(value, row, 1)
            grid.addWidget(bar, row, 2)
            self.terms[key] = (label, value, bar)
        grid.setColumnStretch(2, 1)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet(f"color: {C.MUTED}; font-size: 8pt;")

        page = QWidget()
        inner = QVBoxLayout(page)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.setSpacing(2)
        # the product first: in a short panel it is what stays in view
        inner.addWidget(self.title)
        inner.addLayout(grid)
        inner.addWidget(C.QuietBox(self.note))
        inner.addWidget(self.key)
        inner.addWidget(self.plot, 1)
        self.plot.setMinimumHeight(90)
        # on a small screen the panel scrolls rather than make the window taller
        scroll = vertical_scroll(page)
        self._stack_page(scroll)
        self.setMinimumSize(220, 120)
        self._subscribe(controller, throttled=False,
                        extra=((controller.selection_changed, self._on_selection_changed),))
        self.render_snapshot(controller.snapshot)

    # -- controller signals ------------------------------------------------------------
    def _on_selection_changed(self, k: int) -> None:
        self._seen.request(self.controller.snapshot, force=True)

    # -- drawing -------------------------------------------------------------------------
    def _layer_to_show(self, snapshot) -> tuple[int, bool]:
        L = snapshot.spec.depth
        if snapshot.phase == "backward" and 1 <= snapshot.layer <= L:
            return snapshot.layer, True
        selected = int(getattr(self.controller, "selected_layer", 0) or 0)
        if 1 <= selected <= L:
            return selected, False
        return (1 if L >= 1 else 0), False

    def _set_key(self, with_bn: bool) -> None:
        self._with_bn = with_bn
        items = [(WEIGHT_COLOR, "weights"), (LOCAL_COLOR, "φ'")]
        if with_bn:
            items.append((NORM_COLOR, "batch norm"))
        text = "&nbsp;&nbsp;".join(f"<span style='color:{c}'>●</span> "
                                   f"<span style='color:{C.FOREGROUND}'>{t}</span>"
                                   for c, t in items)
        self.key.setText(f"&nbsp;factor per layer:&nbsp;&nbsp;{text}&nbsp;&nbsp;"
                         f"<span style='color:{C.MUTED}'>(dashed: 1)</span>")

    def render_snapshot(self, snapshot) -> None:
        if snapshot is None:
            self._stack.setCurrentIndex(0)
            return
        self._stack.setCurrentIndex(1)
        spec = snapshot.spec
        L = spec.depth
        self._draw_plot(snapshot, L)
        k, computing = self._layer_to_show(snapshot)
        self.layer_shown, self.computing = k, computing
        if k >= 1:
            self.current.setPos(k)
            self.current.setPen(pg.mkPen(C.BACKWARD if computing else C.SELECTION, width=2))
            self.current.show()
        else:
            self.current.hide()
        self._draw_product(snapshot, k, computing)

    def _draw_plot(self, snapshot, L: int) -> None:
        pi = self.plot.getPlotItem()
        x = np.arange(1, L + 1, dtype=np.float64)
        with_bn = any(h.batchnorm for h in snapshot.spec.hidden)
        logs = []
        for key, curve in self.curves.items():
            values = getattr(snapshot, key, None)
            if values is None or L == 0 or (key == "norm_factor" and not with_bn):
                curve.setData([], [])
                continue
            v = np.asarray(values[:L], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                lv = np.log10(v)
            lv[~np.isfinite(lv)] = np.nan
            logs.append(lv)
            curve.setData(x, np.clip(lv, -MAX_DECADES, MAX_DECADES))
        if with_bn != self._with_bn:
            self._set_key(with_bn)
        finite = np.concatenate([lv[np.isfinite(lv)] for lv in logs]) if logs else np.zeros(0)
        lo = math.floor(float(finite.min())) if finite.size else -1
        hi = math.ceil(float(finite.max())) if finite.size else 1
        lo, hi = max(min(lo, -1), -MAX_DECADES), min(max(hi, 1), MAX_DECADES)
        ranges = ((0.5, max(L, 1) + 0.5), (lo - 0.2, hi + 0.2))
        if ranges != self._range:
            self._range = ranges
            pi.setRange(xRange=ranges[0], yRange=ranges[1], padding=0)
        if L != self._n:
            self._n = L
            ticks = [t for t in layer_ticks(L + 1) if t[1] != "out"]
            pi.getAxis("bottom").setTicks([ticks])

    def _draw_product(self, snapshot, k: int, computing: bool) -> None:
        L = snapshot.spec.depth
        if k < 1 or snapshot.weight_factor is None:
            self.title.setText("no hidden layer: nothing to factor" if L == 0 else "")
            for _, value, bar in self.terms.values():
                value.setText("\u2013")
                bar.set_value(math.nan)
            self.note.setText("")
            return
        i = k - 1
        hidden = snapshot.spec.hidden[i]
        act = ACTIVATION_WORDS.get(hidden.activation, hidden.activation)
        values = {"ahead": float(snapshot.delta_norm[i + 1]),
                  "weight": float(snapshot.weight_factor[i]),
                  "local": float(snapshot.local_factor[i]),
                  "norm": float(snapshot.norm_factor[i]),
                  "result": float(snapshot.delta_norm[i])}
        done = bool(snapshot.backward_done[i]) if len(snapshot.backward_done) > i else True
        if not done:  # this iteration's numbers for the layer are not computed yet
            values = {key: math.nan for key in values}
        self.title.setText(f"layer {k} ({act}){': being computed' if computing else ''}")
        self.title.setStyleSheet(f"color: {C.BACKWARD if computing else C.FOREGROUND}; "
                                 "font-weight: bold;")
        for key, (label, value, bar) in self.terms.items():
            shown = key != "norm" or hidden.batchnorm
            label.setVisible(shown)
            value.setVisible(shown)
            bar.setVisible(shown)
            v = values[key]
            if key in ("ahead", "result"):
                value.setText(C.fmt_sci(v))
                # both norms on one scale: the bar of delta ahead sits at the middle tick
                ref = values["ahead"]
                bar.set_value(v / ref if ref > 0 and math.isfinite(ref) else math.nan)
            else:
                value.setText(format_factor(v) if math.isfinite(v) else "\u2013")
                bar.set_value(v)
        self.note.setText(self._note(snapshot, i, hidden, act, done))

    @staticmethod
    def _note(snapshot, i: int, hidden, act: str, done: bool) -> str:
        if not done:
            return "waiting for this layer's backward step"
        share = float(snapshot.skip_share[i])
        if math.isfinite(share) and share > 0:
            return (f"Skip links bring {100 * share:.0f} % of the gradient reaching this layer "
                    "(by size), past the weights above, so the product above covers only "
                    "the path through the weights.")
        if hidden.activation == "sigmoid":
            return "Sigmoid's derivative is at most 1/4, so its factor is at most 0.25."
        if hidden.activation in ("relu", "leaky_relu", "prelu"):
            return (f"{act}'s derivative is 1 on active units, so its factor is the share of "
                    "the gradient that lands on them.")
        return ""

    # -- for tests ---------------------------------------------------------------------------
    def equation_values(self) -> dict:
        """The numbers of the product as shown, parsed back (NaN for a dash)."""
        out = {}
        for key, (_, value, _) in self.terms.items():
            text = value.text()
            out[key] = float(text) if text not in ("\u2013", "") else math.nan
        return out

    def bar_fractions(self) -> dict:
        return {key: bar.fraction() for key, (_, _, bar) in self.terms.items()}

    def plotted(self, key: str) -> np.ndarray:
        """The log10 values of one curve as drawn."""
        _, y = self.curves[key].getData()
        return np.asarray([] if y is None else y, dtype=np.float64)
