"""``python main.py export`` for the through-time mode (issue 9): a through-time preset or a
``"mode": "recurrent"`` experiment file, drawn with the through-time window's own widgets.

One frame for the starting state, then one per iteration, or with ``--micro`` one per
micro-step (forward t = 1..T, loss, backward t = T..1, update), so the backward pulse
travels from the last time step to the first. The writers, the frames.json manifest and
the Ctrl+C handling are the feedforward export's; the manifest's frames also record the
time step each micro-step touched.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent

from ui.export.files import MANIFEST_FORMAT, check_destination, describe_os_error
from ui.export.frames import FrameInfo
from ui.export_spec import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    MAX_FRAMES,
    ExportError,
    ExportSettings,
    count_frames,
    parse_size,
)

VIEW_NAME = "through_time"
# below this the window's fixed-height plots squeeze its per-time-step bars to nothing
MIN_WIDTH, MIN_HEIGHT = 480, 600
# the --view choices that draw the feedforward network; "canvas" is the option's default,
# so it cannot be told apart from no --view at all and means the through-time view here
FEEDFORWARD_VIEWS = ("flow", "composed", "composed_factors", "window")


@dataclass(frozen=True)
class TimeStepFrameInfo(FrameInfo):
    """A frame of the through-time export: ``layer`` is the time step too (0 for the loss,
    the update and the starting state), and ``time_step`` says so by name."""

    time_step: int = 0

    def to_json(self) -> dict:
        return {**super().to_json(), "time_step": self.time_step}


def wants_through_time(args: argparse.Namespace) -> bool:
    """Whether ``--preset``/``--experiment`` names a through-time experiment."""
    if getattr(args, "preset", None) is not None:
        from simulator.recurrent.experiment import list_recurrent_presets

        return args.preset in {key for key, _, _ in list_recurrent_presets()}
    path = getattr(args, "experiment", None)
    if path is None:
        return False
    from simulator.recurrent.experiment import is_recurrent

    try:
        return is_recurrent(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError):
        return False  # the feedforward loader reports what is wrong with the file


def _load(args: argparse.Namespace):
    from simulator.recurrent.experiment import (
        load_recurrent_experiment,
        load_recurrent_preset,
    )

    if args.preset is not None:
        return load_recurrent_preset(args.preset)
    return load_recurrent_experiment(args.experiment)


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


def run_through_time(args: argparse.Namespace, stderr=None) -> int:
    """The through-time export from the command line; exit codes as ``cli_run``'s."""
    from ui.export.cli import (
        TextProgress,
        deferred_interrupt,
        ensure_qt_application,
        terminal_safe,
    )
    from ui.export.writers import WRITERS

    err = stderr if stderr is not None else sys.stderr

    def fail(message: str, code: int) -> int:
        err.write(terminal_safe(f"main.py export: error: {message}") + "\n")
        err.flush()
        return code

    what = f"--preset {args.preset}" if args.preset is not None else "this experiment"
    if args.view in FEEDFORWARD_VIEWS:
        return fail(f"--view {args.view} draws a feedforward network, but {what} is a "
                    "through-time (recurrent) experiment, which is exported with the "
                    "through-time view: leave out --view.", EXIT_BAD_INPUT)
    try:
        settings = ExportSettings(out=Path(args.out), format=args.format, view="canvas",
                                  size=parse_size(args.size), steps=args.steps,
                                  micro=args.micro, every=args.every, fps=args.fps)
        settings.validate()
        if settings.width < MIN_WIDTH or settings.height < MIN_HEIGHT:
            raise ExportError(f"The through-time view needs frames of at least {MIN_WIDTH}x"
                              f"{MIN_HEIGHT} pixels to show its plots (got "
                              f"{settings.width}x{settings.height}).")
        experiment = _load(args)
        settings = replace(settings, out=check_destination(settings.format, settings.out))
    except (ExportError, ValueError) as e:
        return fail(str(e), EXIT_BAD_INPUT)
    n_micro = 2 * experiment.task.lag + 2
    total = count_frames(settings.steps, settings.micro, settings.every, n_micro)
    if total > MAX_FRAMES:
        return fail(f"That would be {total} frames (at most {MAX_FRAMES}): export fewer "
                    "steps or keep only every K-th one.", EXIT_BAD_INPUT)

    ensure_qt_application()
    from ui.export.capture import FrameCapture

    manifest = {
        "format": MANIFEST_FORMAT, "version": 1, "experiment": experiment.name,
        "seed": int(experiment.seed), "view": VIEW_NAME,
        "size": [settings.width, settings.height], "fps": settings.fps,
        "granularity": "micro-step" if settings.micro else "iteration",
        "every": settings.every, "cells": list(experiment.cells),
        "lag": int(experiment.task.lag),
    }
    with deferred_interrupt() as interrupt:
        try:
            controller = build_controller(experiment)
        except (ValueError, MemoryError) as e:
            return fail(f"cannot start the experiment: {e}", EXIT_BAD_INPUT)
        writer = WRITERS[settings.format](settings.out, settings.size, settings.fps, manifest)
        capture = None
        progress = TextProgress(err)
        t0 = time.perf_counter()
        frames = ThroughTimeFrames(controller, settings.steps, settings.micro, settings.every)
        try:
            writer.open()
            window = build_window(controller, experiment.name)
            capture = FrameCapture(window, settings.size)
            n = 0
            for info in frames:
                if interrupt.requested:
                    break
                window.status.setText(caption(experiment.name, info, experiment.task.lag))
                writer.write(capture.grab(), info)
                n += 1
                progress(n, frames.total)
            if interrupt.requested:
                writer.interrupt()
                writer.discard()
                progress.end_line()
                err.write("main.py export: cancelled; nothing was saved.\n")
                err.flush()
                return EXIT_INTERRUPTED
            path = writer.commit()
        except (OSError, ExportError) as e:
            writer.discard()
            progress.end_line()
            message = describe_os_error(e, settings.out) if isinstance(e, OSError) else str(e)
            return fail(message, EXIT_FAILED)
        except BaseException:
            writer.discard()
            raise
        finally:
            if capture is not None:
                capture.close()
            controller.close()
            controller.deleteLater()
            # no event loop runs here: delete the widgets now, not at interpreter exit
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            gc.collect()
    if frames.diverged is not None:
        err.write(terminal_safe(
            f"main.py export: warning: training diverged at step {frames.diverged.step}; "
            f"the export stops there ({n} of {frames.total} frames).") + "\n")
    err.write(terminal_safe(f"Saved {n} frames to {path} "
                            f"({n} frames in {time.perf_counter() - t0:.1f} s)") + "\n")
    err.flush()
    return EXIT_OK
