"""What each remedy the diagnosis offers does to an experiment.

A remedy is a complete change, including what it needs to work: switching a
deep sigmoid net to ReLU also redraws the weights with He's scale (sigmoid's
small uniform weights make a ReLU stack vanish) and caps the learning rate at
one that does not kill the units in the first few steps. The window (one
undoable step), the command line (``probe --remedy``) and the tests all apply
remedies through ``apply_remedy``, so what a button promises is what is tested.

``planned_changes`` says in words what ``apply_remedy`` will change, without
changing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .spec import SATURATING, NetworkSpec

# The largest effective step a ReLU stack with He init takes without dying in
# its first steps: lr for SGD, lr / (1 - momentum) with momentum (the preset
# "Fixed by ReLU" uses momentum 0.9 at lr 0.01). Adaptive optimizers scale
# their own steps, so for them it is a plain cap on lr.
SAFE_RELU_STEP = 0.1
SAFE_ADAPTIVE_LR = 1e-3
LR_LOWER_FACTOR = 10.0
LR_RAISE_FACTOR = 3.0
CLIP_NORM_REMEDY = 1.0
# The residual remedy puts an identity skip around every layer (blocks of one).
# Blocks of two, as in ResNet, leave the inner layer of each block without a
# shortcut: on the deep sigmoid preset its gradient then ends up 1e-2 below the
# output's on some seeds, which the remedy suite does not accept.
RESIDUAL_BLOCK = 1
_RELU_FAMILY = ("relu", "leaky_relu", "prelu")


@dataclass(frozen=True)
class Remedy:
    """Something the user can try. ``key`` names what ``apply_remedy`` does."""

    key: str
    label: str  # button text
    why: str  # one sentence


REMEDIES: dict[str, Remedy] = {
    r.key: r
    for r in (
        Remedy(
            "relu",
            "Switch to ReLU with He init and a safe learning rate",
            "ReLU passes the gradient on with slope exactly 1 wherever a unit is active, "
            "instead of the at most 1/4 (sigmoid) or less-than-1 (tanh) of a saturating unit; "
            "the weights are redrawn with He's scale, which suits ReLU, and the learning rate "
            "is capped so that the first steps do not switch the units off.",
        ),
        Remedy(
            "leaky_relu",
            "Switch ReLU layers to leaky ReLU",
            "A small slope for negative inputs lets some gradient through units that would "
            "otherwise be switched off for every example, so they can come back.",
        ),
        Remedy(
            "revive",
            "Re-initialize (He) at a safe learning rate",
            "Dead units pass no gradient, so no amount of training brings them back: fresh "
            "weights with He's scale switch them on again, and a smaller step keeps them on.",
        ),
        Remedy(
            "leaky_revive",
            "Leaky ReLU, re-initialized, at a safe learning rate",
            "Fresh He-scaled weights switch the units on again, and leaky ReLU's small "
            "negative slope means a unit pushed off can still receive gradient and recover.",
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
            "Normalizing every layer's pre-activations over the batch keeps units out of "
            "saturation and training stable (at initialization it makes the gradient grow a "
            "little towards the input, not shrink).",
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
            "and variance 1 without any normalization layer; like ReLU it needs a learning "
            "rate that does not throw it off that balance, so the rate is capped too.",
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


def safe_relu_lr(training) -> float:
    """The learning rate the ReLU and SELU bundles train with: the current one, capped."""
    if training.optimizer == "momentum":
        cap = SAFE_RELU_STEP * (1.0 - training.momentum)
    elif training.optimizer == "sgd":
        cap = SAFE_RELU_STEP
    else:
        cap = SAFE_ADAPTIVE_LR
    return min(training.lr, cap)


def residual_links(depth: int) -> tuple[tuple[int, int], ...]:
    """Skips (k, k + RESIDUAL_BLOCK) from layer 1 up, and a shorter one at the top
    where a whole block no longer fits: every hidden layer above the first gets an
    identity path around it."""
    links = []
    k = 1
    while k + RESIDUAL_BLOCK <= depth:
        links.append((k, k + RESIDUAL_BLOCK))
        k += RESIDUAL_BLOCK
    if k < depth:
        links.append((k, depth))
    return tuple(links)


def remedy_applies(key: str, spec: NetworkSpec, training=None) -> bool:
    """Whether remedy ``key`` would change anything for ``spec`` (and ``training``)."""
    if key not in REMEDIES:
        raise ValueError(f"unknown remedy {key!r}")
    acts = [h.activation for h in spec.hidden]
    if key == "relu":
        return any(a in SATURATING for a in acts)
    if key == "leaky_relu":
        return "relu" in acts
    if key == "revive":
        return bool(acts) and any(a in _RELU_FAMILY for a in acts)
    if key == "leaky_revive":
        return "relu" in acts
    if key == "residual":
        return spec.depth >= 3 and any(s not in spec.skips for s in residual_links(spec.depth))
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
    if key == "clip_norm":
        return training is None or not 0.0 < training.clip_norm <= CLIP_NORM_REMEDY
    return True  # lower_lr, raise_lr


def _planned(key: str, spec: NetworkSpec, training):
    """(new spec, new training, redraw weights?) for remedy ``key``."""
    hidden = spec.hidden
    if key == "relu":
        hidden = tuple(replace(h, activation="relu") if h.activation in SATURATING else h
                       for h in hidden)
        new_spec = replace(spec, hidden=hidden)
        if all(h.activation in _RELU_FAMILY for h in hidden):
            new_spec = replace(new_spec, init="he_normal", gain=1.0)
            return new_spec, replace(training, lr=safe_relu_lr(training)), True
        return new_spec, training, False
    if key == "leaky_relu":
        hidden = tuple(replace(h, activation="leaky_relu") if h.activation == "relu" else h
                       for h in hidden)
        return replace(spec, hidden=hidden), training, False
    if key in ("revive", "leaky_revive"):
        if key == "leaky_revive":
            hidden = tuple(replace(h, activation="leaky_relu") if h.activation == "relu" else h
                           for h in hidden)
        new_spec = replace(spec, hidden=hidden, init="he_normal", gain=1.0)
        return new_spec, replace(training, lr=safe_relu_lr(training)), True
    if key == "residual":
        missing = tuple(s for s in residual_links(spec.depth) if s not in spec.skips)
        return replace(spec, skips=spec.skips + missing), training, False
    if key == "batchnorm":
        hidden = tuple(replace(h, batchnorm=True) for h in hidden)
        return replace(spec, hidden=hidden), training, False
    if key == "he_init":
        return replace(spec, init="he_normal", gain=1.0), training, True
    if key == "lecun_selu":
        hidden = tuple(replace(h, activation="selu") for h in hidden)
        new_spec = replace(spec, hidden=hidden, init="lecun_normal", gain=1.0)
        return new_spec, replace(training, lr=safe_relu_lr(training)), True
    if key == "clip_norm":
        return spec, replace(training, clip_norm=CLIP_NORM_REMEDY), False
    if key == "lower_lr":
        return spec, replace(training, lr=training.lr / LR_LOWER_FACTOR), False
    if key == "raise_lr":
        return spec, replace(training, lr=training.lr * LR_RAISE_FACTOR), False
    raise ValueError(f"unknown remedy {key!r}")


def planned_changes(key: str, spec: NetworkSpec, training) -> list[str]:
    """In words, what ``apply_remedy(sim, key)`` would change; empty when nothing."""
    new_spec, new_training, redraw = _planned(key, spec, training)
    changes = []
    pairs = list(zip(spec.hidden, new_spec.hidden, strict=True))
    changed_acts = [(k, a.activation, b.activation)
                    for k, (a, b) in enumerate(pairs, start=1) if a.activation != b.activation]
    if changed_acts:
        olds = sorted({o for _, o, _ in changed_acts})
        changes.append(f"{'/'.join(olds)} -> {changed_acts[0][2]} on {len(changed_acts)} "
                       f"layer{'s' if len(changed_acts) != 1 else ''}")
    added_bn = sum(1 for a, b in zip(spec.hidden, new_spec.hidden, strict=True) if b.batchnorm and
                   not a.batchnorm)
    if added_bn:
        changes.append(f"batch norm on {added_bn} layer{'s' if added_bn != 1 else ''}")
    added = [s for s in new_spec.skips if s not in spec.skips]
    if added:
        changes.append("skip links " + ", ".join(f"{i}->{j}" for i, j in added))
    if redraw:
        changes.append(f"weights redrawn with {new_spec.init}")
    if new_training.lr != training.lr:
        changes.append(f"learning rate {training.lr:g} -> {new_training.lr:g}")
    if new_training.clip_norm != training.clip_norm:
        changes.append(f"gradient clipping at norm {new_training.clip_norm:g}")
    return changes


def apply_remedy(sim, key: str) -> list[str]:
    """Apply remedy ``key`` to a ``Simulation`` in place; returns what changed, in words.

    Only the Simulation's public edit API is used, so the UI can wrap the call
    as one undoable step (capture_state / restore_state). Weights the remedy does
    not redraw are kept. Raises ValueError for an unknown key or a remedy that
    changes nothing here.
    """
    spec, training = sim.spec, sim.training
    if not remedy_applies(key, spec, training):
        raise ValueError(f"the remedy {key!r} changes nothing for this network")
    changes = planned_changes(key, spec, training)
    new_spec, new_training, redraw = _planned(key, spec, training)
    if not changes:
        raise ValueError(f"the remedy {key!r} changes nothing for this network")
    if new_spec != spec:
        if new_spec.init != spec.init or new_spec.gain != spec.gain:
            # structure first (keeps the weights), then the redraw at the new scale
            sim.set_spec(replace(new_spec, init=spec.init, gain=spec.gain))
        else:
            sim.set_spec(new_spec)
    if redraw:
        sim.set_init(new_spec.init, gain=new_spec.gain)
    if new_training != training:
        sim.set_training(new_training)
    return changes


# -- "faster hardware": what more steps per second would buy ---------------------------

HARDWARE_SPEEDUPS = (1.0, 10.0, 1000.0)
HARDWARE_TARGET_CHANGE = 0.1  # "the layer's weights change by 10 %"
_SECONDS_PER_YEAR = 365.25 * 24 * 3600


@dataclass(frozen=True)
class HardwareOutlook:
    """How long the lowest layer takes to change by ``target`` at each speed-up."""

    layer: int
    update_ratio: float  # ||step|| / ||W|| per step of that layer
    steps_per_second: float  # measured on this machine
    target: float
    steps: float  # steps needed, at best (every step in the same direction)
    seconds: tuple[float, ...]  # one per speed-up
    speedups: tuple[float, ...]

    @property
    def text(self) -> str:
        parts = [
            f"Faster hardware does not change the gradient; it only buys more steps. Layer "
            f"{self.layer}'s weights change by {_short_num(self.update_ratio)} of their size "
            f"per step, so a {self.target:.0%} change takes at least "
            f"{_short_num(self.steps)} steps (if every step pointed the same way)."
        ]
        times = [f"{_duration(t)} {'here' if s == 1 else f'on hardware {s:g}x faster'}"
                 for s, t in zip(self.speedups, self.seconds, strict=True)]
        parts.append(f"At {_short_num(self.steps_per_second)} steps per second that is "
                     + ", ".join(times) + ".")
        if self.seconds[-1] > _SECONDS_PER_YEAR:
            parts.append("No hardware closes a gap this wide: fix the gradient instead.")
        elif self.seconds[0] < 60:
            parts.append("That is within reach: fast mode is the way to try brute force here.")
        else:
            parts.append("Fast mode is the way to try brute force here; a remedy that fixes "
                         "the gradient is quicker.")
        return " ".join(parts)


def hardware_outlook(update_ratio: float, steps_per_second: float, layer: int = 1,
                     target: float = HARDWARE_TARGET_CHANGE,
                     speedups=HARDWARE_SPEEDUPS) -> HardwareOutlook | None:
    """The honest "faster hardware" remedy, from a layer's measured update ratio and
    this machine's measured training speed. None when either is not measured."""
    if not (update_ratio > 0 and steps_per_second > 0):  # also rejects NaN
        return None
    steps = target / update_ratio
    seconds = tuple(steps / (steps_per_second * s) for s in speedups)
    return HardwareOutlook(layer, float(update_ratio), float(steps_per_second), target,
                           steps, seconds, tuple(float(s) for s in speedups))


def _short_num(x: float) -> str:
    if x == 0 or 1e-2 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.1e}"


def _duration(seconds: float) -> str:
    for unit, size in (("years", _SECONDS_PER_YEAR), ("days", 86400.0), ("hours", 3600.0),
                       ("minutes", 60.0)):
        if seconds >= size:
            return f"{_short_num(seconds / size)} {unit}"
    return f"{_short_num(seconds)} s"
