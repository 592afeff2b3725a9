"""Switching to through time stops a layer-wise pretraining where it is (it runs on the
window's clock and would otherwise go on, unseen, on the depth network)."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from ui import pretrain_action  # noqa: E402
from ui.app import MainWindow  # noqa: E402

pytestmark = pytest.mark.qt


def test_entering_time_mode_stops_pretraining(qtbot, controller, editor, settings,
                                              monkeypatch):
    monkeypatch.setattr(pretrain_action, "ask_pretrain_spec",
                        lambda parent, spec=None: pretrain_action.PretrainSettingsDialog(
                            spec, parent).spec())
    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    w.show()
    job = w.pretrain_job
    job.spec = replace(job.spec, steps_per_layer=100_000)
    w.compare_actions["pretrain_layers"].trigger()
    qtbot.waitUntil(lambda: job.pretrainer is not None and job.pretrainer.layer_step > 0)
    w.time_mode.set_mode("time")
    assert not job.running and not job.pretrainer.done
    assert "Pretraining stopped" in w.banner.text and "through time" in w.banner.text
    step = job.pretrainer.layer_step
    qtbot.wait(100)  # the clock would have run more slices by now
    assert job.pretrainer.layer_step == step
    w.time_mode.set_mode("depth")
    w.close()
