"""The one owner of the Simulation in the app: clock, worker thread, undo stack, signals.

Views take the controller in their constructor, connect to its signals and
render the ``Snapshot`` they are handed; they never change the simulation
themselves. Every user edit goes through ``push_edit`` as an undoable command.

Threads: stepping, micro-stepping and animated play run on the GUI thread in
short slices (one tick is one micro-step or one iteration). Fast
mode trains in a worker thread (the kernels release the GIL) and the GUI
draws the newest snapshot, at most ``FAST_FPS`` times a second and only as
often as keeps its own CPU time within ``FAST_GUI_SHARE`` (drawing competes with
training for the CPUs: at 30 frames a second the window took a third of one).
A lock guards the Simulation;
the worker holds it only for one short chunk at a time, and hands it over
between two chunks to a thread that waits for it (a plain lock lets the
releasing thread take it straight back, which kept the window waiting for
hundreds of milliseconds), so a view or an edit waits at most one chunk.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QUndoStack

from simulator.experiment import Experiment
from simulator.simulation import Simulation

FAST_CHUNK_SECONDS = 0.005  # worker: training time per lock hold, the longest a view waits
FAST_FPS = 30
FAST_SWITCH_INTERVAL = 0.0005  # s, sys.setswitchinterval while the fast worker runs
FAST_EVAL_EVERY = 50  # held-out evaluation interval (steps) in fast mode
# fast mode: the GUI thread's CPU time per second spent drawing, at most. With two CPUs
# (or one) every millisecond the window draws is one the worker loses to it or to the
# rest of the machine; with more, the window has a CPU of its own.
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
FAST_GUI_SHARE = 0.15 if (_CPUS or 1) <= 2 else 0.5
# play speeds: name -> (iterations per second, or None for fast mode); "micro" animates
# every forward/backward layer at MICRO_RATE micro-steps per second.
SPEEDS = {"slow": 2.0, "normal": 10.0, "quick": 60.0, "fast": None}
MICRO_RATE = 12.0


class LayerSelection:
    """The selected layer (1..L+1, 0 for none) of a controller that the network canvas
    and the views draw: the main window's, or one side of the compare window. The class
    using it declares ``selection_changed = Signal(int)`` and sets ``_selected = 0``."""

    @property
    def selected_layer(self) -> int:
        return self._selected

    def select_layer(self, k: int) -> None:
        if k != self._selected:
            self._selected = int(k)
            self.selection_changed.emit(self._selected)


class SimulationController(LayerSelection, QObject):
    snapshot_changed = Signal(object)  # Snapshot
    structure_changed = Signal(object)  # NetworkSpec, after an edit changed the network
    experiment_changed = Signal(object)  # Experiment, after any settings change
    diverged = Signal(object)  # DivergenceReport
    running_changed = Signal(bool)
    compiling_changed = Signal(bool)  # kernels are being compiled / loaded
    ready = Signal()  # the simulation exists (after the first compile)
    selection_changed = Signal(int)  # selected layer 1..L+1, 0 for none
    rate_changed = Signal(float)  # measured training iterations per second
    error = Signal(str)  # a message for the user (bad file, bad value, ...)
    start_failed = Signal(str)  # the first experiment could not be built (then: a fallback)
    _worker_snapshot = Signal(object)

    def __init__(self, experiment: Experiment, parent=None, build_now: bool = True,
                 history_capacity: int = 5000):
        super().__init__(parent)
        self._experiment0 = experiment
        self._history_capacity = history_capacity
        self.sim: Simulation | None = None
        self.snapshot = None
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(200)
        self._lock = threading.RLock()
        # taken before the lock (not when re-entering it): whoever waits for the lock
        # is served before the worker's next chunk
        self._turn = threading.Lock()
        self._held = threading.local()  # per thread: how deep inside the lock it is
        self._selected = 0
        self._speed = "normal"
        self._micro = False  # animate micro-steps while playing
        self._playing = False
        self._clock = QTimer(self)
        self._clock.setSingleShot(True)  # re-armed after each tick: ticks never pile up
        self._clock.timeout.connect(self._on_tick)
        self._worker: threading.Thread | None = None
        self._worker_stop = threading.Event()
        self._newest = None  # the worker's snapshot not drawn yet (the worker makes no other)
        self._frame_mark = None  # (wall, GUI thread CPU time) when the last fast frame began
        self._frame_timer = QTimer(self)
        self._frame_timer.setSingleShot(True)
        self._frame_timer.timeout.connect(self._on_worker_snapshot)
        self._worker_snapshot.connect(self._on_worker_snapshot)
        self._rate_t0 = time.perf_counter()
        self._rate_steps = 0
        self._last_step_count = 0
        self._build_thread = None
        # what the status bar says while build_in_background runs
        self.startup_text = "Compiling kernels\u2026"
        if build_now:
            self._build(experiment)

    # -- start-up -----------------------------------------------------------------
    def _build(self, experiment: Experiment) -> None:
        sim = Simulation(experiment, history_capacity=self._history_capacity)
        self._install(sim)

    def _install(self, sim: Simulation) -> None:
        first = self.sim is None
        with self._hold():
            self.sim = sim
        self._last_step_count = sim.step_count
        if first:
            self.ready.emit()
        self.structure_changed.emit(sim.spec)
        self.experiment_changed.emit(sim.experiment)
        self._publish(sim.snapshot())

    def build_in_background(self, fallback: Experiment | None = None) -> None:
        """Compile the kernels and build the simulation off the GUI thread; the window
        shows a compiling (or, from numba's cache, loading) state meanwhile, the first
        frame as soon as the kernels it needs exist, and ``ready`` fires at the end.

        If the experiment cannot be built (its data file is gone, it does not fit in
        memory, ...), ``start_failed`` and ``error`` carry the reason and ``fallback``
        (if given) is built instead, so the window is never left without a simulation."""
        import simulator

        exp = self._experiment0
        capacity = self._history_capacity
        wanted = [exp] + ([fallback] if fallback is not None else [])
        dtypes = tuple(dict.fromkeys(["float32"] + [str(e.dtype) for e in wanted]))
        self.startup_text = ("Loading kernels\u2026" if simulator.kernels_cached(dtypes)
                             else "Compiling kernels\u2026")
        self.compiling_changed.emit(True)
        done = _Relay(self)
        done.built.connect(self._on_built)
        done.first_frame.connect(self._on_first_frame)

        def work():
            message = ""
            try:
                # what the first frame needs first: building the simulation runs the
                # forward and backward pass of its first batch
                sim = Simulation(exp, history_capacity=capacity)
            except MemoryError:
                message = (f"Could not start \u201c{exp.name}\u201d: there is not enough "
                           "memory for it.")
            except Exception as e:  # reported to the user, never lost
                message = f"Could not start \u201c{exp.name}\u201d: {e}"
            if message:
                if fallback is None:
                    done.built.emit(None, message)
                    return
                try:
                    sim = Simulation(fallback, history_capacity=capacity)
                except Exception as e:
                    done.built.emit(None, f"{message} The default experiment failed too: {e}")
                    return
                message += f" Opened \u201c{fallback.name}\u201d instead."
            self._first_experiment = sim.experiment  # read by _on_first_frame
            done.first_frame.emit(sim.snapshot())
            try:
                # then the rest: micro-steps, fused training, the public API
                simulator.warmup(dtypes)
            except Exception as e:  # reported to the user, never lost
                done.built.emit(None, f"Could not start the simulation: {e}")
                return
            done.built.emit(sim, message)

        self._build_thread = threading.Thread(target=work, name="warmup", daemon=True)
        self._build_thread.start()

    def _on_first_frame(self, snap) -> None:
        """Show the network and its first gradients while training's kernels compile;
        nothing can be stepped until ``ready``."""
        if self.sim is None:
            self.snapshot = snap
            # the settings it shows: the fallback's, if the wanted experiment failed
            self.experiment_changed.emit(getattr(self, "_first_experiment", self._experiment0))
            self.snapshot_changed.emit(snap)

    def _on_built(self, sim, message: str) -> None:
        self.compiling_changed.emit(False)
        if message:
            self.start_failed.emit(message)
        if sim is not None:
            self._install(sim)
        if message:
            self.error.emit(message)

    @property
    def is_ready(self) -> bool:
        return self.sim is not None

    @contextmanager
    def locked(self):
        """Hold the simulation still (the worker pauses between chunks) while reading it."""
        with self._hold():
            yield self.sim

    @contextmanager
    def _hold(self):
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._lock.acquire()  # re-entering: no queueing behind others
        else:
            with self._turn:
                self._lock.acquire()
        self._held.depth = depth + 1
        try:
            yield
        finally:
            self._held.depth = depth
            self._lock.release()

    # -- stepping ---------------------------------------------------------------------
    def _publish(self, snap) -> None:
        self.snapshot = snap
        self.snapshot_changed.emit(snap)
        if snap.divergence is not None:
            if self._playing:
                self.pause()
            self.diverged.emit(snap.divergence)
        self._count_rate(snap.step)

    def _count_rate(self, step: int) -> None:
        self._rate_steps += max(0, step - self._last_step_count)
        self._last_step_count = step
        now = time.perf_counter()
        if now - self._rate_t0 >= 0.5:
            self.rate_changed.emit(self._rate_steps / (now - self._rate_t0))
            self._rate_t0 = now
            self._rate_steps = 0

    def micro_step(self) -> None:
        """One forward or backward layer (or the loss / update)."""
        if not self.is_ready:
            return
        self.pause()
        with self._hold():
            snap = self.sim.micro_step()
        self._publish(snap)

    def skip_to_backward(self) -> None:
        """Micro-step through the rest of the forward pass and the loss, so the next
        micro-step is the first backward layer (from the middle of the backward pass or
        the update: the next iteration's). The view shows the loss just computed."""
        if not self.is_ready:
            return
        self.pause()
        with self._hold():
            sim = self.sim
            if sim.micro_step_name()[0] not in ("forward", "loss"):
                # finish this iteration first (its backward pass and update)
                for _ in range(sim.n_micro_steps):
                    if sim.divergence is not None or sim.position == 0:
                        break
                    sim.micro_step()
            snap = None
            while sim.divergence is None and sim.micro_step_name()[0] in ("forward", "loss"):
                snap = sim.micro_step()
            if snap is None:
                snap = sim.snapshot()
        self._publish(snap)

    def step(self) -> None:
        """Finish the current iteration, or do one whole one."""
        if not self.is_ready:
            return
        self.pause()
        with self._hold():
            snap = self.sim.step()
        self._publish(snap)

    def run_steps(self, n: int) -> None:
        """n iterations at once on the GUI thread (tests, export)."""
        if not self.is_ready:
            return
        with self._hold():
            snap = self.sim.run(n)
        self._publish(snap)

    def reset(self) -> None:
        if not self.is_ready:
            return
        self.pause()
        with self._hold():
            snap = self.sim.reset()
        self.undo_stack.clear()
        self.structure_changed.emit(self.sim.spec)
        self._publish(snap)

    # -- play ---------------------------------------------------------------------------
    @property
    def is_playing(self) -> bool:
        return self._playing

    @property
    def speed(self) -> str:
        return self._speed

    @property
    def animate_micro_steps(self) -> bool:
        """The setting; it applies to the animated speeds only (fast mode never animates)."""
        return self._micro

    def _animating(self) -> bool:
        return self._micro and SPEEDS[self._speed] is not None

    def set_speed(self, speed: str) -> None:
        if speed not in SPEEDS:
            raise ValueError(f"speed must be one of {', '.join(SPEEDS)}")
        was_playing = self._playing
        if was_playing:
            self.pause()
        self._speed = speed
        if was_playing:
            self.play()

    def set_animate_micro_steps(self, on: bool) -> None:
        self._micro = bool(on)

    def toggle_play(self) -> None:
        if self._playing:
            self.pause()
        else:
            self.play()

    def play(self) -> None:
        if not self.is_ready or self._playing:
            return
        if self.sim.divergence is not None:
            self.diverged.emit(self.sim.divergence)
            return
        self._playing = True
        self.running_changed.emit(True)
        if SPEEDS[self._speed] is None:  # fast: no animation, whatever the check box says
            self._start_worker()
        else:
            self._clock.start(0)

    def pause(self) -> None:
        if not self._playing:
            return
        self._playing = False
        self._clock.stop()
        self._stop_worker()
        self.running_changed.emit(False)

    def _tick_interval_ms(self) -> int:
        if self._animating():
            return int(1000 / MICRO_RATE)
        return int(1000 / SPEEDS[self._speed]) if SPEEDS[self._speed] else 0

    def _on_tick(self) -> None:
        if not self._playing:
            return
        t0 = time.perf_counter()
        with self._hold():
            if self._animating():
                snap = self.sim.micro_step()
            else:
                snap = self.sim.step()
        self._publish(snap)
        if self._playing:
            spent = int((time.perf_counter() - t0) * 1000)
            self._clock.start(max(0, self._tick_interval_ms() - spent))

    # -- fast mode worker ------------------------------------------------------------------
    def _start_worker(self) -> None:
        # The worker gives the GIL back at every kernel call and needs it again after;
        # with Python's default 5 ms switch interval it can wait that long each time
        # while the GUI thread draws. A short interval keeps training near full speed.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(FAST_SWITCH_INTERVAL)
        # fused chunks end at held-out evaluations: at thousands of steps per second,
        # one every FAST_EVAL_EVERY steps draws the same curve with longer chunks
        with self._hold():
            self._eval_every = self.sim.eval_every
            self.sim.eval_every = max(self._eval_every, FAST_EVAL_EVERY)
        self._worker_stop.clear()
        self._newest = None
        self._frame_mark = None
        self._worker = threading.Thread(target=self._worker_loop, name="training", daemon=True)
        self._worker.start()

    def _end_fast_settings(self) -> None:
        sys.setswitchinterval(self._switch_interval)
        with self._hold():
            self.sim.eval_every = self._eval_every

    def _stop_worker(self) -> None:
        self._frame_timer.stop()
        if self._worker is not None:
            self._worker_stop.set()
            self._worker.join()
            self._worker = None
            self._end_fast_settings()
            self._newest = None
            with self._hold():
                snap = self.sim.snapshot()
            self._publish(snap)

    def _worker_loop(self) -> None:
        n = 1
        last_emit = 0.0
        while not self._worker_stop.is_set():
            with self._hold():
                sim = self.sim
                t0 = time.perf_counter()
                sim.run(n, snapshot=False)
                dt = time.perf_counter() - t0
                # size the next chunk so one lock hold lasts about FAST_CHUNK_SECONDS
                n = max(1, min(10_000, int(n * FAST_CHUNK_SECONDS / max(dt, 1e-6))))
                now = time.perf_counter()
                diverged = sim.divergence is not None
                snap = None
                # a new snapshot only once the GUI has taken the last one: no copies made for
                # nothing, and no backlog of stale frames queued ahead of the user's input
                if diverged or (self._newest is None and now - last_emit >= 1.0 / FAST_FPS):
                    snap = sim.snapshot()
                    last_emit = now
            if snap is not None:
                self._newest = snap
                self._worker_snapshot.emit(None)  # queued to the GUI thread
            if diverged:
                return
            time.sleep(0)  # let other threads run; a waiting one gets the lock first (_turn)

    def _on_worker_snapshot(self, _=None) -> None:
        snap = self._newest
        if snap is None:  # drawn already
            return
        if snap.divergence is None:
            if not self._playing:
                return
            wait = self._frame_wait()
            if wait > 0:  # drawing now would take the GUI over its share: later
                if not self._frame_timer.isActive():
                    self._frame_timer.start(max(1, int(wait * 1000 + 0.5)))
                return
            self._frame_mark = (time.perf_counter(), time.thread_time())
        self._newest = None  # taken: the worker makes the next one
        if self._playing or snap.divergence is not None:
            self._publish(snap)
            if snap.divergence is not None and self._worker is not None:
                self._worker_stop.set()
                self._worker.join()
                self._worker = None
                self._end_fast_settings()
                if self._playing:
                    self._playing = False
                    self.running_changed.emit(False)

    def _frame_wait(self) -> float:
        """Seconds until the next fast frame may begin: frames are spaced so that the GUI
        thread's CPU time from one to the next (the last frame's handlers and paint, and
        whatever else it did) is at most FAST_GUI_SHARE of the time between them."""
        if self._frame_mark is None:
            return 0.0
        began, cpu = self._frame_mark
        return began + (time.thread_time() - cpu) / FAST_GUI_SHARE - time.perf_counter()

    # -- edits ------------------------------------------------------------------------------
    def push_edit(self, command) -> None:
        """Run an undoable command (see ui.commands); it calls ``apply`` in redo/undo."""
        if not self.is_ready:
            return
        self.undo_stack.push(command)

    def apply(self, edit, *, structural: bool = True) -> bool:
        """Run ``edit(sim)`` under the lock, then announce the result.

        Returns False (and emits ``error``) if the edit was refused, leaving the
        simulation as it was."""
        try:
            with self._hold():
                edit(self.sim)
                snap = self.sim.snapshot()
        except ValueError as e:  # SpecError, DataError, ExperimentError
            self.error.emit(str(e))
            return False
        except MemoryError:  # the budget check (simulator.budget) let through too much
            self.error.emit("There is not enough memory for that change; nothing was "
                            "changed. Use fewer or narrower layers, a smaller batch or "
                            "less data.")
            return False
        if structural:
            self.structure_changed.emit(self.sim.spec)
        self.experiment_changed.emit(self.sim.experiment)
        self._publish(snap)
        return True

    def open_experiment(self, experiment: Experiment) -> bool:
        """Start over with another experiment (not undoable: clears the undo stack).

        All or nothing: the new simulation is built whole first and only then takes
        the old one's place; if it cannot be built (bad data, not enough memory) the
        old one stays exactly as it was and ``error`` says why."""
        self.pause()
        try:
            sim = Simulation(experiment, history_capacity=self._history_capacity)
        except ValueError as e:  # SpecError, DataError, ExperimentError
            self.error.emit(str(e))
            return False
        except MemoryError:
            self.error.emit(f"There is not enough memory to open “{experiment.name}”; the "
                            "experiment on screen is unchanged.")
            return False
        self.undo_stack.clear()
        self._install(sim)
        return True

    # -- reading for views ---------------------------------------------------------------
    def predict(self, X):
        with self._hold():
            return self.sim.predict(X)

    def shutdown(self) -> None:
        self.pause()
        self._clock.stop()


class _Relay(QObject):
    built = Signal(object, str)
    first_frame = Signal(object)
