"""Compare mode: two runs of one experiment in one window, trained in lockstep.

``CompareDriver`` owns a ``simulator.compare.Comparison`` the way the main
controller owns its Simulation: a lock, a play clock on the GUI thread, a fast-mode
worker thread, and a ``frame_changed`` signal carrying a ``CompareFrame`` (both
sides' snapshots, B's pretraining state, the label of what differs). Each side has
its own small controller (``SideController``) with its own undo stack, so the
ordinary ``ui.commands.Editor`` (every edit and every diagnosis remedy) works on
either side, and undo is per side.

``CompareWindow`` draws the frame: gradient-flow bars of A and B overlaid per layer
on one log axis, loss and accuracy of both on the same axes, B's reconstruction loss
per layer while it is pretrained, each side's diagnosis (``simulator.diagnosis``),
and the label. ``install_compare_actions(main_window)`` adds the "Compare" menu.

Exporting a comparison is not done here (the export package is being restructured).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from simulator.compare import Comparison
from simulator.diagnosis import REMEDIES, diagnose
from simulator.experiment import Experiment
from simulator.pretrain import PretrainSpec
from simulator.pretrain import warmup as pretrain_warmup
from simulator.snapshot import HIST_GRAD_W
from simulator.spec import SpecError

from .commands import EditCommand, Editor
from .controller import LayerSelection

COLOR_A = "#4c9be8"
COLOR_B = "#f28e2b"
LOSS_TITLE = (f"Training loss: <span style='color: {COLOR_A}'>\u2014 A</span> "
              f"<span style='color: {COLOR_B}'>\u2014 B</span>")
RECON_HINT_NONE = ("B is not pretrained in this comparison, so there is no reconstruction "
                   "loss to draw. \u201cPretrain B layer by layer\u2026\u201d above starts "
                   "it; each layer's loss is then drawn here.")
RECON_HINT_WAITING = ("Nothing pretrained yet. Press Step or Play: B is pretrained one layer "
                      "at a time first (A waits), and each layer's reconstruction loss is "
                      "drawn here.")
PLAY_RATE = 10.0  # iterations per second when playing (animated)
MICRO_RATE = 12.0  # micro-steps per second when animating micro-steps
FAST_CHUNK_SECONDS = 0.005  # worker: training time per lock hold, the longest a click waits
FAST_FPS = 15
FAST_EVAL_EVERY = 50
FAST_SWITCH_INTERVAL = 0.0005  # s: the worker gets the GIL back soon after each kernel call
# fast mode: at most this share of the GUI thread's time goes to drawing (as the main
# controller does: on two CPUs every millisecond drawn is one the worker loses)
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
FAST_GUI_SHARE = 0.15 if (_CPUS or 1) <= 2 else 0.5
_WARMUP_STARTED = threading.Event()


@dataclass(frozen=True)
class CompareFrame:
    """What the window draws: one moment of both sides."""

    a: object  # Snapshot of A
    b: object  # Snapshot of B
    pretrain: object  # PretrainSnapshot of B, or None when B is not pretrained
    label: str
    waiting: bool  # A waits while B pretrains
    curves: tuple  # per side: (steps, loss, accuracy) from its history
    recon: tuple  # B's reconstruction loss per step, one array per layer (() if none)


class SideController(LayerSelection, QObject):
    """One side of the comparison, shaped like the main controller for ``Editor`` and for
    the network canvas (``ui.views.canvas.NetworkCanvas``)."""

    error = Signal(str)
    snapshot_changed = Signal(object)
    structure_changed = Signal(object)
    selection_changed = Signal(int)
    ready = Signal()

    def __init__(self, driver: CompareDriver, side: str):
        super().__init__(driver)
        self.driver = driver
        self.side = side
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(200)
        self.snapshot = None
        self.shown = False  # a visible canvas draws this side's snapshots
        self._selected = 0

    def show_snapshot(self, snap) -> None:
        """Hand ``snap`` to this side's canvas (structure first when it changed)."""
        old = self.snapshot
        self.snapshot = snap
        if old is not None and old.spec != snap.spec:
            self.structure_changed.emit(snap.spec)
        if self.shown:
            self.snapshot_changed.emit(snap)

    @property
    def sim(self):
        c = self.driver.comparison
        return c.a if self.side == "a" else c.b

    @property
    def is_ready(self) -> bool:
        return True

    def push_edit(self, command) -> None:
        self.driver.pause()
        self.undo_stack.push(command)

    def apply(self, edit, *, structural: bool = True) -> bool:
        try:
            with self.driver.locked():
                edit(self.sim)
        except ValueError as e:
            self.error.emit(str(e))
            return False
        self.driver.publish()
        return True


class CompareDriver(QObject):
    frame_changed = Signal(object)  # CompareFrame
    running_changed = Signal(bool)
    error = Signal(str)
    _worker_frame = Signal()

    def __init__(self, experiment: Experiment, parent=None, history_capacity: int = 5000,
                 comparison: Comparison | None = None):
        super().__init__(parent)
        self.comparison = comparison if comparison is not None else Comparison(
            experiment, history_capacity=history_capacity)
        self._lock = threading.RLock()
        self._turn = threading.Lock()  # whoever waits for the lock goes before the worker
        self._held = threading.local()
        self.sides = {"a": SideController(self, "a"), "b": SideController(self, "b")}
        self.editors = {k: Editor(s) for k, s in self.sides.items()}
        for s in self.sides.values():
            s.error.connect(self.error)
        self.frame: CompareFrame | None = None
        self._playing = False
        self._mode = "play"  # "play", "micro" or "fast"
        self._clock = QTimer(self)
        self._clock.setSingleShot(True)
        self._clock.timeout.connect(self._on_tick)
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._worker_frame.connect(self._on_worker_frame)
        self._newest: CompareFrame | None = None  # the worker's frame not drawn yet
        self._frame_mark = None  # (wall, GUI thread CPU time) when the last fast frame began
        self._frame_timer = QTimer(self)
        self._frame_timer.setSingleShot(True)
        self._frame_timer.timeout.connect(self._on_worker_frame)
        # the autoencoder kernels compile (or load from numba's cache) off the GUI thread,
        # once per process
        if not _WARMUP_STARTED.is_set():
            _WARMUP_STARTED.set()
            threading.Thread(target=pretrain_warmup, name="pretrain-warmup",
                             daemon=True).start()
        self.publish()

    # -- reading and the frame --------------------------------------------------------
    @contextmanager
    def locked(self):
        """Hold the comparison still (the worker pauses between chunks)."""
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._lock.acquire()
        else:
            with self._turn:
                self._lock.acquire()
        self._held.depth = depth + 1
        try:
            yield self.comparison
        finally:
            self._held.depth = depth
            self._lock.release()

    def _make_frame(self) -> CompareFrame:
        """Copies of everything the window draws (call with the lock held)."""
        c = self.comparison
        a, b = c.snapshots()
        p = c.pretrainer
        pre = p.snapshot() if p is not None else None
        curves = tuple((s.history.steps(), s.history.scalar("loss"),
                        s.history.scalar("accuracy")) for s in c.sides)
        recon = tuple(p.loss_history(k + 1) for k in range(p.n_layers)) if p else ()
        return CompareFrame(a, b, pre, c.label, c.b_pretraining, curves, recon)

    def publish(self) -> None:
        with self.locked():
            frame = self._make_frame()
        self._show(frame)

    def _show(self, frame: CompareFrame) -> None:
        self.frame = frame
        self.sides["a"].show_snapshot(frame.a)
        self.sides["b"].show_snapshot(frame.b)
        self.frame_changed.emit(frame)

    # -- stepping ---------------------------------------------------------------------
    def micro_step(self) -> None:
        self.pause()
        with self.locked():
            self.comparison.micro_step()
        self.publish()

    def step(self) -> None:
        self.pause()
        with self.locked():
            self.comparison.step()
        self.publish()

    def run_steps(self, n: int) -> None:
        with self.locked():
            self.comparison.run(n)
        self.publish()

    def reset(self) -> None:
        self.pause()
        with self.locked():
            self.comparison.reset()
        self.publish()

    # -- play / fast ------------------------------------------------------------------
    @property
    def is_playing(self) -> bool:
        return self._playing

    @property
    def mode(self) -> str:
        return self._mode

    def play(self, mode: str = "play") -> None:
        if self._playing:
            self.pause()
        self._mode = mode
        self._playing = True
        self.running_changed.emit(True)
        if mode == "fast":
            self._start_worker()
        else:
            self._clock.start(0)

    def toggle_play(self, mode: str = "play") -> None:
        if self._playing:
            self.pause()
        else:
            self.play(mode)

    def pause(self) -> None:
        if not self._playing:
            return
        self._playing = False
        self._clock.stop()
        self._stop_worker()
        self.running_changed.emit(False)
        self.publish()

    def _on_tick(self) -> None:
        if not self._playing:
            return
        t0 = time.perf_counter()
        with self.locked():
            if self._mode == "micro":
                self.comparison.micro_step()
            else:
                self.comparison.step()
        self.publish()
        if self._stopped_by_divergence():
            self.pause()
            return
        rate = MICRO_RATE if self._mode == "micro" else PLAY_RATE
        spent = int((time.perf_counter() - t0) * 1000)
        self._clock.start(max(0, int(1000 / rate) - spent))

    def _stopped_by_divergence(self) -> bool:
        c = self.comparison
        pre_div = c.pretrainer is not None and c.pretrainer.divergence is not None
        return pre_div or (c.a.divergence is not None and c.b.divergence is not None)

    def _start_worker(self) -> None:
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(FAST_SWITCH_INTERVAL)
        with self.locked():
            for sim in self.comparison.sides:
                sim.eval_every = FAST_EVAL_EVERY
        self._stop.clear()
        self._newest = None
        self._frame_mark = None
        self._worker = threading.Thread(target=self._worker_loop, name="compare-training",
                                        daemon=True)
        self._worker.start()

    def _stop_worker(self) -> None:
        self._frame_timer.stop()
        if self._worker is None:
            return
        self._stop.set()
        self._worker.join()
        self._worker = None
        self._newest = None
        sys.setswitchinterval(self._switch_interval)
        with self.locked():
            for sim in self.comparison.sides:
                sim.eval_every = 10

    def _worker_loop(self) -> None:
        n = 1
        last_frame = 0.0
        while not self._stop.is_set():
            with self.locked():
                t0 = time.perf_counter()
                self.comparison.run(n)
                dt = time.perf_counter() - t0
                # chunks of about FAST_CHUNK_SECONDS: a click waits at most that long
                n = int(np.clip(n * FAST_CHUNK_SECONDS / max(dt, 1e-6), 1, 10_000))
                stopped = self._stopped_by_divergence()
                now = time.perf_counter()
                frame = None
                # a new frame only once the GUI has taken the last one
                if stopped or (self._newest is None and now - last_frame >= 1.0 / FAST_FPS):
                    frame = self._make_frame()
                    last_frame = now
            if frame is not None:
                self._newest = frame
                self._worker_frame.emit()  # queued to the GUI thread
            if stopped:
                return
            time.sleep(0)

    def _on_worker_frame(self) -> None:
        frame = self._newest
        if frame is None:
            return
        stopped = self._worker is not None and not self._worker.is_alive()
        if not stopped:
            if not self._playing:
                return
            if self._frame_mark is not None:
                began, cpu = self._frame_mark
                wait = began + (time.thread_time() - cpu) / FAST_GUI_SHARE - time.perf_counter()
                if wait > 0:  # drawing now would take the GUI over its share: later
                    if not self._frame_timer.isActive():
                        self._frame_timer.start(max(1, int(wait * 1000 + 0.5)))
                    return
            self._frame_mark = (time.perf_counter(), time.thread_time())
        self._newest = None
        self._show(frame)
        if stopped:
            self.pause()

    # -- edits ------------------------------------------------------------------------
    def pretrain_b(self, spec: PretrainSpec | None = None) -> bool:
        """B is pretrained layer by layer before both train on; undoable on B's stack."""
        side = self.sides["b"]
        try:
            from simulator.pretrain import check_pretrainable

            check_pretrainable(side.sim.spec)
        except SpecError as e:
            self.error.emit(f"Not changed: {e}")
            return False
        before = side.sim.capture_state()
        previous = self.comparison.pretrainer

        def do(sim):
            self.comparison.pretrain_b(spec)

        def undo(sim):
            sim.restore_state(before)
            self.comparison.pretrainer = previous

        cmd = EditCommand(side, "Pretrain B layer by layer", do, undo,
                          drop_if_unchanged=False)
        side.push_edit(cmd)
        return cmd.applied

    def close(self) -> None:
        self.pause()


# -- the window ---------------------------------------------------------------------------


def _log10_floor(values, floor_decades: float = 1.0):
    v = np.abs(np.asarray(values, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(v)
    finite = np.isfinite(logs)
    return logs, finite


class CompareWindow(QMainWindow):
    """The comparison window (a top-level window owned by the main window)."""

    def __init__(self, experiment: Experiment, parent=None,
                 comparison: Comparison | None = None):
        super().__init__(parent)
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.setObjectName("compare_window")
        self.setWindowTitle(f"Compare: {experiment.name}")
        self.resize(1280, 720)
        self.driver = CompareDriver(experiment, self, comparison=comparison)
        self._build()
        self.driver.frame_changed.connect(self._on_frame_changed)
        self.driver.running_changed.connect(self._on_running_changed)
        self.driver.error.connect(self._on_error)
        for key in ("a", "b"):
            self.driver.sides[key].undo_stack.indexChanged.connect(self._on_undo_changed)
        self._on_undo_changed()
        self._on_frame_changed(self.driver.frame)

    # -- construction ------------------------------------------------------------------
    def _button(self, text: str, slot, tip: str = "", shortcut: str | None = None):
        b = QPushButton(text)
        b.clicked.connect(slot)
        if tip:
            b.setToolTip(tip)
        if shortcut:
            action = QAction(self)
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(slot)
            self.addAction(action)
        return b

    def _build(self) -> None:
        d = self.driver
        central = QWidget()
        outer = QVBoxLayout(central)
        self.label = QLabel()
        self.label.setObjectName("difference_label")
        self.label.setStyleSheet("font-weight: bold; font-size: 14px;")
        self.status = QLabel()
        self.status.setObjectName("compare_status")
        outer.addWidget(self.label)
        outer.addWidget(self.status)

        bar = QHBoxLayout()
        self.button_reset = self._button("Reset", d.reset, "Both sides: fresh weights, step 0",
                                         "R")
        self.button_micro = self._button("Micro-step", d.micro_step,
                                         "One micro-step on each side (Shift+Right)",
                                         "Shift+Right")
        self.button_step = self._button("Step", d.step, "One iteration on each side (Right)",
                                        "Right")
        self.button_play = self._button("Play", lambda: d.toggle_play("play"),
                                        "Train both in lockstep (Space)", "Space")
        self.button_fast = self._button("Fast", lambda: d.toggle_play("fast"),
                                        "Train both as fast as possible (F)", "F")
        self.button_undo_a = self._button("Undo A", d.sides["a"].undo_stack.undo)
        self.button_undo_b = self._button("Undo B", d.sides["b"].undo_stack.undo,
                                          "Undo B's last edit (Ctrl+Z)", "Ctrl+Z")
        for b in (self.button_reset, self.button_micro, self.button_step, self.button_play,
                  self.button_fast, self.button_undo_a, self.button_undo_b):
            bar.addWidget(b)
        bar.addSpacing(16)
        bar.addWidget(QLabel("Edit B:"))
        self.remedy_box = QComboBox()
        self.remedy_box.setObjectName("remedy_box")
        for key, r in REMEDIES.items():
            self.remedy_box.addItem(r.label, key)
        # long remedy names would make the window wider than a 1280 px screen: the box
        # shows the start of the name and the whole of it as a tooltip
        self.remedy_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.remedy_box.setMinimumContentsLength(16)
        self.remedy_box.currentIndexChanged.connect(
            lambda _i: self.remedy_box.setToolTip(self.remedy_box.currentText()))
        self.remedy_box.setToolTip(self.remedy_box.currentText())
        bar.addWidget(self.remedy_box, 1)
        self.button_apply = self._button("Apply to B", self._apply_remedy,
                                         "Apply the chosen edit to side B only")
        bar.addWidget(self.button_apply)
        self.button_pretrain = self._button(
            "Pretrain B layer by layer…", self.ask_pretrain_b,
            "B's hidden layers are pretrained one at a time as autoencoders, then both "
            "train from their own starting weights (A: random)")
        bar.addWidget(self.button_pretrain)
        bar.addStretch(1)
        self.button_save = self._button("Save…", self.save_dialog,
                                        "Save A and B as one comparison file (Ctrl+S)",
                                        "Ctrl+S")
        bar.addWidget(self.button_save)
        outer.addLayout(bar)

        plots = QGridLayout()
        self.flow_plot = pg.PlotWidget(
            title=f"Gradient reaching each layer: <span style='color:{COLOR_A}'>A</span> and "
                  f"<span style='color:{COLOR_B}'>B</span>, log10 ||dL/dW||")
        self.flow_plot.setObjectName("compare_flow")
        self.flow_plot.setLabel("bottom", "layer")
        self.flow_plot.setLabel("left", "log10 ||dL/dW||")
        self.bars_a = pg.BarGraphItem(x=[], height=[], width=0.4, brush=COLOR_A)
        self.bars_b = pg.BarGraphItem(x=[], height=[], width=0.4, brush=COLOR_B)
        self.pretrain_mark = pg.BarGraphItem(x=[], height=[], width=0.9, y0=0,
                                             brush=(255, 255, 255, 40),
                                             pen=pg.mkPen("#ffffff", width=2))
        for item in (self.pretrain_mark, self.bars_a, self.bars_b):
            self.flow_plot.addItem(item)
        # the key to the curves is in the title: a legend inside the plot covered them
        self.loss_plot = pg.PlotWidget(title=LOSS_TITLE)
        self.loss_plot.setObjectName("compare_loss")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_a = self.loss_plot.plot(pen=pg.mkPen(COLOR_A, width=2), name="A loss")
        self.loss_b = self.loss_plot.plot(pen=pg.mkPen(COLOR_B, width=2), name="B loss")
        self.acc_plot = pg.PlotWidget(title="Training accuracy")
        self.acc_plot.setObjectName("compare_accuracy")
        self.acc_plot.setLabel("bottom", "step")
        self.acc_plot.setYRange(0, 1)
        self.acc_a = self.acc_plot.plot(pen=pg.mkPen(COLOR_A, width=2), name="A")
        self.acc_b = self.acc_plot.plot(pen=pg.mkPen(COLOR_B, width=2), name="B")
        self.recon_plot = pg.PlotWidget(title="B pretraining: reconstruction loss per layer")
        self.recon_plot.setObjectName("compare_recon")
        self.recon_plot.setLabel("bottom", "pretraining step of the layer")
        self.recon_plot.setLogMode(y=True)
        self.recon_plot.addLegend(offset=(-10, 10))
        self.recon_curves: list = []
        for p in (self.loss_plot, self.acc_plot):
            p.setDownsampling(mode="peak")
            p.setClipToView(True)
        plots.addWidget(self.flow_plot, 0, 0)
        plots.addWidget(self.loss_plot, 0, 1)
        # until B has a reconstruction loss to draw, a line saying why there is none
        self.recon_hint = QLabel()
        self.recon_hint.setObjectName("compare_recon_hint")
        self.recon_hint.setWordWrap(True)
        self.recon_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.recon_hint.setStyleSheet("color: #9aa3b5; padding: 12px;")
        self.recon_stack = QStackedWidget()
        self.recon_stack.addWidget(self.recon_plot)
        self.recon_stack.addWidget(self.recon_hint)
        plots.addWidget(self.recon_stack, 1, 0)
        plots.addWidget(self.acc_plot, 1, 1)
        first = QWidget()
        first.setLayout(plots)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("compare_tabs")
        self.tabs.addTab(first, "Gradient flow and loss")
        self.tabs.addTab(self._build_pair("history"), "Gradient history")
        self.tabs.addTab(self._build_pair("boundary"), "Decision boundary")
        self.tabs.addTab(self._build_canvases(), "Network")
        self.tabs.currentChanged.connect(self._on_tab_changed)
        top = self.tabs

        diag = QHBoxLayout()
        self.diag_a = QTextBrowser()
        self.diag_a.setObjectName("diagnosis_a")
        self.diag_b = QTextBrowser()
        self.diag_b.setObjectName("diagnosis_b")
        diag.addWidget(self.diag_a)
        diag.addWidget(self.diag_b)
        bottom = QWidget()
        bottom.setLayout(diag)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setSizes([520, 160])
        outer.addWidget(split, 1)
        self.setCentralWidget(central)

    def _build_pair(self, kind: str) -> QWidget:
        """Two plots side by side, A and B, each with one ImageItem (and, for the decision
        boundary, the training points)."""
        box = QWidget()
        row = QHBoxLayout(box)
        images, plots = [], []
        for side, color in (("A", COLOR_A), ("B", COLOR_B)):
            if kind == "history":
                title = f"<span style='color:{color}'>{side}</span>: log10 ||dL/dW|| per layer"
            else:
                title = f"<span style='color:{color}'>{side}</span>: decision boundary"
            plot = pg.PlotWidget(title=title)
            plot.setObjectName(f"compare_{kind}_{side.lower()}")
            image = pg.ImageItem(axisOrder="row-major")
            plot.addItem(image)
            if kind == "history":
                plot.setLabel("bottom", "step")
                plot.setLabel("left", "layer")
                image.setLookupTable(pg.colormap.get("viridis").getLookupTable(nPts=256))
            else:
                plot.setAspectLocked(True)
                scatter = pg.ScatterPlotItem(size=5, pen=pg.mkPen("#000000", width=0.5))
                plot.addItem(scatter)
                setattr(self, f"points_{side.lower()}", scatter)
            row.addWidget(plot)
            images.append(image)
            plots.append(plot)
        setattr(self, f"{kind}_images", images)
        setattr(self, f"{kind}_plots", plots)
        return box

    def _build_canvases(self) -> QWidget:
        """The network canvas of A or of B (a toggle); gestures on it edit that side."""
        from .views.canvas import NetworkCanvas

        box = QWidget()
        col = QVBoxLayout(box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show:"))
        self.canvas_buttons = {}
        group = QButtonGroup(box)
        for key in ("a", "b"):
            b = QPushButton(f"Network {key.upper()}")
            b.setObjectName(f"canvas_toggle_{key}")
            b.setCheckable(True)
            group.addButton(b)
            row.addWidget(b)
            self.canvas_buttons[key] = b
            b.clicked.connect(lambda _=False, k=key: self.show_canvas(k))
        row.addStretch(1)
        col.addLayout(row)
        self.canvas_stack = QStackedWidget()
        self.canvases = {}
        for key in ("a", "b"):
            side = self.driver.sides[key]
            side.snapshot = self.driver.frame.a if key == "a" else self.driver.frame.b
            canvas = NetworkCanvas(side)
            canvas.setObjectName(f"canvas_{key}")
            editor = self.driver.editors[key]
            for signal, slot in (("skip_requested", editor.add_skip),
                                 ("skip_remove_requested", editor.remove_skip),
                                 ("activation_requested", editor.set_activation),
                                 ("batchnorm_requested", editor.set_batchnorm),
                                 ("width_requested", editor.set_width),
                                 ("insert_layer_requested", editor.insert_layer),
                                 ("delete_layer_requested", editor.delete_layer)):
                if hasattr(canvas, signal):
                    getattr(canvas, signal).connect(slot)
            self.canvas_stack.addWidget(canvas)
            self.canvases[key] = canvas
        col.addWidget(self.canvas_stack, 1)
        self.canvas_side = "b"
        self.canvas_buttons["b"].setChecked(True)
        self.canvas_stack.setCurrentWidget(self.canvases["b"])
        return box

    def show_canvas(self, key: str) -> None:
        """Show side ``key``'s network on the canvas tab."""
        self.canvas_side = key
        self.canvas_buttons[key].setChecked(True)
        self.canvas_stack.setCurrentWidget(self.canvases[key])
        self._update_canvas_feed()

    def _update_canvas_feed(self) -> None:
        on_tab = self.tabs.currentWidget() is self.canvas_stack.parentWidget()
        for key, side in self.driver.sides.items():
            side.shown = on_tab and key == self.canvas_side
        side = self.driver.sides[self.canvas_side]
        if side.shown and side.snapshot is not None:
            side.snapshot_changed.emit(side.snapshot)

    def _on_tab_changed(self, _index: int) -> None:
        self._update_canvas_feed()
        self._on_frame_changed(self.driver.frame)

    def _draw_history(self) -> None:
        with self.driver.locked() as c:
            series = [(s.history.steps(), s.history.layer_series(HIST_GRAD_W)) for s in c.sides]
        logs = []
        for _steps, values in series:
            with np.errstate(divide="ignore", invalid="ignore"):
                logs.append(np.log10(np.abs(values)))
        finite = np.concatenate([v[np.isfinite(v)].ravel() for v in logs])
        if finite.size == 0:
            for image in self.history_images:
                image.clear()
            return
        lo, hi = float(np.floor(finite.min())), float(np.ceil(finite.max()))
        hi = max(hi, lo + 1)
        for plot, side, color in zip(self.history_plots, "AB", (COLOR_A, COLOR_B), strict=True):
            plot.setTitle(f"<span style='color:{color}'>{side}</span>: log10 ||dL/dW|| per "
                          f"layer (dark 10^{lo:g}, bright 10^{hi:g})")
        for (steps, _), v, image in zip(series, logs, self.history_images, strict=True):
            img = np.where(np.isfinite(v), v, lo).T.astype(np.float32)  # layers x steps
            image.setImage(img, levels=(lo, hi), autoLevels=False)
            first, last = float(steps[0]), float(steps[-1]) + 1
            image.setRect(first, 0.5, max(last - first, 1.0), img.shape[0])

    def _draw_boundaries(self) -> None:
        with self.driver.locked() as c:
            ds = c.a.dataset
            if ds.input_dim != 2 or ds.task != "classification":
                for image in self.boundary_images:
                    image.clear()
                return
            X = np.asarray(ds.X_train, np.float64)
            lo, hi = X.min(axis=0), X.max(axis=0)
            pad = 0.1 * (hi - lo)
            lo, hi = lo - pad, hi + pad
            n = 70
            gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
            grid = np.column_stack([gx.ravel(), gy.ravel()])
            probs = [s.predict(grid) for s in c.sides]
            y = np.asarray(ds.y_train)
        k = probs[0].shape[1]
        palette = np.array([pg.intColor(i, hues=max(k, 2)).getRgb()[:3] for i in range(k)],
                           np.float64)
        for p, image in zip(probs, self.boundary_images, strict=True):
            p = np.nan_to_num(p, nan=1.0 / k)
            rgb = (p @ palette * 0.55).reshape(n, n, 3).astype(np.uint8)
            image.setImage(rgb, levels=(0, 255), autoLevels=False)
            image.setRect(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]),
                          float(hi[1] - lo[1]))
        brushes = [pg.mkBrush(*palette[int(label)]) for label in y]
        for scatter in (self.points_a, self.points_b):
            scatter.setData(X[:, 0], X[:, 1], brush=brushes)

    # -- actions -------------------------------------------------------------------------
    def ask_pretrain_b(self) -> bool:
        """Pretraining settings, then B is pretrained layer by layer (A stays random)."""
        from . import pretrain_action

        current = self.driver.comparison.pretrainer
        spec = pretrain_action.ask_pretrain_spec(self, current.spec if current else None)
        return spec is not None and self.driver.pretrain_b(spec)

    def save_to(self, path) -> bool:
        """Write A and B (and B's pretraining) as one comparison file."""
        from simulator.compare_experiment import ComparisonSpec, save_comparison

        with self.driver.locked() as c:
            spec = ComparisonSpec.of(c, self.windowTitle().removeprefix("Compare: "),
                                     c.label)
        try:
            save_comparison(spec, path)
        except ValueError as e:
            self._on_error(str(e))
            return False
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save comparison", "comparison.json",
                                              "Comparison (*.json)")
        if path:
            self.save_to(path)

    def _apply_remedy(self) -> None:
        key = self.remedy_box.currentData()
        self.driver.editors["b"].apply_remedy(key)

    def _on_error(self, message: str) -> None:
        self.statusBar().showMessage(message, 8000)

    def _on_undo_changed(self, _=None) -> None:
        for key, button in (("a", self.button_undo_a), ("b", self.button_undo_b)):
            stack = self.driver.sides[key].undo_stack
            button.setEnabled(stack.canUndo())
            button.setToolTip(f"Undo on {key.upper()}: {stack.undoText()}"
                              if stack.canUndo() else f"Nothing to undo on {key.upper()}")

    def _on_running_changed(self, running: bool) -> None:
        mode = self.driver.mode
        self.button_play.setText("Pause" if running and mode != "fast" else "Play")
        self.button_fast.setText("Pause" if running and mode == "fast" else "Fast")

    # -- drawing -------------------------------------------------------------------------
    def _on_frame_changed(self, frame: CompareFrame | None) -> None:
        if frame is None:
            return
        self.label.setText(frame.label)
        a, b = frame.a, frame.b
        status = f"A: step {a.step}, loss {a.loss:.4g}    B: step {b.step}, loss {b.loss:.4g}"
        pre = frame.pretrain
        if pre is not None:
            if frame.waiting:
                status += (f"    B is {pre.label}: step {pre.step} of {pre.steps_per_layer}, "
                           f"reconstruction loss {pre.loss:.4g} (A waits)")
            elif pre.divergence is not None:
                status += "    " + pre.divergence.message
            else:
                status += "    B was pretrained; both now train from their own start"
        for name, snap in (("A", a), ("B", b)):
            if snap.divergence is not None:
                status += f"    {name}: {snap.divergence.message}"
        self.status.setText(status)
        tab = self.tabs.currentIndex()  # only the visible tab draws
        if tab == 0:
            self._draw_flow(frame)
            self._draw_curves(frame)
            self._draw_recon(frame)
        elif tab == 1:
            self._draw_history()
        elif tab == 2:
            self._draw_boundaries()
        self._draw_diagnosis(frame)

    def _draw_flow(self, frame: CompareFrame) -> None:
        la, fa = _log10_floor(frame.a.grad_norm)
        lb, fb = _log10_floor(frame.b.grad_norm)
        shown = np.concatenate([la[fa], lb[fb]])
        lo = float(np.floor(shown.min())) - 1 if shown.size else -8.0
        hi = float(np.ceil(shown.max())) + 0.5 if shown.size else 1.0
        xa = np.arange(1, len(la) + 1, dtype=float)
        xb = np.arange(1, len(lb) + 1, dtype=float)
        self.bars_a.setOpts(x=xa - 0.2, y0=lo, height=np.where(fa, la - lo, 0.0))
        self.bars_b.setOpts(x=xb + 0.2, y0=lo, height=np.where(fb, lb - lo, 0.0))
        pre = frame.pretrain
        if pre is not None and frame.waiting:
            self.pretrain_mark.setOpts(x=[pre.layer], y0=lo, height=[hi - lo])
        else:
            self.pretrain_mark.setOpts(x=[], height=[])
        n = max(len(la), len(lb))
        self.flow_plot.setXRange(0.4, n + 0.6, padding=0)
        self.flow_plot.setYRange(lo, hi, padding=0)

    def _draw_curves(self, frame: CompareFrame) -> None:
        for (steps, loss, acc), lc, ac in zip(frame.curves, (self.loss_a, self.loss_b),
                                              (self.acc_a, self.acc_b), strict=True):
            ok = np.isfinite(loss)
            lc.setData(steps[ok], loss[ok])
            ok = np.isfinite(acc)
            ac.setData(steps[ok], acc[ok])

    def _draw_recon(self, frame: CompareFrame) -> None:
        hist = frame.recon
        if len(self.recon_curves) != len(hist):
            self.recon_plot.clear()
            legend = self.recon_plot.plotItem.legend
            if legend is not None:
                legend.clear()
            self.recon_curves = [
                self.recon_plot.plot(pen=pg.mkPen(pg.intColor(k, hues=max(len(hist), 2)),
                                                  width=2), name=f"layer {k + 1}")
                for k in range(len(hist))]
        drawn = False
        for curve, h in zip(self.recon_curves, hist, strict=True):
            ok = np.isfinite(h) & (h > 0)
            curve.setData(np.arange(len(h))[ok], h[ok])
            drawn = drawn or bool(ok.any())
        if drawn:
            self.recon_stack.setCurrentWidget(self.recon_plot)
            return
        pre = frame.pretrain
        if pre is None:
            text = RECON_HINT_NONE
        elif pre.divergence is not None:
            text = ("B's pretraining stopped before any finite reconstruction loss was "
                    "recorded: " + pre.divergence.message)
        else:
            text = RECON_HINT_WAITING
        if self.recon_hint.text() != text:
            self.recon_hint.setText(text)
        self.recon_stack.setCurrentWidget(self.recon_hint)

    def _draw_diagnosis(self, frame: CompareFrame) -> None:
        if self.driver.is_playing and self.driver.mode == "fast":
            return  # the findings are drawn when fast mode pauses
        with self.driver.locked() as c:
            found = [diagnose(s.spec, snap, s.history, s.training)
                     for s, snap in zip(c.sides, (frame.a, frame.b), strict=True)]
        for box, name, findings in ((self.diag_a, "A", found[0]), (self.diag_b, "B", found[1])):
            html = [f"<b>Diagnosis of {name}</b>"]
            if not findings:
                html.append("<br>Nothing measured yet.")
            for f in findings:
                html.append(f"<br><b>[{f.severity}] {f.title}</b>: {f.detail}")
            box.setHtml("".join(html))

    def closeEvent(self, event) -> None:
        self.driver.close()
        for canvas in getattr(self, "canvases", {}).values():
            canvas.close()  # disconnects from its side
        super().closeEvent(event)


def open_compare_window(main_window, pretrain_b: bool = False) -> CompareWindow | None:
    """Fork the main window's current experiment into A and B in a new window."""
    controller = main_window.controller
    if not controller.is_ready:
        return None
    with controller.locked() as sim:
        experiment = sim.experiment
    window = CompareWindow(experiment, parent=main_window)
    if pretrain_b and not window.ask_pretrain_b():
        window.close()
        window.deleteLater()
        return None
    window.show()
    main_window.compare_windows = [w for w in getattr(main_window, "compare_windows", [])
                                   if w.isVisible()] + [window]
    return window


def open_comparison_preset(main_window, key: str) -> CompareWindow | None:
    from simulator.compare_experiment import load_comparison

    try:
        spec = load_comparison(key)
    except ValueError as e:
        main_window.show_message(str(e))
        return None
    return open_comparison(main_window, spec)


def open_comparison_file(main_window, path) -> CompareWindow | None:
    from simulator.compare_experiment import ComparisonSpec, load_study

    try:
        spec = load_study(path)
    except ValueError as e:
        main_window.show_message(str(e))
        return None
    if not isinstance(spec, ComparisonSpec):
        if spec.pretraining is None:
            main_window.show_message(f"{path}: is an experiment, not a comparison file "
                                     "(open it with File > Open)")
            return None
        # an experiment that pretrains: pretrained (B) against random (A)
        exp = spec.experiment
        spec = ComparisonSpec(exp.name, exp.description, exp,
                              ({"edit": "pretrain", **spec.pretraining.to_dict()},))
    return open_comparison(main_window, spec, source=str(path))


def open_comparison(main_window, spec, source: str | None = None) -> CompareWindow | None:
    from simulator.compare_experiment import check_comparison

    try:
        comparison = check_comparison(spec, source=source)
    except ValueError as e:
        main_window.show_message(str(e))
        return None
    window = CompareWindow(spec.a, parent=main_window, comparison=comparison)
    window.setWindowTitle(f"Compare: {spec.name}")
    window.show()
    main_window.compare_windows = [w for w in getattr(main_window, "compare_windows", [])
                                   if w.isVisible()] + [window]
    return window


def install_compare_actions(main_window) -> dict:
    """The "Compare" menu of the main window: fork into A and B (Ctrl+K), the same with
    B pretrained layer by layer, and the comparison presets."""
    from simulator.compare_experiment import list_comparisons

    menu = main_window.menuBar().addMenu("&Compare")
    menu.setObjectName("menu_compare")
    fork = QAction("&Compare: fork into A and B", main_window)
    fork.setObjectName("action_compare")
    fork.setShortcut(QKeySequence("Ctrl+K"))
    fork.setToolTip("Open the current experiment twice, A and B, trained in lockstep (Ctrl+K)")
    fork.triggered.connect(lambda: open_compare_window(main_window))
    pre = QAction("&Pretrain layer by layer (B) against random (A)…", main_window)
    pre.setObjectName("action_pretrain")
    pre.setShortcut(QKeySequence("Ctrl+Shift+K"))
    pre.triggered.connect(lambda: open_compare_window(main_window, pretrain_b=True))
    for action in (fork, pre):
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        main_window.addAction(action)
        menu.addAction(action)
    bar = getattr(main_window, "top_bar", None)
    if bar is not None:  # one click from the top bar, beside the quick settings
        fork.setIconText("Compare A | B")
        bar.addSeparator()
        bar.addAction(fork)
    open_action = QAction("&Open comparison file…", main_window)
    open_action.setToolTip("A comparison file, or an experiment file with a pretraining "
                           "section (opened as pretrained B against random A)")
    open_action.setObjectName("action_open_comparison")

    def choose() -> None:
        path, _ = QFileDialog.getOpenFileName(main_window, "Open comparison", "",
                                              "Comparison (*.json)")
        if path:
            open_comparison_file(main_window, path)

    open_action.triggered.connect(choose)
    menu.addAction(open_action)
    presets = menu.addMenu("Comparison &presets")
    for key, name, description in list_comparisons():
        action = presets.addAction(name)
        action.setToolTip(description)
        action.triggered.connect(lambda _=False, k=key: open_comparison_preset(main_window, k))
    presets.setToolTipsVisible(True)
    from .pretrain_action import install_pretrain_action

    layers = install_pretrain_action(main_window)
    return {"fork": fork, "pretrain": pre, "open": open_action, "menu": menu,
            "pretrain_layers": layers}

