"""Recurrent experiments as JSON: the feedforward file format with ``"mode": "recurrent"``.

A recurrent experiment file has the same ``format``/``version`` header, ``name``,
``description``, ``training`` (the feedforward ``TrainSpec``), ``seed`` and
``dtype`` as a feedforward one, plus ``"mode": "recurrent"``, a ``recurrent``
section (cell, hidden, init, forget_bias, recurrent_gain) and a ``task``
section (kind, lag, n_samples, symbols, test_fraction, seed). Input size,
output size and loss follow from the task. ``compare`` optionally lists cells
to train side by side on the same task and seed.

Presets live in ``assets/presets_recurrent`` (named ``NN_key.json``), apart from
the feedforward presets so that older readers of that folder never meet them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..experiment import (
    DTYPES,
    FORMAT,
    VERSION,
    ExperimentError,
    TrainSpec,
    _json_type,
    _parse_json,
    _short_repr,
)
from ..presets import find_preset, preset_summaries
from ..spec import SpecError
from .spec import CELLS, RecurrentSpec
from .tasks import TaskSpec

MODE = "recurrent"
PRESET_DIR = Path(__file__).resolve().parent.parent.parent / "assets" / "presets_recurrent"
_SPEC_FIELDS = ("cell", "hidden", "init", "forget_bias", "recurrent_gain")
_DERIVED = ("input_dim", "output_dim", "loss")


@dataclass(frozen=True)
class RecurrentExperiment:
    name: str
    description: str
    recurrent: RecurrentSpec
    task: TaskSpec
    training: TrainSpec
    seed: int = 0
    dtype: str = "float32"
    compare: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise SpecError("name", f"must be a non-empty text, got {self.name!r}")
        if not isinstance(self.description, str):
            raise SpecError("description", "must be text")
        if self.dtype not in DTYPES:
            raise SpecError("dtype", f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not (
                0 <= self.seed < 2**32):
            raise SpecError("seed", f"must be a whole number from 0 to 2**32-1, got "
                                    f"{_short_repr(self.seed)}")
        r, t = self.recurrent, self.task
        for name, want in (("input_dim", t.input_dim), ("output_dim", t.output_dim),
                           ("loss", t.loss)):
            if getattr(r, name) != want:
                raise SpecError(f"recurrent.{name}",
                                f"the {t.kind} task needs {want!r}, got {getattr(r, name)!r}")
        if not isinstance(self.compare, (tuple, list)) or len(self.compare) > len(CELLS):
            raise SpecError("compare", f"must be a list of up to {len(CELLS)} cells")
        for i, c in enumerate(self.compare):
            if c not in CELLS:
                raise SpecError(f"compare[{i}]", f"must be one of {', '.join(CELLS)}, got "
                                                 f"{_short_repr(c)}")
        object.__setattr__(self, "compare", tuple(self.compare))

    @classmethod
    def build(cls, name: str, task: TaskSpec, training: TrainSpec, description: str = "",
              seed: int = 0, dtype: str = "float32", compare=(), **spec_fields):
        """An experiment whose recurrent spec takes its sizes and loss from the task."""
        spec = RecurrentSpec(input_dim=task.input_dim, output_dim=task.output_dim,
                             loss=task.loss, **spec_fields)
        return cls(name, description, spec, task, training, seed, dtype, tuple(compare))

    def with_cell(self, cell: str) -> RecurrentExperiment:
        """The same experiment with another cell (for side-by-side comparisons)."""
        return replace(self, recurrent=replace(self.recurrent, cell=cell), compare=())

    @property
    def cells(self) -> tuple:
        """The cells to run: the comparison list, or the one cell."""
        return self.compare or (self.recurrent.cell,)

    def to_dict(self) -> dict:
        spec = self.recurrent.to_dict()
        return {"format": FORMAT, "version": VERSION, "mode": MODE, "name": self.name,
                "description": self.description,
                "recurrent": {k: spec[k] for k in _SPEC_FIELDS}, "task": self.task.to_dict(),
                "training": self.training.to_dict(), "seed": self.seed, "dtype": self.dtype,
                "compare": list(self.compare)}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Any, source: str | None = None) -> RecurrentExperiment:
        try:
            return cls._from_dict(d)
        except SpecError as e:
            raise ExperimentError(e.message, field=e.field, path=source) from None
        except RecursionError:
            raise ExperimentError("is not a usable experiment (nested too deeply)",
                                  path=source) from None

    @classmethod
    def _from_dict(cls, d: Any) -> RecurrentExperiment:
        if not isinstance(d, dict):
            raise SpecError("experiment", f"must be a JSON object, got {_json_type(d)}")
        if d.get("format") != FORMAT:
            raise SpecError("format", f"must be {FORMAT!r} (this is not a Gradient Flow Lab "
                                      f"experiment), got {_short_repr(d.get('format'))}")
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or not (
                1 <= version <= VERSION):
            raise SpecError("version", f"must be a whole number from 1 to {VERSION}, got "
                                       f"{_short_repr(version)}")
        if d.get("mode") != MODE:
            raise SpecError("mode", f"must be {MODE!r} for a recurrent experiment, got "
                                    f"{_short_repr(d.get('mode'))}")
        allowed = {"format", "version", "mode", "name", "description", "recurrent", "task",
                   "training", "seed", "dtype", "compare"}
        unknown = set(d) - allowed
        if unknown:
            names = ", ".join(sorted(_short_repr(k) for k in unknown)[:10])
            raise SpecError("experiment", f"unknown field(s) {names}")
        for req in ("name", "recurrent", "task", "training"):
            if req not in d:
                raise SpecError(req, "is missing")
        task = TaskSpec.from_dict(d["task"])
        rec = d["recurrent"]
        if not isinstance(rec, dict):
            raise SpecError("recurrent", f"must be an object, got {_json_type(rec)}")
        rec = dict(rec)
        derived = {"input_dim": task.input_dim, "output_dim": task.output_dim,
                   "loss": task.loss}
        for k in _DERIVED:  # may be given, but must then agree with the task
            rec.setdefault(k, derived[k])
        spec = RecurrentSpec.from_dict(rec)
        compare = d.get("compare", [])
        if not isinstance(compare, list):
            raise SpecError("compare", f"must be a list of cells, got {_json_type(compare)}")
        return cls(name=d["name"], description=d.get("description", ""), recurrent=spec,
                   task=task, training=TrainSpec.from_dict(d["training"]),
                   seed=d.get("seed", 0), dtype=d.get("dtype", "float32"),
                   compare=tuple(compare))

    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> RecurrentExperiment:
        return cls.from_dict(_parse_json(text, source), source=source)


def is_recurrent(d: Any) -> bool:
    """Whether parsed experiment JSON asks for the through-time mode."""
    return isinstance(d, dict) and d.get("mode") == MODE


def load_recurrent_experiment(path: str | os.PathLike) -> RecurrentExperiment:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ExperimentError(f"cannot be read ({e.__class__.__name__})", path=str(p)) from None
    return RecurrentExperiment.from_json(text, source=str(p))


def save_recurrent_experiment(exp: RecurrentExperiment, path: str | os.PathLike) -> None:
    Path(path).write_text(exp.to_json() + "\n", encoding="utf-8")


def list_recurrent_presets() -> list[tuple[str, str, str]]:
    """(key, name, description) of every through-time preset, in teaching order."""
    return preset_summaries(PRESET_DIR, load_recurrent_experiment, ExperimentError)


def load_recurrent_preset(key: str) -> RecurrentExperiment:
    file, available = find_preset(PRESET_DIR, key)
    if file is None:
        raise ExperimentError(f"there is no through-time preset {key!r}; available: "
                              f"{available}", field="preset")
    return load_recurrent_experiment(file)
