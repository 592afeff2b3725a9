"""The history keeps the whole run: the newest steps at full resolution, older ones
thinned out evenly, in memory that never grows."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.snapshot import HIST_COLUMNS, History


def _feed(h: History, start: int, n: int, one_at_a_time: bool) -> None:
    steps = np.arange(start + 1, start + n + 1, dtype=np.float64)
    per_layer = np.repeat(steps[:, None, None], h.n_layers, axis=1)
    per_layer = np.repeat(per_layer, len(HIST_COLUMNS), axis=2).astype(np.float32)
    if one_at_a_time:
        for i in range(n):
            h.record(steps[i], steps[i], 0.5, np.nan, np.nan, per_layer[i])
    else:
        h.record_many(steps, steps, np.full(n, 0.5), np.full(n, np.nan), np.full(n, np.nan),
                      per_layer)


@pytest.mark.parametrize("capacity", [1, 2, 7, 100])
def test_whole_run_kept_at_reduced_resolution_in_fixed_memory(capacity):
    h = History(3, capacity=capacity)
    size = h.nbytes
    rng = np.random.default_rng(capacity)
    total = 0
    while total < 60 * capacity + 17:
        n = int(rng.integers(1, 3 * capacity + 2))
        _feed(h, total, n, one_at_a_time=bool(rng.integers(2)))
        total += n
        steps = h.steps()
        assert h.nbytes == size and len(h) <= capacity
        assert steps[-1] == total and np.all(np.diff(steps) > 0)
        if capacity >= 2:
            assert steps[0] == 1  # the start of the run never scrolls out
        recent = capacity - capacity // 2
        np.testing.assert_array_equal(steps[-min(recent, total):],
                                      np.arange(total - min(recent, total) + 1, total + 1))
        # every row still belongs to its step
        np.testing.assert_array_equal(h.scalar("loss"), steps)
        np.testing.assert_array_equal(h.layer_series(1)[:, 2], steps.astype(np.float32))
    if capacity >= 7:
        old = steps[: len(steps) - h.n_recent]
        gaps = np.diff(old)
        assert np.all(gaps == h.stride)  # evenly thinned
        assert len(h) >= capacity * 3 // 4  # and most of the memory in use


def test_one_at_a_time_equals_in_chunks():
    one, many = History(2, capacity=40), History(2, capacity=40)
    start = 0
    for n in (3, 50, 1, 1, 90, 7, 400, 2):
        _feed(one, start, n, True)
        _feed(many, start, n, False)
        start += n
        np.testing.assert_array_equal(one.steps(), many.steps())
        np.testing.assert_array_equal(one.layer_series(0), many.layer_series(0))


def test_clear_starts_over():
    h = History(2, capacity=8)
    _feed(h, 0, 100, False)
    h.clear()
    assert len(h) == 0 and h.stride == 1
    _feed(h, 0, 3, True)
    np.testing.assert_array_equal(h.steps(), [1, 2, 3])
