"""Name what is going wrong in a training run, with the numbers, and what to try.

``diagnose(spec, snapshot, history)`` is a pure function: it reads one
snapshot and a recent window of the recorded history, and returns findings.
Each finding says what was measured in plain words and offers only the
remedies that make sense for this network, each a key of
``simulator.remedies.REMEDIES`` (the window, the command line and the tests
apply them through ``simulator.remedies.apply_remedy``).

Gradient-flow numbers are medians over the last ``WINDOW`` recorded steps, so
one noisy mini-batch does not switch a finding on or off; ``previous`` (the
findings of the last call) keeps a finding on until its number is clearly back
inside the healthy range (hysteresis). ``baseline`` (a snapshot taken at the
start) tells units that switched off during training (dying) from units that
were off from initialization.

Nothing is concluded from NaN: before the first backward pass, the
gradient-flow checks stay silent, and an empty list means "not enough data yet".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .factors import describe_layer
from .remedies import REMEDIES, Remedy, remedy_applies
from .snapshot import HIST_DELTA, HIST_UPDATE_RATIO, History, Snapshot
from .spec import NetworkSpec

__all__ = ["KINDS", "SEVERITIES", "REMEDIES", "Remedy", "Finding", "diagnose",
           "remedy_applies", "saturated_fraction"]

KINDS = ("vanishing", "exploding", "dead_network", "dead_units", "saturation", "stalled",
         "diverged", "healthy")
SEVERITIES = ("info", "warning", "critical")

# The gradient-flow checks read the median of the last WINDOW recorded steps.
WINDOW = 20
# ||delta_k|| / ||delta_out|| below this for some hidden layer: vanishing
VANISHING_RATIO = 1e-3
VANISHING_CRITICAL = 1e-6
# ... or below this while the layer's update ratio is below SLOW_LAYER_RATIO
# times the output layer's: the lower layers learn far more slowly
WEAK_VANISHING_RATIO = 1e-2
SLOW_LAYER_RATIO = 1e-2
# ... above this: exploding
EXPLODING_RATIO = 1e3
EXPLODING_CRITICAL = 1e6
# A step longer than this fraction of a layer's weights, while the gradient
# grows by more than EXPLODING_GROWTH towards the input, is an exploding
# gradient too: one such step wrecks the weights whatever the depth ratio.
EXPLODING_STEP = 0.5
EXPLODING_GROWTH = 10.0
# a delta or weight-gradient norm this large is exploding whatever the ratio
ENORMOUS_NORM = 1e6
# A layer with more than DEAD_FRACTION of its units off for the whole batch.
# Units are "dying" when the fraction off, averaged over the layers, rose by at
# least DYING_RISE since the start.
DEAD_FRACTION = 0.4
DEAD_CRITICAL = 0.8
DYING_RISE = 0.2
# A dead network: some layer this dead, and less than DEAD_NETWORK_SIGNAL of
# the output layer's gradient arriving at layer 1.
DEAD_NETWORK_FRACTION = 0.9
DEAD_NETWORK_SIGNAL = 1e-6
# A unit is saturated when its mean slope over the batch is below this
# fraction of its activation's largest slope (1/4 for sigmoid, 1 for tanh).
SATURATION_SLOPE = 0.2
SATURATED_FRACTION = 0.5
SATURATED_CRITICAL = 0.9
# Hysteresis: a finding raised last time stays while its number is within
# HOLD_FACTOR (ratios) or HOLD_FRACTION (fractions) of the threshold.
HOLD_FACTOR = 2.0
HOLD_FRACTION = 0.1
# the loss is "stalled" when over the last STALL_WINDOW recorded steps it fell
# by less than STALL_MIN_DROP (relative) while still above STALL_LOSS_FLOOR
STALL_WINDOW = 200
STALL_MIN_DROP = 0.01
STALL_LOSS_FLOOR = 0.01
STALL_RISE = 0.2  # a relative rise beyond this (mini-batch noise is smaller) is "rising"
STALL_SPIKE = 3.0  # a loss this many times the window's median counts as a spike
# Update-to-weight ratio per step: around 1e-3 is the usual healthy range.
SMALL_UPDATE_RATIO = 1e-4
LARGE_UPDATE_RATIO = 1e-1

_RELU_FAMILY = ("relu", "leaky_relu", "prelu")
# largest slope of each saturating activation, and its slope from its output a
_MAX_SLOPE = {"sigmoid": 0.25, "tanh": 1.0, "softsign": 1.0}


@dataclass(frozen=True)
class Finding:
    kind: str  # one of KINDS
    severity: str  # one of SEVERITIES
    title: str
    detail: str  # plain words with the measured numbers
    layers: tuple[int, ...] = ()  # 1-based weight-layer indices (L+1 is the output layer)
    remedies: tuple[Remedy, ...] = ()


def _remedies(spec: NetworkSpec, keys, training=None) -> tuple[Remedy, ...]:
    seen: list[str] = []
    for key in keys:
        if key not in seen and remedy_applies(key, spec, training):
            seen.append(key)
    return tuple(REMEDIES[k] for k in seen)


def _vanishing_keys(spec: NetworkSpec) -> list[str]:
    """What brings a vanishing gradient back, as measured by the remedy suite: on a
    rectifier stack batch norm alone does not reliably, so it is left out there."""
    rectifiers = any(h.activation in _RELU_FAMILY for h in spec.hidden)
    if spec.skips:
        # identity skips add up the layer outputs: with ReLU or SELU at full scale the
        # sum grows without bound (a remedy run diverged that way)
        keys = ["residual"]
    elif rectifiers:
        # a rectifier stack needs its weight scale fixed; skips around every ReLU layer
        # make the sum grow until it overflows, and batch norm alone is unreliable here
        return ["he_init", "lecun_selu"]
    else:
        keys = ["relu", "residual", "lecun_selu"]
    if not rectifiers:
        keys.append("batchnorm")
    return keys


# -- number formatting -------------------------------------------------------------

def _num(x: float) -> str:
    x = float(x)
    if x == 0.0:
        return "0"
    if 1e-2 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.1e}"


def _pct(x: float) -> str:
    p = 100.0 * float(x)
    if p == 0.0:
        return "0%"
    if abs(p) >= 0.01:
        return f"{p:.3g}%"
    return f"{p:.1e}%"


def _layer_name(k: int, n_layers: int) -> str:
    return "the output layer" if k == n_layers else f"layer {k}"


def _list_layers(ks) -> str:
    ks = [str(k) for k in ks]
    if len(ks) == 1:
        return f"layer {ks[0]}"
    return "layers " + ", ".join(ks[:-1]) + " and " + ks[-1]


def _values(a, n: int) -> np.ndarray:
    """A float copy of a per-layer array; NaN-filled when missing or of the wrong length."""
    try:
        arr = np.asarray(a, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return np.full(n, np.nan)
    return arr if arr.shape == (n,) else np.full(n, np.nan)


# -- what the checks read -------------------------------------------------------------

def saturated_fraction(spec: NetworkSpec, snapshot: Snapshot) -> np.ndarray:
    """Per hidden layer, the fraction of units whose mean slope over the batch is
    below SATURATION_SLOPE of their activation's largest slope (NaN for layers whose
    activation does not saturate on both sides, or without activations)."""
    depth = spec.depth
    out = np.full(depth, np.nan)
    acts = snapshot.activations
    if len(acts) < depth:
        return out
    measured = _values(snapshot.saturated_fraction, depth + 1)
    # one vectorized pass per activation over all its layers (a 100-layer net in the
    # frame budget): the layers' units side by side, then a count per layer
    groups: dict[tuple[str, int], list[int]] = {}
    widths: dict[tuple[str, int], list[int]] = {}
    for i, (layer, ok) in enumerate(zip(spec.hidden, measured.tolist(), strict=False)):
        # the core marks a layer whose forward pass has run with a finite fraction
        if layer.activation not in _MAX_SLOPE or not math.isfinite(ok):
            continue
        a = acts[i]
        shape = a.shape if isinstance(a, np.ndarray) else np.shape(a)
        if len(shape) == 2 and shape[0] and shape[1]:
            key = (layer.activation, shape[0])
            groups.setdefault(key, []).append(i)
            widths.setdefault(key, []).append(shape[1])
    for (name, rows), idx in groups.items():
        max_slope = _MAX_SLOPE[name]
        # one float64 copy of the layers side by side, then in place (the frame budget)
        a = np.concatenate([np.asarray(acts[i]) for i in idx], axis=1, dtype=np.float64)
        if name == "sigmoid":
            slope = np.subtract(1.0, a)
            slope *= a
        elif name == "tanh":
            slope = np.multiply(a, a)
            np.subtract(1.0, slope, out=slope)
        else:  # softsign: phi' = (1 - |phi|)^2
            slope = np.abs(a)
            np.subtract(1.0, slope, out=slope)
            np.square(slope, out=slope)
        mean = slope.mean(axis=0)
        flat = (mean / max_slope < SATURATION_SLOPE).astype(np.float64)
        # a unit with a non-finite activation has a non-finite mean slope (no finite
        # activation gives an infinite one): not measured
        flat[~np.isfinite(mean)] = np.nan
        width = np.array(widths[name, rows])
        starts = np.concatenate(([0], np.cumsum(width)[:-1]))
        out[idx] = np.add.reduceat(flat, starts) / width
    return out


def _rows(history: History, column: int, first: int, count: int) -> np.ndarray:
    """Rows ``first .. first + count`` (oldest first) of one history column; only those
    rows are read (the frame budget)."""
    return history.rows(column, first, count)


@dataclass
class _Measures:
    n: int
    delta: np.ndarray  # ||delta_k|| of the snapshot
    grad: np.ndarray
    ratios: np.ndarray  # ||delta_k|| / ||delta_out||, k = 1..L: window median
    step_ratio: np.ndarray  # update / weight per layer: window median, or the coming step
    step_measured: bool
    window: int  # how many recorded steps the medians cover (0: the snapshot alone)
    dead: np.ndarray  # per hidden layer
    base_dead: np.ndarray | None
    saturated: np.ndarray
    held: frozenset
    tiny: float  # the smallest positive number of the snapshot's float type


def _recent(history: History | None, n: int, column: int, step: int) -> np.ndarray | None:
    """The rows of the last WINDOW steps up to ``step`` (None when there are none)."""
    if history is None or len(history) == 0 or history.n_layers != n:
        return None
    steps = history.steps()[-WINDOW:]
    rows = _rows(history, column, len(history) - WINDOW, WINDOW).astype(np.float64)
    rows = rows[(steps > step - WINDOW - 1) & (steps <= step)]
    return rows if len(rows) else None


def _coming_step(snapshot: Snapshot, training, n: int) -> np.ndarray:
    """Before any update: lr * ||dL/dW|| / ||W||, the size of the first plain (or
    momentum) gradient step relative to the weights, after gradient-norm clipping."""
    grad = _values(snapshot.grad_norm, n)
    weight = _values(snapshot.weight_norm, n)
    if training is None or getattr(training, "optimizer", "") not in ("sgd", "momentum"):
        return np.full(n, np.nan)
    scale = 1.0
    clip = getattr(training, "clip_norm", 0.0)
    if clip > 0:
        total = math.sqrt(float(np.nansum(grad**2) + np.nansum(_values(
            snapshot.bias_grad_norm, n) ** 2)))
        if total > clip:
            scale = clip / total
    with np.errstate(divide="ignore", invalid="ignore"):
        return training.lr * scale * grad / weight


def _measure(spec, snapshot, history, training, baseline, previous) -> _Measures:
    n = spec.depth + 1
    depth = n - 1
    delta = _values(snapshot.delta_norm, n)
    rows = _recent(history, n, HIST_DELTA, snapshot.step)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if rows is not None:
            rows = rows[np.isfinite(rows).all(axis=1) & (rows[:, -1] > 0)]
        if rows is not None and len(rows):
            ratios = np.median(rows[:, :depth] / rows[:, -1:], axis=0)
            window = len(rows)
        else:
            out = delta[-1]
            ratios = delta[:depth] / out if math.isfinite(out) and out > 0 else \
                np.full(depth, np.nan)
            window = 0
    upd_rows = _recent(history, n, HIST_UPDATE_RATIO, snapshot.step)
    last_update = _values(snapshot.update_ratio, n)
    measured = True
    if upd_rows is not None and np.isfinite(upd_rows).any():
        if not np.isnan(upd_rows).any():
            step_ratio = np.median(upd_rows, axis=0)  # nothing to leave out: quicker
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
                step_ratio = np.nanmedian(upd_rows, axis=0)
    elif np.isfinite(last_update).any():
        step_ratio = last_update
    else:
        step_ratio = _coming_step(snapshot, training, n)
        measured = False
    base = None
    if baseline is not None and len(baseline.dead_fraction) == n:
        base = _values(baseline.dead_fraction, n)[:depth]
    held = frozenset(f.kind if isinstance(f, Finding) else str(f) for f in (previous or ()))
    dtype = snapshot.deltas[0].dtype if snapshot.deltas else np.dtype(np.float64)
    tiny = float(np.finfo(dtype).smallest_subnormal) if dtype.kind == "f" else 5e-324
    return _Measures(
        n=n, delta=delta, grad=_values(snapshot.grad_norm, n), ratios=np.asarray(ratios),
        step_ratio=np.asarray(step_ratio, dtype=np.float64), step_measured=measured,
        window=window, dead=_values(snapshot.dead_fraction, n)[:depth], base_dead=base,
        saturated=saturated_fraction(spec, snapshot), held=held, tiny=tiny,
    )


def _over_what(m: _Measures) -> str:
    if m.window > 1:
        return f" (median of the last {m.window} steps)"
    return ""


# -- the individual checks ------------------------------------------------------------

def _movement_sentence(k: int, snapshot: Snapshot, n: int) -> str:
    """How much layer k's weights move, next to the output layer's."""
    upd = _values(snapshot.update_ratio, n)
    chg = _values(snapshot.weight_change, n)
    parts = []
    if math.isfinite(upd[k - 1]) and math.isfinite(upd[-1]):
        parts.append(
            f"its last update changed its weights by {_num(upd[k - 1])} of their size, against "
            f"{_num(upd[-1])} for the output layer"
        )
    if math.isfinite(chg[k - 1]):
        if chg[k - 1] == 0.0:
            text = "its weights have not measurably moved since the start"
        else:
            text = f"its weights have moved {_pct(chg[k - 1])} since the start"
        if math.isfinite(chg[-1]):
            text += f" (output layer: {_pct(chg[-1])})"
        parts.append(text)
    if not parts:
        return ""
    return "; ".join(parts) + "."


def _history_ratio(history: History | None, k: int, n: int, before_step: int):
    """(step, ||delta_k|| / ||delta_out||) at the earliest recorded step, or None."""
    if history is None or len(history) == 0 or history.n_layers != n:
        return None
    steps = history.steps()
    early = np.flatnonzero(np.isfinite(steps) & (steps < before_step - WINDOW))
    # the earliest recorded rows, a few at a time, until one has both numbers
    for start in range(0, len(early), WINDOW):
        chunk = early[start:start + WINDOW]
        rows = _rows(history, HIST_DELTA, int(chunk[0]), int(chunk[-1] - chunk[0] + 1))
        for i, row in zip(chunk, rows[chunk - chunk[0]], strict=True):
            low, out = float(row[k - 1]), float(row[-1])
            if math.isfinite(low) and math.isfinite(out) and out > 0:
                return int(steps[i]), low / out
    return None


def _vanishing(spec, snapshot, history, m: _Measures, training):
    n = m.n
    depth = n - 1
    ratios = m.ratios
    finite = np.isfinite(ratios)
    if depth < 1 or not finite.any():
        return None
    hold = HOLD_FACTOR if "vanishing" in m.held else 1.0
    idx = np.flatnonzero(finite)
    low_i = idx[np.argmin(ratios[idx])]
    r_low = ratios[low_i]
    upd = m.step_ratio
    with np.errstate(divide="ignore", invalid="ignore"):
        upd_rel = upd[:depth] / upd[-1] if upd[-1] > 0 else np.full(depth, np.nan)

    def slow(i) -> bool:
        return bool(
            ratios[i] < VANISHING_RATIO * hold
            or (m.step_measured and ratios[i] < WEAK_VANISHING_RATIO * hold
                and upd_rel[i] < SLOW_LAYER_RATIO * hold)
        )

    if not slow(low_i):
        return None
    k = int(low_i) + 1
    steps_down = n - k
    delta = m.delta
    detail = (
        f"Layer {k} receives {_num(r_low)} of the output layer's gradient{_over_what(m)}"
        f" (now ||delta_{k}|| = {_num(delta[low_i])} vs ||delta_out|| = {_num(delta[-1])})"
    )
    if r_low > 0:
        per_layer = r_low ** (1.0 / steps_down)
        detail += (
            f", a factor of about {_num(per_layer)} per layer on the {steps_down} "
            f"step{'s' if steps_down != 1 else ''} down from the output."
        )
    else:
        detail += (
            ": it has underflowed. Every layer on the way down multiplied it by a factor "
            f"below one until it fell under {_num(m.tiny)}, the smallest positive number the "
            "network's floating-point type can hold, and was flushed to exactly 0."
        )
    factors = describe_layer(snapshot, k)
    if factors:  # which part of the layer does the shrinking (weights or phi')
        detail += " By the chain rule, " + factors + "."
    movement = _movement_sentence(k, snapshot, n)
    if movement:
        detail += " " + movement[0].upper() + movement[1:]
    grad = m.grad
    if math.isfinite(grad[low_i]) and math.isfinite(grad[-1]):
        detail += f" Its weight gradient is {_num(grad[low_i])} (output layer: {_num(grad[-1])})."
    past = _history_ratio(history, k, n, snapshot.step)
    if past is not None:
        detail += f" At step {past[0]} the same ratio was {_num(past[1])}."
    affected = tuple(int(i) + 1 for i in idx if slow(i))
    if r_low < VANISHING_RATIO * hold:
        title = "Vanishing gradient"
    else:
        title = "Lower layers learn slowly"
        detail += (
            f" Its updates are {_num(upd_rel[low_i])} times the output layer's: "
            "the gradient fades enough on the way down to slow it to a crawl."
        )
    return Finding(
        kind="vanishing",
        severity="critical" if r_low < VANISHING_CRITICAL else "warning",
        title=title,
        detail=detail,
        layers=affected,
        remedies=_remedies(spec, _vanishing_keys(spec), training),
    )


def _exploding(spec, snapshot, m: _Measures, training):
    n = m.n
    depth = n - 1
    hold = HOLD_FACTOR if "exploding" in m.held else 1.0
    ratios = m.ratios
    finite = np.isfinite(ratios)
    delta, grad = m.delta, m.grad
    growth = float(np.max(ratios[finite])) if finite.any() else math.nan
    high_rel = [int(i) + 1 for i in np.flatnonzero(finite) if ratios[i] > EXPLODING_RATIO / hold]
    huge = [
        k for k in range(1, n + 1)
        if (math.isfinite(delta[k - 1]) and delta[k - 1] > ENORMOUS_NORM)
        or (math.isfinite(grad[k - 1]) and grad[k - 1] > ENORMOUS_NORM)
    ]
    step = m.step_ratio
    big_steps = []
    if math.isfinite(growth) and growth > EXPLODING_GROWTH / hold:
        big_steps = [k for k in range(1, n + 1)
                     if math.isfinite(step[k - 1]) and step[k - 1] > EXPLODING_STEP / hold]
    if not (high_rel or huge or big_steps):
        return None
    sentences = []
    critical = False
    if finite.any() and depth >= 1:
        hi_i = int(np.nanargmax(np.where(finite, ratios, -np.inf)))
        k = hi_i + 1
        r_high = ratios[hi_i]
        critical |= r_high > EXPLODING_CRITICAL
        if r_high > 1:
            sentences.append(
                f"Layer {k} receives {_num(r_high)} times the output layer's gradient"
                f"{_over_what(m)}, growing by about {_num(r_high ** (1.0 / (n - k)))} per "
                "layer on the way down."
            )
    if huge:
        big_delta = np.where(np.isfinite(delta), delta, -np.inf)
        big_grad = np.where(np.isfinite(grad), grad, -np.inf)
        kd, kg = int(np.argmax(big_delta)) + 1, int(np.argmax(big_grad)) + 1
        biggest = max(big_delta[kd - 1], big_grad[kg - 1])
        critical |= biggest > ENORMOUS_NORM * 1e3
        parts = []
        if big_delta[kd - 1] > ENORMOUS_NORM:
            parts.append(f"||delta_{_short(kd, n)}|| = {_num(big_delta[kd - 1])}")
        if big_grad[kg - 1] > ENORMOUS_NORM:
            parts.append(f"||dL/dW_{_short(kg, n)}|| = {_num(big_grad[kg - 1])}")
        sentences.append(
            "The gradient norms are enormous (" + ", ".join(parts)
            + "): one step of this size can throw the weights far off."
        )
    if np.isfinite(step).any():
        ku = int(np.nanargmax(np.where(np.isfinite(step), step, -np.inf))) + 1
        if m.step_measured:
            sentences.append(
                f"The largest update{_over_what(m)} was {_num(step[ku - 1])} of the weights' "
                f"size ({_layer_name(ku, n)})."
            )
        else:
            sentences.append(
                f"The first step will be {_num(step[ku - 1])} times the size of "
                f"{_layer_name(ku, n)}'s weights (learning rate times ||dL/dW|| / ||W||)."
            )
        if step[ku - 1] > EXPLODING_STEP / hold and big_steps:
            critical = True
            sentences.append("A step that large does not nudge the weights, it replaces them.")
    keys = ["he_init", "batchnorm", "lecun_selu"]
    return Finding(
        kind="exploding",
        severity="critical" if critical else "warning",
        title="Exploding gradient",
        detail=" ".join(sentences),
        layers=tuple(sorted(set(high_rel) | set(huge) | set(big_steps))),
        remedies=_remedies(spec, keys, training),
    )


def _short(k: int, n: int) -> str:
    return "out" if k == n else str(k)


def _dead(spec, m: _Measures, training):
    """A dead network, dying units, or units that are off since initialization."""
    depth = m.n - 1
    if depth == 0:
        return None
    dead = m.dead
    ok = np.isfinite(dead)
    if not ok.any():
        return None
    r1 = m.ratios[0] if len(m.ratios) else math.nan
    widths = spec.widths
    hold = HOLD_FRACTION if "dead_network" in m.held else 0.0
    dead_layers = [i for i in np.flatnonzero(ok) if dead[i] >= DEAD_NETWORK_FRACTION - hold]
    if dead_layers and math.isfinite(r1) and r1 < DEAD_NETWORK_SIGNAL * (
            HOLD_FACTOR if "dead_network" in m.held else 1.0):
        worst = max(dead_layers, key=lambda i: dead[i])
        n_dead = int(round(dead[worst] * widths[worst + 1]))
        detail = (
            f"Layer {worst + 1} has {n_dead} of its {widths[worst + 1]} units switched off for "
            f"every example ({_pct(dead[worst])}), and layer 1 receives {_num(r1)} of the "
            f"output layer's gradient{_over_what(m)}. A unit that is off passes no gradient "
            "back, so nothing below it can learn and it cannot switch itself back on: more "
            "training will not help, and neither will remedies for a vanishing gradient. "
            "The network needs fresh weights."
        )
        return Finding(
            kind="dead_network",
            severity="critical",
            title="Dead network",
            detail=detail,
            layers=tuple(sorted(int(i) + 1 for i in dead_layers)),
            remedies=_remedies(spec, ("revive", "leaky_revive", "lecun_selu"), training),
        )
    hold = HOLD_FRACTION if "dead_units" in m.held else 0.0
    bad = [i for i in np.flatnonzero(ok) if dead[i] > DEAD_FRACTION - hold]
    if not bad:
        return None
    base = m.base_dead
    dying = []
    if base is not None:
        # network-wide: in a narrow layer a few units switch on and off with the batch,
        # so one layer's count alone would call healthy training "dying"
        both = ok & np.isfinite(base)
        rise = float(np.mean(dead[both] - base[both])) if both.any() else 0.0
        if rise >= DYING_RISE - hold:
            dying = [i for i in bad if math.isfinite(base[i]) and dead[i] > base[i]]
    if dying:
        dying.sort(key=lambda i: -(dead[i] - base[i]))
        named = [f"layer {i + 1}: {_pct(base[i])} at the start, {_pct(dead[i])} now"
                 for i in dying[:3]]
        more = f" and {len(dying) - 3} more" if len(dying) > 3 else ""
        detail = (
            "Units are switching off during training and staying off: a unit whose input is "
            "negative for every example outputs 0, passes no gradient back and stops "
            f"learning. Off for the whole batch: {'; '.join(named)}{more}. This usually "
            "means the steps are too large."
        )
        worst = max(dead[i] for i in dying)
        return Finding(
            kind="dead_units",
            severity="critical" if worst > DEAD_CRITICAL else "warning",
            title="Dying ReLU units",
            detail=detail,
            layers=tuple(sorted(int(i) + 1 for i in dying)),
            remedies=_remedies(spec, ("revive", "leaky_revive"), training),
        )
    bad.sort(key=lambda i: -dead[i])
    named = [f"layer {i + 1}: {_pct(dead[i])}" for i in bad[:3]]
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    since = ("since initialization" if base is not None
             else "for the whole batch (no record of the start to compare with)")
    detail = (
        f"Some units are off {since}: {'; '.join(named)}{more}. In a deep, narrow "
        "rectifier network this is expected at the start (depth makes the inputs of a "
        "layer similar to each other, so a unit tends to be off for all of them or none), "
        "and it is not dying: such units can come back as the layers below change. It "
        "becomes a problem only if their number keeps growing."
    )
    return Finding(
        kind="dead_units",
        severity="info",
        title="Inactive units",
        detail=detail,
        layers=tuple(sorted(int(i) + 1 for i in bad)),
    )


def _saturation(spec, m: _Measures, training):
    values = m.saturated
    ok = np.isfinite(values)
    if not ok.any():
        return None
    hold = HOLD_FRACTION if "saturation" in m.held else 0.0
    bad = [i for i in np.flatnonzero(ok) if values[i] > SATURATED_FRACTION - hold]
    if not bad:
        return None
    bad.sort(key=lambda i: -values[i])
    widths = spec.widths
    named = [f"layer {i + 1} ({spec.hidden[i].activation}): {_pct(values[i])}" for i in bad[:3]]
    more = f" and {len(bad) - 3} more layer{'s' if len(bad) > 4 else ''}" if len(bad) > 3 else ""
    count = int(round(sum(values[i] * widths[i + 1] for i in bad)))
    total = sum(widths[i + 1] for i in bad)
    layers = tuple(sorted(int(i) + 1 for i in bad))
    # a layer inside a skip link's span: the identity path carries the gradient past it
    bypassed = all(any(a < k <= b for a, b in spec.skips) for k in layers)
    detail = (
        "A saturated unit sits on a flat part of its activation: its mean slope over the "
        f"batch is below {_pct(SATURATION_SLOPE)} of the activation's steepest slope (1/4 for "
        "sigmoid, 1 for tanh), so little gradient passes through it. Saturated fraction, "
        f"worst first: {'; '.join(named)}{more}. That is about {count} of the {total} units in "
        f"{_list_layers(layers)}."
    )
    if bypassed:
        detail += (" Every one of these layers has a skip link around it, which carries the "
                   "gradient past the flat units, so they slow training less than they would "
                   "in a plain stack.")
        return Finding(kind="saturation", severity="info", title="Saturated units (bypassed)",
                       detail=detail, layers=layers)
    return Finding(
        kind="saturation",
        severity="critical" if values[bad[0]] > SATURATED_CRITICAL else "warning",
        title="Saturated units",
        detail=detail,
        layers=layers,
        remedies=_remedies(spec, ("relu", "batchnorm", "lecun_selu"), training),
    )


def _stalled(spec, snapshot, history, m: _Measures, cause, training):
    n = m.n
    if history is None or len(history) < STALL_WINDOW:
        return None
    loss = np.asarray(history.scalar("loss"), dtype=np.float64)
    steps = np.asarray(history.steps(), dtype=np.float64)
    ok = np.isfinite(loss) & np.isfinite(steps)
    loss, steps = loss[ok][-STALL_WINDOW:], steps[ok][-STALL_WINDOW:]
    if len(loss) < STALL_WINDOW:
        return None
    # medians of the first and last quarter: mini-batch losses are noisy and spiky
    q = STALL_WINDOW // 4
    start, end = float(np.median(loss[:q])), float(np.median(loss[-q:]))
    if start <= 0 or end <= STALL_LOSS_FLOOR:
        return None
    drop = (start - end) / start
    if drop >= STALL_MIN_DROP:
        return None
    rising = -drop > STALL_RISE
    peak = float(loss.max())
    spiky = peak > STALL_SPIKE * float(np.median(loss))
    sign = "+" if drop <= 0 else "-"
    detail = (
        f"Over the last {STALL_WINDOW} recorded steps (steps {int(steps[0])} to "
        f"{int(steps[-1])}) the median training loss went from {_num(start)} in the first "
        f"quarter to {_num(end)} in the last ({sign}{_pct(abs(drop))})."
    )
    keys: list[str] = []
    if spiky:
        detail += (
            f" Along the way it jumps as high as {_num(peak)}: some steps are too large "
            "and undo earlier progress."
        )
    if cause is not None:
        # the cause's own remedies; a smaller step does not revive or rescale anything
        detail += f" {cause.title} (see that finding) is the likely cause."
        keys += [r.key for r in cause.remedies]
    elif rising or spiky:
        keys += ["lower_lr", "clip_norm"]
    upd = _values(snapshot.update_ratio, n)
    finite_upd = upd[np.isfinite(upd)]
    if finite_upd.size:
        largest = float(finite_upd.max())
        if largest < SMALL_UPDATE_RATIO and not (rising or spiky) and cause is None:
            detail += (
                f" Every layer's last update was at most {_num(largest)} of its weights' "
                "size, so the learning rate may be too low."
            )
            keys.append("raise_lr")
        elif largest > LARGE_UPDATE_RATIO:
            detail += (
                f" Some layer's last update was {_num(largest)} of its weights' size: steps "
                "this large can bounce around a minimum without settling."
            )
            keys.append("lower_lr")
        elif cause is None and not (rising or spiky):
            detail += (
                f" The updates are of ordinary size (at most {_num(largest)} of the "
                "weights), so training may sit on a plateau or at the limit of what this "
                "network can fit."
            )
    # a plateau on its own (even with the spikes of mini-batch noise) is not a gradient
    # problem: it is worth a note, not a warning
    serious = cause is not None or rising
    return Finding(
        kind="stalled",
        severity="warning" if serious else "info",
        title="Loss is rising" if rising else "Loss has stalled",
        detail=detail,
        layers=cause.layers if cause is not None else (),
        remedies=_remedies(spec, keys, training) if serious else (),
    )


def _diverged(spec, snapshot, history, n, training):
    report = snapshot.divergence
    if report.layer == 0:
        what = "the loss" if report.quantity == "loss" else f"the {report.quantity} of the loss"
    else:
        what = f"the {report.quantity} of {_layer_name(report.layer, n)}"
    detail = (
        f"At step {report.step}, {what} became NaN or infinite during the {report.phase} "
        "pass, and training stopped."
    )
    if history is not None and len(history) and history.n_layers == n:
        deltas = history.layer_series(HIST_DELTA).astype(np.float64)
        steps = history.steps()
        for row, step in zip(deltas[::-1], steps[::-1], strict=True):
            if np.isfinite(row).all():
                k = int(np.argmax(row)) + 1
                detail += (
                    f" At step {int(step)}, the last one recorded with finite numbers, the "
                    f"largest ||delta|| was {_num(row[k - 1])} ({_layer_name(k, n)})."
                )
                break
    detail += (" The weights are wrecked; the remedies below draw fresh ones. Or reset the "
               "network after changing something.")
    return Finding(
        kind="diverged",
        severity="critical",
        title="Training diverged",
        detail=detail,
        layers=(report.layer,) if 1 <= report.layer <= n else (),
        remedies=_remedies(spec, ("revive", "he_init", "lecun_selu"), training),
    )


def _healthy(snapshot, m: _Measures) -> Finding:
    n = m.n
    delta = m.delta
    sentences = []
    if n > 1 and math.isfinite(m.ratios[0]):
        sentences.append(
            f"Layer 1 receives {_num(m.ratios[0])} of the output layer's gradient"
            f"{_over_what(m)} (now ||delta_1|| = {_num(delta[0])} vs ||delta_out|| = "
            f"{_num(delta[-1])})."
        )
    for name, v in (("off for the whole batch", m.dead), ("saturated", m.saturated)):
        v = v[np.isfinite(v)]
        if v.size and v.max() > 0:
            sentences.append(f"At most {_pct(v.max())} of a layer's units are {name}.")
    if not sentences:
        sentences.append("No layer shows a vanishing or exploding gradient.")
    return Finding(
        kind="healthy",
        severity="info",
        title="Gradient reaches every layer",
        detail=" ".join(sentences),
    )


# -- the public entry point ---------------------------------------------------------

def diagnose(
    spec: NetworkSpec,
    snapshot: Snapshot,
    history: History | None = None,
    training=None,
    *,
    baseline: Snapshot | None = None,
    previous=None,
) -> list[Finding]:
    """Findings for ``snapshot`` of a network built from ``spec``, most severe first.

    ``history`` gives the window the gradient-flow numbers are medians over,
    enables the stalled-loss check and before/after comparisons. ``training`` (a
    TrainSpec, optional) gives the size of the first step before any update was
    made, and leaves out remedies that are already in place. ``baseline`` (a
    snapshot from the start of training) lets dying units be told from units off
    since initialization. ``previous`` (the findings, or their kinds, of the last
    call) holds a finding on until its number is clearly healthy again.

    An empty list means there is not enough data yet (nothing measured), or
    that the snapshot has a different number of layers than ``spec`` (an edit
    happened and no new snapshot has been taken).
    """
    n = spec.depth + 1
    if len(snapshot.delta_norm) != n:
        return []
    if snapshot.divergence is not None:
        return [_diverged(spec, snapshot, history, n, training)]
    m = _measure(spec, snapshot, history, training, baseline, previous)

    findings: list[Finding] = []
    dead = _dead(spec, m, training)
    vanishing = _vanishing(spec, snapshot, history, m, training)
    if dead is not None and dead.kind == "dead_network":
        vanishing = None  # the dead layer is why nothing arrives below it
    for f in (vanishing, _exploding(spec, snapshot, m, training), dead,
              _saturation(spec, m, training)):
        if f is not None:
            findings.append(f)
    cause = next((f for f in findings if f.kind in ("dead_network", "vanishing")), None)
    stalled = _stalled(spec, snapshot, history, m, cause, training)
    if stalled is not None:
        findings.append(stalled)

    if not any(f.severity != "info" for f in findings) and _has_gradient_data(snapshot, n):
        findings.append(_healthy(snapshot, m))
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    findings.sort(key=lambda f: (rank[f.severity], KINDS.index(f.kind)))
    return findings


def _has_gradient_data(snapshot: Snapshot, n: int) -> bool:
    delta = _values(snapshot.delta_norm, n)
    return bool(np.isfinite(delta).all())
