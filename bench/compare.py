"""Benchmark (not a test): does lockstep cost more than two runs?

The goal (issue 10): fast mode on a comparison trains at least 80 % of half the
single-run speed, i.e. ``comparison rate / (single rate / 2) >= 0.8``.

Network: 16 sigmoid layers of 16 units (the deep-sigmoid preset), spiral data (400
points), SGD with momentum, batch 32; B has residual links so the two sides differ.

1. **Core.** ``Simulation.run(n)`` against ``Comparison.run(n)`` (both sides), n sized to
   about 50 ms, held-out evaluation every 50 steps as in fast mode; interleaved rounds,
   the median of per-round ratios.
2. **Window, fast mode.** The app's main window (``MainWindow`` with every dock) in fast
   mode against the compare window in fast mode, each for a few seconds with the event
   loop running and drawing (offscreen by default); steps counted over the round;
   interleaved rounds, median ratio.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/compare.py`` (``--quick``: shorter).
The results replace the section "## Compare mode (bench/compare.py)" of
docs/PERFORMANCE.md unless ``--no-doc``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.compare import Comparison  # noqa: E402
from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import Experiment, TrainSpec  # noqa: E402
from simulator.simulation import Simulation  # noqa: E402
from simulator.spec import LayerSpec, NetworkSpec  # noqa: E402

DOC = ROOT / "docs" / "PERFORMANCE.md"
HEADING = "## Compare mode (bench/compare.py)"
SKIPS = ((1, 3), (3, 5), (5, 7), (7, 9), (9, 11), (11, 13), (13, 15), (15, 16))


def experiment() -> Experiment:
    spec = NetworkSpec(2, 2, hidden=tuple(LayerSpec(16, "sigmoid") for _ in range(16)),
                       init="uniform_fanin")
    return Experiment("bench", "", spec, DataSpec(kind="spiral", n_samples=400, noise=0.1,
                                                   classes=2),
                      TrainSpec(optimizer="momentum", lr=0.1, batch_size=32), seed=0)


def _rate(run, seconds: float) -> float:
    n, steps = 8, 0
    t0 = time.perf_counter()
    while True:
        t = time.perf_counter()
        run(n)
        steps += n
        dt = time.perf_counter() - t
        n = max(1, int(n * 0.05 / max(dt, 1e-6)))
        if time.perf_counter() - t0 > seconds:
            return steps / (time.perf_counter() - t0)


def bench_core(rounds: int, seconds: float) -> dict:
    exp = experiment()
    single = Simulation(exp, eval_every=50)
    pair = Comparison(exp, eval_every=50)
    pair.b.set_skips(SKIPS)
    single.run(10)
    pair.run(10)
    ratios, singles, pairs = [], [], []
    for r in range(rounds):
        order = ("single", "pair") if r % 2 == 0 else ("pair", "single")
        got = {}
        for which in order:
            if which == "single":
                got[which] = _rate(lambda n: single.run(n, snapshot=False), seconds)
            else:
                got[which] = _rate(pair.run, seconds)
        singles.append(got["single"])
        pairs.append(got["pair"])
        ratios.append(got["pair"] / (got["single"] / 2))
    return {"single": statistics.median(singles), "pair": statistics.median(pairs),
            "ratio": statistics.median(ratios)}


def bench_window(rounds: int, seconds: float) -> dict:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from ui.app import MainWindow
    from ui.commands import Editor
    from ui.compare_window import CompareWindow
    from ui.controller import SimulationController

    app = QApplication.instance() or QApplication([])
    exp = experiment()
    tmp = tempfile.mkdtemp()
    settings = QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat)
    controller = SimulationController(exp)
    main = MainWindow(controller, Editor(controller), settings)
    main.resize(1600, 1000)
    main.show()
    cw = CompareWindow(exp)
    cw.driver.comparison.b.set_skips(SKIPS)
    cw.resize(1600, 1000)
    cw.show()

    def spin(seconds_: float) -> None:
        end = time.perf_counter() + seconds_
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)

    def single_round() -> float:
        with controller.locked() as sim:
            s0 = sim.step_count
        controller.set_speed("fast")
        t0 = time.perf_counter()
        controller.play()
        spin(seconds)
        with controller.locked() as sim:  # counted before the pause redraws everything
            steps = sim.step_count - s0
        dt = time.perf_counter() - t0
        controller.pause()
        return steps / dt

    def compare_round() -> float:
        c = cw.driver.comparison
        with cw.driver.locked():
            s0 = c.a.step_count
        t0 = time.perf_counter()
        cw.driver.play("fast")
        spin(seconds)
        with cw.driver.locked():
            steps = c.a.step_count - s0
        dt = time.perf_counter() - t0
        cw.driver.pause()
        return steps / dt

    spin(0.5)
    ratios, singles, pairs = [], [], []
    for r in range(rounds):
        order = (single_round, compare_round) if r % 2 == 0 else (compare_round, single_round)
        got = {f: f() for f in order}
        singles.append(got[single_round])
        pairs.append(got[compare_round])
        ratios.append(got[compare_round] / (got[single_round] / 2))
    cw.close()
    main.close()
    controller.shutdown()
    return {"single": statistics.median(singles), "pair": statistics.median(pairs),
            "ratio": statistics.median(ratios)}


def report(core: dict, window: dict, rounds: int, seconds: float) -> str:
    lines = [HEADING, "",
             f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
             f"{os.cpu_count()} CPUs (shared with other work), Python "
             f"{platform.python_version()}; {rounds} interleaved rounds of {seconds:g} s, "
             "medians. 16 sigmoid layers of 16 units, spiral, batch 32; B has residual links.",
             "Goal: comparison rate / (single rate / 2) >= 0.8.", "",
             "| | single run (steps/s) | comparison (steps/s, each side) | ratio to half |",
             "|---|---|---|---|",
             f"| core: run(n) | {core['single']:.0f} | {core['pair']:.0f} | "
             f"{core['ratio']:.2f} |",
             f"| window, fast mode | {window['single']:.0f} | {window['pair']:.0f} | "
             f"{window['ratio']:.2f} |", "",
             "Command: `OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/compare.py`", ""]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Performance\n"
    pattern = re.compile(re.escape(HEADING) + r".*?(?=\n## |\Z)", re.S)
    doc = pattern.sub(text.rstrip() + "\n", doc) if pattern.search(doc) else (
        doc.rstrip() + "\n\n" + text)
    DOC.write_text(doc, encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    rounds, seconds = (3, 1.0) if args.quick else (5, 3.0)
    core = bench_core(rounds, seconds)
    print(f"core: single {core['single']:.0f}/s, comparison {core['pair']:.0f}/s, "
          f"ratio {core['ratio']:.2f}", flush=True)
    window = bench_window(rounds, seconds)
    print(f"window: single {window['single']:.0f}/s, comparison {window['pair']:.0f}/s, "
          f"ratio {window['ratio']:.2f}", flush=True)
    text = report(core, window, rounds, seconds)
    if not args.no_doc:
        write_doc(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
