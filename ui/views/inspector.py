"""Layer inspector: histograms and numbers of the selected layer (layer 1 by default).

The histograms' ranges are set here and change rarely (a new range re-lays out the
axes, the costliest part of a frame): they move when the data leaves them or fills
less than half of them. While its dock is tabbed away or closed, the inspector
draws nothing and catches up when shown.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from . import colors as C
from .panel import Panel, vertical_scroll

HISTOGRAMS = (
    ("activations", "activations a", "#6fa8dc"),
    ("deltas", "log10 |\u03b4|", C.BACKWARD),
    ("weights", "weights W", "#93c47d"),
)
FIELDS = (
    ("width", "width"),
    ("activation", "activation"),
    ("batchnorm", "batch norm"),
    ("delta", "||\u03b4||"),
    ("grad", "||dL/dW||"),
    ("weight", "||W||"),
    ("update", "update ratio"),
    ("change", "change since init"),
    ("dead", "dead units"),
    ("saturated", "saturated units"),
    ("act", "activation mean / std"),
)


class LayerInspector(Panel):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.layer = 1

        self.title = QLabel("")
        self.title.setStyleSheet("font-weight: bold;")
        self.curves = {}
        self._plots = {}
        self._ranges = {}  # kind -> ((x0, x1), (0, top)) shown
        plots_row = QHBoxLayout()
        plots_row.setSpacing(4)
        for kind, label, color in HISTOGRAMS:
            w = pg.PlotWidget(background=C.BACKGROUND)
            w.setMenuEnabled(False)
            w.hideButtons()
            w.setMouseEnabled(x=False, y=False)
            w.setMinimumSize(110, 100)
            pi = w.getPlotItem()
            pi.setTitle(label, size="8pt", color=C.FOREGROUND)
            pi.getAxis("left").setWidth(28)
            pi.getAxis("left").setStyle(tickFont=_small_font())
            pi.getAxis("bottom").setStyle(tickFont=_small_font())
            pi.disableAutoRange()
            C.cache_axes(pi)
            curve = pg.PlotCurveItem([0.0, 1.0], [0.0], stepMode="center", fillLevel=0,
                                     brush=pg.mkBrush(color), pen=pg.mkPen(color))
            pi.addItem(curve)
            self.curves[kind] = curve
            self._plots[kind] = pi
            plots_row.addWidget(w, 1)
        self.values = {}
        form = QFormLayout()
        form.setContentsMargins(4, 0, 4, 0)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(1)
        self._boxes = []
        for key, label in FIELDS:
            v = QLabel("\u2013")
            v.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            box = C.QuietBox(v)  # numbers change every step: no relayout of the window
            form.addRow(label, box)
            self._boxes.append(box)
            self.values[key] = v

        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(self.title)
        layout.addLayout(plots_row, 1)
        layout.addLayout(form)
        # on a small screen the panel scrolls rather than pushing the window past it
        scroll = vertical_scroll(page)
        self._stack_page(scroll)
        self.setMinimumSize(240, 130)

        # no drawing while tabbed away or closed; the latest snapshot when shown again
        self._subscribe(controller, throttled=False,
                        extra=[(controller.selection_changed, self._on_selection_changed)])
        self.render_snapshot(controller.snapshot)

    def _on_selection_changed(self, k: int) -> None:
        self._seen.request(self.controller.snapshot)

    def _set(self, key: str, text: str) -> None:
        label = self.values[key]
        if label.text() != text:  # setText re-lays out the form: skip it when unchanged
            label.setText(text)

    def render_snapshot(self, snapshot) -> None:
        if snapshot is None:
            self._stack.setCurrentIndex(0)
            return
        self._stack.setCurrentIndex(1)
        n = snapshot.n_layers
        k = self.controller.selected_layer or 1
        k = min(max(k, 1), n)
        self.layer = k
        spec = snapshot.spec
        i = k - 1
        hidden = spec.hidden[i] if k <= spec.depth else None
        name = f"Layer {k}" if hidden is not None else "Output layer"
        title = f"{name} of {n} (click a layer on the canvas to inspect it)"
        if self.title.text() != title:
            self.title.setText(title)
        have_batch = len(snapshot.activations) == n
        for kind, _, _ in HISTOGRAMS:
            if kind != "weights" and not have_batch:
                counts, edges = np.zeros(1), np.array([0.0, 1.0])
            else:
                counts, edges = snapshot.histogram(kind, k)
            self.curves[kind].setData(edges, counts, stepMode="center", fillLevel=0)
            self._set_range(kind, edges, counts)
        self._set("width", str(spec.widths[k]))
        self._set("activation", hidden.activation if hidden else
                  ("softmax" if spec.loss == "cross_entropy" else "linear"))
        self._set("batchnorm", ("on" if hidden.batchnorm else "off") if hidden else "\u2013")
        self._set("delta", C.fmt_sci(snapshot.delta_norm[i]))
        self._set("grad", C.fmt_sci(snapshot.grad_norm[i]))
        self._set("weight", f"{float(snapshot.weight_norm[i]):.4g}")
        self._set("update", C.fmt_sci(snapshot.update_ratio[i]))
        self._set("change", C.fmt_pct(snapshot.weight_change[i]))
        self._set("dead", C.fmt_pct(snapshot.dead_fraction[i]) if hidden else "\u2013")
        self._set("saturated", C.fmt_pct(snapshot.saturated_fraction[i]) if hidden else "\u2013")
        self._set("act", f"{float(snapshot.act_mean[i]):.3g} / {float(snapshot.act_std[i]):.3g}")

    def _set_range(self, kind: str, edges, counts) -> None:
        edges = np.asarray(edges, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        if not (edges.size >= 2 and np.isfinite(edges[[0, -1]]).all()
                and np.isfinite(counts).all()):
            return
        shown = self._ranges.get(kind)
        x_old, y_old = shown if shown is not None else (None, None)
        x = C.value_range(x_old, float(edges[0]), float(edges[-1]), pad=0.02)
        top = float(counts.max()) if counts.size else 0.0
        y = y_old
        if y is None or not 0.5 * y[1] <= top <= y[1]:
            y = (0.0, 1.1 * top if top > 0 else 1.0)
        if x is not x_old or y is not y_old:
            self._ranges[kind] = (x, y)
            self._plots[kind].setRange(xRange=x, yRange=y, padding=0)


def _small_font() -> QFont:
    f = QFont()
    f.setPointSizeF(7.5)
    return f
