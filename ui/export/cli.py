"""``python main.py export``: the headless export, with a text progress bar.

This is the one part of the export that imports ui.app (for the window's theme
and for the "window" view); nothing imports this module but the command line."""

from __future__ import annotations

import argparse
import gc
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import (
    QApplication,
)

from ui.export.files import check_destination
from ui.export.job import ExportJob
from ui.export_spec import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ExportError,
    ExportSettings,
    parse_size,
)


class TextProgress:
    """A progress bar on a stream: redrawn in place on a terminal, one line per 10%
    otherwise (logs, CI)."""

    WIDTH = 30

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = time.perf_counter()
        self._last_draw = -1.0
        self._last_decile = -1
        self._open_line = False

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        finished = done >= total
        if self.tty:
            if not finished and now - self._last_draw < 0.1:
                return
        else:
            decile = 10 * done // max(total, 1)
            if decile == self._last_decile:
                return
            self._last_decile = decile
        self._last_draw = now
        elapsed = now - self._t0
        rate = done / elapsed if elapsed > 0 else 0.0
        filled = self.WIDTH * done // max(total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        left = f", {(total - done) / rate:.0f} s left" if rate > 0 and not finished else ""
        line = f"Exporting [{bar}] {done}/{total} frames, {rate:.1f} frames/s{left}"
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self._open_line = not finished
            if finished:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def end_line(self) -> None:
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False


def ensure_qt_application() -> QApplication:
    """The QApplication. A new one is offscreen unless QT_QPA_PLATFORM says otherwise, so
    a headless export looks the same on a laptop and on a server (no screen scaling),
    and wears the window's theme, so its frames look like the screen."""
    app = QApplication.instance()
    if app is None:
        if not os.environ.get("QT_QPA_PLATFORM"):
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
        app = QApplication([sys.argv[0] if sys.argv else "gradient-flow-lab"])
        apply_app_theme(app)
    return app


def apply_app_theme(app: QApplication) -> None:
    """The main window's style and palette (ui.app.apply_theme), where there is one."""
    try:
        from ui.app import apply_theme
    except ImportError:
        return
    apply_theme(app)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """Control characters from file-derived text (names, paths) shown as \\x1b etc.,
    never obeyed by the terminal (as cli.terminal_safe, which this package cannot
    import: the window's copy of the program may have no cli.py)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def load_main_window() -> bool:
    """Import the window (which registers itself as the "window" view); False if this
    copy of the program has none (the export then falls back to the composed view)."""
    try:
        import ui.app  # noqa: F401
    except ImportError:
        return False
    return True


def cli_run(args: argparse.Namespace, stderr=None) -> int:
    """``python main.py export ...`` (options from ``cli_add_arguments``). Returns the exit
    code: 0 done, 1 the export failed while writing, 2 bad input, 130 interrupted; every
    error is one clear message on stderr."""
    err = stderr if stderr is not None else sys.stderr

    def fail(message: str, code: int) -> int:
        err.write(terminal_safe(f"main.py export: error: {message}") + "\n")
        err.flush()
        return code

    from ui.export.compare import cli_run_compare, comparison_without_flag

    if getattr(args, "compare", False):  # A and B side by side (ui/export/compare.py)
        return cli_run_compare(args, err)
    if comparison_without_flag(args):
        return fail(f"{args.experiment} is a comparison file: add --compare", EXIT_BAD_INPUT)
    from simulator.experiment import load_experiment, load_preset
    from ui.export.through_time import run_through_time, wants_through_time

    if wants_through_time(args):  # a through-time preset or "mode": "recurrent" file
        return run_through_time(args, err)

    # Everything that needs no simulation is checked first, the destination included,
    # so a typo fails at once rather than after compiling and training.
    try:
        settings = ExportSettings(out=Path(args.out), format=args.format, view=args.view,
                                  size=parse_size(args.size), steps=args.steps,
                                  micro=args.micro, every=args.every, fps=args.fps)
        settings.validate()
        if args.preset is not None:
            experiment = load_preset(args.preset)
        else:
            experiment = load_experiment(args.experiment)
        settings = replace(settings, out=check_destination(settings.format, settings.out))
    except (ExportError, ValueError) as e:  # ValueError: ExperimentError, SpecError, DataError
        return fail(str(e), EXIT_BAD_INPUT)

    ensure_qt_application()
    if settings.view == "window":
        load_main_window()
    from ui.controller import SimulationController

    with deferred_interrupt() as interrupt:
        try:
            controller = SimulationController(experiment, build_now=True)
        except ValueError as e:  # the experiment's data and network do not fit together
            return fail(f"cannot start the experiment: {e}", EXIT_BAD_INPUT)
        except MemoryError:
            return fail("cannot start the experiment: there is not enough memory for it. "
                        "Use fewer or narrower layers, a smaller batch or less data.",
                        EXIT_BAD_INPUT)
        progress = TextProgress(err)
        job = ExportJob(controller, settings, experiment_name=experiment.name,
                        progress=progress)
        return run_job(job, progress, interrupt, err, fail,
                       cleanup=lambda: dispose(controller))


def run_job(job, progress, interrupt, err, fail, cleanup) -> int:
    """Run an export job to the end inside ``deferred_interrupt`` and report on ``err``:
    the exit code. Ctrl+C cancels the job (nothing saved, exit 130); ``cleanup`` runs
    whatever happens (the command has no event loop to delete widgets later)."""
    interrupt.on_interrupt = job.cancel
    try:
        if interrupt.requested:
            job.cancel()
        job.start()
        result = job.run()
    except ExportError as e:
        progress.end_line()
        return fail(str(e), EXIT_FAILED if job.started else EXIT_BAD_INPUT)
    finally:
        cleanup()
    if result.status == "cancelled" or interrupt.requested:
        progress.end_line()
        err.write("main.py export: cancelled; nothing was saved.\n")
        err.flush()
        return EXIT_INTERRUPTED
    for warning in result.warnings:
        err.write(terminal_safe(f"main.py export: warning: {warning}") + "\n")
    err.write(terminal_safe(f"{result.message} ({result.frames} frames in "
                            f"{result.seconds:.1f} s)") + "\n")
    err.flush()
    return EXIT_OK


def dispose(controller) -> None:
    """Stop and delete the export's controller and every widget the job handed to
    ``deleteLater``, now. The command runs no event loop, so without this they would
    be destroyed during interpreter shutdown, in the garbage collector's order and
    after the QApplication: a segfault at exit (seen after a Ctrl+C)."""
    controller.shutdown()
    controller.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


class deferred_interrupt:
    """Ctrl+C (SIGINT) as a request, not an exception, for as long as Qt draws.

    Python's default SIGINT handler raises KeyboardInterrupt in whatever Python code
    runs next, and during an export that is nearly always a pyqtgraph ``paint()``
    (or another virtual override) called from inside C++ ``QGraphicsView::paintEvent``.
    An exception cannot unwind through those C++ frames: PySide6 keeps it pending
    while Qt goes on painting and calling further Python overrides, which crashes
    (SIGSEGV) or loses the exception (the export then runs to the end). So the
    handler only records the request and calls ``on_interrupt`` (the job's
    ``cancel``, which sets a flag); the job stops between frames and removes its
    temporary output. Restores the previous handler on exit."""

    def __init__(self):
        self.requested = False
        self.on_interrupt: Callable[[], None] | None = None
        self._previous = None

    def _handle(self, _signum, _frame) -> None:
        self.requested = True
        if self.on_interrupt is not None:
            self.on_interrupt()

    def __enter__(self) -> deferred_interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            # main.py notes a Ctrl+C made while it imports (see main.InterruptRequest)
            if getattr(self._previous, "requested", False):
                self.requested = True
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
