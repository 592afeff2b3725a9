"""A start that cannot build its experiment (issue 12, item 1): the window reports it,
falls back to the default experiment, and the failed file is not reopened next time."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import simulator.experiment as experiment_module  # noqa: E402
from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import load_preset, save_experiment  # noqa: E402

pytestmark = pytest.mark.qt


@pytest.fixture
def presets(tmp_path, monkeypatch, tiny_experiment):
    """A preset folder whose default preset ("deep_sigmoid") is the tiny experiment."""
    folder = tmp_path / "presets"
    folder.mkdir()
    save_experiment(replace(tiny_experiment, name="Default (test)"),
                    folder / "01_deep_sigmoid.json")
    save_experiment(replace(tiny_experiment, name="Other (test)", seed=3),
                    folder / "02_other.json")
    monkeypatch.setattr(experiment_module, "PRESET_DIR", folder)
    return folder


@pytest.fixture
def moved_csv_experiment(tmp_path, tiny_experiment):
    """An experiment file whose CSV has been moved away (as in the issue)."""
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,label\n" + "".join(f"{i % 7},{i % 5},{i % 2}\n" for i in range(40)))
    path = tmp_path / "moved.json"
    save_experiment(replace(tiny_experiment, name="Moved data",
                            data=DataSpec(kind="csv", path=str(csv))), path,
                    embed_csv=False)  # a link to the CSV, not a copy
    csv.rename(tmp_path / "elsewhere.csv")
    return path


def start(qtbot, file, settings):
    from ui.app import start_window

    window = start_window(str(file) if file else None, settings)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.controller.ready, timeout=120_000):
        pass
    return window


def test_a_moved_csv_at_start_falls_back_to_the_default(qtbot, presets, settings,
                                                        moved_csv_experiment):
    window = start(qtbot, moved_csv_experiment, settings)
    c = window.controller
    # a working simulation: the default experiment, controls live
    assert c.sim.experiment.name == "Default (test)"
    assert window.action_save.isEnabled() and window.action_play.isEnabled()
    assert window.windowTitle().startswith("Default (test)")
    # the reason is shown, naming the experiment and the missing file
    assert window.banner.isVisible()
    assert "Moved data" in window.banner.text and "points.csv" in window.banner.text
    assert "Default (test)" in window.banner.text
    # the failed file is forgotten: Save does not write back to it, the next start
    # does not reopen it
    assert window.current_path is None
    assert settings.value("experiment/last_path") is None
    steps = c.sim.step_count
    window.action_step.trigger()
    qtbot.waitUntil(lambda: c.sim.step_count > steps)
    # opening a preset now starts it
    assert window.open_preset("other")
    assert c.sim.experiment.name == "Other (test)"
    window.close()

    from ui.app import choose_experiment

    exp, path, problem = choose_experiment(None, settings)
    assert path is None and exp == load_preset("deep_sigmoid") and problem is None


def test_a_start_that_never_finished_is_not_repeated(qtbot, presets, settings, tmp_path,
                                                     tiny_experiment):
    """Killed while building (out of memory, kill -9): the next plain start opens the
    default and says why, rather than dying on the same file again."""
    from ui.app import choose_experiment

    path = tmp_path / "big.json"
    save_experiment(tiny_experiment, path)
    settings.setValue("experiment/last_path", str(path))
    settings.setValue("experiment/starting", str(path))  # what a start leaves until ready
    exp, found, problem = choose_experiment(None, settings)
    assert found is None and exp == load_preset("deep_sigmoid")
    assert str(path) in problem and "did not finish starting" in problem
    assert settings.value("experiment/last_path") is None


def test_a_good_file_is_remembered_once_it_runs(qtbot, presets, settings, tmp_path,
                                                tiny_experiment):
    path = tmp_path / "good.json"
    save_experiment(replace(tiny_experiment, name="Good"), path)
    window = start(qtbot, path, settings)
    assert window.controller.sim.experiment.name == "Good"
    assert window.current_path == str(path.resolve())
    assert settings.value("experiment/last_path") == str(path.resolve())
    assert settings.value("experiment/starting") is None
    window.close()
