"""Gradient Flow Lab's numerical core: numpy + numba, no Qt.

Importing this package compiles nothing; call ``warmup()`` to compile (or load
from numba's cache) every kernel before the first timed or interactive use.
"""

from .network import Network
from .snapshot import DivergenceReport, History, Snapshot
from .spec import LayerSpec, NetworkSpec, SpecError

__all__ = ["DivergenceReport", "History", "LayerSpec", "Network", "NetworkSpec", "Snapshot",
           "SpecError", "kernels_cached", "warmup"]


def warmup(dtypes=("float32",)) -> None:
    """Compile every kernel for each dtype by running a tiny network through all paths."""
    from ._warmup import run_warmup

    run_warmup(dtypes)


def kernels_cached(dtypes=("float32",)) -> bool:
    """Whether ``warmup(dtypes)`` will only load numba's cache (True) or compile (False)."""
    from ._warmup import kernels_cached as cached

    return cached(dtypes)
