"""The main window's "Pretrain layer by layer" action (Run menu, Ctrl+Shift+P).

Greedy layer-wise pretraining of the main window's own network, in short slices on
the GUI thread (a re-armed single-shot timer), each slice through the controller's
``apply`` so every view redraws the weights as they change. The layer being trained
is selected on the canvas (and shown in the layer inspector); the status bar gives
its step and reconstruction loss. When every layer is done, the banner reports each
layer's reconstruction loss before and after, and Step or Play fine-tune the whole
network from the pretrained weights. One undo puts back the weights from before.
Starting to train while it runs stops the pretraining where it is.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QMenu,
    QSpinBox,
)

from simulator.pretrain import Pretrainer, PretrainSpec, check_pretrainable
from simulator.spec import SpecError

from .commands import EditCommand

SLICE_SECONDS = 0.02  # pretraining time per slice: the window stays responsive
TICK_MS = 15


class PretrainSettingsDialog(QDialog):
    """The settings of greedy layer-wise pretraining, before it starts."""

    def __init__(self, spec: PretrainSpec | None = None, parent=None):
        super().__init__(parent)
        self.setObjectName("pretrain_settings")
        self.setWindowTitle("Pretrain layer by layer")
        spec = spec if spec is not None else PretrainSpec()
        form = QFormLayout(self)
        self.steps = QSpinBox()
        self.steps.setRange(1, 1_000_000)
        self.steps.setValue(spec.steps_per_layer)
        self.steps.setToolTip("Autoencoder training steps for each hidden layer")
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(4)
        self.lr.setRange(0.0001, 100.0)
        self.lr.setValue(spec.lr)
        self.lr.setToolTip("Pretraining's own learning rate (training keeps its own)")
        self.momentum = QDoubleSpinBox()
        self.momentum.setRange(0.0, 0.99)
        self.momentum.setSingleStep(0.05)
        self.momentum.setValue(spec.momentum)
        self.batch = QSpinBox()
        self.batch.setRange(1, 100_000)
        self.batch.setValue(spec.batch_size)
        self.tied = QCheckBox("decoder uses the encoder's weights, transposed")
        self.tied.setChecked(spec.tied)
        self.denoise = QDoubleSpinBox()
        self.denoise.setRange(0.0, 0.95)
        self.denoise.setSingleStep(0.05)
        self.denoise.setValue(spec.denoise)
        self.denoise.setToolTip("Fraction of each layer's inputs set to zero before encoding "
                                "(a denoising autoencoder); 0 = plain")
        self.standardize = QCheckBox("centre and scale each layer's inputs (folded into W, b)")
        self.standardize.setChecked(spec.standardize)
        form.addRow("Steps per layer", self.steps)
        form.addRow("Learning rate", self.lr)
        form.addRow("Momentum", self.momentum)
        form.addRow("Batch size", self.batch)
        form.addRow("Tied decoder", self.tied)
        form.addRow("Denoising", self.denoise)
        form.addRow("Standardize", self.standardize)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def spec(self) -> PretrainSpec:
        return PretrainSpec(steps_per_layer=self.steps.value(), lr=self.lr.value(),
                            momentum=self.momentum.value(), batch_size=self.batch.value(),
                            tied=self.tied.isChecked(), denoise=self.denoise.value(),
                            standardize=self.standardize.isChecked())


def ask_pretrain_spec(parent, spec: PretrainSpec | None = None) -> PretrainSpec | None:
    """Show the settings; the chosen spec, or None if cancelled."""
    dialog = PretrainSettingsDialog(spec, parent)
    try:
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        return dialog.spec()
    finally:
        dialog.deleteLater()


class PretrainJob(QObject):
    """Runs one pretraining of the controller's simulation, slice by slice."""

    def __init__(self, main_window, spec: PretrainSpec | None = None):
        super().__init__(main_window)
        self.window = main_window
        self.controller = main_window.controller
        self.spec = spec if spec is not None else PretrainSpec()
        self.pretrainer: Pretrainer | None = None
        self._n = 8
        self._active = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_tick)

    @property
    def running(self) -> bool:
        return self._active

    def ask_and_start(self) -> bool:
        """Ask for the settings, then start (the action's slot)."""
        if not self.controller.is_ready:
            return False
        spec = ask_pretrain_spec(self.window, self.spec)
        if spec is None:
            return False
        self.spec = spec
        return self.start()

    def start(self) -> bool:
        c = self.controller
        if not c.is_ready:
            return False
        c.pause()
        with c.locked() as sim:
            try:
                check_pretrainable(sim.spec)
            except SpecError as e:
                self.window.show_message(f"Not changed: {e}")
                return False
            before = sim.capture_state()

        def do(sim):
            self.pretrainer = Pretrainer(sim, self.spec)
            self._active = True
            self._timer.start(0)

        def undo(sim):
            self.stop()
            sim.restore_state(before)
            self.controller.select_layer(0)

        cmd = EditCommand(c, "Pretrain layer by layer", do, undo, structural=False,
                          drop_if_unchanged=False)
        c.push_edit(cmd)
        return cmd.applied

    def stop(self) -> None:
        self._active = False
        self._timer.stop()

    def _on_tick(self) -> None:
        p = self.pretrainer
        if p is None or not self._active:
            return
        c = self.controller
        if c.is_playing:  # the user started training: pretraining stops where it is
            self.stop()
            self.window.show_message(
                f"Pretraining stopped at layer {p.layer} of {p.n_layers}: training started.",
                "info")
            return
        # a slice never crosses into the next layer, so every layer is shown being trained
        n = min(self._n, p.spec.steps_per_layer - p.layer_step)
        t0 = time.perf_counter()
        c.apply(lambda sim: p.run(n, snapshot=False), structural=False)
        dt = time.perf_counter() - t0
        self._n = max(1, min(4096, int(n * SLICE_SECONDS / max(dt, 1e-6))))
        if p.divergence is not None:
            self.stop()
            c.select_layer(0)
            self.window.show_message(p.divergence.message, "diverged")
            return
        if p.done:
            self.stop()
            c.select_layer(0)
            self.window.show_message(_done_text(p), "info")
            return
        c.select_layer(p.layer)
        self.window.statusBar().showMessage(
            f"Pretraining layer {p.layer} of {p.n_layers}: step {p.layer_step} of "
            f"{p.spec.steps_per_layer}, reconstruction loss {p.loss:.4g}")
        self._timer.start(TICK_MS)


def _done_text(p: Pretrainer) -> str:
    parts = ", ".join(f"layer {k + 1} {p.loss_before[k]:.3g} → {p.loss_after[k]:.3g}"
                      for k in range(p.n_layers))
    return ("Pretraining done. Reconstruction loss before → after: " + parts + ". Step or "
            "Play now fine-tunes the whole network from the pretrained weights.")


def install_pretrain_action(main_window) -> QAction:
    """Add "Pretrain layer by layer" to the main window's Run menu."""
    job = PretrainJob(main_window)
    action = QAction("Pretrain &layer by layer…", main_window)
    action.setObjectName("action_pretrain_layers")
    action.setShortcut(QKeySequence("Ctrl+Shift+P"))
    action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.setToolTip("Train each hidden layer in turn as an autoencoder of the layer below, "
                      "then fine-tune the whole network (Ctrl+Shift+P)")
    action.triggered.connect(job.ask_and_start)
    main_window.addAction(action)
    run_menu = main_window.findChild(QMenu, "menu_run")
    if run_menu is not None:
        run_menu.addSeparator()
        run_menu.addAction(action)
    main_window.pretrain_job = job
    return action
