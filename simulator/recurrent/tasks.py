"""Long-lag sequence tasks, generated from a seed, with the lag T a parameter.

* ``adding`` (Hochreiter & Schmidhuber 1997): each step carries a value drawn
  U(0, 1) and a marker; two steps are marked, the first within the first tenth
  of the sequence and the second in its second half, and the target is the sum
  of the two marked values. Predicting the mean (1.0) scores MSE = Var = 1/6.
* ``first_symbol``: the first step shows one of K symbols (one-hot), the other
  T - 1 steps show random distractor symbols; the label is the first symbol.
  Guessing scores 1/K.
* ``marked_recall``: every step shows a random symbol plus a marker channel;
  one step among the first tenth is marked and the label is the symbol shown
  there. The net must choose what to store (an input gate's job), not only keep it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..spec import SpecError, _check_float, _check_int

TASKS = ("adding", "first_symbol", "marked_recall")
MAX_LAG = 2000
MAX_VALUES = 20_000_000  # samples * lag * input_dim, so a file cannot ask for gigabytes


@dataclass(frozen=True)
class TaskSpec:
    kind: str = "adding"
    lag: int = 50
    n_samples: int = 2000
    symbols: int = 4
    test_fraction: float = 0.2
    seed: int = 0
    prefix: str = field(default="task", compare=False, repr=False)

    def __post_init__(self):
        p = self.prefix
        set_ = object.__setattr__
        if self.kind not in TASKS:
            raise SpecError(f"{p}.kind", f"must be one of {', '.join(TASKS)}, got {self.kind!r}")
        set_(self, "lag", _check_int(f"{p}.lag", self.lag, 2, MAX_LAG))
        set_(self, "n_samples", _check_int(f"{p}.n_samples", self.n_samples, 4, 1_000_000))
        set_(self, "symbols", _check_int(f"{p}.symbols", self.symbols, 2, 64))
        set_(self, "test_fraction",
             _check_float(f"{p}.test_fraction", self.test_fraction, 0.0, 0.9))
        set_(self, "seed", _check_int(f"{p}.seed", self.seed, 0, 2**32 - 1))
        if self.n_samples * self.lag * self.input_dim > MAX_VALUES:
            raise SpecError(f"{p}.n_samples",
                            f"n_samples * lag * input size must stay under {MAX_VALUES:,}, got "
                            f"{self.n_samples * self.lag * self.input_dim:,}")

    @property
    def input_dim(self) -> int:
        return {"adding": 2, "first_symbol": self.symbols,
                "marked_recall": self.symbols + 1}[self.kind]

    @property
    def output_dim(self) -> int:
        return 1 if self.kind == "adding" else self.symbols

    @property
    def loss(self) -> str:
        return "mse" if self.kind == "adding" else "cross_entropy"

    @property
    def task(self) -> str:
        return "regression" if self.kind == "adding" else "classification"

    @property
    def baseline(self) -> float:
        """What knowing nothing scores: MSE 1/6 for adding, accuracy 1/K otherwise."""
        return 1.0 / 6.0 if self.kind == "adding" else 1.0 / self.symbols

    def to_dict(self) -> dict:
        return {"kind": self.kind, "lag": self.lag, "n_samples": self.n_samples,
                "symbols": self.symbols, "test_fraction": self.test_fraction, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: Any, prefix: str = "task") -> TaskSpec:
        if not isinstance(d, dict):
            raise SpecError(prefix, f"must be an object, got {type(d).__name__}")
        unknown = set(d) - {"kind", "lag", "n_samples", "symbols", "test_fraction", "seed"}
        if unknown:
            raise SpecError(prefix, f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        return cls(**d, prefix=prefix)

    def generate(self, n: int | None = None, seed: int | None = None):
        """(X (n, T, input_dim) float64, y): y float (n, 1) for adding, int labels else."""
        n = self.n_samples if n is None else n
        rng = np.random.default_rng(self.seed if seed is None else seed)
        T = self.lag
        early = max(1, T // 10)
        rows = np.arange(n)
        if self.kind == "adding":
            X = np.zeros((n, T, 2))
            X[:, :, 0] = rng.uniform(0.0, 1.0, (n, T))
            first = rng.integers(0, early, n)
            second = rng.integers(T // 2, T, n)
            second = np.where(second == first, T - 1, second)
            X[rows, first, 1] = 1.0
            X[rows, second, 1] = 1.0
            y = (X[rows, first, 0] + X[rows, second, 0]).reshape(n, 1)
            return X, y
        K = self.symbols
        sym = rng.integers(0, K, (n, T))
        if self.kind == "first_symbol":
            X = np.zeros((n, T, K))
            X[rows[:, None], np.arange(T)[None, :], sym] = 1.0
            return X, sym[:, 0].astype(np.int64)
        X = np.zeros((n, T, K + 1))
        X[rows[:, None], np.arange(T)[None, :], sym] = 1.0
        mark = rng.integers(0, early, n)
        X[rows, mark, K] = 1.0
        return X, sym[rows, mark].astype(np.int64)

    def split(self):
        """(X_train, y_train, X_test, y_test) from one draw of n_samples."""
        X, y = self.generate()
        n_test = int(round(self.n_samples * self.test_fraction))
        n_train = self.n_samples - n_test
        return X[:n_train], y[:n_train], X[n_train:], y[n_train:]
