"""Files for pretraining and comparisons, read as carefully as experiment files.

Two additions to the experiment format, parsed here so ``experiment.py`` stays as it is:

* an experiment file may carry an optional ``"pretraining"`` object (``PretrainSpec``
  fields): the network is pretrained layer by layer before training;
* a comparison file holds experiment A and the edits that make B::

    {"format": "gradient-flow-lab/comparison", "version": 1, "name": ..., "description": ...,
     "a": {an experiment, as in an experiment file},
     "b": {an experiment (optional): B starts as this one instead of as A},
     "b_edits": [{"edit": "skips", "links": [[1, 3], [3, 5]]},
                 {"edit": "init", "init": "he_normal"},
                 {"edit": "activation", "layer": "all", "activation": "relu"},
                 {"edit": "batchnorm", "layer": 2, "on": true},
                 {"edit": "training", "lr": 0.01},
                 {"edit": "pretrain", "steps_per_layer": 300, ...}]}

Every problem is an ``ExperimentError`` naming the file and the field
("b_edits[1].init: must be one of ...").

Comparison presets are comparison files in ``assets/comparisons`` named ``NN_key.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compare import Comparison
from .experiment import (
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    Experiment,
    ExperimentError,
    TrainSpec,
    _parse_json,
    read_experiment_text,
)
from .presets import find_preset, preset_summaries
from .pretrain import Pretrainer, PretrainSpec, check_pretrainable
from .simulation import Simulation
from .spec import ACTIVATIONS, INITS, SpecError, _check_choice, _check_int

COMPARISON_FORMAT = "gradient-flow-lab/comparison"
COMPARISON_VERSION = 1
EDIT_KINDS = ("skips", "init", "activation", "batchnorm", "training", "pretrain")
COMPARISON_DIR = Path(__file__).resolve().parent.parent / "assets" / "comparisons"


@dataclass(frozen=True)
class PretrainedExperiment:
    """An experiment and, optionally, how to pretrain its network first."""

    experiment: Experiment
    pretraining: PretrainSpec | None = None

    def to_dict(self) -> dict:
        d = self.experiment.to_dict()
        if self.pretraining is not None:
            d["pretraining"] = self.pretraining.to_dict()
        return d

    def build(self, dataset=None) -> tuple[Simulation, Pretrainer | None]:
        sim = Simulation(self.experiment, dataset=dataset)
        return sim, Pretrainer(sim, self.pretraining) if self.pretraining else None


@dataclass(frozen=True)
class ComparisonSpec:
    """A comparison as data: experiment A and the edits that make B."""

    name: str
    description: str
    a: Experiment
    b_edits: tuple[dict, ...] = ()
    b: Experiment | None = None  # B's own experiment (what the window saves), else A's

    def build(self, dataset=None) -> Comparison:
        c = Comparison(self.a, dataset=dataset)
        if self.b is not None:
            try:
                c.b.set_experiment(self.b)
            except SpecError as e:
                raise SpecError(f"b.{e.field}", e.message) from None
        for i, edit in enumerate(self.b_edits):
            try:
                apply_edit(c, edit)
            except SpecError as e:
                raise SpecError(f"b_edits[{i}].{e.field}", e.message) from None
        return c

    def to_dict(self) -> dict:
        d = {"format": COMPARISON_FORMAT, "version": COMPARISON_VERSION, "name": self.name,
             "description": self.description, "a": self.a.to_dict()}
        if self.b is not None:
            d["b"] = self.b.to_dict()
        d["b_edits"] = [dict(e) for e in self.b_edits]
        return d

    @classmethod
    def of(cls, comparison: Comparison, name: str, description: str = "") -> ComparisonSpec:
        """What a comparison is now, as a file: A and B as they stand, and B's pretraining."""
        edits = ()
        if comparison.pretrainer is not None:
            edits = ({"edit": "pretrain", **comparison.pretrainer.spec.to_dict()},)
        return cls(name, description, comparison.a.experiment, edits, comparison.b.experiment)


def _hidden_layers(c: Comparison, layer: Any) -> list[int]:
    if layer == "all":
        return list(range(1, c.b.spec.depth + 1))
    return [_check_int("layer", layer, 1, max(1, c.b.spec.depth))]


def apply_edit(c: Comparison, edit: dict) -> None:
    """Apply one B-edit (a dict as in the file) to the comparison's side B."""
    if not isinstance(edit, dict):
        raise SpecError("edit", "must be an object such as {\"edit\": \"init\", ...}")
    kind = _check_choice("edit", edit.get("edit"), EDIT_KINDS)
    args = {k: v for k, v in edit.items() if k != "edit"}
    allowed = {"skips": {"links"}, "init": {"init", "gain"},
               "activation": {"layer", "activation"}, "batchnorm": {"layer", "on"},
               "training": set(TrainSpec().to_dict()),
               "pretrain": set(PretrainSpec().to_dict())}[kind]
    unknown = set(args) - allowed
    if unknown:
        raise SpecError(kind, f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    b = c.b
    if kind == "skips":
        links = args.get("links")
        if not isinstance(links, list):
            raise SpecError("links", "must be a list of [from, to] pairs")
        b.set_skips(tuple(tuple(s) if isinstance(s, list) else s for s in links))
    elif kind == "init":
        init = _check_choice("init", args.get("init"), INITS)
        b.set_init(init, gain=args.get("gain"))
    elif kind == "activation":
        act = _check_choice("activation", args.get("activation"), ACTIVATIONS)
        for k in _hidden_layers(c, args.get("layer", "all")):
            b.set_activation(k, act)
    elif kind == "batchnorm":
        on = args.get("on", True)
        if not isinstance(on, bool):
            raise SpecError("on", f"must be true or false, got {on!r}")
        for k in _hidden_layers(c, args.get("layer", "all")):
            b.set_batchnorm(k, on)
    elif kind == "training":
        fields = {**b.training.to_dict(), **args}
        b.set_training(TrainSpec.from_dict(fields))
    else:
        spec = PretrainSpec.from_dict(args)
        check_pretrainable(b.spec)
        c.pretrain_b(spec)


# -- reading ------------------------------------------------------------------------------


def _check_text(name: str, value: Any, limit: int, required: bool) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise SpecError(name, "must be a non-empty text" if required else "must be text")
    if len(value) > limit:
        raise SpecError(name, f"must be at most {limit} characters long")
    return value


def study_from_dict(d: Any, base_dir=None, source: str | None = None):
    """A ``PretrainedExperiment`` or a ``ComparisonSpec`` from parsed JSON."""
    if isinstance(d, dict) and d.get("format") == COMPARISON_FORMAT:
        return _comparison_from_dict(d, base_dir, source)
    pretraining = None
    if isinstance(d, dict) and "pretraining" in d:
        d = dict(d)
        try:
            pretraining = PretrainSpec.from_dict(d.pop("pretraining"))
        except SpecError as e:
            raise ExperimentError(e.message, field=e.field, path=source) from None
    exp = Experiment.from_dict(d, base_dir=base_dir, source=source)
    if pretraining is not None:
        try:
            check_pretrainable(exp.network)
        except SpecError as e:
            raise ExperimentError(e.message, field=e.field, path=source) from None
    return PretrainedExperiment(exp, pretraining)


def _comparison_from_dict(d: dict, base_dir, source) -> ComparisonSpec:
    try:
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SpecError("version", f"must be a whole number from 1, got {version!r}")
        if version > COMPARISON_VERSION:
            raise SpecError("version", f"the file was written by a newer Gradient Flow Lab "
                            f"(comparison version {version}); update the program to open it")
        unknown = set(d) - {"format", "version", "name", "description", "a", "b", "b_edits"}
        if unknown:
            raise SpecError("comparison",
                            f"unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}")
        for req in ("name", "a"):
            if req not in d:
                raise SpecError(req, "is missing")
        name = _check_text("name", d["name"], MAX_NAME_CHARS, True)
        description = _check_text("description", d.get("description", ""),
                                  MAX_DESCRIPTION_CHARS, False)
        edits = d.get("b_edits", [])
        if not isinstance(edits, list):
            raise SpecError("b_edits", "must be a list of edits")
        if len(edits) > 100:
            raise SpecError("b_edits", "at most 100 edits")
        for i, e in enumerate(edits):
            if not isinstance(e, dict):
                raise SpecError(f"b_edits[{i}]", "must be an object such as "
                                "{\"edit\": \"init\", \"init\": \"he_normal\"}")
    except SpecError as e:
        raise ExperimentError(e.message, field=e.field, path=source) from None
    try:
        a = Experiment.from_dict(d["a"], base_dir=base_dir)
    except ExperimentError as e:
        raise ExperimentError(e.message, field=f"a.{e.field}" if e.field else "a",
                              path=source) from None
    b = None
    if "b" in d:
        try:
            b = Experiment.from_dict(d["b"], base_dir=base_dir)
        except ExperimentError as e:
            raise ExperimentError(e.message, field=f"b.{e.field}" if e.field else "b",
                                  path=source) from None
    return ComparisonSpec(name, description, a, tuple(dict(e) for e in edits), b)


def save_comparison(spec: ComparisonSpec, path: str | os.PathLike) -> None:
    """Write a comparison file atomically (a temporary file beside it, then rename)."""
    path = Path(path)
    text = json.dumps(spec.to_dict(), indent=2, ensure_ascii=False) + "\n"
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                   dir=path.absolute().parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise ExperimentError(f"cannot be written ({e.strerror or e})", path=str(path)) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def check_comparison(spec: ComparisonSpec, source: str | None = None) -> Comparison:
    """Build the comparison; an edit that does not fit names its place in b_edits."""
    try:
        return spec.build()
    except SpecError as e:
        raise ExperimentError(e.message, field=e.field, path=source) from None


def load_study(path: str | os.PathLike):
    """Read an experiment file (with or without pretraining) or a comparison file."""
    path = Path(path)
    text = read_experiment_text(path)
    d = _parse_json(text, str(path))
    return study_from_dict(d, base_dir=path.resolve().parent, source=str(path))


# -- comparison presets -------------------------------------------------------------------


def list_comparisons() -> list[tuple[str, str, str]]:
    """(key, name, description) of every comparison preset, in file order."""
    return preset_summaries(COMPARISON_DIR, load_study, ExperimentError)


def load_comparison(key: str) -> ComparisonSpec:
    file, available = find_preset(COMPARISON_DIR, key)
    if file is None:
        raise ExperimentError(f"there is no comparison {key!r}; available: {available}",
                              field="preset")
    spec = load_study(file)
    if not isinstance(spec, ComparisonSpec):
        raise ExperimentError("is not a comparison file", path=str(file))
    return spec

