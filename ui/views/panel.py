"""What every dock panel shares: a "Compiling kernels…" page until the simulation
exists, drawing through ``DrawWhenSeen`` (nothing while tabbed away or closed, the
latest snapshot when shown again), and controller connections dropped on close."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QStackedLayout, QWidget

from . import colors as C

FIT_AFTER_MS = 300  # quiet time after hand steps before a step axis is fitted


def vertical_scroll(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless area that scrolls up and down, never sideways: on a small
    screen a panel scrolls rather than make the window taller."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(widget)
    return scroll


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


class StepAxisPanel(Panel):
    """A panel whose x axis is training steps (loss, gradient history). Stepping by hand,
    the axis grows in nice spans (each new range re-lays out the axis); once the steps
    pause for FIT_AFTER_MS, or play stops, the next draw (``_fit_last``) ends it at the
    last step. Call ``_init_step_axis`` in the constructor; ``_version = None`` makes the
    subclass re-read its data."""

    def _init_step_axis(self) -> None:
        self._fit_last = False  # the next draw ends the step axis at the last step
        self._fit_timer = QTimer(self)
        self._fit_timer.setSingleShot(True)
        self._fit_timer.setInterval(FIT_AFTER_MS)
        self._fit_timer.timeout.connect(self._fit_to_last_step)

    def _on_running_changed(self, running: bool) -> None:
        if not running:
            self._version = None  # re-read: the step axis now fits the last step
            self._fit_last = True
        super()._on_running_changed(running)

    def _on_snapshot_changed(self, snapshot) -> None:
        super()._on_snapshot_changed(snapshot)
        if not self.controller.is_playing:
            self._fit_timer.start()  # once the steps pause, the axis ends at the last one

    def _fit_to_last_step(self) -> None:
        if self.controller.is_playing or self.controller.sim is None:
            return
        if self.window().testAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen):
            return  # drawn for an exported frame: every frame by the same rule, no timing
        self._version = None
        self._fit_last = True
        self._seen.request(self.controller.snapshot, force=True)
