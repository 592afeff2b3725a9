"""The Gradient Flow Lab main window, and ``main()`` that starts the app.

The window shows itself at once; the kernels compile (or load from numba's
cache) in the background while the status bar says so. The network canvas is the
central widget, every other panel is a dock whose place the window remembers.
All playback shortcuts are window-level actions, so they work wherever the
focus is, except inside a text field, which keeps its own keys (Qt lets a line
edit claim Space, R and the arrows before a shortcut sees them).

Environment knobs, for tests and scripts only:
  GFL_SETTINGS=path.ini      keep the settings in that file instead of the user's
  GFL_QUIT_AFTER_MS=3000     close the window that long after start (once the
                             simulation is built or has failed)
  GFL_SCREENSHOT=path.png    save a picture of the window just before quitting
"""

from __future__ import annotations

import os

# numpy reads this when it is first imported: one BLAS thread, because the
# kernels parallelize themselves and oversubscription makes both slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import html  # noqa: E402
import importlib  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QAction, QColor, QKeySequence, QPalette, QUndoGroup  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QStackedWidget,
    QTextBrowser,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from simulator.compare_experiment import ComparisonSpec, load_study  # noqa: E402
from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import (  # noqa: E402
    Experiment,
    ExperimentError,
    TrainSpec,
    list_presets,
    load_preset,
    save_experiment,
)
from simulator.pretrain import PretrainSpec, check_pretrainable  # noqa: E402
from simulator.spec import SpecError, uniform_spec  # noqa: E402

from .commands import Editor  # noqa: E402
from .controller import SimulationController  # noqa: E402
from .export import install_export_action, register_window_class  # noqa: E402
from .time_mode import DEPTH, TIME, TimeMode  # noqa: E402
from .views import colors as C  # noqa: E402
from .views.controls import ControlsPanel, QuickSettings  # noqa: E402
from .views.inputguard import install_input_guard  # noqa: E402

APP_NAME = "Gradient Flow Lab"
ORG_NAME = "GradientFlowLab"
DEFAULT_PRESET = "deep_sigmoid"
EXPERIMENT_FILTER = "Experiments (*.json);;All files (*)"
STATUS_MESSAGE_MS = 10_000

KEY_GEOMETRY = "window/geometry"
KEY_STATE = "window/state"
KEY_SIZE = "window/size"
KEY_LAST_PATH = "experiment/last_path"
KEY_LAST_DIR = "experiment/last_dir"
# the file being started; cleared once it runs, so a start that never finished (killed,
# out of memory) is not repeated blindly next time
KEY_STARTING = "experiment/starting"
KEY_EMBED_CSV = "experiment/embed_csv"

# (object name, title, module in ui.views, class, dock area)
_LEFT = Qt.DockWidgetArea.LeftDockWidgetArea
_RIGHT = Qt.DockWidgetArea.RightDockWidgetArea
_BOTTOM = Qt.DockWidgetArea.BottomDockWidgetArea
DOCKS = (
    ("dock_flow", "Gradient flow", "flow", "GradientFlowView", _RIGHT),
    ("dock_diagnosis", "Diagnosis", "diagnosis", "DiagnosisPanel", _RIGHT),
    ("dock_inspector", "Layer inspector", "inspector", "LayerInspector", _RIGHT),
    ("dock_factors", "Chain-rule factors", "factors", "FactorsView", _RIGHT),
    ("dock_loss", "Loss && accuracy", "loss", "LossView", _BOTTOM),  # "&&" shows as "&"
    ("dock_history", "Gradient history", "history", "GradientHistoryView", _BOTTOM),
    ("dock_boundary", "Decision boundary", "boundary", "DecisionBoundaryView", _BOTTOM),
)


def _load_view(module: str, cls: str, controller) -> QWidget:
    """Build ``ui.views.<module>.<cls>(controller)``. A panel whose module is not part
    of this installation becomes a note instead of taking the whole app down; any
    other error is a bug and propagates."""
    name = f"ui.views.{module}"
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name != name:
            raise
        note = QLabel(f"This panel ({name}) is not available in this build.")
        note.setObjectName(f"missing_{module}")
        note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        note.setWordWrap(True)
        return note
    return getattr(mod, cls)(controller)


def plain_tooltip(text: str) -> str:
    """``text`` as a tooltip shown literally: Qt renders a tooltip that looks like HTML
    as HTML, so file-derived text is escaped inside an explicit rich-text wrapper."""
    return "<qt>" + html.escape(text).replace("\n", "<br>") + "</qt>"


def add_preset_actions(menu, presets, object_prefix: str, open_preset, empty_text: str):
    """One action per (key, name, description) preset in ``menu``, opening it with
    ``open_preset(key)``; the description is its tooltip, its first line the status tip."""
    for key, name, description in presets:
        action = menu.addAction(name)
        action.setObjectName(f"{object_prefix}{key}")
        action.setData(key)
        action.setToolTip(plain_tooltip(description))
        action.setStatusTip(description.split("\n")[0][:160])
        action.triggered.connect(lambda _checked=False, k=key: open_preset(k))
    if not presets:
        menu.addAction(empty_text).setEnabled(False)


class Banner(QFrame):
    """A message across the top of the canvas that does not block anything:
    divergence reports, refused values, files that would not open."""

    STYLES = {
        "error": "background: #4a1d24; color: #ffdcd8; border: 1px solid #b8434f;",
        "diverged": "background: #47380f; color: #ffe9b0; border: 1px solid #c79a2a;",
        "info": "background: #15304d; color: #d8eaff; border: 1px solid #3a73b0;",
    }

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("banner")
        self.kind = ""
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel()
        self.label.setObjectName("banner_text")
        # messages quote file contents (names, paths, values): never interpreted as HTML
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.label, 1)
        self.close_button = QToolButton()
        self.close_button.setObjectName("banner_close")
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Dismiss")
        self.close_button.clicked.connect(self.dismiss)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    @property
    def text(self) -> str:
        return self.label.text()

    def show_message(self, text: str, kind: str = "error") -> None:
        self.kind = kind
        self.setStyleSheet(f"#banner {{ {self.STYLES.get(kind, self.STYLES['info'])} "
                           "border-radius: 4px; } #banner QLabel { border: none; }")
        self.label.setText(text)
        self.show()

    def dismiss(self) -> None:
        self.kind = ""
        self.hide()


class ExperimentNote(QFrame):
    """The loaded experiment's name and description (a preset's instructions), above the
    canvas: its first sentence, and the whole of it behind "More"."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("experiment_note")
        self.setStyleSheet(f"#experiment_note {{ background: {C.PANEL}; border: 1px solid "
                           "#30364b; border-radius: 4px; } #experiment_note QLabel "
                           "{ border: none; }")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 3, 4, 3)
        self.label = QLabel()
        self.label.setObjectName("experiment_note_text")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.label, 1)
        self.more = QToolButton()
        self.more.setObjectName("experiment_note_more")
        self.more.setCheckable(True)
        self.more.setAutoRaise(True)
        self.more.toggled.connect(self._refresh)
        row.addWidget(self.more, 0, Qt.AlignmentFlag.AlignTop)
        self.name = self.description = ""
        self.hide()

    def set_experiment(self, name: str, description: str) -> None:
        if (name, description) == (self.name, self.description):
            return
        self.name, self.description = name, description.strip()
        self.more.setChecked(False)
        self._refresh()

    @property
    def short(self) -> str:
        """The description's first sentence (or line)."""
        text = self.description.split("\n", 1)[0]
        m = re.search(r"[.!?](\s|$)", text)
        return text[: m.end()].strip() if m else text

    def _refresh(self, *_) -> None:
        if not (self.name or self.description):
            self.hide()
            return
        full = self.more.isChecked()
        body = self.description if full else self.short
        body = html.escape(body).replace("\n", "<br>")
        self.label.setText(f"<b>{html.escape(self.name)}</b>" + (f" — {body}" if body else ""))
        self.more.setVisible(self.short != self.description)
        self.more.setText("Less" if full else "More")
        self.more.setToolTip("Show only the first sentence" if full else
                             "Show the whole description")
        self.show()


class HelpWindow(QWidget):
    """The glossary: one topic per entry, each shown as rich text. Not modal."""

    def __init__(self, topics: dict, parent=None):
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("help_window")
        self.setWindowTitle(f"{APP_NAME} — Help")
        self.topics = topics
        split = QSplitter(self)
        self.list = QListWidget()
        self.list.setObjectName("help_topics")
        self.list.setSpacing(2)
        self.browser = QTextBrowser()
        self.browser.setObjectName("help_text")
        self.browser.setOpenExternalLinks(True)
        for key, topic in topics.items():
            item = QListWidgetItem(topic.title)
            item.setData(Qt.ItemDataRole.UserRole, key)
            self.list.addItem(item)
        self.browser.document().setDocumentMargin(14)
        split.addWidget(self.list)
        split.addWidget(self.browser)
        split.setStretchFactor(1, 1)
        list_width = self.list.sizeHintForColumn(0) + 2 * self.list.frameWidth() + 16
        split.setSizes([list_width, max(480, 900 - list_width)])
        self.resize(list_width + 640, 580)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)
        self.list.currentItemChanged.connect(self._on_topic_changed)
        if self.list.count():
            self.list.setCurrentRow(0)

    @property
    def current_topic(self) -> str:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else ""

    def show_topic(self, key: str) -> bool:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == key:
                self.list.setCurrentRow(row)
                return True
        return False

    def _on_topic_changed(self, item, _previous) -> None:
        if item is None:
            return
        topic = self.topics[item.data(Qt.ItemDataRole.UserRole)]
        self.browser.setHtml(f"<h2>{topic.title}</h2>{topic.text}")


def apply_theme(app: QApplication) -> None:
    """A dark Fusion theme in the colours the panels draw with, so the widgets around
    the plots do not glare next to them."""
    app.setStyle("Fusion")
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: C.PANEL,
        QPalette.ColorRole.WindowText: C.FOREGROUND,
        QPalette.ColorRole.Base: C.BACKGROUND,
        QPalette.ColorRole.AlternateBase: "#22283a",
        QPalette.ColorRole.Text: C.FOREGROUND,
        QPalette.ColorRole.PlaceholderText: C.MUTED,
        QPalette.ColorRole.Button: "#272d40",
        QPalette.ColorRole.ButtonText: C.FOREGROUND,
        QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: "#2f6fb3",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: C.PANEL,
        QPalette.ColorRole.ToolTipText: C.FOREGROUND,
        QPalette.ColorRole.Link: C.FORWARD,
        QPalette.ColorRole.Light: "#3a4158",
        QPalette.ColorRole.Midlight: "#30364b",
        QPalette.ColorRole.Mid: "#252a3b",
        QPalette.ColorRole.Dark: "#11141b",
        QPalette.ColorRole.Shadow: "#07080b",
    }
    for role, color in roles.items():
        pal.setColor(role, QColor(color))
    disabled = QPalette.ColorGroup.Disabled
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text,
                 QPalette.ColorRole.ButtonText):
        pal.setColor(disabled, role, QColor("#5d6579"))
    pal.setColor(disabled, QPalette.ColorRole.Base, QColor(C.PANEL))
    app.setPalette(pal)
    # Fusion draws check boxes from the window colour: nearly invisible on a dark panel
    app.setStyleSheet(
        "QCheckBox::indicator { width: 12px; height: 12px; border: 1px solid #7a84a0;"
        f" border-radius: 3px; background: {C.BACKGROUND}; }}"
        "QCheckBox::indicator:checked { background: #2f6fb3; border-color: #8ec5ff; }"
        "QCheckBox::indicator:disabled { border-color: #454c62; }")


def _glossary_topics() -> dict:
    try:
        from simulator.glossary import TOPICS
    except ImportError:
        return {}
    return dict(TOPICS)


class MainWindow(QMainWindow):
    def __init__(self, controller: SimulationController, editor: Editor, settings: QSettings,
                 *, path: str | None = None, experiment: Experiment | None = None,
                 parent=None):
        super().__init__(parent)
        self.setObjectName("main_window")
        self.controller = controller
        self.editor = editor
        self.settings = settings
        self.current_path: str | None = None
        if experiment is None and controller.is_ready:
            experiment = controller.sim.experiment
        self._name = experiment.name if experiment is not None else ""
        # (experiment, path, pretraining) to open once the simulation exists
        self._pending_open: tuple[Experiment, str | None, PretrainSpec | None] | None = None
        # set by start_window: what the start-up file asks for, done once it is built
        self._startup_pretraining: tuple[Experiment, PretrainSpec] | None = None
        # a comparison file given at start-up: its compare window opens when ready
        self._pending_comparison: tuple[ComparisonSpec, str] | None = None
        # the "pretraining" section of the file opened, written back when it is saved
        self._file_pretraining: PretrainSpec | None = None
        self.help_window: HelpWindow | None = None
        # the experiment as last opened or saved, and as it is now: the difference is
        # the user's unsaved work
        self._clean_experiment: Experiment | None = None
        self._experiment_now: Experiment | None = None
        install_input_guard()  # wheel and Space rules for every spin box and combo box
        self.setDockNestingEnabled(True)
        self.resize(self._fitted_size(QSize(1500, 940)))

        self._build_actions()
        self._build_central()
        self._build_docks()
        self._build_top_bar()
        self._build_menus()
        self._build_status_bar()
        install_input_guard(self)
        self._default_state = self.saveState()
        self._restore_settings()
        self.set_experiment_path(path)
        if controller.is_ready:
            with controller.locked() as sim:
                self._clean_experiment = self._experiment_now = sim.experiment
            self._show_description(self._experiment_now)
        elif experiment is not None:
            self._show_description(experiment)
        self._update_title()
        self._connect()
        self._set_sim_actions_enabled(controller.is_ready)
        self.exporter = install_export_action(self)
        from .compare_window import install_compare_actions  # compare mode: its own window

        self.compare_actions = install_compare_actions(self)

    # -- construction ---------------------------------------------------------------------
    def _action(self, name: str, text: str, slot, shortcuts=(), tip: str = "") -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if shortcuts:
            action.setShortcuts([QKeySequence(s) for s in shortcuts])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts live on the window, whatever has the focus
        return action

    def _build_actions(self) -> None:
        c = self.controller
        self.action_open = self._action("action_open", "&Open…", self.open_dialog,
                                        [QKeySequence.StandardKey.Open])
        self.action_save = self._action("action_save", "&Save", self.save,
                                        [QKeySequence.StandardKey.Save])
        self.action_save_as = self._action("action_save_as", "Save &As…", self.save_as_dialog,
                                           ["Ctrl+Shift+S"])
        # the choice Save makes for CSV data: a copy inside the file (so a copied
        # experiment still opens; small files only) or a link to the CSV
        self.action_embed_csv = QAction("Embed Small CSV Data When Saving", self)
        self.action_embed_csv.setObjectName("action_embed_csv")
        self.action_embed_csv.setCheckable(True)
        self.action_embed_csv.setChecked(self.settings.value(KEY_EMBED_CSV, True, type=bool))
        self.action_embed_csv.setStatusTip(
            "Save a CSV of up to 256 kB inside the experiment file, so the file opens anywhere; "
            "unchecked, only the path to the CSV is saved")
        self.action_embed_csv.toggled.connect(
            lambda on: self.settings.setValue(KEY_EMBED_CSV, bool(on)))
        self.action_export = QAction("&Export animation…", self)
        self.action_export.setObjectName("action_export")
        self.action_export.setEnabled(False)
        self.action_quit = self._action("action_quit", "&Quit", self.close, ["Ctrl+Q"])

        # Undo/Redo act on the active mode's stack (the through-time one joins the group
        # when that mode is first entered)
        self.undo_group = QUndoGroup(self)
        self.undo_group.addStack(c.undo_stack)
        self.undo_group.setActiveStack(c.undo_stack)
        self.time_mode = TimeMode(self)
        self.action_undo = self.undo_group.createUndoAction(self, "&Undo")
        self.action_undo.setObjectName("action_undo")
        self.action_undo.setShortcuts([QKeySequence("Ctrl+Z")])
        self.action_redo = self.undo_group.createRedoAction(self, "&Redo")
        self.action_redo.setObjectName("action_redo")
        self.action_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.addAction(self.action_undo)
        self.addAction(self.action_redo)

        # each acts on the active mode: the feedforward controller, or the through-time view
        self.action_reset = self._action(
            "action_reset", "Reset", lambda: self._playback("reset"), ["R"],
            "Fresh weights, step 0 (R)")
        self.action_micro = self._action(
            "action_micro", "Micro-step", lambda: self._playback("micro_step"),
            ["Shift+Right"],
            "One forward or backward layer (through time: time step) at a time (Shift+Right)")
        self.action_step = self._action(
            "action_step", "Step", lambda: self._playback("step"), ["Right"],
            "One whole training iteration (Right)")
        self.action_play = self._action(
            "action_play", "Play", lambda: self._playback("toggle_play"), ["Space"],
            "Train continuously; press again to pause (Space)")
        self.action_to_backward = self._action(
            "action_to_backward", "Jump to backward pass", c.skip_to_backward, ["B"],
            "Run the rest of the forward pass and the loss at once, so the next micro-step "
            "is the first backward layer (B)")
        self.playback_actions = {"reset": self.action_reset, "micro": self.action_micro,
                                 "step": self.action_step, "play": self.action_play,
                                 "to_backward": self.action_to_backward}

    def _playback(self, what: str) -> None:
        """Reset / Micro-step / Step / Play on the active mode."""
        if self.time_mode.active:
            view = self.time_mode.view
            if view is not None:
                getattr(view, what)()
        else:
            getattr(self.controller, what)()

    def _build_central(self) -> None:
        self.banner = Banner()
        self.canvas = _load_view("canvas", "NetworkCanvas", self.controller)
        central = QWidget()
        central.setObjectName("central")
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.setSpacing(4)
        layout.addWidget(self.banner)
        # one page per mode: through depth (this), through time (added on first use)
        self.pages = QStackedWidget()
        self.pages.setObjectName("mode_pages")
        depth = QWidget()
        depth.setObjectName("page_depth")
        depth_layout = QVBoxLayout(depth)
        depth_layout.setContentsMargins(0, 0, 0, 0)
        depth_layout.setSpacing(4)
        self.note = ExperimentNote()
        depth_layout.addWidget(self.note)
        depth_layout.addWidget(self.canvas, 1)
        self.pages.addWidget(depth)
        self.pages.currentChanged.connect(self._on_page_changed)
        layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)

    def _on_page_changed(self, index: int) -> None:
        """Only the page on show claims room: a stack is otherwise as large as its largest
        page, and the hidden through-time page would push the docks (and the window) out
        of a 1280x720 screen when the depth page comes back."""
        from PySide6.QtWidgets import QSizePolicy

        for i in range(self.pages.count()):
            policy = (QSizePolicy.Policy.Preferred if i == index
                      else QSizePolicy.Policy.Ignored)
            self.pages.widget(i).setSizePolicy(policy, policy)

    def _build_top_bar(self) -> None:
        """Learning rate and activation where they are seen at once (as in Playground):
        they decide whether a deep network learns at all."""
        self.quick = QuickSettings(self.controller, self.editor)
        self.quick.setObjectName("quick_settings")
        bar = QToolBar("Quick settings", self)
        bar.setObjectName("toolbar_quick")
        bar.setMovable(False)
        bar.addWidget(self.time_mode.switch)
        bar.addSeparator()
        for key in ("play", "step", "micro"):
            bar.addAction(self.playback_actions[key])
        bar.addSeparator()
        bar.addWidget(self.quick)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.top_bar = bar

    def _build_docks(self) -> None:
        self.docks: dict[str, QDockWidget] = {}
        self.views: dict[str, QWidget] = {}
        self.controls = ControlsPanel(self.controller, self.editor, self.playback_actions)
        self.controls.setObjectName("controls")
        self._add_dock("dock_controls", "Controls", self.controls, _LEFT)
        for name, title, module, cls, area in DOCKS:
            view = _load_view(module, cls, self.controller)
            self.views[module] = view
            self._add_dock(name, title, view, area)
        d = self.docks
        # right column: flow on top, diagnosis and inspector tabbed below it;
        # bottom row: loss | history | boundary
        self.splitDockWidget(d["dock_flow"], d["dock_diagnosis"], Qt.Orientation.Vertical)
        self.tabifyDockWidget(d["dock_diagnosis"], d["dock_inspector"])
        self.tabifyDockWidget(d["dock_inspector"], d["dock_factors"])
        d["dock_diagnosis"].raise_()
        self.splitDockWidget(d["dock_loss"], d["dock_history"], Qt.Orientation.Horizontal)
        self.splitDockWidget(d["dock_history"], d["dock_boundary"], Qt.Orientation.Horizontal)
        self.resizeDocks([d["dock_controls"]], [300], Qt.Orientation.Horizontal)
        self.resizeDocks([d["dock_flow"]], [470], Qt.Orientation.Horizontal)
        self.resizeDocks([d["dock_loss"]], [260], Qt.Orientation.Vertical)
        self.diagnosis = self.views.get("diagnosis")

    def _add_dock(self, name: str, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        self.docks[name] = dock
        return dock

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        file.setObjectName("menu_file")
        self.menu_presets = file.addMenu("&New from preset")
        self.menu_presets.setObjectName("menu_presets")
        self.menu_presets.aboutToShow.connect(self._fill_presets_menu)
        self._fill_presets_menu()
        file.addAction(self.action_open)
        file.addSeparator()
        file.addAction(self.action_save)
        file.addAction(self.action_save_as)
        file.addAction(self.action_embed_csv)
        file.addSeparator()
        file.addAction(self.action_export)
        file.addSeparator()
        file.addAction(self.action_quit)

        edit = bar.addMenu("&Edit")
        edit.setObjectName("menu_edit")
        edit.addAction(self.action_undo)
        edit.addAction(self.action_redo)

        run = bar.addMenu("&Run")
        run.setObjectName("menu_run")
        for action in self.playback_actions.values():
            run.addAction(action)
        from ui.views.sweep import add_sweep_action  # issue 11: Run > Sweep…

        run.addSeparator()
        self.action_sweep = add_sweep_action(self, run)

        view = bar.addMenu("&View")
        view.setObjectName("menu_view")
        self.dock_actions = {}
        for name, dock in self.docks.items():
            toggle = dock.toggleViewAction()
            toggle.setObjectName(f"toggle_{name}")
            self.dock_actions[name] = toggle
            view.addAction(toggle)
        view.addSeparator()
        self.action_reset_layout = QAction("Reset layout", self)
        self.action_reset_layout.setObjectName("action_reset_layout")
        self.action_reset_layout.triggered.connect(self.reset_layout)
        view.addAction(self.action_reset_layout)
        # the mode switch (issue 9): through time builds its page and compiles its kernels
        # when first chosen
        view.addSeparator()
        view.addAction(self.time_mode.actions[DEPTH])
        view.addAction(self.time_mode.actions[TIME])

        help_menu = bar.addMenu("&Help")
        help_menu.setObjectName("menu_help")
        self.topics = _glossary_topics()
        self.action_help = self._action("action_help", "&Help topics", lambda: self.show_help(),
                                        [QKeySequence.StandardKey.HelpContents])
        self.action_help.setEnabled(bool(self.topics))
        help_menu.addAction(self.action_help)
        self.action_about = QAction("&About", self)
        self.action_about.setObjectName("action_about")
        self.action_about.triggered.connect(self.show_about)
        help_menu.addAction(self.action_about)

    def _fill_presets_menu(self) -> None:
        self.menu_presets.clear()
        add_preset_actions(self.menu_presets, list_presets(), "preset_", self.open_preset,
                           "(no presets found)")
        self.time_mode.fill_presets_menu(self.menu_presets)
        self.menu_presets.setToolTipsVisible(True)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status = {}
        # (key, tooltip, the widest text expected): each label gets a fixed size, since a
        # label that may grow re-lays out the whole window whenever its text changes
        for key, tip, widest in (
                ("step", "Completed training iterations", "Step 00000000"),
                ("phase", "What the last micro-step computed", "backward · layer 0000"),
                ("loss", "Training loss of the last batch", "Loss -0.00e+000"),
                ("accuracy", "Accuracy on the held-out points", "Held-out 100.0%"),
                ("rate", "Training iterations per second", "000,000 steps/s")):
            label = QLabel()
            label.setObjectName(f"status_{key}")
            label.setToolTip(tip)
            label.setContentsMargins(10, 0, 10, 0)
            label.setFixedSize(label.fontMetrics().horizontalAdvance(widest) + 24,
                               label.sizeHint().height())
            bar.addPermanentWidget(label)
            self.status[key] = label
        self.compiling_label = QLabel("Compiling kernels…")
        self.compiling_label.setObjectName("status_compiling")
        self.compiling_bar = QProgressBar()
        self.compiling_bar.setObjectName("compiling_bar")
        self.compiling_bar.setRange(0, 0)  # busy: no known end
        self.compiling_bar.setMaximumWidth(120)
        self.compiling_bar.setMaximumHeight(14)
        self.compiling_bar.setTextVisible(False)
        bar.addWidget(self.compiling_label)
        bar.addWidget(self.compiling_bar)
        self._on_compiling_changed(False)
        self.status["step"].setText("Step —")

    def _connect(self) -> None:
        c = self.controller
        c.snapshot_changed.connect(self._on_snapshot_changed)
        c.experiment_changed.connect(self._on_experiment_changed)
        c.running_changed.connect(self._on_running_changed)
        c.compiling_changed.connect(self._on_compiling_changed)
        c.rate_changed.connect(self._on_rate_changed)
        c.diverged.connect(self._on_diverged)
        c.error.connect(self._on_error)
        c.start_failed.connect(self._on_start_failed)
        c.ready.connect(self._on_ready)
        canvas = self.canvas
        for signal, slot in (("skip_requested", self.editor.add_skip),
                             ("skip_remove_requested", self.editor.remove_skip),
                             ("activation_requested", self.editor.set_activation),
                             ("batchnorm_requested", self.editor.set_batchnorm),
                             ("width_requested", self.editor.set_width),
                             ("insert_layer_requested", self.editor.insert_layer),
                             ("delete_layer_requested", self.editor.delete_layer)):
            if hasattr(canvas, signal):
                getattr(canvas, signal).connect(slot)
        if hasattr(self.diagnosis, "remedy_requested"):
            self.diagnosis.remedy_requested.connect(self.editor.apply_remedy)
        if hasattr(self.diagnosis, "help_requested"):
            self.diagnosis.help_requested.connect(self.show_help)

    # -- settings --------------------------------------------------------------------------
    def _available(self):
        screen = self.screen() or QApplication.primaryScreen()
        return screen.availableGeometry() if screen is not None else None

    def _fitted_size(self, size: QSize) -> QSize:
        """``size``, made smaller where the screen is smaller (room left for the frame)."""
        avail = self._available()
        if avail is None:
            return size
        return QSize(min(size.width(), avail.width() - 16),
                     min(size.height(), avail.height() - 40))

    def _restore_settings(self) -> None:
        """The saved window size and dock layout, but only if that window fits this
        screen: squeezed into a smaller one, the saved dock sizes clip the panels."""
        geometry = self.settings.value(KEY_GEOMETRY)
        if not (isinstance(geometry, QByteArray) and not geometry.isEmpty()):
            return
        default_size = self.size()
        # the size it was saved at: Qt squeezes a restored geometry onto the screen, and
        # the dock layout saved with it would come back skewed
        saved = self.settings.value(KEY_SIZE)
        self.restoreGeometry(geometry)
        if not isinstance(saved, QSize):
            saved = self.size()
        avail = self._available()
        # (a screen smaller than the window's minimum fits no window: any will do)
        least = self.minimumSizeHint()
        if avail is not None and (saved.width() > max(avail.width(), least.width())
                                  or saved.height() > max(avail.height(), least.height())):
            self.showNormal()
            self.resize(default_size)
            self.move(avail.topLeft())
            return
        state = self.settings.value(KEY_STATE)
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)

    def save_settings(self) -> None:
        self.settings.setValue(KEY_GEOMETRY, self.saveGeometry())
        self.settings.setValue(KEY_SIZE, self.size())
        # the dock layout of depth mode (time mode hides the docks)
        state = self.time_mode.depth_dock_state() if self.time_mode.active else None
        self.settings.setValue(KEY_STATE, state if state is not None else self.saveState())
        if self.current_path:
            self.settings.setValue(KEY_LAST_PATH, self.current_path)
        else:
            self.settings.remove(KEY_LAST_PATH)
        self.settings.sync()

    def reset_layout(self) -> None:
        for dock in self.docks.values():
            dock.setFloating(False)
        self.restoreState(self._default_state)
        for dock in self.docks.values():
            dock.show()

    # -- controller -> window ------------------------------------------------------------------
    def _on_ready(self) -> None:
        self._set_sim_actions_enabled(True)
        self.settings.remove(KEY_STARTING)  # it started: safe to reopen next time
        if self.current_path:
            self.settings.setValue(KEY_LAST_PATH, self.current_path)
        with self.controller.locked() as sim:
            self._clean_experiment = self._experiment_now = sim.experiment
        self._update_title()
        if self._startup_pretraining is not None:
            # the start-up file asks for pretraining: run it on that file's network, not
            # on the default that replaces it when the file could not be built
            experiment, pretraining = self._startup_pretraining
            self._startup_pretraining = None
            with self.controller.locked() as sim:
                built = sim.experiment == experiment
            if built and self._pending_open is None:
                self._start_pretraining(pretraining)
        if self._pending_open is not None:
            experiment, path, pretraining = self._pending_open
            self._pending_open = None
            self._open(experiment, path, pretraining)
        if self._pending_comparison is not None:
            spec, path = self._pending_comparison
            self._pending_comparison = None
            self._open_comparison(spec, path)

    def _set_sim_actions_enabled(self, on: bool) -> None:
        if self.time_mode.active:  # the feedforward side became ready behind the time page
            self.time_mode.update_playback()
            return
        for action in (*self.playback_actions.values(), self.action_save, self.action_save_as):
            action.setEnabled(on)
        self.quick.setEnabled(on)

    def _on_compiling_changed(self, compiling: bool) -> None:
        self.compiling_label.setVisible(compiling)
        self.compiling_bar.setVisible(compiling)
        if compiling:
            self.compiling_label.setText(getattr(self.controller, "startup_text",
                                                 "Compiling kernels\u2026"))
            self.status["phase"].setText("starting…")

    def _on_snapshot_changed(self, snap) -> None:
        s = self.status
        s["step"].setText(f"Step {snap.step}")
        phase = snap.phase if not snap.layer else f"{snap.phase} · layer {snap.layer}"
        s["phase"].setText(phase)
        s["loss"].setText(f"Loss {_num(snap.loss)}")
        acc = snap.val_accuracy
        s["accuracy"].setText("Held-out —" if acc != acc else f"Held-out {acc:.1%}")
        if snap.divergence is None and self.banner.kind == "diverged":
            self.banner.dismiss()

    def _on_rate_changed(self, rate: float) -> None:
        if not self.controller.is_playing:
            return
        self.status["rate"].setText(f"{rate:,.0f} steps/s" if rate >= 10 else
                                    f"{rate:.1f} steps/s")

    def _on_running_changed(self, running: bool) -> None:
        if self.time_mode.active:
            return  # the Play button shows the through-time run
        self.action_play.setText("Pause" if running else "Play")
        if not running:
            self.status["rate"].setText("")

    def _on_experiment_changed(self, experiment) -> None:
        self._name = experiment.name
        self._experiment_now = experiment
        if self.banner.kind == "error":  # a later change went through: the error is old
            self.banner.dismiss()
        self._show_description(experiment)
        self._update_title()

    def _show_description(self, experiment) -> None:
        self.note.set_experiment(experiment.name, experiment.description)

    @property
    def is_modified(self) -> bool:
        """Settings changed since the experiment was opened or saved (the active mode's)."""
        return self.mode_modified(TIME if self.time_mode.active else DEPTH)

    def mode_modified(self, mode: str) -> bool:
        if mode == TIME:
            return self.time_mode.is_modified
        return (self._clean_experiment is not None and self._experiment_now is not None
                and self._experiment_now != self._clean_experiment)

    def _mark_clean(self) -> None:
        if self.controller.is_ready:
            with self.controller.locked() as sim:
                self._clean_experiment = self._experiment_now = sim.experiment
        self._update_title()

    # test runs answer the unsaved-work question themselves when the window is closed
    # at the end of a test ("discard"); None asks the user
    unattended_answer: str | None = None

    def ask_unsaved(self, doing: str, mode: str | None = None) -> str:
        """"save", "discard" or "cancel": what to do with unsaved edits before ``doing``."""
        if self.unattended_answer is not None:
            return self.unattended_answer
        box = QMessageBox(self)
        box.setObjectName("unsaved_box")
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle(APP_NAME)
        box.setText(f"Save the changes to “{self._title_name(mode)}” before {doing}?")
        box.setInformativeText("Otherwise the edits made since it was opened or last saved "
                               "are lost (they cannot be undone afterwards).")
        box.setStandardButtons(QMessageBox.StandardButton.Save
                               | QMessageBox.StandardButton.Discard
                               | QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        box.setEscapeButton(QMessageBox.StandardButton.Cancel)
        answer = box.exec()
        box.deleteLater()
        return {QMessageBox.StandardButton.Save: "save",
                QMessageBox.StandardButton.Discard: "discard"}.get(
                    QMessageBox.StandardButton(answer), "cancel")

    def maybe_save(self, doing: str, mode: str | None = None) -> bool:
        """True when it is fine to go on with ``doing`` (nothing unsaved, saved, or the
        user discarded the edits); False when the user cancelled. ``mode`` is the mode
        whose experiment is about to be replaced (default: the active one)."""
        mode = mode or (TIME if self.time_mode.active else DEPTH)
        if not self.mode_modified(mode):
            return True
        answer = self.ask_unsaved(doing, mode)
        if answer == "save":
            return self.save(mode)
        return answer == "discard"

    def _on_diverged(self, report) -> None:
        self.controller.pause()
        self.banner.show_message(report.message, "diverged")
        self.statusBar().showMessage("Training diverged", STATUS_MESSAGE_MS)

    def _on_error(self, message: str) -> None:
        self.show_message(message)

    def _on_start_failed(self, _message: str) -> None:
        # the file did not start (the controller falls back to the default experiment):
        # forget it, so neither Save nor the next start goes back to it
        self.current_path = None
        self.settings.remove(KEY_LAST_PATH)
        self.settings.remove(KEY_STARTING)

    def show_message(self, text: str, kind: str = "error") -> None:
        """A message the user should read, without stopping anything."""
        self.banner.show_message(text, kind)
        self.statusBar().showMessage(text.splitlines()[0] if text else "", STATUS_MESSAGE_MS)

    def _title_name(self, mode: str | None = None) -> str:
        if (mode or (TIME if self.time_mode.active else DEPTH)) == TIME:
            return self.time_mode.title_name()
        if self.current_path:
            return Path(self.current_path).name
        return self._name or "Untitled"

    def _update_title(self) -> None:
        """“file.json* — Gradient Flow Lab”: the file (or the preset's name while it is
        not saved anywhere), and a star while there are unsaved edits."""
        mode = " · through time" if self.time_mode.active else ""
        self.setWindowTitle(f"{self._title_name()}[*] — {APP_NAME}{mode}")
        self.setWindowModified(self.is_modified)

    # -- files ---------------------------------------------------------------------------------
    def set_experiment_path(self, path: str | None) -> None:
        """The file the experiment on screen belongs to. Remembered for the next start
        only once the simulation runs (``_on_ready``), never for a start that failed."""
        self.current_path = str(path) if path else None
        if self.current_path:
            if self.controller.is_ready:
                self.settings.setValue(KEY_LAST_PATH, self.current_path)
            self.settings.setValue(KEY_LAST_DIR, str(Path(self.current_path).parent))
        self._update_title()

    def _dialog_dir(self) -> str:
        if self.current_path:
            return str(Path(self.current_path).parent)
        return str(self.settings.value(KEY_LAST_DIR, "") or "")

    def open_dialog(self) -> None:
        if not self.maybe_save("opening another experiment"):
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open experiment", self._dialog_dir(),
                                              EXPERIMENT_FILTER)
        if path:
            self._open_path(path)

    def open_path(self, path: str) -> bool:
        if not self.maybe_save("opening another experiment"):
            return False
        return self._open_path(path)

    def _open_path(self, path: str) -> bool:
        """Open an experiment file; one with a "pretraining" section is then pretrained
        layer by layer (as Run > Pretrain layer by layer does) before training; a
        comparison file opens in a compare window."""
        recurrent = _recurrent_file(path)
        if recurrent is not None:  # "mode": "recurrent": through time
            if self.time_mode.active is False and not self.maybe_save(
                    "opening another experiment", mode=TIME):
                return False
            try:
                from simulator.recurrent.experiment import load_recurrent_experiment

                experiment = load_recurrent_experiment(path)
            except ExperimentError as e:
                self.show_message(f"Could not open the experiment. {e}")
                return False
            return self.time_mode.open(experiment, path)
        if self.time_mode.active and not self.maybe_save("opening another experiment",
                                                         mode=DEPTH):
            return False
        try:
            study = load_study(path)
        except ExperimentError as e:
            self.show_message(f"Could not open the experiment. {e}")
            return False
        if self.time_mode.active:
            self.time_mode.set_mode(DEPTH)
        if isinstance(study, ComparisonSpec):
            return self._open_comparison(study, path)
        experiment = self._locate_missing_csv(study.experiment)
        if experiment is None:
            return False
        return self._open(experiment, path, study.pretraining)

    def _open_comparison(self, spec: ComparisonSpec, path: str) -> bool:
        """A comparison file: A and B in a compare window; this window stays as it is."""
        from .compare_window import open_comparison

        if open_comparison(self, spec, source=str(path)) is None:
            return False
        self.statusBar().showMessage(f"Opened the comparison “{spec.name}” in a compare window",
                                     STATUS_MESSAGE_MS)
        return True

    def _start_pretraining(self, spec: PretrainSpec) -> bool:
        """Pretrain the network just opened with the file's settings (one undo step)."""
        job = self.pretrain_job
        job.spec = spec
        if not job.start():
            return False
        self.statusBar().showMessage("Pretraining layer by layer, as the file asks, before "
                                     "training")
        return True

    def _locate_missing_csv(self, experiment: Experiment) -> Experiment | None:
        """An experiment that links to a CSV file that is not there (moved, or the
        experiment file was copied alone): say so and let the user find the file.
        Returns the experiment with the new path, or None if the user gives up."""
        data = experiment.data
        if data.kind != "csv" or data.text is not None or os.path.exists(data.path):
            return experiment
        box = QMessageBox(QMessageBox.Icon.Warning, "Data file not found",
                          f"“{experiment.name}” trains on a CSV file that is not there:\n"
                          f"{data.path}\n\nLocate the file to open the experiment.",
                          QMessageBox.StandardButton.Cancel, self)
        box.setTextFormat(Qt.TextFormat.PlainText)
        locate = box.addButton("Locate…", QMessageBox.ButtonRole.AcceptRole)
        box.setObjectName("locate_csv_box")
        box.exec()
        found = ""
        if box.clickedButton() is locate:
            found, _ = QFileDialog.getOpenFileName(self, "Locate the data file",
                                                   str(Path(data.path).parent),
                                                   "CSV files (*.csv *.tsv *.txt);;All files (*)")
        if not found:
            self.show_message(f"Not opened: the data file {data.path} is missing.")
            return None
        try:
            return replace(experiment, data=replace(data, path=found))
        except ValueError as e:
            self.show_message(f"Could not use {found}. {e}")
            return None

    def open_preset(self, key: str) -> bool:
        """A feedforward preset: back to depth mode if in time mode, then load it."""
        if not self.maybe_save("loading the preset", mode=DEPTH):
            return False
        try:
            experiment = load_preset(key)
        except ExperimentError as e:
            self.show_message(f"Could not load the preset. {e}")
            return False
        if self.time_mode.active:
            self.time_mode.set_mode(DEPTH)
        return self._open(experiment, None)

    def _open(self, experiment: Experiment, path: str | None,
              pretraining: PretrainSpec | None = None) -> bool:
        if not self.controller.is_ready:
            # still compiling: open it as soon as the simulation exists
            self._pending_open = (experiment, path, pretraining)
            self._name = experiment.name
            self._update_title()
            return True
        job = getattr(self, "pretrain_job", None)
        if job is not None:
            job.stop()  # a pretraining still running belongs to the network being replaced
        if not self.controller.open_experiment(experiment):
            return False
        self.set_experiment_path(path)
        self.banner.dismiss()
        self._name = experiment.name
        self._mark_clean()
        self._file_pretraining = pretraining
        self.statusBar().showMessage(f"Opened “{experiment.name}”", STATUS_MESSAGE_MS)
        if pretraining is not None:
            self._start_pretraining(pretraining)
        return True

    def save(self, mode: str | None = None) -> bool:
        """Save the experiment of ``mode`` (default: the active one) to its file."""
        time = (mode or (TIME if self.time_mode.active else DEPTH)) == TIME
        current = self.time_mode.path if time else self.current_path
        if not current:
            return self.save_as_dialog(mode)
        return self.save_to(current, mode)

    def save_as_dialog(self, mode: str | None = None) -> bool:
        time = (mode or (TIME if self.time_mode.active else DEPTH)) == TIME
        if time:
            if self.time_mode.experiment is None:
                return False
            current = self.time_mode.path
            name = self.time_mode.experiment.name
        else:
            if not self.controller.is_ready:
                return False
            current, name = self.current_path, self._name
        start = current or str(Path(self._dialog_dir()) / f"{_slug(name)}.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save experiment", start, EXPERIMENT_FILTER)
        if not path:
            return False
        if not Path(path).suffix:
            path += ".json"
        return self.save_to(path, mode)

    def save_to(self, path: str, mode: str | None = None) -> bool:
        if (mode or (TIME if self.time_mode.active else DEPTH)) == TIME:
            return self.time_mode.save_to(path)
        if not self.controller.is_ready:
            return False
        with self.controller.locked() as sim:
            experiment = sim.experiment
        # the file's pretraining section is kept, while the network can still be pretrained
        sections, dropped = None, ""
        if self._file_pretraining is not None:
            try:
                check_pretrainable(experiment.network)
                sections = {"pretraining": self._file_pretraining.to_dict()}
            except SpecError as e:
                dropped = f" (without its pretraining section: {e})"
        try:
            save_experiment(experiment, path,
                            embed_csv=None if self.action_embed_csv.isChecked() else False,
                            sections=sections)
        except ExperimentError as e:
            self.show_message(f"Could not save. {e}")
            return False
        self.set_experiment_path(path)
        self._clean_experiment = experiment
        if dropped:
            self._file_pretraining = None
        self._update_title()
        self.statusBar().showMessage(f"Saved to {path}{dropped}", STATUS_MESSAGE_MS)
        return True

    # -- help ------------------------------------------------------------------------------------
    def show_help(self, topic_key: str | None = None) -> HelpWindow | None:
        """Open the help window (at ``topic_key`` when given). Returns it, or None when
        this build has no glossary."""
        if not self.topics:
            self.show_message("Help is not available in this build.", "info")
            return None
        if self.help_window is None:
            self.help_window = HelpWindow(self.topics, self)
        if topic_key:
            self.help_window.show_topic(topic_key)
        self.help_window.show()
        self.help_window.raise_()
        self.help_window.activateWindow()
        return self.help_window

    def show_about(self) -> QMessageBox:
        box = QMessageBox(self)
        box.setObjectName("about_box")
        box.setWindowTitle(f"About {APP_NAME}")
        box.setIcon(QMessageBox.Icon.Information)
        box.setText(f"<b>{APP_NAME}</b>")
        box.setInformativeText(
            "A small laboratory for one of deep learning's oldest troubles: the error signal "
            "fading (or blowing up) on its way back through many layers. Step through "
            "backpropagation one layer at a time, see where the signal dies, then try a fix — "
            "a skip link, another activation, batch norm, a better initialization — and watch "
            "the flow come back in the same run.")
        box.setStandardButtons(QMessageBox.StandardButton.Close)
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()
        return box

    # -- closing -----------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        if not (self.maybe_save("quitting", DEPTH) and self.maybe_save("quitting", TIME)):
            event.ignore()
            return
        self.save_settings()
        self.time_mode.shutdown()
        self.controller.shutdown()
        if self.help_window is not None:
            self.help_window.close()
        super().closeEvent(event)


register_window_class(MainWindow)  # File > Export's "whole window" view copies this class


# -- start-up ------------------------------------------------------------------------------------
def fallback_experiment() -> Experiment:
    """The experiment to show when no preset can be found: a deep sigmoid stack whose
    lower layers hardly learn."""
    return Experiment(
        name="Deep sigmoid network",
        description="Ten sigmoid layers with the old uniform initialization: the error "
                    "signal shrinks at every layer on its way down.",
        network=uniform_spec(2, 2, depth=10, width=16, activation="sigmoid",
                             init="uniform_fanin"),
        data=DataSpec(kind="spiral", n_samples=400, noise=0.05),
        training=TrainSpec(optimizer="sgd", lr=0.1, batch_size=32),
        seed=0)


class RecurrentStart:
    """What ``_choose`` returns for a through-time file given at start: open it in time
    mode once the window shows."""

    def __init__(self, path: str):
        self.path = path


def choose_experiment(file: str | None, settings: QSettings
                      ) -> tuple[Experiment, str | None, str | None]:
    """(experiment, its path or None, a problem to tell the user or None).

    FILE from the command line first; else the last experiment if it still loads;
    else the preset "deep_sigmoid", the first preset, or a built-in one."""
    return _choose(file, settings)[:3]


def _choose(file: str | None, settings: QSettings):
    """``choose_experiment`` plus what else the file asks for: its pretraining
    (a ``PretrainSpec``), or, for a comparison file, ``(ComparisonSpec, path)`` (the
    window then shows the default experiment and the comparison opens beside it)."""
    problem = None
    if file and _recurrent_file(file) is not None:
        # a through-time experiment: the window starts in depth mode on the default and
        # opens the file in time mode once shown (its kernels compile then)
        return default_experiment(), None, None, RecurrentStart(str(Path(file).resolve()))
    if file:
        try:
            study = load_study(file)
        except ExperimentError as e:
            problem = f"Could not open the experiment. {e}"
        else:
            if isinstance(study, ComparisonSpec):
                return default_experiment(), None, None, (study, str(file))
            return study.experiment, str(Path(file).resolve()), None, study.pretraining
    else:
        last = settings.value(KEY_LAST_PATH)
        starting = settings.value(KEY_STARTING)
        if isinstance(last, str) and last and starting == last:
            # it was being started when the app last went away (killed, out of memory)
            settings.remove(KEY_LAST_PATH)
            settings.remove(KEY_STARTING)
            problem = (f"The last experiment ({last}) did not finish starting last time, "
                       "so it was not reopened. Open it with File > Open to try again.")
        elif isinstance(last, str) and last:
            try:
                study = load_study(last)
            except ExperimentError:
                study = None
            if isinstance(study, ComparisonSpec) or study is None:
                settings.remove(KEY_LAST_PATH)  # moved or broken: start from a preset
            else:
                return study.experiment, last, None, study.pretraining
    return default_experiment(), None, problem, None


def default_experiment() -> Experiment:
    """The preset "deep_sigmoid", else the first preset, else a built-in one."""
    keys = [key for key, _name, _desc in list_presets()]
    for key in ([DEFAULT_PRESET] if DEFAULT_PRESET in keys else []) + keys[:1]:
        try:
            return load_preset(key)
        except ExperimentError:
            continue
    return fallback_experiment()


def open_settings() -> QSettings:
    path = os.environ.get("GFL_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings(ORG_NAME, APP_NAME)


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="main.py", description="Open the Gradient Flow Lab.")
    parser.add_argument("file", nargs="?", help="an experiment (.json) to open")
    return parser.parse_args(argv)


def _quit_when_done(app: QApplication, window: MainWindow, controller, delay_ms: int,
                    screenshot: str | None) -> None:
    """Close the window ``delay_ms`` after start, but not while the simulation is still
    being built, so a test run exercises the whole start-up."""
    state = {"due": False, "done": False, "failed": False}

    def finish():
        if state["done"] or not state["due"]:
            return
        if not (controller.is_ready or state["failed"]):
            return
        state["done"] = True
        if screenshot:
            app.processEvents()
            window.grab().save(screenshot)
        window.close()
        app.quit()

    def due():
        state["due"] = True
        finish()

    def failed(_message):
        if not controller.is_ready:
            state["failed"] = True
            finish()

    controller.ready.connect(lambda: QTimer.singleShot(200, finish))
    controller.error.connect(failed)
    QTimer.singleShot(delay_ms, due)


def start_window(file: str | None, settings: QSettings) -> MainWindow:
    """Show the window on FILE (or the last experiment, or the default) and build its
    simulation in the background. A file that cannot be built (its data is gone, it
    does not fit in memory) is reported, forgotten, and the default experiment starts
    in its place: the window always ends up with a working simulation."""
    experiment, path, problem, extra = _choose(file, settings)
    controller = SimulationController(experiment, build_now=False)
    window = MainWindow(controller, Editor(controller), settings, path=path,
                        experiment=experiment)
    if isinstance(extra, PretrainSpec):
        window._startup_pretraining = (experiment, extra)
        window._file_pretraining = extra
    elif isinstance(extra, RecurrentStart):
        QTimer.singleShot(0, lambda: window._open_path(extra.path))
    elif extra is not None:
        window._pending_comparison = extra
    window.show()
    if problem:
        window.show_message(problem)
    if path:
        settings.setValue(KEY_STARTING, path)
        settings.sync()
    fallback = default_experiment() if path else None
    QTimer.singleShot(0, lambda: controller.build_in_background(fallback=fallback))
    return window


def main(argv=None) -> int:
    """``python main.py [FILE.json]``: open the window. argv excludes the program name."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = _parse_args(sys.argv[1:] if argv is None else list(argv))
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "gfl"])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORG_NAME)
    apply_theme(app)
    settings = open_settings()
    window = start_window(args.file, settings)
    controller = window.controller
    _collect_garbage_between_events(app)
    quit_after = os.environ.get("GFL_QUIT_AFTER_MS")
    if quit_after:
        _quit_when_done(app, window, controller, int(quit_after),
                        os.environ.get("GFL_SCREENSHOT") or None)
    return app.exec()


def _collect_garbage_between_events(app) -> None:
    """Python's cyclic collector normally runs whenever allocations pile up, which can
    be in the middle of a paint; collecting a pyqtgraph item's wrapper there deletes a
    C++ item the scene is drawing. Collect from a timer instead, between events; the
    objects alive after start-up are frozen so that each collection stays short."""
    import gc

    gc.collect()
    gc.freeze()
    gc.disable()
    timer = QTimer(app)
    timer.setInterval(1000)
    timer.timeout.connect(gc.collect)
    timer.start()


def _num(x: float) -> str:
    if x != x:
        return "—"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    return f"{x:.2e}"


def _recurrent_file(path: str):
    """The parsed JSON of ``path`` when it asks for the through-time mode, else None
    (the feedforward loader reports whatever is wrong with any other file)."""
    import json

    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and data.get("mode") == "recurrent" else None


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
    return slug or "experiment"


if __name__ == "__main__":
    sys.exit(main())
