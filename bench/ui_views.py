"""Per-view cost of drawing one training step, offscreen.

For each network size every view is built on one controller. Per frame the
simulation advances (a whole step or a micro-step, alternately; not timed), then
each view's ``render_snapshot`` (update) and a full synchronous paint of the
whole widget into a reused QImage (paint, what the exporter does; on screen only
the changed parts are repainted) are timed. Medians over ``--frames`` frames, in milliseconds.

The decision boundary and the diagnosis are throttled while playing (about 4
times a second); their update/paint columns are the unthrottled cost, and the
"play" column spreads it over the frames between two updates at 60 fps.

    QT_QPA_PLATFORM=offscreen python bench/ui_views.py [--frames 40] [--stat min]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import Experiment, TrainSpec  # noqa: E402
from simulator.spec import uniform_spec  # noqa: E402

SIZES = ((30, 32), (100, 16))
VIEW_SIZES = {
    "canvas": (1100, 560),
    "flow": (520, 300),
    "history": (620, 300),
    "loss": (520, 340),
    "boundary": (400, 400),
    "inspector": (420, 460),
    "diagnosis": (380, 560),
}
THROTTLED = {"boundary": 0.25, "diagnosis": 0.25, "loss": 1 / 15, "history": 1 / 15}
# seconds between updates while playing


def build_views(controller):
    from ui.views.boundary import DecisionBoundaryView
    from ui.views.canvas import NetworkCanvas
    from ui.views.diagnosis import DiagnosisPanel
    from ui.views.flow import GradientFlowView
    from ui.views.history import GradientHistoryView
    from ui.views.inspector import LayerInspector
    from ui.views.loss import LossView

    classes = {"canvas": NetworkCanvas, "flow": GradientFlowView, "history": GradientHistoryView,
               "loss": LossView, "boundary": DecisionBoundaryView, "inspector": LayerInspector,
               "diagnosis": DiagnosisPanel}
    views = {}
    for name, cls in classes.items():
        v = cls(controller)
        v.resize(*VIEW_SIZES[name])
        v.show()
        views[name] = v
    return views


def measure(depth: int, width: int, frames: int, warmup_steps: int = 50,
            stat=statistics.median) -> dict:
    from ui.controller import SimulationController

    exp = Experiment(f"{depth}x{width}", "", uniform_spec(2, 2, depth, width, "sigmoid"),
                     DataSpec(kind="spiral", n_samples=400), TrainSpec(batch_size=32))
    ctl = SimulationController(exp)
    views = build_views(ctl)
    app = QApplication.instance()
    app.processEvents()
    ctl.run_steps(warmup_steps)
    times = {name: ([], []) for name in views}
    # one reused image per view, painted with QWidget.render as the exporter does
    images = {name: QImage(v.size(), QImage.Format.Format_RGB32) for name, v in views.items()}
    for frame in range(frames):
        with ctl.locked() as sim:
            # alternate whole steps with backward micro-steps, as play + micro-step would
            snap = sim.micro_step() if frame % 2 else sim.step()
        ctl.snapshot = snap
        for name, view in views.items():
            t0 = time.perf_counter()
            view.render_snapshot(snap, **({"force": True} if name in THROTTLED else {}))
            t1 = time.perf_counter()
            QWidget.render(view, images[name])  # a full synchronous paint
            t2 = time.perf_counter()
            times[name][0].append(t1 - t0)
            times[name][1].append(t2 - t1)
    result = {}
    for name, (upd, paint) in times.items():
        u, p = 1e3 * stat(upd), 1e3 * stat(paint)
        play = (u + p) / (THROTTLED[name] * 60) if name in THROTTLED else u + p
        result[name] = (u, p, play)
    for v in views.values():
        v.close()
        v.deleteLater()
    ctl.shutdown()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="min is steadier on a busy machine")
    args = parser.parse_args(argv)
    stat = statistics.median if args.stat == "median" else min
    app = QApplication.instance() or QApplication([])  # noqa: F841
    for depth, width in SIZES:
        res = measure(depth, width, args.frames, stat=stat)
        print(f"\n{depth} layers x {width} units ({args.stat} ms per frame)")
        print(f"{'view':<11}{'update':>9}{'paint':>9}{'total':>9}{'play':>9}")
        tot = [0.0, 0.0, 0.0, 0.0]
        for name, (u, p, play) in res.items():
            print(f"{name:<11}{u:9.2f}{p:9.2f}{u + p:9.2f}{play:9.2f}")
            for i, v in enumerate((u, p, u + p, play)):
                tot[i] += v
        print(f"{'all':<11}{tot[0]:9.2f}{tot[1]:9.2f}{tot[2]:9.2f}{tot[3]:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
