"""Import CSV… with species names (issue 8): the iris layout loads, and the panel shows
the import summary: which line was the header and which class each name became."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QFileDialog  # noqa: E402

pytestmark = pytest.mark.qt


def test_importing_an_iris_file_shows_the_class_mapping(qtbot, controller, editor, tmp_path,
                                                        monkeypatch):
    from ui.views.controls import ControlsPanel

    path = tmp_path / "iris.csv"
    rows = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for k, name in enumerate(("setosa", "versicolor", "virginica")):
        rows += [f"{5 + k + i / 10:.1f},{3 - k / 3:.1f},{1 + 2 * k + i / 20:.2f},"
                 f"{0.2 + k:.1f},{name}" for i in range(20)]
    path.write_text("\n".join(rows) + "\n")
    panel = ControlsPanel(controller, editor)
    qtbot.addWidget(panel)
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(path), "")))
    qtbot.mouseClick(panel.import_csv, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.sim.experiment.data.kind == "csv")
    assert controller.sim.dataset.n_classes == 3
    assert controller.sim.spec.input_dim == 4 and controller.sim.spec.output_dim == 3
    text = panel.csv_name.text()
    assert text.startswith("iris.csv")
    assert "line 1 taken as the header" in text
    assert "0 = setosa, 1 = versicolor, 2 = virginica" in text
