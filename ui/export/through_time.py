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
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent

from ui.export.files import check_destination, describe_os_error
from ui.export.time_job import (  # noqa: F401  (the names this module always offered)
    MIN_HEIGHT,
    MIN_WIDTH,
    VIEW_NAME,
    WINDOW_EXPORT_STEPS,
    ThroughTimeExportJob,
    ThroughTimeFrames,
    TimeStepFrameInfo,
    build_controller,
    build_window,
    caption,
    check_size,
    export_from_window,
)
from ui.export_spec import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ExportError,
    ExportSettings,
    parse_size,
)

# the --view choices that draw the feedforward network; "canvas" is the option's default,
# so it cannot be told apart from no --view at all and means the through-time view here
FEEDFORWARD_VIEWS = ("flow", "composed", "composed_factors", "window")



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


def run_through_time(args: argparse.Namespace, stderr=None) -> int:
    """The through-time export from the command line; exit codes as ``cli_run``'s."""
    from ui.export.cli import (
        TextProgress,
        deferred_interrupt,
        ensure_qt_application,
        terminal_safe,
    )

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
        check_size(settings)
        experiment = _load(args)
        settings = replace(settings, out=check_destination(settings.format, settings.out))
    except (ExportError, ValueError) as e:
        return fail(str(e), EXIT_BAD_INPUT)

    ensure_qt_application()
    progress = TextProgress(err)
    job = ThroughTimeExportJob(experiment, settings, progress)
    with deferred_interrupt() as interrupt:
        interrupt.on_interrupt = job.cancel
        try:
            try:
                job.start()
            except ExportError as e:
                return fail(str(e), EXIT_BAD_INPUT)
            except OSError as e:
                return fail(describe_os_error(e, settings.out), EXIT_BAD_INPUT)
            except (ValueError, MemoryError) as e:
                return fail(f"cannot start the experiment: {e}", EXIT_BAD_INPUT)
            if interrupt.requested:
                job.cancel()
            try:
                while job.step(seconds=1.0):
                    pass
            except (OSError, ExportError) as e:
                progress.end_line()
                message = (describe_os_error(e, settings.out) if isinstance(e, OSError)
                           else str(e))
                return fail(message, EXIT_FAILED)
        finally:
            # no event loop runs here: delete the widgets now, not at interpreter exit
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            gc.collect()
    if job.result is None:
        progress.end_line()
        err.write("main.py export: cancelled; nothing was saved.\n")
        err.flush()
        return EXIT_INTERRUPTED
    n = job.frames_done
    if job.diverged is not None:
        err.write(terminal_safe(
            f"main.py export: warning: training diverged at step {job.diverged.step}; "
            f"the export stops there ({n} of {job.total} frames).") + "\n")
    err.write(terminal_safe(f"Saved {n} frames to {job.result} ({n} frames in "
                            f"{job.seconds:.1f} s)") + "\n")
    err.flush()
    return EXIT_OK
