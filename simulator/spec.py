"""What a network is: layer list, skip links, initialization and loss, as pure data.

A ``NetworkSpec`` is immutable and validated on construction, so every other
part of the program can trust it. Layer numbering follows the maths: layer 0
is the input, hidden layers are 1..L and the output layer is L+1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

ACTIVATIONS = (
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "prelu",
    "elu",
    "selu",
    "gelu",
    "silu",
    "softsign",
    "linear",
)
# Activations whose derivative is exactly 0 on one side: units can die.
RELU_LIKE = ("relu",)
# Activations that flatten out on both sides: units can saturate.
SATURATING = ("sigmoid", "tanh", "softsign")

INITS = (
    "uniform_fanin",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "orthogonal",
    "mean_field",
)
LOSSES = ("cross_entropy", "mse")

MAX_WIDTH = 4096
MAX_HIDDEN = 500


class SpecError(ValueError):
    """A spec or experiment field is invalid. ``field`` names the offending field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise SpecError(name, f"must be a whole number, got {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise SpecError(name, f"must be between {lo} and {hi}, got {value}")
    return value


def _check_float(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(name, f"must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float (e.g. 10**400 from a hostile file)
        value = math.inf if value > 0 else -math.inf
    if not math.isfinite(value) or not lo <= value <= hi:
        raise SpecError(name, f"must be a finite number between {lo:g} and {hi:g}, got {value!r}")
    return value


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise SpecError(name, f"must be one of {', '.join(choices)}; got {value!r}")
    return value


@dataclass(frozen=True)
class LayerSpec:
    """One hidden layer: its width, activation and whether batch norm follows the dense step."""

    width: int
    activation: str = "relu"
    batchnorm: bool = False

    def __post_init__(self):
        object.__setattr__(self, "width", _check_int("width", self.width, 1, MAX_WIDTH))
        _check_choice("activation", self.activation, ACTIVATIONS)
        if not isinstance(self.batchnorm, bool):
            raise SpecError("batchnorm", f"must be true or false, got {self.batchnorm!r}")

    def to_dict(self) -> dict:
        return {"width": self.width, "activation": self.activation, "batchnorm": self.batchnorm}

    @classmethod
    def from_dict(cls, d: Any, where: str = "layer") -> LayerSpec:
        if not isinstance(d, dict):
            raise SpecError(where, f"must be an object with width/activation/batchnorm, got {d!r}")
        unknown = set(d) - {"width", "activation", "batchnorm"}
        if unknown:
            raise SpecError(where, f"unknown field(s) {', '.join(sorted(unknown))}")
        if "width" not in d:
            raise SpecError(f"{where}.width", "is missing")
        try:
            return cls(
                width=d["width"],
                activation=d.get("activation", "relu"),
                batchnorm=d.get("batchnorm", False),
            )
        except SpecError as e:
            raise SpecError(f"{where}.{e.field}", e.message) from None


@dataclass(frozen=True)
class NetworkSpec:
    """A whole network. ``skips`` holds (from, to) layer pairs with 0 <= from < to <= L.

    (k, k+1) is the classic one-layer residual block a_{k+1} = phi(...) + a_k.

    A skip adds layer ``from``'s output to layer ``to``'s output: as is when the
    widths match, through a learned projection ``P{from}_{to}`` when they don't.
    """

    input_dim: int
    output_dim: int
    hidden: tuple[LayerSpec, ...] = field(default_factory=tuple)
    skips: tuple[tuple[int, int], ...] = field(default_factory=tuple)
    init: str = "glorot_uniform"
    loss: str = "cross_entropy"
    gain: float = 1.0
    sigma_w: float = 1.0
    sigma_b: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "input_dim", _check_int("input_dim", self.input_dim, 1, 100_000))
        object.__setattr__(
            self, "output_dim", _check_int("output_dim", self.output_dim, 1, MAX_WIDTH)
        )
        if isinstance(self.hidden, (str, bytes)) or not hasattr(self.hidden, "__iter__"):
            raise SpecError("hidden", "must be a list of layers")
        hidden = tuple(self.hidden)
        for i, layer in enumerate(hidden):
            if not isinstance(layer, LayerSpec):
                raise SpecError(f"hidden[{i}]", f"must be a LayerSpec, got {layer!r}")
        if len(hidden) > MAX_HIDDEN:
            raise SpecError("hidden", f"at most {MAX_HIDDEN} hidden layers, got {len(hidden)}")
        object.__setattr__(self, "hidden", hidden)
        n_hidden = len(hidden)
        skips = []
        if isinstance(self.skips, (str, bytes)) or not hasattr(self.skips, "__iter__"):
            raise SpecError("skips", "must be a list of [from, to] pairs")
        for i, s in enumerate(self.skips):
            if not isinstance(s, (list, tuple)) or len(s) != 2:
                raise SpecError(f"skips[{i}]", f"must be a [from, to] pair, got {s!r}")
            a = _check_int(f"skips[{i}][0]", s[0], 0, max(n_hidden, 0))
            b = _check_int(f"skips[{i}][1]", s[1], 0, max(n_hidden, 0))
            if not a < b:
                raise SpecError(f"skips[{i}]", f"must go forward (from < to), got ({a}, {b})")
            skips.append((a, b))
        if len(set(skips)) != len(skips):
            raise SpecError("skips", "the same skip link is listed twice")
        object.__setattr__(self, "skips", tuple(sorted(skips)))
        _check_choice("init", self.init, INITS)
        _check_choice("loss", self.loss, LOSSES)
        object.__setattr__(self, "gain", _check_float("gain", self.gain, 1e-6, 1e3))
        object.__setattr__(self, "sigma_w", _check_float("sigma_w", self.sigma_w, 0.0, 1e3))
        object.__setattr__(self, "sigma_b", _check_float("sigma_b", self.sigma_b, 0.0, 1e3))
        if self.loss == "cross_entropy" and self.output_dim < 2:
            raise SpecError("output_dim", "cross-entropy needs at least 2 classes")

    # -- derived facts -------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of hidden layers L."""
        return len(self.hidden)

    @property
    def widths(self) -> tuple[int, ...]:
        """Widths of layers 0..L+1 (input, hidden..., output)."""
        return (self.input_dim, *(h.width for h in self.hidden), self.output_dim)

    def skip_needs_projection(self, skip: tuple[int, int]) -> bool:
        w = self.widths
        return w[skip[0]] != w[skip[1]]

    # -- edits returning new specs (the spec itself never changes) ---------------
    def with_layer(self, k: int, **changes) -> NetworkSpec:
        """Copy with hidden layer k (1-based) changed."""
        self._check_hidden_index(k)
        hidden = list(self.hidden)
        hidden[k - 1] = replace(hidden[k - 1], **changes)
        return replace(self, hidden=tuple(hidden))

    def with_skip(self, a: int, b: int) -> NetworkSpec:
        if (a, b) in self.skips:
            raise SpecError("skips", f"the skip ({a}, {b}) already exists")
        return replace(self, skips=(*self.skips, (a, b)))

    def without_skip(self, a: int, b: int) -> NetworkSpec:
        if (a, b) not in self.skips:
            raise SpecError("skips", f"there is no skip ({a}, {b})")
        return replace(self, skips=tuple(s for s in self.skips if s != (a, b)))

    def with_inserted_layer(self, k: int, layer: LayerSpec) -> tuple[NetworkSpec, list]:
        """Insert ``layer`` so that it becomes hidden layer k (1..L+1).

        Returns the new spec and the layer map: ``old_of_new[j]`` is the old index
        of new layer j (None for the new layer). Skips move with their layers.
        """
        if not 1 <= k <= self.depth + 1:
            raise SpecError("layer", f"can insert at 1..{self.depth + 1}, got {k}")
        hidden = list(self.hidden)
        hidden.insert(k - 1, layer)

        def move(i):
            return i + 1 if i >= k else i

        skips = tuple((move(a), move(b)) for a, b in self.skips)
        old_of_new = [j if j < k else (None if j == k else j - 1) for j in range(self.depth + 3)]
        return replace(self, hidden=tuple(hidden), skips=skips), old_of_new

    def with_deleted_layer(self, k: int) -> tuple[NetworkSpec, list]:
        """Delete hidden layer k. Skips that start or end at k, or become too short, go."""
        self._check_hidden_index(k)
        hidden = list(self.hidden)
        del hidden[k - 1]

        def move(i):
            return i - 1 if i > k else i

        skips = tuple(
            (move(a), move(b)) for a, b in self.skips if k not in (a, b)
        )
        old_of_new = [j if j < k else j + 1 for j in range(self.depth + 1)]
        return replace(self, hidden=tuple(hidden), skips=skips), old_of_new

    def _check_hidden_index(self, k: int) -> None:
        if not isinstance(k, int) or not 1 <= k <= self.depth:
            raise SpecError("layer", f"hidden layers are numbered 1..{self.depth}, got {k!r}")

    # -- JSON --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "hidden": [h.to_dict() for h in self.hidden],
            "skips": [list(s) for s in self.skips],
            "init": self.init,
            "loss": self.loss,
            "gain": self.gain,
            "sigma_w": self.sigma_w,
            "sigma_b": self.sigma_b,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Any, where: str = "network") -> NetworkSpec:
        if not isinstance(d, dict):
            raise SpecError(where, f"must be an object, got {type(d).__name__}")
        allowed = {"input_dim", "output_dim", "hidden", "skips", "init", "loss", "gain",
                   "sigma_w", "sigma_b"}
        unknown = set(d) - allowed
        if unknown:
            raise SpecError(where, f"unknown field(s) {', '.join(sorted(unknown))}")
        for req in ("input_dim", "output_dim"):
            if req not in d:
                raise SpecError(f"{where}.{req}", "is missing")
        hidden_raw = d.get("hidden", [])
        if not isinstance(hidden_raw, list):
            raise SpecError(f"{where}.hidden", "must be a list of layers")
        hidden = [LayerSpec.from_dict(h, f"{where}.hidden[{i}]") for i, h in enumerate(hidden_raw)]
        skips_raw = d.get("skips", [])
        if not isinstance(skips_raw, list):
            raise SpecError(f"{where}.skips", "must be a list of [from, to] pairs")
        kwargs = {k: d[k] for k in ("init", "loss", "gain", "sigma_w", "sigma_b") if k in d}
        try:
            return cls(
                input_dim=d["input_dim"],
                output_dim=d["output_dim"],
                hidden=hidden,
                skips=[tuple(s) if isinstance(s, list) else s for s in skips_raw],
                **kwargs,
            )
        except SpecError as e:
            raise SpecError(f"{where}.{e.field}", e.message) from None

    @classmethod
    def from_json(cls, text: str) -> NetworkSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError("network", f"not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d)

    def describe(self) -> str:
        acts = {h.activation for h in self.hidden}
        act = acts.pop() if len(acts) == 1 else "mixed"
        parts = [f"{self.depth} x {self._width_text()} {act}"]
        if any(h.batchnorm for h in self.hidden):
            parts.append("batch norm")
        if self.skips:
            parts.append(f"{len(self.skips)} skip link{'s' if len(self.skips) != 1 else ''}")
        parts.append(self.init)
        return ", ".join(parts)

    def _width_text(self) -> str:
        ws = {h.width for h in self.hidden}
        if not ws:
            return "0"
        return str(ws.pop()) if len(ws) == 1 else f"{min(ws)}-{max(ws)}"


def uniform_spec(
    input_dim: int,
    output_dim: int,
    depth: int,
    width: int,
    activation: str = "relu",
    batchnorm: bool = False,
    **kwargs,
) -> NetworkSpec:
    """A plain stack of ``depth`` identical hidden layers."""
    layer = LayerSpec(width=width, activation=activation, batchnorm=batchnorm)
    return NetworkSpec(input_dim, output_dim, hidden=(layer,) * depth, **kwargs)


def residual_skips(depth: int, every: int = 2) -> tuple[tuple[int, int], ...]:
    """Skips (k, k+every) from layer 1 on, as in a ResNet block of ``every`` layers."""
    return tuple((k, k + every) for k in range(1, depth - every + 1, every))
