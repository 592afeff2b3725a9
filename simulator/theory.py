"""Mean-field prediction of how the backpropagated signal grows or shrinks with depth.

For a wide network with independent random weights ``W ~ N(0, sigma_w^2 / n)``
and biases ``b ~ N(0, sigma_b^2)`` (Poole et al. 2016; Schoenholz et al. 2017),
the variance of a pre-activation follows the recursion

    q_k = sigma_w^2 E_z[phi(sqrt(q_{k-1}) z)^2] + sigma_b^2,    z ~ N(0, 1)

and going one layer down, backpropagation multiplies ``||delta||^2`` by about

    chi_k = sigma_w^2(k+1) E_z[phi_k'(sqrt(q_k) z)^2].

``chi_1`` is that factor at the fixed point ``q*`` of the recursion: below 1 the
gradient vanishes (ordered phase), above 1 it explodes (chaotic phase), and the
number of layers over which it changes by a factor e is ``1 / |ln chi_1|``.

Any initialization the app offers is reduced to the same two numbers per layer:
``fan_in * Var[W_k]`` (``effective_sigma_w2``) and the bias variance. The
one-dimensional Gaussian expectations are computed by quadrature (see
``gaussian_mean``): closed forms for the piecewise-linear activations,
composite Gauss-Legendre panels for the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial.legendre import leggauss

from .spec import NetworkSpec

SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
LEAKY_SLOPE = 0.01
PRELU_INIT_SLOPE = 0.25

# Negative-side slope of the piecewise-linear activations. For these,
# E[phi(sqrt(q) z)^2] = q (1 + a^2) / 2 and E[phi'^2] = (1 + a^2) / 2 exactly.
PIECEWISE_LINEAR_SLOPE = {
    "relu": 0.0,
    "leaky_relu": LEAKY_SLOPE,
    "prelu": PRELU_INIT_SLOPE,
    "linear": 1.0,
}
# Activations with |phi(x)| <= |phi'(0) x| and phi(0) = 0: with sigma_b = 0 the map
# q -> sigma_w^2 E[phi^2] never rises above sigma_w^2 phi'(0)^2 q.
_CONTRACTIVE_AT_ZERO = ("tanh", "softsign", "elu")

# Phase boundaries on chi*.
ORDERED_BELOW = 0.98
CHAOTIC_ABOVE = 1.02

# Gaussian expectations E[f(sqrt(q) z)] are integrals of f against the normal
# density. Plain Gauss-Hermite quadrature (nodes in z) is exact for smooth f at
# moderate q but fails where the activation changes on a scale much finer
# than the Gaussian: at large q, tanh'(sqrt(q) z) is a narrow spike around
# z = 0 that 100 Hermite nodes get wrong by ~90% at q = 100, and kinks (ELU,
# SELU, softsign) at z = 0 cost ~1% at q = 1. So the z-axis is cut into panels
# at 0 (where every kink is), geometrically towards 0 in units of the
# activation's own scale (1/sqrt(q) in z), and every unit of z out to 12,
# beyond which the normal density is below 1e-31. Each panel gets
# Gauss-Legendre nodes.
POINTS_PER_PANEL = 24
_GL_NODES, _GL_WEIGHTS = leggauss(POINTS_PER_PANEL)
_Z_CUTOFF = 12.0
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_Q_INFINITE = 1e12  # where q is evaluated when the recursion diverges
_Q_VANISHED = 1e-30  # a fixed point below this is reported as 0
_KINK_PROBE = 1e-300  # where the one-sided slopes at 0 are read


# the standard normal CDF, exact to double precision (numpy has no erf)
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: no overflow for any finite x
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def phi(name: str, x) -> np.ndarray:
    """The activation ``name`` applied elementwise (PReLU at its initial slope 0.25)."""
    x = np.asarray(x, dtype=np.float64)
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name in PIECEWISE_LINEAR_SLOPE:
        a = PIECEWISE_LINEAR_SLOPE[name]
        return np.where(x > 0.0, x, a * x)
    if name == "elu":
        return np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0)))
    if name == "selu":
        return SELU_LAMBDA * np.where(x > 0.0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))
    if name == "gelu":
        return x * _normal_cdf(x)
    if name == "silu":
        return x * _sigmoid(x)
    if name == "softsign":
        return x / (1.0 + np.abs(x))
    raise ValueError(f"unknown activation {name!r}")


def dphi(name: str, x) -> np.ndarray:
    """Derivative of ``phi(name, .)`` elementwise.

    At the kink x = 0 the piecewise-linear activations take their negative-side
    slope (relu'(0) = 0); a Gaussian expectation never sees the difference.
    """
    x = np.asarray(x, dtype=np.float64)
    if name == "sigmoid":
        s = _sigmoid(x)
        return s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(x)
        return 1.0 - t * t
    if name in PIECEWISE_LINEAR_SLOPE:
        a = PIECEWISE_LINEAR_SLOPE[name]
        return np.where(x > 0.0, 1.0, a)
    if name == "elu":
        return np.where(x > 0.0, 1.0, np.exp(np.minimum(x, 0.0)))
    if name == "selu":
        return SELU_LAMBDA * np.where(x > 0.0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))
    if name == "gelu":
        # d/dx [x Phi(x)] = Phi(x) + x pdf(x)
        return _normal_cdf(x) + x * np.exp(-0.5 * x * x) / _SQRT_2PI
    if name == "silu":
        s = _sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    if name == "softsign":
        d = 1.0 + np.abs(x)
        return 1.0 / (d * d)
    raise ValueError(f"unknown activation {name!r}")


def _quadrature_rule(q: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u = sqrt(q) z and weights w with sum(w f(u)) = E[f(sqrt(q) z)]."""
    scale = math.sqrt(q)
    edges = {float(m) for m in range(1, int(_Z_CUTOFF) + 1)}
    # activation features sit at |u| ~ 2^j, i.e. |z| ~ 2^j / sqrt(q)
    j = -4
    while 2.0**j / scale < _Z_CUTOFF:
        edges.add(2.0**j / scale)
        j += 1
    t = np.array([0.0, *sorted(edges)])
    lo, hi = t[:-1], t[1:]
    half = 0.5 * (hi - lo)
    z = (0.5 * (lo + hi))[:, None] + half[:, None] * _GL_NODES  # one row per panel
    w = half[:, None] * _GL_WEIGHTS * np.exp(-0.5 * z * z) / _SQRT_2PI
    z, w = z.ravel(), w.ravel()
    return scale * np.concatenate((-z, z)), np.concatenate((w, w))


def gaussian_mean(f, q: float) -> float:
    """E[f(sqrt(q) z)] for z ~ N(0, 1), by composite Gauss-Legendre quadrature.

    ``f`` must accept a numpy array. q = 0 gives f(0); q is capped at 1e12.
    """
    q = min(max(float(q), 0.0), _Q_INFINITE)
    if q == 0.0:
        return float(np.asarray(f(np.zeros(1)))[0])
    u, w = _quadrature_rule(q)
    return float(np.dot(w, f(u)))


def mean_phi2(name: str, q: float) -> float:
    """E[phi(sqrt(q) z)^2]: the second moment of layer outputs at pre-activation variance q."""
    if name in PIECEWISE_LINEAR_SLOPE:
        a = PIECEWISE_LINEAR_SLOPE[name]
        return 0.5 * (1.0 + a * a) * min(max(float(q), 0.0), _Q_INFINITE)
    return gaussian_mean(lambda u: phi(name, u) ** 2, q)


def mean_dphi2(name: str, q: float) -> float:
    """E[phi'(sqrt(q) z)^2]: the per-layer squared-gradient factor before the weights.

    At q = 0 this is the limit q -> 0+: half the pre-activations sit just left of
    0 and half just right, so a kinked activation (SELU, ELU) gives the average
    of its squared left and right slopes, not the slope of either side.
    """
    if name in PIECEWISE_LINEAR_SLOPE:
        a = PIECEWISE_LINEAR_SLOPE[name]
        return 0.5 * (1.0 + a * a)
    if min(max(float(q), 0.0), _Q_INFINITE) == 0.0:
        side = np.array([-_KINK_PROBE, _KINK_PROBE])
        return float(np.mean(dphi(name, side) ** 2))
    return gaussian_mean(lambda u: dphi(name, u) ** 2, q)


def mean_phi(name: str, q: float) -> float:
    """E[phi(sqrt(q) z)]: the mean of a layer's outputs at pre-activation variance q."""
    return gaussian_mean(lambda u: phi(name, u), q)


def var_phi(name: str, q: float) -> float:
    """Var[phi(sqrt(q) z)]: the spread of one unit's output over a batch."""
    return max(mean_phi2(name, q) - mean_phi(name, q) ** 2, 0.0)


def batchnorm_chi(name: str) -> float:
    """Large-batch growth of ||delta||^2 per layer in a dense -> BN -> phi stack at init.

    Batch norm divides the backward signal by the batch spread of the
    pre-activation, sqrt(sigma_w^2 Var[phi(x)]), while the weights above multiply
    it by sigma_w^2 E[phi'(x)^2]; x ~ N(0, 1) after normalization, so the weight
    scale cancels and ||delta||^2 grows by E[phi'(x)^2] / Var[phi(x)] per layer
    (Yang et al. 2019: pi / (pi - 1) ~ 1.47 for ReLU).
    """
    return mean_dphi2(name, 1.0) / var_phi(name, 1.0)


# -- initializations as sigma_w^2 -------------------------------------------------

def _he_slope(activation: str | None) -> float:
    if activation == "leaky_relu":
        return LEAKY_SLOPE
    if activation == "prelu":
        return PRELU_INIT_SLOPE
    return 0.0


def effective_sigma_w2(spec: NetworkSpec, k: int) -> float:
    """``fan_in * Var[W_k]`` for weight layer k (1..L+1) under ``spec``'s initialization.

    This is the factor the mean-field recursions call sigma_w^2: the forward
    variance and the backward ``||delta||^2`` are both multiplied by it.
    """
    n_weight_layers = spec.depth + 1
    if not isinstance(k, int) or not 1 <= k <= n_weight_layers:
        raise ValueError(f"weight layers are numbered 1..{n_weight_layers}, got {k!r}")
    fan_in, fan_out = spec.widths[k - 1], spec.widths[k]
    g2 = spec.gain ** 2
    init = spec.init
    if init == "uniform_fanin":
        # U[-1/sqrt(n), 1/sqrt(n)] has variance 1/(3n)
        return g2 / 3.0
    if init in ("glorot_uniform", "glorot_normal"):
        return g2 * 2.0 * fan_in / (fan_in + fan_out)
    if init in ("he_uniform", "he_normal"):
        # the slope is that of layer k's own activation; the output layer is linear
        activation = spec.hidden[k - 1].activation if k <= spec.depth else None
        a = _he_slope(activation)
        return g2 * 2.0 / (1.0 + a * a)
    if init == "lecun_normal":
        return g2
    if init == "orthogonal":
        # orthonormal rows (fan_in < fan_out) give Var = 1/fan_out, columns 1/fan_in
        return g2 * (fan_in / fan_out if fan_in < fan_out else 1.0)
    if init == "mean_field":
        return (spec.gain * spec.sigma_w) ** 2
    raise ValueError(f"unknown initialization {init!r}")


def effective_sigma_b2(spec: NetworkSpec) -> float:
    """Bias variance: sigma_b^2 for the mean-field init, 0 for every other init."""
    return spec.sigma_b ** 2 if spec.init == "mean_field" else 0.0


# -- fixed point and chi_1 --------------------------------------------------------

def _variance_map(name: str, sigma_w2: float, sigma_b2: float, q: float) -> float:
    return sigma_w2 * mean_phi2(name, q) + sigma_b2


def fixed_point_q(name: str, sigma_w2: float, sigma_b2: float, q_start: float = 1.0) -> float:
    """The fixed point q* that the variance recursion reaches from ``q_start``.

    Returns 0.0 when the signal dies out (e.g. tanh with sigma_b = 0 and
    sigma_w <= 1) and ``inf`` when the variance grows without bound (e.g. ReLU
    with sigma_w^2 > 2). For a piecewise-linear activation with sigma_b = 0 at
    exactly the critical sigma_w every q is a fixed point; ``q_start`` is returned.
    """
    sigma_w2, sigma_b2, q_start = float(sigma_w2), float(sigma_b2), float(q_start)
    if not (sigma_w2 >= 0 and sigma_b2 >= 0 and q_start >= 0):
        raise ValueError("sigma_w2, sigma_b2 and q_start must be non-negative")
    phi(name, 0.0)  # validates the name

    if name in PIECEWISE_LINEAR_SLOPE:
        # the map is linear: q -> c q + sigma_b^2 with c = sigma_w^2 (1 + a^2) / 2
        a = PIECEWISE_LINEAR_SLOPE[name]
        c = 0.5 * sigma_w2 * (1.0 + a * a)
        if abs(c - 1.0) < 1e-12:
            return q_start if sigma_b2 == 0.0 else math.inf
        if c > 1.0:
            return 0.0 if (q_start == 0.0 and sigma_b2 == 0.0) else math.inf
        return sigma_b2 / (1.0 - c)

    slope0 = float(dphi(name, 0.0)) ** 2
    if sigma_b2 == 0.0 and name in _CONTRACTIVE_AT_ZERO and sigma_w2 * slope0 <= 1.0:
        # the map stays below the identity for every q > 0, so q = 0 attracts
        # everything (convergence is only algebraic at the critical sigma_w)
        return 0.0

    def excess(q: float) -> float:
        return _variance_map(name, sigma_w2, sigma_b2, q) - q

    # The map is increasing in q, so iterating it from q_start moves
    # monotonically towards the nearest fixed point in the direction of the
    # first step. Bracket that fixed point by doubling or halving, then solve:
    # plain iteration can take thousands of steps near the critical line.
    g = excess(q_start)
    if g == 0.0:
        return q_start
    if g > 0.0:
        lo, hi = q_start, max(q_start, 1e-6)
        while excess(hi) > 0.0:
            lo, hi = hi, 2.0 * hi
            if hi > _Q_INFINITE:
                return math.inf
    else:
        lo, hi = q_start / 2.0, q_start
        while excess(lo) < 0.0:
            lo, hi = lo / 2.0, lo
            if lo < _Q_VANISHED:
                return 0.0
    # bisection: the bracket is at most a factor 2 wide, so ~50 halvings reach
    # double precision, and it cannot step outside the bracket
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi or hi - lo <= 1e-15 * hi:
            break
        if excess(mid) > 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def chi1(name: str, sigma_w2: float, sigma_b2: float) -> float:
    """chi_1 = sigma_w^2 E[phi'(sqrt(q*) z)^2]: the per-layer factor on ||delta||^2 at q*."""
    q_star = fixed_point_q(name, sigma_w2, sigma_b2)
    return float(sigma_w2) * mean_dphi2(name, q_star)


def depth_scale(chi: float) -> float:
    """Layers over which ||delta||^2 changes by a factor e: 1 / |ln chi| (inf at chi = 1).

    Schoenholz et al. write -1/ln chi_1, which is negative in the chaotic
    phase; here it is always positive and ``phase`` says which way it goes.
    """
    if not math.isfinite(chi):
        return 0.0
    if chi <= 0.0:
        return 0.0
    log_chi = math.log(chi)
    return math.inf if log_chi == 0.0 else 1.0 / abs(log_chi)


def phase_of(chi: float) -> str:
    if chi < ORDERED_BELOW:
        return "ordered"
    if chi > CHAOTIC_ABOVE:
        return "chaotic"
    return "critical"


# -- the whole network ------------------------------------------------------------

def _frozen(values) -> np.ndarray:
    a = np.array(values, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class MeanFieldPrediction:
    """What mean-field theory expects of a freshly initialized ``spec``.

    Arrays have one entry per weight layer, index ``i`` for layer ``i + 1``
    (hidden layers 1..L, then the output layer L+1).
    """

    q: np.ndarray  # variance of the pre-activations z_k, propagated from the input
    sigma_w2: np.ndarray  # fan_in * Var[W_k]
    chi: np.ndarray  # ||delta_k||^2 / ||delta_{k+1}||^2 expected; 1 for the output layer
    predicted_ratio: np.ndarray  # expected ||delta_k|| / ||delta_{L+1}||; 1 at the output
    chi_star: float  # chi_1 at the fixed point (uniform stack) or geometric mean of chi
    depth_scale: float  # 1 / |ln chi_star| layers; inf when critical
    phase: str  # "ordered" (vanishing), "critical" or "chaotic" (exploding)
    caveats: list[str] = field(default_factory=list)
    q0: float = 1.0  # mean square of the input features assumed
    sigma_b2: float = 0.0

    @property
    def n_layers(self) -> int:
        return len(self.q)


def has_bn_any(spec: NetworkSpec) -> bool:
    return any(h.batchnorm for h in spec.hidden)


def _uniform_hidden_stack(spec: NetworkSpec, sigma_w2: np.ndarray) -> bool:
    """All hidden layers share one activation and hidden-to-hidden weight scale."""
    if spec.depth < 2:
        return False
    if len({h.activation for h in spec.hidden}) != 1:
        return False
    inner = sigma_w2[1 : spec.depth]  # weights of layers 2..L
    return bool(np.allclose(inner, inner[0], rtol=1e-12, atol=0.0))


def mean_field(spec: NetworkSpec, q0: float | None = None) -> MeanFieldPrediction:
    """Propagate the input variance ``q0`` (mean square of an input feature,
    default 1.0) forward and the expected gradient factors backward.

    Batch norm is modelled at large batch (``batchnorm_chi``); skip links are
    ignored (and named in ``caveats``).
    """
    q0 = 1.0 if q0 is None else float(q0)
    if not math.isfinite(q0) or q0 < 0:
        raise ValueError(f"q0 must be a finite non-negative number, got {q0!r}")
    depth = spec.depth
    n = depth + 1
    sigma_w2 = np.array([effective_sigma_w2(spec, k) for k in range(1, n + 1)])
    sigma_b2 = effective_sigma_b2(spec)

    # forward: q_1 from the raw input, then through each hidden activation.
    # A batch-norm layer rescales its pre-activation to unit variance over the
    # batch, so its activation sees q = 1 whatever came in; what it divides by
    # is the batch spread of z_k, sigma_w^2 times the spread of its input.
    q = np.empty(n)
    q_act = np.empty(depth)
    spread = np.empty(n)  # batch variance of z_k
    second_moment = batch_var = q0
    for i in range(n):
        q[i] = sigma_w2[i] * second_moment + sigma_b2
        spread[i] = sigma_w2[i] * batch_var + (0.0 if i < depth and spec.hidden[i].batchnorm
                                               else sigma_b2)
        if i < depth:
            act = spec.hidden[i].activation
            q_act[i] = 1.0 if spec.hidden[i].batchnorm else q[i]
            second_moment = mean_phi2(act, q_act[i])
            # the next layer's batch norm (if any) removes the batch mean: keep the spread
            batch_var = var_phi(act, q_act[i])

    # backward: chi_k for hidden layer k uses the weights above it, W_{k+1}, and a
    # batch-norm layer divides by its pre-activation's batch spread
    chi = np.ones(n)
    for i in range(depth):
        chi[i] = sigma_w2[i + 1] * mean_dphi2(spec.hidden[i].activation, q_act[i])
        if spec.hidden[i].batchnorm:
            chi[i] = chi[i] / spread[i] if spread[i] > 0 else 0.0
    ratio = np.ones(n)
    with np.errstate(over="ignore", under="ignore"):
        for i in range(depth - 1, -1, -1):
            ratio[i] = ratio[i + 1] * math.sqrt(chi[i])

    caveats: list[str] = []
    if depth == 0:
        chi_star = 1.0
        caveats.append("There are no hidden layers, so there is nothing for the gradient to "
                       "vanish through.")
    elif all(h.batchnorm for h in spec.hidden) and len({h.activation for h in spec.hidden}) == 1:
        # every layer normalized: the per-layer factor does not depend on the weights
        chi_star = batchnorm_chi(spec.hidden[0].activation)
    elif _uniform_hidden_stack(spec, sigma_w2) and not has_bn_any(spec):
        chi_star = chi1(spec.hidden[0].activation, float(sigma_w2[1]), sigma_b2)
    else:
        hidden_chi = chi[:depth]
        if np.any(hidden_chi <= 0):
            chi_star = 0.0
        else:
            chi_star = float(np.exp(np.mean(np.log(hidden_chi))))
        if len({h.activation for h in spec.hidden}) > 1:
            caveats.append("Layers use different activations: chi* is the geometric mean of "
                           "the per-layer factors, not a fixed-point value.")
        elif depth == 1:
            caveats.append("With a single hidden layer chi* is that layer's own factor, not a "
                           "fixed-point value.")
        else:
            caveats.append("The weight scale differs between layers: chi* is the geometric "
                           "mean of the per-layer factors.")

    has_skips = bool(spec.skips)
    has_bn = any(h.batchnorm for h in spec.hidden)
    if has_skips:
        caveats.append("Skip links are not part of this prediction; they usually keep the "
                       "real gradient larger than predicted.")
    if has_bn:
        caveats.append("Batch norm is modelled at large batch: at initialization it makes "
                       "||delta||^2 grow towards the input by E[phi'^2]/Var[phi] per layer "
                       "(pi/(pi-1) = 1.47 for ReLU); small batches grow a little faster.")
    hidden_widths = {h.width for h in spec.hidden}
    if len(hidden_widths) > 1:
        caveats.append("Widths vary between hidden layers; the theory assumes every layer "
                       "is wide and treats each one separately.")
    if hidden_widths and min(hidden_widths) < 32:
        caveats.append(f"The narrowest hidden layer has only {min(hidden_widths)} units; the "
                       "theory describes the average over many wide networks, and a narrow "
                       "one can differ a lot from it.")
    if depth and all(h.activation == "selu" for h in spec.hidden) and chi_star > 1.0:
        caveats.append("SELU's self-normalizing fixed point sits slightly on the chaotic side "
                       f"(chi* = {chi_star:.3f}): the gradient grows, but only slowly.")
    if any(h.activation == "prelu" for h in spec.hidden):
        caveats.append("PReLU slopes are learned; the prediction uses their initial "
                       f"value {PRELU_INIT_SLOPE}.")

    return MeanFieldPrediction(
        q=_frozen(q),
        sigma_w2=_frozen(sigma_w2),
        chi=_frozen(chi),
        predicted_ratio=_frozen(ratio),
        chi_star=float(chi_star),
        depth_scale=depth_scale(chi_star),
        phase=phase_of(chi_star),
        caveats=caveats,
        q0=q0,
        sigma_b2=sigma_b2,
    )
