"""Compare is one click away: a button on the main window's top bar forks A and B."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

pytestmark = pytest.mark.qt

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QToolButton  # noqa: E402

from ui.app import MainWindow  # noqa: E402


def test_top_bar_button_opens_a_compare_window(qtbot, controller, editor, settings):
    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    # a 1280x720 screen: the top bar (with the depth | time switch) fits it whole, while
    # the offscreen screen (800 wide) would put its last buttons behind the overflow
    w.resize(1264, 680)
    w.show()
    qtbot.waitUntil(lambda: controller.is_ready, timeout=60_000)
    button = w.top_bar.widgetForAction(w.compare_actions["fork"])
    qtbot.waitUntil(button.isVisible)
    assert isinstance(button, QToolButton) and button.isVisible()
    assert button.text() == "Compare A | B"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(getattr(w, "compare_windows", [])), timeout=10_000)
    cw = w.compare_windows[-1]
    assert cw.driver.comparison.a.experiment == cw.driver.comparison.b.experiment
    for c in list(w.compare_windows):
        c.close()


def test_compare_window_fits_a_1280_by_720_screen(qtbot, tiny_experiment):
    from ui.compare_window import CompareWindow

    w = CompareWindow(tiny_experiment)
    qtbot.addWidget(w)
    w.show()
    hint = w.minimumSizeHint()
    # room for a window manager's frame on a 1280 x 720 screen
    assert hint.width() <= 1240 and hint.height() <= 680, hint
    # the edit box shows a long remedy's name in full as its tooltip
    box = w.remedy_box
    box.setCurrentIndex(box.findData("relu"))
    assert box.toolTip() == box.currentText() and "He init" in box.toolTip()
    w.close()
