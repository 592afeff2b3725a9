"""Saved experiments and their CSV data (issue 8): a small CSV is embedded by default
(so a copied file opens), the choice is in the File menu, and a linked CSV that has
gone missing is reported with a way to locate it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox  # noqa: E402

from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import load_experiment, save_experiment  # noqa: E402

pytestmark = pytest.mark.qt

CSV = "a,b,label\n" + "".join(f"{i % 7},{i % 5},{'cat' if i % 2 else 'dog'}\n"
                              for i in range(40))


@pytest.fixture
def csv_experiment(tmp_path, tiny_experiment):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "pets.csv").write_text(CSV)
    return replace(tiny_experiment, name="Pets", description="Cats and dogs, my words.",
                   data=DataSpec(kind="csv", path=str(folder / "pets.csv")))


def test_a_small_csv_is_embedded_so_a_copied_file_opens(tmp_path, csv_experiment):
    save_experiment(csv_experiment, tmp_path / "work" / "pets.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tmp_path / "work" / "pets.json", elsewhere / "pets.json")
    shutil.rmtree(tmp_path / "work")
    exp = load_experiment(elsewhere / "pets.json")
    assert exp.data.text == CSV
    assert exp.name == "Pets" and exp.description == "Cats and dogs, my words."
    from simulator.data import make_dataset

    ds = make_dataset(exp.data)
    assert ds.n_classes == 2 and ds.class_names == ("cat", "dog")


def test_linking_instead_of_embedding(tmp_path, csv_experiment):
    save_experiment(csv_experiment, tmp_path / "linked.json", embed_csv=False)
    raw = json.loads((tmp_path / "linked.json").read_text())
    assert "text" not in raw["data"] and raw["data"]["path"].endswith("pets.csv")


def test_save_from_the_window_follows_the_menu_choice(qtbot, controller, editor, settings,
                                                      tmp_path, csv_experiment):
    from ui.app import MainWindow

    window = MainWindow(controller, editor, settings)
    qtbot.addWidget(window)
    assert controller.open_experiment(csv_experiment)
    assert window.action_embed_csv.isChecked()  # the default: embed small files
    assert window.save_to(str(tmp_path / "a.json"))
    assert "text" in json.loads((tmp_path / "a.json").read_text())["data"]
    window.action_embed_csv.trigger()  # File > Embed Small CSV Data When Saving: off
    assert window.save_to(str(tmp_path / "b.json"))
    assert "text" not in json.loads((tmp_path / "b.json").read_text())["data"]
    assert settings.value("experiment/embed_csv", type=bool) is False
    saved = load_experiment(tmp_path / "b.json")
    assert saved.name == "Pets" and saved.description == "Cats and dogs, my words."


def _press_in_message_box(qtbot, text):
    def press():
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, press)
            return
        button = next(b for b in box.buttons() if b.text().replace("&", "") == text)
        button.click()

    QTimer.singleShot(0, press)


def test_a_missing_linked_csv_can_be_located(qtbot, controller, editor, settings, tmp_path,
                                             csv_experiment, monkeypatch):
    from ui.app import MainWindow

    save_experiment(csv_experiment, tmp_path / "linked.json", embed_csv=False)
    moved = tmp_path / "moved.csv"
    shutil.move(tmp_path / "work" / "pets.csv", moved)
    window = MainWindow(controller, editor, settings)
    qtbot.addWidget(window)
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(
        lambda *a, **k: asked.append(a) or (str(moved), "")))
    _press_in_message_box(qtbot, "Locate…")
    assert window.open_path(str(tmp_path / "linked.json"))
    assert asked and controller.sim.experiment.data.path == str(moved)
    assert controller.sim.dataset.class_names == ("cat", "dog")


def test_giving_up_on_a_missing_csv_says_so_and_changes_nothing(qtbot, controller, editor,
                                                                settings, tmp_path,
                                                                csv_experiment):
    from ui.app import MainWindow

    save_experiment(csv_experiment, tmp_path / "linked.json", embed_csv=False)
    (tmp_path / "work" / "pets.csv").unlink()
    window = MainWindow(controller, editor, settings)
    qtbot.addWidget(window)
    before = controller.sim.experiment
    _press_in_message_box(qtbot, "Cancel")
    assert not window.open_path(str(tmp_path / "linked.json"))
    assert controller.sim.experiment == before
    assert "pets.csv is missing" in window.banner.text
