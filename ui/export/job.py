"""One export, start to finish: ``ExportJob`` renders frames on the calling (GUI)
thread in short slices while one encoder thread writes them; ``clone_controller``
gives the export a private copy of the simulation."""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ui.export.capture import FrameCapture, build_capture
from ui.export.files import MANIFEST_FORMAT, MANIFEST_NAME, check_destination, describe_os_error
from ui.export.frames import FrameInfo, FrameSource
from ui.export.writers import WRITERS, FrameWriter
from ui.export_spec import MAX_FRAMES, ExportError, ExportSettings

SLICE_SECONDS = 0.04  # GUI export: render for this long, then let the window breathe


class _EncoderThread:
    """Runs ``writer.write`` on one worker thread, at most two frames behind.

    zlib, the GIF encoder and the pipe to ffmpeg release the GIL, so this overlaps
    encoding with rendering the next frame on the GUI thread.
    """

    _STOP = object()

    def __init__(self, writer: FrameWriter):
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._work, name="export-encoder", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is not None or self._abort.is_set():
                continue  # keep draining so put() never blocks forever
            try:
                self.writer.write(*item)
            except BaseException as e:  # handed to the GUI thread, which reports it
                self._error = e

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, rgb: np.ndarray, info: FrameInfo) -> None:
        self._raise_if_failed()
        self._queue.put((rgb, info))

    def finish(self) -> None:
        """Wait for every queued frame; raise what the writer raised."""
        self._queue.put(self._STOP)
        self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Drop the queued frames and wait for the thread (call ``writer.interrupt`` first,
        so a write under way returns)."""
        self._abort.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._queue.put(self._STOP)
        self._thread.join()




@dataclass(frozen=True)
class ExportResult:
    status: str  # "done", "cancelled" or "failed"
    message: str  # for the user
    path: Path | None = None  # what was written (done only)
    frames: int = 0
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()

    @property
    def folder(self) -> Path | None:
        """The folder to open for the user."""
        if self.path is None:
            return None
        return self.path if self.path.is_dir() else self.path.parent


class ExportJob:
    """Renders and writes one export, headless (``run``) or in GUI slices (``step``).

    ``controller`` must be the export's own SimulationController (the job steps
    it; see ``clone_controller``). ``progress(done, total)`` is called after every
    frame; ``cancel()`` may be called from it or between slices. ``result`` is
    set once the job has finished, failed or been cancelled.
    """

    def __init__(self, controller, settings: ExportSettings, experiment_name: str = "",
                 progress: Callable[[int, int], None] | None = None, layout_state=None):
        self.controller = controller
        self.layout_state = layout_state  # the "window" capture: the user's dock layout
        self.settings = settings
        sim = controller.sim
        self.experiment_name = experiment_name or (sim.experiment.name if sim else "")
        self.progress = progress
        self.warnings: list[str] = []
        self.frames_done = 0
        self.frames_total = 0
        self.view = settings.view
        self.result: ExportResult | None = None
        self._cancelled = False
        self._writer: FrameWriter | None = None
        self._encoder: _EncoderThread | None = None
        self._capture: FrameCapture | None = None
        self._source: FrameSource | None = None
        self._frames: Iterator | None = None
        self._started = False
        self._t0 = 0.0

    @property
    def started(self) -> bool:
        return self._started

    @property
    def finished(self) -> bool:
        return self.result is not None

    def cancel(self) -> None:
        self._cancelled = True

    def start(self) -> None:
        """Check what can be checked, then create the temporary output: an unwritable
        destination fails here, before any frame is rendered. Raises ExportError."""
        s = self.settings
        try:
            s.validate()
            self._check_view(s)
            dest = check_destination(s.format, s.out)
            source = self._frame_source(s)
            if source.total > MAX_FRAMES:
                raise ExportError(f"That would be {source.total} frames (at most "
                                  f"{MAX_FRAMES}): export fewer steps or keep only every "
                                  "K-th one.")
        except ExportError as e:
            self.result = ExportResult("failed", str(e))
            raise
        manifest = {
            "format": MANIFEST_FORMAT, "version": 1, "experiment": self.experiment_name,
            "seed": self._seed(), "view": s.view, "size": [s.width, s.height],
            "fps": s.fps, "granularity": "micro-step" if s.micro else "iteration",
            "every": s.every, **self._manifest_extra(),
        }
        writer = WRITERS[s.format](dest, s.size, s.fps, manifest)
        try:
            writer.open()
            capture, self.view = self._open_capture(s, source)
        except BaseException as e:
            writer.discard()
            message = describe_os_error(e, dest) if isinstance(e, OSError) else str(e)
            self.result = ExportResult("failed", message)
            if isinstance(e, OSError):
                raise ExportError(message) from None
            raise
        manifest["view"] = self.view
        self._writer = writer
        self._capture = capture
        self._source = source
        self._frames = iter(source)
        self._started = True
        self.frames_total = source.total
        self._encoder = _EncoderThread(writer)
        self._t0 = time.perf_counter()

    # -- what a kind of export changes (ui/export/compare.py overrides these) -----------
    def _check_view(self, s: ExportSettings) -> None:
        """Raise ExportError for a view this kind of export cannot draw."""

    def _frame_source(self, s: ExportSettings):
        return FrameSource(self.controller, s.steps, s.micro, s.every)

    def _seed(self) -> int:
        return int(self.controller.sim.experiment.seed)

    def _manifest_extra(self) -> dict:
        return {}

    def _open_capture(self, s: ExportSettings, source) -> tuple:
        """(capture, the view actually drawn); called with the output open."""
        capture, view = build_capture(s.view, self.controller, s.size, self.experiment_name,
                                      warn=self.warnings.append,
                                      layout_state=self.layout_state)
        source.quiet = view != "window"
        return capture, view

    def step(self, seconds: float = SLICE_SECONDS) -> bool:
        """Render frames for about ``seconds`` (at least one). True while frames remain.

        On an error the temporary output is removed and ExportError is raised."""
        if self.result is not None:
            return False
        if not self._started:
            raise RuntimeError("ExportJob.start() first")
        deadline = time.perf_counter() + seconds
        try:
            while True:
                if self._cancelled:
                    self._abort("cancelled", "Export cancelled; nothing was saved.")
                    return False
                item = next(self._frames, None)
                if item is None:
                    self._commit()
                    return False
                snap, info = item
                self._encoder.put(self._capture.grab(snap), info)
                self.frames_done += 1
                if self.progress is not None:
                    self.progress(self.frames_done, self.frames_total)
                if time.perf_counter() >= deadline:
                    return True
        except ExportError as e:
            self._abort("failed", str(e))
            raise
        except OSError as e:
            message = describe_os_error(e, self._writer.dest)
            self._abort("failed", message)
            raise ExportError(message) from None
        except BaseException as e:  # KeyboardInterrupt, a bug in a view: clean up, re-raise
            self._abort("failed", f"The export failed ({type(e).__name__}: {e}); nothing "
                                  "was saved.")
            raise

    def run(self) -> ExportResult:
        """Headless: start, render every frame, write. Raises ExportError on failure."""
        if not self.started:
            self.start()
        while self.step(seconds=1.0):
            pass
        return self.result

    def _commit(self) -> None:
        try:
            self._encoder.finish()
            path = self._writer.commit()
        except OSError as e:
            raise ExportError(describe_os_error(e, self._writer.dest)) from None
        finally:
            self._close_capture()
        n = self.frames_done
        if self._source.diverged is not None:
            self.warnings.append(
                f"Training diverged at step {self._source.diverged.step}; the export stops "
                f"there ({n} of {self.frames_total} frames).")
        if self.settings.format == "png":
            message = f"Saved {n} frames and {MANIFEST_NAME} to {path}."
        else:
            message = f"Saved {n} frames to {path}."
        self.result = ExportResult("done", message, path, n, time.perf_counter() - self._t0,
                                   tuple(self.warnings))

    def _abort(self, status: str, message: str) -> None:
        # Order matters: stop the encoder thread before removing what it writes into.
        if self._writer is not None:
            self._writer.interrupt()
        if self._encoder is not None:
            self._encoder.abort()
        if self._writer is not None:
            self._writer.discard()
        self._close_capture()
        self.result = ExportResult(status, message, None, self.frames_done,
                                   time.perf_counter() - self._t0, tuple(self.warnings))

    def _close_capture(self) -> None:
        # The frame generator is suspended inside the controller's stepping (it holds
        # the controller and the last snapshot): close it now, not whenever the garbage
        # collector (or interpreter shutdown, after the QApplication) gets to it.
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        if self._capture is not None:
            self._capture.close()
            self._capture = None


def clone_controller(controller, parent=None):
    """A new SimulationController with an independent copy of ``controller``'s
    simulation: same structure, weights, optimizer state, step count and history.

    The copy starts at the beginning of an iteration (one under way in the app is
    not carried over) and draws its own mini-batches from there.
    """
    from ui.controller import SimulationController

    with controller.locked() as sim:
        state = sim.capture_state()
        step_count = sim.step_count
        history = copy.deepcopy(sim.history)
        capacity = sim.history_capacity

    def restore(copy_sim):
        copy_sim.restore_state(state)
        copy_sim.step_count = step_count
        copy_sim.history = history

    clone = SimulationController(state.experiment, parent, build_now=True,
                                 history_capacity=capacity)
    if not clone.apply(restore):
        raise ExportError("Could not copy the simulation for the export.")
    return clone


