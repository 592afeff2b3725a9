"""Colours and log-scale helpers shared by the views.

Gradient magnitudes span many decades, so every view colours them by
``log10``. A ``LogScale`` turns magnitudes into a small number of colour bins
(drawing is grouped by bin: one path or one point list per colour); bin 0 is
reserved for exact zeros (and -inf), the last bin for NaN.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QPen

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
