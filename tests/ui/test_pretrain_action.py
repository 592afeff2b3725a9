"""The main window's "Pretrain layer by layer" action, as a user uses it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QKeySequence  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from ui.app import MainWindow  # noqa: E402

pytestmark = pytest.mark.qt


@pytest.fixture(autouse=True)
def accept_pretrain_settings(monkeypatch):
    """The settings dialog, filled in as shown and accepted (its own test clicks it)."""
    from ui import pretrain_action

    def accept(parent, spec=None):
        dialog = pretrain_action.PretrainSettingsDialog(spec, parent)
        try:
            return dialog.spec()
        finally:
            dialog.deleteLater()

    monkeypatch.setattr(pretrain_action, "ask_pretrain_spec", accept)


@pytest.fixture
def window(qtbot, controller, editor, settings):
    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    return w


def test_shortcut_pretrains_each_layer_then_training_fine_tunes(qtbot, window, controller):
    w0 = controller.sim.network.params_flat.copy()
    seen_layers = set()
    controller.selection_changed.connect(lambda k: seen_layers.add(k))
    QTest.keySequence(window, QKeySequence("Ctrl+Shift+P"))
    job = window.pretrain_job
    qtbot.waitUntil(lambda: not job.running, timeout=60000)
    p = job.pretrainer
    assert p.done and p.divergence is None
    assert seen_layers >= {1, 2, 3, 4} and controller.selected_layer == 0
    assert all(a < b for a, b in zip(p.loss_after, p.loss_before, strict=True))
    assert window.banner.kind == "info" and "Pretraining done" in window.banner.text
    assert f"{p.loss_after[0]:.3g}" in window.banner.text
    assert not np.array_equal(controller.sim.network.params_flat, w0)
    assert controller.sim.step_count == 0
    controller.step()  # fine-tuning from the pretrained weights
    assert controller.sim.step_count == 1
    # one undo: the weights from before pretraining (structure unchanged)
    assert controller.undo_stack.undoText() == "Pretrain layer by layer"
    controller.undo_stack.undo()
    assert np.array_equal(controller.sim.network.params_flat, w0)


def test_play_stops_pretraining_where_it_is(qtbot, window, controller):
    window.pretrain_job.spec = replace(window.pretrain_job.spec, steps_per_layer=100_000)
    window.compare_actions["pretrain_layers"].trigger()
    job = window.pretrain_job
    qtbot.waitUntil(lambda: job.pretrainer is not None and job.pretrainer.layer_step > 0)
    controller.play()
    qtbot.waitUntil(lambda: not job.running, timeout=10000)
    controller.pause()
    assert not job.pretrainer.done and "Pretraining stopped" in window.banner.text


def test_refused_on_a_network_with_skip_links(qtbot, window, controller):
    controller.apply(lambda sim: sim.add_skip(1, 3))
    window.compare_actions["pretrain_layers"].trigger()
    assert window.pretrain_job.pretrainer is None
    assert "skip" in window.banner.text


def test_settings_dialog_reads_what_the_user_set_and_cancel_starts_nothing(qtbot, window,
                                                                           monkeypatch):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from ui import pretrain_action

    dialog = pretrain_action.PretrainSettingsDialog(None, window)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.steps.selectAll()
    QTest.keyClicks(dialog.steps, "25")
    qtbot.mouseClick(dialog.tied, Qt.MouseButton.LeftButton)
    dialog.denoise.setValue(0.2)
    spec = dialog.spec()
    dialog.close()
    assert (spec.steps_per_layer, spec.tied, spec.denoise) == (25, False, 0.2)
    monkeypatch.undo()  # the real dialog, cancelled as a user would
    QTimer.singleShot(50, lambda: QApplication.activeModalWidget().reject())
    assert window.pretrain_job.ask_and_start() is False
    assert window.pretrain_job.pretrainer is None
