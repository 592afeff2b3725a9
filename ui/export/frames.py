"""What an export shows, frame by frame: ``FrameSource`` steps the export's own
controller and yields ``(snapshot, FrameInfo)`` per iteration or per micro-step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ui.export_spec import ExportError, count_frames


@dataclass(frozen=True)
class FrameInfo:
    index: int
    step: int
    phase: str
    layer: int
    loss: float

    def to_json(self) -> dict:
        loss = self.loss if math.isfinite(self.loss) else None
        return {"index": self.index, "step": self.step, "phase": self.phase,
                "layer": self.layer, "loss": loss}


def phase_text(phase: str, layer: int, n_layers: int) -> str:
    """'backward · layer 3', 'forward · output layer', 'loss', ..."""
    if phase in ("forward", "backward") and layer:
        where = "output layer" if layer == n_layers else f"layer {layer}"
        return f"{phase} · {where}"
    return phase


class FrameSource:
    """Steps a controller from its current state and yields ``(snapshot, FrameInfo)``.

    Frame 0 is the state as it is. Then, per iteration: one frame after every
    ``every``-th iteration (and after the last). Per micro-step: every micro-step
    (forward 1..N, loss, backward N..1, update) of every ``every``-th iteration;
    the iterations in between run at full speed.

    ``quiet`` blocks the controller's signals while stepping, for captures that
    call ``render_snapshot`` themselves (so no view draws a frame twice).
    Stops early if training diverges (``diverged`` is then the report).
    """

    def __init__(self, controller, steps: int, micro: bool = False, every: int = 1,
                 quiet: bool = True):
        sim = controller.sim
        if sim is None:
            raise ExportError("The simulation is not ready yet; wait until it has started.")
        if sim.divergence is not None:
            raise ExportError("The simulation has diverged, so there is nothing to animate: "
                              "reset it (or fix the settings) and export again.")
        self.controller = controller
        self.steps, self.micro, self.every = int(steps), bool(micro), max(1, int(every))
        self.quiet = quiet
        self.n_micro_steps = sim.n_micro_steps
        self.position = sim.position if micro else 0
        self.total = count_frames(self.steps, self.micro, self.every, self.n_micro_steps,
                                  self.position)
        self.diverged = None

    def _advance(self, action: Callable[[], None]):
        c = self.controller
        blocked = c.blockSignals(True) if self.quiet else None
        try:
            action()
        finally:
            if self.quiet:
                c.blockSignals(blocked)
        return c.snapshot

    def _frame(self, index: int, snap) -> tuple[object, FrameInfo]:
        return snap, FrameInfo(index, int(snap.step), snap.phase, int(snap.layer),
                               float(snap.loss))

    def __iter__(self) -> Iterator[tuple[object, FrameInfo]]:
        c = self.controller
        snap = c.snapshot
        if snap is None:
            with c.locked() as sim:
                snap = sim.snapshot()
        index = 0
        yield self._frame(index, snap)
        done = 0
        while done < self.steps:
            if self.micro and done % self.every == 0:
                start = snap.step
                while True:
                    snap = self._advance(c.micro_step)
                    index += 1
                    yield self._frame(index, snap)
                    if snap.divergence is not None or snap.step != start:
                        break
                done += 1
            else:
                n = min(self.every - done % self.every, self.steps - done)
                snap = self._advance(lambda n=n: c.run_steps(n))
                done += n
                if not self.micro:
                    index += 1
                    yield self._frame(index, snap)
            if snap.divergence is not None:
                self.diverged = snap.divergence
                return


