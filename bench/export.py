"""Benchmark (not a test): how fast the export writes frames, at 1280x720, for 30 x 32.

The network is 30 hidden tanh layers of 32 units (31 weight layers, so one
iteration is 64 micro-steps). Each run is a real ``ExportJob`` that animates one
iteration micro-step by micro-step (65 frames with the starting one) through the
network canvas, offscreen, and writes a PNG sequence, a GIF or an MP4 to a
temporary folder. Frames per second = frames / (time from the first frame to the
finished file); the controller is built and the kernels compiled beforehand.
Numbers are medians over the runs; formats are interleaved (PNG, GIF, MP4, PNG, ...).

Targets (issue 4): at least 15 PNG frames/s and 30 MP4 frames/s. GIF has none.

Then, where a frame's time goes, each part timed alone on the same frames:
stepping the simulation, the views' ``render_snapshot``, reading the widget into
an RGB array (``QWidget.render`` + conversion), and each writer's encoding (on
one thread; in an export it overlaps with rendering on the encoder thread).

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/export.py``. ``--quick``
for a short run; the results replace the section "## Export (bench/export.py)"
of docs/PERFORMANCE.md unless ``--no-doc``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as main.py, before numpy is imported
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import Experiment, TrainSpec  # noqa: E402
from simulator.spec import uniform_spec  # noqa: E402

DOC = ROOT / "docs" / "PERFORMANCE.md"
SECTION = "## Export (bench/export.py)"
SIZE = (1280, 720)
DEPTH, WIDTH = 30, 32
TARGETS = {"png": 15.0, "mp4": 30.0}
FORMATS = ("png", "gif", "mp4")
OUT_NAMES = {"png": "frames", "gif": "clip.gif", "mp4": "clip.mp4"}


def experiment() -> Experiment:
    return Experiment(
        name=f"{DEPTH} x {WIDTH} tanh",
        description="The export benchmark's network.",
        network=uniform_spec(2, 2, depth=DEPTH, width=WIDTH, activation="tanh"),
        data=DataSpec(kind="spiral", n_samples=400, noise=0.05),
        training=TrainSpec(optimizer="sgd", lr=0.1, batch_size=32),
        seed=0)


def one_export(fmt: str, view: str, folder: Path) -> tuple[int, float]:
    """(frames, seconds) of one export of one iteration by micro-steps."""
    from ui.controller import SimulationController
    from ui.export import ExportJob, ExportSettings

    controller = SimulationController(experiment())
    settings = ExportSettings(out=folder / OUT_NAMES[fmt], format=fmt, view=view, size=SIZE,
                              steps=1, micro=True, fps=30)
    job = ExportJob(controller, settings)
    try:
        job.start()
        t0 = time.perf_counter()
        result = job.run()
        seconds = time.perf_counter() - t0
    finally:
        controller.shutdown()
        controller.deleteLater()
    assert result.status == "done", result.message
    return result.frames, seconds


def bench_formats(runs: int, view: str) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    for r in range(runs):
        for fmt in FORMATS:
            with tempfile.TemporaryDirectory() as tmp:
                frames, seconds = one_export(fmt, view, Path(tmp))
            rates[fmt].append(frames / seconds)
            print(f"  run {r + 1}: {fmt:3s} {frames} frames in {seconds:.2f} s = "
                  f"{frames / seconds:.1f} frames/s", flush=True)
    return rates


def profile(view: str) -> dict[str, float]:
    """Milliseconds per frame of each part, each timed alone over one micro-stepped iteration."""
    from ui.controller import SimulationController
    from ui.export import WRITERS, FrameSource, build_capture

    controller = SimulationController(experiment())
    source = FrameSource(controller, 1, micro=True)
    t0 = time.perf_counter()
    frames = list(source)
    step_ms = (time.perf_counter() - t0) * 1e3 / len(frames)
    capture, _ = build_capture(view, controller, SIZE)
    try:
        capture.grab(frames[0][0])  # first paint: fonts, caches
        render = grab = 0.0
        pictures = []
        for snap, _info in frames:
            t0 = time.perf_counter()
            for v in capture.renderers:
                v.render_snapshot(snap)
            t1 = time.perf_counter()
            pictures.append(capture.grab())
            t2 = time.perf_counter()
            render += t1 - t0
            grab += t2 - t1
    finally:
        capture.close()
        controller.shutdown()
    n = len(frames)
    out = {"frames": n, "step": step_ms, "render_snapshot": render * 1e3 / n,
           "read pixels": grab * 1e3 / n}
    for fmt in FORMATS:
        with tempfile.TemporaryDirectory() as tmp:
            writer = WRITERS[fmt](Path(tmp) / OUT_NAMES[fmt], SIZE, 30, {})
            writer.open()
            t0 = time.perf_counter()
            for picture, (_snap, info) in zip(pictures, frames, strict=True):
                writer.write(picture, info)
            writer.commit()
            out[f"encode {fmt}"] = (time.perf_counter() - t0) * 1e3 / n
    return out


def render_section(rates: dict[str, list[float]], parts: dict[str, float] | None,
                   args, elapsed: float) -> tuple[str, bool]:
    medians = {fmt: statistics.median(v) for fmt, v in rates.items()}
    command = " ".join(["python bench/export.py", *args.argv])
    ok = all(medians[f] >= t for f, t in TARGETS.items())
    cpu = platform.processor() or platform.machine()
    lines = [SECTION, "",
             f"Measured {datetime.date.today().isoformat()} on {platform.node() or 'this machine'}"
             f" ({os.cpu_count()} CPUs, {cpu}, Python {platform.python_version()}, "
             f"{os.environ.get('QT_QPA_PLATFORM')} Qt platform, load average "
             f"{args.load_before:.1f} before the run) with `{command}` ({elapsed:.0f} s).", "",
             f"One iteration of a {DEPTH} x {WIDTH} tanh network animated by micro-steps "
             f"(65 frames) through the `{args.view}` view at {SIZE[0]}x{SIZE[1]}; frames per "
             f"second from the first frame to the finished file, median of {args.runs} runs.",
             "",
             "| format | frames/s (median) | runs | target | verdict |",
             "|---|---:|---|---:|---|"]
    for fmt in FORMATS:
        target = TARGETS.get(fmt)
        verdict = "-" if target is None else ("ok" if medians[fmt] >= target else "**TOO SLOW**")
        runs = ", ".join(f"{r:.1f}" for r in rates[fmt])
        lines.append(f"| {fmt.upper()} | **{medians[fmt]:.1f}** | {runs} | "
                     f"{'-' if target is None else f'>= {target:.0f}'} | {verdict} |")
    if parts is not None:
        lines += ["", f"Where a frame's time goes (ms per frame, each part alone, "
                  f"{parts['frames']} frames):", "",
                  "| step the simulation | render_snapshot | read pixels | encode PNG | "
                  "encode GIF | encode MP4 |", "|" + "---:|" * 6,
                  f"| {parts['step']:.1f} | {parts['render_snapshot']:.1f} | "
                  f"{parts['read pixels']:.1f} | {parts['encode png']:.1f} | "
                  f"{parts['encode gif']:.1f} | {parts['encode mp4']:.1f} |", "",
                  "Encoding runs on the export's encoder thread while the next frame renders "
                  "on the GUI thread, so a frame costs about max(step + render + read, encode) "
                  "rather than the sum. MP4: the time to pipe the frame to ffmpeg, which "
                  "encodes (libx264, preset veryfast) in its own process."]
    lines.append("")
    return "\n".join(lines), ok


def write_doc(section: str, path: Path) -> None:
    """Put ``section`` in place of this benchmark's section; other sections stay as they are."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip() == SECTION]
    if starts:
        start = starts[0]
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith(("## ", "# "))), len(lines))
        rest = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    else:
        new = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)  # other benchmarks write this file too: never leave it half-written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per format (default 5)")
    parser.add_argument("--view", default="canvas", choices=("canvas", "flow", "composed"),
                        help="the view to capture (default canvas, the CLI's default)")
    parser.add_argument("--quick", action="store_true", help="2 runs, no breakdown")
    parser.add_argument("--no-profile", action="store_true", help="skip the breakdown")
    parser.add_argument("--no-doc", action="store_true", help=f"do not write {DOC.name}")
    parser.add_argument("--doc", type=Path, default=DOC, help="where to write the results")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.runs, args.no_profile = 2, True

    import simulator
    from ui.export.cli import ensure_qt_application

    t_start = time.perf_counter()
    args.load_before = os.getloadavg()[0]  # other work on the machine skews the numbers
    ensure_qt_application()
    simulator.warmup()
    print(f"warm-up export ({args.view}) ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        one_export("png", args.view, Path(tmp))  # imports, first paint, fonts
    print(f"timing {args.runs} runs per format ...", flush=True)
    rates = bench_formats(args.runs, args.view)
    parts = None
    if not args.no_profile:
        print("breakdown ...", flush=True)
        parts = profile(args.view)
        print("  " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items() if k != "frames")
              + " ms/frame", flush=True)
    section, ok = render_section(rates, parts, args, time.perf_counter() - t_start)
    print()
    print(section)
    if not args.no_doc:
        write_doc(section, args.doc)
        print(f"wrote {args.doc.relative_to(ROOT) if args.doc.is_relative_to(ROOT) else args.doc}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
