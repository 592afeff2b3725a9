"""Through-time export jobs (issue 9), apart from the command line so the window's export
dialog can use them: ``ThroughTimeExportJob`` renders the through-time view offscreen,
one frame per iteration or per micro-step (forward t = 1..T, loss, backward t = T..1,
update); ``ThroughTimeDialogJob`` gives it the interface the dialog's runner drives, and
``export_from_window`` is the through-time window's own Export button. ``main.py export``
(``ui.export.through_time``) runs the same job, so both write the same frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from ui.export.files import MANIFEST_FORMAT, check_destination, describe_os_error
from ui.export.frames import FrameInfo
from ui.export_spec import MAX_FRAMES, ExportError, ExportSettings, count_frames

VIEW_NAME = "through_time"
# below this the window's fixed-height plots squeeze its per-time-step bars to nothing
MIN_WIDTH, MIN_HEIGHT = 480, 600


@dataclass(frozen=True)
class TimeStepFrameInfo(FrameInfo):
    """A frame of the through-time export: ``layer`` is the time step too (0 for the loss,
    the update and the starting state), and ``time_step`` says so by name."""

    time_step: int = 0

    def to_json(self) -> dict:
        return {**super().to_json(), "time_step": self.time_step}


class ThroughTimeFrames:
    """Steps a ``ThroughTimeController`` (every compared cell in step) and yields one
    ``TimeStepFrameInfo`` per frame; the window connected to the controller has drawn
    the state by then. Iterations between animated ones (``every``) run at full speed."""

    def __init__(self, controller, steps: int, micro: bool, every: int):
        self.controller = controller
        self.steps, self.micro, self.every = int(steps), bool(micro), max(1, int(every))
        first = next(iter(controller.sims.values()))
        self.n_micro_steps = first.n_micro_steps
        self.total = count_frames(self.steps, self.micro, self.every, self.n_micro_steps)
        self.diverged = None

    def _info(self, index: int) -> TimeStepFrameInfo:
        snaps = self.controller.snapshots
        snap = next(iter(snaps.values()))
        # the first cell's loss: every cell shares step, phase and time step
        t = int(snap.time_step)
        return TimeStepFrameInfo(index, int(snap.step), snap.phase, t, float(snap.loss), t)

    def _diverged(self):
        for snap in self.controller.snapshots.values():
            if snap.divergence is not None:
                return snap.divergence
        return None

    def __iter__(self):
        c = self.controller
        index = 0
        yield self._info(index)
        done = 0
        while done < self.steps:
            if self.micro and done % self.every == 0:
                start = c.snapshots[next(iter(c.snapshots))].step
                while True:
                    c.micro_step()
                    index += 1
                    yield self._info(index)
                    snap = next(iter(c.snapshots.values()))
                    if self._diverged() is not None or snap.step != start:
                        break
                done += 1
            else:
                n = min(self.every - done % self.every, self.steps - done)
                for _ in range(n):
                    c.step()
                done += n
                if not self.micro:
                    index += 1
                    yield self._info(index)
            if self._diverged() is not None:
                self.diverged = self._diverged()
                return


def build_controller(experiment):
    """A ThroughTimeController with its simulations built now, on this thread (no worker,
    no play): every step of the export is a synchronous call."""
    from simulator.recurrent import warmup
    from simulator.recurrent.simulation import RecurrentSimulation
    from ui.views.through_time import ThroughTimeController

    warmup((experiment.dtype,))
    controller = ThroughTimeController(experiment)
    controller.sims = {c: RecurrentSimulation(experiment.with_cell(c), eval_every=20)
                       for c in experiment.cells}
    controller.is_ready = True
    return controller


def build_window(controller, title: str):
    """The through-time window as the screen shows it, minus the toolbar's controls (an
    export cannot be clicked); its status line becomes the frame's caption."""
    from ui.views.through_time import ThroughTimeWindow

    window = ThroughTimeWindow(controller)
    for w in (window.preset_box, window.lag_box, *window.buttons.values()):
        w.hide()
    bar = window.layout().itemAt(0).layout()
    for i in range(bar.count()):
        w = bar.itemAt(i).widget()
        if w is not None and w is not window.status:
            w.hide()
    window.export_title = title
    return window


def caption(title: str, info: TimeStepFrameInfo, lag: int) -> str:
    if info.phase in ("forward", "backward") and info.time_step:
        where = f"{info.phase} · time step {info.time_step} of {lag}"
    else:
        where = info.phase
    return f"{title}  ·  step {info.step}  ·  {where}"


def check_size(settings: ExportSettings) -> None:
    if settings.width < MIN_WIDTH or settings.height < MIN_HEIGHT:
        raise ExportError(f"The through-time view needs frames of at least {MIN_WIDTH}x"
                          f"{MIN_HEIGHT} pixels to show its plots (got "
                          f"{settings.width}x{settings.height}).")


class ThroughTimeExportJob:
    """One through-time export: ``start`` builds the simulations, the window and the
    temporary output; ``step(seconds)`` renders and writes frames for about that long
    (True while frames remain), so the window can export in short slices; ``cancel``
    stops it between frames and removes what was written. ``result`` is the saved path
    once done; ``diverged`` the divergence report if training diverged on the way."""

    def __init__(self, experiment, settings: ExportSettings, progress=None):
        self.experiment = experiment
        self.settings = settings
        self.progress = progress
        self.frames_done = 0
        self.result: Path | None = None
        self.cancelled = False
        self.finished = False
        self._controller = self._writer = self._capture = self._window = None
        self._frames = self._iter = None
        self._t0 = 0.0

    @property
    def total(self) -> int:
        return self._frames.total if self._frames is not None else 0

    @property
    def diverged(self):
        return self._frames.diverged if self._frames is not None else None

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._t0

    def cancel(self) -> None:
        self.cancelled = True

    def start(self) -> None:
        """Raises ExportError (bad settings, too many frames) or OSError (destination)."""
        from ui.export.capture import FrameCapture
        from ui.export.writers import WRITERS

        s, exp = self.settings, self.experiment
        s.validate()
        check_size(s)
        total = count_frames(s.steps, s.micro, s.every, 2 * exp.task.lag + 2)
        if total > MAX_FRAMES:
            raise ExportError(f"That would be {total} frames (at most {MAX_FRAMES}): export "
                              "fewer steps or keep only every K-th one.")
        manifest = {
            "format": MANIFEST_FORMAT, "version": 1, "experiment": exp.name,
            "seed": int(exp.seed), "view": VIEW_NAME, "size": [s.width, s.height],
            "fps": s.fps, "granularity": "micro-step" if s.micro else "iteration",
            "every": s.every, "cells": list(exp.cells), "lag": int(exp.task.lag),
        }
        self._t0 = time.perf_counter()
        self._controller = build_controller(exp)
        self._writer = WRITERS[s.format](s.out, s.size, s.fps, manifest)
        try:
            self._writer.open()
            self._window = build_window(self._controller, exp.name)
            self._capture = FrameCapture(self._window, s.size)
            # one unsaved render first: pyqtgraph's axes size themselves to their tick
            # labels while painting, so the first frame would otherwise show them at a
            # width that depends on what this process drew before (the app vs the CLI)
            self._capture.grab()
            self._frames = ThroughTimeFrames(self._controller, s.steps, s.micro, s.every)
            self._iter = iter(self._frames)
        except BaseException:
            self.close(discard=True)
            raise

    def step(self, seconds: float = 0.04) -> bool:
        if self.finished:
            return False
        deadline = time.perf_counter() + seconds
        try:
            while True:
                if self.cancelled:
                    self.close(discard=True)
                    return False
                info = next(self._iter, None)
                if info is None:
                    self.result = self._writer.commit()
                    self.close(discard=False)
                    return False
                self._window.status.setText(caption(self.experiment.name, info,
                                                    self.experiment.task.lag))
                self._writer.write(self._capture.grab(), info)
                self.frames_done += 1
                if self.progress is not None:
                    self.progress(self.frames_done, self.total)
                if time.perf_counter() >= deadline:
                    return True
        except BaseException:
            self.close(discard=True)
            raise

    def close(self, discard: bool) -> None:
        """Remove the temporary output (``discard``) and everything the export built."""
        self.finished = True
        if discard and self._writer is not None:
            self._writer.interrupt()
            self._writer.discard()
        if self._iter is not None:
            self._iter.close()
            self._iter = None
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        if self._controller is not None:
            self._controller.close()
            self._controller.deleteLater()
            self._controller = None


class ThroughTimeDialogJob:
    """``ThroughTimeExportJob`` as the export dialog's runner drives it (the interface of
    ``ExportJob``: ``start`` raises ExportError after setting ``result``, ``step`` renders
    one slice, ``result`` is an ``ExportResult``). Exports the through-time experiment
    from step 0, drawn as ``main.py export`` draws it, so both write the same frames."""

    def __init__(self, experiment, settings: ExportSettings):
        self.settings = settings
        self.job = ThroughTimeExportJob(experiment, settings)
        self.result = None

    @property
    def frames_done(self) -> int:
        return self.job.frames_done

    @property
    def frames_total(self) -> int:
        return self.job.total

    def cancel(self) -> None:
        self.job.cancel()

    def _fail(self, message: str) -> None:
        from ui.export.job import ExportResult

        self.result = ExportResult("failed", message, None, self.job.frames_done,
                                   self.job.seconds)

    def start(self) -> None:
        s = self.settings
        try:
            out = check_destination(s.format, s.out)
            self.job.settings = self.settings = replace(s, out=out)
            self.job.start()
        except (ExportError, ValueError, MemoryError) as e:
            self._fail(str(e))
            raise ExportError(self.result.message) from None
        except OSError as e:
            self._fail(describe_os_error(e, s.out))
            raise ExportError(self.result.message) from None

    def step(self, seconds: float = 0.04) -> bool:
        from ui.export.files import MANIFEST_NAME
        from ui.export.job import ExportResult

        try:
            more = self.job.step(seconds)
        except OSError as e:
            self._fail(describe_os_error(e, self.settings.out))
            return False
        except ExportError as e:
            self._fail(str(e))
            return False
        if more:
            return True
        job, n = self.job, self.job.frames_done
        if job.result is None:
            self.result = ExportResult("cancelled", "Export cancelled; nothing was saved.",
                                       None, n, job.seconds)
            return False
        warnings = ()
        if job.diverged is not None:
            warnings = (f"Training diverged at step {job.diverged.step}; the export stops "
                        f"there ({n} of {job.total} frames).",)
        extra = f" and {MANIFEST_NAME}" if self.settings.format == "png" else ""
        self.result = ExportResult("done", f"Saved {n} frames{extra} to {job.result}.",
                                   job.result, n, job.seconds, warnings)
        return False


# -- the window's Export button ----------------------------------------------------------------

WINDOW_EXPORT_STEPS = 1  # one training iteration, micro-stepped: the forward pass, then the pulse


def export_from_window(window) -> ThroughTimeExportJob | None:
    """Ask for a .gif or .mp4 file and export the window's experiment from its start: one
    iteration, one frame per micro-step, at 1280x720. Renders in short slices on a timer,
    so the window keeps responding; the status line reports the result. Returns the job
    (None when the user chose no file or the export could not start)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QFileDialog

    path, chosen = QFileDialog.getSaveFileName(
        window, "Export the backward pulse", "through_time.gif",
        "GIF (*.gif);;MP4 video (*.mp4)")
    if not path:
        return None
    fmt = "mp4" if (Path(path).suffix.lower() == ".mp4" or
                    (not Path(path).suffix and "mp4" in chosen)) else "gif"
    from ui.export_spec import with_format_suffix

    settings = ExportSettings(out=with_format_suffix(path, fmt), format=fmt,
                              steps=WINDOW_EXPORT_STEPS, micro=True)
    job = ThroughTimeExportJob(window.controller.experiment, settings)
    try:
        settings = replace(settings, out=check_destination(fmt, settings.out))
        job.settings = settings
        job.start()
    except (ExportError, ValueError, MemoryError) as e:
        window.status.setText(f"Export failed: {e}")
        return None
    except OSError as e:
        window.status.setText(f"Export failed: {describe_os_error(e, settings.out)}")
        return None
    window.export_job = job
    timer = QTimer(window)
    timer.setSingleShot(True)

    def tick():
        try:
            more = job.step()
        except (OSError, ExportError) as e:
            message = describe_os_error(e, settings.out) if isinstance(e, OSError) else str(e)
            window.status.setText(f"Export failed: {message}")
            return
        if more:
            window.status.setText(f"Exporting\u2026 {job.frames_done}/{job.total} frames")
            timer.start(0)
        elif job.result is not None:
            window.status.setText(f"Saved {job.frames_done} frames to {job.result}")
        else:
            window.status.setText("Export cancelled; nothing was saved.")

    timer.timeout.connect(tick)
    timer.start(0)
    return job
