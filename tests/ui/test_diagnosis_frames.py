"""The diagnosis panel frame by frame: a finding shows at the first frame it is true,
the cards of findings that stay are kept (not rebuilt), and a snapshot drawn again
with nothing new is not diagnosed again."""

import pytest

pytest.importorskip("PySide6")

import ui.views.diagnosis as diagnosis_view  # noqa: E402
from simulator.data import DataSpec  # noqa: E402
from simulator.diagnosis import diagnose  # noqa: E402
from simulator.experiment import Experiment, TrainSpec  # noqa: E402
from simulator.spec import uniform_spec  # noqa: E402
from tests.ui.test_views import show  # noqa: E402
from ui.controller import SimulationController  # noqa: E402
from ui.views.diagnosis import DiagnosisPanel  # noqa: E402

pytestmark = pytest.mark.qt


def _relu_too_fast() -> SimulationController:
    """ReLU with a learning rate so large that units die within a few steps."""
    return SimulationController(Experiment(
        "dying", "", uniform_spec(2, 2, 4, 8, "relu"), DataSpec(kind="spiral", n_samples=100),
        TrainSpec(lr=3.0, batch_size=16), seed=0))


def test_each_frame_shows_the_findings_of_its_snapshot(qtbot, qapp):
    c = _relu_too_fast()
    panel = show(qtbot, DiagnosisPanel(c), (380, 700))
    baseline, previous = c.snapshot, []
    seen = []
    for _ in range(20):
        c.step()  # one frame, as a press of Step
        snap = c.snapshot
        with c.locked() as sim:
            expected = diagnose(snap.spec, snap, sim.history, sim.training,
                                baseline=baseline, previous=previous)
        previous = expected
        kinds = [f.kind for f in expected]
        assert [card.kind for card in panel.cards] == kinds
        for card, f in zip(panel.cards, expected, strict=True):
            assert card.detail.text() == f.detail
        seen.append(tuple(kinds))
    # the findings changed during the run: a new one appeared at its own frame
    assert "dead_units" in seen[-1] and "dead_units" not in seen[0]
    c.shutdown()
    c.deleteLater()


def test_cards_are_kept_while_their_findings_stay(qtbot, qapp):
    c = _relu_too_fast()
    panel = show(qtbot, DiagnosisPanel(c), (380, 700))
    c.run_steps(12)
    cards = list(panel.cards)
    kinds = [card.kind for card in cards]
    same = 0
    for _ in range(3):
        c.step()
        if [card.kind for card in panel.cards] == kinds:
            assert all(a is b for a, b in zip(panel.cards, cards, strict=True))
            same += 1
    assert same  # the findings stayed for at least one frame
    # drawn again without anything new (as when play stops): not diagnosed again
    calls = []
    real = diagnosis_view.diagnose

    def counting(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    diagnosis_view.diagnose = counting
    try:
        cards = list(panel.cards)
        panel.render_snapshot(c.snapshot, force=True)
        assert calls == []
        assert all(a is b for a, b in zip(panel.cards, cards, strict=True))
        c.step()  # a new step is diagnosed
        assert calls == [1]
    finally:
        diagnosis_view.diagnose = real
    c.shutdown()
    c.deleteLater()
