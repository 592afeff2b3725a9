"""The chain rule's factors of one hidden layer, in words (for the diagnosis and the probe).

Backpropagation gives hidden layer k its signal delta_k from the one above:
the gradient arrives through the weights (g_k = delta_{k+1} W_{k+1}^T), and,
if skip links leave layer k, also straight from the layers they reach; the
activation's derivative phi'(u_k) then scales it elementwise, and batch norm's
backward (if on) rescales it again. The core measures each step as a ratio of
norms (``Snapshot.weight_factor``, ``local_factor``, ``norm_factor``,
``skip_share``; see simulator/kernels.py). This module only words them: a pure
function of numbers, with no Qt and no state.
"""

from __future__ import annotations

import math

# how an activation is named in a sentence ("... from sigmoid's derivative")
ACTIVATION_WORDS = {
    "sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU", "leaky_relu": "leaky ReLU",
    "prelu": "PReLU", "elu": "ELU", "selu": "SELU", "gelu": "GELU", "silu": "SiLU",
    "softsign": "softsign", "linear": "the identity",
}


def format_factor(x: float) -> str:
    """Two significant figures, plain for 0.001 <= x < 1000, else as 3.1e-05 -> 3.1e-5."""
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e3:
        text = f"{x:.2g}"
        return text
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def describe_factors(layer: int, activation: str, passed_on: float, weight_factor: float,
                     local_factor: float, norm_factor: float | None = None,
                     skip_share: float = 0.0) -> str | None:
    """One sentence on what hidden layer ``layer`` does to the gradient.

    ``passed_on`` = ||delta_k|| / ||delta_{k+1}||, the whole ratio from the layer above
    to this one; the factors are the Snapshot's. Returns None when a number needed is
    not finite (not measured yet, or a diverged run)."""
    needed = [passed_on, weight_factor, local_factor]
    with_bn = norm_factor is not None and not math.isnan(norm_factor)
    if with_bn:
        needed.append(norm_factor)
    skip_share = 0.0 if skip_share is None or math.isnan(skip_share) else float(skip_share)
    if not all(math.isfinite(x) for x in needed):
        return None
    act = ACTIVATION_WORDS.get(activation, activation)
    parts = [f"{format_factor(weight_factor)} from the weights",
             f"{format_factor(local_factor)} from {act}'s derivative"]
    if with_bn:
        parts.append(f"{format_factor(norm_factor)} from batch norm")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if skip_share <= 0.0:
        return f"layer {layer} passes on {format_factor(passed_on)} of the gradient: {listed}"
    return (f"layer {layer} passes on {format_factor(passed_on)} of the gradient: {listed}, "
            f"while skip links bring {100 * skip_share:.0f} % of the gradient reaching it "
            "(by size), past the weights above")


def describe_layer(snapshot, k: int) -> str | None:
    """describe_factors for hidden layer k (1..L) of a Snapshot, or None (output layer,
    or a factor not measured)."""
    spec = snapshot.spec
    if not 1 <= k <= spec.depth or snapshot.weight_factor is None:
        return None
    i = k - 1
    below, above = float(snapshot.delta_norm[i]), float(snapshot.delta_norm[i + 1])
    passed = below / above if above > 0 else math.nan
    hidden = spec.hidden[i]
    return describe_factors(k, hidden.activation, passed, float(snapshot.weight_factor[i]),
                            float(snapshot.local_factor[i]),
                            float(snapshot.norm_factor[i]) if hidden.batchnorm else None,
                            float(snapshot.skip_share[i]))
