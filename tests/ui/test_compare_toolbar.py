"""Compare is one click away: a button on the main window's top bar forks A and B."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QToolButton  # noqa: E402

from ui.app import MainWindow  # noqa: E402


def test_top_bar_button_opens_a_compare_window(qtbot, controller, editor, settings):
    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: controller.is_ready, timeout=60_000)
    button = w.top_bar.widgetForAction(w.compare_actions["fork"])
    assert isinstance(button, QToolButton) and button.isVisible()
    assert button.text() == "Compare A | B"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(getattr(w, "compare_windows", [])), timeout=10_000)
    cw = w.compare_windows[-1]
    assert cw.driver.comparison.a.experiment == cw.driver.comparison.b.experiment
    for c in list(w.compare_windows):
        c.close()
