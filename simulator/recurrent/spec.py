"""What a recurrent network is: cell, sizes, loss and initialization, as pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..spec import SpecError, _check_float, _check_int

CELLS = ("rnn", "lstm", "lstm_no_forget", "gru")
RECURRENT_INITS = ("uniform", "glorot_uniform", "orthogonal", "identity")
LOSSES = ("cross_entropy", "mse")
GATE_NAMES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "lstm_no_forget": ("i", "g", "o"),
              "gru": ("r", "z", "n")}
MAX_HIDDEN_UNITS = 1024
MAX_DIM = 4096


def _check_choice(name: str, value: Any, choices) -> str:
    if value not in choices:
        raise SpecError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class RecurrentSpec:
    """One recurrent layer (cell) read out at the last time step.

    init: how weight_hh is drawn. "uniform" is PyTorch's default, every weight
    and bias U(-1/sqrt(H), 1/sqrt(H)); "glorot_uniform" draws each gate block of
    both weight matrices U(+-sqrt(6/(fan_in+fan_out))); "orthogonal" makes each
    gate block of weight_hh a random orthogonal matrix; "identity" sets each
    block of weight_hh to the identity (the IRNN of Le et al. 2015) with input
    weights N(0, 0.001^2). The three non-default inits zero the biases.
    recurrent_gain multiplies weight_hh after drawing it (above 1 it explodes).
    forget_bias is the LSTM's total forget-gate bias (bias_ih_f + bias_hh_f), set
    after the init; other cells ignore it.
    """

    cell: str = "lstm"
    input_dim: int = 2
    hidden: int = 32
    output_dim: int = 1
    loss: str = "mse"
    init: str = "uniform"
    forget_bias: float = 1.0
    recurrent_gain: float = 1.0
    # the field names in error messages start with this
    prefix: str = field(default="recurrent", compare=False, repr=False)

    def __post_init__(self):
        p = self.prefix
        set_ = object.__setattr__
        _check_choice(f"{p}.cell", self.cell, CELLS)
        set_(self, "input_dim", _check_int(f"{p}.input_dim", self.input_dim, 1, MAX_DIM))
        set_(self, "hidden", _check_int(f"{p}.hidden", self.hidden, 1, MAX_HIDDEN_UNITS))
        set_(self, "output_dim", _check_int(f"{p}.output_dim", self.output_dim, 1, MAX_DIM))
        _check_choice(f"{p}.loss", self.loss, LOSSES)
        _check_choice(f"{p}.init", self.init, RECURRENT_INITS)
        set_(self, "forget_bias", _check_float(f"{p}.forget_bias", self.forget_bias, -20, 20))
        set_(self, "recurrent_gain",
             _check_float(f"{p}.recurrent_gain", self.recurrent_gain, 0.0, 100.0))
        if self.loss == "cross_entropy" and self.output_dim < 2:
            raise SpecError(f"{p}.output_dim",
                            f"must be at least 2 for cross_entropy (one per class), "
                            f"got {self.output_dim}")

    @property
    def gates(self) -> int:
        return len(GATE_NAMES[self.cell])

    @property
    def gate_names(self) -> tuple[str, ...]:
        return GATE_NAMES[self.cell]

    def to_dict(self) -> dict:
        return {"cell": self.cell, "input_dim": self.input_dim, "hidden": self.hidden,
                "output_dim": self.output_dim, "loss": self.loss, "init": self.init,
                "forget_bias": self.forget_bias, "recurrent_gain": self.recurrent_gain}

    @classmethod
    def from_dict(cls, d: Any, prefix: str = "recurrent") -> RecurrentSpec:
        if not isinstance(d, dict):
            raise SpecError(prefix, f"must be an object, got {type(d).__name__}")
        allowed = {"cell", "input_dim", "hidden", "output_dim", "loss", "init", "forget_bias",
                   "recurrent_gain"}
        unknown = set(d) - allowed
        if unknown:
            raise SpecError(prefix, f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        return cls(**d, prefix=prefix)
