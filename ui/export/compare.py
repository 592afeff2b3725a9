"""Exporting a comparison: both sides, A and B stepped in lockstep, in one frame.

``python main.py export --compare --preset KEY | --experiment FILE ...`` builds the
comparison as the compare window does (``ui.compare_window.CompareDriver``), steps it
with the driver and draws each moment with the window's own view classes: each
side's network canvas (``NetworkCanvas`` on that side's ``SideController``) and/or
gradient flow (``GradientFlowView``), A left and B right, under the "what differs"
label. Writing (temporary output, manifest, Ctrl+C) is ``ExportJob``'s, unchanged.
"""

from __future__ import annotations

import gc
import html
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ui.export.capture import FrameCapture, _make_view, frame_caption, phase_and_loss
from ui.export.files import check_destination
from ui.export.frames import FrameInfo
from ui.export.job import ExportJob
from ui.export_spec import (
    EXIT_BAD_INPUT,
    ExportError,
    ExportSettings,
    count_frames,
    parse_size,
)

COMPARE_VIEWS = ("canvas", "flow", "composed")  # what a comparison export can draw
SIDE_COLORS = {"a": "#4e79a7", "b": "#f28e2b"}  # as the compare window's A and B


@dataclass(frozen=True)
class CompareFrameInfo(FrameInfo):
    """A frame of both sides: A's step, phase, layer and loss, plus B's."""

    step_b: int = 0
    phase_b: str = ""
    loss_b: float = math.nan

    def to_json(self) -> dict:
        d = super().to_json()
        d["b"] = {"step": self.step_b, "phase": self.phase_b,
                  "loss": self.loss_b if math.isfinite(self.loss_b) else None}
        return d


class CompareFrameSource:
    """Steps a ``CompareDriver`` and yields ``(CompareFrame, CompareFrameInfo)``:
    frame 0 as it is, then one per kept lockstep iteration, or one per micro-step
    of every kept iteration (until both sides have finished it). Stops when both
    sides have diverged (``diverged`` is then A's report)."""

    def __init__(self, driver, steps: int, micro: bool = False, every: int = 1):
        self.driver = driver
        self.steps, self.micro, self.every = int(steps), bool(micro), max(1, int(every))
        c = driver.comparison
        if micro and c.pretrainer is not None:
            raise ExportError("--micro is not available for a comparison that pretrains B; "
                              "export whole iterations instead.")
        if any(s.divergence is not None for s in c.sides):
            raise ExportError("A side of the comparison has diverged already; there is "
                              "nothing to animate.")
        self.n_micro_steps = max(s.n_micro_steps for s in c.sides)
        self.total = count_frames(self.steps, self.micro, self.every, self.n_micro_steps)
        self.diverged = None

    @staticmethod
    def _info(index: int, frame) -> CompareFrameInfo:
        a, b = frame.a, frame.b
        return CompareFrameInfo(index, int(a.step), a.phase, int(a.layer), float(a.loss),
                                int(b.step), b.phase, float(b.loss))

    def __iter__(self) -> Iterator:
        d = self.driver
        frame = d.frame
        index = 0
        yield frame, self._info(index, frame)
        done = 0
        while done < self.steps:
            if self.micro and done % self.every == 0:
                start = (frame.a.step, frame.b.step)
                for _ in range(4 * self.n_micro_steps):  # never endless
                    d.micro_step()
                    frame = d.frame
                    index += 1
                    yield frame, self._info(index, frame)
                    if self._both_diverged(frame) or (
                            (frame.a.step > start[0] or frame.a.divergence is not None)
                            and (frame.b.step > start[1] or frame.b.divergence is not None)):
                        break
                done += 1
            else:
                n = min(self.every - done % self.every, self.steps - done)
                d.run_steps(n)
                frame = d.frame
                done += n
                if not self.micro:
                    index += 1
                    yield frame, self._info(index, frame)
            if self._both_diverged(frame):
                self.diverged = frame.a.divergence
                return

    @staticmethod
    def _both_diverged(frame) -> bool:
        return frame.a.divergence is not None and frame.b.divergence is not None


class CompareView(QWidget):
    """The "what differs" label and the step over two columns, A left and B right; each
    column is headed by its side's name and loss and shows that side's network canvas
    and/or gradient flow (the window's view classes, each on its side's controller)."""

    def __init__(self, driver, title: str = "", panels=("canvas", "flow"), parent=None):
        from ui.views import colors

        super().__init__(parent)
        self._colors = colors
        self._title = title
        self._names: dict[str, str] = {}
        self.caption = frame_caption(self)
        self.headers: dict[str, QLabel] = {}
        self.views: dict[str, list] = {}
        row = QHBoxLayout()
        row.setSpacing(10)
        for key in ("a", "b"):
            side = driver.sides[key]
            col = QVBoxLayout()
            col.setSpacing(4)
            header = QLabel(self)
            header.setTextFormat(Qt.TextFormat.RichText)
            col.addWidget(header, 0)
            self.headers[key] = header
            self.views[key] = []
            for name, stretch in (("canvas", 3), ("flow", 2)):
                if name in panels:
                    view = _make_view(name, side)
                    if name == "canvas":
                        view.set_drop_target_visible(False)
                    col.addWidget(view, stretch)
                    self.views[key].append(view)
            row.addLayout(col, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.setSpacing(4)
        layout.addWidget(self.caption, 0)
        layout.addLayout(row, 1)

    def _sep(self) -> str:
        return f'<span style="color:{self._colors.MUTED}">&nbsp;&nbsp;·&nbsp;&nbsp;</span>'

    def caption_text(self, frame) -> str:
        """'name · B: residual links ... · step 12'."""
        parts = [f"<b>{html.escape(self._title)}</b>" if self._title else "",
                 f"<b>{html.escape(frame.label)}</b>", f"step {frame.a.step}"]
        pre = frame.pretrain
        if pre is not None and frame.waiting:
            loss = f", reconstruction loss {pre.loss:.4g}" if math.isfinite(pre.loss) else ""
            parts.append(html.escape(f"A waits while B is {pre.label} (step {pre.step} of "
                                     f"{pre.steps_per_layer}{loss})"))
        return self._sep().join(p for p in parts if p)

    def header_text(self, key: str, snap, name: str) -> str:
        """'A  name · backward · layer 3 · loss 0.693', the side letter in its colour."""
        phase, loss = phase_and_loss(snap, self._colors)
        parts = [f'<span style="color:{SIDE_COLORS[key]}; font-weight:700">{key.upper()}</span>'
                 + (f"&nbsp;&nbsp;{html.escape(name)}" if name else ""), phase, f"loss {loss}"]
        if snap.divergence is not None:
            parts.append("diverged")
        return self._sep().join(parts)

    def render_snapshot(self, frame) -> None:
        """Draw one CompareFrame (both sides)."""
        self.caption.setText(self.caption_text(frame))
        for key, snap in (("a", frame.a), ("b", frame.b)):
            self.headers[key].setText(self.header_text(key, snap, self._names.get(key, "")))
            for view in self.views[key]:
                view.render_snapshot(snap)

    def set_names(self, names: dict[str, str]) -> None:
        self._names = dict(names)


def build_driver(spec):
    """The compare window's driver for a ComparisonSpec (raises ExperimentError)."""
    from simulator.compare_experiment import check_comparison
    from ui.compare_window import CompareDriver

    comparison = check_comparison(spec)
    return CompareDriver(spec.a, comparison=comparison)


class CompareExportJob(ExportJob):
    """An ``ExportJob`` whose frames are a comparison's (see ``CompareFrameSource``)."""

    def __init__(self, driver, settings: ExportSettings, experiment_name: str = "",
                 progress=None):
        super().__init__(driver.sides["a"], settings, experiment_name=experiment_name,
                         progress=progress)
        self.driver = driver

    def _check_view(self, s: ExportSettings) -> None:
        if s.view not in COMPARE_VIEWS:
            raise ExportError(f"A comparison exports the views {', '.join(COMPARE_VIEWS)} "
                              f"(got {s.view!r}).")

    def _frame_source(self, s: ExportSettings):
        return CompareFrameSource(self.driver, s.steps, s.micro, s.every)

    def _seed(self) -> int:
        return int(self.driver.comparison.a.experiment.seed)

    def _manifest_extra(self) -> dict:
        return {"comparison": self.driver.comparison.label}

    def _open_capture(self, s: ExportSettings, source) -> tuple:
        c = self.driver.comparison
        panels = {"canvas": ("canvas",), "flow": ("flow",)}.get(s.view, ("canvas", "flow"))
        widget = CompareView(self.driver, self.experiment_name, panels)
        names = (c.a.experiment.name, c.b.experiment.name)
        if names[0] != names[1]:  # B built from A by edits keeps A's name: say nothing
            widget.set_names(dict(zip("ab", names, strict=True)))
        need = widget.minimumSizeHint()
        if need.width() > s.width or need.height() > s.height:
            self.warnings.append(
                f"At {s.width}x{s.height} the two sides do not fit and are cut off; use "
                f"at least {max(need.width(), s.width)}x{max(need.height(), s.height)}.")
        return FrameCapture(widget, s.size), s.view


def _load_spec(args):
    from simulator.compare_experiment import (
        ComparisonSpec,
        list_comparisons,
        load_comparison,
        load_study,
    )

    if args.preset is not None:
        return load_comparison(args.preset)
    study = load_study(args.experiment)
    if not isinstance(study, ComparisonSpec):
        keys = ", ".join(k for k, _, _ in list_comparisons())
        raise ExportError(f"{args.experiment} is an experiment, not a comparison file (drop "
                          f"--compare, or use a comparison preset: --preset {keys})")
    return study


def comparison_without_flag(args) -> bool:
    """True if ``--experiment`` names a comparison file (and --compare was not given)."""
    if getattr(args, "experiment", None) is None:
        return False
    from simulator.compare_experiment import ComparisonSpec, load_study

    try:
        return isinstance(load_study(args.experiment), ComparisonSpec)
    except ValueError:  # not readable as either: the ordinary load says why
        return False


def cli_run_compare(args, stderr=None) -> int:
    """``main.py export --compare ...``: as ``ui.export.cli.cli_run``, for a comparison."""
    from ui.export.cli import (
        TextProgress,
        deferred_interrupt,
        ensure_qt_application,
        run_job,
        terminal_safe,
    )

    err = stderr if stderr is not None else sys.stderr

    def fail(message: str, code: int) -> int:
        err.write(terminal_safe(f"main.py export: error: {message}") + "\n")
        err.flush()
        return code

    try:
        settings = ExportSettings(out=Path(args.out), format=args.format, view=args.view,
                                  size=parse_size(args.size), steps=args.steps,
                                  micro=args.micro, every=args.every, fps=args.fps)
        settings.validate()
        if settings.view not in COMPARE_VIEWS:
            raise ExportError(f"--compare exports the views {', '.join(COMPARE_VIEWS)} "
                              f"(got --view {settings.view}).")
        spec = _load_spec(args)
        settings = replace(settings, out=check_destination(settings.format, settings.out))
    except (ExportError, ValueError) as e:  # ValueError: ExperimentError, SpecError
        return fail(str(e), EXIT_BAD_INPUT)

    ensure_qt_application()
    with deferred_interrupt() as interrupt:
        try:
            driver = build_driver(spec)
        except ValueError as e:
            return fail(f"cannot start the comparison: {e}", EXIT_BAD_INPUT)
        except MemoryError:
            return fail("cannot start the comparison: there is not enough memory for it.",
                        EXIT_BAD_INPUT)
        progress = TextProgress(err)
        job = CompareExportJob(driver, settings, experiment_name=spec.name, progress=progress)
        return run_job(job, progress, interrupt, err, fail,
                       cleanup=lambda: dispose_driver(driver))


def dispose_driver(driver) -> None:
    """Stop and delete the driver and the widgets handed to deleteLater now (as
    ``ui.export.cli.dispose`` does for a controller)."""
    driver.close()
    driver.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
