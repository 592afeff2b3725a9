"""The through-time findings against labelled healthy and sick cells, over several
seeds, on the "RNN vs LSTM, lag 50" preset. At initialization every cell's error
vanishes over 50 steps (the gated cells' gates start half open), and the finding says
so; the LSTM's and GRU's findings say that their gates can learn to pass the error on,
and carry no remedy (there is nothing to change). After 800 steps the LSTM and GRU have
learned it (healthy: no finding about the gradient), the tanh RNN has not (sick). The
exploding RNN is flagged at every seed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from simulator.recurrent.diagnosis import diagnose
from simulator.recurrent.experiment import load_recurrent_preset
from simulator.recurrent.simulation import RecurrentSimulation

SEEDS = (0, 1, 2)
GRADIENT_KINDS = {"vanishing_through_time", "exploding_through_time", "diverged"}
TRAINED = 800  # steps: every seed's LSTM and GRU bridge the lag by then (measured)


def _findings(exp, steps: int | None = None) -> dict:
    sim = RecurrentSimulation(exp)
    if steps is None:  # one whole forward and backward pass at initialization
        for _ in range(sim.n_micro_steps - 1):
            sim.micro_step()
    else:
        sim.run(steps)
    return {f.kind: f for f in diagnose(exp, sim.snapshot())}


@pytest.mark.parametrize("seed", SEEDS)
def test_at_initialization_every_cell_vanishes_and_the_gated_ones_are_told_why(seed):
    exp = replace(load_recurrent_preset("rnn_vs_lstm_lag50"), seed=seed)
    rnn = _findings(exp.with_cell("rnn"))["vanishing_through_time"]
    assert rnn.severity == "critical" and "gates" not in rnn.detail
    assert [r.key for r in rnn.remedies] == ["switch_lstm", "switch_gru", "orthogonal_init"]
    for cell in ("lstm", "gru"):
        f = _findings(exp.with_cell(cell))["vanishing_through_time"]
        assert f.severity == "warning" and f.remedies == ()
        assert "gates can learn to let the error through" in f.detail


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_after_training_the_gated_cells_are_healthy_and_the_rnn_is_not(seed):
    exp = replace(load_recurrent_preset("rnn_vs_lstm_lag50"), seed=seed)
    assert "vanishing_through_time" in _findings(exp.with_cell("rnn"), TRAINED)
    for cell in ("lstm", "gru"):
        assert not set(_findings(exp.with_cell(cell), TRAINED)) & GRADIENT_KINDS, (cell, seed)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_exploding_rnn_is_flagged(seed):
    exp = replace(load_recurrent_preset("exploding_rnn"), seed=seed)
    assert "exploding_through_time" in _findings(exp)
