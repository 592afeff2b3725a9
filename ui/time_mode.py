"""The main window's mode switch: through depth (the feedforward network) or through time
(a tanh RNN, an LSTM and a GRU side by side, ``ui.views.through_time``).

``TimeMode`` owns the switch (two checkable actions in an exclusive group, Ctrl+1 and
Ctrl+2, shown as a two-state switch in the top bar and in the View menu), the
through-time controller and view, and the through-time experiment's file and unsaved
state. The through-time page, its controller and its kernels are built the first time
the user enters the mode, never at start-up (the status bar shows the compiling, as it
does for the feedforward kernels). Leaving a mode pauses its training and keeps
everything of it (run, undo stack, selection, dock layout) for when the user comes back.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QToolButton, QWidget

DEPTH, TIME = "depth", "time"
MODE_TITLES = {DEPTH: "Through depth", TIME: "Through time"}
WHY_DISABLED = ("This setting belongs to the feedforward network (through depth); "
                "switch back with Ctrl+1 to change it.")


class ModeSwitch(QWidget):
    """Two buttons side by side, one of them pressed: the mode's two actions."""

    def __init__(self, depth: QAction, time: QAction, parent=None):
        super().__init__(parent)
        self.setObjectName("mode_switch")
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 0, 4, 0)
        row.setSpacing(0)
        self.buttons = {}
        for key, action, side in ((DEPTH, depth, "left"), (TIME, time, "right")):
            b = QToolButton()
            b.setObjectName(f"mode_button_{key}")
            b.setDefaultAction(action)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            radius = ("border-top-left-radius: 4px; border-bottom-left-radius: 4px;"
                      if side == "left" else
                      "border-top-right-radius: 4px; border-bottom-right-radius: 4px;")
            b.setStyleSheet(
                "QToolButton { border: 1px solid #4a5470; padding: 3px 9px; "
                f"background: #1c2130; color: #a9b1c6; {radius} }}"
                "QToolButton:checked { background: #2f6fb3; color: white; "
                "border-color: #8ec5ff; font-weight: bold; }")
            row.addWidget(b)
            self.buttons[key] = b


class TimeMode(QObject):
    """The through-time half of the main window (see the module's docstring)."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.mode = DEPTH
        self.controller = None  # ThroughTimeController, on first entry
        self.view = None  # ThroughTimeView, the stack's second page
        self.path: str | None = None  # the through-time experiment's file
        self.clean_experiment = None  # as last opened or saved
        self._dock_state = None
        self._window_size = None
        self._disabled: list = []  # (widget or action, its tooltip) switched off in time mode

        group = QActionGroup(window)
        group.setExclusive(True)
        self.actions = {}
        for key, shortcut, tip in (
                (DEPTH, "Ctrl+1", "The feedforward network: the error signal through its "
                                  "layers (Ctrl+1)"),
                (TIME, "Ctrl+2", "Recurrent networks: the error signal back through the "
                                 "time steps of a sequence, a tanh RNN against an LSTM and "
                                 "a GRU (Ctrl+2)")):
            a = QAction(MODE_TITLES[key], window)
            a.setObjectName(f"action_mode_{key}")
            a.setCheckable(True)
            a.setShortcut(QKeySequence(shortcut))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.setToolTip(tip)
            a.setStatusTip(tip)
            a.triggered.connect(lambda _c=False, k=key: self.set_mode(k))
            group.addAction(a)
            window.addAction(a)
            self.actions[key] = a
        self.actions[DEPTH].setChecked(True)
        self.group = group
        self.switch = ModeSwitch(self.actions[DEPTH], self.actions[TIME])

    @property
    def active(self) -> bool:
        return self.mode == TIME

    # -- switching ---------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        if mode not in (DEPTH, TIME):
            raise ValueError(f"mode must be {DEPTH!r} or {TIME!r}, got {mode!r}")
        self.actions[mode].setChecked(True)
        if mode == self.mode:
            return
        w = self.window
        if mode == TIME:
            w.controller.pause()
            job = getattr(w, "pretrain_job", None)
            if job is not None and job.running and job.pretrainer is not None:
                # layer-wise pretraining runs on the GUI clock: it would go on, unseen,
                # on the depth network; it stops where it is, as when training starts
                job.stop()
                w.show_message(f"Pretraining stopped at layer {job.pretrainer.layer} of "
                               f"{job.pretrainer.n_layers}: switched to through time.",
                               "info")
            self._dock_state = w.saveState()
            self._window_size = w.size()
            self._ensure_built()
            for dock in w.docks.values():
                dock.hide()
            self.mode = TIME
            w.pages.setCurrentWidget(self.view)
            w.undo_group.setActiveStack(self.controller.undo_stack)
            self._disable_depth_controls()
            w.statusBar().showMessage("Through time: the error signal back through the time "
                                      "steps of a sequence (Ctrl+1 goes back to depth)", 8000)
        else:
            if self.controller is not None:
                self.controller.pause()
            self.mode = DEPTH
            w.pages.setCurrentIndex(0)
            # the central area's minimum is the depth page's again before the docks come
            # back; else the dock layout is fitted around the time page and the window grows
            w.pages.updateGeometry()
            w.centralWidget().layout().activate()
            QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
            if self._dock_state is not None:
                w.restoreState(self._dock_state)
            if self._window_size is not None and not w.isMaximized() and not w.isFullScreen():
                w.resize(self._window_size)
            w.undo_group.setActiveStack(w.controller.undo_stack)
            self._enable_depth_controls()
        for key in ("step", "phase", "loss", "accuracy", "rate"):
            w.status[key].setVisible(mode == DEPTH)
        self.update_playback()
        w._update_title()

    def _ensure_built(self) -> None:
        """The controller and the page, built on first entry: the kernels compile now."""
        if self.controller is not None:
            return
        from ui.views.through_time import ThroughTimeController, ThroughTimeView

        w = self.window
        c = ThroughTimeController(parent=w)
        c.compiling_changed.connect(self._on_compiling_changed)
        c.ready.connect(self._on_ready)
        c.running_changed.connect(self._on_running_changed)
        c.experiment_changed.connect(lambda _e: w._update_title())
        c.error.connect(w.show_message)
        w.undo_group.addStack(c.undo_stack)
        self.controller = c
        self.clean_experiment = c.experiment
        view = ThroughTimeView(c, embedded=True)
        view.preset_handler = self.open_preset
        w.pages.addWidget(view)
        self.view = view

    def _disable_depth_controls(self) -> None:
        w = self.window
        targets = [w.quick, w.action_to_backward, w.action_reset_layout,
                   *w.dock_actions.values()]
        compare = getattr(w, "compare_actions", None)
        menu = w.findChild(QObject, "menu_compare")
        if menu is not None:
            targets += [a for a in menu.actions() if not a.isSeparator()]
        elif isinstance(compare, dict):
            targets += [a for a in compare.values() if isinstance(a, QAction)]
        sweep = getattr(w, "action_sweep", None)
        if isinstance(sweep, QAction):
            targets.append(sweep)
        pretrain = w.findChild(QAction, "action_pretrain_layers")
        if pretrain is not None:
            targets.append(pretrain)
        # the quick settings' own fields show their tooltips even when disabled
        targets += [c for c in w.quick.findChildren(QWidget) if c.toolTip()]
        self._disabled = []
        for t in targets:
            self._disabled.append((t, t.toolTip(), t.isEnabled()))
            t.setEnabled(False)
            t.setToolTip(WHY_DISABLED)
        w.action_to_backward.setToolTip("Through time has no layers to jump over; "
                                        "switch back with Ctrl+1")

    def _enable_depth_controls(self) -> None:
        for t, tip, enabled in reversed(self._disabled):
            t.setToolTip(tip)
            t.setEnabled(enabled)
        self._disabled = []

    # -- playback ----------------------------------------------------------------------------
    def update_playback(self) -> None:
        """Play/Step/Micro-step/Reset act on the active mode: their state follows it."""
        w = self.window
        if self.active:
            ready = self.controller is not None and self.controller.is_ready
            playing = ready and self.controller.playing
            for key in ("reset", "micro", "step"):
                w.playback_actions[key].setEnabled(ready and not playing)
            w.action_play.setEnabled(ready)
            w.action_play.setText("Pause" if playing else "Play")
            for action in (w.action_save, w.action_save_as):
                action.setEnabled(ready)
        else:
            on = w.controller.is_ready
            for action in (*w.playback_actions.values(), w.action_save, w.action_save_as):
                action.setEnabled(on)
            w.action_play.setText("Pause" if w.controller.is_playing else "Play")

    def _on_running_changed(self, _running: bool) -> None:
        if self.active:
            self.update_playback()

    def _on_ready(self) -> None:
        self.window.compiling_label.setVisible(False)
        self.window.compiling_bar.setVisible(False)
        if self.active:
            self.update_playback()

    def _on_compiling_changed(self, compiling: bool) -> None:
        w = self.window
        w.compiling_label.setVisible(compiling)
        w.compiling_bar.setVisible(compiling)
        if compiling:
            w.compiling_label.setText("Compiling the through-time kernels (first use only)\u2026")

    # -- presets and files -------------------------------------------------------------------
    @property
    def experiment(self):
        return self.controller.experiment if self.controller is not None else None

    @property
    def is_modified(self) -> bool:
        return (self.controller is not None and self.clean_experiment is not None
                and self.controller.experiment != self.clean_experiment)

    def title_name(self) -> str:
        if self.path:
            return Path(self.path).name
        exp = self.experiment
        return exp.name if exp is not None else "Through time"

    def open_preset(self, key: str) -> bool:
        """A through-time preset: asks about unsaved through-time edits, then switches to
        time mode and loads it."""
        from simulator.experiment import ExperimentError
        from simulator.recurrent.experiment import load_recurrent_preset

        if not self.window.maybe_save("loading the preset", mode=TIME):
            return False
        try:
            exp = load_recurrent_preset(key)
        except ExperimentError as e:
            self.window.show_message(f"Could not load the preset. {e}")
            return False
        return self.open(exp, None)

    def open(self, experiment, path: str | None) -> bool:
        """Show ``experiment`` in time mode (switching to it), from ``path`` if a file."""
        self.set_mode(TIME)
        self.controller.open_experiment(experiment)
        self.path = str(path) if path else None
        self.clean_experiment = experiment
        w = self.window
        w.banner.dismiss()
        w._update_title()
        w.statusBar().showMessage(f"Opened \u201c{experiment.name}\u201d (through time)", 10_000)
        return True

    def save_to(self, path: str) -> bool:
        from simulator.recurrent.experiment import save_recurrent_experiment
        from ui.export.files import describe_os_error

        exp = self.experiment
        if exp is None:
            return False
        try:
            save_recurrent_experiment(exp, path)
        except OSError as e:
            self.window.show_message(f"Could not save. {describe_os_error(e, Path(path))}")
            return False
        self.path = str(path)
        self.clean_experiment = exp
        self.window._update_title()
        self.window.statusBar().showMessage(f"Saved to {path}", 10_000)
        return True

    def fill_presets_menu(self, menu) -> None:
        """A "Through time" submenu of File > New from preset, listed when it opens (so
        the start-up never loads the through-time package)."""
        menu.addSeparator()
        sub = menu.addMenu("Through &time")
        sub.setObjectName("menu_presets_time")
        sub.setToolTipsVisible(True)
        sub.aboutToShow.connect(lambda: self._fill_time_presets(sub))

    def _fill_time_presets(self, sub) -> None:
        from simulator.recurrent.experiment import list_recurrent_presets

        from .app import add_preset_actions

        sub.clear()
        add_preset_actions(sub, list_recurrent_presets(), "preset_time_", self.open_preset,
                           "(no through-time presets found)")

    def shutdown(self) -> None:
        if self.view is not None:
            self.view.shutdown()

    def depth_dock_state(self):
        """The depth mode's dock layout, as it was when time mode hid the docks."""
        return self._dock_state
