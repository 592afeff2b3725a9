"""Drawing frames: the screen's own view classes (or an offscreen copy of the main
window), rendered into one reused image at exactly the requested size.

The "window" view is whatever main-window class has been registered with
``register_window_class`` (ui.app registers its MainWindow). ui.export never
imports ui.app: the app depends on the export, not the other way round."""

from __future__ import annotations

import html
import math
import os
import tempfile
from collections.abc import Callable

import numpy as np
import shiboken6
from PySide6.QtCore import QCoreApplication, QEvent, QSettings, Qt
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMenu,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ui.export.frames import phase_text
from ui.export_spec import VIEWS, ExportError


def _network_canvas(controller):
    from ui.views.canvas import NetworkCanvas

    canvas = NetworkCanvas(controller)
    canvas.set_drop_target_visible(False)  # an editing affordance, not part of a clip
    return canvas


def _gradient_flow(controller):
    from ui.views.flow import GradientFlowView

    return GradientFlowView(controller)


def _loss_view(controller):
    from ui.views.loss import LossView

    return LossView(controller)


def _factors_view(controller):
    from ui.views.factors import FactorsView

    return FactorsView(controller)


# name -> factory(controller) -> the screen's view widget, which has render_snapshot(snapshot).
# Imported on first use: `python main.py probe` should not pay for pyqtgraph.
VIEW_FACTORIES: dict[str, Callable] = {
    "canvas": _network_canvas,
    "flow": _gradient_flow,
    "loss": _loss_view,
    "factors": _factors_view,
}


def _make_view(name: str, controller):
    try:
        return VIEW_FACTORIES[name](controller)
    except ImportError as e:
        raise ExportError(f"The {name} view is not available in this build ({e}).") from None


# The "window" view: the main window class, registered by the app that has one
# (ui.app registers MainWindow when it is imported). Its constructor takes
# (controller, editor, settings, experiment=...), as MainWindow's does.
_window_class: type | None = None


def register_window_class(cls: type | None) -> None:
    """Make ``cls`` the class the "window" view copies (None: no window view)."""
    global _window_class
    _window_class = cls


def window_view_available() -> bool:
    return _window_class is not None


def _main_window_class() -> type | None:
    return _window_class


class _OffscreenWindow:
    """A MainWindow for the export's controller, with settings in a throwaway file
    (it restores and saves its layout there, never in the user's settings)."""

    def __init__(self, cls, controller, layout_state=None):
        from ui.commands import Editor

        self._folder = tempfile.TemporaryDirectory(prefix="gfl-export-")
        self.settings = QSettings(os.path.join(self._folder.name, "window.ini"),
                                  QSettings.Format.IniFormat)
        sim = controller.sim
        self.editor = Editor(controller)
        self.window = cls(controller, self.editor, self.settings,
                          experiment=sim.experiment if sim is not None else None)
        if layout_state is not None:
            self.window.restoreState(layout_state)  # the docks where the user has them
            for dock in self.window.findChildren(QDockWidget):
                if dock.isFloating():  # a floating dock would be a window of its own
                    dock.setFloating(False)

    def cleanup(self) -> None:
        self._folder.cleanup()



def frame_caption(frame: QWidget) -> QLabel:
    """Give a composed export frame the app's background and text colours, and return
    its caption: a rich-text label in a font 1.2 times the default."""
    from ui.views import colors

    palette = frame.palette()
    palette.setColor(QPalette.ColorRole.Window, QColor(colors.BACKGROUND))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(colors.FOREGROUND))
    frame.setPalette(palette)
    frame.setAutoFillBackground(True)
    caption = QLabel(frame)
    caption.setTextFormat(Qt.TextFormat.RichText)
    font = caption.font()
    font.setPointSizeF(font.pointSizeF() * 1.2)
    caption.setFont(font)
    return caption

def phase_and_loss(snapshot, colors) -> tuple[str, str]:
    """The caption's phase (HTML, in its highlight colour as on the canvas) and loss."""
    loss = f"{snapshot.loss:.4g}" if math.isfinite(snapshot.loss) else "–"
    phase = html.escape(phase_text(snapshot.phase, snapshot.layer, snapshot.n_layers))
    color = {"forward": colors.FORWARD, "backward": colors.BACKWARD}.get(snapshot.phase)
    if color is not None:
        phase = f'<span style="color:{color}; font-weight:600">{phase}</span>'
    return phase, loss


class ComposedView(QWidget):
    """The network canvas over the gradient flow and the loss, under a caption line
    (experiment, step, micro-step, loss): the layout for a lecture clip. Each panel
    is the screen's own view class. With ``factors``, the chain-rule factor panel
    (the window's FactorsView) stands right of the canvas; during a micro-stepped
    backward pass it writes out the product of the layer being computed."""

    def __init__(self, controller, title: str = "", parent=None, factors: bool = False):
        from ui.views import colors

        super().__init__(parent)
        self._colors = colors
        self._title = title
        self.caption = frame_caption(self)
        self.canvas = _make_view("canvas", controller)
        self.flow = _make_view("flow", controller)
        self.loss = _make_view("loss", controller)
        self.factors = _make_view("factors", controller) if factors else None
        bottom = QHBoxLayout()
        bottom.setSpacing(6)
        bottom.addWidget(self.flow, 1)
        bottom.addWidget(self.loss, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        layout.addWidget(self.caption, 0)
        if self.factors is None:
            layout.addWidget(self.canvas, 3)
        else:
            top = QHBoxLayout()
            top.setSpacing(6)
            top.addWidget(self.canvas, 3)
            top.addWidget(self.factors, 1)
            # never narrower than its content (the key line): the panel scrolls only
            # vertically, so a narrower one would cut the plot off at the right
            page = self.factors.findChild(QScrollArea).widget()
            self.factors.setMinimumWidth(max(self.factors.minimumWidth(),
                                             page.minimumSizeHint().width()))
            layout.addLayout(top, 3)
        layout.addLayout(bottom, 2)

    def caption_text(self, snapshot) -> str:
        """'name · step 12 · backward · layer 5 · loss 0.693', the phase in its highlight
        colour (as on the canvas)."""
        phase, loss = phase_and_loss(snapshot, self._colors)
        parts = [f"<b>{html.escape(self._title)}</b>" if self._title else "",
                 f"step {snapshot.step}", phase, f"loss {loss}"]
        sep = f'<span style="color:{self._colors.MUTED}">&nbsp;&nbsp;·&nbsp;&nbsp;</span>'
        return sep.join(p for p in parts if p)

    def render_snapshot(self, snapshot) -> None:
        self.caption.setText(self.caption_text(snapshot))
        for view in (self.canvas, self.flow, self.loss, self.factors):
            if view is not None:
                view.render_snapshot(snapshot)


class FrameCapture:
    """Draws snapshots with a view and reads the result as an RGB array of exactly
    ``size`` pixels, at device pixel ratio 1 whatever the screen.

    The widget renders into one reused QImage: what ``QWidget.grab`` does, minus the
    screen's device pixel ratio and a new pixmap per frame.
    """

    def __init__(self, widget: QWidget, size: tuple[int, int], renderers=None):
        self.widget = widget
        self.width, self.height = size
        # Who draws each frame: the view itself; for the window, every panel with
        # render_snapshot (the controller's signal reached them already; calling them
        # again makes sure the frame is drawn before it is read).
        self.renderers = list(renderers) if renderers is not None else [widget]
        widget.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        widget.setFixedSize(self.width, self.height)
        widget.show()  # delivers the resize and lays out, without a window on screen
        self._image = QImage(self.width, self.height, QImage.Format.Format_RGB32)
        self._image.setDevicePixelRatio(1.0)
        self._background = widget.palette().color(QPalette.ColorRole.Window)
        self.on_close: Callable[[], None] | None = None

    def grab(self, snapshot=None) -> np.ndarray:
        """Draw ``snapshot`` (if given) and return the frame as (height, width, 3) uint8."""
        if snapshot is not None:
            for view in self.renderers:
                view.render_snapshot(snapshot)
        # A label's new text posts a layout request; apply it before painting.
        QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        self._image.fill(self._background)
        QWidget.render(self.widget, self._image)  # QGraphicsView overrides render()
        rgb = self._image.convertToFormat(QImage.Format.Format_RGB888)
        w, h, stride = self.width, self.height, rgb.bytesPerLine()
        raw = np.frombuffer(rgb.constBits(), np.uint8, count=stride * h)
        return raw.reshape(h, stride)[:, : 3 * w].reshape(h, w, 3).copy()

    def close(self) -> None:
        # Hidden and deleted, as the views in a window are when it goes away (which also
        # drops their connections). Not close(): NetworkCanvas.close() crashes once it has
        # drawn a diverged (inf) snapshot.
        self.widget.hide()
        self.widget.deleteLater()
        if self.on_close is not None:
            self.on_close()
            self.on_close = None


def build_capture(view: str, controller, size: tuple[int, int], title: str = "",
                  warn: Callable[[str], None] | None = None,
                  layout_state=None) -> tuple[FrameCapture, str]:
    """(capture, the view actually used). "window" falls back to the composed view
    where there is no main window (with a warning). ``layout_state``: a
    QMainWindow.saveState() for the window's docks.

    pyqtgraph gives every plot and view box a context menu without a parent, a
    top-level widget owned by Python that outlives the view until the garbage
    collector frees the plot. The views are built synchronously, so the parentless
    menus that appear meanwhile are theirs: they are handed to the capture widget
    (which makes Qt their owner), so they go when it goes.
    """
    app = QApplication.instance()
    before = {shiboken6.getCppPointer(w)[0] for w in app.topLevelWidgets()}
    capture, used = _build_capture(view, controller, size, title, warn, layout_state)
    for w in app.topLevelWidgets():
        if (isinstance(w, QMenu) and w.parent() is None
                and shiboken6.getCppPointer(w)[0] not in before):
            w.setParent(capture.widget, w.windowFlags())  # still a popup, now owned by Qt
    return capture, used


def _build_capture(view, controller, size, title, warn, layout_state):
    if view == "window":
        cls = _main_window_class()
        if cls is not None:
            offscreen = _OffscreenWindow(cls, controller, layout_state)
            window = offscreen.window
            panels = [w for w in window.findChildren(QWidget)
                      if callable(getattr(w, "render_snapshot", None))]
            capture = FrameCapture(window, size, renderers=panels)
            capture.on_close = offscreen.cleanup
            return capture, "window"
        if warn is not None:
            warn("The main window is not available here; exported the composed view "
                 "(canvas + gradient flow + loss) instead.")
        view = "composed"
    if view in ("composed", "composed_factors"):
        widget = ComposedView(controller, title, factors=view == "composed_factors")
    elif view in ("canvas", "flow"):
        widget = _make_view(view, controller)
    else:
        raise ExportError(f"View must be one of {', '.join(VIEWS)} (got {view!r}).")
    return FrameCapture(widget, size), view


