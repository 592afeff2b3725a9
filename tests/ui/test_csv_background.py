"""A large CSV is read off the GUI thread with progress and Cancel (issue 12, item 4):
the 50 MB file blocked the window for 50 s."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QFileDialog, QProgressDialog, QPushButton  # noqa: E402

pytestmark = pytest.mark.qt


@pytest.fixture
def big_csv(tmp_path):
    path = tmp_path / "big.csv"
    lines = ["a,b,label"] + [f"{i % 97 / 10},{i % 13 - 6},{'yes' if i % 3 else 'no'}"
                             for i in range(20_000)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def panel(qtbot, controller, editor, monkeypatch):
    import ui.views.controls as controls

    monkeypatch.setattr(controls, "BACKGROUND_CSV_BYTES", 1000)  # this file counts as big
    p = controls.ControlsPanel(controller, editor)
    qtbot.addWidget(p)
    p.show()
    return p


def test_a_big_csv_is_read_in_the_background_then_used(qtbot, panel, controller, big_csv,
                                                       monkeypatch):
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(big_csv), "")))
    qtbot.mouseClick(panel.import_csv, Qt.MouseButton.LeftButton)
    # the click returned at once: the progress dialog is up while the worker reads
    loaders = [c for c in panel.children() if type(c).__name__ == "CsvLoader"]
    assert len(loaders) == 1 and isinstance(loaders[0].dialog, QProgressDialog)
    qtbot.waitUntil(lambda: controller.sim.experiment.data.kind == "csv", timeout=60_000)
    assert controller.sim.dataset.n_classes == 2
    assert controller.sim.dataset.n_train + controller.sim.dataset.n_test == 20_000


def test_cancel_changes_nothing(qtbot, panel, controller, big_csv):
    from ui.views.controls import CsvLoader

    before = controller.sim.experiment
    applied = []
    loader = CsvLoader(panel, str(big_csv), lambda: applied.append(True))
    loader.dialog.show()
    cancel = loader.dialog.findChild(QPushButton)
    qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)  # the user presses Cancel
    with qtbot.waitSignal(loader.finished, timeout=60_000):
        loader.start()
    assert loader.result == "cancelled" and not applied
    assert controller.sim.experiment == before


def test_a_broken_big_csv_is_reported(qtbot, panel, controller, tmp_path):
    from ui.views.controls import CsvLoader

    path = tmp_path / "broken.csv"
    path.write_text("a,b,c\n" + "1,2,0\n" * 5000 + "1,x,0\n")
    errors = []
    controller.error.connect(errors.append)
    loader = CsvLoader(panel, str(path), lambda: None)
    with qtbot.waitSignal(loader.finished, timeout=60_000):
        loader.start()
    assert "line 5002, column 2" in loader.result
    assert errors and "line 5002, column 2: 'x' is not a number" in errors[-1]
