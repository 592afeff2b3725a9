"""At the end of a UI test pytest-qt closes the windows it was given; a main window with
unsaved edits would then ask Save / Discard / Cancel in a modal box nobody answers.
During teardown the answer is "discard"; during the test itself the box is real."""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        from ui.app import MainWindow
    except ImportError:  # no Qt: nothing to close
        return (yield)
    MainWindow.unattended_answer = "discard"
    try:
        return (yield)
    finally:
        MainWindow.unattended_answer = None
