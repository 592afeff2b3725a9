"""File > Open and ``main.py FILE.json`` on an experiment file with a "pretraining"
section (pretrained layer by layer, then trained) and on a comparison file (opens in a
compare window), as a user does it (issue 10)."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from simulator.compare_experiment import (
    ComparisonSpec,
    PretrainedExperiment,
    load_study,
    save_comparison,
)
from simulator.experiment import ExperimentError, load_experiment
from simulator.pretrain import PretrainSpec
from simulator.simulation import Simulation

SPEC = PretrainSpec(steps_per_layer=12, lr=0.05, momentum=0.5, batch_size=8, tied=False)


@pytest.fixture
def pretraining_file(tmp_path, tiny_experiment):
    path = tmp_path / "pretrain.json"
    exp = replace(tiny_experiment, name="Tiny, pretrained")
    path.write_text(json.dumps(PretrainedExperiment(exp, SPEC).to_dict()))
    return path


@pytest.fixture
def comparison_file(tmp_path, tiny_experiment):
    path = tmp_path / "versus.json"
    save_comparison(ComparisonSpec("Tanh: default vs He init", "", tiny_experiment,
                                   ({"edit": "init", "init": "he_normal"},)), path)
    return path


# -- headless: the loader ------------------------------------------------------------------
def test_the_loader_accepts_the_pretraining_section(pretraining_file, tiny_experiment):
    study = load_study(pretraining_file)
    assert isinstance(study, PretrainedExperiment)
    assert study.pretraining == SPEC
    assert study.experiment == replace(tiny_experiment, name="Tiny, pretrained")


def test_unknown_fields_are_still_refused_by_name(tmp_path, pretraining_file):
    d = json.loads(pretraining_file.read_text())
    d["pretrainig"] = d.pop("pretraining")  # a typo is not a pretraining section
    bad = tmp_path / "typo.json"
    bad.write_text(json.dumps(d))
    for load in (load_study, load_experiment):
        with pytest.raises(ExperimentError, match="pretrainig"):
            load(bad)
    d = json.loads(pretraining_file.read_text())
    d["pretraining"]["stepz"] = 3
    bad.write_text(json.dumps(d))
    with pytest.raises(ExperimentError, match="stepz"):
        load_study(bad)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_the_loader_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(ExperimentError, match="pipe.json"):
        load_study(fifo)


# -- the window ----------------------------------------------------------------------------
pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QFileDialog  # noqa: E402

from ui.app import MainWindow  # noqa: E402


@pytest.fixture
def window(qtbot, controller, editor, settings):
    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def choose_in_open_dialog(monkeypatch, path):
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(path), "")))


@pytest.mark.qt
def test_file_open_pretrains_with_the_files_settings_then_trains(
        qtbot, window, controller, monkeypatch, pretraining_file):
    choose_in_open_dialog(monkeypatch, pretraining_file)
    shown = []
    controller.selection_changed.connect(shown.append)
    window.action_open.trigger()
    assert controller.sim.experiment.name == "Tiny, pretrained"
    assert window.current_path == str(pretraining_file)
    # the weights the file's network is built with (same seed: the same weights)
    w0 = Simulation(load_study(pretraining_file).experiment).network.params_flat.copy()
    job = window.pretrain_job
    assert job.spec == SPEC
    qtbot.waitUntil(lambda: not job.running, timeout=60000)
    p = job.pretrainer
    assert p.spec == SPEC and p.done and p.divergence is None
    assert set(shown) >= {1, 2, 3, 4}  # each layer highlighted while it was trained
    assert all(a < b for a, b in zip(p.loss_after, p.loss_before, strict=True))
    assert "Pretraining done" in window.banner.text
    pretrained = controller.sim.network.params_flat.copy()
    assert not np.array_equal(pretrained, w0)
    assert not window.is_modified  # the weights moved; the experiment did not
    # one undo step puts back the weights the file's network was built with
    assert controller.undo_stack.count() == 1
    controller.undo_stack.undo()
    assert np.array_equal(controller.sim.network.params_flat, w0)
    controller.undo_stack.redo()
    # then training fine-tunes from the pretrained weights
    window.action_step.trigger()
    qtbot.waitUntil(lambda: controller.sim.step_count >= 1)
    # Save keeps the file's pretraining section
    window.action_save.trigger()
    assert load_study(pretraining_file).pretraining == SPEC


@pytest.mark.qt
def test_save_drops_the_section_once_the_network_cannot_be_pretrained(
        qtbot, window, controller, editor, monkeypatch, pretraining_file):
    choose_in_open_dialog(monkeypatch, pretraining_file)
    window.action_open.trigger()
    window.pretrain_job.stop()
    editor.add_skip(1, 3)  # greedy pretraining needs a plain stack
    window.action_save.trigger()
    study = load_study(pretraining_file)  # the file still opens
    assert study.pretraining is None and study.experiment.network.skips
    assert "without its pretraining section" in window.statusBar().currentMessage()


@pytest.mark.qt
def test_file_open_of_a_comparison_opens_the_compare_window(
        qtbot, window, controller, monkeypatch, comparison_file):
    exp0 = controller.sim.experiment
    choose_in_open_dialog(monkeypatch, comparison_file)
    window.action_open.trigger()
    compares = getattr(window, "compare_windows", [])
    assert len(compares) == 1
    cw = compares[0]
    try:
        assert cw.isVisible() and cw.windowTitle() == "Compare: Tanh: default vs He init"
        c = cw.driver.comparison
        assert c.b.experiment.network.init == "he_normal"
        assert c.a.experiment.network.init != "he_normal"
        assert not window.banner.isVisible()
        assert controller.sim.experiment == exp0 and window.current_path is None
    finally:
        cw.close()


@pytest.mark.qt
def test_file_open_with_an_unknown_field_names_it_and_changes_nothing(
        qtbot, window, controller, monkeypatch, tmp_path, pretraining_file):
    d = json.loads(pretraining_file.read_text())
    d["pretraining"]["tide"] = True
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    exp0 = controller.sim.experiment
    choose_in_open_dialog(monkeypatch, bad)
    window.action_open.trigger()
    assert window.banner.isVisible() and "tide" in window.banner.text
    assert controller.sim.experiment == exp0 and not window.pretrain_job.running


@pytest.mark.qt
@pytest.mark.slow  # builds the simulation in the background, as a start does
def test_command_line_file_with_pretraining_pretrains_once_built(qtbot, settings,
                                                                 pretraining_file):
    from ui.app import start_window

    window = start_window(str(pretraining_file), settings)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.controller.ready, timeout=120_000):
        pass
    job = window.pretrain_job
    qtbot.waitUntil(lambda: job.pretrainer is not None and not job.running, timeout=60000)
    assert window.controller.sim.experiment.name == "Tiny, pretrained"
    assert job.pretrainer.spec == SPEC and job.pretrainer.done
    assert window.controller.undo_stack.count() == 1
    window.close()


@pytest.mark.qt
def test_command_line_comparison_opens_the_compare_window(qtbot, settings, comparison_file):
    from ui.app import start_window

    window = start_window(str(comparison_file), settings)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.controller.ready, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: bool(getattr(window, "compare_windows", [])))
    cw = window.compare_windows[-1]
    assert cw.windowTitle() == "Compare: Tanh: default vs He init"
    assert window.current_path is None  # Save never writes an experiment over it
    cw.close()
    window.close()
