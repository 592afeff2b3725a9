"""The headless subcommands of ``main.py``: no Qt here, only the simulator.

Each subcommand is a ``Subcommand``: a help line, a function that adds its
arguments to an argparse parser, and a function that runs it and returns the
exit code. ``SUBCOMMANDS`` maps names to them in the order ``--help`` lists
them; adding one means writing those two functions and one entry in
``SUBCOMMANDS``. A command that renders with Qt imports it inside its functions
only (see ``export`` at the end), so that ``presets`` and ``probe`` never load Qt.

Exit codes of ``presets`` and ``probe`` (``export`` documents its own):

* 0: done
* 2: bad input: unknown preset, unreadable or invalid experiment file, bad
  argument values (argparse uses 2 for its own usage errors too)
* 3: ``probe`` ran, but training diverged (NaN or Inf); the results up to the
  divergence are still printed, and the report goes to stderr as well

Import this module after ``main.py`` has set the BLAS thread variables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from simulator.data import DataError
from simulator.experiment import (
    Experiment,
    ExperimentError,
    list_presets,
    load_experiment,
    load_preset,
)
from simulator.remedies import REMEDIES, apply_remedy
from simulator.simulation import Simulation
from simulator.snapshot import Snapshot
from simulator.spec import SpecError

try:  # written alongside this module; probe prints its findings when it is there
    from simulator.diagnosis import diagnose
except ImportError:
    diagnose = None

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3

MAX_PROBE_STEPS = 10_000_000
DESCRIPTION_CHARS = 100


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` with control characters (ANSI escapes, carriage returns, ...) shown as
    \\x1b and the like rather than obeyed by the terminal: names, descriptions and
    paths come from files. Newlines and tabs stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class CommandError(Exception):
    """A problem to report on stderr as one clear message, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Subcommand:
    help: str  # one line, for the list of commands in main.py --help
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""  # the longer text of main.py COMMAND --help


def run_subcommand(name: str, args: argparse.Namespace,
                   commands: dict[str, Subcommand] | None = None) -> int:
    """Run subcommand ``name`` (from ``commands``, default ``SUBCOMMANDS``); a CommandError
    becomes one message on stderr and its exit code."""
    try:
        return (SUBCOMMANDS if commands is None else commands)[name].run(args)
    except CommandError as e:
        print(terminal_safe(f"main.py {name}: error: {e}"), file=sys.stderr)
        return e.code


# -- presets -------------------------------------------------------------------------------


def _one_line(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """The first paragraph on one line, cut at ``limit`` characters."""
    line = " ".join(text.split("\n\n")[0].split())
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."


def _add_presets_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {key, name, description}")
    parser.add_argument("--mode", choices=("depth", "time"), default="depth",
                        help="depth: the feedforward presets (default); time: the through-time "
                             "(recurrent) presets, which probe accepts the same way")


def _run_presets(args: argparse.Namespace) -> int:
    if getattr(args, "mode", "depth") == "time":
        import cli_recurrent
        return cli_recurrent.run_presets(args)
    presets = list_presets()
    if args.json:
        rows = [{"key": k, "name": n, "description": d} for k, n, d in presets]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not presets:
        print("no presets found", file=sys.stderr)
        return EXIT_OK
    key_w = max(len(k) for k, _, _ in presets)
    name_w = max(len(n) for _, n, _ in presets)
    for key, name, description in presets:
        line = f"{key:<{key_w}}  {name:<{name_w}}  {_one_line(description)}".rstrip()
        print(terminal_safe(line))
    return EXIT_OK


# -- probe ---------------------------------------------------------------------------------

# the per-layer Snapshot fields probe reports, in table order after layer/width/act/bn
_LAYER_FIELDS = ("delta_norm", "grad_norm", "weight_norm", "update_ratio", "weight_change",
                 "dead_fraction", "saturated_fraction", "act_mean", "act_std")
_HEADINGS = ("layer", "width", "activation", "bn", "||delta||", "||dW||", "||W||",
             "update ratio", "change since init", "dead %", "saturated %", "act mean", "act std")
# the chain rule's factors of each hidden layer (NaN, printed as null, for the output layer;
# norm_factor is NaN without batch norm); see simulator/kernels.py
_FACTOR_FIELDS = ("weight_factor", "local_factor", "norm_factor", "skip_share")
# which activations the core counts as able to die or saturate (simulator.kernels)
_CAN_DIE = ("relu",)
_CAN_SATURATE = ("sigmoid", "tanh", "softsign")


def _steps(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= n <= MAX_PROBE_STEPS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_PROBE_STEPS}, got {n}")
    return n


def _add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", metavar="NAME", help="a preset key (see: main.py presets)")
    source.add_argument("--experiment", metavar="FILE", type=Path, help="an experiment file")
    parser.add_argument("--steps", type=_steps, default=0, metavar="N",
                        help="training iterations before measuring (default 0: the gradients "
                             "of the first batch at initialization, without an update)")
    parser.add_argument("--remedy", action="append", default=[], metavar="KEY",
                        type=_remedy_key,
                        help="apply a remedy the diagnosis offers (repeatable, applied in "
                             "order): " + ", ".join(REMEDIES))
    parser.add_argument("--remedy-at", type=_steps, default=0, metavar="STEP",
                        help="train to STEP, apply the remedies, then train the rest of "
                             "--steps (default 0: before any training)")
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON (NaN and Inf become null)")
    parser.add_argument("--compare", action="store_true",
                        help="probe a comparison (A and B in lockstep): --preset names a "
                             "comparison preset, --experiment a comparison file")


def _remedy_key(text: str) -> str:
    if text not in REMEDIES:
        raise argparse.ArgumentTypeError(
            f"unknown remedy {text!r}; available: {', '.join(REMEDIES)}")
    return text


def _load(args: argparse.Namespace) -> Experiment:
    try:
        if args.preset is not None:
            return load_preset(args.preset)
        return load_experiment(args.experiment)
    except (ExperimentError, SpecError, DataError) as e:
        raise CommandError(str(e)) from None


def probe(experiment: Experiment, steps: int, remedies=(), remedy_at: int = 0):
    """The simulation of ``experiment`` after ``steps`` iterations (0: as built, which
    already holds the first batch's gradients), with ``remedies`` applied after
    ``remedy_at`` of them. Returns (simulation, snapshot at the start, what was applied)."""
    if remedies and remedy_at > steps:
        raise CommandError(f"--remedy-at {remedy_at} is after the last step (--steps {steps})")
    try:
        dataset = experiment.build_dataset()
        sim = Simulation(experiment, dataset=dataset)
    except (ExperimentError, SpecError, DataError) as e:
        raise CommandError(str(e)) from None
    except MemoryError:
        raise CommandError("the network or its data is too large for this computer's "
                           "memory; make it narrower or shallower") from None
    baseline = sim.snapshot()
    applied = []
    if remedies:
        if remedy_at > 0:
            sim.run(remedy_at, snapshot=False)
        for key in remedies:
            try:
                changes = apply_remedy(sim, key)
            except ValueError as e:
                raise CommandError(f"--remedy {key}: {e}") from None
            # a run that diverged before remedy_at gets the remedy where it stopped
            applied.append({"key": key, "label": REMEDIES[key].label, "step": sim.step_count,
                            "changes": changes})
        if sim.spec != baseline.spec:
            baseline = None  # another structure: no start record to compare with
    if steps > sim.step_count and sim.divergence is None:
        sim.run(steps - sim.step_count, snapshot=False)
    return sim, baseline, applied


def _finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _layer_rows(snap: Snapshot) -> list[dict]:
    spec = snap.spec
    n = snap.n_layers
    rows = []
    for i in range(n):
        k = i + 1
        hidden = spec.hidden[i] if k <= spec.depth else None
        row = {"layer": k, "name": str(k) if hidden else "out", "width": spec.widths[k],
               "activation": hidden.activation if hidden else "linear",
               "batchnorm": bool(hidden.batchnorm) if hidden else False}
        for name in _LAYER_FIELDS + _FACTOR_FIELDS:
            row[name] = float(getattr(snap, name)[i])
        rows.append(row)
    return rows


def _findings(sim: Simulation, snap: Snapshot, baseline=None) -> list[dict] | None:
    if diagnose is None:
        return None
    found = diagnose(sim.spec, snap, sim.history, sim.training, baseline=baseline)
    return [{"kind": f.kind, "severity": f.severity, "title": f.title, "detail": f.detail,
             "layers": list(f.layers),
             "remedies": [{"key": r.key, "label": r.label} for r in f.remedies]}
            for f in found]


def probe_report(sim: Simulation, source: dict, steps: int, baseline=None,
                 applied=()) -> dict:
    """Everything ``probe`` prints, as plain data (floats may be NaN)."""
    snap = sim.snapshot()
    div = snap.divergence
    return {
        "experiment": sim.experiment.name,
        "source": source,
        "steps_requested": steps,
        "step": snap.step,
        "batch_size": snap.batch_size,
        "dtype": sim.experiment.dtype,
        "loss": snap.loss,
        "accuracy": snap.accuracy,
        "val_loss": snap.val_loss,
        "val_accuracy": snap.val_accuracy,
        "divergence": None if div is None else {
            "step": div.step, "phase": div.phase, "layer": div.layer, "quantity": div.quantity,
            "message": div.message},
        "remedies_applied": list(applied),
        "layers": _layer_rows(snap),
        "findings": _findings(sim, snap, baseline),
    }


def _json_safe(value):
    """NaN and Inf become None, recursively, so the output is strict JSON."""
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _num(x: float | None) -> str:
    """A number for the text report: "-" for a missing one (None or NaN)."""
    if x is None or math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    return f"{x:.2e}"


def _pct(x: float, applies: bool) -> str:
    if not applies:
        return "-"
    return "-" if math.isnan(x) else f"{100 * x:.1f}"


def _percent(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f} %"


def _table(rows: list[list[str]], numeric_from: int) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [cell.rjust(w) if c >= numeric_from or c == 1 else cell.ljust(w)
                 for c, (cell, w) in enumerate(zip(r, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
    return out


def format_probe(report: dict) -> str:
    lines = [f"{report['experiment']}  ({_describe_source(report['source'])})"]
    step = report["step"]
    if step == 0:
        lines.append("step 0: gradients of the first batch at initialization (no update yet)")
    else:
        lines.append(f"after {step} training step{'s' if step != 1 else ''}, "
                     f"batch size {report['batch_size']}")
    for r in report.get("remedies_applied", ()):
        lines.append(f"remedy '{r['label']}' applied at step {r['step']}: "
                     + "; ".join(r["changes"]))
    lines.append(f"loss {_num(report['loss'])}   accuracy {_percent(report['accuracy'])}   "
                 f"held-out loss {_num(report['val_loss'])}   "
                 f"held-out accuracy {_percent(report['val_accuracy'])}")
    lines.append("")
    rows = [list(_HEADINGS)]
    for r in report["layers"]:
        act = r["activation"]
        rows.append([r["name"], str(r["width"]), act,
                     ("yes" if r["batchnorm"] else "no") if r["name"] != "out" else "-",
                     _num(r["delta_norm"]), _num(r["grad_norm"]), _num(r["weight_norm"]),
                     _num(r["update_ratio"]), _num(r["weight_change"]),
                     _pct(r["dead_fraction"], act in _CAN_DIE),
                     _pct(r["saturated_fraction"], act in _CAN_SATURATE),
                     _num(r["act_mean"]), _num(r["act_std"])])
    lines += _table(rows, numeric_from=4)
    lines.append("")
    lines.append("update ratio = ||step on W|| / ||W|| of the last update; change = "
                 "||W - W(init)|| / ||W(init)||; '-' = not measured or not applicable")
    lines += _factor_lines(report["layers"])
    if report["divergence"] is not None:
        lines += ["", report["divergence"]["message"]]
    findings = report["findings"]
    if findings is None:
        lines += ["", "(no diagnosis: simulator.diagnosis is not available)"]
    elif findings:
        lines += ["", "Diagnosis:"]
        for f in findings:
            lines.append(f"  [{f['severity']}] {f['title']}")
            lines.append(f"      {f['detail']}")
            for r in f["remedies"]:
                lines.append(f"      try: {r['label']}")
    return "\n".join(lines)


def _factor_lines(layers: list[dict]) -> list[str]:
    """The chain rule one hidden layer at a time: what reaches layer k from k+1."""
    hidden = [r for r in layers if r["name"] != "out"]
    if not hidden:
        return []
    rows = [["layer", "activation", "passes on", "weights", "phi'", "batch norm", "skip share %"]]
    for r, above in zip(hidden, layers[1:], strict=False):
        passed = (r["delta_norm"] / above["delta_norm"] if above["delta_norm"] > 0
                  else float("nan"))
        rows.append([r["name"], r["activation"], _num(passed), _num(r["weight_factor"]),
                     _num(r["local_factor"]), _num(r["norm_factor"]),
                     _pct(r["skip_share"], True)])
    return ["", "Chain-rule factors (||delta_k|| / ||delta_k+1|| = weights x phi' [x batch norm] "
            "when no skip link leaves the layer):"] + _table(rows, numeric_from=2)


def _describe_source(source: dict) -> str:
    return f"preset {source['preset']}" if "preset" in source else f"file {source['file']}"


def _check_regular_file(path) -> None:
    """Refuse a FIFO, a device or /dev/stdin before anything opens it: reading one
    blocks until someone writes to it (issue 12). Missing files are left to the
    loader, which says so in its own words."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else (
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise CommandError(f"{path}: is {kind}, not a file; give a regular file")


def _run_probe(args: argparse.Namespace) -> int:
    if getattr(args, "experiment", None) is not None:
        _check_regular_file(args.experiment)
    import cli_recurrent  # through-time presets and files ("mode": "recurrent") go there
    if cli_recurrent.wants_recurrent(args):
        return cli_recurrent.run_probe(args)
    from cli_compare import maybe_run_probe  # comparisons and pretraining sections
    handled = maybe_run_probe(args)
    if handled is not None:
        return handled
    experiment = _load(args)
    source = ({"preset": args.preset} if args.preset is not None
              else {"file": str(args.experiment)})
    sim, baseline, applied = probe(experiment, args.steps, args.remedy, args.remedy_at)
    report = probe_report(sim, source, args.steps, baseline, applied)
    if args.json:
        print(json.dumps(_json_safe(report), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        print(terminal_safe(format_probe(report)))
    if report["divergence"] is not None:
        print(terminal_safe(f"main.py probe: {report['divergence']['message']}"),
              file=sys.stderr)
        return EXIT_DIVERGED
    return EXIT_OK


SUBCOMMANDS: dict[str, Subcommand] = {
    "presets": Subcommand(
        help="list the built-in presets (key, name, description)",
        add_arguments=_add_presets_arguments, run=_run_presets,
        description="List the presets in teaching order: the key to pass to "
                    "`probe --preset`, the name, and the first line of the description."),
    "probe": Subcommand(
        help="train a few steps headless and print per-layer gradient statistics",
        add_arguments=_add_probe_arguments, run=_run_probe,
        description="Build an experiment, run N training iterations (0 = at initialization, "
                    "showing the first batch's gradients without an update) and print, per "
                    "layer, the gradient and weight statistics the window shows, the loss, "
                    "and the diagnosis. Exit codes: 0 done, 2 bad input, 3 training diverged."),
}


# -- export (added by the export work, issue 4) ------------------------------------------------
# The export renders with Qt widgets (the ui/export/ package); its options live in the Qt-free
# ui/export_spec.py, so building this parser still imports no Qt.


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    from ui.export_spec import cli_add_arguments

    cli_add_arguments(parser)


def _run_export(args: argparse.Namespace) -> int:
    try:
        from ui.export.cli import cli_run
    except ImportError as e:
        raise CommandError(f"export needs {e.name or e}, which is not installed "
                           "(pip install -e . installs it)", code=1) from None
    return cli_run(args)


def _export_subcommand() -> Subcommand:
    from ui.export_spec import EXPORT_DESCRIPTION, EXPORT_HELP

    return Subcommand(help=EXPORT_HELP, add_arguments=_add_export_arguments, run=_run_export,
                      description=EXPORT_DESCRIPTION)


try:
    SUBCOMMANDS["export"] = _export_subcommand()
except ImportError:  # a copy of the program without ui/: no export command
    pass

# -- sweep, sweep-plot (issue 11): defined in cli_sweep.py, which imports this module's
# Subcommand and CommandError, hence the import at the end.
from cli_sweep import SUBCOMMANDS as _SWEEP_SUBCOMMANDS  # noqa: E402

SUBCOMMANDS.update(_SWEEP_SUBCOMMANDS)
