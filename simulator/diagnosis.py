"""Name what is going wrong in a training run, with the numbers, and what to try.

``diagnose(spec, snapshot, history)`` is a pure function: it reads one
snapshot (and, when given, the recorded history) and returns findings. Each
finding says what was measured in plain words and offers only the remedies
that make sense for this network; the UI turns a remedy's ``key`` into an
undoable edit, so the keys are part of the interface.

Nothing is concluded from NaN: before the first backward pass, the
gradient-flow checks stay silent, and an empty list means "not enough data yet".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .snapshot import HIST_DELTA, History, Snapshot
from .spec import NetworkSpec, residual_skips
from .theory import mean_field

KINDS = ("vanishing", "exploding", "dead_units", "saturation", "stalled", "diverged", "healthy")
SEVERITIES = ("info", "warning", "critical")

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
# a delta or weight-gradient norm this large is exploding whatever the ratio
ENORMOUS_NORM = 1e6
DEAD_FRACTION = 0.4
DEAD_CRITICAL = 0.8
SATURATED_FRACTION = 0.5
SATURATED_CRITICAL = 0.9
# the loss is "stalled" when over the last STALL_WINDOW recorded steps it fell
# by less than STALL_MIN_DROP (relative) while still above STALL_LOSS_FLOOR
STALL_WINDOW = 200
STALL_MIN_DROP = 0.01
STALL_LOSS_FLOOR = 0.01
STALL_RISE = 0.05  # a relative rise beyond this is reported as "rising"
STALL_SPIKE = 3.0  # a loss this many times the window's median counts as a spike
# Update-to-weight ratio per step: around 1e-3 is the usual healthy range.
SMALL_UPDATE_RATIO = 1e-4
LARGE_UPDATE_RATIO = 1e-1

_RELU_FAMILY = ("relu", "leaky_relu", "prelu")


@dataclass(frozen=True)
class Remedy:
    """Something the user can try. ``key`` names the edit the UI performs."""

    key: str
    label: str  # button text
    why: str  # one sentence


@dataclass(frozen=True)
class Finding:
    kind: str  # one of KINDS
    severity: str  # one of SEVERITIES
    title: str
    detail: str  # plain words with the measured numbers
    layers: tuple[int, ...] = ()  # 1-based weight-layer indices (L+1 is the output layer)
    remedies: tuple[Remedy, ...] = ()


REMEDIES: dict[str, Remedy] = {
    r.key: r
    for r in (
        Remedy(
            "relu",
            "Switch sigmoid/tanh layers to ReLU",
            "ReLU passes the gradient on with slope exactly 1 wherever a unit is active, "
            "instead of the at most 1/4 (sigmoid) or less-than-1 (tanh) of a saturating unit.",
        ),
        Remedy(
            "leaky_relu",
            "Switch ReLU layers to leaky ReLU",
            "A small slope for negative inputs lets some gradient through units that would "
            "otherwise be switched off for every example.",
        ),
        Remedy(
            "residual",
            "Add residual skip links",
            "An identity shortcut has derivative 1, so the gradient can travel past the layers "
            "that shrink it.",
        ),
        Remedy(
            "batchnorm",
            "Batch norm on all hidden layers",
            "Normalizing every layer's pre-activations over the batch keeps units in the range "
            "where their derivative is large.",
        ),
        Remedy(
            "he_init",
            "Re-initialize with He normal",
            "Weights with variance 2/fan_in exactly make up for ReLU zeroing half its inputs, "
            "so the gradient norm stays level through the layers.",
        ),
        Remedy(
            "lecun_selu",
            "SELU with LeCun normal init",
            "SELU with variance-1/fan_in weights pulls every layer's activations towards mean 0 "
            "and variance 1 without any normalization layer.",
        ),
        Remedy(
            "clip_norm",
            "Clip the gradient norm at 1.0",
            "Scaling any gradient longer than 1 back to length 1 keeps its direction but stops "
            "one huge step from wrecking the weights.",
        ),
        Remedy(
            "lower_lr",
            "Divide the learning rate by 10",
            "Smaller steps keep the updates from overshooting, pushing units into dead or "
            "saturated regions, or blowing up.",
        ),
        Remedy(
            "raise_lr",
            "Multiply the learning rate by 3",
            "When every layer's updates are tiny compared with its weights, larger steps let "
            "training make progress.",
        ),
    )
}


def remedy_applies(key: str, spec: NetworkSpec) -> bool:
    """Whether remedy ``key`` would change anything for ``spec``."""
    if key not in REMEDIES:
        raise ValueError(f"unknown remedy {key!r}")
    acts = [h.activation for h in spec.hidden]
    if key == "relu":
        return any(a in ("sigmoid", "tanh") for a in acts)
    if key == "leaky_relu":
        return "relu" in acts
    if key == "residual":
        # a full ResNet-style stack of two-layer blocks would have this many skips
        return spec.depth >= 3 and len(spec.skips) < len(residual_skips(spec.depth))
    if key == "batchnorm":
        return spec.depth >= 1 and not all(h.batchnorm for h in spec.hidden)
    if key == "he_init":
        # He init is derived for rectifiers; on tanh/sigmoid layers it overshoots
        return (
            spec.init not in ("he_normal", "he_uniform")
            and bool(acts)
            and all(a in _RELU_FAMILY for a in acts)
        )
    if key == "lecun_selu":
        return bool(acts) and not (all(a == "selu" for a in acts) and spec.init == "lecun_normal")
    return True  # clip_norm, lower_lr, raise_lr are training settings, always possible


def _remedies(spec: NetworkSpec, keys) -> tuple[Remedy, ...]:
    seen: list[str] = []
    for key in keys:
        if key not in seen and remedy_applies(key, spec):
            seen.append(key)
    return tuple(REMEDIES[k] for k in seen)


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
    deltas = history.layer_series(HIST_DELTA).astype(np.float64)
    steps = history.steps()
    for row, step in zip(deltas, steps, strict=True):
        if not math.isfinite(step) or step >= before_step:
            continue
        low, out = row[k - 1], row[-1]
        if math.isfinite(low) and math.isfinite(out) and out > 0:
            return int(step), low / out
    return None


def _gradient_flow(spec, snapshot, history, n):
    """Vanishing and exploding checks on ||delta_k|| relative to the output layer."""
    findings = []
    delta = _values(snapshot.delta_norm, n)
    grad = _values(snapshot.grad_norm, n)
    out = delta[-1]
    depth = n - 1
    have_ratios = depth >= 1 and math.isfinite(out) and out > 0
    ratios = np.full(depth, np.nan)
    if have_ratios:
        with np.errstate(over="ignore"):
            ratios = delta[:depth] / out
    finite = np.isfinite(ratios)

    if finite.any():
        idx = np.flatnonzero(finite)
        low_i = idx[np.argmin(ratios[idx])]
        r_low = ratios[low_i]
        # a milder decay still counts when the update ratios confirm that the
        # lower layers learn far more slowly than the output layer
        upd = _values(snapshot.update_ratio, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            upd_rel = upd[:depth] / upd[-1] if upd[-1] > 0 else np.full(depth, np.nan)

        def slow(i) -> bool:
            return (
                ratios[i] < VANISHING_RATIO
                or (ratios[i] < WEAK_VANISHING_RATIO and upd_rel[i] < SLOW_LAYER_RATIO)
            )

        if slow(low_i):
            k = int(low_i) + 1
            steps_down = n - k
            detail = (
                f"Layer {k} receives {_num(r_low)} of the output layer's gradient "
                f"(||delta_{k}|| = {_num(delta[low_i])} vs ||delta_out|| = {_num(out)})"
            )
            if r_low > 0:
                per_layer = r_low ** (1.0 / steps_down)
                detail += (
                    f", a factor of about {_num(per_layer)} per layer on the {steps_down} "
                    f"step{'s' if steps_down != 1 else ''} down from the output"
                )
            else:
                detail += ": no gradient at all arrives there"
            detail += "."
            movement = _movement_sentence(k, snapshot, n)
            if movement:
                detail += " " + movement[0].upper() + movement[1:]
            if math.isfinite(grad[low_i]) and math.isfinite(grad[-1]):
                detail += (
                    f" Its weight gradient is {_num(grad[low_i])} (output layer: "
                    f"{_num(grad[-1])})."
                )
            past = _history_ratio(history, k, n, snapshot.step)
            if past is not None:
                detail += f" At step {past[0]} the same ratio was {_num(past[1])}."
            affected = tuple(int(i) + 1 for i in idx if slow(i))
            if r_low < VANISHING_RATIO:
                title = "Vanishing gradient"
            else:
                title = "Lower layers learn slowly"
                detail += (
                    f" Its updates are {_num(upd_rel[low_i])} times the output layer's: "
                    "the gradient fades enough on the way down to slow it to a crawl."
                )
            findings.append(
                Finding(
                    kind="vanishing",
                    severity="critical" if r_low < VANISHING_CRITICAL else "warning",
                    title=title,
                    detail=detail,
                    layers=affected,
                    remedies=_remedies(
                        spec, ("residual", "relu", "he_init", "batchnorm", "lecun_selu")
                    ),
                )
            )

    # exploding: relative growth towards the input, or plain enormous norms
    high_rel = [int(i) + 1 for i in np.flatnonzero(finite) if ratios[i] > EXPLODING_RATIO]
    huge = [
        k for k in range(1, n + 1)
        if (math.isfinite(delta[k - 1]) and delta[k - 1] > ENORMOUS_NORM)
        or (math.isfinite(grad[k - 1]) and grad[k - 1] > ENORMOUS_NORM)
    ]
    if high_rel or huge:
        sentences = []
        critical = False
        if high_rel:
            hi_i = max((k - 1 for k in high_rel), key=lambda i: ratios[i])
            k = hi_i + 1
            r_high = ratios[hi_i]
            critical |= r_high > EXPLODING_CRITICAL
            steps_down = n - k
            sentences.append(
                f"Layer {k} receives {_num(r_high)} times the output layer's gradient "
                f"(||delta_{k}|| = {_num(delta[hi_i])} vs ||delta_out|| = {_num(out)}), "
                f"growing by about {_num(r_high ** (1.0 / steps_down))} per layer on the way down."
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
        upd = _values(snapshot.update_ratio, n)
        if np.isfinite(upd).any():
            ku = int(np.nanargmax(upd)) + 1
            sentences.append(
                f"The largest last update was {_num(upd[ku - 1])} of the weights' size "
                f"({_layer_name(ku, n)})."
            )
        keys = ["clip_norm", "lower_lr"]
        if mean_field(spec).phase == "chaotic":
            keys.append("he_init")
        keys.append("batchnorm")
        findings.append(
            Finding(
                kind="exploding",
                severity="critical" if critical else "warning",
                title="Exploding gradient",
                detail=" ".join(sentences),
                layers=tuple(sorted(set(high_rel) | set(huge))),
                remedies=_remedies(spec, keys),
            )
        )
    return findings


def _short(k: int, n: int) -> str:
    return "out" if k == n else str(k)


def _unit_problem(spec, snapshot, n, *, kind):
    """Dead ReLUs or saturated units in hidden layers."""
    depth = n - 1
    if depth == 0:
        return None
    if kind == "dead_units":
        values = _values(snapshot.dead_fraction, n)[:depth]
        threshold, critical_at = DEAD_FRACTION, DEAD_CRITICAL
    else:
        values = _values(snapshot.saturated_fraction, n)[:depth]
        threshold, critical_at = SATURATED_FRACTION, SATURATED_CRITICAL
    bad = [i for i in np.flatnonzero(np.isfinite(values)) if values[i] > threshold]
    if not bad:
        return None
    bad.sort(key=lambda i: -values[i])
    widths = spec.widths
    named = [
        f"layer {i + 1} ({spec.hidden[i].activation}): {_pct(values[i])}"
        for i in bad[:3]
    ]
    more = f" and {len(bad) - 3} more layer{'s' if len(bad) > 4 else ''}" if len(bad) > 3 else ""
    count = int(round(sum(values[i] * widths[i + 1] for i in bad)))
    total = sum(widths[i + 1] for i in bad)
    layers = tuple(sorted(int(i) + 1 for i in bad))
    worst = values[bad[0]]
    if kind == "dead_units":
        detail = (
            "Units that output 0 for every example in the batch pass no gradient back and "
            f"stop learning. Dead fraction, worst first: {'; '.join(named)}{more}. "
            f"That is about {count} of the {total} units in {_list_layers(layers)}."
        )
        return Finding(
            kind="dead_units",
            severity="critical" if worst > critical_at else "warning",
            title="Dead ReLU units",
            detail=detail,
            layers=layers,
            remedies=_remedies(
                spec, ("leaky_relu", "lower_lr", "he_init", "batchnorm", "lecun_selu")
            ),
        )
    detail = (
        "A saturated unit sits on a flat part of its activation (mean derivative below "
        "0.001), so almost no gradient passes through it. Saturated fraction, worst "
        f"first: {'; '.join(named)}{more}. That is about {count} of the {total} units in "
        f"{_list_layers(layers)}."
    )
    return Finding(
        kind="saturation",
        severity="critical" if worst > critical_at else "warning",
        title="Saturated units",
        detail=detail,
        layers=layers,
        remedies=_remedies(spec, ("relu", "batchnorm", "lecun_selu")),
    )


def _stalled(spec, snapshot, history, n, vanishing):
    if history is None or len(history) < STALL_WINDOW:
        return None
    loss = np.asarray(history.scalar("loss"), dtype=np.float64)
    steps = np.asarray(history.steps(), dtype=np.float64)
    ok = np.isfinite(loss) & np.isfinite(steps)
    loss, steps = loss[ok][-STALL_WINDOW:], steps[ok][-STALL_WINDOW:]
    if len(loss) < STALL_WINDOW:
        return None
    # medians of the first and last quarter: mini-batch losses are noisy and spiky
    m = STALL_WINDOW // 4
    start, end = float(np.median(loss[:m])), float(np.median(loss[-m:]))
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
    if vanishing is not None:
        detail += (
            " The lower layers receive very little gradient (see the vanishing-gradient "
            "finding), which is the likely cause."
        )
        keys += ["residual", "relu", "he_init", "batchnorm", "lecun_selu"]
    if rising or spiky:
        keys += ["lower_lr", "clip_norm"]
    upd = _values(snapshot.update_ratio, n)
    finite_upd = upd[np.isfinite(upd)]
    if finite_upd.size:
        largest = float(finite_upd.max())
        if largest < SMALL_UPDATE_RATIO and not (rising or spiky):
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
        elif vanishing is None and not (rising or spiky):
            detail += (
                f" The updates are of ordinary size (at most {_num(largest)} of the "
                "weights), so training may sit on a plateau or at the limit of what this "
                "network can fit."
            )
    return Finding(
        kind="stalled",
        severity="warning",
        title="Loss is rising" if rising else "Loss has stalled",
        detail=detail,
        layers=vanishing.layers if vanishing is not None else (),
        remedies=_remedies(spec, keys),
    )


def _diverged(spec, snapshot, history, n):
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
    detail += " Reset the network after changing something."
    return Finding(
        kind="diverged",
        severity="critical",
        title="Training diverged",
        detail=detail,
        layers=(report.layer,) if 1 <= report.layer <= n else (),
        remedies=_remedies(spec, ("lower_lr", "clip_norm", "batchnorm")),
    )


def _healthy(snapshot, n) -> Finding:
    delta = _values(snapshot.delta_norm, n)
    sentences = []
    if n > 1 and math.isfinite(delta[0]) and math.isfinite(delta[-1]) and delta[-1] > 0:
        sentences.append(
            f"Layer 1 receives {_num(delta[0] / delta[-1])} of the output layer's gradient "
            f"(||delta_1|| = {_num(delta[0])} vs ||delta_out|| = {_num(delta[-1])})."
        )
    for name, values in (("dead", snapshot.dead_fraction), ("saturated",
                                                             snapshot.saturated_fraction)):
        v = _values(values, n)[: n - 1]
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
) -> list[Finding]:
    """Findings for ``snapshot`` of a network built from ``spec``, most severe first.

    ``history`` enables the stalled-loss check and before/after comparisons.
    ``training`` (a TrainSpec, optional) lets the remedies leave out gradient
    clipping when it is already on at 1.0 or tighter.

    An empty list means there is not enough data yet (nothing measured), or
    that the snapshot has a different number of layers than ``spec`` (an edit
    happened and no new snapshot has been taken).
    """
    findings = _diagnose(spec, snapshot, history)
    clip = getattr(training, "clip_norm", 0.0) if training is not None else 0.0
    if 0.0 < clip <= 1.0:
        findings = [
            replace(f, remedies=tuple(r for r in f.remedies if r.key != "clip_norm"))
            for f in findings
        ]
    return findings


def _diagnose(spec, snapshot, history) -> list[Finding]:
    n = spec.depth + 1
    if len(snapshot.delta_norm) != n:
        return []
    if snapshot.divergence is not None:
        return [_diverged(spec, snapshot, history, n)]

    findings = _gradient_flow(spec, snapshot, history, n)
    for kind in ("dead_units", "saturation"):
        f = _unit_problem(spec, snapshot, n, kind=kind)
        if f is not None:
            findings.append(f)
    vanishing = next((f for f in findings if f.kind == "vanishing"), None)
    stalled = _stalled(spec, snapshot, history, n, vanishing)
    if stalled is not None:
        findings.append(stalled)

    if not any(f.severity != "info" for f in findings) and _has_gradient_data(snapshot, n):
        findings.append(_healthy(snapshot, n))
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    findings.sort(key=lambda f: (rank[f.severity], KINDS.index(f.kind)))
    return findings


def _has_gradient_data(snapshot: Snapshot, n: int) -> bool:
    delta = _values(snapshot.delta_norm, n)
    return bool(np.isfinite(delta).all())
