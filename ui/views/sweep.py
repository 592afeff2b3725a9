"""The Sweep dialog: choose a base experiment and up to two axes, run the sweep in the
background (local worker processes, this process, or a Dask cluster), watch the
picture fill in, cancel at any time (finished points stay in the results file), and
click a point to open that configuration in the main window.

The work is ``simulator.sweep.run_sweep`` on a Python thread; it reports each
finished point through a Qt signal, which Qt delivers on the GUI thread, so the
window never waits for training.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from simulator.experiment import Experiment
from simulator.sweep import (
    AXES,
    METRICS,
    Point,
    Sweep,
    SweepError,
    default_workers,
    list_sweep_presets,
    load_sweep_preset,
    parse_axis,
    run_sweep,
)

from . import colors as C
from .sweep_plot import SweepPlot

NO_AXIS = "(none)"
CURRENT = "current"


def _duration(seconds) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


@dataclass
class _Run:
    sweep: Sweep
    cancel: threading.Event
    thread: threading.Thread


class _Bridge(QObject):
    """Carries the worker thread's reports to the GUI thread: the reports go into a
    thread-safe queue and a queued signal without arguments wakes the GUI thread to
    read them (no Python object crosses threads inside a Qt signal)."""

    ready = Signal()

    def __init__(self):
        super().__init__()
        self.reports: queue.SimpleQueue = queue.SimpleQueue()

    def send(self, *report) -> None:  # worker thread
        self.reports.put(report)
        self.ready.emit()


class SweepDialog(QDialog):
    """``open_requested(Experiment)`` fires when a point of the plot is clicked."""

    open_requested = Signal(object)
    sweep_finished = Signal()

    def __init__(self, base_experiment: Experiment | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Sweep")
        self.setObjectName("sweep_dialog")
        self.base_experiment = base_experiment
        self.sweep: Sweep | None = None
        self._active: _Run | None = None
        self.outcome = None
        self._bridge = _Bridge()
        self._bridge.ready.connect(self._on_reports)

        self.source = QComboBox()
        self.source.setObjectName("sweep_source")
        if base_experiment is not None:
            self.source.addItem(f"Current experiment ({base_experiment.name})", CURRENT)
        for key, name, description in list_sweep_presets():
            self.source.addItem(name, key)
            self.source.setItemData(self.source.count() - 1, description,
                                    Qt.ItemDataRole.ToolTipRole)
        self.source.currentIndexChanged.connect(self._on_source_changed)

        self.axis_names, self.axis_values = [], []
        axis_rows = []
        for i in range(2):
            names = QComboBox()
            names.setObjectName(f"sweep_axis{i + 1}")
            if i == 1:
                names.addItem(NO_AXIS)
            names.addItems(list(AXES))
            values = QLineEdit()
            values.setObjectName(f"sweep_values{i + 1}")
            values.setPlaceholderText("values, comma-separated: 2, 4, 8")
            row = QHBoxLayout()
            row.addWidget(names, 1)
            row.addWidget(values, 2)
            axis_rows.append(row)
            self.axis_names.append(names)
            self.axis_values.append(values)
        self.steps = QSpinBox(objectName="sweep_steps", minimum=1, maximum=1_000_000,
                              value=1000, singleStep=100)
        self.seeds = QSpinBox(objectName="sweep_seeds", minimum=1, maximum=100, value=1)
        self.workers = QSpinBox(objectName="sweep_workers", minimum=0, maximum=256,
                                value=default_workers())
        self.workers.setSpecialValueText("0: in this process")
        self.workers.setToolTip("Worker processes on this computer (one per core is the "
                                "default); 0 runs the points one by one in a background "
                                "thread of this process")
        self.scheduler = QLineEdit(objectName="sweep_scheduler")
        self.scheduler.setPlaceholderText("optional: tcp://host:8786 runs on that Dask cluster")
        self.out = QLineEdit(objectName="sweep_out")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out, 1)
        out_row.addWidget(browse)
        self.metric_box = QComboBox(objectName="sweep_metric")
        for key, label in METRICS.items():
            self.metric_box.addItem(label, key)
        self.metric_box.currentIndexChanged.connect(self._on_metric_changed)

        form = QFormLayout()
        form.addRow("Base", self.source)
        form.addRow("Axis 1", axis_rows[0])
        form.addRow("Axis 2", axis_rows[1])
        form.addRow("Steps per point", self.steps)
        form.addRow("Seeds", self.seeds)
        form.addRow("Workers", self.workers)
        form.addRow("Dask scheduler", self.scheduler)
        form.addRow("Results file", out_row)
        form.addRow("Plot", self.metric_box)

        self.run_button = QPushButton("Run", objectName="sweep_run")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", objectName="sweep_cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar(objectName="sweep_progress")
        self.progress.setFormat("%v / %m points")
        self.status = QLabel("", objectName="sweep_status")
        self.status.setWordWrap(True)
        self.status.setStyleSheet(f"color: {C.MUTED};")
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)

        self.plot = SweepPlot()
        self.plot.setMinimumHeight(320)
        self.plot.point_clicked.connect(self._on_point_clicked)
        hint = QLabel("Click a point or a cell to open that network in the main window.")
        hint.setStyleSheet(f"color: {C.MUTED};")

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addWidget(self.plot, 1)
        lay.addWidget(hint)
        self.resize(760, 820)
        self._on_source_changed()

    # -- settings --------------------------------------------------------------------------
    def _on_source_changed(self, *_):
        key = self.source.currentData()
        if key is None or key == CURRENT:
            self.axis_names[0].setCurrentText("depth")
            self.axis_values[0].setText("2, 4, 8, 16")
            self.axis_names[1].setCurrentText("skips")
            self.axis_values[1].setText("none, residual")
            name = "sweep"
        else:
            preset = load_sweep_preset(key)
            for i in range(2):
                if i < len(preset.axes):
                    a, values = preset.axes[i]
                    self.axis_names[i].setCurrentText(a)
                    self.axis_values[i].setText(", ".join(f"{v:g}" if isinstance(v, float)
                                                          else str(v) for v in values))
                else:
                    self.axis_names[i].setCurrentText(NO_AXIS)
                    self.axis_values[i].setText("")
            self.steps.setValue(preset.steps)
            self.seeds.setValue(preset.seeds)
            name = key
        folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
        self.out.setText(str(Path(folder or Path.home()) / "sweeps" / f"{name}.jsonl"))

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Results file", self.out.text(),
                                              "JSON lines (*.jsonl);;All files (*)")
        if path:
            self.out.setText(path)

    def build_sweep(self) -> Sweep:
        """The sweep the fields describe (raises SweepError naming the field)."""
        key = self.source.currentData()
        if key == CURRENT:
            base = self.base_experiment
            name, description, target, check = f"{base.name}: sweep", "", None, 0
        else:
            preset = load_sweep_preset(key)
            base, name, description = preset.experiment, preset.name, preset.description
            target, check = preset.target_loss, preset.check_every
        axes = []
        for names, values in zip(self.axis_names, self.axis_values, strict=True):
            if names.currentText() == NO_AXIS:
                continue
            axes.append(parse_axis(names.currentText(), values.text()))
        kw = {} if target is None else {"target_loss": target}
        return Sweep(base, tuple(axes), steps=self.steps.value(), seeds=self.seeds.value(),
                     name=name, description=description, check_every=check, **kw)

    # -- running ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._active is not None

    def start(self) -> bool:
        if self.running:
            return False
        try:
            sweep = self.build_sweep()
            sweep.validate()
        except SweepError as e:
            self._say(str(e), error=True)
            return False
        out = Path(self.out.text().strip()).expanduser()
        if not self.out.text().strip():
            self._say("Results file: choose where to write the results", error=True)
            return False
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._say(f"Results file: cannot create {out.parent} ({e.strerror or e})",
                      error=True)
            return False
        self.sweep = sweep
        self.plot.set_metric(self.metric_box.currentData())
        self.plot.set_sweep(sweep.to_dict())
        self.progress.setRange(0, sweep.n_points)
        self.progress.setValue(0)
        self._say(f"Starting {sweep.n_points} points…")
        workers = self.workers.value()
        scheduler = self.scheduler.text().strip() or None
        executor = "serial" if workers == 0 and not scheduler else "local"
        cancel = threading.Event()
        bridge = self._bridge

        def work():
            try:
                outcome = run_sweep(sweep, out, executor=executor, workers=max(1, workers),
                                    scheduler=scheduler, cancel=cancel,
                                    on_record=lambda r, p: bridge.send("record", r, p))
                bridge.send("finished", outcome, "")
            except (SweepError, OSError) as e:
                bridge.send("finished", None, str(e))
            except Exception as e:  # a failed point: report it, never kill the window
                bridge.send("finished", None, f"The sweep stopped: {type(e).__name__}: {e}")

        thread = threading.Thread(target=work, name="sweep", daemon=True)
        self._active = _Run(sweep, cancel, thread)
        self._set_running(True)
        thread.start()
        return True

    def cancel(self) -> None:
        if self._active is not None:
            self._active.cancel.set()
            self._say("Cancelling: finished points stay in the results file…")

    def _set_running(self, on: bool) -> None:
        self.run_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        for w in (self.source, *self.axis_names, *self.axis_values, self.steps, self.seeds,
                  self.workers, self.scheduler, self.out):
            w.setEnabled(not on)

    def _on_reports(self) -> None:
        while True:
            try:
                kind, *args = self._bridge.reports.get_nowait()
            except queue.Empty:
                return
            (self._on_record if kind == "record" else self._on_finished)(*args)

    def _on_record(self, record: dict, progress) -> None:
        if self.sweep is None:
            return
        self.plot.add_record(record)
        self.progress.setValue(progress.done)
        self._say(f"{progress.done} / {progress.total} points · "
                  f"{progress.points_per_min:.1f} points/min · "
                  f"about {_duration(progress.eta_s)} left"
                  + (f" · {progress.resumed} from an earlier run" if progress.resumed else ""))

    def _on_finished(self, outcome, error: str) -> None:
        self._active = None
        self._set_running(False)
        self.outcome = outcome
        if outcome is None:
            self._say(error, error=True)
        else:
            # also shows points found in the file from an earlier run
            self.plot.set_records(outcome.records)
            self.progress.setValue(len(outcome.records))
            verb = "Cancelled" if outcome.cancelled else "Done"
            self._say(f"{verb}: {len(outcome.records)} / {self.sweep.n_points} points in "
                      f"{self.out.text()} ({outcome.ran} run now, {outcome.resumed} from "
                      f"before) in {_duration(outcome.elapsed_s)}")
        self.sweep_finished.emit()

    def _on_metric_changed(self, *_):
        self.plot.set_metric(self.metric_box.currentData())
        records = self.plot.records
        if self.sweep is not None:
            self.plot.set_sweep(self.sweep.to_dict())
            self.plot.set_records(records)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet(f"color: {C.SEVERITY['critical'] if error else C.MUTED};")
        self.status.setText(text)

    # -- opening a point -------------------------------------------------------------------
    def experiment_at(self, values: dict) -> Experiment | None:
        """The experiment of the point with these plotted axis values (other axes at
        their first value, the first seed)."""
        if self.sweep is None:
            return None
        full = tuple((a, values.get(a, vs[0])) for a, vs in self.sweep.axes)
        seed = values.get("seed", self.sweep.experiment.seed)
        return self.sweep.experiment_for(Point(full, int(seed)))

    def _on_point_clicked(self, values: dict) -> None:
        exp = self.experiment_at(values)
        if exp is not None:
            self.open_requested.emit(exp)

    def closeEvent(self, event) -> None:
        self.cancel()
        super().closeEvent(event)


def add_sweep_action(window, menu) -> QAction:
    """A "Sweep…" action in ``menu`` that opens the dialog on the window's current
    experiment; a clicked point opens in the window (not undoable, like Open)."""
    action = QAction("S&weep…", window)
    action.setObjectName("action_sweep")
    action.setStatusTip("Run this experiment over a range of depths, widths, "
                        "initializations, … and plot the results")

    def open_dialog():
        sim = getattr(window.controller, "sim", None)
        dialog = getattr(window, "_sweep_dialog", None)
        if dialog is None:
            dialog = SweepDialog(sim.experiment if sim is not None else None, window)

            def open_point(exp):
                if window.controller.open_experiment(exp):
                    window.set_experiment_path(None)

            dialog.open_requested.connect(open_point)
            window._sweep_dialog = dialog
        dialog.show()
        dialog.raise_()
        return dialog

    action.triggered.connect(open_dialog)
    menu.addAction(action)
    window.open_sweep_dialog = open_dialog
    return action

