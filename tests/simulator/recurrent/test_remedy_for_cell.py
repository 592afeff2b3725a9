"""remedy_for_cell: the remedy a through-time column's button applies (no Qt)."""

from __future__ import annotations

import pytest

from simulator.experiment import TrainSpec
from simulator.recurrent.diagnosis import REMEDIES, apply_remedy, remedy_for_cell
from simulator.recurrent.experiment import RecurrentExperiment
from simulator.recurrent.tasks import TaskSpec


def _exp(compare=()):
    return RecurrentExperiment.build(
        "t", TaskSpec(kind="adding", lag=5, n_samples=20), TrainSpec(clip_norm=0.0),
        cell="rnn", hidden=4, forget_bias=0.0, compare=compare)


@pytest.mark.parametrize("key", list(REMEDIES))
def test_one_cell_gets_the_remedy_itself(key):
    exp = _exp()
    assert remedy_for_cell(exp, "rnn", key) == apply_remedy(exp, key)


@pytest.mark.parametrize("key", ["orthogonal_init", "forget_bias", "clip_norm"])
def test_a_setting_remedy_changes_every_column_of_a_comparison(key):
    exp = _exp(compare=("rnn", "lstm", "gru"))
    got = remedy_for_cell(exp, "rnn", key)
    assert got.cells == ("rnn", "lstm", "gru")
    assert got == apply_remedy(exp, key) and got != exp


@pytest.mark.parametrize("compare, key, cell, want", [
    (("rnn", "lstm", "gru"), "switch_lstm", "rnn", ("lstm", "gru")),  # LSTM on show already
    (("rnn", "gru"), "switch_lstm", "rnn", ("lstm", "gru")),  # the column becomes an LSTM
    (("rnn", "lstm"), "switch_gru", "rnn", ("gru", "lstm")),
    (("lstm_no_forget", "rnn"), "add_forget_gate", "lstm_no_forget", ("lstm", "rnn")),
    (("rnn", "lstm"), "switch_lstm", "rnn", ("lstm",))])  # one cell left: no comparison
def test_a_cell_switch_replaces_that_column(compare, key, cell, want):
    exp = _exp(compare=compare)
    got = remedy_for_cell(exp, cell, key)
    assert got.cells == want and got.recurrent.cell in want
    assert got.compare == (want if len(want) > 1 else ())
    assert got.task == exp.task and got.seed == exp.seed and got.training == exp.training
