"""Diagnosis: what ``simulator.diagnosis`` finds, as cards with remedy buttons.

A card is kept for as long as a finding of its kind with the same remedies
stays; only its texts are updated, so the buttons under the user's mouse do
not flicker away every frame. While playing, the diagnosis runs at most
``PLAY_HZ`` times per second.
"""

from __future__ import annotations

import math
import time
from functools import partial

import numpy as np
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from simulator.diagnosis import WINDOW, diagnose
from simulator.glossary import FINDING_TOPICS
from simulator.remedies import hardware_outlook
from simulator.snapshot import HIST_UPDATE_RATIO

from . import colors as C
from .panel import Panel, vertical_scroll

PLAY_HZ = 4.0
ICONS = {"critical": "\u2716", "warning": "\u26a0", "info": "\u2714"}


class FindingCard(QFrame):
    """One finding: severity mark, title, detail, remedy buttons and a 'Why?' link."""

    def __init__(self, finding, panel: DiagnosisPanel):
        super().__init__(panel._list)  # parented from the start: never a window of its own
        self.kind = finding.kind
        self.remedy_keys = tuple(r.key for r in finding.remedies)
        self.setObjectName("card")
        color = C.SEVERITY.get(finding.severity, C.MUTED)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        head = QHBoxLayout()
        self.icon = QLabel(ICONS.get(finding.severity, "\u2022"))
        self.icon.setStyleSheet(f"color: {color}; font-size: 13pt;")
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold;")
        self.title.setWordWrap(True)
        topic = FINDING_TOPICS.get(finding.kind)
        self.why = QLabel('<a href="why" style="color: #8ec5ff;">Why?</a>')
        self.why.setToolTip("A short explanation of this problem")
        self.why.linkActivated.connect(lambda _=None, t=topic: panel.help_requested.emit(t))
        head.addWidget(self.icon)
        head.addWidget(self.title, 1)
        head.addWidget(self.why, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(head)  # parents the labels: only now may they be shown or hidden
        if topic is None:
            self.why.hide()
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        # selectable while the mouse is over it: a selectable label lays its text out
        # twice more after every change, an extra repaint of the panel each time
        self.detail.installEventFilter(self)
        self._detail_box = C.QuietBox(self.detail)  # its numbers change every step
        layout.addWidget(self._detail_box)
        self.buttons = []
        if finding.remedies:
            row = QVBoxLayout()
            row.setSpacing(3)
            for r in finding.remedies:
                b = QPushButton(r.label)
                b.setToolTip(r.why)
                b.setCursor(Qt.CursorShape.PointingHandCursor)
                b.clicked.connect(partial(panel.remedy_requested.emit, r.key))
                row.addWidget(b)
                self.buttons.append(b)
            layout.addLayout(row)
        self.severity = ""
        self.update_from(finding)

    def eventFilter(self, obj, ev) -> bool:
        if obj is self.detail:
            if ev.type() == QEvent.Type.Enter:
                self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            elif ev.type() == QEvent.Type.Leave and not self.detail.hasSelectedText():
                self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        return False

    def matches(self, finding) -> bool:
        return (finding.kind == self.kind
                and tuple(r.key for r in finding.remedies) == self.remedy_keys)

    def update_from(self, finding) -> None:
        if self.title.text() != finding.title:
            self.title.setText(finding.title)
        if self.detail.text() != finding.detail:
            self.detail.setText(finding.detail)
        if finding.severity != self.severity:
            self.severity = finding.severity
            color = C.SEVERITY.get(finding.severity, C.MUTED)
            self.icon.setText(ICONS.get(finding.severity, "\u2022"))
            self.icon.setStyleSheet(f"color: {color}; font-size: 13pt;")
            self.setStyleSheet(
                f"QFrame#card {{ background: {C.PANEL}; border: 1px solid {C.GRID}; "
                f"border-left: 4px solid {color}; border-radius: 4px; }}"
                f"QLabel {{ color: {C.FOREGROUND}; background: transparent; }}")


class HardwareCard(QFrame):
    """The honest "faster hardware" remedy: what more steps per second would buy the
    lowest layer, from its measured update ratio and this machine's measured speed."""

    def __init__(self, panel: DiagnosisPanel):
        super().__init__(panel._list)
        self.setObjectName("card")
        self.setStyleSheet(
            f"QFrame#card {{ background: {C.PANEL}; border: 1px solid {C.GRID}; "
            f"border-left: 4px solid {C.MUTED}; border-radius: 4px; }}"
            f"QLabel {{ color: {C.FOREGROUND}; background: transparent; }}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        self.title = QLabel("Faster hardware?")
        self.title.setStyleSheet("font-weight: bold;")
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.button = QPushButton("Try brute force: fast mode")
        self.button.setToolTip("Train as fast as this machine can, without animation")
        self.button.clicked.connect(panel._on_fast_mode)
        layout.addWidget(self.title)
        layout.addWidget(self.detail)
        layout.addWidget(self.button)
        self.outlook = None

    def show_outlook(self, outlook, layer: int) -> None:
        self.outlook = outlook
        if outlook is None:
            text = (f"Faster hardware only buys more steps; it does not change the gradient. "
                    f"Play for a moment to measure this machine's speed and layer {layer}'s "
                    "update size, and this card says what more speed would buy.")
        else:
            text = outlook.text
        if self.detail.text() != text:
            self.detail.setText(text)


class DiagnosisPanel(Panel):
    remedy_requested = Signal(str)  # a Remedy.key from simulator.diagnosis
    help_requested = Signal(str)  # a topic key from simulator.glossary

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.cards: list[FindingCard] = []
        self.findings = []
        self._last_time = -math.inf
        self._baseline = None  # the first snapshot of this structure: dying vs off at start
        self._rate = math.nan  # measured training steps per second
        self._inputs = None  # what the shown findings were diagnosed from
        self._lowest = math.nan
        controller.rate_changed.connect(self._on_rate_changed)

        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet(
            "background: #5a1d1d; color: #ffecec; border: 1px solid #ff5c5c; "
            "border-radius: 4px; padding: 8px; font-weight: bold;")
        self.banner.hide()
        self.status = QLabel("Compiling kernels\u2026")
        self.status.setWordWrap(True)
        self.status.setStyleSheet(f"color: {C.MUTED};")
        self._list = QWidget()
        self._list_layout = QVBoxLayout(self._list)
        self._list_layout.setContentsMargins(2, 2, 2, 2)
        self._list_layout.setSpacing(6)
        self._list_layout.addStretch(1)
        scroll = vertical_scroll(self._list)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(self.banner)
        layout.addWidget(self.status)
        layout.addWidget(scroll, 1)
        self.setMinimumSize(220, 130)
        self.hardware = HardwareCard(self)
        self._list_layout.insertWidget(0, self.hardware)
        self.hardware.hide()

        # no drawing while tabbed away or closed; the latest snapshot when shown again
        self._subscribe(controller, throttled=True)
        self.render_snapshot(controller.snapshot, force=True)

    def _on_structure_changed(self, spec) -> None:
        self._last_time = -math.inf  # the next snapshot is diagnosed whatever the clock says
        self._baseline = None
        self._inputs = None

    def _on_rate_changed(self, rate: float) -> None:
        if rate > 0:
            self._rate = rate

    def _on_fast_mode(self) -> None:
        self.controller.set_speed("fast")
        if not self.controller.is_playing:
            self.controller.play()

    def _on_ready_changed(self) -> None:
        self.status.setText("Building the network\u2026")

    def render_snapshot(self, snapshot, force: bool = False) -> None:
        if snapshot is None or self.controller.sim is None:
            self.status.setText("Compiling kernels\u2026")
            self.status.show()
            return
        now = time.perf_counter()
        diverged = snapshot.divergence is not None
        if (not force and not diverged and self.controller.is_playing
                and now - self._last_time < 1.0 / PLAY_HZ):
            return
        self._last_time = now
        if (self._baseline is None or snapshot.step == 0
                or self._baseline.spec != snapshot.spec or snapshot.step < self._baseline.step):
            self._baseline = snapshot
        with self.controller.locked() as sim:
            history = sim.history
            # what the diagnosis reads: the same inputs give the same findings, so a
            # snapshot drawn again (play stopping, the panel shown again) is not re-read
            inputs = (snapshot, self._baseline, history, sim.training)
            version = getattr(history, "version", None)
            if self._inputs is not None and version == self._inputs[1] and all(
                    a is b for a, b in zip(inputs, self._inputs[0], strict=True)):
                findings, lowest = self.findings, self._lowest
            else:
                findings = diagnose(snapshot.spec, snapshot, history, sim.training,
                                    baseline=self._baseline, previous=self.findings)
                lowest = self._lowest_update_ratio(history, snapshot)
                self._inputs, self._lowest = (inputs, version), lowest
        self.show_findings(findings, snapshot)
        self._show_hardware(findings, lowest)

    @staticmethod
    def _lowest_update_ratio(history, snapshot) -> float:
        """Layer 1's update ratio: the median of the recent window (the diagnosis's)."""
        if history is not None and len(history) and history.n_layers == snapshot.n_layers:
            # only the window's rows are read, not the whole history
            col = history.rows(HIST_UPDATE_RATIO, len(history) - WINDOW, WINDOW)[:, 0]
            col = col.astype(np.float64)
            col = col[np.isfinite(col)]
            if col.size:
                return float(np.median(col))
        return float(snapshot.update_ratio[0]) if len(snapshot.update_ratio) else math.nan

    def _show_hardware(self, findings, lowest: float) -> None:
        if any(f.kind == "vanishing" for f in findings):
            self.hardware.show_outlook(hardware_outlook(lowest, self._rate), 1)
            self.hardware.show()
        else:
            self.hardware.hide()

    def show_findings(self, findings, snapshot=None) -> None:
        self.findings = list(findings)
        if snapshot is not None and snapshot.divergence is not None:
            text = snapshot.divergence.message
            if self.banner.text() != text:
                self.banner.setText(text)
            self.banner.show()
        else:
            self.banner.hide()
        if not findings:
            self.status.setText("Not enough data yet: step through one backward pass.")
            self.status.show()
        else:
            self.status.hide()
        same = len(findings) == len(self.cards) and all(
            c.matches(f) for c, f in zip(self.cards, findings, strict=True))
        if same:
            for card, f in zip(self.cards, findings, strict=True):
                card.update_from(f)
            return
        for card in self.cards:
            self._list_layout.removeWidget(card)
            card.deleteLater()
        self.cards = []
        for i, f in enumerate(findings):
            card = FindingCard(f, self)
            self._list_layout.insertWidget(i, card)
            self.cards.append(card)
