"""A valid network with thousands of skip links (issue 12, item 9): opening it used to
create one graphics item per arc (125 000 skips froze File > Open for 37 s). Arcs are
now two items whatever their number, at most MAX_ARCS are drawn, and a note says so."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from simulator.data import DataSpec  # noqa: E402
from simulator.experiment import Experiment, TrainSpec  # noqa: E402
from simulator.spec import uniform_spec  # noqa: E402

pytestmark = pytest.mark.qt


def all_skips(depth: int) -> Experiment:
    spec = uniform_spec(2, 2, depth=depth, width=2)
    spec = replace(spec, skips=tuple((i, j) for i in range(depth) for j in range(i + 1,
                                                                                  depth + 1)))
    return Experiment("Every skip", "", spec, DataSpec(kind="xor", n_samples=40),
                      TrainSpec(batch_size=8))


def canvas_for(qtbot, experiment):
    from ui.controller import SimulationController
    from ui.views.canvas import NetworkCanvas

    controller = SimulationController(experiment)
    canvas = NetworkCanvas(controller)
    qtbot.addWidget(canvas)
    canvas.resize(900, 450)
    canvas.show()
    qtbot.waitExposed(canvas)
    return controller, canvas


def test_thousands_of_skips_are_a_fixed_number_of_items(qtbot, tiny_experiment):
    from ui.views.canvas import MAX_ARCS

    _, few = canvas_for(qtbot, replace(tiny_experiment, network=replace(
        tiny_experiment.network, skips=((0, 2), (1, 3), (2, 4)))))
    experiment = all_skips(120)
    n = len(experiment.network.skips)
    assert n == 7260 > MAX_ARCS
    _, many = canvas_for(qtbot, experiment)
    # the scene holds the same items whether there are 3 skips or 7 260
    assert len(many.scene().items()) == len(few.scene().items())
    assert len(few.skip_links()) == 3 and few.arc_note() == ""
    drawn = many.skip_links()
    assert len(drawn) == MAX_ARCS and many.arcs_not_drawn == n - MAX_ARCS
    assert set(drawn) <= set(experiment.network.skips)
    assert many.arc_note() == f"{MAX_ARCS:,} of {n:,} skip links drawn"
    # an even choice along the list, both ends included
    skips = experiment.network.skips
    assert skips[0] in drawn and skips[-1] in drawn


def test_a_drawn_arc_is_still_found_under_the_pointer(qtbot):
    experiment = all_skips(12)
    skips = ((0, 12), (3, 7), (5, 6), (8, 10))
    experiment = replace(experiment, network=replace(experiment.network, skips=skips))
    _, canvas = canvas_for(qtbot, experiment)
    assert canvas.arc_note() == "" and set(canvas.skip_links()) == set(skips)
    for skip in skips:
        assert canvas._skip_at(canvas.skip_pos(*skip)) == skip
