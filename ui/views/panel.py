"""What every dock panel shares: a "Compiling kernels…" page until the simulation
exists, drawing through ``DrawWhenSeen`` (nothing while tabbed away or closed, the
latest snapshot when shown again), and controller connections dropped on close."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

from . import colors as C


class Panel(QWidget):
    """Base of the dock panels. A subclass builds its widgets, calls ``_stack_page``
    (if it has a placeholder page) and then ``_subscribe``; it overrides the
    ``_on_*_changed`` handlers it needs and keeps ``render_snapshot`` its own."""

    def _stack_page(self, page: QWidget) -> None:
        """Show a "Compiling kernels…" label until the first snapshot, then ``page``
        (``render_snapshot`` switches with ``self._stack.setCurrentIndex``)."""
        self._placeholder = QLabel("Compiling kernels\u2026")
        self._placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._placeholder.setStyleSheet(f"color: {C.MUTED}; font-size: 12pt;")
        self._stack = QStackedLayout(self)
        self._stack.addWidget(self._placeholder)
        self._stack.addWidget(page)

    def _subscribe(self, controller, *, throttled: bool, extra=()) -> None:
        """Connect the controller's signals. ``throttled`` panels redraw less often
        while playing and always draw the last frame of a run."""
        self._seen = C.DrawWhenSeen(self, throttled=throttled)
        self._subs = C.Subscriptions()
        self._subs.connect(controller.snapshot_changed, self._on_snapshot_changed)
        self._subs.connect(controller.structure_changed, self._on_structure_changed)
        for signal, slot in extra:
            self._subs.connect(signal, slot)
        if throttled:
            self._subs.connect(controller.running_changed, self._on_running_changed)
        self._subs.connect(controller.ready, self._on_ready_changed)

    # -- controller signals ------------------------------------------------------------
    def _on_snapshot_changed(self, snapshot) -> None:
        self._seen.request(snapshot)

    def _on_structure_changed(self, spec) -> None:
        pass

    def _on_running_changed(self, running: bool) -> None:
        if not running:  # the last frame of a run is always drawn
            self._seen.request(self.controller.snapshot, force=True)

    def _on_ready_changed(self) -> None:
        self._placeholder.setText("Building the network\u2026")

    def showEvent(self, ev) -> None:
        super().showEvent(ev)
        self._seen.attach()

    def close(self) -> bool:
        self._subs.disconnect_all()
        self._seen.detach()
        return super().close()

    def closeEvent(self, ev) -> None:
        self._subs.disconnect_all()
        super().closeEvent(ev)
