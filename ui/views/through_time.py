"""The through-time window: a plain RNN, an LSTM and a GRU side by side on one task.

Each column shows one cell: the unrolled sequence (inputs below, hidden states
in a row, the readout at the last step), coloured by ||dL/dh_t||; a backward
pulse that travels from the last time step to the first; and bars of
log10 ||dL/dh_t|| against t, with the LSTM's cell path ||dL/dc_t|| beside
them. Below, the held-out loss (or accuracy) of every cell over training with
the task's baseline, so one sees which cell bridges the lag.

``ThroughTimeController`` owns the simulations (same task and seed for every
cell) and trains them in a worker thread (the kernels release the GIL);
the window only draws the newest snapshots. The recurrent kernels compile the
first time this window opens, never at program start.
"""

from __future__ import annotations

import html
import math
import threading
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from simulator.recurrent.diagnosis import REMEDIES, diagnose, remedy_for_cell
from simulator.recurrent.experiment import list_recurrent_presets, load_recurrent_preset
from simulator.recurrent.simulation import RecurrentSimulation
from simulator.recurrent.tasks import MAX_LAG

from . import colors as C

CELL_COLORS = {"rnn": "#ff6b6b", "lstm": "#4fb3ff", "lstm_no_forget": "#b284ff",
               "gru": "#5dd382"}
CELL_TITLES = {"rnn": "tanh RNN", "lstm": "LSTM", "lstm_no_forget": "LSTM, no forget gate",
               "gru": "GRU"}
PLAY_TIME_STEPS = 250  # per cell and turn while playing: 5 iterations at lag 50
PULSE_SECONDS = 1.2  # the backward pulse crosses the whole sequence in this time
FRAME_MS = 40
MAX_PLAY_LAG = 500
# the held-out curves' share of the view's height, and its bounds in pixels
CURVES_SHARE, CURVES_MIN_HEIGHT, CURVES_MAX_HEIGHT = 0.27, 130, 320
# what a remedy button says; the whole sentence (diagnosis.REMEDIES) is its tooltip
REMEDY_BUTTON_TEXT = {"switch_lstm": "Switch to LSTM", "switch_gru": "Switch to GRU",
                      "orthogonal_init": "Orthogonal init", "forget_bias": "Forget bias 1",
                      "add_forget_gate": "Add a forget gate", "clip_norm": "Clip at 1"}


class SetExperimentCommand(QUndoCommand):
    """One undoable change of the through-time experiment (a remedy, a lag): each way
    rebuilds every cell from step 0, as the experiment asks."""

    def __init__(self, controller, before, after, text: str):
        super().__init__(text)
        self.controller, self.before, self.after = controller, before, after

    def redo(self) -> None:
        self.controller.set_experiment(self.after)

    def undo(self) -> None:
        self.controller.set_experiment(self.before)


class ThroughTimeController(QObject):
    """Simulations of every compared cell, a worker thread that trains them, signals."""

    compiling_changed = Signal(bool)
    ready = Signal()
    snapshots_changed = Signal(dict)  # cell -> RecurrentSnapshot
    running_changed = Signal(bool)
    experiment_changed = Signal(object)
    error = Signal(str)

    def __init__(self, experiment=None, parent=None):
        super().__init__(parent)
        self.experiment = experiment or load_recurrent_preset("rnn_vs_lstm_lag50")
        self.sims: dict[str, RecurrentSimulation] = {}
        self.snapshots: dict = {}
        self.curves: dict = {}  # cell -> (steps, held-out loss or accuracy)
        self._lock = threading.Lock()
        self._playing = False
        self._thread: threading.Thread | None = None
        self.is_ready = False
        # edits of the experiment (remedies, the lag): Ctrl+Z in the main window's time mode
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(100)

    # -- building ------------------------------------------------------------------------
    def start(self) -> None:
        """Compile (or load) the kernels and build the simulations off the GUI thread."""
        self.compiling_changed.emit(True)

        def work():
            try:
                from simulator.recurrent import warmup
                warmup(("float32",))
                with self._lock:  # the experiment may have been replaced meanwhile
                    self.sims = {c: RecurrentSimulation(self.experiment.with_cell(c),
                                                        eval_every=20)
                                 for c in self.experiment.cells}
                    self.is_ready = True
            except Exception as e:  # reported in the window, never a traceback
                self.compiling_changed.emit(False)
                self.error.emit(f"could not build the through-time simulations: {e}")
                return
            self.compiling_changed.emit(False)
            self.ready.emit()
            self._publish()

        self._thread = threading.Thread(target=work, name="through-time-build", daemon=True)
        self._thread.start()

    def set_experiment(self, experiment) -> None:
        """Every cell rebuilt from step 0 for ``experiment`` (before the build has run:
        the build takes this one)."""
        self.pause()
        with self._lock:
            self.experiment = experiment
            if self.is_ready:
                self.sims = {c: RecurrentSimulation(experiment.with_cell(c), eval_every=20)
                             for c in experiment.cells}
        self.experiment_changed.emit(experiment)
        if self.is_ready:
            self._publish()

    def open_experiment(self, experiment) -> None:
        """A new experiment (a preset, a file): its run starts afresh and the edits made
        to the previous one can no longer be undone."""
        self.set_experiment(experiment)
        self.undo_stack.clear()

    def edit(self, experiment, text: str) -> bool:
        """Replace the experiment as one undoable step (the run restarts from step 0)."""
        if not self.is_ready or experiment == self.experiment:
            return False
        self.undo_stack.push(SetExperimentCommand(self, self.experiment, experiment, text))
        return True

    def apply_remedy(self, cell: str, key: str) -> bool:
        """Remedy ``key`` for the column of ``cell`` (see ``remedy_for_cell``), undoable."""
        return self.edit(remedy_for_cell(self.experiment, cell, key),
                         f"{REMEDY_BUTTON_TEXT.get(key, key)} ({CELL_TITLES.get(cell, cell)})")

    def _publish(self) -> None:
        """Snapshots and training curves (copies) for the window, which never takes the
        lock, so drawing never waits for training."""
        with self._lock:
            reg = self.experiment.task.task == "regression"
            snaps = {c: s.snapshot() for c, s in self.sims.items()}
            curves = {}
            for c, sim in self.sims.items():
                y = sim.history.column("val_loss" if reg else "val_accuracy")
                ok = np.isfinite(y)
                curves[c] = (sim.history.column("step")[ok], y[ok])
        self.snapshots = snaps
        self.curves = curves
        self.snapshots_changed.emit(snaps)

    # -- stepping (GUI thread; the kernels of one time step are short) -----------------------
    def _each(self, fn) -> None:
        if not self.is_ready or self._playing:
            return
        with self._lock:
            for sim in self.sims.values():
                fn(sim)
        self._publish()

    def reset(self) -> None:
        self.pause()
        self._each(lambda s: s.reset())

    def micro_step(self) -> None:
        self._each(lambda s: s.micro_step())

    def step(self) -> None:
        self._each(lambda s: s.step())

    # -- playing (worker thread) -----------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._playing

    def toggle_play(self) -> None:
        self.pause() if self._playing else self.play()

    def play(self) -> None:
        if self._playing or not self.is_ready:
            return
        self._playing = True
        self.running_changed.emit(True)

        def work():
            last = 0.0
            while self._playing:
                alive = [s for s in list(self.sims.values()) if s.divergence is None]
                chunk = max(1, PLAY_TIME_STEPS // max(1, self.experiment.task.lag))
                for sim in alive:
                    with self._lock:  # one cell at a time: micro-steps never wait long
                        sim.run(chunk, snapshot=False)
                if not alive:
                    break
                now = time.monotonic()
                if now - last > 0.05:  # at most 20 redraws a second
                    self._publish()
                    last = now
                time.sleep(0.002)  # let the GUI thread take the lock for drawing
            self._playing = False
            self._publish()
            self.running_changed.emit(False)

        self._thread = threading.Thread(target=work, name="through-time-play", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        if not self._playing:
            return
        self._playing = False
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self.pause()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()


_brush_table: list = []


def _BRUSHES() -> np.ndarray:
    """256 brushes of the colour map, then neutral, marked input, plain input (made once)."""
    if not _brush_table:
        lut = C.lut256()
        table = [pg.mkBrush(*lut[k]) for k in range(256)]
        table += [pg.mkBrush(C.NEUTRAL), pg.mkBrush(C.PREDICTION), pg.mkBrush(C.MUTED)]
        _brush_table.append(np.array(table, dtype=object))
    return _brush_table[0]


def _log10(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.asarray(values, np.float64))


class CellColumn(QWidget):
    """One cell: title and numbers, the diagnosis with a button per remedy, the unrolled
    sequence, the per-time-step bars."""

    remedy_requested = Signal(str, str)  # cell, remedy key

    def __init__(self, cell: str, parent=None):
        super().__init__(parent)
        self.cell = cell
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.title = QLabel()
        self.title.setStyleSheet(f"color: {CELL_COLORS.get(cell, C.FOREGROUND)}; "
                                 "font-weight: bold;")
        self.numbers = QLabel()
        self.numbers.setStyleSheet(f"color: {C.MUTED};")
        self.numbers.setWordWrap(True)
        self.diagnosis = QLabel()
        self.diagnosis.setWordWrap(True)
        self.diagnosis.setStyleSheet(f"color: {C.SEVERITY['warning']};")
        self.diagnosis.setAlignment(Qt.AlignmentFlag.AlignTop)
        # the same height in every column, so the canvases and bars line up side by side:
        # the view sets it to what the longest text needs (ThroughTimeView._fit_diagnoses)
        self.diagnosis.setTextFormat(Qt.TextFormat.RichText)
        self._min_diagnosis_height = self.diagnosis.fontMetrics().lineSpacing() + 4
        self.diagnosis.setFixedHeight(self._min_diagnosis_height)
        # the remedies of the findings, one button each; the row keeps its height when
        # empty, so the columns stay aligned whichever of them has remedies
        self.remedy_row = QWidget()
        self.remedy_row.setObjectName(f"remedies_{cell}")
        row = QHBoxLayout(self.remedy_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addStretch(1)
        self.remedy_row.setFixedHeight(QPushButton("X").sizeHint().height())
        self.remedy_buttons: dict[str, QPushButton] = {}
        lay.addWidget(self.title)
        lay.addWidget(self.numbers)
        lay.addWidget(self.diagnosis)
        lay.addWidget(self.remedy_row)

        self.canvas = pg.PlotWidget()
        self.canvas.setBackground(C.PANEL)
        self.canvas.hideAxis("left")
        self.canvas.getAxis("bottom").setLabel("time step t")
        self.canvas.setMouseEnabled(False, False)
        self.canvas.setMenuEnabled(False)
        self.canvas.setFixedHeight(115)
        self.links = pg.PlotCurveItem(connect="pairs", pen=C.cosmetic_pen(C.GRID, 1.2))
        self.inputs = pg.ScatterPlotItem(size=6, pen=None)
        self.states = pg.ScatterPlotItem(size=10, pen=None)
        self.readout = pg.ScatterPlotItem(size=12, pen=None, brush=pg.mkBrush(C.PREDICTION))
        self.pulse = pg.ScatterPlotItem(size=20, brush=None)
        for item in (self.links, self.inputs, self.states, self.readout, self.pulse):
            self.canvas.addItem(item)
        lay.addWidget(self.canvas)

        self.bars_plot = pg.PlotWidget()
        self.bars_plot.setBackground(C.PANEL)
        self.bars_plot.setMouseEnabled(False, False)
        self.bars_plot.setMenuEnabled(False)
        self.bars_plot.hideButtons()
        # the legend lives in the axis label: inside the plot it would cover the bars,
        # which at 720 pixels of screen height are only a few lines tall
        self.bars_plot.getAxis("left").setLabel("log10")
        swatch = "<span style='color:{}'>\u25a0</span> {}"
        keys = [swatch.format(CELL_COLORS.get(cell, C.MEASURED), "||dL/dh_t||")]
        if cell.startswith("lstm"):
            keys.append(swatch.format("#ffd166", "cell path ||dL/dc_t||"))
        self.bars_plot.getAxis("bottom").setLabel("time step t &nbsp; " + " &nbsp; ".join(keys))
        self.bars_h = pg.BarGraphItem(x=[0], height=[0], width=0.8,
                                      brush=CELL_COLORS.get(cell, C.MEASURED), pen=None)
        self.bars_c = pg.BarGraphItem(x=[0], height=[0], width=0.4, brush="#ffd166", pen=None)
        self.bars_plot.addItem(self.bars_h)
        self.bars_plot.addItem(self.bars_c)
        self.bars_c.setVisible(False)
        self.bars_plot.setMinimumHeight(90)
        lay.addWidget(self.bars_plot, 1)
        self._T = -1
        self.snapshot = None
        self.diagnosed = None  # the snapshot the findings belong to
        self.shown_heights = np.zeros(0)  # log10 ||dL/dh_t|| drawn, NaN where hidden

    def _layout(self, T: int) -> None:
        t = np.arange(1, T + 1, dtype=float)
        x = np.empty(4 * T)
        y = np.empty(4 * T)
        x[0::4], y[0::4] = t, -1.0  # x_t -> h_t
        x[1::4], y[1::4] = t, 0.0
        x[2::4], y[2::4] = t - 1, 0.0  # h_{t-1} -> h_t
        x[3::4], y[3::4] = t, 0.0
        self.links.setData(x, y)
        self.readout.setData([T + 1], [0.0])
        self.canvas.setXRange(0, T + 1.5, padding=0.02)
        self.canvas.setYRange(-1.6, 0.6, padding=0)
        self.bars_plot.setXRange(0.3, T + 0.7, padding=0)
        self._T = T

    def show_findings(self, findings) -> None:
        """The most severe finding in words, and a button for every remedy of every
        finding (the most severe finding's first)."""
        order = {"critical": 0, "warning": 1, "info": 2}
        findings = sorted(findings, key=lambda f: order.get(f.severity, 3))
        keys = list(dict.fromkeys(r.key for f in findings for r in f.remedies))
        if list(self.remedy_buttons) != keys:
            for b in self.remedy_buttons.values():
                self.remedy_row.layout().removeWidget(b)
                b.hide()
                b.deleteLater()
            self.remedy_buttons = {}
            row = self.remedy_row.layout()
            for key in keys:
                b = QPushButton(REMEDY_BUTTON_TEXT.get(key, key))
                b.setObjectName(f"remedy_{self.cell}_{key}")
                b.setToolTip(REMEDIES.get(key, key) + ". The run restarts from step 0 "
                             "(Ctrl+Z undoes it).")
                b.clicked.connect(lambda _c=False, k=key: self.remedy_requested.emit(
                    self.cell, k))
                row.insertWidget(row.count() - 1, b)
                self.remedy_buttons[key] = b
        if not findings:
            self.diagnosis.setText("")
            self.diagnosis.setToolTip("")
            return
        f = findings[0]
        self.diagnosis.setStyleSheet(f"color: {C.SEVERITY.get(f.severity, C.MUTED)};")
        self.diagnosis.setText(f"<b>{html.escape(f.title)}.</b> {html.escape(f.detail)}")
        self.diagnosis.setToolTip(f.detail)

    def diagnosis_height(self) -> int:
        """The height the diagnosis text needs at the column's current width."""
        label = self.diagnosis
        width = max(label.width(), 100)
        return max(label.heightForWidth(width), self._min_diagnosis_height)

    def render(self, snap, pulse: float | None, yrange: tuple[float, float]) -> None:
        """Draw ``snap``; bars from the pulse's position to T; ``yrange`` (log10) is shared
        by every column so their bars compare directly."""
        self.snapshot = snap
        T = snap.lag
        if T != self._T:
            self._layout(T)
        self.title.setText(f"{CELL_TITLES.get(snap.cell, snap.cell)}  ·  step {snap.step}")
        ratio = snap.gradient_ratio
        parts = [f"loss {_num(snap.loss)}", f"held-out {_num(snap.val_loss)}"]
        if math.isfinite(snap.val_accuracy):
            parts.append(f"acc {100 * snap.val_accuracy:.0f} %")
        # 0 here means the ratio underflowed (the first steps' error is below the
        # smallest number the dtype holds), not that nothing at all comes back
        parts.append(f"||dL/dh_1|| / ||dL/dh_T|| = "
                     f"{'0 (underflow)' if ratio == 0.0 else _num(ratio)}")
        text = "   ".join(parts)
        if snap.divergence is not None:  # the diagnosis below says what happened
            text = f"diverged at step {snap.divergence.step}"
        self.numbers.setText(text)

        t = np.arange(1, T + 1, dtype=float)
        lg = _log10(snap.hidden_grad_norms)
        # the pulse reveals the bars from the last time step down to where it has got
        visible = np.isfinite(lg) & (t >= (pulse if pulse is not None else 0.0))
        floor, top = yrange
        lc = _log10(snap.cell_grad_norms) if snap.cell_grad_norms is not None else None
        heights = np.where(visible, lg - floor, 0.0)
        self.shown_heights = np.where(visible, lg, np.nan)
        if lc is not None:
            self.bars_h.setOpts(x=t - 0.2, height=heights, y0=floor, width=0.4)
            cv = np.isfinite(lc) & (t >= (pulse if pulse is not None else 0.0))
            self.bars_c.setOpts(x=t + 0.2, height=np.where(cv, lc - floor, 0.0), y0=floor,
                                width=0.4)
            self.bars_c.setVisible(True)
        else:
            self.bars_h.setOpts(x=t, height=heights, y0=floor, width=0.8)
        self.bars_plot.setYRange(floor, top, padding=0)
        heights = np.maximum(heights, 0.0)

        # the unrolled sequence: states coloured by the error that reached them
        span = max(top - 0.5 - floor, 1.0)
        level = np.clip(((np.where(np.isfinite(lg), lg, floor) - floor) / span) * 255, 0,
                        255).astype(int)
        level[~visible] = 256  # the neutral brush
        self.states.setData(t, np.zeros(T), brush=_BRUSHES()[level])
        x_in = snap.first_input
        marked = np.zeros(T, bool)
        if x_in.shape[1] == 2:  # adding problem: the marker channel
            marked = x_in[:, 1] > 0.5
        elif x_in.shape[1] > 2 and snap.cell:  # marked recall: the last channel
            marked = x_in[:, -1] > 0.5
        self.inputs.setData(t, np.full(T, -1.0), brush=_BRUSHES()[np.where(marked, 257, 258)])
        if snap.phase in ("forward", "backward") and snap.time_step > 0:
            color = C.FORWARD if snap.phase == "forward" else C.BACKWARD
            self.pulse.setData([snap.time_step], [0.0], pen=C.cosmetic_pen(color, 2.5))
        elif pulse is not None and pulse <= T:
            self.pulse.setData([max(pulse, 1.0)], [0.0], pen=C.cosmetic_pen(C.BACKWARD, 2.5))
        else:
            self.pulse.setData([], [])


def _num(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.1e}"


class ThroughTimeView(QWidget):
    """The through-time mode: every compared cell side by side, the held-out curves.

    The main window shows it as its "Through time" page (``embedded``: the window's top
    bar plays and steps it, so its own Step/Micro-step/Play/Export buttons hide);
    ``ThroughTimeWindow`` shows it alone (the export draws that one)."""

    def __init__(self, controller: ThroughTimeController | None = None, parent=None,
                 flags=Qt.WindowType.Widget, embedded: bool = False):
        super().__init__(parent, flags)
        self.setObjectName("through_time_view")
        self.embedded = embedded
        # set by the main window: a preset chosen in the box goes through it (it asks
        # about unsaved edits first); None loads it directly
        self.preset_handler = None
        self.controller = controller or ThroughTimeController(parent=self)
        c = self.controller

        root = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.preset_box = QComboBox()
        self.preset_box.setObjectName("preset_box")
        self._preset_keys = []
        for key, name, desc in list_recurrent_presets():
            self.preset_box.addItem(name)
            self.preset_box.setItemData(self.preset_box.count() - 1, desc,
                                        Qt.ItemDataRole.ToolTipRole)
            self._preset_keys.append(key)
        self.lag_box = QSpinBox()
        self.lag_box.setObjectName("lag_box")
        self.lag_box.setRange(2, min(MAX_LAG, MAX_PLAY_LAG))
        self.lag_box.setPrefix("lag T = ")
        self.lag_box.setToolTip("How many time steps separate the first marked input from the "
                                "answer (2 to 500)")
        self.buttons = {}
        for key, text, tip, slot in (
                ("reset", "Reset", "Fresh weights for every cell, step 0", c.reset),
                ("micro", "Micro-step", "One forward or backward time step in every cell",
                 c.micro_step),
                ("step", "Step", "One whole training iteration in every cell", self._step),
                ("play", "Play", "Train every cell continuously; press again to pause",
                 c.toggle_play),
                ("export", "Export\u2026", "Save one iteration from the start, one frame "
                 "per micro-step, as a GIF or MP4 (main.py export does more)", self._export)):
            b = QPushButton(text)
            b.setObjectName(f"button_{key}")
            b.setToolTip(tip)
            b.clicked.connect(slot)
            b.setEnabled(False)
            self.buttons[key] = b
        if embedded:  # the main window's top bar and File > Export do these
            for key in ("micro", "step", "play", "export"):
                self.buttons[key].hide()
        self.status = QLabel("Compiling the through-time kernels\u2026")
        self.status.setObjectName("status")
        self.status.setStyleSheet(f"color: {C.MUTED};")
        bar.addWidget(QLabel("Preset"))
        bar.addWidget(self.preset_box)
        bar.addWidget(self.lag_box)
        for b in self.buttons.values():
            bar.addWidget(b)
        bar.addWidget(self.status, 1)
        root.addLayout(bar)

        self.columns_box = QGridLayout()
        root.addLayout(self.columns_box, 2)
        self.columns: dict[str, CellColumn] = {}

        self.curves_plot = pg.PlotWidget()
        self.curves_plot.setBackground(C.PANEL)
        self.curves_plot.hideButtons()  # the auto-range "A" would sit on the data
        # a share of the height (resizeEvent): gives way to the per-time-step bars on a
        # small screen, grows on a large one
        self.curves_plot.setFixedHeight(CURVES_MIN_HEIGHT)
        self.curves_plot.getAxis("left").enableAutoSIPrefix(False)
        self.baseline = pg.InfiniteLine(angle=0, pen=C.cosmetic_pen(
            C.MUTED, 1.0, Qt.PenStyle.DashLine), label="baseline", labelOpts={
                "color": C.MUTED, "position": 0.35})
        self.curves_plot.addItem(self.baseline)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._curves_waiting = True  # no held-out score drawn yet (see _on_experiment...)
        root.addWidget(self.curves_plot, 1)

        self._pulse: float | None = None
        self._pulse_start = 0.0
        self._dirty = False
        # the one clock of the window: it re-arms itself after each frame, so frames never
        # pile up however long a draw takes
        self._pulse_timer = QTimer(self)
        self._pulse_timer.setSingleShot(True)
        self._pulse_timer.setInterval(FRAME_MS)
        self._pulse_timer.timeout.connect(self._on_pulse_tick)

        c.compiling_changed.connect(self._on_compiling_changed)
        c.ready.connect(self._on_ready)
        c.snapshots_changed.connect(self._on_snapshots_changed)
        c.running_changed.connect(self._on_running_changed)
        c.experiment_changed.connect(self._on_experiment_changed)
        c.error.connect(self._on_error)
        self.preset_box.activated.connect(self._on_preset_chosen)
        self.lag_box.editingFinished.connect(self._on_lag_chosen)
        self._on_experiment_changed(c.experiment)
        if not c.is_ready:
            c.start()
        else:
            self._on_ready()
            c._publish()

    # -- user actions ----------------------------------------------------------------------
    def _step(self) -> None:
        self.controller.step()
        self._start_pulse()

    step = _step  # the main window's Step (Right) in time mode

    def micro_step(self) -> None:
        self.controller.micro_step()

    def toggle_play(self) -> None:
        self.controller.toggle_play()

    def reset(self) -> None:
        self.controller.reset()

    def _on_remedy_requested(self, cell: str, key: str) -> None:
        self.controller.apply_remedy(cell, key)

    def _export(self) -> None:
        from ui.export.time_job import export_from_window
        export_from_window(self)

    def _on_preset_chosen(self, index: int) -> None:
        if not 0 <= index < len(self._preset_keys):
            return
        key = self._preset_keys[index]
        if self.preset_handler is not None:
            if not self.preset_handler(key):  # cancelled: the box shows the experiment again
                self._on_experiment_changed(self.controller.experiment)
            return
        self.controller.open_experiment(load_recurrent_preset(key))

    def _on_lag_chosen(self) -> None:
        exp = self.controller.experiment
        lag = self.lag_box.value()
        if lag == exp.task.lag:
            return
        from dataclasses import replace
        if not self.controller.edit(replace(exp, task=replace(exp.task, lag=lag)),
                                    f"Lag T = {lag}"):
            self.lag_box.setValue(exp.task.lag)  # not ready yet: nothing changed

    # -- controller signals ----------------------------------------------------------------
    def _on_compiling_changed(self, compiling: bool) -> None:
        if compiling:
            self.status.setText("Compiling the through-time kernels (first use only)\u2026")

    def _on_ready(self) -> None:
        for b in self.buttons.values():
            b.setEnabled(True)
        self.status.setText("Ready: Step, Micro-step or Play")

    def _on_error(self, message: str) -> None:
        self.status.setText(message)

    def _on_running_changed(self, running: bool) -> None:
        self.buttons["play"].setText("Pause" if running else "Play")
        for key in ("micro", "step", "reset"):
            self.buttons[key].setEnabled(not running)
        if running:
            self._start_pulse()
        elif self.controller.snapshots:
            self._draw(self.controller.snapshots)  # the last frame of a run, at once

    def _on_experiment_changed(self, exp) -> None:
        names = [self.preset_box.itemText(i) for i in range(self.preset_box.count())]
        if exp.name in names:
            self.preset_box.setCurrentIndex(names.index(exp.name))
        self.lag_box.setValue(exp.task.lag)
        for col in self.columns.values():
            self.columns_box.removeWidget(col)
            col.hide()  # kept as a child until deleted: never a top-level window
            col.deleteLater()
        self.columns = {}
        for i, cell in enumerate(exp.cells):
            col = CellColumn(cell)
            col.remedy_requested.connect(self._on_remedy_requested)
            self.columns_box.addWidget(col, 0, i)
            self.columns[cell] = col
        for curve in self.curves.values():
            self.curves_plot.removeItem(curve)
        self.curves = {}
        for cell in exp.cells:
            self.curves[cell] = self.curves_plot.plot(
                [], [], pen=C.cosmetic_pen(CELL_COLORS.get(cell, C.MEASURED), 2.0),
                name=CELL_TITLES.get(cell, cell))
        # the key lives in the axis label: a legend inside the plot sits on the curves
        # (the RNN's stays at the baseline, right where a legend's top row would go)
        self.curves_plot.getAxis("bottom").setLabel("training step &nbsp; " + " &nbsp; ".join(
            f"<span style='color:{CELL_COLORS.get(cell, C.MEASURED)}'>\u2014</span> "
            f"{CELL_TITLES.get(cell, cell)}" for cell in exp.cells))
        task = exp.task
        reg = task.task == "regression"
        self.curves_plot.setLogMode(y=reg)  # MSE spans decades once a cell learns
        self.curves_plot.getAxis("left").setLabel("held-out MSE" if reg else
                                                  "held-out accuracy")
        self.baseline.setPos(math.log10(task.baseline) if reg else task.baseline)
        self.baseline.label.setFormat(
            f"baseline {task.baseline:.3g} (predicting the mean)" if task.task == "regression"
            else f"baseline {task.baseline:.3g} (guessing)")
        self._range_before_scores(task)

    def _range_before_scores(self, task) -> None:
        """Until a held-out score exists, the curves plot spans whole decades around the
        baseline (around one value alone a log axis labels a crowd of minor ticks); the
        first curve (two scores) hands the range back to auto-range."""
        if task.task == "regression":
            b = math.log10(task.baseline)
            self.curves_plot.setYRange(math.floor(b) - 1, math.ceil(b) + 0.2, padding=0)
        else:
            self.curves_plot.setYRange(0.0, 1.0)
        self._curves_waiting = True

    def _on_snapshots_changed(self, snaps: dict) -> None:
        if self.controller.playing or self._pulse is not None:
            self._dirty = True  # the frame clock draws the newest snapshots
            if not self._pulse_timer.isActive():
                self._pulse_timer.start()
        else:
            self._draw(snaps)  # a user's click: draw at once

    @staticmethod
    def shared_range(snaps: dict) -> tuple[float, float]:
        """(floor, top) in log10 covering every cell's ||dL/dh_t|| and ||dL/dc_t||, at most
        24 decades deep."""
        values = []
        for snap in snaps.values():
            for arr in (snap.hidden_grad_norms, snap.cell_grad_norms):
                if arr is not None:
                    lg = _log10(arr)
                    values.append(lg[np.isfinite(lg)])
        values = np.concatenate(values) if values else np.zeros(0)
        if values.size == 0:
            return -8.0, 1.0
        top = float(values.max()) + 0.5
        return max(float(values.min()) - 0.5, top - 24.0), top

    def _fit_diagnoses(self) -> None:
        """Every column's diagnosis as tall as the longest one needs (so the canvases
        and bars stay side by side), at most six lines."""
        if not self.columns:
            return
        col = next(iter(self.columns.values()))
        cap = 6 * col.diagnosis.fontMetrics().lineSpacing() + 4
        h = min(max(c.diagnosis_height() for c in self.columns.values()), cap)
        # the remedy rows only while some column has remedies
        remedies = any(c.remedy_buttons for c in self.columns.values())
        for c in self.columns.values():
            if c.diagnosis.height() != h:
                c.diagnosis.setFixedHeight(h)
            c.remedy_row.setVisible(remedies)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        h = int(CURVES_SHARE * self.height())
        self.curves_plot.setFixedHeight(max(CURVES_MIN_HEIGHT, min(CURVES_MAX_HEIGHT, h)))
        self._fit_diagnoses()

    def _draw(self, snaps: dict) -> None:
        refit = False
        pulse = self._pulse
        yrange = self.shared_range(snaps)
        for cell, snap in snaps.items():
            col = self.columns.get(cell)
            if col is not None:
                col.render(snap, None if snap.phase in ("forward", "backward", "loss")
                           else pulse, yrange)
                if snap is not col.diagnosed:
                    col.diagnosed = snap
                    col.show_findings(diagnose(self.controller.experiment, snap))
                    refit = True
        scores = False
        for cell, (steps, y) in self.controller.curves.items():
            if cell in self.curves:
                self.curves[cell].setData(steps, y)
                scores = scores or len(steps) > 1  # one point draws no line
        if scores and self._curves_waiting:
            self._curves_waiting = False
            self.curves_plot.enableAutoRange(axis="y")
        elif not scores and not self._curves_waiting:  # reset: back to step 0
            self._range_before_scores(self.controller.experiment.task)
        if refit:
            self._fit_diagnoses()

    # -- the backward pulse ------------------------------------------------------------------
    def _start_pulse(self) -> None:
        self._pulse_start = time.monotonic()
        self._pulse = float(self.controller.experiment.task.lag) + 1.0
        self._pulse_timer.start()

    def _on_pulse_tick(self) -> None:
        T = self.controller.experiment.task.lag
        frac = (time.monotonic() - self._pulse_start) / PULSE_SECONDS
        if self._pulse is not None and frac >= 1.0:
            if self.controller.playing:
                self._pulse_start = time.monotonic()
                frac = 0.0
            else:
                self._pulse = None
        if self._pulse is not None:
            self._pulse = (T + 1.0) - frac * T
        self._dirty = False
        self._draw(self.controller.snapshots)
        if self._pulse is not None or self.controller.playing:
            self._pulse_timer.start()

    @property
    def pulse_position(self) -> float | None:
        """The time step the backward pulse has reached (None when it is not running)."""
        return self._pulse

    def shutdown(self) -> None:
        """Stop the clock and the training thread (the main window calls this on close)."""
        self._pulse_timer.stop()
        self.controller.close()

    def closeEvent(self, ev) -> None:
        self.shutdown()
        super().closeEvent(ev)


class ThroughTimeWindow(ThroughTimeView):
    """The through-time view as a window of its own, with its own buttons (the export
    renders this; the app shows the view inside its main window)."""

    def __init__(self, controller: ThroughTimeController | None = None, parent=None):
        super().__init__(controller, parent, Qt.WindowType.Window)
        self.setObjectName("through_time_window")
        self.setWindowTitle("Gradient Flow Lab \u2014 through time")
        self.resize(1280, 720)
