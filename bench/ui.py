"""Benchmark (not a test): the desktop app's frame cost, fast-mode training speed and input
latency, measured on the real main window (every dock, offscreen by default).

Each network gets its own ``SimulationController``, ``Editor`` and ``MainWindow``
(settings in a temporary file, so the default layout), resized to 1600 x 1000 and
shown. Hidden layers are sigmoid, 2-D spiral data (400 points, 20% held out),
SGD with batch 32, as the app's deep-sigmoid preset.

1. **Frame.** A probe connected to ``controller.snapshot_changed`` before the window
   is built (so it runs before every view) and one connected after it (so it runs
   after every view) time the emission; a ``MainWindow`` subclass times each
   ``QEvent.UpdateRequest`` it handles, which is one repaint pass: Qt paints every
   damaged widget of the window in one pass (offscreen: into the window's raster
   backing store, as on screen; only the damaged regions). ``update`` is the
   emission, i.e. every view's handler and the status bar; ``frame`` runs from
   the start of the emission to the end of the last repaint pass it caused, with
   the event loop working normally in between (queued scene updates, layout
   requests, repaint passes); ``paint`` = frame - update. Stepping the simulation
   is not part of a frame (the clock starts at the emission).

   * *full frames*: ``controller.step()`` then the event loop until it is idle,
     not playing, so every panel redraws; with a short history (50 steps) and with
     a full one (``--history``, default 5000 steps: the app's history capacity,
     the steady state of any long run), which the loss and history panels redraw.
   * *playing frames*: ``controller.play()`` at speed "quick" (60 iterations/s on
     the GUI clock, the fastest animated speed) for a few seconds, full history;
     the panels throttle themselves while playing as they do in the app, so most
     frames skip the slower panels, and the docked panels draw one per turn of the
     event loop. Each frame runs to the end of the last repaint pass before the
     next emission.
   * *per panel*: full frames (full history) with every view's ``render_snapshot``
     wrapped in a timer, and each widget's paint taken as the time from its Paint
     event to the next widget's (or the end of the pass).

2. **Fast mode.** Interleaved rounds (order alternating): ``set_speed("fast")`` +
   ``play()`` with the event loop running and rendering the worker's snapshots,
   steps counted over the round under the controller's lock; and the core alone,
   ``Simulation.run(n, snapshot=False)`` on the same simulation in the same
   process, n sized to about 50 ms per call, the GUI idle, with the held-out
   evaluation interval fast mode uses (the same work per step). The ratio is the
   median of the per-round ratios.

3. **Latency** while playing 50 x 64: a thread posts a key press (F35) to a widget
   of the window at random moments (5-50 ms after the previous one was handled);
   the latency runs from the planned moment to the widget's ``event()``. Fast
   mode, animated "quick" (whole iterations on the GUI clock) and animated
   micro-steps.

The process collects garbage the way ``python main.py`` does (``ui.app``: between
events, from a timer), when that function exists.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/ui.py`` (``make bench``);
``--quick`` for a short run. The results replace the section
"## Desktop app (bench/ui.py)" of docs/PERFORMANCE.md unless ``--no-doc``.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as main.py: set before numpy loads

import argparse  # noqa: E402
import datetime  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if sys.path[:1] != [str(ROOT)]:  # first, before bench/ itself: this file is ui.py
    sys.path.insert(0, str(ROOT))

import pyqtgraph as pg  # noqa: E402
import PySide6  # noqa: E402
from PySide6.QtCore import (  # noqa: E402
    QCoreApplication,
    QEvent,
    QEventLoop,
    QObject,
    QSettings,
    Qt,
    QTimer,
)
from PySide6.QtGui import QKeyEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

import simulator  # noqa: E402
from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import Experiment, TrainSpec  # noqa: E402
from simulator.spec import uniform_spec  # noqa: E402
from ui.app import MainWindow, apply_theme  # noqa: E402
from ui.commands import Editor  # noqa: E402
from ui.controller import SimulationController  # noqa: E402

DOC = ROOT / "docs" / "PERFORMANCE.md"
SECTION = "## Desktop app (bench/ui.py)"
WINDOW_SIZE = (1600, 1000)
SHORT_HISTORY = 50
HISTORY_CAPACITY = 5000  # SimulationController's default history_capacity
FRAME_SIZES = ((30, 32), (100, 16), (200, 32))  # issue 8: 100 x 16 and 200 x 32
LATENCY_SIZE = (50, 64)
FRAME_TARGET_MS = 16.0
FAST_TARGET = 0.80
LATENCY_TARGET_MS = 50.0
PROBE_KEY = Qt.Key.Key_F35
NOTES = [
    "**What keeps a frame short** (ui/views, ui/controller.py). Each plot's ranges are set "
    "by its view, and only when they change: the step axes grow in nice spans ahead of the "
    "data, the loss and histogram axes move only when the data leaves them (a new range "
    "re-lays out and re-renders an axis; pyqtgraph's auto-range also changed them while "
    "painting, which painted twice). Axes are drawn from cached pixmaps (an axis under a "
    "grid otherwise replays its text whenever the plot repaints). Long curves are "
    "downsampled to one min/max pair per pixel and drawn 1 px wide (wider lines go through "
    "Qt's stroker); the held-out dots give way to the line beyond 120 points. The gradient "
    "history keeps its columns (about one per pixel, on a grid fixed to the step axis) from"
    " frame to frame and recomputes only those whose steps changed: the new step's and the "
    "one the history dropped or thinned out. The flow bars need no brush per bar; the "
    "canvas labels cache their text widths. The decision boundary spends 1.5 ms per "
    "snapshot and draws a finer grid once the snapshots stop for 0.25 s. Labels whose "
    "numbers change every step no longer re-lay out the main window (fixed-size status "
    "labels; the diagnosis and inspector numbers in boxes that stop the layout request). A "
    "panel in a tab that is not shown, or in a closed dock, draws nothing until shown.",
    "**Playing.** The docked panels draw one per turn of the event loop, so a key press "
    "waits for one panel, not all of them. In fast mode the worker makes a snapshot only "
    "when the GUI has taken the last one, hands the lock to a waiting GUI thread between 5 "
    "ms chunks, and the GUI draws only as often as keeps its own CPU time within "
    "`FAST_GUI_SHARE` (15% with two CPUs, where drawing competes with training; 50% with "
    "more).",
    "**What the long history costs.** With 5000 steps recorded, the loss panel redraws its "
    "curves from the whole history every step (a few scalars per step); the history view "
    "reads only the rows of the columns that changed, and the diagnosis only the last "
    "`WINDOW` (20) rows. The diagnosis (`simulator.diagnosis.diagnose`) runs once per new "
    "snapshot and history, not again when the same snapshot is drawn again; see the "
    "per-panel table.",
]


def experiment(depth: int, width: int) -> Experiment:
    return Experiment(
        name=f"{depth} x {width}", description="",
        network=uniform_spec(2, 2, depth, width, "sigmoid"),
        data=DataSpec(kind="spiral", n_samples=400),
        training=TrainSpec(optimizer="sgd", lr=0.1, batch_size=32), seed=0)


def collect_garbage_as_the_app_does(qapp) -> str:
    """What main() does about Python's garbage collector, if it does anything."""
    import ui.app

    policy = getattr(ui.app, "_collect_garbage_between_events", None)
    if policy is None:
        return "Python's default garbage collection"
    policy(qapp)
    return f"garbage collected as `python main.py` does (`ui.app.{policy.__name__}`)"


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else math.nan


# -- the window, instrumented ------------------------------------------------------------------


class _TimedWindow(MainWindow):
    """The app's main window, noting when each repaint pass starts and ends."""

    def event(self, ev) -> bool:
        passes = getattr(self, "repaint_passes", None)
        if passes is None or ev.type() != QEvent.Type.UpdateRequest:
            return super().event(ev)
        t0 = time.perf_counter()
        handled = super().event(ev)
        passes.append((t0, time.perf_counter()))
        return handled


class _KeyProbe(QWidget):
    """A child widget of the window that notes when a probe key press reaches it."""

    def __init__(self, parent):
        super().__init__(parent)
        self.handled: list[float] = []
        self.arrived = threading.Event()
        # the first key event creates Qt's keyboard device object: here, in the GUI thread
        QKeyEvent(QEvent.Type.KeyPress, PROBE_KEY, Qt.KeyboardModifier.NoModifier)

    def event(self, ev) -> bool:
        if ev.type() == QEvent.Type.KeyPress and ev.key() == PROBE_KEY:
            self.handled.append(time.perf_counter())
            self.arrived.set()
            return True
        return super().event(ev)


class App:
    """One controller, editor and main window for one network, with the frame probes."""

    def __init__(self, depth: int, width: int, settings_dir: str):
        self.label = f"{depth} x {width}"
        self.ctl = SimulationController(experiment(depth, width))
        self.emits: list[list[float]] = []  # [start, end] of each snapshot_changed
        self.ctl.snapshot_changed.connect(self._emit_started)  # before every view
        self.editor = Editor(self.ctl)
        settings = QSettings(str(Path(settings_dir) / f"{depth}x{width}.ini"),
                             QSettings.Format.IniFormat)
        self.window = _TimedWindow(self.ctl, self.editor, settings)
        self.window.repaint_passes = []
        self.ctl.snapshot_changed.connect(self._emit_finished)  # after every view
        self.window.resize(*WINDOW_SIZE)
        self.window.show()
        self.probe = _KeyProbe(self.window)
        settle()

    @property
    def passes(self) -> list:
        return self.window.repaint_passes

    def _emit_started(self, _snap) -> None:
        self.emits.append([time.perf_counter(), math.nan])

    def _emit_finished(self, _snap) -> None:
        self.emits[-1][1] = time.perf_counter()

    def clear(self) -> None:
        self.emits.clear()
        self.passes.clear()

    def frames(self) -> list[tuple[float, float]]:
        """(update, frame) in ms for each emission recorded since ``clear``; a frame ends
        with the last repaint pass that started before the next emission."""
        out = []
        starts = [e[0] for e in self.emits] + [math.inf]
        passes = sorted(self.passes)
        j = 0
        for i, (t0, t1) in enumerate(self.emits):
            if not math.isfinite(t1):
                continue
            end = t1
            while j < len(passes) and passes[j][0] < t0:
                j += 1
            while j < len(passes) and passes[j][0] < starts[i + 1]:
                end = max(end, passes[j][1])
                j += 1
            out.append((1e3 * (t1 - t0), 1e3 * (end - t0)))
        return out

    def close(self) -> None:
        self.ctl.pause()
        self.window.close()
        self.window.deleteLater()
        settle()


def settle(quiet_rounds: int = 3, limit: int = 200) -> None:
    """Run the event loop until nothing is left to do for a few rounds in a row."""
    app = QApplication.instance()
    quiet = 0
    while quiet < quiet_rounds and limit:
        limit -= 1
        t = time.perf_counter()
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents)
        quiet = quiet + 1 if time.perf_counter() - t < 2e-4 else 0


def run_loop(seconds: float) -> None:
    """The GUI event loop, as the app runs it, for ``seconds``."""
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


# -- 1. frames --------------------------------------------------------------------------------


def full_frames(app: App, n: int, history: int, warmup: int = 5) -> list[tuple[float, float]]:
    """``n`` frames of ``controller.step()`` with at least ``history`` steps recorded."""
    missing = history - len(app.ctl.sim.history.steps())
    if missing > 0:
        app.ctl.run_steps(missing)
    settle()
    for _ in range(warmup):
        app.ctl.step()
        settle()
    app.clear()
    for _ in range(n):
        app.ctl.step()
        settle()
    return app.frames()


def playing_frames(app: App, seconds: float) -> tuple[list[tuple[float, float]], float]:
    """Frames while playing at "quick"; also the iterations per second reached."""
    ctl = app.ctl
    ctl.set_animate_micro_steps(False)
    ctl.set_speed("quick")
    settle()
    app.clear()
    step0, t0 = ctl.sim.step_count, time.perf_counter()
    ctl.play()
    run_loop(seconds)
    ctl.pause()
    rate = (ctl.sim.step_count - step0) / (time.perf_counter() - t0)
    settle()
    return app.frames()[1:], rate  # the first one starts the run


class _PaintLog(QObject):
    """Notes every Paint event of the window's widgets: (time, the panel it belongs to)."""

    def __init__(self, window):
        super().__init__()
        self.window = window
        self.events: list[tuple[float, str]] = []

    def eventFilter(self, obj, ev) -> bool:
        if ev.type() == QEvent.Type.Paint:
            self.events.append((time.perf_counter(), self.panel_of(obj)))
        return False

    def panel_of(self, obj) -> str:
        w = obj
        while w is not None and w is not self.window:
            name = w.objectName()
            if name.startswith("dock_"):
                return name[5:]
            if name == "central":
                return "canvas"
            w = w.parent()
        return "window"


def per_panel(app: App, n: int) -> dict[str, tuple[float, float]]:
    """Median (update, paint) in ms per panel over ``n`` full frames (approximate: the
    probes themselves cost a little)."""
    views = {"canvas": app.window.canvas, **app.window.views}
    frame_update: dict[str, float] = {}

    def timed(f, name):
        def call(*args, **kw):
            t = time.perf_counter()
            try:
                return f(*args, **kw)
            finally:
                frame_update[name] = frame_update.get(name, 0.0) + time.perf_counter() - t
        return call

    for name, view in views.items():
        view.render_snapshot = timed(view.render_snapshot, name)
    log = _PaintLog(app.window)
    qapp = QApplication.instance()
    qapp.installEventFilter(log)
    update: dict[str, list[float]] = {}
    paint: dict[str, list[float]] = {}
    try:
        for _ in range(n):
            app.clear()
            log.events.clear()
            frame_update.clear()
            app.ctl.step()
            settle()
            spent: dict[str, float] = {}
            events = sorted(log.events)
            for i, (t, panel) in enumerate(events):
                stop = next((e for s, e in app.passes if s <= t <= e), t)
                nxt = events[i + 1][0] if i + 1 < len(events) else math.inf
                spent[panel] = spent.get(panel, 0.0) + min(nxt, stop) - t
            for name in set(views) | set(spent):
                update.setdefault(name, []).append(frame_update.get(name, 0.0))
                paint.setdefault(name, []).append(spent.get(name, 0.0))
    finally:
        qapp.removeEventFilter(log)
        for view in views.values():
            del view.render_snapshot  # back to the class's method
    return {name: (1e3 * statistics.median(update[name]), 1e3 * statistics.median(paint[name]))
            for name in sorted(update)}


# -- 2. fast mode against the core alone --------------------------------------------------------


def fast_round(app: App, seconds: float) -> tuple[float, float, float]:
    """(steps/s, snapshots drawn per second, median frame ms) with the GUI running."""
    ctl = app.ctl
    ctl.set_animate_micro_steps(False)
    ctl.set_speed("fast")
    settle()
    app.clear()
    with ctl.locked() as sim:
        step0, t0 = sim.step_count, time.perf_counter()
    ctl.play()
    run_loop(seconds)
    with ctl.locked() as sim:  # waits for the worker's chunk in progress
        step1, t1 = sim.step_count, time.perf_counter()
        app.fast_eval_every = sim.eval_every  # fast mode may evaluate held-out less often
    frames = app.frames()
    ctl.pause()
    settle()
    drawn = [f for _, f in frames]
    return ((step1 - step0) / (t1 - t0), len(drawn) / (t1 - t0),
            statistics.median(drawn) if drawn else math.nan)


def raw_round(app: App, seconds: float) -> float:
    """Steps/s of Simulation.run(n, snapshot=False) alone, on the same simulation, doing
    the same work as fast mode (its held-out evaluation interval)."""
    with app.ctl.locked() as sim:
        eval_every = sim.eval_every
        sim.eval_every = getattr(app, "fast_eval_every", eval_every)
        try:
            return _raw_rate(sim, seconds)
        finally:
            sim.eval_every = eval_every


def _raw_rate(sim, seconds: float) -> float:
    n = 4
    while True:  # calls of about 50 ms
        t = time.perf_counter()
        sim.run(n, snapshot=False)
        if time.perf_counter() - t >= 0.05 or n >= 100_000:
            break
        n *= 2
    step0, t0 = sim.step_count, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sim.run(n, snapshot=False)
    return (sim.step_count - step0) / (time.perf_counter() - t0)


def fast_vs_raw(app: App, rounds: int, seconds: float) -> dict:
    fast_round(app, min(seconds, 1.0))  # warm-up: thread start, first frames
    raw_round(app, min(seconds, 0.5))
    fast, raw, fps, frame, ratios = [], [], [], [], []
    for r in range(rounds):
        if r % 2:
            rr = raw_round(app, seconds)
            f, d, fm = fast_round(app, seconds)
        else:
            f, d, fm = fast_round(app, seconds)
            rr = raw_round(app, seconds)
        fast.append(f)
        raw.append(rr)
        fps.append(d)
        frame.append(fm)
        ratios.append(f / rr)
        print(f"    round {r + 1}: fast {f:8.0f}  raw {rr:8.0f} steps/s  ({f / rr:.0%}), "
              f"{d:.0f} frames/s", flush=True)
    return {"fast": statistics.median(fast), "raw": statistics.median(raw),
            "ratio": statistics.median(ratios), "ratios": ratios,
            "fps": statistics.median(fps), "frame": statistics.median(frame)}


# -- 3. latency ----------------------------------------------------------------------------------


def latency(app: App, mode: str, seconds: float, seed: int = 0) -> dict:
    """Key-press latency (ms) while playing in ``mode``: fast, quick or micro."""
    ctl = app.ctl
    ctl.set_animate_micro_steps(mode == "micro")
    ctl.set_speed("fast" if mode == "fast" else "quick")
    probe = app.probe
    probe.handled.clear()
    planned: list[float] = []
    stop = threading.Event()
    rng = random.Random(seed)

    def post_keys():
        while not stop.is_set():
            at = time.perf_counter() + rng.uniform(0.005, 0.05)
            time.sleep(max(0.0, at - time.perf_counter()))
            if stop.is_set():
                break
            probe.arrived.clear()
            planned.append(at)
            QCoreApplication.postEvent(probe, QKeyEvent(QEvent.Type.KeyPress, PROBE_KEY,
                                                        Qt.KeyboardModifier.NoModifier))
            probe.arrived.wait(2.0)

    settle()
    step0 = ctl.sim.step_count
    ctl.play()
    run_loop(0.3)  # running before the first probe
    app.clear()
    poster = threading.Thread(target=post_keys, name="key-probe", daemon=True)
    poster.start()
    t0 = time.perf_counter()
    run_loop(seconds)
    stop.set()
    probe.arrived.set()
    run_loop(0.1)
    poster.join()
    elapsed = time.perf_counter() - t0
    ctl.pause()
    settle()
    n = min(len(planned), len(probe.handled))
    lat = [1e3 * (probe.handled[i] - planned[i]) for i in range(n)]
    return {"n": n, "median": statistics.median(lat) if lat else math.nan,
            "p99": pct(lat, 99), "max": max(lat) if lat else math.nan,
            "rate": (ctl.sim.step_count - step0) / (elapsed + 0.4),
            "drawn": len(app.emits) / (elapsed + 0.1)}


# -- report -------------------------------------------------------------------------------------


def machine_info() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba
    from PySide6.QtCore import qVersion

    return [f"- CPU: {cpu}, {os.cpu_count()} logical CPUs; "
            f"{platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}, PySide6 {PySide6.__version__} (Qt "
            f"{qVersion()}), pyqtgraph {pg.__version__}, numpy {np.__version__}, "
            f"numba {numba.__version__}",
            f"- QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM')}, "
            f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, window "
            f"{WINDOW_SIZE[0]} x {WINDOW_SIZE[1]}"]


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def render(res: dict, args, elapsed: float) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load1 = os.getloadavg()
    lines = [SECTION, "", f"Measured {date} in {elapsed:.0f} s with", "", "```",
             "OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/ui.py"
             + (" " + " ".join(args.argv) if args.argv else ""), "```", ""]
    lines += machine_info()
    lines.append(f"- {args.gc_policy}")
    l0 = args.load_before
    lines += [f"- load average (1, 5, 15 min) {l0[0]:.1f} / {l0[1]:.1f} / {l0[2]:.1f} before, "
              f"{load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f} after "
              f"(other jobs share this machine; {os.cpu_count()} CPUs)", ""]
    lines += [
        "The whole main window (canvas and every dock, default layout: the layer inspector "
        "tabbed behind the diagnosis) on a sigmoid network, spiral data, batch 32. "
        "*update* = the `snapshot_changed` emission (every view's handler and the status "
        "bar); *frame* = from the start of that emission to the end of the last repaint "
        "pass it caused (`QEvent.UpdateRequest` on the window: Qt paints the damaged "
        "widgets into the window's backing store), with the event loop running normally "
        "in between; *paint* = frame - update. Stepping the simulation is not included. "
        "Full frames: `controller.step()`, not playing, so every panel redraws; with a "
        f"{SHORT_HISTORY}-step history and with a full one ({args.history} steps, the "
        "history's capacity: the steady state of any long run, which the loss and history "
        "panels redraw). Playing frames: `play()` at speed \"quick\" (60 iterations/s on "
        "the GUI clock), where the panels throttle themselves as in the app and the "
        "docked ones draw one per turn of the event loop. Milliseconds; medians (90th "
        "percentile and max in brackets).", "",
        "| network | frames | update | paint | frame | target < 16 ms |",
        "|---|---|---:|---:|---:|---|"]
    for label, r in res["frames"].items():
        for kind, fr in r.items():
            if kind == "play_rate" or not fr:
                continue
            up = [u for u, _ in fr]
            tot = [f for _, f in fr]
            pa = [f - u for u, f in fr]
            med = statistics.median(tot)
            ok = med < FRAME_TARGET_MS
            res["verdicts"].setdefault("frame", []).append(ok)
            extra = f", {r['play_rate']:.0f} it/s reached" if kind.startswith("playing") else ""
            lines.append(
                f"| {label} | {kind} ({len(fr)}{extra}) | {statistics.median(up):.1f} | "
                f"{statistics.median(pa):.1f} | **{med:.1f}** ({pct(tot, 90):.1f}, "
                f"{max(tot):.1f}) | {verdict(ok)} |")
    if res.get("panels"):
        names = sorted({p for r in res["panels"].values() for p in r},
                       key=lambda p: (p == "window", p))
        lines += ["", "Where a full frame goes (full history), per panel: update + paint, "
                  "where update = the view's `render_snapshot` and paint = its widgets' "
                  "Paint events, each up to the next widget's; medians in ms; *window* = the "
                  "main window's own widgets, status bar and dock frames; the inspector is "
                  "tabbed away, so it draws nothing:", "",
                  "| network | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        for label, r in res["panels"].items():
            cells = [f"{r[p][0]:.1f} + {r[p][1]:.1f}" if p in r else "-" for p in names]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if res.get("fast"):
        lines += ["", "Fast mode (`set_speed(\"fast\")`, `play()`, the event loop running and "
                  "drawing the worker's snapshots) against the core alone "
                  "(`Simulation.run(n, snapshot=False)`, same simulation, same process, GUI "
                  "idle, held-out evaluated as often as fast mode does: every "
                  f"{res.get('fast_eval_every', '?')} steps), {args.rounds} interleaved "
                  f"rounds of {args.seconds:g} s each; "
                  "steps/s are medians, the share is the median of the per-round ratios "
                  "(range in brackets):", "",
                  "| network | fast mode | core alone | share | frames drawn/s | frame (ms) "
                  "| target >= 80% |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for label, r in res["fast"].items():
            ok = r["ratio"] >= FAST_TARGET
            res["verdicts"].setdefault("fast", []).append(ok)
            lines.append(
                f"| {label} | {r['fast']:,.0f} | {r['raw']:,.0f} | **{r['ratio']:.0%}** "
                f"({min(r['ratios']):.0%}-{max(r['ratios']):.0%}) | {r['fps']:.0f} | "
                f"{r['frame']:.1f} | {verdict(ok)} |")
    if res.get("latency"):
        label = res["latency_label"]
        lines += ["", f"Input latency while playing {label}: a thread posts a key press to a "
                  "widget of the window at random moments (5-50 ms after the previous one "
                  "was handled); latency = from that moment until the widget's `event()` "
                  f"handles it, in ms ({args.latency_seconds:g} s per mode):", "",
                  "| mode | iterations/s | snapshots drawn/s | presses | median | 99th pct "
                  "| max | target < 50 ms |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        names = {"fast": "fast (worker thread)",
                 "quick": "animated, \"quick\" (60 it/s on the GUI clock)",
                 "micro": "animated micro-steps (12/s)"}
        for mode, r in res["latency"].items():
            ok = r["max"] < LATENCY_TARGET_MS
            res["verdicts"].setdefault("latency", []).append(ok)
            lines.append(f"| {names[mode]} | {r['rate']:,.0f} | {r['drawn']:.0f} | {r['n']} | "
                         f"{r['median']:.1f} | {r['p99']:.1f} | **{r['max']:.1f}** | "
                         f"{verdict(ok)} |")
        lines += ["", "The latency verdict is on the maximum."]
    summary = ["", "| target | result |", "|---|---|"]
    for key, text in (("frame", "median frame < 16 ms, every network and kind of frame"),
                      ("fast", "fast mode >= 80% of the core's speed"),
                      ("latency", "input answered within 50 ms while playing (maximum)")):
        if key in res["verdicts"]:
            summary.append(f"| {text} | {verdict(all(res['verdicts'][key]))} |")
    at = lines.index("") + 1  # after the heading
    lines[at:at] = [*summary[1:], ""]
    for note in res.get("notes", ()):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_doc(section: str, path: Path) -> None:
    """Replace this benchmark's section of the file, keeping every other section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        if text and not text.endswith("\n"):
            text += "\n"
        new = text + ("\n" if text.strip() else "") + section
    else:
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith("## ") or lines[i].startswith("# ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new, encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40, help="full frames per network")
    parser.add_argument("--history", type=int, default=HISTORY_CAPACITY,
                        help="steps of history for the long-history frames")
    parser.add_argument("--play-seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5, help="fast-mode rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per fast round")
    parser.add_argument("--latency-seconds", type=float, default=8.0)
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--only", choices=("frames", "fast", "latency"), action="append")
    parser.add_argument("--no-doc", action="store_true", help=f"do not write {DOC.name}")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.frames, args.play_seconds, args.rounds, args.history = 15, 2.0, 3, 1000
        args.seconds, args.latency_seconds = 1.0, 3.0
    parts = set(args.only or ("frames", "fast", "latency"))
    t_start = time.perf_counter()
    args.load_before = os.getloadavg()
    qapp = QApplication.instance() or QApplication(["gfl-bench"])
    apply_theme(qapp)
    simulator.warmup()
    args.gc_policy = collect_garbage_as_the_app_does(qapp)
    res: dict = {"frames": {}, "panels": {}, "fast": {}, "latency": {}, "verdicts": {},
                 "notes": NOTES}
    with tempfile.TemporaryDirectory() as settings_dir:
        for depth, width in FRAME_SIZES:
            app = App(depth, width, settings_dir)
            print(f"{app.label}:", flush=True)
            if "frames" in parts:
                short = full_frames(app, args.frames, SHORT_HISTORY)
                full = full_frames(app, args.frames, args.history)
                playing, rate = playing_frames(app, args.play_seconds)
                res["frames"][app.label] = {
                    f"full, {SHORT_HISTORY}-step history": short,
                    f"full, {args.history}-step history": full,
                    f"playing, {args.history}-step history": playing, "play_rate": rate}
                for kind, fr in (("full short", short), ("full long", full),
                                 ("playing", playing)):
                    print(f"  {kind:10s} frames: update "
                          f"{statistics.median(u for u, _ in fr):5.1f}"
                          f"  frame {statistics.median(f for _, f in fr):5.1f} ms"
                          f"  (p90 {pct([f for _, f in fr], 90):.1f}, n={len(fr)})", flush=True)
                res["panels"][app.label] = per_panel(app, max(10, args.frames // 2))
                print("  per panel: " + ", ".join(
                    f"{k} {u:.1f}+{p:.1f}" for k, (u, p) in res["panels"][app.label].items()),
                    flush=True)
            if "fast" in parts:
                print("  fast mode vs the core alone:", flush=True)
                res["fast"][app.label] = fast_vs_raw(app, args.rounds, args.seconds)
                res["fast_eval_every"] = getattr(app, "fast_eval_every", "?")
            app.close()
        if "latency" in parts:
            app = App(*LATENCY_SIZE, settings_dir)
            res["latency_label"] = app.label
            app.ctl.run_steps(20)
            for mode in ("fast", "quick", "micro"):
                r = latency(app, mode, args.latency_seconds)
                res["latency"][mode] = r
                print(f"{app.label} latency, {mode}: median {r['median']:.1f}  p99 "
                      f"{r['p99']:.1f}  max {r['max']:.1f} ms  (n={r['n']}, "
                      f"{r['rate']:.0f} it/s)", flush=True)
            app.close()
    text = render(res, args, time.perf_counter() - t_start)
    print()
    print(text)
    if not args.no_doc:
        write_doc(text, args.doc)
        print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
