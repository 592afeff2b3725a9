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


@pytest.mark.parametrize("key, cell, want", [
    ("switch_lstm", "rnn", "lstm"), ("switch_gru", "rnn", "gru"),
    ("orthogonal_init", "rnn", "rnn"), ("forget_bias", "lstm", "lstm"),
    ("clip_norm", "gru", "gru")])
def test_a_comparison_gives_way_to_the_remedied_cell(key, cell, want):
    exp = _exp(compare=("rnn", "lstm", "gru"))
    got = remedy_for_cell(exp, cell, key)
    assert got.compare == () and got.cells == (want,)
    assert got == apply_remedy(exp.with_cell(cell), key)
    assert got.task == exp.task and got.seed == exp.seed
