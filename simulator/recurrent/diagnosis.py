"""What is wrong through time, and what to try: findings from a recurrent snapshot.

Each finding quotes numbers computed from the snapshot (the gradient ratio
||dL/dh_1|| / ||dL/dh_T||, the held-out score against the task's baseline) and
lists remedies that change the experiment; ``apply_remedy`` makes the change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .experiment import RecurrentExperiment
from .simulation import RecurrentSnapshot

VANISHING_RATIO = 1e-4  # below: the first time steps get almost no error
CRITICAL_RATIO = 1e-8
EXPLODING_RATIO = 10.0  # above: the error grows on its way back in time
BASELINE_MARGIN = 0.05  # within 5 % of the baseline counts as "at the baseline"
MIN_STEPS_FOR_BASELINE = 200
# the gate that, near 1, carries the error from h_t (or c_t) back to t-1 unchanged
GATED_PATHS = {"lstm": "a forget gate near 1 keeps the cell path c_t -> c_{t-1}",
               "gru": "an update gate near 1 makes h_t a copy of h_{t-1}"}


@dataclass(frozen=True)
class Remedy:
    key: str
    label: str


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str  # "critical", "warning" or "info"
    title: str
    detail: str
    remedies: tuple = ()


REMEDIES = {
    "switch_lstm": "Switch the cell to an LSTM (its cell path carries the error back)",
    "switch_gru": "Switch the cell to a GRU (its update gate lets h_t copy h_{t-1})",
    "orthogonal_init": "Start the recurrent weights orthogonal",
    "forget_bias": "Set the forget-gate bias to 1 so the gates start open",
    "add_forget_gate": "Use the LSTM with a forget gate",
    "clip_norm": "Clip the gradient norm at 1",
}


def apply_remedy(exp: RecurrentExperiment, key: str) -> RecurrentExperiment:
    """The experiment with remedy ``key`` applied (a comparison list is kept)."""
    spec = exp.recurrent
    if key == "switch_lstm":
        spec = replace(spec, cell="lstm")
    elif key == "switch_gru":
        spec = replace(spec, cell="gru")
    elif key == "orthogonal_init":
        spec = replace(spec, init="orthogonal", recurrent_gain=1.0)
    elif key == "forget_bias":
        spec = replace(spec, forget_bias=1.0)
    elif key == "add_forget_gate":
        spec = replace(spec, cell="lstm")
    elif key == "clip_norm":
        return replace(exp, training=replace(exp.training, clip_norm=1.0))
    else:
        raise ValueError(f"remedy: unknown key {key!r}; known: {', '.join(REMEDIES)}")
    return replace(exp, recurrent=spec)


CELL_SWITCHES = {"switch_lstm": "lstm", "switch_gru": "gru", "add_forget_gate": "lstm"}


def remedy_for_cell(exp: RecurrentExperiment, cell: str, key: str) -> RecurrentExperiment:
    """The experiment after the remedy ``key`` is clicked in the column of ``cell``.

    A one-cell experiment gets the remedy itself. A comparison stays a comparison:
    a remedy that changes a setting (initialization, forget-gate bias, clipping)
    changes it for every column, so the cells still differ only in the cell; a remedy
    that changes the cell replaces that column by the new cell, or, when the new cell
    has a column already, removes the column (its remedy is on show beside it)."""
    if not exp.compare:
        return apply_remedy(exp, key)
    if key not in CELL_SWITCHES:
        return apply_remedy(exp, key)
    target = CELL_SWITCHES[key]
    cells = []
    for c in exp.compare:
        c = target if c == cell else c
        if c not in cells:
            cells.append(c)
    if len(cells) == 1:
        return exp.with_cell(cells[0])
    base = exp.recurrent.cell if exp.recurrent.cell in cells else cells[0]
    return replace(exp, recurrent=replace(exp.recurrent, cell=base), compare=tuple(cells))


def _vanishing_text(ratio: float, T: int, dtype: str) -> str:
    if ratio > 0.0:
        return (f"The error that reaches the first of {T} time steps is {ratio:.1e} times the "
                f"error at the last one, so the weights hardly learn anything from inputs far "
                f"back in the sequence.")
    return (f"The error that reaches the first of {T} time steps is too small a fraction of "
            f"the error at the last one for {dtype} to hold: it computes as 0, so the "
            f"weights learn nothing from inputs far back in the sequence.")


def _remedies(*keys) -> tuple:
    return tuple(Remedy(k, REMEDIES[k]) for k in keys)


def diagnose(exp: RecurrentExperiment, snap: RecurrentSnapshot) -> list[Finding]:
    """Findings for the cell of ``snap`` trained by ``exp`` (its training settings)."""
    out = []
    spec = replace(exp.recurrent, cell=snap.cell)
    clip = exp.training.clip_norm
    if snap.divergence is not None:
        out.append(Finding("diverged", "critical", "Training diverged", snap.divergence.message,
                           _remedies(*(["clip_norm"] if clip == 0 else []))))
    ratio = snap.gradient_ratio
    T = snap.lag
    if math.isfinite(ratio) and ratio < VANISHING_RATIO:
        keys = []
        if spec.cell == "rnn":
            keys = ["switch_lstm", "switch_gru"]
            if spec.init != "orthogonal":
                keys.append("orthogonal_init")
        elif spec.cell == "lstm_no_forget":
            keys = ["add_forget_gate"]
        elif spec.cell == "lstm" and spec.forget_bias < 1.0:
            keys = ["forget_bias"]
        detail = _vanishing_text(ratio, T, exp.dtype)
        severity = "critical" if ratio < CRITICAL_RATIO else "warning"
        if not keys and spec.cell in GATED_PATHS:
            # nothing to change: the gates have not (yet) learned to pass the error on
            detail += (f" This cell's gates can learn to let the error through "
                       f"({GATED_PATHS[spec.cell]}); when they do, this ratio rises by "
                       f"orders of magnitude.")
            severity = "warning"
        out.append(Finding("vanishing_through_time", severity,
                           "Vanishing gradient through time", detail, _remedies(*keys)))
    elif math.isfinite(ratio) and ratio > EXPLODING_RATIO:
        out.append(Finding(
            "exploding_through_time", "warning", "Exploding gradient through time",
            f"The error grows on its way back: at the first of {T} time steps it is "
            f"{ratio:.3g} times the error at the last one, and the steps it causes can "
            f"throw the weights far off.",
            _remedies(*(["clip_norm"] if clip == 0 else []), "orthogonal_init")))
    base = exp.task.baseline
    if snap.step >= MIN_STEPS_FOR_BASELINE:
        if exp.task.task == "regression" and math.isfinite(snap.val_loss) and \
                snap.val_loss > (1 - BASELINE_MARGIN) * base:
            out.append(Finding(
                "at_baseline", "info", "No better than predicting the mean",
                f"After {snap.step} steps the held-out MSE is {snap.val_loss:.3g}; predicting "
                f"the mean scores {base:.3g}.", ()))
        elif exp.task.task == "classification" and math.isfinite(snap.val_accuracy) and \
                snap.val_accuracy < base + BASELINE_MARGIN:
            out.append(Finding(
                "at_baseline", "info", "No better than guessing",
                f"After {snap.step} steps the held-out accuracy is "
                f"{100 * snap.val_accuracy:.0f} %; guessing scores {100 * base:.0f} %.", ()))
    return out
