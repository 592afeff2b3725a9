"""``main.py probe`` and ``main.py presets --mode time`` for through-time experiments.

cli.py hands over here when the preset key is a through-time preset or the
experiment file says ``"mode": "recurrent"``. Probe trains every cell the
experiment compares (the same task, seed and budget of steps for each) and
prints, per time step, ||dL/dh_t|| and, for LSTMs, ||dL/dc_t|| and the mean
forget gate; ``--json`` prints the same as JSON. No Qt here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cli
from simulator.experiment import ExperimentError
from simulator.recurrent.diagnosis import diagnose
from simulator.recurrent.experiment import (
    RecurrentExperiment,
    is_recurrent,
    list_recurrent_presets,
    load_recurrent_experiment,
    load_recurrent_preset,
)
from simulator.recurrent.simulation import RecurrentSimulation
from simulator.spec import SpecError

EXIT_OK, EXIT_BAD_INPUT, EXIT_DIVERGED = 0, 2, 3
MAX_ROWS = 60  # longer sequences print every k-th time step (always the first and last)

def wants_recurrent(args: argparse.Namespace) -> bool:
    """Whether a probe's --preset/--experiment names a through-time experiment."""
    if getattr(args, "preset", None) is not None:
        return any(k == args.preset for k, _, _ in list_recurrent_presets())
    path = getattr(args, "experiment", None)
    if path is None:
        return False
    try:
        return is_recurrent(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False  # the feedforward loader reports what is wrong with the file

def load(args: argparse.Namespace) -> RecurrentExperiment:
    if args.preset is not None:
        return load_recurrent_preset(args.preset)
    return load_recurrent_experiment(args.experiment)

def probe_cell(experiment: RecurrentExperiment, cell: str, steps: int) -> RecurrentSimulation:
    """The simulation of ``experiment`` with ``cell`` after ``steps`` iterations; with 0
    steps, the forward and backward pass of the first batch at initialization (no update)."""
    sim = RecurrentSimulation(experiment.with_cell(cell))
    if steps > 0:
        sim.run(steps, snapshot=False)
    else:
        for _ in range(sim.n_micro_steps - 1):
            sim.micro_step()
    return sim

def report(experiment: RecurrentExperiment, source: dict, steps: int) -> dict:
    cells = []
    for cell in experiment.cells:
        sim = probe_cell(experiment, cell, steps)
        s = sim.snapshot()
        div = s.divergence
        cells.append({
            "cell": cell, "step": s.step, "loss": s.loss, "accuracy": s.accuracy,
            "val_loss": s.val_loss, "val_accuracy": s.val_accuracy, "grad_norm": s.grad_norm,
            "gradient_ratio": s.gradient_ratio,
            "hidden_grad_norms": s.hidden_grad_norms.tolist(),
            "cell_grad_norms": None if s.cell_grad_norms is None else s.cell_grad_norms.tolist(),
            "forget_mean": None if s.forget_mean is None else s.forget_mean.tolist(),
            "findings": [{"kind": f.kind, "severity": f.severity, "title": f.title,
                          "detail": f.detail,
                          "remedies": [{"key": r.key, "label": r.label} for r in f.remedies]}
                         for f in diagnose(experiment, s)],
            "divergence": None if div is None else {
                "step": div.step, "phase": div.phase, "time_step": div.layer,
                "quantity": div.quantity, "message": div.message}})
    task = experiment.task
    return {"experiment": experiment.name, "mode": "recurrent", "source": source,
            "steps_requested": steps, "task": task.to_dict(), "baseline": task.baseline,
            "baseline_kind": "mse" if task.task == "regression" else "accuracy",
            "cells": cells}

def format_report(rep: dict) -> str:
    src = rep["source"]
    where = f"preset {src['preset']}" if "preset" in src else f"file {src['file']}"
    task = rep["task"]
    lines = [f"{rep['experiment']}  ({where})",
             f"task {task['kind']}, lag T = {task['lag']}; knowing nothing scores "
             f"{rep['baseline_kind']} {rep['baseline']:.4g}"]
    if rep["steps_requested"] == 0:
        lines.append("step 0: gradients of the first batch at initialization (no update yet)")
    lines.append("")
    head = ["cell", "steps", "loss", "held-out loss", "held-out acc", "||dL/dh_1||/||dL/dh_T||"]
    rows = [head]
    for c in rep["cells"]:
        acc = c["val_accuracy"]
        rows.append([c["cell"], str(c["step"]), cli._num(c["loss"]), cli._num(c["val_loss"]),
                     "-" if acc is None or math.isnan(acc) else f"{100 * acc:.1f} %",
                     cli._num(c["gradient_ratio"])])
    lines += _table(rows)
    lines += ["", "per time step (t = 1 is the first input; the error starts at t = T):"]
    head = ["t"]
    for c in rep["cells"]:
        head.append(f"{c['cell']} ||dL/dh_t||")
        if c["cell_grad_norms"] is not None:
            head += [f"{c['cell']} ||dL/dc_t||", f"{c['cell']} mean f_t"]
    rows = [head]
    T = task["lag"]
    every = max(1, math.ceil(T / MAX_ROWS))
    for t in range(1, T + 1):
        if t not in (1, T) and (t - 1) % every:
            continue
        row = [str(t)]
        for c in rep["cells"]:
            row.append(cli._num(c["hidden_grad_norms"][t - 1]))
            if c["cell_grad_norms"] is not None:
                row += [cli._num(c["cell_grad_norms"][t - 1]), cli._num(c["forget_mean"][t - 1])]
        rows.append(row)
    lines += _table(rows)
    if every > 1:
        lines.append(f"(every {every}th time step shown)")
    for c in rep["cells"]:
        if c["findings"]:
            lines += ["", f"Diagnosis, {c['cell']}:"]
        for f in c["findings"]:
            lines.append(f"  [{f['severity']}] {f['title']}")
            lines.append(f"      {f['detail']}")
            for r in f["remedies"]:
                lines.append(f"      try: {r['label']}")
    return "\n".join(lines)

def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in rows]

def run_probe(args: argparse.Namespace) -> int:
    try:
        experiment = load(args)
        source = ({"preset": args.preset} if args.preset is not None
                  else {"file": str(args.experiment)})
        rep = report(experiment, source, args.steps)
    except (ExperimentError, SpecError) as e:
        print(f"main.py probe: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("main.py probe: error: the sequences or the network are too large for this "
              "computer's memory; shorten the lag or use fewer samples", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(cli._json_safe(rep), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        print(format_report(rep))
    diverged = [c for c in rep["cells"] if c["divergence"] is not None]
    for c in diverged:
        print(f"main.py probe: {c['cell']}: {c['divergence']['message']}", file=sys.stderr)
    return EXIT_DIVERGED if diverged else EXIT_OK

def run_presets(args: argparse.Namespace) -> int:
    presets = list_recurrent_presets()
    if args.json:
        print(json.dumps([{"key": k, "name": n, "description": d} for k, n, d in presets],
                         indent=2, ensure_ascii=False))
        return EXIT_OK
    key_w = max((len(k) for k, _, _ in presets), default=0)
    name_w = max((len(n) for _, n, _ in presets), default=0)
    for key, name, description in presets:
        line = " ".join(description.split())
        line = line if len(line) <= 100 else line[:97].rstrip() + "..."
        print(f"{key:<{key_w}}  {name:<{name_w}}  {line}".rstrip())
    return EXIT_OK

__all__ = ["run_presets", "run_probe", "wants_recurrent"]
