"""Gradient flow: one bar per layer of log10 ||delta_k|| (or log10 ||dL/dW_k||).

Bars start at a floor below the smallest measured value, so a taller bar means
a larger gradient. The mean-field prediction (``simulator.theory``) is scaled
to the measured output-layer norm and drawn over the delta bars: where the
bars fall off faster or slower than the line, the network is doing something
the random-weights theory did not expect (e.g. skip links keeping it alive).
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from simulator.theory import mean_field

from . import colors as C
from .panel import Panel

MODES = {
    "delta": ("||\u03b4||", "log10 ||\u03b4||", "delta_norm"),
    "grad": ("||dL/dW||", "log10 ||dL/dW||", "grad_norm"),
}


def layer_ticks(n_weight_layers: int, max_labels: int = 16) -> list[tuple[int, str]]:
    """Ticks 1..L and 'out' at L+1, thinned to at most about ``max_labels``."""
    step = max(1, math.ceil(n_weight_layers / max_labels))
    ticks = [(k, str(k)) for k in range(1, n_weight_layers, step)]
    if ticks and n_weight_layers - ticks[-1][0] < step:  # "out" is wider than a number
        ticks.pop()
    return ticks + [(n_weight_layers, "out")]


_MODE_BUTTON_STYLE = (
    "QToolButton { padding: 2px 8px; border: 1px solid #454c62; border-radius: 3px; }"
    "QToolButton:checked { background: #2f6fb3; color: #ffffff; border-color: #8ec5ff; }"
    "QToolButton:!checked { background: transparent; color: #aab3c5; }")


def theory_in_words(chi_star: float, phase: str) -> str:
    """The mean-field factor said plainly: ||delta|| changes by about sqrt(chi*) per layer
    (chi* is the factor on its square)."""
    factor = math.sqrt(chi_star) if chi_star > 0 else 0.0
    if phase == "chaotic":
        return f"Theory: each layer multiplies the gradient by {factor:.2g}"
    return f"Theory: each layer passes on {_pct(factor)} of the gradient"


_PHASE_WORDS = {"ordered": "ordered: the gradient fades with depth",
                "critical": "critical: the gradient keeps its size",
                "chaotic": "chaotic: the gradient grows with depth"}


def _pct(fraction: float) -> str:
    p = 100.0 * fraction
    return f"{p:.2g}\u2009%" if p >= 0.01 else "almost none"


class GradientFlowView(Panel):
    """Per-layer bars of the gradient norm, with the mean-field prediction over them."""

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.mode = "delta"
        self._spec = None
        self._theory = None  # (spec, MeanFieldPrediction or None, caveat text)
        self._plain_chain = True  # the prediction line is drawn solid
        self._n = 0
        self._labels = 0  # layer numbers the axis may show
        self._range = None  # (x, y) ranges shown: a new one re-lays out the axes
        self._floor_marks = None  # (layers without a finite norm, floor) drawn

        self._buttons = {}
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 0)
        group = QButtonGroup(self)
        group.setExclusive(True)
        for key, (label, _, _) in MODES.items():
            b = QToolButton()
            b.setObjectName(f"flow_mode_{key}")
            b.setText(label)
            b.setCheckable(True)
            b.setAutoRaise(False)
            # the one shown is filled: Fusion's dark "checked" look is hard to tell apart
            b.setStyleSheet(_MODE_BUTTON_STYLE)
            b.setChecked(key == self.mode)
            b.setToolTip("Show the backpropagated signal ||\u03b4_k|| = ||dL/dz_k||"
                         if key == "delta" else
                         "Show the weight-gradient norm ||dL/dW_k||: it can stay level while "
                         "\u03b4 shrinks, so look at both")
            b.clicked.connect(lambda _=False, k=key: self.set_mode(k))
            group.addButton(b)
            bar.addWidget(b)
            self._buttons[key] = b
        self._caveat = QLabel("")
        self._caveat.setStyleSheet(f"color: {C.MUTED}; font-size: 8pt;")
        self._caveat.setWordWrap(False)
        # never widen the dock: the text is clipped and the whole of it is in the tooltip
        self._caveat.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self._caveat, 1)

        self.plot = pg.PlotWidget(background=C.BACKGROUND)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        pi = self.plot.getPlotItem()
        pi.showGrid(x=False, y=True, alpha=0.25)
        pi.setLabel("bottom", "layer")
        pi.setLabel("left", MODES[self.mode][1])
        pi.disableAutoRange()
        C.cache_axes(pi)  # the left axis draws the grid: it lies under every bar
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, y0=0,
                                    brush=C.MEASURED, pen=None)
        pi.addItem(self.bars)
        # the bar of the layer being computed, drawn over its plain one: with one brush
        # per item a frame makes no brushes
        self.highlight_bar = pg.BarGraphItem(x=[], height=[], width=0.8, y0=0,
                                             brush=C.BACKWARD, pen=None)
        self.highlight_bar.hide()
        pi.addItem(self.highlight_bar)
        self.floor_marks = pg.ScatterPlotItem(symbol="x", size=9, pen=pg.mkPen("#ff6b6b", width=2),
                                              brush=None)
        pi.addItem(self.floor_marks)
        self.prediction = pg.PlotDataItem([], [], pen=pg.mkPen(C.PREDICTION, width=2),
                                          symbol="o", symbolSize=6, symbolBrush=C.PREDICTION,
                                          symbolPen=None)
        pi.addItem(self.prediction)
        # the legend takes the title's row above the bars: inside the plot it covered
        # them whenever they were high
        self.legend = C.RowLegend(colCount=2)
        pi.layout.removeItem(pi.titleLabel)
        pi.titleLabel.hide()
        pi.layout.addItem(self.legend, 0, 1)
        pi.layout.setRowStretchFactor(0, 0)
        self.legend.addItem(self.bars, "measured")
        self.legend.addItem(self.prediction, "mean-field prediction")
        self.highlight_text = pg.TextItem("", color=C.FOREGROUND, anchor=(0.5, 1.0))
        pi.addItem(self.highlight_text)

        page = QWidget()
        inner = QVBoxLayout(page)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.setSpacing(2)
        inner.addLayout(bar)
        inner.addWidget(self.plot, 1)
        self._stack_page(page)
        self.setMinimumSize(220, 140)

        # no drawing while tabbed away or closed; the latest snapshot when shown again
        self._subscribe(controller, throttled=False)
        self.render_snapshot(controller.snapshot)

    # -- controller signals ------------------------------------------------------------
    def _on_structure_changed(self, spec) -> None:
        self._theory = None  # recomputed for the next snapshot's spec

    # -- mode ----------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """'delta' for ||delta_k||, 'grad' for ||dL/dW_k||."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.mode = mode
        self._buttons[mode].setChecked(True)
        self.plot.getPlotItem().setLabel("left", MODES[mode][1])
        self.render_snapshot(self.controller.snapshot)

    # -- theory ----------------------------------------------------------------------------
    def _prediction_for(self, spec):
        if self._theory is not None and (self._theory[0] is spec or self._theory[0] == spec):
            return self._theory[1], self._theory[2]
        try:
            mf = mean_field(spec)
            caveats = list(mf.caveats)
        except (ValueError, ArithmeticError) as e:  # no prediction rather than no panel
            mf, caveats = None, [f"No mean-field prediction: {e}"]
        if mf is not None:
            caveats.insert(0, f"\u03c7* = {mf.chi_star:.3g} "
                              f"({_PHASE_WORDS.get(mf.phase, mf.phase)}), depth scale "
                              f"{mf.depth_scale:.3g} layers: \u03c7* is the factor on "
                              "||\u03b4||\u00b2 per layer, so ||\u03b4|| changes by "
                              "\u221a\u03c7* per layer")
            caveats.insert(0, theory_in_words(mf.chi_star, mf.phase))
        self._theory = (spec, mf, caveats)
        return mf, caveats

    # -- drawing -------------------------------------------------------------------------------
    def render_snapshot(self, snapshot) -> None:
        if snapshot is None:
            self._stack.setCurrentIndex(0)
            return
        self._stack.setCurrentIndex(1)
        pi = self.plot.getPlotItem()
        values = np.asarray(getattr(snapshot, MODES[self.mode][2]), dtype=np.float64)
        n = len(values)
        x = np.arange(1, n + 1, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(np.abs(values))
        finite = np.isfinite(logs)
        mf, caveats = self._prediction_for(snapshot.spec)
        pred = None
        if (self.mode == "delta" and mf is not None and len(mf.predicted_ratio) == n
                and finite[-1] and snapshot.spec.depth > 0):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                pred = logs[-1] + np.log10(np.asarray(mf.predicted_ratio, dtype=np.float64))
            pred[~np.isfinite(pred)] = np.nan
        shown = logs[finite]
        if pred is not None and np.isfinite(pred).any():
            shown = np.concatenate([shown, pred[np.isfinite(pred)]])
        if shown.size:
            lo, hi = math.floor(float(shown.min())) - 1, math.ceil(float(shown.max())) + 0.5
        else:
            lo, hi = -1.0, 1.0
        # a prediction far below the data would squash the bars: show at most 30 decades
        lo = max(lo, hi - 30)
        heights = np.where(finite, np.maximum(logs, lo) - lo, 0.0)
        hi_layer = snapshot.layer if snapshot.phase in ("forward", "backward") else 0
        hi_color = C.BACKWARD if snapshot.phase == "backward" else C.FORWARD
        self.bars.setOpts(x=x, height=heights, y0=lo, width=0.8)
        if 1 <= hi_layer <= n:
            self.highlight_bar.setOpts(x=x[hi_layer - 1:hi_layer],
                                       height=heights[hi_layer - 1:hi_layer], y0=lo, width=0.8,
                                       brush=hi_color)
            self.highlight_bar.show()
        else:
            self.highlight_bar.hide()
        bad = ~finite
        marks = (tuple(np.flatnonzero(bad)), lo)
        if marks != self._floor_marks:  # usually none, frame after frame
            self._floor_marks = marks
            self.floor_marks.setData(x=x[bad], y=np.full(int(bad.sum()), lo + 0.15))
        if pred is not None:
            # the theory covers a plain chain of layers: with skip links or batch norm the
            # line is only a reference for "what this net would do without them"
            plain = not snapshot.spec.skips and not any(h.batchnorm for h in snapshot.spec.hidden)
            if plain != self._plain_chain:
                self._plain_chain = plain
                style = Qt.PenStyle.SolidLine if plain else Qt.PenStyle.DashLine
                color = pg.mkColor(C.PREDICTION)
                if not plain:
                    color.setAlpha(140)
                self.prediction.setPen(pg.mkPen(color, width=2, style=style))
                self.prediction.setSymbolBrush(color)
                for sample, label in self.legend.items:
                    if sample.item is self.prediction:
                        label.setText("mean-field prediction" if plain
                                      else "mean field without skips / BN")
            self.prediction.setData(x, np.clip(pred, lo, None))
            self.prediction.show()
        else:
            self.prediction.setData([], [])
            self.prediction.hide()
        self._set_legend_visible(pred is not None)
        if 1 <= hi_layer <= n:
            self.highlight_text.setText(C.fmt_sci(values[hi_layer - 1]))
            self.highlight_text.setColor(hi_color)
            self.highlight_text.setPos(hi_layer, lo + heights[hi_layer - 1] + 0.05 * (hi - lo))
            self.highlight_text.show()
        else:
            self.highlight_text.hide()
        labels = self._max_tick_labels()
        if (n, labels) != (self._n, self._labels):
            self._n, self._labels = n, labels
            pi.getAxis("bottom").setTicks([layer_ticks(n, labels)])
        ranges = ((0.3, n + 0.7), (lo, hi + 0.12 * (hi - lo)))
        if ranges != self._range:
            self._range = ranges
            pi.setRange(xRange=ranges[0], yRange=ranges[1], padding=0)
        text = caveats[0] if caveats else ""
        notes = len(caveats) - 2 if mf is not None else len(caveats) - 1
        if self.mode != "delta":
            text = "prediction shown for ||\u03b4|| only"
        elif notes > 0:
            text += f"  (+{notes} note{'s' if notes > 1 else ''})"
        if self.mode == "delta" and pred is None and mf is not None:
            text = "no prediction: the output layer's ||\u03b4|| is zero or not measured"
        if self._caveat.text() != text:
            self._caveat.setText(text)
        tip = "\n".join(f"\u2022 {c}" for c in caveats)
        if self._caveat.toolTip() != tip:
            self._caveat.setToolTip(tip)

    TICK_LABEL_PX = 30  # room for one layer number ("out", "30") and a gap

    def _max_tick_labels(self) -> int:
        """As many layer numbers as fit side by side under the bars."""
        width = self.plot.getPlotItem().getViewBox().width()
        return max(2, int(width // self.TICK_LABEL_PX)) if width > 0 else 16

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        if self._n and self._max_tick_labels() != self._labels:
            self.render_snapshot(self.controller.snapshot)

    def _set_legend_visible(self, with_prediction: bool) -> None:
        for sample, label in self.legend.items:
            if sample.item is self.prediction:
                sample.setVisible(with_prediction)
                label.setVisible(with_prediction)

    # -- for tests ---------------------------------------------------------------------------
    def bar_heights(self) -> np.ndarray:
        return np.asarray(self.bars.opts["height"], dtype=np.float64)

    def highlighted_layer(self) -> int:
        """The layer whose bar is highlighted (0 for none)."""
        if not self.highlight_bar.isVisible():
            return 0
        return int(round(float(self.highlight_bar.opts["x"][0])))
