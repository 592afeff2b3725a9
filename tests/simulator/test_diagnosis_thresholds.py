"""Every diagnosis threshold tested exactly at its value and one step past it.

A comparison turned from ``>`` into ``>=`` (or the reverse) changes the
outcome exactly at the threshold, so each case puts the measured number on
the threshold (or one float step beside it) and asserts which side it lands.
"""

import dataclasses

import numpy as np
import pytest

from simulator import diagnosis as D
from simulator.diagnosis import diagnose
from simulator.spec import uniform_spec
from tests.simulator.test_diagnosis import NAN, kinds, make_history, make_snapshot, only

RELU5 = uniform_spec(4, 2, 5, 10, "relu", init="he_normal")
TANH3 = uniform_spec(4, 2, 3, 10, "tanh", init="glorot_uniform")
up = np.nextafter  # one float step: up(x, inf) just above, up(x, -inf) just below


def deltas(low: float, n: int = 6) -> np.ndarray:
    """||delta_out|| = 1, layer 1 = ``low`` (so the ratio is exactly ``low``), others 1."""
    d = np.ones(n)
    d[0] = low
    return d


def finding(spec, snap, kind, **kw):
    found = [f for f in diagnose(spec, snap, **kw) if f.kind == kind]
    return found[0] if found else None


def test_vanishing_ratio():
    t = D.VANISHING_RATIO
    even = [1e-3] * 6  # even updates: the weaker "learns slowly" test stays out
    assert finding(RELU5, make_snapshot(RELU5, delta=deltas(t), update=even), "vanishing") is None
    f = finding(RELU5, make_snapshot(RELU5, delta=deltas(up(t, 0)), update=even), "vanishing")
    assert f.title == "Vanishing gradient"


def test_vanishing_critical():
    t = D.VANISHING_CRITICAL
    assert finding(RELU5, make_snapshot(RELU5, delta=deltas(t)), "vanishing").severity == \
        "warning"
    assert finding(RELU5, make_snapshot(RELU5, delta=deltas(up(t, 0))), "vanishing").severity \
        == "critical"


def test_weak_vanishing_ratio_and_slow_layer_ratio():
    r, s = D.WEAK_VANISHING_RATIO, D.SLOW_LAYER_RATIO
    upd = lambda first: [first, 1, 1, 1, 1, 1.0]  # noqa: E731 - output layer's update is 1

    def f(ratio, first):
        return finding(RELU5, make_snapshot(RELU5, delta=deltas(ratio), update=upd(first)),
                       "vanishing")

    below_r, below_s = up(r, 0), up(s, 0)
    assert f(below_r, below_s).title == "Lower layers learn slowly"
    assert f(r, below_s) is None  # ratio exactly at its threshold
    assert f(below_r, s) is None  # update ratio exactly at its threshold


def test_exploding_ratio_and_critical():
    t, c = D.EXPLODING_RATIO, D.EXPLODING_CRITICAL
    assert finding(RELU5, make_snapshot(RELU5, delta=deltas(t)), "exploding") is None
    assert finding(RELU5, make_snapshot(RELU5, delta=deltas(up(t, np.inf))), "exploding")
    assert finding(RELU5, make_snapshot(RELU5, delta=deltas(c)), "exploding").severity == \
        "warning"
    assert finding(RELU5, make_snapshot(RELU5, delta=deltas(up(c, np.inf))),
                   "exploding").severity == "critical"


def test_exploding_by_step_size_needs_both_numbers_past_their_thresholds():
    g, s = D.EXPLODING_GROWTH, D.EXPLODING_STEP

    def f(growth, step):
        snap = make_snapshot(RELU5, delta=deltas(growth), update=[1e-3] * 5 + [step])
        return finding(RELU5, snap, "exploding")

    above_g, above_s = up(g, np.inf), up(s, np.inf)
    hit = f(above_g, above_s)
    assert hit is not None and hit.severity == "critical" and hit.layers == (6,)
    assert f(g, above_s) is None
    assert f(above_g, s) is None


def test_exploding_step_before_any_update_comes_from_the_learning_rate():
    from simulator.experiment import TrainSpec

    growth = up(D.EXPLODING_GROWTH, np.inf)
    snap = make_snapshot(RELU5, delta=deltas(growth), grad=[1.0] * 6, step=0)
    # weight norms are 1: the coming step is lr * ||dW|| / ||W|| = lr
    at = TrainSpec(lr=D.EXPLODING_STEP)
    past = TrainSpec(lr=float(up(D.EXPLODING_STEP, np.inf)))
    assert finding(RELU5, snap, "exploding", training=at) is None
    assert "The first step will be" in finding(RELU5, snap, "exploding", training=past).detail


def test_enormous_norm():
    t = D.ENORMOUS_NORM
    assert finding(RELU5, make_snapshot(RELU5, delta=np.full(6, t)), "exploding") is None
    assert finding(RELU5, make_snapshot(RELU5, delta=np.full(6, up(t, np.inf))), "exploding")
    assert finding(RELU5, make_snapshot(RELU5, delta=np.ones(6), grad=[up(t, np.inf)] * 6),
                   "exploding")


def _dead(values):
    return list(values) + [NAN]


def test_dead_fraction():
    t = D.DEAD_FRACTION
    ok = deltas(1.0)
    assert finding(RELU5, make_snapshot(RELU5, delta=ok, dead=_dead([t] * 5)), "dead_units") \
        is None
    f = finding(RELU5, make_snapshot(RELU5, delta=ok, dead=_dead([up(t, 1)] * 5)), "dead_units")
    assert f.severity == "info" and f.title == "Inactive units"


def test_dying_rise_and_dead_critical():
    base_value = 0.25
    dead_value = base_value + D.DYING_RISE
    assert dead_value - base_value == D.DYING_RISE  # exact in binary
    base = make_snapshot(RELU5, dead=_dead([base_value] * 5), step=0)
    ok = deltas(1.0)

    def f(value):
        return finding(RELU5, make_snapshot(RELU5, delta=ok, dead=_dead([value] * 5)),
                       "dead_units", baseline=base)

    assert f(dead_value).title == "Dying ReLU units"
    assert f(up(dead_value, 0)).title == "Inactive units"
    crit_base = make_snapshot(RELU5, dead=_dead([0.5] * 5), step=0)
    g = lambda v: finding(RELU5, make_snapshot(RELU5, delta=ok, dead=_dead([v] * 5)),  # noqa
                          "dead_units", baseline=crit_base)
    assert g(D.DEAD_CRITICAL).severity == "warning"
    assert g(up(D.DEAD_CRITICAL, 1)).severity == "critical"


def test_dead_network_fraction_and_signal():
    frac, sig = D.DEAD_NETWORK_FRACTION, D.DEAD_NETWORK_SIGNAL
    below_sig = up(sig, 0)

    def kinds_for(fraction, ratio):
        snap = make_snapshot(RELU5, delta=deltas(ratio), dead=_dead([0.0, 0.0, fraction, 0, 0]))
        return kinds(diagnose(RELU5, snap))

    assert "dead_network" in kinds_for(frac, below_sig)
    assert "vanishing" not in kinds_for(frac, below_sig)  # the dead layer explains it
    assert "dead_network" not in kinds_for(up(frac, 0), below_sig)
    assert "dead_network" not in kinds_for(frac, sig)


def _tanh_snapshot(a_values):
    """TANH3 with layer 1's ten units at the given activations: one value per unit (the
    same for both examples), or a whole (batch, 10) array."""
    snap = make_snapshot(TANH3, delta=deltas(1.0, 4), saturated=[0.0, 0.0, 0.0, NAN])
    acts = list(snap.activations)
    a = np.asarray(a_values, dtype=np.float64)
    acts[0] = a if a.ndim == 2 else np.tile(a, (2, 1))
    acts[1] = np.zeros((2, 10))
    acts[2] = np.zeros((2, 10))
    return dataclasses.replace(snap, activations=tuple(acts))


def test_saturation_slope_per_unit():
    # five examples: one at a = 0 (tanh slope 1), four at a = 1 (slope 0): mean slope 1/5
    assert D.SATURATION_SLOPE == 0.2
    rows = np.zeros((5, 10))
    rows[1:] = 1.0
    assert np.mean(1.0 - rows[:, 0] ** 2) == D.SATURATION_SLOPE
    at = D.saturated_fraction(TANH3, _tanh_snapshot(rows))
    rows[0] = 1e-8  # slope 1 - 1e-16: the mean falls one step below 1/5
    past = D.saturated_fraction(TANH3, _tanh_snapshot(rows))
    assert at[0] == 0.0 and past[0] == 1.0


def test_saturated_fraction_and_critical():
    flat, steep = 0.999, 0.0  # tanh slopes 0.002 and 1

    def f(n_flat):
        snap = _tanh_snapshot([flat] * n_flat + [steep] * (10 - n_flat))
        return finding(TANH3, snap, "saturation")

    assert D.SATURATED_FRACTION == 0.5 and D.SATURATED_CRITICAL == 0.9  # 5 and 9 of 10 units
    assert f(5) is None
    assert f(6).severity == "warning"
    assert f(9).severity == "warning"
    assert f(10).severity == "critical"


def _stall(losses, update=2e-3):
    history = make_history(6, losses)
    snap = make_snapshot(RELU5, delta=deltas(1.0), update=[update] * 6, step=len(losses))
    return finding(RELU5, snap, "stalled", history=history)


def test_stall_min_drop():
    q = D.STALL_WINDOW // 4
    start = 100.0
    end = start * (1 - D.STALL_MIN_DROP)
    assert (start - end) / start == D.STALL_MIN_DROP
    middle = np.full(D.STALL_WINDOW - 2 * q, start)
    losses = np.concatenate([np.full(q, start), middle, np.full(q, end)])
    assert _stall(losses) is None  # fell by exactly the minimum
    losses[-q:] = up(end, np.inf)
    assert _stall(losses) is not None


def test_stall_loss_floor_rise_and_spike():
    w = D.STALL_WINDOW
    floor = D.STALL_LOSS_FLOOR
    assert _stall(np.full(w, floor)) is None
    assert _stall(np.full(w, up(floor, 1))) is not None
    q = w // 4
    rise_end = 100.0 * (1 + D.STALL_RISE)
    assert (100.0 - rise_end) / 100.0 == -D.STALL_RISE
    losses = np.concatenate([np.full(q, 100.0), np.full(w - 2 * q, 100.0), np.full(q, rise_end)])
    assert _stall(losses).title == "Loss has stalled"
    losses[-q:] = up(rise_end, np.inf)
    assert _stall(losses).title == "Loss is rising"
    spike = np.full(w, 1.0)
    spike[w // 2] = D.STALL_SPIKE  # the median stays 1
    assert "jumps as high" not in _stall(spike).detail
    spike[w // 2] = up(D.STALL_SPIKE, np.inf)
    assert "jumps as high" in _stall(spike).detail


@pytest.mark.parametrize("kind,make", [
    ("vanishing", lambda x: make_snapshot(RELU5, delta=deltas(x), update=[1e-3] * 6)),
    ("exploding", lambda x: make_snapshot(RELU5, delta=deltas(1.0 / x))),
])
def test_hysteresis_holds_a_finding_until_clearly_healthy(kind, make):
    # a ratio 1.5x on the healthy side of the threshold: off when new, held when raised
    x = D.VANISHING_RATIO * 1.5 if kind == "vanishing" else 1.0 / (D.EXPLODING_RATIO / 1.5)
    snap = make(x)
    assert kind not in kinds(diagnose(RELU5, snap))
    assert kind in kinds(diagnose(RELU5, snap, previous=[kind]))
    far = make(x * D.HOLD_FACTOR)
    assert kind not in kinds(diagnose(RELU5, far, previous=[kind]))


def test_only_a_layer_s_measured_saturation_counts():
    snap = _tanh_snapshot([0.999] * 10)
    assert only(diagnose(TANH3, snap), "saturation")
    unmeasured = dataclasses.replace(snap, saturated_fraction=np.full(4, np.nan))
    assert "saturation" not in kinds(diagnose(TANH3, unmeasured))


def test_title_switches_to_vanishing_just_below_the_ratio_not_at_it():
    """A layer whose updates crawl is "learning slowly" at exactly VANISHING_RATIO and
    "vanishing" one float step below it (the title's own comparison)."""
    t, slow = D.VANISHING_RATIO, up(D.SLOW_LAYER_RATIO, 0)
    upd = [slow, 1, 1, 1, 1, 1.0]
    at = finding(RELU5, make_snapshot(RELU5, delta=deltas(t), update=upd), "vanishing")
    below = finding(RELU5, make_snapshot(RELU5, delta=deltas(up(t, 0)), update=upd), "vanishing")
    assert at.title == "Lower layers learn slowly"
    assert below.title == "Vanishing gradient"
