"""What views read: immutable snapshots of one moment of training, and the history.

A ``Snapshot`` is built by ``Simulation.snapshot()`` after any micro-step. Its
per-layer arrays have one entry per weight layer, index ``i`` for layer
``i + 1`` (hidden layers 1..L, then the output layer L+1). Arrays are read-only
copies: a view may keep a snapshot as long as it likes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import NetworkSpec

PHASES = ("ready", "forward", "loss", "backward", "update")

# Columns of the per-step, per-layer history (History.layers[..., column]).
HIST_DELTA = 0  # ||delta_k||
HIST_GRAD_W = 1  # ||dL/dW_k||
HIST_UPDATE_RATIO = 2  # ||dW_k applied|| / ||W_k||
HIST_CHANGE = 3  # ||W_k - W_k(init)|| / ||W_k(init)||
HIST_COLUMNS = ("delta_norm", "grad_norm", "update_ratio", "weight_change")


@dataclass(frozen=True)
class DivergenceReport:
    """Training produced NaN or Inf. Reported as data; training stops."""

    step: int  # the iteration in which it happened (0-based count of completed steps)
    phase: str  # "forward", "loss", "backward" or "update"
    layer: int  # layer index 1..L+1 (0 when it is the loss)
    quantity: str  # what blew up: "activations", "loss", "delta", "weight gradient", "weights"

    @property
    def message(self) -> str:
        where = "the loss" if self.layer == 0 else f"layer {self.layer}"
        return (
            f"Training diverged at step {self.step}: the {self.quantity} of {where} became "
            f"NaN or infinite during the {self.phase} pass. Lower the learning rate, turn on "
            "gradient clipping or batch norm, or use a smaller initial weight scale, then reset."
        )


def _frozen(a) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Snapshot:
    spec: NetworkSpec
    step: int  # completed training iterations
    phase: str  # one of PHASES: what the last micro-step did
    layer: int  # the layer the last micro-step touched (1..L+1), 0 for loss/update/ready
    micro_index: int  # position inside the iteration, 0..2L+3
    batch_size: int

    loss: float  # training loss of the last computed batch (nan before the first)
    accuracy: float  # on that batch (nan for regression)
    val_loss: float  # held-out loss, nan if not evaluated yet
    val_accuracy: float

    # per weight layer, shape (L+1,), index i = layer i+1
    delta_norm: np.ndarray  # ||delta_k|| = ||dL/dz_k|| over the batch (Frobenius)
    grad_norm: np.ndarray  # ||dL/dW_k||
    bias_grad_norm: np.ndarray  # ||dL/db_k||
    weight_norm: np.ndarray  # ||W_k||
    update_ratio: np.ndarray  # ||W_k step|| / ||W_k|| of the last update
    weight_change: np.ndarray  # ||W_k - W_k(init)|| / ||W_k(init)||
    dead_fraction: np.ndarray  # relu units whose input is <= 0 for the whole batch
    saturated_fraction: np.ndarray  # sigmoid/tanh/softsign units with mean phi' < 1e-3
    act_mean: np.ndarray  # mean of a_k over batch and units
    act_std: np.ndarray
    backward_done: np.ndarray  # bool: delta_k of the current iteration is computed

    # per weight layer, tuples of L+1 arrays (copies), index i = layer i+1
    activations: tuple  # a_k, (batch, width_k); the last one is the output o
    deltas: tuple  # delta_k, (batch, width_k)
    weights: tuple  # W_k, (width_{k-1}, width_k)
    weight_grads: tuple  # dL/dW_k, same shape; empty tuple when the net is too large to copy
    unit_delta: tuple  # mean over the batch of |delta_k|, (width_k,)

    divergence: DivergenceReport | None = None

    @property
    def n_layers(self) -> int:
        """Number of weight layers, L+1."""
        return len(self.delta_norm)

    @property
    def layer_names(self) -> list[str]:
        return [str(k) for k in range(1, self.n_layers)] + ["out"]

    def histogram(self, kind: str, k: int, bins: int = 30):
        """Histogram of layer k's (1..L+1) activations, deltas or weights.

        Deltas are binned by log10|delta| since they span many decades.
        Returns (counts, edges).
        """
        src = {"activations": self.activations, "deltas": self.deltas, "weights": self.weights}
        if kind not in src:
            raise ValueError(f"kind must be activations, deltas or weights, got {kind!r}")
        values = np.asarray(src[kind][k - 1], dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if kind == "deltas":
            mags = np.abs(values)
            values = np.log10(mags[mags > 0]) if np.any(mags > 0) else np.zeros(0)
        if values.size == 0:
            return np.zeros(bins), np.linspace(0.0, 1.0, bins + 1)
        lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        return np.histogram(values, bins=bins, range=(lo, hi))


class History:
    """Per-step numbers of the whole run, in a fixed amount of memory.

    ``capacity`` rows hold everything. The newest ``capacity - capacity // 2``
    steps are kept at full resolution in a ring; a step that leaves the ring
    moves to the archive (the other ``capacity // 2`` rows) if it falls on the
    archive's stride, which starts at 1 and doubles (dropping every other
    archived row) whenever the archive is full. So the first step of the run is
    always there, older steps thin out evenly, and ``nbytes`` never changes.

    ``scalars`` columns are step, loss, accuracy, val_loss, val_accuracy; the
    per-layer columns are ``HIST_COLUMNS``. Read with ``steps()``,
    ``scalar(name)`` and ``layer_series(column)``: archive then ring, oldest
    first (the step column says which steps they are).
    """

    SCALARS = ("step", "loss", "accuracy", "val_loss", "val_accuracy")

    def __init__(self, n_layers: int, capacity: int = 5000):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = int(capacity)
        self._archive_cap = self.capacity // 2  # rows [0, _archive_cap)
        self._ring_cap = self.capacity - self._archive_cap  # rows [_archive_cap, capacity)
        self._layers = np.full((self.capacity, n_layers, len(HIST_COLUMNS)), np.nan, np.float32)
        self._scalars = np.full((self.capacity, len(self.SCALARS)), np.nan, np.float64)
        self._next = 0  # ring slot (0-based within the ring) of the next write
        self._count = 0  # rows in the ring
        self._archived = 0  # rows in the archive
        self._stride = 1  # the archive keeps every _stride-th step that left the ring
        self._left = 0  # steps that have left the ring so far
        self.version = 0  # bumps on every change, for views that cache
        # bumps when rows already read may have changed (cleared, layers added or
        # removed); between two bumps rows are only added, or dropped by thinning
        self.generation = 0

    @property
    def n_layers(self) -> int:
        return self._layers.shape[1]

    def __len__(self) -> int:
        return self._archived + self._count

    @property
    def nbytes(self) -> int:
        return self._layers.nbytes + self._scalars.nbytes

    @property
    def stride(self) -> int:
        """Steps per archived row: 1 until the run outgrew the ring twice over."""
        return self._stride

    @property
    def n_recent(self) -> int:
        """How many of the newest entries are at full resolution (the ring)."""
        return self._count

    def record(self, step, loss, accuracy, val_loss, val_accuracy, per_layer: np.ndarray) -> None:
        """per_layer: (n_layers, len(HIST_COLUMNS))."""
        self.record_many(np.asarray([step], np.float64), np.asarray([loss], np.float64),
                         np.asarray([accuracy], np.float64), np.asarray([val_loss], np.float64),
                         np.asarray([val_accuracy], np.float64),
                         np.asarray(per_layer)[None])

    def record_many(self, steps, loss, accuracy, val_loss, val_accuracy,
                    per_layer: np.ndarray) -> None:
        """Several steps at once; per_layer: (n, n_layers, len(HIST_COLUMNS))."""
        n = len(steps)
        if n == 0:
            return
        scalars = np.column_stack([steps, loss, accuracy, val_loss, val_accuracy])
        per_layer = np.asarray(per_layer)
        R, A = self._ring_cap, self._archive_cap
        overflow = self._count + n - R  # steps that leave the ring (oldest first)
        if overflow > 0:
            from_ring = min(overflow, self._count)
            rows = A + (self._first_ring_slot() + np.arange(from_ring)) % R
            self._archive(self._scalars[rows], self._layers[rows])
            if overflow > from_ring:  # new steps that pass straight through the ring
                self._archive(scalars[:overflow - from_ring], per_layer[:overflow - from_ring])
            self._count -= from_ring
        keep = slice(max(0, n - R), n)  # only the newest R of the new steps stay in the ring
        scalars, per_layer = scalars[keep], per_layer[keep]
        m = len(scalars)
        start = (self._first_ring_slot() + self._count) % R
        first = min(m, R - start)  # up to the end of the ring, then wrap
        for src, dst in ((slice(0, first), slice(A + start, A + start + first)),
                         (slice(first, m), slice(A, A + m - first))):
            self._layers[dst] = per_layer[src]
            self._scalars[dst] = scalars[src]
        self._count += m
        self._next = (start + m) % R
        self.version += 1

    def _first_ring_slot(self) -> int:
        return (self._next - self._count) % self._ring_cap

    def _archive(self, scalars: np.ndarray, layers: np.ndarray) -> None:
        """Steps leaving the ring, oldest first: keep those on the stride. ``_left``
        counts the steps that have left so far; the archive holds counts 0, s, 2s, ..."""
        A = self._archive_cap
        i, n = 0, len(scalars)
        while i < n:
            s = self._stride
            due = np.arange(i + (-self._left) % s, n, s)  # the rows on the stride
            if due.size == 0 or A == 0:
                self._left += n - i
                return
            if self._archived == A:  # full: keep every other row, twice the stride
                half = (A + 1) // 2
                self._scalars[:half] = self._scalars[0:A:2]
                self._layers[:half] = self._layers[0:A:2]
                self._scalars[half:A] = np.nan
                self._layers[half:A] = np.nan
                self._archived = half
                self._stride *= 2
                continue
            take = due[: A - self._archived]
            dst = slice(self._archived, self._archived + take.size)
            self._scalars[dst] = scalars[take]
            self._layers[dst] = layers[take]
            self._archived += take.size
            end = int(take[-1]) + 1
            self._left += end - i
            i = end

    def _order(self) -> np.ndarray:
        ring = (self._first_ring_slot() + np.arange(self._count)) % self._ring_cap
        ring += self._archive_cap
        return np.concatenate([np.arange(self._archived), ring])

    def steps(self) -> np.ndarray:
        return self._scalars[self._order(), 0]

    def scalar(self, name: str) -> np.ndarray:
        return self._scalars[self._order(), self.SCALARS.index(name)]

    def layer_series(self, column: int, start: int = 0) -> np.ndarray:
        """(n_entries - start, n_layers) array of one HIST_* column, oldest first, from
        entry ``start`` on (a view that kept the older entries reads only the new ones)."""
        return self._layers[self._order()[start:], :, column]

    def clear(self) -> None:
        self._layers[:] = np.nan
        self._scalars[:] = np.nan
        self._next = self._count = self._archived = self._left = 0
        self._stride = 1
        self.version += 1
        self.generation += 1

    def insert_layer(self, index: int) -> None:
        """A weight layer was inserted at 0-based position ``index``: add a NaN row there."""
        self._layers = np.insert(self._layers, index, np.nan, axis=1)
        self.version += 1
        self.generation += 1

    def delete_layer(self, index: int) -> None:
        self._layers = np.delete(self._layers, index, axis=1)
        self.version += 1
        self.generation += 1
