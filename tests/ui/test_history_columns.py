"""The gradient-history heatmap updates only the columns whose steps changed: what it
shows after any number of incremental updates is what a from-scratch computation of
the same history shows, and that is the mean log10 |delta| of each column's steps."""

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")

from simulator.snapshot import HIST_COLUMNS, HIST_DELTA, History  # noqa: E402
from tests.ui.test_views import experiment, show  # noqa: E402
from ui.controller import SimulationController  # noqa: E402
from ui.views.history import GradientHistoryView, read_columns  # noqa: E402

pytestmark = pytest.mark.qt


def _row(rng, n_layers: int, step: int) -> np.ndarray:
    """One step's per-layer numbers: ||delta|| spread over decades, with an exact zero,
    an infinite value and a step not measured now and then."""
    out = np.full((n_layers, len(HIST_COLUMNS)), np.nan, np.float32)
    delta = 10.0 ** rng.uniform(-6, 1, n_layers)
    if step % 7 == 0:
        delta[1] = 0.0
    if step % 53 == 0:
        delta[0] = np.inf
    if step % 11 == 0:
        delta[2] = np.nan
    out[:, HIST_DELTA] = delta
    return out


def _reference(history: History, f: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The picture by its definition, in float64: column c holds the steps
    first + c f .. first + (c + 1) f - 1; each layer's value is the mean of their
    log10 |delta| (exact zeros at the bottom of the scale, inf at its top, NaN left
    out); a column without steps shows the column before it."""
    steps = history.steps()
    logs = np.abs(history.layer_series(HIST_DELTA).astype(np.float64))
    with np.errstate(divide="ignore"):
        logs = np.log10(logs)
    finite = logs[np.isfinite(logs)]
    lo, hi = math.floor(finite.min()), math.ceil(finite.max())
    hi = hi if hi > lo else lo + 1
    logs[np.isneginf(logs)] = lo
    logs[np.isposinf(logs)] = hi
    col = ((steps - steps[0]) // f).astype(int)
    out = np.full((history.n_layers, col[-1] + 1), np.nan)
    for c in range(col[-1] + 1):
        rows = logs[col == c]
        if len(rows):
            with np.errstate(invalid="ignore"):
                out[:, c] = [np.nan if np.isnan(r).all() else np.nanmean(r) for r in rows.T]
        elif c:
            out[:, c] = out[:, c - 1]
    return out, (lo, hi)


@pytest.mark.parametrize("f", [1, 3])
def test_incremental_columns_equal_a_fresh_computation(f):
    rng = np.random.default_rng(0)
    history = History(n_layers=3, capacity=40)  # past the ring, through several thinnings
    grid, kept = None, 0
    step = 0
    for n in [1] * 150 + [5, 1, 17, 1, 1, 60, 1, 1]:
        rows = [_row(rng, 3, step + i + 1) for i in range(n)]
        for r in rows:
            step += 1
            history.record(step, 0.0, 0.0, np.nan, np.nan, r)
        before = grid
        grid = read_columns(grid, history, history.steps(), f)
        kept += grid is before
        fresh = read_columns(None, history, history.steps(), f)
        np.testing.assert_array_equal(grid.image(), fresh.image())
        assert grid.levels == fresh.levels
        expected, levels = _reference(history, f)
        assert grid.levels == levels
        np.testing.assert_allclose(grid.image(), expected, rtol=1e-5, atol=1e-5)
    assert kept > 100  # most updates recomputed a few columns, not the whole picture


def test_the_view_updates_in_place_and_matches_a_fresh_view(qtbot, qapp):
    c = SimulationController(experiment(depth=3, width=4), history_capacity=60)
    view = show(qtbot, GradientHistoryView(c), (400, 200))
    c.run_steps(2)
    grid = view._columns
    for _ in range(80):  # one step per frame, as stepping by hand; past the ring
        c.step()
    assert view._columns is grid  # the same columns, brought up to date each frame
    assert view.image_data.shape[1] == int(c.sim.history.steps()[-1])  # one per step
    fresh = show(qtbot, GradientHistoryView(c), (400, 200))
    fresh._x_range = view._x_range  # the same step axis: the same columns
    fresh._version = None
    fresh.render_snapshot(c.snapshot, force=True)
    np.testing.assert_array_equal(view.image_data, fresh.image_data)
    np.testing.assert_array_equal(view.image.getLevels(), fresh.image.getLevels())
    c.shutdown()
    c.deleteLater()
