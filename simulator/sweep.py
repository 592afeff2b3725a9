"""Sweeps: one experiment run many times with some of its fields varied along named axes.

A ``Sweep`` is a base ``Experiment``, a list of axes (``depth = 2, 4, 8``,
``skips = none, residual``, ...), a number of seeds and a budget of training
steps. Its points are every combination of axis values and seeds; each point
is an ordinary experiment, trained headless by ``run_point``, which returns a
small record of plain numbers (losses, accuracies, the gradient ratio
||delta_1|| / ||delta_out|| at start and end, steps to a target loss, the
divergence step).

Results go to a JSON-lines file, one record per finished point, appended and
flushed the moment the point finishes. JSON lines because a line is the unit
of work: appending one cannot damage the lines before it, a process killed
mid-write leaves at most one partial last line (dropped on the next open),
and the file is readable with any text tool while the sweep runs. A columnar
format (Parquet) would need a whole file rewritten, or many small files, per
point, for a few hundred rows that never need columnar speed.

A point is identified by ``key``: the canonical JSON of its axis values and
seed. The file's header holds a fingerprint of everything else that decides a
point's numbers (the base experiment, the step budget, the target loss, the
check interval). Re-running a sweep on an existing file with the same
fingerprint skips the keys already there, so an interrupted sweep resumes with
no point lost or run twice; adding a value to an axis runs only the new points.

Executors: ``"serial"`` (this process), ``"local"`` (a process pool, one
worker per core by default; each worker loads the numba kernels from the
on-disk cache) and ``"dask"`` (an existing Dask distributed cluster, through
``distributed.Client``, its futures and ``as_completed``). A point's numbers
depend only on the point, never on which executor or worker ran it, as long
as the workers run the same code on the same kind of CPU.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .data import DataError
from .experiment import Experiment, ExperimentError, load_experiment, load_preset
from .presets import find_preset, preset_summaries
from .spec import ACTIVATIONS, INITS, LOSSES, MAX_HIDDEN, MAX_WIDTH, LayerSpec, SpecError
from .spec import residual_skips as _residual_skips

SWEEP_FORMAT = "gradient-flow-lab/sweep"
RESULTS_FORMAT = "gradient-flow-lab/sweep-results"
VERSION = 1
MAX_STEPS = 10_000_000
MAX_POINTS = 100_000
MAX_SEEDS = 1000
DEFAULT_TARGET_LOSS = 0.1
CHECKS_PER_RUN = 40  # default number of loss checkpoints over the step budget
SKIP_PATTERNS = ("none", "residual")
SWEEP_DIR = Path(__file__).resolve().parent.parent / "assets" / "sweeps"
_BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class SweepError(ValueError):
    """A sweep is invalid. ``axis`` names the offending axis (or sweep field), if any."""

    def __init__(self, message: str, axis: str | None = None):
        super().__init__(f"axis {axis}: {message}" if axis else message)
        self.axis = axis
        self.message = message


# -- axes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AxisKind:
    """What values an axis takes and where they go in the experiment."""

    name: str
    kind: str  # "int", "float", "choice", "bool"
    help: str
    choices: tuple[str, ...] = ()
    lo: float = -math.inf
    hi: float = math.inf


def _int(name, lo, hi, help_):
    return AxisKind(name, "int", help_, lo=lo, hi=hi)


def _float(name, lo, hi, help_):
    return AxisKind(name, "float", help_, lo=lo, hi=hi)


def _choice(name, choices, help_):
    return AxisKind(name, "choice", help_, choices=tuple(choices))


_TRAIN_INTS = {"batch_size": (1, 10**7)}
_TRAIN_FLOATS = {"lr": (0.0, 100.0), "weight_decay": (0.0, 10.0), "clip_norm": (0.0, 1e6),
                 "clip_value": (0.0, 1e6), "momentum": (0.0, 1.0), "beta1": (0.0, 1.0),
                 "beta2": (0.0, 1.0), "eps": (0.0, 1.0)}
_DATA_INTS = {"n_samples": (10, 200_000), "seed": (0, 2**32 - 1), "classes": (2, 10),
              "dims": (1, 1000)}
_DATA_FLOATS = {"noise": (0.0, 10.0), "test_fraction": (0.0, 0.9)}

AXES: dict[str, AxisKind] = {
    "depth": _int("depth", 1, MAX_HIDDEN, "number of hidden layers (a uniform stack)"),
    "width": _int("width", 1, MAX_WIDTH, "units in every hidden layer"),
    "activation": _choice("activation", ACTIVATIONS, "activation of every hidden layer"),
    "batchnorm": AxisKind("batchnorm", "bool", "batch norm after every hidden dense step"),
    "skips": _choice("skips", SKIP_PATTERNS,
                     "none, or residual: skip links (k, k+2) from layer 1 on (2-layer blocks)"),
    "init": _choice("init", INITS, "weight initialization"),
    "sigma_w2": _float("sigma_w2", 0.0, 1e6,
                       "weight variance times fan-in, sigma_w^2 (needs init mean_field)"),
    "sigma_b2": _float("sigma_b2", 0.0, 1e6, "bias variance sigma_b^2 (needs init mean_field)"),
    "gain": _float("gain", 1e-6, 1e3, "scale applied to the initial weights"),
    "loss": _choice("loss", LOSSES, "loss function"),
    "optimizer": _choice("optimizer", ("sgd", "momentum", "rmsprop", "adam"), "optimizer"),
    "seed": _int("seed", 0, 2**32 - 1, "seed of the initial weights and batch order"),
    **{k: _int(k, lo, hi, f"training.{k}") for k, (lo, hi) in _TRAIN_INTS.items()},
    **{k: _float(k, lo, hi, f"training.{k}") for k, (lo, hi) in _TRAIN_FLOATS.items()},
    "data.kind": _choice("data.kind", ("spiral", "circles", "xor", "gaussians", "moons",
                                       "highdim"), "which toy data set"),
    **{f"data.{k}": _int(f"data.{k}", lo, hi, f"data.{k}") for k, (lo, hi) in _DATA_INTS.items()},
    **{f"data.{k}": _float(f"data.{k}", lo, hi, f"data.{k}")
       for k, (lo, hi) in _DATA_FLOATS.items()},
}
_ALIASES = {f"training.{k}": k for k in (*_TRAIN_INTS, *_TRAIN_FLOATS, "optimizer")}
_ALIASES.update({"network.depth": "depth", "network.init": "init", "network.loss": "loss",
                 "network.gain": "gain"})
_TRUE = ("on", "true", "yes", "1")
_FALSE = ("off", "false", "no", "0")


def axis_names() -> list[str]:
    return list(AXES)


def _axis(name: Any) -> AxisKind:
    if not isinstance(name, str) or not name.strip():
        raise SweepError(f"an axis needs a name, got {name!r}")
    key = _ALIASES.get(name.strip(), name.strip())
    if key not in AXES:
        raise SweepError(f"is not a field a sweep can vary; choose from {', '.join(AXES)}",
                         axis=name)
    return AXES[key]


def parse_value(axis: AxisKind, value: Any) -> Any:
    """One axis value (from a file: typed; from a command line: text) in canonical form."""
    name = axis.name
    text = value.strip() if isinstance(value, str) else None
    if axis.kind == "bool":
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise SweepError(f"must be on or off, got {value!r}", axis=name)
    if axis.kind == "choice":
        if text is None or text not in axis.choices:
            raise SweepError(f"must be one of {', '.join(axis.choices)}; got {value!r}", axis=name)
        return text
    if axis.kind == "int":
        if isinstance(value, bool):
            raise SweepError(f"must be a whole number, got {value!r}", axis=name)
        try:
            number = int(text) if text is not None else value
        except ValueError:
            number = None
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if not isinstance(number, int):
            raise SweepError(f"must be a whole number, got {value!r}", axis=name)
        if not axis.lo <= number <= axis.hi:
            raise SweepError(f"must be between {axis.lo:g} and {axis.hi:g}, got {number}",
                             axis=name)
        return number
    # float
    if isinstance(value, bool):
        raise SweepError(f"must be a number, got {value!r}", axis=name)
    try:
        number = float(text) if text is not None else float(value)
    except (TypeError, ValueError, OverflowError):
        raise SweepError(f"must be a number, got {value!r}", axis=name) from None
    if not math.isfinite(number) or not axis.lo <= number <= axis.hi:
        raise SweepError(f"must be a finite number between {axis.lo:g} and {axis.hi:g}, "
                         f"got {value!r}", axis=name)
    return number


def parse_axis(name: Any, values: Any) -> tuple[str, tuple]:
    """(canonical name, canonical values) of one axis; refuses empty lists and repeats."""
    axis = _axis(name)
    if isinstance(values, str):
        values = [v for v in values.split(",")]
    if not isinstance(values, (list, tuple)):
        raise SweepError(f"must be a list of values, got {values!r}", axis=axis.name)
    if not values or all(isinstance(v, str) and not v.strip() for v in values):
        raise SweepError("has no values (give at least one, e.g. depth=2,4,8)", axis=axis.name)
    parsed = tuple(parse_value(axis, v) for v in values)
    if len(set(parsed)) != len(parsed):
        raise SweepError(f"lists a value twice: {list(parsed)}", axis=axis.name)
    return axis.name, parsed


def parse_vary(text: str) -> tuple[str, tuple]:
    """``name=v1,v2,...`` (the CLI's --vary) as a parsed axis."""
    if "=" not in text:
        raise SweepError(f"write NAME=VALUE,VALUE,... (e.g. depth=2,4,8), got {text!r}")
    name, _, values = text.partition("=")
    return parse_axis(name, values)


# -- applying a point to the base experiment --------------------------------------------------

def _residual_every(net) -> int | None:
    """1 or 2 when ``net``'s skips are ``residual_skips(depth, every)``, else None."""
    for every in (1, 2):
        if net.skips and tuple(net.skips) == _residual_skips(net.depth, every):
            return every
    return None


def _apply(base: Experiment, values: dict[str, Any], seed: int) -> Experiment:
    """The base experiment with ``values`` (canonical axis name -> value) and ``seed`` set.

    Order: data, training, the layer stack (depth, then per-layer fields), then skips.
    Without a skips axis, a base whose skips are a residual pattern (every layer or
    every two layers, as ``residual_skips`` makes them) keeps that pattern at the new
    depth; other skips are kept where they still fit.
    """
    data_changes = {k[5:]: v for k, v in values.items() if k.startswith("data.")}
    data = replace(base.data, **data_changes) if data_changes else base.data
    train_changes = {k: v for k, v in values.items()
                     if k in _TRAIN_INTS or k in _TRAIN_FLOATS or k == "optimizer"}
    training = replace(base.training, **train_changes) if train_changes else base.training

    net = base.network
    hidden = list(net.hidden)
    template = hidden[0] if hidden else LayerSpec(width=16)
    if "depth" in values:
        hidden = [hidden[i] if i < len(hidden) else template for i in range(values["depth"])]
    layer_changes = {k: values[k] for k in ("width", "activation", "batchnorm") if k in values}
    if layer_changes:
        hidden = [replace(h, **layer_changes) for h in hidden]
    depth = len(hidden)
    if "skips" in values:
        skips = _residual_skips(depth) if values["skips"] == "residual" else ()
    elif _residual_every(net) is not None:
        skips = _residual_skips(depth, _residual_every(net))
    else:
        skips = tuple(s for s in net.skips if s[1] <= depth)
    net_changes: dict[str, Any] = {"hidden": tuple(hidden), "skips": skips}
    for k in ("init", "loss", "gain"):
        if k in values:
            net_changes[k] = values[k]
    if "sigma_w2" in values:
        net_changes["sigma_w"] = math.sqrt(values["sigma_w2"])
    if "sigma_b2" in values:
        net_changes["sigma_b"] = math.sqrt(values["sigma_b2"])
    network = replace(net, **net_changes)
    return replace(base, network=network, data=data, training=training, seed=seed)


# -- sweeps and points ------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One combination of axis values and a seed."""

    values: tuple[tuple[str, Any], ...]  # (axis, value) in the sweep's axis order
    seed: int

    @property
    def key(self) -> str:
        return point_key(dict(self.values), self.seed)

    def value(self, axis: str) -> Any:
        return dict(self.values)[axis]


def point_key(values: dict[str, Any], seed: int) -> str:
    """Canonical JSON of the axis values and the seed: the point's identity in a results file."""
    return json.dumps({**values, "seed": seed}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Sweep:
    """A base experiment, axes, seeds and a step budget. Validated on construction.

    ``seeds``: each combination of axis values runs with seeds ``experiment.seed + 0 ..
    seeds - 1`` (unless ``seed`` is itself an axis). ``target_loss``: the training loss
    whose first crossing is reported as ``steps_to_target``. ``check_every``: steps
    between evaluations of the whole training and held-out sets (0: the budget / 40);
    best losses and ``steps_to_target`` are measured at those checkpoints.
    """

    experiment: Experiment
    axes: tuple[tuple[str, tuple], ...]
    steps: int
    seeds: int = 1
    name: str = "Sweep"
    description: str = ""
    target_loss: float = DEFAULT_TARGET_LOSS
    check_every: int = 0

    def __post_init__(self):
        if not isinstance(self.experiment, Experiment):
            raise SweepError("experiment: must be an Experiment")
        axes = []
        seen = set()
        for item in self.axes:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise SweepError(f"an axis is a (name, values) pair, got {item!r}")
            name, values = parse_axis(*item)
            if name in seen:
                raise SweepError("is given twice", axis=name)
            seen.add(name)
            axes.append((name, values))
        object.__setattr__(self, "axes", tuple(axes))
        for fname, lo, hi in (("steps", 1, MAX_STEPS), ("seeds", 1, MAX_SEEDS),
                              ("check_every", 0, MAX_STEPS)):
            v = getattr(self, fname)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise SweepError(f"{fname}: must be a whole number between {lo} and {hi}, "
                                 f"got {v!r}")
        if "seed" in seen and self.seeds != 1:
            raise SweepError("seed is an axis, so seeds must be 1", axis="seed")
        t = self.target_loss
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise SweepError(f"target_loss: must be a finite number, got {t!r}")
        object.__setattr__(self, "target_loss", float(t))
        n = self.n_points
        if n > MAX_POINTS:
            raise SweepError(f"has {n} points; at most {MAX_POINTS} are allowed")

    # -- derived ---------------------------------------------------------------------------
    @property
    def axis_names(self) -> list[str]:
        return [a for a, _ in self.axes]

    @property
    def n_points(self) -> int:
        return math.prod(len(v) for _, v in self.axes) * self.seeds

    @property
    def interval(self) -> int:
        """Steps between checkpoints."""
        return self.check_every or max(1, self.steps // CHECKS_PER_RUN)

    def points(self) -> list[Point]:
        names = self.axis_names
        seeds = [self.experiment.seed + i for i in range(self.seeds)]
        out = []
        for combo in itertools.product(*(v for _, v in self.axes)):
            values = tuple(zip(names, combo, strict=True))
            if "seed" in names:
                out.append(Point(values, int(dict(values)["seed"])))
            else:
                out.extend(Point(values, s) for s in seeds)
        return out

    def experiment_for(self, point: Point) -> Experiment:
        """The experiment ``point`` trains. Raises SweepError naming the axes involved."""
        values = dict(point.values)
        try:
            exp = _apply(self.experiment, values, point.seed)
        except (SpecError, ExperimentError) as e:
            raise SweepError(_point_text(point) + f": {e}", axis=_blame(e, values)) from None
        init = exp.network.init
        for name in ("sigma_w2", "sigma_b2"):
            if name in values and init != "mean_field":
                raise SweepError(f"sets the mean-field variance, which only the mean_field "
                                 f"init uses; this point's init is {init} (add init=mean_field "
                                 "to the experiment or as an axis)", axis=name)
        name = f"{self.name} [{_point_text(point)}]"
        return replace(exp, name=name[:200])

    def validate(self) -> None:
        """Build every point's experiment and data set; raise SweepError on the first bad one.

        Runs before anything trains, so a bad value never wastes a partial sweep."""
        datasets: dict[str, Any] = {}
        for point in self.points():
            exp = self.experiment_for(point)
            dkey = json.dumps(exp.data.to_dict(), sort_keys=True)
            try:
                if dkey not in datasets:
                    datasets[dkey] = exp.build_dataset()
                else:
                    exp.validate_against(datasets[dkey])
            except ExperimentError as e:
                values = dict(point.values)
                raise SweepError(_point_text(point) + f": {e}", axis=_blame(e, values)) from None

    def fingerprint(self) -> str:
        """Hash of everything besides the axes that decides a point's numbers."""
        base = self.experiment.to_dict()
        for k in ("name", "description"):
            base.pop(k, None)
        ident = {"experiment": base, "steps": self.steps, "target_loss": self.target_loss,
                 "interval": self.interval, "version": VERSION}
        text = json.dumps(ident, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def estimated_cost(self, point: Point) -> float:
        """Multiply-adds per training step times steps: orders points, longest first."""
        exp = _apply(self.experiment, dict(point.values), point.seed)
        w = exp.network.widths
        return float(self.steps) * exp.training.batch_size * sum(
            a * b for a, b in itertools.pairwise(w))

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": SWEEP_FORMAT, "version": VERSION, "name": self.name,
                "description": self.description, "experiment": self.experiment.to_dict(),
                "axes": [{"name": a, "values": list(v)} for a, v in self.axes],
                "steps": self.steps, "seeds": self.seeds, "target_loss": self.target_loss,
                "check_every": self.check_every}

    @classmethod
    def from_dict(cls, d: Any, base_dir: str | os.PathLike | None = None) -> Sweep:
        """A sweep from parsed JSON. ``experiment`` is an experiment object, or
        ``{"preset": KEY}``, or ``{"file": PATH}`` (relative to ``base_dir``)."""
        if not isinstance(d, dict):
            raise SweepError("a sweep file holds a JSON object")
        if d.get("format") != SWEEP_FORMAT:
            raise SweepError(f"format: must be {SWEEP_FORMAT!r}, got {d.get('format')!r}")
        if d.get("version") != VERSION:
            raise SweepError(f"version: this program reads version {VERSION}, "
                             f"got {d.get('version')!r}")
        allowed = {"format", "version", "name", "description", "experiment", "axes", "steps",
                   "seeds", "target_loss", "check_every"}
        unknown = set(d) - allowed
        if unknown:
            raise SweepError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        raw = d.get("experiment")
        try:
            if isinstance(raw, dict) and set(raw) == {"preset"}:
                exp = load_preset(raw["preset"])
            elif isinstance(raw, dict) and set(raw) == {"file"}:
                path = Path(raw["file"])
                if base_dir is not None and not path.is_absolute():
                    path = Path(base_dir) / path
                exp = load_experiment(path)
            else:
                exp = Experiment.from_dict(raw, base_dir=base_dir)
        except (ExperimentError, SpecError, DataError) as e:
            raise SweepError(f"experiment: {e}") from None
        axes_raw = d.get("axes")
        if not isinstance(axes_raw, list) or not axes_raw:
            raise SweepError("axes: must be a non-empty list of {name, values} objects")
        axes = []
        for a in axes_raw:
            if not isinstance(a, dict) or set(a) != {"name", "values"}:
                raise SweepError(f"axes: each axis is an object with name and values, got {a!r}")
            axes.append((a["name"], a["values"]))
        return cls(experiment=exp, axes=tuple(axes), steps=d.get("steps"),
                   seeds=d.get("seeds", 1), name=d.get("name", "Sweep"),
                   description=d.get("description", ""),
                   target_loss=d.get("target_loss", DEFAULT_TARGET_LOSS),
                   check_every=d.get("check_every", 0))


def _point_text(point: Point) -> str:
    return ", ".join(f"{a}={v}" for a, v in point.values) + f", seed={point.seed}"


def _blame(error: Exception, values: dict[str, Any]) -> str | None:
    """The axis a spec error most likely comes from (its field name mentions it)."""
    field_name = getattr(error, "field", None) or ""
    for axis in values:
        leaf = axis.split(".")[-1].replace("sigma_w2", "sigma_w").replace("sigma_b2", "sigma_b")
        if leaf and leaf in field_name:
            return axis
    return ", ".join(values) or None


def load_sweep(path: str | os.PathLike) -> Sweep:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SweepError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise SweepError(f"{path}: is not valid JSON ({e.msg} at line {e.lineno})") from None
    try:
        return Sweep.from_dict(d, base_dir=path.resolve().parent)
    except SweepError as e:
        raise SweepError(f"{path}: {e}") from None


def list_sweep_presets() -> list[tuple[str, str, str]]:
    """(key, name, description) of every sweep preset in assets/sweeps."""
    return preset_summaries(SWEEP_DIR, load_sweep, SweepError)


def load_sweep_preset(key: str) -> Sweep:
    file, available = find_preset(SWEEP_DIR, key)
    if file is None:
        raise SweepError(f"there is no sweep preset {key!r}; available: {available}")
    return load_sweep(file)


# -- running one point ------------------------------------------------------------------------

def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _loss_accuracy(outputs: np.ndarray, y: np.ndarray, loss: str) -> tuple[float, float]:
    """Mean loss and accuracy of raw network outputs on (X, y), as training computes them."""
    o = outputs.astype(np.float64)
    with np.errstate(all="ignore"):
        if y.ndim == 1:
            labels = y.astype(np.int64)
            if loss == "cross_entropy":
                m = o.max(axis=1, keepdims=True)
                lse = m[:, 0] + np.log(np.exp(o - m).sum(axis=1))
                value = float(np.mean(lse - o[np.arange(len(o)), labels]))
            else:
                targets = np.zeros_like(o)
                targets[np.arange(len(o)), labels] = 1.0
                value = float(np.mean((o - targets) ** 2))
            acc = float(np.mean(np.argmax(o, axis=1) == labels))
            return value, acc
        return float(np.mean((o - y) ** 2)), float("nan")


def _delta_ratio(delta_norm: np.ndarray) -> float | None:
    """||delta_1|| / ||delta_out||: how much of the output's error signal reaches layer 1."""
    with np.errstate(all="ignore"):
        return _finite(delta_norm[0] / delta_norm[-1])


def run_point(experiment: dict, steps: int, target_loss: float, interval: int) -> dict:
    """Train one experiment (given as its dict) for ``steps`` and measure it.

    A plain function of plain data, so a process pool or a Dask worker can run it.
    The whole training and held-out sets are evaluated at step 0, every ``interval``
    steps and at the end; ``best_*`` and ``steps_to_target`` come from those
    checkpoints. Returns the record without its key (the caller adds it).
    """
    from .simulation import Simulation  # noqa: PLC0415  (workers import what they use)

    started = time.perf_counter()
    exp = Experiment.from_dict(experiment)
    dataset = exp.build_dataset()
    sim = Simulation(exp, dataset=dataset, history_capacity=16, eval_every=interval)
    X_train = np.asarray(dataset.X_train)
    y_train = np.asarray(dataset.y_train)
    loss_name = exp.network.loss
    ratio_start = _delta_ratio(sim.snapshot().delta_norm)
    checkpoints = []  # (step, train loss, train acc, val loss, val acc)

    def check():
        outputs = sim.network.predict(X_train)
        tl, ta = _loss_accuracy(outputs, y_train, loss_name)
        vl, va = sim.evaluate()
        checkpoints.append((sim.step_count, tl, ta, vl, va))

    check()
    while sim.step_count < steps and sim.divergence is None:
        sim.run(min(interval, steps - sim.step_count), snapshot=False)
        if sim.divergence is None:
            check()
    end = sim.snapshot()
    steps_to_target = next((c[0] for c in checkpoints if c[1] <= target_loss), None)

    def best(col, lower_is_better):
        vals = [c[col] for c in checkpoints if math.isfinite(c[col])]
        if not vals:
            return None
        return float(min(vals) if lower_is_better else max(vals))

    last = checkpoints[-1]
    diverged = sim.divergence is not None
    return {
        "steps_done": int(sim.step_count),
        "train_loss": None if diverged else _finite(last[1]),
        "train_accuracy": None if diverged else _finite(last[2]),
        "val_loss": None if diverged else _finite(last[3]),
        "val_accuracy": None if diverged else _finite(last[4]),
        "best_train_loss": best(1, True),
        "best_train_accuracy": best(2, False),
        "best_val_loss": best(3, True),
        "best_val_accuracy": best(4, False),
        "delta_ratio_start": ratio_start,
        "delta_ratio_end": _delta_ratio(end.delta_norm),
        "steps_to_target": steps_to_target,
        "diverged_at": int(sim.divergence.step) if diverged else None,
        "elapsed_s": round(time.perf_counter() - started, 4),
    }


# timing, not a result: excluded when records are compared across executors
TIMING_FIELDS = ("elapsed_s",)


def _task(payload: tuple) -> tuple[str, dict]:
    key, values, seed, exp_dict, steps, target, interval = payload
    try:
        record = run_point(exp_dict, steps, target, interval)
    except MemoryError:
        raise SweepError(f"point {key}: the network or its data is too large for this "
                         "computer's memory") from None
    except Exception as e:  # one message naming the point, whichever process ran it
        raise SweepError(f"point {key} failed: {type(e).__name__}: {e}") from None
    return key, {"key": key, "axes": values, "seed": seed, **record}


# -- the results file -------------------------------------------------------------------------

class ResultsFile:
    """A JSON-lines results file: header lines (``"type": "sweep"``) and point records.

    Opening reads what is there, drops a partial last line (a process killed
    mid-write), and refuses a file whose header fingerprint belongs to another
    sweep. ``append`` writes one record and flushes it to disk.
    """

    def __init__(self, path: str | os.PathLike, sweep: Sweep):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        fingerprint = sweep.fingerprint()
        header = {"type": "sweep", "format": RESULTS_FORMAT, "version": VERSION,
                  "fingerprint": fingerprint, "sweep": sweep.to_dict()}
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        headers, records = ([], []) if fresh else read_results(self.path)
        for h in headers:
            if h.get("fingerprint") != fingerprint:
                raise SweepError(
                    f"{self.path} holds the results of a different sweep (another base "
                    "experiment, step budget, target loss or check interval); write to "
                    "another file, or run with that sweep's settings to resume it")
        for r in records:
            self.records.setdefault(r["key"], r)
        self._truncate_partial_line()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        if not headers or headers[-1].get("sweep") != header["sweep"]:
            self._write(header)

    def _truncate_partial_line(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def _write(self, obj: dict) -> None:
        self._fh.write(json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, record: dict) -> None:
        self.records[record["key"]] = record
        self._write({"type": "point", **record})

    def close(self) -> None:
        self._fh.close()


def read_results(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """(headers, point records) of a results file; a partial or broken line is skipped."""
    headers, records = [], []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SweepError(f"{path}: cannot be read ({e.strerror or e})") from None
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        if obj.get("type") == "sweep":
            if obj.get("format") != RESULTS_FORMAT:
                raise SweepError(f"{path}: is not a sweep results file")
            headers.append(obj)
        elif obj.get("type") == "point" and isinstance(obj.get("key"), str):
            obj.pop("type")
            records.append(obj)
    if not headers and not records:
        raise SweepError(f"{path}: holds no sweep results")
    return headers, records


# -- executors --------------------------------------------------------------------------------

@dataclass
class Progress:
    done: int  # points finished, including those found in the file at the start
    total: int
    resumed: int  # points that were already in the file
    elapsed_s: float
    points_per_min: float  # of this session's points
    eta_s: float | None


@dataclass
class SweepOutcome:
    records: list[dict]
    ran: int
    resumed: int
    cancelled: bool
    elapsed_s: float
    executor: str
    workers: int = field(default=1)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def _serial(tasks, cancel) -> Iterator[tuple[str, dict]]:
    for t in tasks:
        if cancel.is_set():
            return
        yield _task(t)


def _ignore_interrupt() -> None:
    """Pool workers leave Ctrl+C to the parent, which cancels the sweep."""
    import signal  # noqa: PLC0415

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool_start_method(requested: str = "auto") -> str:
    """How pool workers start. "auto": fork on Linux when this process runs no other
    thread (a forked worker inherits the imported modules and the kernels this
    process has loaded, so it starts in milliseconds), else spawn (a fresh
    interpreter that imports the simulator and loads the kernels from numba's
    on-disk cache: safe beside a GUI's or Dask's threads, which fork is not)."""
    import multiprocessing as mp  # noqa: PLC0415

    if requested != "auto":
        if requested not in mp.get_all_start_methods():
            raise SweepError(f"start_method: {requested!r} is not available here; "
                             f"choose from {', '.join(mp.get_all_start_methods())}")
        return requested
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _local_pool(tasks, workers, cancel, method="auto") -> Iterator[tuple[str, dict]]:
    import multiprocessing as mp  # noqa: PLC0415
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor  # noqa: PLC0415
    from concurrent.futures import wait as wait_futures  # noqa: PLC0415
    from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

    for var in _BLAS_VARS:  # small matrices: one BLAS thread per worker
        os.environ.setdefault(var, "1")
    method = pool_start_method(method)
    if method == "fork":
        # load the kernels here once, so every forked worker has them
        key, values, seed, exp_dict, _, target, _ = tasks[0]
        run_point(exp_dict, 1, target, 1)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method),
                               initializer=_ignore_interrupt)
    try:
        pending = {pool.submit(_task, t) for t in tasks}
        while pending and not cancel.is_set():
            finished, pending = wait_futures(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in finished:
                try:
                    result = f.result()
                except BrokenProcessPool:
                    raise SweepError("a worker process died (killed, or out of memory); "
                                     "the finished points are in the file: run the same "
                                     "command again to resume") from None
                yield result
    finally:
        pool.shutdown(wait=not cancel.is_set(), cancel_futures=True)


def _dask_client(scheduler: str):
    """A ``distributed.Client`` connected to ``scheduler`` (SweepError if it cannot be)."""
    try:
        from distributed import Client  # noqa: PLC0415
    except ImportError:
        raise SweepError("running on a Dask cluster needs the distributed package "
                         "(pip install 'dask[distributed]')") from None
    try:
        return Client(scheduler, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        raise SweepError(f"cannot reach the Dask scheduler at {scheduler} ({e})") from None


def _dask(tasks, client, cancel) -> Iterator[tuple[str, dict]]:
    from distributed import as_completed  # noqa: PLC0415

    futures = []
    try:
        # pure=False: the key is ours (the point key is unique), results are never shared
        futures = [client.submit(_task, t, pure=False) for t in tasks]
        ac = as_completed(futures, loop=client.loop)
        while not ac.is_empty() and not cancel.is_set():
            if ac.has_ready():
                for f in ac.next_batch(block=False):
                    yield f.result()
            else:
                time.sleep(0.05)
    finally:
        if futures:
            client.cancel(futures)


def run_sweep(sweep: Sweep, out: str | os.PathLike, executor: str = "local",
              workers: int | None = None, scheduler: str | None = None,
              on_record: Callable[[dict, Progress], None] | None = None,
              cancel: threading.Event | None = None,
              start_method: str = "auto") -> SweepOutcome:
    """Run every point of ``sweep`` not yet in ``out``; append each record as it finishes.

    ``executor``: "local" (process pool of ``workers``, default one per core),
    "serial" (this process) or "dask" (``scheduler`` is the cluster's address;
    giving a scheduler implies "dask"). ``on_record`` is called in this thread
    after each record is on disk. ``start_method``: how pool workers start
    (see ``pool_start_method``). Setting ``cancel`` stops the sweep at the next
    finished point: records on disk stay, points still running are dropped.
    """
    if scheduler:
        executor = "dask"
    if executor not in ("local", "serial", "dask"):
        raise SweepError(f"executor: must be local, serial or dask, got {executor!r}")
    if executor == "dask" and not scheduler:
        raise SweepError("executor dask needs a scheduler address (tcp://host:port)")
    workers = default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 1024:
        raise SweepError(f"workers: must be a whole number between 1 and 1024, got {workers!r}")
    sweep.validate()
    cancel = cancel or threading.Event()
    # connect before the file is touched: an unreachable cluster leaves nothing behind
    client = _dask_client(scheduler) if executor == "dask" else None
    try:
        results = ResultsFile(out, sweep)
    except BaseException:
        if client is not None:
            client.close()
        raise
    started = time.perf_counter()
    try:
        points = sweep.points()
        keys = {p.key for p in points}
        resumed = sum(1 for k in results.records if k in keys)
        todo = [p for p in points if p.key not in results.records]
        todo.sort(key=sweep.estimated_cost, reverse=True)
        tasks = [(p.key, dict(p.values), p.seed, sweep.experiment_for(p).to_dict(),
                  sweep.steps, sweep.target_loss, sweep.interval) for p in todo]
        total = len(points)
        ran = 0
        if executor == "serial" or not tasks:
            stream = _serial(tasks, cancel)
        elif executor == "local":
            stream = _local_pool(tasks, min(workers, len(tasks)), cancel, start_method)
        else:
            stream = _dask(tasks, client, cancel)
        try:
            for key, record in stream:
                if key in results.records:  # cannot happen with one writer; never write twice
                    continue
                results.append(record)
                ran += 1
                elapsed = time.perf_counter() - started
                rate = ran / elapsed * 60.0 if elapsed > 0 else 0.0
                left = total - resumed - ran
                eta = left / rate * 60.0 if rate > 0 else None
                if on_record is not None:
                    on_record(record, Progress(resumed + ran, total, resumed, elapsed, rate, eta))
                if cancel.is_set():
                    break
        except BaseException:  # Ctrl+C or a failed point: do not wait for running points
            cancel.set()
            raise
        finally:
            stream.close()
        records = [results.records[p.key] for p in points if p.key in results.records]
        return SweepOutcome(records, ran, resumed, cancel.is_set(),
                            time.perf_counter() - started, executor,
                            1 if executor == "serial" else workers)
    finally:
        results.close()
        if client is not None:
            client.close()


# -- reading results for plots ----------------------------------------------------------------

METRICS = {
    "train_loss": "final training loss",
    "best_train_loss": "best training loss",
    "val_loss": "final held-out loss",
    "train_accuracy": "final training accuracy",
    "val_accuracy": "final held-out accuracy",
    "delta_ratio_start": "||delta_1|| / ||delta_out|| at the start",
    "delta_ratio_end": "||delta_1|| / ||delta_out|| at the end",
    "steps_to_target": "steps to the target loss",
}


def table(records: list[dict], axes: list[str], metric: str) -> dict[tuple, float]:
    """Mean of ``metric`` over seeds per combination of ``axes`` values.

    A missing metric (a diverged run's loss) counts as NaN, so a cell whose
    seeds all diverged is NaN, and one with some diverged seeds is NaN too:
    the plot should not hide a divergence.
    """
    groups: dict[tuple, list[float]] = {}
    for r in records:
        key = tuple(r["axes"].get(a) for a in axes)
        v = r.get(metric)
        groups.setdefault(key, []).append(float("nan") if v is None else float(v))
    return {k: float(np.mean(v)) for k, v in groups.items()}


def depth_scale_boundary(sweep_dict: dict, sigma_w2_values) -> list[float] | None:
    """6 xi (the mean-field depth scale, Schoenholz et al. 2017) for each sigma_w^2, or
    None when the theory does not apply: it needs a uniform stack of one activation
    with the mean_field init, and no skip links or batch norm."""
    from .theory import chi1, depth_scale  # noqa: PLC0415

    try:
        exp = Experiment.from_dict(sweep_dict["experiment"])
    except (ExperimentError, KeyError, TypeError):
        return None
    axes = {a["name"]: a["values"] for a in sweep_dict.get("axes", [])}
    net = exp.network
    acts = set(axes.get("activation", [])) or {h.activation for h in net.hidden}
    inits = set(axes.get("init", [])) or {net.init}
    skips = set(axes.get("skips", [])) or ({"residual"} if net.skips else {"none"})
    bn = set(axes.get("batchnorm", [])) or {any(h.batchnorm for h in net.hidden)}
    if len(acts) != 1 or inits != {"mean_field"} or skips != {"none"} or bn != {False}:
        return None
    act = acts.pop()
    sb2 = [float(v) for v in axes.get("sigma_b2", [net.sigma_b ** 2])]
    if len(sb2) != 1:
        return None
    return [6.0 * depth_scale(chi1(act, float(s), sb2[0])) for s in sigma_w2_values]


def plot_layout(axes: list[tuple[str, list]]) -> tuple[str, str | None, str | None]:
    """How to draw a sweep: ("heatmap", x axis, y axis) when the first two axes are both
    numeric with at least 3 values each; else ("line", x axis, series axis or None).

    A heatmap puts ``depth`` on the vertical axis when it is one of the two, so the
    depth-scale boundary runs across it. Axes beyond the second are averaged over.
    """
    varying = [(a, list(v)) for a, v in axes if len(v) > 1] or list(axes)[:1]
    if not varying:
        return "line", None, None
    if len(varying) >= 2:
        (a, va), (b, vb) = varying[:2]
        numeric = all(AXES[n].kind in ("int", "float") and len(v) >= 3
                      for n, v in ((a, va), (b, vb)))
        if numeric:
            if a == "depth":
                a, b = b, a
            return "heatmap", a, b
        if AXES[a].kind not in ("int", "float") and AXES[b].kind in ("int", "float"):
            a, b = b, a
        return "line", a, b
    return "line", varying[0][0], None
