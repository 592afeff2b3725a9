"""Two app-wide rules for input widgets, held by one event filter on the application.

* The mouse wheel changes a combo box or spin box only when it has the keyboard
  focus (click it first). Otherwise the wheel scrolls whatever is around it, so
  scrolling down a panel never walks a setting through its values. Such widgets
  take focus by click or Tab only (``StrongFocus``), not by the wheel.
* Space is the window's Play / Pause key even when a spin box or a combo box has
  the focus (neither needs it); only a text field keeps it.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QWidget,
)

_GUARDED = (QAbstractSpinBox, QComboBox)


def _guarded(obj) -> QWidget | None:
    """The spin box or combo box ``obj`` is, or is the line edit of."""
    if isinstance(obj, _GUARDED):
        return obj
    parent = obj.parent() if isinstance(obj, QWidget) else None
    if isinstance(parent, _GUARDED) and getattr(parent, "lineEdit", lambda: None)() is obj:
        return parent
    return None


def _scroll_area_of(widget: QWidget) -> QAbstractScrollArea | None:
    w = widget.parentWidget()
    while w is not None and not isinstance(w, QAbstractScrollArea):
        w = w.parentWidget()
    return w


def _typing_text(box: QWidget) -> bool:
    return isinstance(box, QComboBox) and box.isEditable()


class InputGuard(QObject):
    def eventFilter(self, obj, event) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Polish and isinstance(obj, _GUARDED):
            strong_focus(obj)
        elif kind == QEvent.Type.Wheel:
            box = _guarded(obj)
            if box is not None and not box.hasFocus():
                # not for this widget: it scrolls the panel around it, if any
                area = _scroll_area_of(box)
                if area is not None:
                    QApplication.sendEvent(area.viewport(), event.clone())
                event.accept()
                return True
        elif kind == QEvent.Type.ShortcutOverride:
            box = _guarded(obj)
            if (box is not None and not _typing_text(box) and event.key() == Qt.Key.Key_Space
                    and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier):
                event.ignore()  # not claimed: the window's Space shortcut runs
                return True
        return False


def strong_focus(widget: QWidget) -> None:
    if widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)


_guard: InputGuard | None = None


def install_input_guard(root: QWidget | None = None) -> InputGuard:
    """Install the filter on the application (once); widgets already built under
    ``root`` get strong focus now, later ones when they are first shown."""
    global _guard
    app = QApplication.instance()
    if _guard is None:
        _guard = InputGuard(app)
        app.installEventFilter(_guard)
    if root is not None:
        for cls in _GUARDED:
            for w in root.findChildren(cls):
                strong_focus(w)
    return _guard
