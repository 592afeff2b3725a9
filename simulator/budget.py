"""How much memory an experiment needs, and the budget it must fit in.

Every limit on its own (width, depth, samples, dimensions, batch size) allows
experiments far larger than any laptop's memory when combined, so an experiment
is checked as a whole, before anything is allocated: ``estimate_memory`` adds up
the arrays the simulation will hold, from the structure alone (no allocation),
and ``over_budget``, checked whenever an Experiment is made, refuses one whose
estimate exceeds the budget, saying how much it needs.

The budget is half of this machine's physical memory, or less when the process
has an address-space limit (``ulimit -v``); the environment variable
``GFL_MEMORY_BUDGET`` (bytes, or with a unit: ``500M``, ``4G``) overrides it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

ENV_BUDGET = "GFL_MEMORY_BUDGET"
DEFAULT_HISTORY_CAPACITY = 5000  # the app's history length (Simulation's default)
EVAL_CHUNK = 1024  # predict() and held-out evaluation run in chunks of this many rows
HIST_VALUES_PER_LAYER = 4  # simulator.snapshot.HIST_COLUMNS, float32 each
HIST_SCALARS = 5  # simulator.snapshot.History.SCALARS, float64 each
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes, by what they hold."""

    parameters: int  # weights, their gradients, the initial copy, one snapshot's copies
    optimizer: int  # two moment buffers (every optimizer keeps them)
    workspace: int  # per-example activations and deltas for a batch and an eval chunk
    data: int  # the data set (float64) and the training copies in the working dtype
    history: int  # the per-layer gradient history
    n_params: int = 0  # trainable numbers (as Network.n_params)
    per_example: int = 0  # workspace numbers per example (as Network._ws_per_example)

    @property
    def total(self) -> int:
        return self.parameters + self.optimizer + self.workspace + self.data + self.history

    def describe(self) -> str:
        parts = [("parameters", self.parameters), ("optimizer state", self.optimizer),
                 ("workspace", self.workspace), ("data", self.data),
                 ("history", self.history)]
        big = [f"{name} {format_bytes(n)}" for name, n in sorted(parts, key=lambda p: -p[1])
               if n >= self.total // 20]
        return ", ".join(big)


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def parse_bytes(text: str) -> int:
    """'4G', '500M', '2.5G', '123456' -> bytes (binary units). Raises ValueError."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"{ENV_BUDGET} must be a size such as 4G or 500M, got {text!r}")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if value < 1:
        raise ValueError(f"{ENV_BUDGET} must be positive, got {text!r}")
    return int(value)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_left() -> int | None:
    """Bytes the process may still map under ``ulimit -v``, or None if unlimited."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = 0
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    used = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return max(0, soft - used)


def memory_budget() -> tuple[int, str]:
    """(bytes an experiment may use, where that number comes from)."""
    override = os.environ.get(ENV_BUDGET)
    if override:
        return parse_bytes(override), f"set by {ENV_BUDGET}"
    physical = _physical_memory()
    budget, source = None, ""
    if physical:
        budget, source = physical // 2, "half of this computer's memory"
    left = _address_space_left()
    if left is not None and (budget is None or left * 3 // 4 < budget):
        budget, source = left * 3 // 4, "what this process's address-space limit leaves"
    if budget is None:
        budget, source = 2 * 2**30, "a default"
    return int(budget), f"{source}; set {ENV_BUDGET} to change it"


def estimate_memory(network, data, training, dtype: str = "float32",
                    history_capacity: int = DEFAULT_HISTORY_CAPACITY) -> MemoryEstimate:
    """What a simulation of this network, data and training will hold, in bytes,
    computed from the structure (as ``Network._build_layout`` lays it out)."""
    s = 8 if dtype == "float64" else 4
    widths = network.widths
    L = network.depth
    n_params = 0
    per_example = 3 * widths[0]  # activations, gradients and scratch of the input
    for k in range(1, L + 2):
        n_in, n = widths[k - 1], widths[k]
        hidden = k <= L
        layer = network.hidden[k - 1] if hidden else None
        bn = bool(hidden and layer.batchnorm)
        n_params += n_in * n + n
        if bn:
            n_params += 2 * n
        if hidden and layer.activation == "prelu":
            n_params += n
        per_example += 6 * n + (5 * n if bn else 0)
    for i, j in network.skips:
        if widths[i] != widths[j]:
            n_params += widths[i] * widths[j]
    # params, grads, the initial copy, one snapshot's weights and gradients; decay
    # mask (int8) and layer index (int32) per parameter
    parameters = n_params * (5 * s + 5)
    optimizer = 2 * n_params * s
    if data.kind == "csv":  # a file is capped by the loader; an embedded copy is counted
        n_rows = data.text.count("\n") + 1 if data.text else 0
        n_inputs = network.input_dim
    else:
        n_rows = data.n_samples
        n_inputs = data.dims if data.kind == "highdim" else 2
    n_train = max(1, n_rows - int(n_rows * data.test_fraction))
    batch = min(int(training.batch_size), max(n_train, 1))
    workspace = per_example * s * (batch + min(EVAL_CHUNK, max(n_rows, 1)))
    data_bytes = n_rows * (n_inputs * (8 + s) + 16)
    history = history_capacity * ((L + 2) * HIST_VALUES_PER_LAYER * 4 + HIST_SCALARS * 8)
    return MemoryEstimate(parameters, optimizer, workspace, data_bytes, history, n_params,
                          per_example)


def over_budget(estimate: MemoryEstimate) -> str | None:
    """A message for the user if ``estimate`` exceeds the budget, else None."""
    budget, source = memory_budget()
    if estimate.total <= budget:
        return None
    return (f"needs about {format_bytes(estimate.total)} of memory ({estimate.describe()}), "
            f"more than the {format_bytes(budget)} allowed ({source}). Use fewer or "
            "narrower layers, a smaller batch or less data.")
