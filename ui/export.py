"""Export the animation: PNG frames, GIF and MP4, from the window and headless.

Frames are drawn by the same view classes that draw the screen (the network
canvas, the gradient-flow plot, the loss plot, or the whole main window), on a
private copy of the simulation, one frame per iteration or per micro-step::

    SimulationController ──> FrameSource ──> FrameCapture ──> writer thread ──> file
       (a private copy)      (steps it)      (view.render_snapshot,   (PNG / GIF / MP4,
                                              then widget -> QImage)    temp name, rename)

Guarantees:

- A writer first creates its temporary file or folder next to the destination,
  so an unwritable destination fails before anything is rendered. The result is
  renamed into place only when complete; a cancel or an error removes it.
- PNG frames carry no timestamp or other metadata, so the same experiment and
  seed give byte-identical frames.
- Rendering runs on the GUI thread (it uses widgets) in short slices; encoding
  runs on one worker thread so frame k+1 renders while frame k compresses.

Entry points: ``ExportJob`` (headless: ``run()``; GUI: ``ExportRunner``),
``ExportDialog``, ``install_export_action(window)``, and the ``export``
subcommand (``cli_add_arguments`` / ``cli_run``).
"""

from __future__ import annotations

import argparse
import copy
import errno
import html
import json
import math
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import shiboken6
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QColor, QDesktopServices, QImage, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

# ui.export is the public face: these are re-exported.
from ui.export_spec import (  # noqa: F401
    DEFAULT_FPS,
    DEFAULT_SIZE,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    FORMAT_LABELS,
    FORMATS,
    GIF_MAX_FPS,
    MAX_FPS,
    MAX_FRAMES,
    MAX_SIDE,
    MAX_STEPS,
    MIN_SIDE,
    SIZE_PRESETS,
    VIEW_LABELS,
    VIEWS,
    ExportError,
    ExportSettings,
    cli_add_arguments,
    count_frames,
    parse_size,
    with_format_suffix,
)

PNG_COMPRESS_LEVEL = 1  # zlib: half the time of level 6 for 1280x720 UI frames, ~25% larger
SLICE_SECONDS = 0.04  # GUI export: render for this long, then let the window breathe
MANIFEST_NAME = "frames.json"
MANIFEST_FORMAT = "gradient-flow-lab/frames"
_FRAME_FILE = re.compile(r"^frame_\d{5,}\.png$")


# -- frames ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameInfo:
    index: int
    step: int
    phase: str
    layer: int
    loss: float

    def to_json(self) -> dict:
        loss = self.loss if math.isfinite(self.loss) else None
        return {"index": self.index, "step": self.step, "phase": self.phase,
                "layer": self.layer, "loss": loss}


def phase_text(phase: str, layer: int, n_layers: int) -> str:
    """'backward · layer 3', 'forward · output layer', 'loss', ..."""
    if phase in ("forward", "backward") and layer:
        where = "output layer" if layer == n_layers else f"layer {layer}"
        return f"{phase} · {where}"
    return phase


class FrameSource:
    """Steps a controller from its current state and yields ``(snapshot, FrameInfo)``.

    Frame 0 is the state as it is. Then, per iteration: one frame after every
    ``every``-th iteration (and after the last). Per micro-step: every micro-step
    (forward 1..N, loss, backward N..1, update) of every ``every``-th iteration;
    the iterations in between run at full speed.

    ``quiet`` blocks the controller's signals while stepping, for captures that
    call ``render_snapshot`` themselves (so no view draws a frame twice).
    Stops early if training diverges (``diverged`` is then the report).
    """

    def __init__(self, controller, steps: int, micro: bool = False, every: int = 1,
                 quiet: bool = True):
        sim = controller.sim
        if sim is None:
            raise ExportError("The simulation is not ready yet; wait until it has started.")
        if sim.divergence is not None:
            raise ExportError("The simulation has diverged, so there is nothing to animate: "
                              "reset it (or fix the settings) and export again.")
        self.controller = controller
        self.steps, self.micro, self.every = int(steps), bool(micro), max(1, int(every))
        self.quiet = quiet
        self.n_micro_steps = sim.n_micro_steps
        self.position = sim.position if micro else 0
        self.total = count_frames(self.steps, self.micro, self.every, self.n_micro_steps,
                                  self.position)
        self.diverged = None

    def _advance(self, action: Callable[[], None]):
        c = self.controller
        blocked = c.blockSignals(True) if self.quiet else None
        try:
            action()
        finally:
            if self.quiet:
                c.blockSignals(blocked)
        return c.snapshot

    def _frame(self, index: int, snap) -> tuple[object, FrameInfo]:
        return snap, FrameInfo(index, int(snap.step), snap.phase, int(snap.layer),
                               float(snap.loss))

    def __iter__(self) -> Iterator[tuple[object, FrameInfo]]:
        c = self.controller
        snap = c.snapshot
        if snap is None:
            with c.locked() as sim:
                snap = sim.snapshot()
        index = 0
        yield self._frame(index, snap)
        done = 0
        while done < self.steps:
            if self.micro and done % self.every == 0:
                start = snap.step
                while True:
                    snap = self._advance(c.micro_step)
                    index += 1
                    yield self._frame(index, snap)
                    if snap.divergence is not None or snap.step != start:
                        break
                done += 1
            else:
                n = min(self.every - done % self.every, self.steps - done)
                snap = self._advance(lambda n=n: c.run_steps(n))
                done += n
                if not self.micro:
                    index += 1
                    yield self._frame(index, snap)
            if snap.divergence is not None:
                self.diverged = snap.divergence
                return


# -- capture -----------------------------------------------------------------------------------


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


# name -> factory(controller) -> the screen's view widget, which has render_snapshot(snapshot).
# Imported on first use: `python main.py probe` should not pay for pyqtgraph.
VIEW_FACTORIES: dict[str, Callable] = {
    "canvas": _network_canvas,
    "flow": _gradient_flow,
    "loss": _loss_view,
}


def _make_view(name: str, controller):
    try:
        return VIEW_FACTORIES[name](controller)
    except ImportError as e:
        raise ExportError(f"The {name} view is not available in this build ({e}).") from None


def _main_window_class():
    try:
        from ui.app import MainWindow
    except ImportError:
        return None
    return MainWindow


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


class ComposedView(QWidget):
    """The network canvas over the gradient flow and the loss, under a caption line
    (experiment, step, micro-step, loss): the layout for a lecture clip. Each panel
    is the screen's own view class."""

    def __init__(self, controller, title: str = "", parent=None):
        from ui.views import colors

        super().__init__(parent)
        self._colors = colors
        self._title = title
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, QColor(colors.BACKGROUND))
        palette.setColor(QPalette.ColorRole.WindowText, QColor(colors.FOREGROUND))
        self.setPalette(palette)
        self.setAutoFillBackground(True)
        self.caption = QLabel(self)
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        font = self.caption.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.caption.setFont(font)
        self.canvas = _make_view("canvas", controller)
        self.flow = _make_view("flow", controller)
        self.loss = _make_view("loss", controller)
        bottom = QHBoxLayout()
        bottom.setSpacing(6)
        bottom.addWidget(self.flow, 1)
        bottom.addWidget(self.loss, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        layout.addWidget(self.caption, 0)
        layout.addWidget(self.canvas, 3)
        layout.addLayout(bottom, 2)

    def caption_text(self, snapshot) -> str:
        """'name · step 12 · backward · layer 5 · loss 0.693', the phase in its highlight
        colour (as on the canvas)."""
        c = self._colors
        loss = f"{snapshot.loss:.4g}" if math.isfinite(snapshot.loss) else "–"
        phase = html.escape(phase_text(snapshot.phase, snapshot.layer, snapshot.n_layers))
        color = {"forward": c.FORWARD, "backward": c.BACKWARD}.get(snapshot.phase)
        if color is not None:
            phase = f'<span style="color:{color}; font-weight:600">{phase}</span>'
        parts = [f"<b>{html.escape(self._title)}</b>" if self._title else "",
                 f"step {snapshot.step}", phase, f"loss {loss}"]
        sep = f'<span style="color:{c.MUTED}">&nbsp;&nbsp;·&nbsp;&nbsp;</span>'
        return sep.join(p for p in parts if p)

    def render_snapshot(self, snapshot) -> None:
        self.caption.setText(self.caption_text(snapshot))
        for view in (self.canvas, self.flow, self.loss):
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
    if view == "composed":
        widget = ComposedView(controller, title)
    elif view in ("canvas", "flow"):
        widget = _make_view(view, controller)
    else:
        raise ExportError(f"View must be one of {', '.join(VIEWS)} (got {view!r}).")
    return FrameCapture(widget, size), view


# -- files -------------------------------------------------------------------------------------

_umask_value: int | None = None


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (threads)."""
    global _umask_value
    if _umask_value is None:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        _umask_value = int(line.split()[1], 8)
        except (OSError, ValueError):
            pass
        if _umask_value is None:
            _umask_value = os.umask(0o022)
            os.umask(_umask_value)
    return _umask_value


def describe_os_error(e: OSError, dest: Path) -> str:
    """A message for the user: what went wrong with ``dest`` and what to do next."""
    code = e.errno
    folder = dest.parent
    if code in (errno.EACCES, errno.EPERM):
        return f"Cannot write to {dest}: permission denied. Choose another folder."
    if code == errno.EROFS:
        return f"Cannot write to {dest}: the drive is read-only. Choose another folder."
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"The disk is full while writing {dest}. Free some space or choose another "
                "drive; nothing was saved.")
    if code == errno.EFBIG:
        return (f"{dest} grew larger than this drive (or your account) allows a file to be. "
                "Export fewer frames or a smaller size, or choose another drive; nothing was "
                "saved.")
    if code == errno.ENOENT:
        return (f"Cannot write to {dest}: the folder {folder} does not exist. Create it or "
                "choose another folder.")
    if code == errno.ENOTDIR:
        return f"Cannot write to {dest}: {folder} is not a folder. Choose another folder."
    reason = e.strerror or str(e)
    return f"Cannot write to {dest}: {reason}. Choose another folder."


def _remove(path: Path | None) -> None:
    if path is None:
        return
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _is_earlier_export(folder: Path) -> bool:
    """True if ``folder`` holds only what a PNG export writes (so it may be replaced)."""
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return False
    return MANIFEST_NAME in names and all(n == MANIFEST_NAME or _FRAME_FILE.match(n)
                                          for n in names)


def check_destination(fmt: str, out: str | os.PathLike) -> Path:
    """Raise ExportError unless the export could be written to ``out``; returns it absolute.

    Proves it by creating (and removing) a temporary file next to the destination.
    """
    dest = Path(os.path.abspath(os.path.expanduser(str(out))))
    try:
        _check_destination(fmt, dest)
    except OSError as e:
        raise ExportError(describe_os_error(e, dest)) from None
    return dest


def _check_destination(fmt: str, dest: Path) -> None:
    if fmt == "png":
        if dest.exists() and not dest.is_dir():
            raise ExportError(f"{dest} is a file; a PNG sequence needs a folder. Choose a "
                              "new folder name.")
        if dest.is_dir() and any(dest.iterdir()) and not _is_earlier_export(dest):
            raise ExportError(f"The folder {dest} already holds other files. Choose an empty "
                              "or new folder so no file of yours gets mixed with the frames.")
    elif dest.is_dir():
        raise ExportError(f"{dest} is a folder. Give a file name ending in .{fmt}.")
    if not dest.parent.is_dir():
        if dest.parent.exists():
            raise ExportError(f"Cannot write to {dest}: {dest.parent} is not a folder. "
                              "Choose another folder.")
        raise ExportError(f"Cannot write to {dest}: the folder {dest.parent} does not exist. "
                          "Create it or choose another folder.")
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".check", dir=dest.parent)
    os.close(fd)
    os.unlink(name)


class FrameWriter:
    """Base: a temporary file or folder next to ``dest``, renamed into place by ``commit``.

    ``open`` creates the temporary (proving the destination writable), ``write``
    adds one RGB frame, ``commit`` finishes and renames, ``discard`` removes it.
    ``write`` / ``commit`` run on the export's worker thread; OSError there is
    turned into an ExportError by the job.
    """

    def __init__(self, dest: Path, size: tuple[int, int], fps: int, manifest: dict):
        self.dest = dest
        self.size = size
        self.fps = fps
        self.manifest = manifest
        self.tmp: Path | None = None
        self.frames_written = 0

    def open(self) -> None:
        raise NotImplementedError

    def write(self, rgb: np.ndarray, info: FrameInfo) -> None:
        raise NotImplementedError

    def commit(self) -> Path:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Make a ``write`` under way on the encoder thread return soon (cancel, error)."""

    def discard(self) -> None:
        _remove(self.tmp)
        self.tmp = None

    def _new_temp_file(self) -> Path:
        fd, name = tempfile.mkstemp(prefix=f".{self.dest.name}.", suffix=".partial",
                                    dir=self.dest.parent)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def _replace_file(self) -> Path:
        """fsync and rename the finished temporary file over ``dest``."""
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp made it private
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.dest)
        self.tmp = None
        return self.dest


def encode_png(rgb: np.ndarray, level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """An (h, w, 3) uint8 image as PNG bytes: 8-bit RGB, one IDAT, no other chunk.

    Every row uses filter type 2, "Up" (each byte minus the byte above it, modulo
    256; the first row's "above" is zeros; PNG spec section 9.2): on UI pictures,
    mostly flat colours and straight lines, it compresses as well as Pillow's
    adaptive filters in a third of the time, in two numpy and zlib calls that
    release the GIL. Nothing but pixels goes in, so equal pixels give equal bytes.
    """
    h, w, _ = rgb.shape
    rows = rgb.reshape(h, 3 * w)
    filtered = np.empty((h, 3 * w + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 wraps: modulo 256

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    # width, height, bit depth 8, colour type 2 (RGB), deflate, filter method 0, no interlace
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(filtered, level)) + chunk(b"IEND", b""))


def manifest_text(header: dict, frames: list[dict]) -> str:
    """frames.json: the header fields, then one line per frame (diff- and grep-friendly)."""
    head = json.dumps({**header, "frames": []}, indent=1, allow_nan=False, ensure_ascii=False)
    rows = ",\n".join("  " + json.dumps(f, allow_nan=False, ensure_ascii=False)
                      for f in frames)
    body = f'"frames": [\n{rows}\n ]' if frames else '"frames": []'
    return head.replace('"frames": []', body) + "\n"


class PngSequenceWriter(FrameWriter):
    """frame_00000.png, ... and frames.json, in a folder that appears complete or not at all."""

    def open(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.", suffix=".partial",
                                         dir=self.dest.parent))
        self.frames = []

    def write(self, rgb: np.ndarray, info: FrameInfo) -> None:
        name = f"frame_{info.index:05d}.png"
        data = encode_png(rgb)
        with open(self.tmp / name, "wb") as f:
            f.write(data)
        self.frames.append({"file": name, **info.to_json()})
        self.frames_written += 1

    def commit(self) -> Path:
        path = self.tmp / MANIFEST_NAME
        with open(path, "w", encoding="utf-8") as f:
            f.write(manifest_text(self.manifest, self.frames))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(self.tmp, 0o777 & ~_umask())  # mkdtemp made it private
        old = None
        if self.dest.is_dir():
            if any(self.dest.iterdir()):
                if not _is_earlier_export(self.dest):
                    raise ExportError(f"The folder {self.dest} was filled with other files "
                                      "during the export. Choose an empty or new folder.")
                # Move the earlier export aside first, so dest is never half old, half new.
                old = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.", suffix=".old",
                                            dir=self.dest.parent))
                os.replace(self.dest, old / "export")
            else:
                self.dest.rmdir()
        os.replace(self.tmp, self.dest)
        self.tmp = None
        _remove(old)
        return self.dest


class GifWriter(FrameWriter):
    """An animated GIF, streamed to disk frame by frame (memory stays one frame).

    Each frame gets its own 256-colour palette (median cut, no dithering: exact and
    deterministic for flat UI colours) and only the rectangle that changed since the
    previous frame is stored; identical frames are merged into a longer delay.
    Delays are whole centiseconds, rounded from exact frame times so the average
    rate is ``fps`` (e.g. 3, 3, 4 cs at 30 fps).
    """

    def open(self) -> None:
        self._new_temp_file()
        self._file = open(self.tmp, "wb")  # noqa: SIM115 (closed in commit/discard)
        self._prev = None
        self._pending = None  # (image, offset, n_frames) written when the next one differs
        self._frames_in_file = 0

    def _delay_ms(self, first: int, n: int) -> int:
        t = lambda i: round(i * 100 / self.fps)  # noqa: E731 (frame i's start, centiseconds)
        return max(2, t(first + n) - t(first)) * 10

    def _flush_pending(self) -> None:
        from PIL import GifImagePlugin

        if self._pending is None:
            return
        image, offset, first, n = self._pending
        params = {"duration": self._delay_ms(first, n), "disposal": 1}
        if self._frames_in_file == 0:
            header, _ = GifImagePlugin.getheader(image, info={"loop": 0})
            for chunk in header:
                self._file.write(chunk)
        else:
            params["include_color_table"] = True
        for chunk in GifImagePlugin.getdata(image, offset=offset, **params):
            self._file.write(chunk)
        self._frames_in_file += 1
        self._pending = None

    def write(self, rgb: np.ndarray, info: FrameInfo) -> None:
        from PIL import Image

        index = self.frames_written
        self.frames_written += 1
        if self._prev is None:
            box = (0, 0, rgb.shape[1], rgb.shape[0])
        else:
            changed = np.any(rgb != self._prev, axis=2)
            rows = np.flatnonzero(changed.any(axis=1))
            if rows.size == 0:  # same picture: show the pending one longer
                image, offset, first, n = self._pending
                self._pending = (image, offset, first, n + 1)
                return
            cols = np.flatnonzero(changed.any(axis=0))
            box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        self._flush_pending()
        self._prev = rgb
        part = Image.fromarray(np.ascontiguousarray(rgb[box[1]:box[3], box[0]:box[2]]), "RGB")
        image = part.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        self._pending = (image, (box[0], box[1]), index, 1)

    def commit(self) -> Path:
        self._flush_pending()
        self._file.write(b";")  # trailer
        self._file.close()
        return self._replace_file()

    def discard(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None and not f.closed:
            try:
                f.close()
            except OSError:
                pass
        super().discard()


class Mp4Writer(FrameWriter):
    """H.264 in MP4 (yuv420p, plays everywhere) through imageio-ffmpeg's ffmpeg binary.

    ffmpeg is run directly (not through ``imageio_ffmpeg.write_frames``) so its exit
    status and error text are checked: a full disk when ffmpeg writes the index at
    the end must fail the export, not leave a broken file.
    """

    def open(self) -> None:
        try:
            import imageio_ffmpeg

            exe = imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError) as e:
            raise ExportError("MP4 export needs ffmpeg, which comes with the imageio-ffmpeg "
                              f"package ({e}). Install it (pip install imageio-ffmpeg) or "
                              "export a GIF or PNG sequence.") from None
        self._new_temp_file()
        w, h = self.size
        self._log = tempfile.TemporaryFile()  # ffmpeg's stderr: a file never fills up like a pipe
        cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(self.fps),
               "-i", "pipe:0", "-an",
               "-c:v", "libx264", "-preset", "veryfast", "-tune", "animation", "-crf", "18",
               "-pix_fmt", "yuv420p",
               # no encoder string, creation time or other metadata: reproducible files
               "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
               "-movflags", "+faststart", "-f", "mp4", str(self.tmp)]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=self._log)
        except OSError as e:
            self.discard()
            raise ExportError(f"Could not start ffmpeg ({e}). Export a GIF or PNG sequence "
                              "instead.") from None

    def _ffmpeg_error(self) -> str:
        try:
            self._log.seek(0)
            text = self._log.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            text = ""
        return text.splitlines()[-1] if text else ""

    def _fail(self) -> None:
        """ffmpeg stopped or failed: raise the most useful message."""
        code = self._proc.wait()
        detail = self._ffmpeg_error()
        low = detail.lower()
        if code == -getattr(signal, "SIGXFSZ", 25):  # killed for exceeding the file size limit
            raise ExportError(describe_os_error(OSError(errno.EFBIG, "File too large"),
                                                self.dest))
        for words, code in (("no space left", errno.ENOSPC), ("file too large", errno.EFBIG),
                            ("permission denied", errno.EACCES),
                            ("disk quota", errno.EDQUOT)):
            if words in low:
                raise ExportError(describe_os_error(OSError(code, detail), self.dest))
        raise ExportError(f"ffmpeg could not write {self.dest}"
                          + (f": {detail}" if detail else f" (exit status "
                             f"{self._proc.returncode})")
                          + ". Nothing was saved; try another folder, a GIF, or a PNG sequence.")

    def write(self, rgb: np.ndarray, info: FrameInfo) -> None:
        try:
            self._proc.stdin.write(memoryview(np.ascontiguousarray(rgb)).cast("B"))
        except (OSError, ValueError):  # ffmpeg has stopped (a full disk, ...)
            self._fail()
        self.frames_written += 1

    def commit(self) -> Path:
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        if self._proc.wait() != 0:
            self._fail()
        self._log.close()
        return self._replace_file()

    def interrupt(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()  # a write blocked on the pipe fails at once

    def discard(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.stdin.close()
            except (OSError, ValueError):
                pass
            proc.wait()
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
        super().discard()


WRITERS = {"png": PngSequenceWriter, "gif": GifWriter, "mp4": Mp4Writer}


class _EncoderThread:
    """Runs ``writer.write`` on one worker thread, at most two frames behind.

    zlib, the GIF encoder and the pipe to ffmpeg release the GIL, so this overlaps
    encoding with rendering the next frame on the GUI thread.
    """

    _STOP = object()

    def __init__(self, writer: FrameWriter):
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._work, name="export-encoder", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is not None or self._abort.is_set():
                continue  # keep draining so put() never blocks forever
            try:
                self.writer.write(*item)
            except BaseException as e:  # handed to the GUI thread, which reports it
                self._error = e

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, rgb: np.ndarray, info: FrameInfo) -> None:
        self._raise_if_failed()
        self._queue.put((rgb, info))

    def finish(self) -> None:
        """Wait for every queued frame; raise what the writer raised."""
        self._queue.put(self._STOP)
        self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Drop the queued frames and wait for the thread (call ``writer.interrupt`` first,
        so a write under way returns)."""
        self._abort.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._queue.put(self._STOP)
        self._thread.join()


# -- the job -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    status: str  # "done", "cancelled" or "failed"
    message: str  # for the user
    path: Path | None = None  # what was written (done only)
    frames: int = 0
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()

    @property
    def folder(self) -> Path | None:
        """The folder to open for the user."""
        if self.path is None:
            return None
        return self.path if self.path.is_dir() else self.path.parent


class ExportJob:
    """Renders and writes one export, headless (``run``) or in GUI slices (``step``).

    ``controller`` must be the export's own SimulationController (the job steps
    it; see ``clone_controller``). ``progress(done, total)`` is called after every
    frame; ``cancel()`` may be called from it or between slices. ``result`` is
    set once the job has finished, failed or been cancelled.
    """

    def __init__(self, controller, settings: ExportSettings, experiment_name: str = "",
                 progress: Callable[[int, int], None] | None = None, layout_state=None):
        self.controller = controller
        self.layout_state = layout_state  # the "window" capture: the user's dock layout
        self.settings = settings
        sim = controller.sim
        self.experiment_name = experiment_name or (sim.experiment.name if sim else "")
        self.progress = progress
        self.warnings: list[str] = []
        self.frames_done = 0
        self.frames_total = 0
        self.view = settings.view
        self.result: ExportResult | None = None
        self._cancelled = False
        self._writer: FrameWriter | None = None
        self._encoder: _EncoderThread | None = None
        self._capture: FrameCapture | None = None
        self._source: FrameSource | None = None
        self._frames: Iterator | None = None
        self._t0 = 0.0

    @property
    def started(self) -> bool:
        return self._frames is not None

    @property
    def finished(self) -> bool:
        return self.result is not None

    def cancel(self) -> None:
        self._cancelled = True

    def start(self) -> None:
        """Check what can be checked, then create the temporary output: an unwritable
        destination fails here, before any frame is rendered. Raises ExportError."""
        s = self.settings
        try:
            s.validate()
            dest = check_destination(s.format, s.out)
            source = FrameSource(self.controller, s.steps, s.micro, s.every)
            if source.total > MAX_FRAMES:
                raise ExportError(f"That would be {source.total} frames (at most "
                                  f"{MAX_FRAMES}): export fewer steps or keep only every "
                                  "K-th one.")
        except ExportError as e:
            self.result = ExportResult("failed", str(e))
            raise
        sim = self.controller.sim
        manifest = {
            "format": MANIFEST_FORMAT, "version": 1, "experiment": self.experiment_name,
            "seed": int(sim.experiment.seed), "view": s.view, "size": [s.width, s.height],
            "fps": s.fps, "granularity": "micro-step" if s.micro else "iteration",
            "every": s.every,
        }
        writer = WRITERS[s.format](dest, s.size, s.fps, manifest)
        try:
            writer.open()
            capture, self.view = build_capture(s.view, self.controller, s.size,
                                               self.experiment_name,
                                               warn=self.warnings.append,
                                               layout_state=self.layout_state)
        except BaseException as e:
            writer.discard()
            message = describe_os_error(e, dest) if isinstance(e, OSError) else str(e)
            self.result = ExportResult("failed", message)
            if isinstance(e, OSError):
                raise ExportError(message) from None
            raise
        manifest["view"] = self.view
        source.quiet = self.view != "window"
        self._writer = writer
        self._capture = capture
        self._source = source
        self._frames = iter(source)
        self.frames_total = source.total
        self._encoder = _EncoderThread(writer)
        self._t0 = time.perf_counter()

    def step(self, seconds: float = SLICE_SECONDS) -> bool:
        """Render frames for about ``seconds`` (at least one). True while frames remain.

        On an error the temporary output is removed and ExportError is raised."""
        if self.result is not None:
            return False
        if self._frames is None:
            raise RuntimeError("ExportJob.start() first")
        deadline = time.perf_counter() + seconds
        try:
            while True:
                if self._cancelled:
                    self._abort("cancelled", "Export cancelled; nothing was saved.")
                    return False
                item = next(self._frames, None)
                if item is None:
                    self._commit()
                    return False
                snap, info = item
                self._encoder.put(self._capture.grab(snap), info)
                self.frames_done += 1
                if self.progress is not None:
                    self.progress(self.frames_done, self.frames_total)
                if time.perf_counter() >= deadline:
                    return True
        except ExportError as e:
            self._abort("failed", str(e))
            raise
        except OSError as e:
            message = describe_os_error(e, self._writer.dest)
            self._abort("failed", message)
            raise ExportError(message) from None
        except BaseException as e:  # KeyboardInterrupt, a bug in a view: clean up, re-raise
            self._abort("failed", f"The export failed ({type(e).__name__}: {e}); nothing "
                                  "was saved.")
            raise

    def run(self) -> ExportResult:
        """Headless: start, render every frame, write. Raises ExportError on failure."""
        if not self.started:
            self.start()
        while self.step(seconds=1.0):
            pass
        return self.result

    def _commit(self) -> None:
        try:
            self._encoder.finish()
            path = self._writer.commit()
        except OSError as e:
            raise ExportError(describe_os_error(e, self._writer.dest)) from None
        finally:
            self._close_capture()
        n = self.frames_done
        if self._source.diverged is not None:
            self.warnings.append(
                f"Training diverged at step {self._source.diverged.step}; the export stops "
                f"there ({n} of {self.frames_total} frames).")
        if self.settings.format == "png":
            message = f"Saved {n} frames and {MANIFEST_NAME} to {path}."
        else:
            message = f"Saved {n} frames to {path}."
        self.result = ExportResult("done", message, path, n, time.perf_counter() - self._t0,
                                   tuple(self.warnings))

    def _abort(self, status: str, message: str) -> None:
        # Order matters: stop the encoder thread before removing what it writes into.
        if self._writer is not None:
            self._writer.interrupt()
        if self._encoder is not None:
            self._encoder.abort()
        if self._writer is not None:
            self._writer.discard()
        self._close_capture()
        self.result = ExportResult(status, message, None, self.frames_done,
                                   time.perf_counter() - self._t0, tuple(self.warnings))

    def _close_capture(self) -> None:
        if self._capture is not None:
            self._capture.close()
            self._capture = None


def clone_controller(controller, parent=None):
    """A new SimulationController with an independent copy of ``controller``'s
    simulation: same structure, weights, optimizer state, step count and history.

    The copy starts at the beginning of an iteration (one under way in the app is
    not carried over) and draws its own mini-batches from there.
    """
    from ui.controller import SimulationController

    with controller.locked() as sim:
        state = sim.capture_state()
        step_count = sim.step_count
        history = copy.deepcopy(sim.history)
        capacity = sim.history_capacity

    def restore(copy_sim):
        copy_sim.restore_state(state)
        copy_sim.step_count = step_count
        copy_sim.history = history

    clone = SimulationController(state.experiment, parent, build_now=True,
                                 history_capacity=capacity)
    if not clone.apply(restore):
        raise ExportError("Could not copy the simulation for the export.")
    return clone


# -- GUI ---------------------------------------------------------------------------------------


class ExportRunner(QObject):
    """Drives an ExportJob from a self-re-arming QTimer, one short slice per tick, so
    the window keeps answering input. ``finished`` carries the ExportResult."""

    progress = Signal(int, int)
    finished = Signal(object)

    def __init__(self, job: ExportJob, parent=None):
        super().__init__(parent)
        self.job = job
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)  # re-armed after each slice: ticks never pile up
        self._timer.timeout.connect(self._on_tick)

    @property
    def result(self) -> ExportResult | None:
        return self.job.result

    def start(self) -> bool:
        """Start the job; False (and ``finished`` with the failure) if it cannot start."""
        try:
            self.job.start()
        except ExportError:
            self.finished.emit(self.job.result)
            return False
        self.progress.emit(0, self.job.frames_total)
        self._timer.start(0)
        return True

    def cancel(self) -> None:
        """Stop at the next frame and remove the temporary output."""
        self.job.cancel()

    def _on_tick(self) -> None:
        try:
            more = self.job.step()
        except ExportError:
            more = False
        self.progress.emit(self.job.frames_done, self.job.frames_total)
        if more:
            self._timer.start(0)
        else:
            self.finished.emit(self.job.result)


class ExportDialog(QDialog):
    """File > Export animation...: what to capture, size, which steps, granularity,
    speed, format, destination. Remembers the last choices in ``settings`` (a
    QSettings) if given; OK stays disabled while a choice is invalid, with the reason
    shown, and the destination is tried before the dialog closes."""

    SETTINGS_GROUP = "export"

    def __init__(self, parent=None, settings: QSettings | None = None,
                 experiment_name: str = "", n_micro_steps: int = 0, start_step: int = 0,
                 window_available: bool = True):
        super().__init__(parent)
        self.setWindowTitle("Export animation")
        self._settings = settings
        self._name = experiment_name
        self._n_micro = n_micro_steps
        self._start_step = start_step

        self.view_box = QComboBox()
        for key in ("window", "canvas", "flow", "composed"):
            if key != "window" or window_available:
                self.view_box.addItem(VIEW_LABELS[key], key)
        self.view_box.setCurrentIndex(self.view_box.findData("canvas"))
        self.size_box = QComboBox()
        for w, h in SIZE_PRESETS:
            self.size_box.addItem(f"{w} × {h}", f"{w}x{h}")
        self.size_box.addItem("Custom…", "")
        self.width_spin = QSpinBox()
        self.height_spin = QSpinBox()
        for spin, value in ((self.width_spin, DEFAULT_SIZE[0]),
                            (self.height_spin, DEFAULT_SIZE[1])):
            spin.setRange(1, 99_999)
            spin.setValue(value)
            spin.setSuffix(" px")
        custom = QHBoxLayout()
        custom.addWidget(self.width_spin)
        custom.addWidget(QLabel("×"))
        custom.addWidget(self.height_spin)
        custom.addStretch(1)

        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, MAX_STEPS)
        self.steps_spin.setValue(10)
        self.steps_spin.setSuffix(" iterations")
        self.micro_box = QComboBox()
        self.micro_box.addItem("One per iteration", False)
        self.micro_box.addItem("One per micro-step (animates the backward pass)", True)
        self.every_spin = QSpinBox()
        self.every_spin.setRange(1, MAX_STEPS)
        self.every_spin.setPrefix("every ")
        self.every_spin.setSuffix(" iteration(s)")
        self.every_spin.setToolTip(
            "Per iteration: keep one frame every K iterations.\n"
            "Per micro-step: animate every K-th iteration; the ones between run at full "
            "speed.")
        self.fps_spin = QSpinBox()
        self.fps_spin.setRange(1, MAX_FPS)
        self.fps_spin.setValue(DEFAULT_FPS)
        self.fps_spin.setSuffix(" frames/s")
        self.format_box = QComboBox()
        for key in FORMATS:
            self.format_box.addItem(FORMAT_LABELS[key], key)
        self.format_box.setCurrentIndex(FORMATS.index("gif"))
        self.dest_edit = QLineEdit()
        self.dest_edit.setPlaceholderText("a .gif / .mp4 file, or a folder for PNG frames")
        self.browse_button = QPushButton("Browse…")
        dest = QHBoxLayout()
        dest.addWidget(self.dest_edit, 1)
        dest.addWidget(self.browse_button)

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        from ui.views import colors

        self.problem_label.setStyleSheet(f"color: {colors.SEVERITY['critical']};")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Export")

        form = QFormLayout()
        form.addRow("Capture:", self.view_box)
        form.addRow("Size:", self.size_box)
        form.addRow("", custom)
        form.addRow("Steps:", self.steps_spin)
        form.addRow("Frames:", self.micro_box)
        form.addRow("Keep:", self.every_spin)
        self._every_label = form.labelForField(self.every_spin)
        form.addRow("Speed:", self.fps_spin)
        form.addRow("Format:", self.format_box)
        form.addRow("Save to:", dest)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.problem_label)
        layout.addWidget(self.buttons)

        self._restore()
        self.size_box.currentIndexChanged.connect(self._on_size_changed)
        self.format_box.currentIndexChanged.connect(self._on_format_changed)
        self.browse_button.clicked.connect(self._on_browse_clicked)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        for changed in (self.view_box.currentIndexChanged, self.size_box.currentIndexChanged,
                       self.width_spin.valueChanged, self.height_spin.valueChanged,
                       self.steps_spin.valueChanged, self.micro_box.currentIndexChanged,
                       self.every_spin.valueChanged, self.fps_spin.valueChanged,
                       self.format_box.currentIndexChanged, self.dest_edit.textChanged):
            changed.connect(self._on_input_changed)
        self._on_size_changed()
        self._on_input_changed()

    # -- reading ------------------------------------------------------------------------
    def export_size(self) -> tuple[int, int]:
        preset = self.size_box.currentData()
        if preset:
            return parse_size(preset)
        return self.width_spin.value(), self.height_spin.value()

    def export_settings(self) -> ExportSettings:
        return ExportSettings(
            out=Path(os.path.expanduser(self.dest_edit.text().strip())),
            format=self.format_box.currentData(), view=self.view_box.currentData(),
            size=self.export_size(), steps=self.steps_spin.value(),
            micro=bool(self.micro_box.currentData()), every=self.every_spin.value(),
            fps=self.fps_spin.value())

    # -- setting (used by restore, and handy in tests) ----------------------------------
    def set_view(self, view: str) -> None:
        i = self.view_box.findData(view)
        if i >= 0:
            self.view_box.setCurrentIndex(i)

    def set_format(self, fmt: str) -> None:
        self.format_box.setCurrentIndex(self.format_box.findData(fmt))

    def set_size(self, w: int, h: int) -> None:
        i = self.size_box.findData(f"{w}x{h}")
        if i < 0:
            i = self.size_box.findData("")
            self.width_spin.setValue(w)
            self.height_spin.setValue(h)
        self.size_box.setCurrentIndex(i)

    def set_micro(self, on: bool) -> None:
        self.micro_box.setCurrentIndex(1 if on else 0)

    def default_destination(self, folder: str | os.PathLike) -> Path:
        """<folder>/<experiment name>.<format> (a folder for PNG)."""
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", self._name).strip("_").lower() or "animation"
        return with_format_suffix(Path(folder) / stem, self.format_box.currentData())

    # -- behaviour -------------------------------------------------------------------------
    def _on_size_changed(self, *_args) -> None:
        custom = not self.size_box.currentData()
        self.width_spin.setEnabled(custom)
        self.height_spin.setEnabled(custom)

    def _on_format_changed(self, *_args) -> None:
        text = self.dest_edit.text().strip()
        if text:
            self.dest_edit.setText(str(with_format_suffix(text, self.format_box.currentData())))

    def _on_browse_clicked(self) -> None:
        fmt = self.format_box.currentData()
        current = self.dest_edit.text().strip() or str(self.default_destination(Path.home()))
        if fmt == "png":
            folder = QFileDialog.getExistingDirectory(self, "Folder for the PNG frames",
                                                      str(Path(current).parent))
            if folder:
                f = Path(folder)
                usable = f.is_dir() and (not any(f.iterdir()) or _is_earlier_export(f))
                self.dest_edit.setText(str(f if usable else self.default_destination(f)))
        else:
            name, _ = QFileDialog.getSaveFileName(self, "Save animation as", current,
                                                  f"{FORMAT_LABELS[fmt]} (*.{fmt})")
            if name:
                self.dest_edit.setText(str(with_format_suffix(name, fmt)))

    def _problems(self, s: ExportSettings) -> list[str]:
        problems = s.problems()
        if s.micro and not self._n_micro:
            problems.append("Micro-step frames need a running simulation.")
        if not problems:
            n = count_frames(s.steps, s.micro, s.every, self._n_micro)
            if n > MAX_FRAMES:
                problems.append(f"That would be {n} frames (at most {MAX_FRAMES}): use fewer "
                                "steps or keep only every K-th iteration.")
        return problems

    def _on_input_changed(self, *_args) -> None:
        s = self.export_settings()
        self._every_label.setText("Animate:" if s.micro else "Keep:")
        problems = self._problems(s)
        if problems:
            self.summary.setText("")
        else:
            n = count_frames(s.steps, s.micro, s.every, self._n_micro)
            first, last = self._start_step, self._start_step + s.steps
            self.summary.setText(f"{n} frames, steps {first} to {last}: {n / s.fps:.1f} s at "
                                 f"{s.fps} frames/s, {s.width} × {s.height} pixels.")
        self._show_problems(problems)
        self.ok_button.setEnabled(not problems)

    def _show_problems(self, problems: list[str]) -> None:
        self.problem_label.setText("\n".join(problems))
        self.problem_label.setVisible(bool(problems))
        # a longer message needs more room: grow (never shrink under the user's hands)
        self.layout().activate()
        hint = self.sizeHint()
        if hint.height() > self.height() or hint.width() > self.width():
            self.resize(max(hint.width(), self.width()), max(hint.height(), self.height()))

    def accept(self) -> None:
        s = self.export_settings()
        problems = self._problems(s)
        if not problems:
            try:
                check_destination(s.format, s.out)
            except ExportError as e:
                problems = [str(e)]
        if problems:
            self._show_problems(problems)
            return
        self._save()
        super().accept()

    # -- memory ----------------------------------------------------------------------------
    def _restore(self) -> None:
        st = self._settings
        if st is None:
            return
        g = self.SETTINGS_GROUP
        view = st.value(f"{g}/view")
        if view in VIEWS:
            self.set_view(view)
        try:
            self.set_size(*parse_size(str(st.value(f"{g}/size", ""))))
        except ExportError:
            pass
        for key, spin in (("steps", self.steps_spin), ("every", self.every_spin),
                          ("fps", self.fps_spin)):
            try:
                value = st.value(f"{g}/{key}")
                if value is not None:
                    spin.setValue(int(value))
            except (TypeError, ValueError):
                pass
        micro = st.value(f"{g}/micro")
        if micro is not None:
            self.set_micro(str(micro).lower() in ("true", "1"))
        fmt = st.value(f"{g}/format")
        if fmt in FORMATS:
            self.set_format(fmt)
        folder = st.value(f"{g}/folder")
        if folder and Path(str(folder)).is_dir():
            self.dest_edit.setText(str(self.default_destination(str(folder))))

    def _save(self) -> None:
        st = self._settings
        if st is None:
            return
        s = self.export_settings()
        g = self.SETTINGS_GROUP
        for key, value in (("view", s.view), ("size", f"{s.width}x{s.height}"),
                           ("steps", s.steps), ("every", s.every), ("fps", s.fps),
                           ("micro", s.micro), ("format", s.format),
                           ("folder", str(Path(s.out).parent))):
            st.setValue(f"{g}/{key}", value)


class WindowExporter(QObject):
    """File > Export animation... for one main window: the dialog, a private copy of
    the simulation, slices on the GUI thread under a progress dialog with Cancel,
    and at the end a message with "Open folder". ``finished`` carries the result."""

    finished = Signal(object)

    def __init__(self, window: QWidget, controller, settings: QSettings | None = None):
        super().__init__(window)
        self.window = window
        self.controller = controller
        self.settings = settings
        self.dialog: ExportDialog | None = None
        self.runner: ExportRunner | None = None
        self.progress_dialog: QProgressDialog | None = None
        self.message_box: QMessageBox | None = None
        self.last_result: ExportResult | None = None
        self.action: QAction | None = None  # File > Export animation..., once installed
        app = QCoreApplication.instance()
        if app is not None:  # quitting mid-export must not leave a temporary file behind
            app.aboutToQuit.connect(self._on_about_to_quit)

    @property
    def busy(self) -> bool:
        return self.runner is not None

    def open_dialog(self) -> ExportDialog | None:
        """Show the dialog (without blocking); returns it, or None while exporting."""
        if self.busy or not self.controller.is_ready:
            return None
        if self.dialog is not None:
            self.dialog.raise_()
            return self.dialog
        sim = self.controller.sim
        dialog = ExportDialog(self.window, self.settings, experiment_name=sim.experiment.name,
                              n_micro_steps=sim.n_micro_steps, start_step=sim.step_count,
                              window_available=_main_window_class() is not None)
        if not dialog.dest_edit.text():
            videos = Path.home() / "Videos"
            dialog.dest_edit.setText(str(dialog.default_destination(
                videos if videos.is_dir() else Path.home())))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.start(dialog.export_settings()))
        dialog.finished.connect(self._on_dialog_finished)
        self.dialog = dialog
        dialog.open()
        return dialog

    def _on_dialog_finished(self, _code: int) -> None:
        self.dialog = None

    def _on_ready(self) -> None:
        if self.action is not None:
            self.action.setEnabled(True)

    def start(self, settings: ExportSettings) -> bool:
        """Export ``settings`` from the current state, without blocking."""
        if self.busy or not self.controller.is_ready:
            return False
        name = self.controller.sim.experiment.name
        try:
            clone = clone_controller(self.controller, parent=self)
        except ExportError as e:
            self._on_finished(ExportResult("failed", str(e)))
            return False
        state = self.window.saveState() if isinstance(self.window, QMainWindow) else None
        job = ExportJob(clone, settings, experiment_name=name, layout_state=state)
        self.runner = ExportRunner(job, self)
        progress = QProgressDialog("Preparing the export…", "Cancel", 0, 1, self.window)
        progress.setWindowTitle("Exporting animation")
        progress.setWindowModality(Qt.WindowModality.WindowModal)
        progress.setMinimumDuration(0)
        progress.setAutoClose(False)
        progress.setAutoReset(False)
        progress.canceled.connect(self.runner.cancel)
        self.progress_dialog = progress
        self.runner.progress.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        progress.show()
        return self.runner.start()

    def cancel(self) -> None:
        if self.runner is not None:
            self.runner.cancel()

    def _on_progress(self, done: int, total: int) -> None:
        if self.progress_dialog is not None:
            self.progress_dialog.setMaximum(max(1, total))
            self.progress_dialog.setLabelText(f"Rendering frame {done} of {total}…")
            self.progress_dialog.setValue(done)

    def _on_finished(self, result: ExportResult) -> None:
        if self.progress_dialog is not None:
            self.progress_dialog.canceled.disconnect()
            self.progress_dialog.close()
            self.progress_dialog.deleteLater()
            self.progress_dialog = None
        if self.runner is not None:
            runner, self.runner = self.runner, None
            runner.job.controller.shutdown()
            runner.job.controller.deleteLater()
            runner.deleteLater()
        self.last_result = result
        self._show_result(result)
        self.finished.emit(result)

    def _show_result(self, result: ExportResult) -> None:
        if result.status == "cancelled":
            status_bar = getattr(self.window, "statusBar", None)
            if callable(status_bar):
                status_bar().showMessage(result.message, 5000)
            return
        done = result.status == "done"
        box = QMessageBox(QMessageBox.Icon.Information if done else QMessageBox.Icon.Warning,
                          "Export finished" if done else "Export failed", result.message,
                          QMessageBox.StandardButton.Close, self.window)
        if result.warnings:
            box.setInformativeText("\n".join(result.warnings))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        if done and result.folder is not None:
            folder = result.folder
            self.open_folder_button = box.addButton("Open folder",
                                                    QMessageBox.ButtonRole.ActionRole)
            self.open_folder_button.clicked.connect(
                lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))))
        box.finished.connect(self._on_message_closed)
        self.message_box = box
        box.open()

    def _on_message_closed(self, _code: int) -> None:
        self.message_box = None

    def _on_about_to_quit(self) -> None:
        if self.runner is not None:
            self.runner.job.cancel()
            self.runner.job.step()  # removes the temporary output at once


def install_export_action(window: QWidget, controller=None,
                          settings: QSettings | None = None) -> WindowExporter:
    """Enable File > Export animation... (the QAction named "action_export", Ctrl+E)
    on ``window`` as soon as the simulation is ready; returns the WindowExporter that
    runs it.

    ``controller`` and ``settings`` default to the window's ``controller`` and
    ``settings`` attributes.
    """
    if controller is None:
        controller = getattr(window, "controller", None)
        if controller is None:
            raise TypeError("install_export_action needs the window's SimulationController")
    if settings is None:
        found = getattr(window, "settings", None)
        settings = found if isinstance(found, QSettings) else None
    action = window.findChild(QAction, "action_export")
    if action is None:
        action = QAction("Export animation…", window)
        action.setObjectName("action_export")
        window.addAction(action)
    exporter = WindowExporter(window, controller, settings)
    exporter.action = action
    action.setShortcut(QKeySequence("Ctrl+E"))
    action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.setStatusTip("Export the animation as PNG frames, a GIF or an MP4 (Ctrl+E)")
    # usable once the simulation exists (the app builds it in the background)
    action.setEnabled(controller.is_ready)
    controller.ready.connect(exporter._on_ready)
    action.triggered.connect(exporter.open_dialog)
    return exporter


# -- command line ------------------------------------------------------------------------------


class TextProgress:
    """A progress bar on a stream: redrawn in place on a terminal, one line per 10%
    otherwise (logs, CI)."""

    WIDTH = 30

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = time.perf_counter()
        self._last_draw = -1.0
        self._last_decile = -1
        self._open_line = False

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        finished = done >= total
        if self.tty:
            if not finished and now - self._last_draw < 0.1:
                return
        else:
            decile = 10 * done // max(total, 1)
            if decile == self._last_decile:
                return
            self._last_decile = decile
        self._last_draw = now
        elapsed = now - self._t0
        rate = done / elapsed if elapsed > 0 else 0.0
        filled = self.WIDTH * done // max(total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        left = f", {(total - done) / rate:.0f} s left" if rate > 0 and not finished else ""
        line = f"Exporting [{bar}] {done}/{total} frames, {rate:.1f} frames/s{left}"
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self._open_line = not finished
            if finished:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def end_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False


def ensure_qt_application() -> QApplication:
    """The QApplication. A new one is offscreen unless QT_QPA_PLATFORM says otherwise, so
    a headless export looks the same on a laptop and on a server (no screen scaling),
    and wears the window's theme, so its frames look like the screen."""
    app = QApplication.instance()
    if app is None:
        if not os.environ.get("QT_QPA_PLATFORM"):
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        app = QApplication([sys.argv[0] if sys.argv else "gradient-flow-lab"])
        apply_app_theme(app)
    return app


def apply_app_theme(app: QApplication) -> None:
    """The main window's style and palette (ui.app.apply_theme), where there is one."""
    try:
        from ui.app import apply_theme
    except ImportError:
        return
    apply_theme(app)


def cli_run(args: argparse.Namespace, stderr=None) -> int:
    """``python main.py export ...`` (options from ``cli_add_arguments``). Returns the exit
    code: 0 done, 1 the export failed while writing, 2 bad input, 130 interrupted; every
    error is one clear message on stderr."""
    err = stderr if stderr is not None else sys.stderr

    def fail(message: str, code: int) -> int:
        err.write(f"main.py export: error: {message}\n")
        err.flush()
        return code

    from simulator.experiment import load_experiment, load_preset

    # Everything that needs no simulation is checked first, the destination included,
    # so a typo fails at once rather than after compiling and training.
    try:
        settings = ExportSettings(out=Path(args.out), format=args.format, view=args.view,
                                  size=parse_size(args.size), steps=args.steps,
                                  micro=args.micro, every=args.every, fps=args.fps)
        settings.validate()
        if args.preset is not None:
            experiment = load_preset(args.preset)
        else:
            experiment = load_experiment(args.experiment)
        settings = replace(settings, out=check_destination(settings.format, settings.out))
    except (ExportError, ValueError) as e:  # ValueError: ExperimentError, SpecError, DataError
        return fail(str(e), EXIT_BAD_INPUT)

    ensure_qt_application()
    from ui.controller import SimulationController

    try:
        controller = SimulationController(experiment, build_now=True)
    except ValueError as e:  # the experiment's data and network do not fit together
        return fail(f"cannot start the experiment: {e}", EXIT_BAD_INPUT)
    progress = TextProgress(err)
    job = ExportJob(controller, settings, experiment_name=experiment.name, progress=progress)
    try:
        job.start()
    except ExportError as e:
        controller.shutdown()
        return fail(str(e), EXIT_BAD_INPUT)
    try:
        result = job.run()
    except ExportError as e:
        progress.end_line()
        return fail(str(e), EXIT_FAILED)
    except KeyboardInterrupt:
        job.cancel()
        job.step()
        progress.end_line()
        err.write("main.py export: cancelled; nothing was saved.\n")
        return EXIT_INTERRUPTED
    finally:
        controller.shutdown()
    for warning in result.warnings:
        err.write(f"main.py export: warning: {warning}\n")
    err.write(f"{result.message} ({result.frames} frames in {result.seconds:.1f} s)\n")
    err.flush()
    return EXIT_OK
