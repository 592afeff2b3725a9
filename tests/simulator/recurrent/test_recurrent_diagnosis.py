"""Findings through time quote numbers recomputed here, and their remedies apply."""

from __future__ import annotations

import pytest

from simulator.recurrent.diagnosis import REMEDIES, apply_remedy, diagnose
from simulator.recurrent.experiment import load_recurrent_preset
from simulator.recurrent.simulation import RecurrentSimulation


def _at_init(exp):
    sim = RecurrentSimulation(exp)
    for _ in range(sim.n_micro_steps - 1):
        sim.micro_step()
    return sim.snapshot()


def test_vanishing_rnn_gets_cell_and_init_remedies():
    exp = load_recurrent_preset("rnn_vs_lstm_lag50").with_cell("rnn")
    snap = _at_init(exp)
    (f,) = [f for f in diagnose(exp, snap) if f.kind == "vanishing_through_time"]
    assert f.severity == "critical"
    assert f"{snap.gradient_ratio:.1e}" in f.detail and "50 time steps" in f.detail
    assert [r.key for r in f.remedies] == ["switch_lstm", "switch_gru", "orthogonal_init"]
    fixed = apply_remedy(exp, "orthogonal_init")
    assert fixed.recurrent.init == "orthogonal"
    assert _at_init(fixed).gradient_ratio > 1e6 * snap.gradient_ratio


def test_exploding_rnn_gets_clipping():
    exp = load_recurrent_preset("exploding_rnn")
    snap = _at_init(exp)
    (f,) = [f for f in diagnose(exp, snap) if f.kind == "exploding_through_time"]
    assert f"{snap.gradient_ratio:.3g}" in f.detail
    assert f.remedies[0].key == "clip_norm"
    assert apply_remedy(exp, "clip_norm").training.clip_norm == 1.0
    clipped = load_recurrent_preset("exploding_rnn_clipped")
    f2 = [f for f in diagnose(clipped, _at_init(clipped)) if f.kind == "exploding_through_time"]
    assert "clip_norm" not in [r.key for r in f2[0].remedies]


def test_lstm_without_forget_gate_and_low_forget_bias():
    exp = load_recurrent_preset("rnn_vs_lstm_lag50")
    low = exp.with_cell("lstm")
    low = apply_remedy(low, "switch_lstm")
    from dataclasses import replace
    low = replace(low, recurrent=replace(low.recurrent, forget_bias=-3.0))
    snap = _at_init(low)
    found = {f.kind: f for f in diagnose(low, snap)}
    assert [r.key for r in found["vanishing_through_time"].remedies] == ["forget_bias"]
    assert apply_remedy(low, "forget_bias").recurrent.forget_bias == 1.0


def test_at_baseline_after_enough_steps():
    exp = load_recurrent_preset("rnn_vs_lstm_lag50").with_cell("rnn")
    sim = RecurrentSimulation(exp, eval_every=100)
    sim.run(200)
    snap = sim.snapshot()
    found = {f.kind: f for f in diagnose(exp, snap)}
    assert f"{snap.val_loss:.3g}" in found["at_baseline"].detail
    assert "0.167" in found["at_baseline"].detail


def test_unknown_remedy_is_named():
    with pytest.raises(ValueError, match="remedy: unknown key"):
        apply_remedy(load_recurrent_preset("exploding_rnn"), "more_layers")
    assert set(REMEDIES) >= {"switch_lstm", "switch_gru", "clip_norm", "forget_bias"}
