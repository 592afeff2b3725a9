"""``main.py probe`` on comparisons and on experiments that pretrain (no Qt here).

* ``probe --compare --preset KEY`` (a comparison preset, see assets/comparisons) or
  ``probe --compare --experiment FILE`` (a comparison file): both sides after
  ``--steps`` lockstep iterations (B's pretraining first, if it has any), per-layer
  numbers of A and B side by side, each side's diagnosis, and the label of what differs.
* ``probe --experiment FILE`` where the file has a "pretraining" section: every
  layer's reconstruction loss before and after its stage, then the usual report
  after ``--steps`` fine-tuning iterations.

Exit codes as ``probe``'s: 0 done, 2 bad input, 3 diverged (pretraining or training).
"""

from __future__ import annotations

import argparse
import json
import sys

import cli
from simulator.compare_experiment import (
    ComparisonSpec,
    PretrainedExperiment,
    check_comparison,
    list_comparisons,
    load_comparison,
    load_study,
)
from simulator.data import DataError
from simulator.experiment import MAX_FILE_BYTES, ExperimentError
from simulator.pretrain import Pretrainer
from simulator.spec import SpecError

_ERRORS = (ExperimentError, SpecError, DataError)


def maybe_run_probe(args: argparse.Namespace) -> int | None:
    """Run ``probe`` here when it is a comparison or pretrains; None: the plain probe's."""
    if getattr(args, "compare", False):
        return _run_compare(args)
    if args.experiment is None:
        return None
    try:
        study = load_study(args.experiment)
    except _ERRORS as e:
        if _has_pretraining_section(args.experiment):
            raise cli.CommandError(str(e)) from None
        return None  # the plain probe reports the file's problem in its own words
    if isinstance(study, ComparisonSpec):
        raise cli.CommandError(f"{args.experiment} is a comparison file: add --compare")
    if study.pretraining is None:
        return None
    return _run_pretrained(args, study)


def _has_pretraining_section(path) -> bool:
    try:
        with open(path, encoding="utf-8-sig") as f:
            d = json.loads(f.read(MAX_FILE_BYTES))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(d, dict) and "pretraining" in d


# -- pretraining --------------------------------------------------------------------------


def pretraining_rows(p: Pretrainer) -> list[dict]:
    return [{"layer": k + 1, "steps": len(p.history[k]), "loss_before": p.loss_before[k],
             "loss_after": p.loss_after[k]} for k in range(p.n_layers)]


def _pretraining_report(p: Pretrainer) -> dict:
    d = p.divergence
    return {"settings": p.spec.to_dict(), "layers": pretraining_rows(p),
            "divergence": None if d is None else {"layer": d.layer, "step": d.step,
                                                   "phase": d.phase, "message": d.message}}


def _format_pretraining(rep: dict) -> list[str]:
    s = rep["settings"]
    lines = [f"Pretraining, layer by layer ({s['steps_per_layer']} steps per layer, "
             f"lr {s['lr']:g}, {'tied' if s['tied'] else 'untied'} decoder"
             + (f", denoising {s['denoise']:g}" if s["denoise"] > 0 else "") + "):"]
    rows = [["layer", "steps", "reconstruction loss before", "after"]]
    for r in rep["layers"]:
        rows.append([str(r["layer"]), str(r["steps"]), cli._num(r["loss_before"]),
                     cli._num(r["loss_after"])])
    lines += ["  " + line for line in cli._table(rows, numeric_from=1)]
    if rep["divergence"] is not None:
        lines.append("  " + rep["divergence"]["message"])
    return lines


def _run_pretrained(args: argparse.Namespace, study: PretrainedExperiment) -> int:
    try:
        study.experiment.build_dataset()
        sim, pre = study.build()
    except _ERRORS as e:
        raise cli.CommandError(str(e)) from None
    pre.pretrain_all()
    if pre.done and args.steps > 0:
        sim.run(args.steps, snapshot=False)
    report = cli.probe_report(sim, {"file": str(args.experiment)}, args.steps)
    report["pretraining"] = _pretraining_report(pre)
    if args.json:
        print(json.dumps(cli._json_safe(report), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        print("\n".join(_format_pretraining(report["pretraining"]) + [""]))
        print(cli.format_probe(report))
    div = report["pretraining"]["divergence"] or report["divergence"]
    if div is not None:
        print(f"main.py probe: {div['message']}", file=sys.stderr)
        return cli.EXIT_DIVERGED
    return cli.EXIT_OK


# -- comparisons --------------------------------------------------------------------------


def _load_comparison(args: argparse.Namespace) -> tuple[ComparisonSpec, dict]:
    try:
        if args.preset is not None:
            return load_comparison(args.preset), {"preset": args.preset}
        study = load_study(args.experiment)
    except _ERRORS as e:
        raise cli.CommandError(str(e)) from None
    if not isinstance(study, ComparisonSpec):
        keys = ", ".join(k for k, _, _ in list_comparisons())
        raise cli.CommandError(f"{args.experiment} is an experiment, not a comparison file "
                               f"(drop --compare, or try a comparison preset: {keys})")
    return study, {"file": str(args.experiment)}


def compare_report(spec: ComparisonSpec, source: dict, steps: int) -> dict:
    try:
        spec.a.build_dataset()
        c = check_comparison(spec, source=source.get("file"))
    except _ERRORS as e:
        raise cli.CommandError(str(e)) from None
    c.run(steps)
    sides = {}
    for name, sim in (("A", c.a), ("B", c.b)):
        rep = cli.probe_report(sim, source, steps)
        sides[name] = {k: rep[k] for k in ("step", "loss", "accuracy", "val_loss",
                                           "val_accuracy", "divergence", "layers", "findings")}
    report = {"comparison": spec.name, "source": source, "label": c.label,
              "steps_requested": steps, "A": sides["A"], "B": sides["B"], "pretraining": None}
    if c.pretrainer is not None:
        report["pretraining"] = _pretraining_report(c.pretrainer)
        report["B"]["pretraining_done"] = c.pretrainer.done
    return report


def format_compare(report: dict) -> str:
    lines = [f"{report['comparison']}  ({cli._describe_source(report['source'])})",
             report["label"]]
    a, b = report["A"], report["B"]
    lines.append(f"A: step {a['step']}, loss {cli._num(a['loss'])}, accuracy "
                 f"{cli._percent(a['accuracy'])}, held-out loss {cli._num(a['val_loss'])}")
    lines.append(f"B: step {b['step']}, loss {cli._num(b['loss'])}, accuracy "
                 f"{cli._percent(b['accuracy'])}, held-out loss {cli._num(b['val_loss'])}")
    if report["pretraining"] is not None:
        lines += [""] + ["B " + line if i == 0 else line for i, line in
                         enumerate(_format_pretraining(report["pretraining"]))]
        if not b.get("pretraining_done", True):
            lines.append("  (B is still pretraining: A waits; give more --steps)")
    lines.append("")
    rows = [["layer", "", "A grad norm", "B grad norm", "A change", "B change"]]
    by_b = {r["layer"]: r for r in b["layers"]}
    for ra in a["layers"]:
        rb = by_b.get(ra["layer"])
        rows.append([ra["name"], str(ra["width"]), cli._num(ra["grad_norm"]),
                     cli._num(rb["grad_norm"]) if rb else "-", cli._num(ra["weight_change"]),
                     cli._num(rb["weight_change"]) if rb else "-"])
    for k, rb in by_b.items():
        if k > len(a["layers"]):
            rows.append([rb["name"], str(rb["width"]), "-", cli._num(rb["grad_norm"]), "-",
                         cli._num(rb["weight_change"])])
    lines += cli._table(rows, numeric_from=2)
    lines.append("change = ||W - W(start of training)|| / ||W(start)|| (B's start is its "
                 "pretrained weights when pretrained)")
    for name, side in (("A", a), ("B", b)):
        if side["divergence"] is not None:
            lines += ["", f"{name}: {side['divergence']['message']}"]
        if side["findings"]:
            lines += ["", f"Diagnosis of {name}:"]
            for f in side["findings"]:
                lines.append(f"  [{f['severity']}] {f['title']}")
    return "\n".join(lines)


def _run_compare(args: argparse.Namespace) -> int:
    spec, source = _load_comparison(args)
    report = compare_report(spec, source, args.steps)
    if args.json:
        print(json.dumps(cli._json_safe(report), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        print(format_compare(report))
    for name in ("A", "B"):
        div = report[name]["divergence"]
        if div is not None:
            print(f"main.py probe: {name}: {div['message']}", file=sys.stderr)
            return cli.EXIT_DIVERGED
    pre = report["pretraining"]
    if pre is not None and pre["divergence"] is not None:
        print(f"main.py probe: B: {pre['divergence']['message']}", file=sys.stderr)
        return cli.EXIT_DIVERGED
    return cli.EXIT_OK
