"""File > Export animation...: the dialog, the runner that drives a job from a
timer so the window keeps answering, and ``install_export_action``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ui.export.capture import window_view_available
from ui.export.files import check_destination, is_earlier_export
from ui.export.job import ExportJob, ExportResult, clone_controller
from ui.export_spec import (
    DEFAULT_FPS,
    DEFAULT_SIZE,
    FORMAT_LABELS,
    FORMATS,
    MAX_FPS,
    MAX_FRAMES,
    MAX_STEPS,
    SIZE_PRESETS,
    VIEW_LABELS,
    VIEWS,
    ExportError,
    ExportSettings,
    count_frames,
    parse_size,
    with_format_suffix,
)


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
                 window_available: bool = True, through_time: bool = False):
        super().__init__(parent)
        self.setWindowTitle("Export animation")
        self._settings = settings
        self._name = experiment_name
        self._n_micro = n_micro_steps
        self._start_step = start_step
        # the main window in time mode: one view (every cell side by side), from step 0
        self.through_time = through_time

        self.view_box = QComboBox()
        if through_time:
            self.view_box.addItem("Through time: every cell side by side", "canvas")
            self.view_box.setToolTip("The through-time page as the export draws it (as "
                                     "main.py export does for a through-time experiment), "
                                     "from step 0 of the experiment")
        else:
            for key in ("window", "canvas", "flow", "composed", "composed_factors"):
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
                usable = f.is_dir() and (not any(f.iterdir()) or is_earlier_export(f))
                self.dest_edit.setText(str(f if usable else self.default_destination(f)))
        else:
            name, _ = QFileDialog.getSaveFileName(self, "Save animation as", current,
                                                  f"{FORMAT_LABELS[fmt]} (*.{fmt})")
            if name:
                self.dest_edit.setText(str(with_format_suffix(name, fmt)))

    def _problems(self, s: ExportSettings) -> list[str]:
        problems = s.problems()
        if self.through_time and not problems:
            from ui.export.time_job import check_size

            try:
                check_size(s)
            except ExportError as e:
                problems.append(str(e))
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
        if view in VIEWS and not self.through_time:
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
        remembered = (("view", s.view),) if not self.through_time else ()
        for key, value in (*remembered, ("size", f"{s.width}x{s.height}"),
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

    def _time_mode(self):
        """The window's through-time experiment when it is in time mode, else None."""
        mode = getattr(self.window, "time_mode", None)
        if mode is None or not mode.active or mode.controller is None:
            return None
        return mode.controller.experiment if mode.controller.is_ready else None

    def open_dialog(self) -> ExportDialog | None:
        """Show the dialog (without blocking); returns it, or None while exporting."""
        if self.busy:
            return None
        if self.dialog is not None:
            self.dialog.raise_()
            return self.dialog
        recurrent = self._time_mode()
        if recurrent is not None:
            dialog = ExportDialog(self.window, self.settings, experiment_name=recurrent.name,
                                  n_micro_steps=2 * recurrent.task.lag + 2, start_step=0,
                                  through_time=True)
            dialog.setWindowTitle("Export animation \u2014 through time")
        elif not self.controller.is_ready:
            return None
        else:
            sim = self.controller.sim
            dialog = ExportDialog(self.window, self.settings,
                                  experiment_name=sim.experiment.name,
                                  n_micro_steps=sim.n_micro_steps, start_step=sim.step_count,
                                  window_available=window_view_available())
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
        """Export ``settings`` from the current state (in time mode: the through-time
        experiment from step 0), without blocking."""
        if self.busy:
            return False
        recurrent = self._time_mode()
        if recurrent is not None:
            from ui.export.time_job import ThroughTimeDialogJob

            job = ThroughTimeDialogJob(recurrent, settings)
        else:
            if not self.controller.is_ready:
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
            controller = getattr(runner.job, "controller", None)  # the export's private copy
            if controller is not None:
                controller.shutdown()
                controller.deleteLater()
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
        box.setTextFormat(Qt.TextFormat.PlainText)  # paths and names are shown as they are
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


