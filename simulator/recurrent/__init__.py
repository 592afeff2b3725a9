"""Through time: recurrent networks (tanh RNN, LSTM, LSTM without forget gate, GRU)
trained by backpropagation through time, with per-time-step gradient norms.

Importing this package compiles nothing; the kernels compile (or load from numba's
cache) when the mode is first used, see ``warmup()``.
"""

from .network import RecurrentNet
from .spec import CELLS, RECURRENT_INITS, RecurrentSpec

__all__ = ["CELLS", "RECURRENT_INITS", "RecurrentNet", "RecurrentSpec", "warmup"]


def warmup(dtypes=("float32",)) -> None:
    """Compile every recurrent kernel for each dtype by running tiny nets through all paths."""
    from ._warmup import run_warmup

    run_warmup(dtypes)
