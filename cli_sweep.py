"""The ``sweep`` and ``sweep-plot`` subcommands (registered into cli.SUBCOMMANDS).

``sweep`` runs a base experiment over named axes and appends one JSON line per
finished point to ``--out``; run it again with the same settings to resume.
``sweep-plot`` draws a results file with the window's own sweep view, offscreen.

Exit codes: 0 done; 2 bad input (unknown axis, bad value, unreadable files,
a results file of another sweep); 130 interrupted (finished points stay in the file).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from cli import EXIT_BAD_INPUT, EXIT_OK, CommandError, Subcommand
from simulator.data import DataError
from simulator.experiment import ExperimentError, load_experiment, load_preset
from simulator.spec import SpecError
from simulator.sweep import (
    AXES,
    DEFAULT_TARGET_LOSS,
    METRICS,
    Sweep,
    SweepError,
    list_sweep_presets,
    load_sweep,
    load_sweep_preset,
    parse_vary,
    read_results,
    run_sweep,
)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--experiment", metavar="FILE", type=Path, help="base experiment file")
    src.add_argument("--preset", metavar="NAME", help="base experiment preset (main.py presets)")
    src.add_argument("--sweep", metavar="FILE", type=Path,
                     help="a sweep file (format: docs/SWEEPS.md); --vary and --steps override")
    keys = ", ".join(k for k, _, _ in list_sweep_presets()) or "none"
    src.add_argument("--sweep-preset", metavar="KEY",
                     help=f"a sweep preset from assets/sweeps ({keys})")
    parser.add_argument("--vary", metavar="AXIS=V1,V2,...", action="append", default=[],
                        help="an axis and its values, repeatable; axes: " + ", ".join(AXES))
    parser.add_argument("--steps", type=_positive, metavar="N",
                        help="training steps per point (required unless a sweep file sets it)")
    parser.add_argument("--seeds", type=_positive, metavar="K",
                        help="seeds per combination: the experiment's seed + 0..K-1 (default 1)")
    parser.add_argument("--target-loss", type=float, metavar="X",
                        help=f"training loss for steps_to_target (default {DEFAULT_TARGET_LOSS})")
    parser.add_argument("--check-every", type=_positive, metavar="N",
                        help="steps between whole-set evaluations (default: steps / 40)")
    parser.add_argument("--out", required=True, type=Path, metavar="RESULTS.jsonl",
                        help="results file; an existing one of the same sweep is resumed")
    parser.add_argument("--workers", type=_positive, metavar="N",
                        help="local worker processes (default: one per core)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on this Dask distributed scheduler (tcp://host:port)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def build_sweep(args: argparse.Namespace) -> Sweep:
    """The sweep the arguments describe; every problem is a CommandError naming the field."""
    try:
        if args.sweep is not None or args.sweep_preset is not None:
            base = load_sweep(args.sweep) if args.sweep is not None else \
                load_sweep_preset(args.sweep_preset)
            axes = dict(base.axes)
            for text in args.vary:
                name, values = parse_vary(text)
                axes[name] = values
            return Sweep(base.experiment, tuple(axes.items()),
                         steps=args.steps or base.steps,
                         seeds=args.seeds or base.seeds, name=base.name,
                         description=base.description,
                         target_loss=(base.target_loss if args.target_loss is None
                                      else args.target_loss),
                         check_every=args.check_every or base.check_every)
        exp = load_preset(args.preset) if args.preset is not None else \
            load_experiment(args.experiment)
        if not args.vary:
            raise CommandError("give at least one --vary AXIS=V1,V2,... (axes: "
                               + ", ".join(AXES) + ")")
        if args.steps is None:
            raise CommandError("--steps is required with --experiment or --preset")
        axes = [parse_vary(text) for text in args.vary]
        return Sweep(exp, tuple(axes), steps=args.steps, seeds=args.seeds or 1,
                     name=f"{exp.name}: " + " x ".join(a for a, _ in axes),
                     target_loss=(DEFAULT_TARGET_LOSS if args.target_loss is None
                                  else args.target_loss),
                     check_every=args.check_every or 0)
    except (SweepError, ExperimentError, SpecError, DataError) as e:
        raise CommandError(str(e)) from None


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def _num(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def progress_line(record: dict, p) -> str:
    values = " ".join(f"{a}={v}" for a, v in record["axes"].items())
    status = (f"diverged at step {record['diverged_at']}" if record["diverged_at"] is not None
              else f"train loss {_num(record['train_loss'])}")
    return (f"[{p.done}/{p.total}] {values} seed={record['seed']}: {status}   "
            f"{p.points_per_min:.1f} points/min, about {_duration(p.eta_s)} left")


def _run_sweep(args: argparse.Namespace) -> int:
    sweep = build_sweep(args)
    try:
        sweep.validate()  # before the first line is printed or the file is touched
    except SweepError as e:
        raise CommandError(str(e)) from None
    tty = sys.stdout.isatty()

    def on_record(record, p):
        if args.quiet:
            return
        line = progress_line(record, p)
        if tty:
            print("\r\x1b[2K" + line, end="", flush=True)
        else:
            print(line, flush=True)

    where = f"Dask scheduler {args.scheduler}" if args.scheduler else (
        f"{args.workers or 'one per core'} local worker(s)")
    if not args.quiet:
        print(f"{sweep.name}: {sweep.n_points} points x {sweep.steps} steps on {where} "
              f"-> {args.out}", flush=True)
    try:
        outcome = run_sweep(sweep, args.out, executor="local", workers=args.workers,
                            scheduler=args.scheduler, on_record=on_record)
    except SweepError as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        raise CommandError(f"{args.out}: {e.strerror or e}") from None
    if tty and not args.quiet:
        print()
    print(f"done: {outcome.ran} point(s) run, {outcome.resumed} already in {args.out}, "
          f"{len(outcome.records)}/{sweep.n_points} in the file, "
          f"in {_duration(outcome.elapsed_s)}")
    return EXIT_OK


# -- sweep-plot --------------------------------------------------------------------------------

def _add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, metavar="RESULTS.jsonl")
    parser.add_argument("--out", required=True, type=Path, metavar="FIGURE.png")
    parser.add_argument("--metric", default="train_loss", choices=list(METRICS),
                        help="what to plot (default train_loss: final training loss)")
    parser.add_argument("--size", default="900x600", metavar="WxH")


def _run_plot(args: argparse.Namespace) -> int:
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        if not (100 <= w <= 8000 and 100 <= h <= 8000):
            raise ValueError
    except ValueError:
        raise CommandError(f"--size: must be WIDTHxHEIGHT between 100 and 8000, "
                           f"got {args.size!r}") from None
    try:
        headers, records = read_results(args.results)
    except SweepError as e:
        raise CommandError(str(e)) from None
    if not headers:
        raise CommandError(f"{args.results}: has no sweep header line")
    try:
        from ui.export.cli import ensure_qt_application
        from ui.views.sweep_plot import SweepPlot
    except ImportError as e:
        raise CommandError(f"sweep-plot needs {e.name or e}, which is not installed",
                           code=1) from None
    app = ensure_qt_application()
    view = SweepPlot()
    view.set_metric(args.metric)
    view.set_sweep(headers[-1]["sweep"])
    view.set_records(records)
    try:
        view.render_png(str(args.out), (w, h))
    except OSError as e:
        raise CommandError(str(e)) from None
    finally:
        view.close()
        view.deleteLater()
        app.processEvents()
    print(f"wrote {args.out} ({len(records)} points, {view.kind})")
    return EXIT_OK


SUBCOMMANDS = {
    "sweep": Subcommand(
        help="train an experiment over axes of values (depth, skips, sigma_w2, ...) headless",
        add_arguments=_add_sweep_arguments, run=_run_sweep,
        description="Run a base experiment for every combination of axis values and seeds, "
                    "on local worker processes or a Dask cluster, appending one JSON line per "
                    "finished point to --out. Running the same command again resumes: points "
                    "already in the file are skipped. Exit codes: 0 done, 2 bad input, "
                    "130 interrupted (finished points stay in the file)."),
    "sweep-plot": Subcommand(
        help="draw a sweep's results file as a PNG (line plot or heatmap)",
        add_arguments=_add_plot_arguments, run=_run_plot,
        description="Draw a results file written by `sweep`: a line plot across the first "
                    "axis with one series per value of the second, or a heatmap when both "
                    "are numeric, with the mean-field depth-scale boundary 6 xi over a "
                    "sigma_w2 x depth heatmap."),
}

__all__ = ["EXIT_BAD_INPUT", "SUBCOMMANDS", "build_sweep"]
