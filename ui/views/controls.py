"""The Controls panel: data, network, training, the activation palette and playback.

The widgets mirror the current experiment (``controller.experiment_changed``);
a change made here goes through the Editor as one undoable command. While the
panel copies the experiment into its widgets their signals are blocked, so
syncing never creates a command. A value the simulator refuses is reported by
the Editor (``controller.error``) and the widget snaps back to the model.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import replace

from PySide6.QtCore import QMimeData, QObject, QPoint, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QDrag, QValidator
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressDialog,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from simulator.data import KINDS, MULTICLASS_KINDS, DataSpec, LoadCancelled, load_csv
from simulator.experiment import OPTIMIZERS
from simulator.spec import ACTIVATIONS, INITS, MAX_HIDDEN, MAX_WIDTH

from ..controller import SPEEDS

BACKGROUND_CSV_BYTES = 2 * 2**20  # larger CSV files are read off the GUI thread

ACTIVATION_MIME = "application/x-gfl-activation"
CSV_FILTER = "CSV files (*.csv *.txt);;All files (*)"
MAX_SEED = 2**31 - 1  # what a QSpinBox can hold

_KIND_TEXT = {"spiral": "Spiral", "circles": "Circles", "xor": "XOR", "gaussians": "Gaussian blobs",
              "moons": "Moons", "highdim": "Many inputs (teacher net)", "csv": "CSV file…"}
_INIT_TEXT = {"uniform_fanin": "Uniform ±1/√n (old default)", "glorot_uniform": "Glorot uniform",
              "glorot_normal": "Glorot normal", "he_uniform": "He uniform",
              "he_normal": "He normal", "lecun_normal": "LeCun normal",
              "orthogonal": "Orthogonal", "mean_field": "Mean field (σ_w, σ_b)"}
_OPT_TEXT = {"sgd": "SGD", "momentum": "SGD + momentum", "rmsprop": "RMSprop", "adam": "Adam"}
_SPEED_TEXT = {"slow": "Slow", "normal": "Normal", "quick": "Quick",
               "fast": "Fast (no animation)"}


class ScientificSpinBox(QDoubleSpinBox):
    """A spin box for quantities that span decades (learning rate, L2, clipping).

    Shows the value in short scientific form and steps along 1, 2, 5, 10, 20, ...
    so one arrow press is a sensible change whether the value is 1e-5 or 10.
    Stepping down from the smallest grid value reaches 0 when 0 is in range.
    """

    def __init__(self, minimum: float, maximum: float, parent=None):
        super().__init__(parent)
        self.setDecimals(12)  # so tiny values survive QDoubleSpinBox's rounding
        self.setRange(minimum, maximum)
        self.setKeyboardTracking(False)
        self.setAccelerated(True)

    def textFromValue(self, value: float) -> str:
        if value == 0:
            return "0"
        return f"{value:.3g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        t = text.strip()
        try:
            float(t)
            return QValidator.State.Acceptable, text, pos
        except ValueError:
            pass
        # a number still being typed: "", "1e", "-", "1.", "2e-"
        if all(c in "0123456789.eE+-" for c in t):
            return QValidator.State.Intermediate, text, pos
        return QValidator.State.Invalid, text, pos

    def fixup(self, text: str) -> str:
        return self.textFromValue(self.value())

    def stepBy(self, steps: int) -> None:
        value = self.value()
        for _ in range(abs(steps)):
            value = _grid_step(value, up=steps > 0, lowest=max(self.minimum(), 1e-6))
        self.setValue(min(max(value, self.minimum()), self.maximum()))

    def stepEnabled(self):
        return (QAbstractSpinBox.StepEnabledFlag.StepUpEnabled
                | QAbstractSpinBox.StepEnabledFlag.StepDownEnabled)


def _grid_step(value: float, up: bool, lowest: float) -> float:
    """The next value of the 1-2-5 grid above or below ``value``."""
    if value <= 0:
        return lowest if up else 0.0
    exponent = math.floor(math.log10(value))
    candidates = [m * 10.0**e for e in (exponent - 1, exponent, exponent + 1)
                  for m in (1, 2, 5)]
    tol = value * 1e-9
    if up:
        return min(c for c in candidates if c > value + tol)
    below = [c for c in candidates if c < value - tol]
    nxt = max(below)
    return 0.0 if nxt < lowest * (1 - 1e-9) else nxt


class ActivationChip(QLabel):
    """A draggable activation name; the network canvas accepts the drop."""

    def __init__(self, activation: str, parent=None):
        super().__init__(activation, parent)
        self.activation = activation
        self.setObjectName(f"chip_{activation}")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        self.setStyleSheet("QLabel { border: 1px solid palette(mid); border-radius: 8px;"
                           " padding: 2px 6px; background: palette(button); }")
        self.setToolTip(f"Drag “{activation}” onto a layer of the network to give it this "
                        "activation, or onto the “all layers” target to change every "
                        "hidden layer at once.")
        self._press: QPoint | None = None

    def mime_data(self) -> QMimeData:
        mime = QMimeData()
        mime.setData(ACTIVATION_MIME, self.activation.encode())
        mime.setText(self.activation)
        return mime

    def mousePressEvent(self, event):
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position().toPoint()
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event):
        if self._press is None or not event.buttons() & Qt.MouseButton.LeftButton:
            return
        if (event.position().toPoint() - self._press).manhattanLength() < 6:
            return
        self._press = None
        drag = QDrag(self)
        drag.setMimeData(self.mime_data())
        drag.setPixmap(self.grab())
        drag.exec(Qt.DropAction.CopyAction)

    def mouseReleaseEvent(self, event):
        self._press = None
        super().mouseReleaseEvent(event)


class ControlsPanel(QScrollArea):
    """Every setting of the experiment, plus playback.

    ``actions`` maps "reset", "micro", "step", "play" to the window's QActions, so
    the buttons here show the same shortcuts and state as the menus.
    """

    def __init__(self, controller, editor, actions: dict | None = None, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.editor = editor
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        body.setObjectName("controls_body")
        column = QVBoxLayout(body)
        column.setContentsMargins(6, 6, 6, 6)
        column.addWidget(self._build_playback(actions or {}))
        # the parts that edit the experiment: disabled until the simulation exists
        self._model_boxes = (self._build_data(), self._build_network(), self._build_palette(),
                             self._build_training())
        for box in self._model_boxes:
            column.addWidget(box)
        column.addStretch(1)
        self.setWidget(body)
        self.setMinimumWidth(body.sizeHint().width() + 24)
        self._experiment = None
        self._set_enabled(False)

        controller.experiment_changed.connect(self._on_experiment_changed)
        controller.error.connect(self._on_error)
        controller.ready.connect(self._on_ready)
        if controller.is_ready:
            self._on_ready()
            self._on_experiment_changed(controller.sim.experiment)

    # -- building ---------------------------------------------------------------------
    def _build_playback(self, actions: dict) -> QGroupBox:
        box = QGroupBox("Playback")
        grid = QGridLayout(box)
        self.playback_buttons = {}
        for col, key in enumerate(("reset", "micro", "step", "play")):
            button = QToolButton()
            button.setObjectName(f"button_{key}")
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            if key in actions:
                button.setDefaultAction(actions[key])
            self.playback_buttons[key] = button
            grid.addWidget(button, 0, col)
        self.speed = QComboBox()
        self.speed.setObjectName("speed")
        for key in SPEEDS:
            self.speed.addItem(_SPEED_TEXT.get(key, key), key)
        self.speed.setCurrentIndex(max(0, self.speed.findData(self.controller.speed)))
        self.speed.setToolTip("How fast Play trains. Fast trains in the background at full "
                              "speed and redraws the panels a few dozen times a second.")
        self.speed.currentIndexChanged.connect(
            lambda _i: self.controller.set_speed(self.speed.currentData()))
        self.animate = QCheckBox("Animate backward pass layer by layer")
        self.animate.setObjectName("animate_micro")
        self.animate.setChecked(self.controller.animate_micro_steps)
        self.animate.setToolTip("While playing, show every forward and backward layer as its "
                                "own frame, so you can watch the error signal travel down "
                                "(and shrink) one layer at a time.")
        self.animate.toggled.connect(self.controller.set_animate_micro_steps)
        self.speed.currentIndexChanged.connect(self._on_speed_shown)
        grid.addWidget(QLabel("Speed"), 1, 0)
        grid.addWidget(self.speed, 1, 1, 1, 3)
        grid.addWidget(self.animate, 2, 0, 1, 4)
        if "to_backward" in actions:
            jump = QToolButton()
            jump.setObjectName("button_to_backward")
            jump.setDefaultAction(actions["to_backward"])
            jump.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            self.playback_buttons["to_backward"] = jump
            grid.addWidget(jump, 3, 0, 1, 4)
        self._on_speed_shown()
        return box

    def _on_speed_shown(self, *_) -> None:
        # fast mode trains in the background and never animates: say so
        fast = SPEEDS.get(self.speed.currentData()) is None
        self.animate.setEnabled(not fast)
        self.animate.setToolTip(
            "Fast mode never animates: choose another speed to watch the layers one by one."
            if fast else
            "While playing, show every forward and backward layer as its own frame, so you "
            "can watch the error signal travel down (and shrink) one layer at a time.")

    def _build_data(self) -> QGroupBox:
        box = QGroupBox("Data")
        form = _form(box)
        self.kind = QComboBox()
        self.kind.setObjectName("data_kind")
        for kind in KINDS:
            self.kind.addItem(_KIND_TEXT.get(kind, kind), kind)
        self.kind.setToolTip("The problem to learn. The 2-D sets show a decision boundary; "
                             "“CSV file” reads your own data (last column = label).")
        self.kind.activated.connect(self._on_kind_chosen)
        form.addRow("Data set", self.kind)
        self.noise = _double(0.0, 10.0, 0.05, 2, "noise",
                             "How much random jitter is added to each point.")
        self.noise.valueChanged.connect(lambda v: self._edit_data(noise=v))
        form.addRow("Noise", self.noise)
        self.samples = _int(10, 200_000, 50, "samples",
                            "Number of points, training and held-out together.")
        self.samples.valueChanged.connect(lambda v: self._edit_data(n_samples=v))
        form.addRow("Samples", self.samples)
        self.classes = _int(2, 10, 1, "classes", "Number of spiral arms or Gaussian blobs.")
        self.classes.valueChanged.connect(lambda v: self._edit_data(classes=v))
        form.addRow("Classes", self.classes)
        self.dims = _int(1, 1000, 1, "dims", "Number of input features of the many-input task.")
        self.dims.valueChanged.connect(lambda v: self._edit_data(dims=v))
        form.addRow("Inputs", self.dims)
        self.import_csv = QPushButton("Import CSV…")
        self.import_csv.setObjectName("import_csv")
        self.import_csv.setToolTip("Train on your own table: numeric columns are inputs, the "
                                   "last column is the label (whole numbers) or a target.")
        self.import_csv.clicked.connect(self.choose_csv)
        self.csv_name = QLabel()
        self.csv_name.setObjectName("csv_name")
        self.csv_name.setWordWrap(True)
        form.addRow(self.import_csv, self.csv_name)
        return box

    def _build_network(self) -> QGroupBox:
        box = QGroupBox("Network")
        form = _form(box)
        self.depth = _int(0, MAX_HIDDEN, 1, "depth",
                          "Number of hidden layers. New layers copy the top one; removing "
                          "takes layers off the top.")
        self.depth.valueChanged.connect(self._on_depth)
        form.addRow("Hidden layers", self.depth)
        self.width = _int(0, MAX_WIDTH, 1, "width", "Units in every hidden layer.")
        self.width.valueChanged.connect(lambda v: self.editor.set_width(0, v))
        form.addRow("Width (all)", self.width)
        self.activation = QComboBox()
        self.activation.setObjectName("activation_all")
        self.activation.addItems(ACTIVATIONS)
        self.activation.setPlaceholderText("mixed")
        self.activation.setToolTip("Activation of every hidden layer. Right-click a layer in "
                                   "the network, or drop a chip on it, to change just one.")
        self.activation.activated.connect(
            lambda i: self.editor.set_activation(0, self.activation.itemText(i)))
        form.addRow("Activation (all)", self.activation)
        self.init = QComboBox()
        self.init.setObjectName("init")
        for key in INITS:
            self.init.addItem(_INIT_TEXT.get(key, key), key)
        self.init.setToolTip("How the starting weights are drawn. Changing it draws new "
                             "weights for the whole network.")
        self.init.activated.connect(lambda _i: self.editor.set_init(init=self.init.currentData()))
        form.addRow("Initialization", self.init)
        self.gain = _double(0.0, 1000.0, 0.1, 3, "gain",
                            "Multiplies every initial weight: above 1 pushes towards exploding, "
                            "below 1 towards vanishing gradients.")
        self.gain.valueChanged.connect(lambda v: self.editor.set_init(gain=v))
        form.addRow("Gain", self.gain)
        self.sigma_w = _double(0.0, 100.0, 0.1, 3, "sigma_w",
                               "Weight spread of the mean-field init: weights ~ N(0, σ_w²/n).")
        self.sigma_w.valueChanged.connect(lambda v: self.editor.set_init(sigma_w=v))
        self.sigma_b = _double(0.0, 100.0, 0.05, 3, "sigma_b",
                               "Bias spread of the mean-field init: biases ~ N(0, σ_b²).")
        self.sigma_b.valueChanged.connect(lambda v: self.editor.set_init(sigma_b=v))
        self._sigma_rows = (QLabel("σ_w"), QLabel("σ_b"))
        form.addRow(self._sigma_rows[0], self.sigma_w)
        form.addRow(self._sigma_rows[1], self.sigma_b)
        self.seed = _int(0, MAX_SEED, 1, "seed",
                         "Random seed of the initial weights and the batch order. Changing it "
                         "starts training over (like Reset).")
        self.seed.valueChanged.connect(self.editor.set_seed)
        form.addRow("Seed", self.seed)
        return box

    def _build_palette(self) -> QGroupBox:
        box = QGroupBox("Activation palette")
        box.setToolTip("Drag a chip onto a layer of the network.")
        grid = QGridLayout(box)
        grid.setSpacing(4)
        self.chips = {}
        for i, act in enumerate(ACTIVATIONS):
            chip = ActivationChip(act)
            self.chips[act] = chip
            grid.addWidget(chip, i // 3, i % 3)
        return box

    def _build_training(self) -> QGroupBox:
        box = QGroupBox("Training")
        form = _form(box)
        self.optimizer = QComboBox()
        self.optimizer.setObjectName("optimizer")
        for key in OPTIMIZERS:
            self.optimizer.addItem(_OPT_TEXT.get(key, key), key)
        self.optimizer.activated.connect(
            lambda _i: self.editor.update_training(optimizer=self.optimizer.currentData()))
        form.addRow("Optimizer", self.optimizer)
        self.lr = ScientificSpinBox(0.0, 1000.0)
        self.lr.setObjectName("lr")
        self.lr.setToolTip("Step size of every update. The arrows move along 1, 2, 5, 10, …")
        self.lr.valueChanged.connect(lambda v: self.editor.update_training(lr=v))
        form.addRow("Learning rate", self.lr)
        self.batch = _int(1, 1_000_000, 8, "batch_size",
                          "Examples per update. Larger than the training set means full batch.")
        self.batch.valueChanged.connect(lambda v: self.editor.update_training(batch_size=v))
        form.addRow("Batch size", self.batch)
        self.l2 = ScientificSpinBox(0.0, 10.0)
        self.l2.setObjectName("l2")
        self.l2.setToolTip("L2 weight decay: pulls every weight a little towards zero each step.")
        self.l2.valueChanged.connect(lambda v: self.editor.update_training(weight_decay=v))
        form.addRow("L2", self.l2)
        self.clip_norm = ScientificSpinBox(0.0, 1e6)
        self.clip_norm.setObjectName("clip_norm")
        self.clip_norm.setToolTip("Rescale the whole gradient to this length when it is longer "
                                  "(0 = off). The usual cure for exploding gradients.")
        self.clip_norm.valueChanged.connect(lambda v: self.editor.update_training(clip_norm=v))
        form.addRow("Clip norm", self.clip_norm)
        self.clip_value = ScientificSpinBox(0.0, 1e6)
        self.clip_value.setObjectName("clip_value")
        self.clip_value.setToolTip("Cut every gradient component to ± this value (0 = off).")
        self.clip_value.valueChanged.connect(
            lambda v: self.editor.update_training(clip_value=v))
        form.addRow("Clip value", self.clip_value)
        return box

    # -- model -> widgets ------------------------------------------------------------------
    def _set_enabled(self, on: bool) -> None:
        for box in self._model_boxes:
            box.setEnabled(on)

    def _on_ready(self) -> None:
        self._set_enabled(True)

    def _on_error(self, _message: str) -> None:
        # the value typed was refused: show the model's value again
        if self._experiment is not None:
            self._on_experiment_changed(self._experiment)

    def _on_experiment_changed(self, experiment) -> None:
        self._experiment = experiment
        widgets = (self.kind, self.noise, self.samples, self.classes, self.dims, self.depth,
                   self.width, self.activation, self.init, self.gain, self.sigma_w,
                   self.sigma_b, self.seed, self.optimizer, self.lr, self.batch, self.l2,
                   self.clip_norm, self.clip_value)
        blockers = [QSignalBlocker(w) for w in widgets]
        try:
            self._sync(experiment)
        finally:
            del blockers

    def _sync(self, exp) -> None:
        data, net, train = exp.data, exp.network, exp.training
        self.kind.setCurrentIndex(self.kind.findData(data.kind))
        self.noise.setValue(data.noise)
        self.samples.setValue(data.n_samples)
        self.classes.setValue(data.classes)
        self.dims.setValue(data.dims)
        toy = data.kind != "csv"
        self.noise.setEnabled(toy)
        self.samples.setEnabled(toy)
        self.classes.setEnabled(data.kind in MULTICLASS_KINDS)
        self.dims.setEnabled(data.kind == "highdim")
        self._show_dataset_sizes()
        summary = self._csv_summary() if data.kind == "csv" else ""
        name = _file_name(data.path) if data.kind == "csv" else ""
        # the import summary: rows, inputs, which line was the header, the class mapping
        self.csv_name.setTextFormat(Qt.TextFormat.PlainText)  # file contents, shown as is
        self.csv_name.setText(f"{name}\n{summary}" if summary else name)
        self.csv_name.setToolTip(data.path or "")

        self.depth.setValue(net.depth)
        widths = {h.width for h in net.hidden}
        self.width.setEnabled(bool(widths))
        if widths:
            self.width.setValue(max(widths, key=[h.width for h in net.hidden].count))
        self.width.setSuffix("" if len(widths) <= 1 else "  (mixed)")
        acts = {h.activation for h in net.hidden}
        self.activation.setCurrentIndex(self.activation.findText(acts.pop())
                                        if len(acts) == 1 else -1)
        self.init.setCurrentIndex(self.init.findData(net.init))
        self.gain.setValue(net.gain)
        self.sigma_w.setValue(net.sigma_w)
        self.sigma_b.setValue(net.sigma_b)
        mean_field = net.init == "mean_field"
        for w in (self.sigma_w, self.sigma_b, *self._sigma_rows):
            w.setVisible(mean_field)
        self.seed.setValue(min(exp.seed, MAX_SEED))

        self.optimizer.setCurrentIndex(self.optimizer.findData(train.optimizer))
        self.lr.setValue(train.lr)
        self.batch.setValue(train.batch_size)
        self.l2.setValue(train.weight_decay)
        self.clip_norm.setValue(train.clip_norm)
        self.clip_value.setValue(train.clip_value)

    def _show_dataset_sizes(self) -> None:
        """A field that cannot be edited for this data set shows what the data set has
        (iris: 150 samples, 3 classes, 4 inputs), not a value left from another one."""
        sim = self.controller.sim
        if sim is None:
            return
        with self.controller.locked() as locked:
            ds = locked.dataset
        regression = ds.task != "classification"
        if not self.samples.isEnabled():
            self.samples.setValue(ds.n_train + ds.n_test)
        if not self.dims.isEnabled():
            self.dims.setValue(ds.input_dim)
        if not self.classes.isEnabled() and regression:
            self.classes.setRange(0, 10)
            self.classes.setSpecialValueText("none (regression)")
            self.classes.setValue(0)
        else:
            self.classes.setSpecialValueText("")
            self.classes.setRange(2, 10)
            if not self.classes.isEnabled():
                self.classes.setValue(ds.n_classes)

    # -- widgets -> editor --------------------------------------------------------------
    def _current_data(self) -> DataSpec | None:
        return None if self._experiment is None else self._experiment.data

    def _edit_data(self, **changes) -> bool:
        data = self._current_data()
        if data is None:
            return False
        try:
            new = replace(data, **changes)
        except ValueError as e:
            self.controller.error.emit(f"Not changed: {e}")
            return False
        return new == data or self.editor.set_data(new)

    def _on_kind_chosen(self, index: int) -> None:
        kind = self.kind.itemData(index)
        data = self._current_data()
        if data is None or kind == data.kind:
            return
        if kind == "csv":
            if not self.choose_csv():
                self._on_experiment_changed(self._experiment)  # cancelled: show the old kind
            return
        classes = data.classes if kind in MULTICLASS_KINDS else 2
        self._edit_data(kind=kind, classes=classes, path=None)

    def _csv_summary(self) -> str:
        sim = self.controller.sim
        dataset = getattr(sim, "dataset", None) if sim is not None else None
        return getattr(dataset, "summary", "") if dataset is not None else ""

    def choose_csv(self) -> bool:
        """Ask for a CSV file and train on it. A file that cannot be used is reported
        (with the file, line and column) and changes nothing."""
        start = ""
        data = self._current_data()
        if data is not None and data.path:
            start = data.path
        path, _ = QFileDialog.getOpenFileName(self, "Import CSV data", start, CSV_FILTER)
        if not path:
            return False
        try:
            big = os.path.getsize(path) > BACKGROUND_CSV_BYTES
        except OSError:
            big = False
        if big:  # read it off the GUI thread first, with progress and Cancel
            return CsvLoader(self, path, lambda: self._edit_data(
                kind="csv", path=path, classes=2)).start()
        return self._edit_data(kind="csv", path=path, classes=2)

    def _on_depth(self, depth: int) -> None:
        self.editor.set_depth(depth)


class CsvLoader(QObject):
    """Reads a large CSV on a worker thread under a progress dialog with Cancel; the
    window keeps answering. When done, ``apply()`` runs on the GUI thread: the edit
    that uses the file then finds it already read (simulator.data.load_csv keeps the
    last file). A file that cannot be read is reported; Cancel changes nothing."""

    finished = Signal()
    _progress = Signal(float)
    _done = Signal(str)  # "" when read, else the message ("cancel" when cancelled)

    def __init__(self, panel, path: str, apply):
        super().__init__(panel)
        self.panel, self.path, self.apply = panel, path, apply
        self._stop = threading.Event()
        self.dialog = QProgressDialog(f"Reading {os.path.basename(path)}…", "Cancel", 0, 1000,
                                      panel)
        self.dialog.setWindowTitle("Importing CSV")
        self.dialog.setWindowModality(Qt.WindowModality.WindowModal)
        self.dialog.setMinimumDuration(0)
        self.dialog.setAutoClose(False)
        self.dialog.setAutoReset(False)
        self.dialog.canceled.connect(self._stop.set)
        self._progress.connect(lambda f: self.dialog.setValue(int(1000 * f)))
        self._done.connect(self._on_done)
        self.result: str | None = None  # what happened: "read", "cancelled" or the error

    def start(self) -> bool:
        self.dialog.show()
        threading.Thread(target=self._work, name="csv-import", daemon=True).start()
        return True

    def _work(self) -> None:
        def progress(fraction: float) -> bool:
            self._progress.emit(fraction)
            return not self._stop.is_set()

        try:
            load_csv(self.path, progress)
        except LoadCancelled:
            self._done.emit("cancel")
            return
        except (ValueError, MemoryError) as e:  # DataError
            self._done.emit(str(e) if not isinstance(e, MemoryError) else
                            f"{self.path}: there is not enough memory to read it")
            return
        self._done.emit("")

    def _on_done(self, message: str) -> None:
        self.dialog.canceled.disconnect()
        self.dialog.close()
        self.dialog.deleteLater()
        if message == "cancel":
            self.result = "cancelled"
            self.panel._on_experiment_changed(self.panel._experiment)  # show the old kind
        elif message:
            self.result = message
            self.panel.controller.error.emit(f"Not changed: {message}")
            self.panel._on_experiment_changed(self.panel._experiment)
        else:
            self.result = "read"
            self.apply()
        self.finished.emit()
        self.deleteLater()


# -- small widget helpers -------------------------------------------------------------------
def _form(box: QGroupBox) -> QFormLayout:
    form = QFormLayout(box)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    form.setContentsMargins(6, 6, 6, 6)
    return form


def _int(lo: int, hi: int, step: int, name: str, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setObjectName(name)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setKeyboardTracking(False)  # one edit when the user is done typing, not per digit
    box.setToolTip(tip)
    return box


def _double(lo: float, hi: float, step: float, decimals: int, name: str,
            tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setObjectName(name)
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setKeyboardTracking(False)
    box.setToolTip(tip)
    return box


def _file_name(path: str | None) -> str:
    if not path:
        return ""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


class QuickSettings(QWidget):
    """Learning rate and activation in the window's top bar, seen at start (as in
    Playground): they decide whether a deep network learns at all. They edit the same
    settings as the Controls panel, through the Editor (undoable)."""

    def __init__(self, controller, editor, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.editor = editor
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 0, 6, 0)
        row.setSpacing(6)
        self.lr = ScientificSpinBox(0.0, 1000.0)
        self.lr.setObjectName("quick_lr")
        self.lr.setMinimumWidth(80)
        self.lr.setToolTip("Learning rate: the step size of every update. The arrows move "
                           "along 1, 2, 5, 10, …")
        self.lr.valueChanged.connect(lambda v: self.editor.update_training(lr=v))
        self.activation = QComboBox()
        self.activation.setObjectName("quick_activation")
        self.activation.addItems(ACTIVATIONS)
        self.activation.setPlaceholderText("mixed")
        self.activation.setToolTip("Activation of every hidden layer")
        self.activation.activated.connect(
            lambda i: self.editor.set_activation(0, self.activation.itemText(i)))
        self.optimizer = QComboBox()
        self.optimizer.setObjectName("quick_optimizer")
        for key in OPTIMIZERS:
            self.optimizer.addItem(_OPT_TEXT.get(key, key), key)
        self.optimizer.activated.connect(
            lambda _i: self.editor.update_training(optimizer=self.optimizer.currentData()))
        for text, widget in (("Learning rate", self.lr), ("Activation", self.activation),
                             ("Optimizer", self.optimizer)):
            label = QLabel(text)
            label.setBuddy(widget)
            row.addWidget(label)
            row.addWidget(widget)
            row.addSpacing(8)
        controller.experiment_changed.connect(self._on_experiment_changed)
        if controller.is_ready:
            self._on_experiment_changed(controller.sim.experiment)

    def _on_experiment_changed(self, experiment) -> None:
        blockers = [QSignalBlocker(w) for w in (self.lr, self.activation, self.optimizer)]
        try:
            self.lr.setValue(experiment.training.lr)
            acts = {h.activation for h in experiment.network.hidden}
            self.activation.setCurrentIndex(self.activation.findText(acts.pop())
                                            if len(acts) == 1 else -1)
            self.optimizer.setCurrentIndex(
                self.optimizer.findData(experiment.training.optimizer))
        finally:
            del blockers
