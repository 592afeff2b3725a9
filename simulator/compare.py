"""Two runs of one experiment in lockstep: A as it is, B with the user's edits.

``Comparison(experiment)`` builds two ``Simulation``s from the same experiment, so
they start from the same weights (same seed), see the same mini-batches in the same
order (the batch order is drawn from the seed too) and the same data. Edits go to
one side through the ordinary ``Simulation`` API (``comparison.b.add_skip(1, 3)``)
and leave the other untouched; with no edit the two stay bit-identical.

Stepping is lockstep: ``step()``, ``run(n)`` and ``micro_step()`` advance both. When
B is pretrained (``pretrain_b``), B's pretraining comes first while A waits, so both
then train the same number of steps from their own starting weights: random for A,
pretrained for B.

``difference_label`` says in words what differs ("B: residual links (1,3) (3,5)",
"B: He init", "B: pretrained"), computed from the two experiments themselves, so it
stays true after any edit or undo.
"""

from __future__ import annotations

from .experiment import Experiment, TrainSpec
from .pretrain import Pretrainer, PretrainSpec
from .simulation import Simulation
from .snapshot import Snapshot
from .spec import NetworkSpec

_INIT_NAMES = {"uniform_fanin": "uniform 1/sqrt(fan-in) init", "glorot_uniform": "Glorot init",
               "glorot_normal": "Glorot (normal) init", "he_uniform": "He (uniform) init",
               "he_normal": "He init", "lecun_normal": "LeCun init",
               "orthogonal": "orthogonal init", "mean_field": "mean-field init"}


class Comparison:
    """Sides ``a`` and ``b`` (Simulations) stepped together."""

    def __init__(self, experiment: Experiment, dataset=None, history_capacity: int = 5000,
                 eval_every: int = 10):
        self.a = Simulation(experiment, dataset=dataset, history_capacity=history_capacity,
                            eval_every=eval_every)
        self.b = Simulation(experiment, dataset=self.a.dataset,
                            history_capacity=history_capacity, eval_every=eval_every)
        self.pretrainer: Pretrainer | None = None

    @property
    def sides(self) -> tuple[Simulation, Simulation]:
        return self.a, self.b

    # -- pretraining B ---------------------------------------------------------------
    def pretrain_b(self, spec: PretrainSpec | None = None) -> Pretrainer:
        """B is pretrained layer by layer before both train on (A waits meanwhile)."""
        self.pretrainer = Pretrainer(self.b, spec)
        return self.pretrainer

    def drop_pretraining(self) -> None:
        self.pretrainer = None

    @property
    def b_pretraining(self) -> bool:
        """True while B is still being pretrained (A waits)."""
        p = self.pretrainer
        return p is not None and not p.done and p.divergence is None

    def _pretrain_steps_left(self) -> int:
        return self.pretrainer.steps_left

    @property
    def b_pretrained(self) -> bool:
        return self.pretrainer is not None

    # -- lockstep --------------------------------------------------------------------
    def micro_step(self) -> None:
        """One micro-step on each side. A side that has finished more iterations than
        the other waits for it, so both complete each iteration together."""
        if self.b_pretraining:
            self.pretrainer.micro_step()
            return
        a, b = self.a, self.b
        # a diverged side has stopped: the other goes on alone
        ca = a.step_count if a.divergence is None else float("inf")
        cb = b.step_count if b.divergence is None else float("inf")
        if ca <= cb:
            a.micro_step()
        if cb <= ca:
            b.micro_step()

    def step(self) -> None:
        """One whole iteration on each side (one pretraining step of B while it pretrains)."""
        if self.b_pretraining:
            self.pretrainer.step()
            return
        self._catch_up()
        self.a.step()
        self.b.step()

    def run(self, n: int) -> None:
        """n iterations: B's remaining pretraining steps first (A waits), then both."""
        if n <= 0:
            return
        if self.b_pretraining:
            m = min(n, self._pretrain_steps_left())
            self.pretrainer.run(m, snapshot=False)
            n -= m
            if self.b_pretraining or n <= 0:
                return
        self._catch_up()
        self.a.run(n, snapshot=False)
        self.b.run(n, snapshot=False)

    def _catch_up(self) -> None:
        """Finish a half-done iteration on either side, so whole steps stay in lockstep."""
        for sim in self.sides:
            if sim.position != 0:
                sim.step()
        a, b = self.a, self.b
        if a.divergence is None and b.divergence is None and a.step_count != b.step_count:
            behind = a if a.step_count < b.step_count else b
            behind.run(abs(a.step_count - b.step_count), snapshot=False)

    def reset(self) -> None:
        """Both sides back to fresh weights (their own specs) at step 0; B's pretraining,
        if any, starts over."""
        self.a.reset()
        self.b.reset()
        if self.pretrainer is not None:
            self.pretrainer = Pretrainer(self.b, self.pretrainer.spec)

    def snapshots(self) -> tuple[Snapshot, Snapshot]:
        return self.a.snapshot(), self.b.snapshot()

    @property
    def label(self) -> str:
        return difference_label(self.a.experiment, self.b.experiment, self.b_pretrained)


# -- what differs, in words --------------------------------------------------------------


def _links(skips) -> str:
    return " ".join(f"({i},{j})" for i, j in skips)


def _layers_text(ks: list[int]) -> str:
    return ("layer " if len(ks) == 1 else "layers ") + ", ".join(map(str, ks))


def network_differences(a: NetworkSpec, b: NetworkSpec) -> list[str]:
    """What B's network has that A's does not, one phrase per kind of difference."""
    out = []
    added = [s for s in b.skips if s not in a.skips]
    removed = [s for s in a.skips if s not in b.skips]
    if added:
        out.append(f"residual links {_links(added)}" if len(added) > 1 else
                   f"residual link {_links(added)}")
    if removed:
        out.append(f"without links {_links(removed)}")
    if a.depth != b.depth:
        out.append(f"{b.depth} hidden layers instead of {a.depth}")
    else:
        acts = {}
        for k, (ha, hb) in enumerate(zip(a.hidden, b.hidden, strict=True), start=1):
            if ha.activation != hb.activation:
                acts.setdefault(hb.activation, []).append(k)
        for act, ks in acts.items():
            out.append(act if len(ks) == a.depth else f"{act} in {_layers_text(ks)}")
        bn_on = [k for k, (ha, hb) in enumerate(zip(a.hidden, b.hidden, strict=True), 1)
                 if hb.batchnorm and not ha.batchnorm]
        bn_off = [k for k, (ha, hb) in enumerate(zip(a.hidden, b.hidden, strict=True), 1)
                  if ha.batchnorm and not hb.batchnorm]
        if bn_on:
            out.append("batch norm" if len(bn_on) == a.depth else
                       f"batch norm in {_layers_text(bn_on)}")
        if bn_off:
            out.append(f"no batch norm in {_layers_text(bn_off)}")
        widths = [k for k, (ha, hb) in enumerate(zip(a.hidden, b.hidden, strict=True), 1)
                  if ha.width != hb.width]
        if widths:
            out.append("widths " + ", ".join(f"{b.hidden[k - 1].width} in layer {k}"
                                              for k in widths))
    if a.init != b.init:
        out.append(_INIT_NAMES.get(b.init, f"{b.init} init"))
    for name in ("gain", "sigma_w", "sigma_b"):
        if getattr(a, name) != getattr(b, name):
            out.append(f"{name} {getattr(b, name):g}")
    if a.loss != b.loss:
        out.append(f"{b.loss} loss")
    return out


def training_differences(a: TrainSpec, b: TrainSpec) -> list[str]:
    out = []
    if a.optimizer != b.optimizer:
        out.append(f"{b.optimizer} optimizer")
    for name in ("lr", "batch_size", "weight_decay", "clip_norm", "clip_value", "momentum",
                 "beta1", "beta2", "eps"):
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            text = name.replace("_", " ")
            out.append(f"{text} {vb:g}")
    return out


def difference_label(a: Experiment, b: Experiment, b_pretrained: bool = False) -> str:
    """'B: ...' naming each difference of B from A, or that they are the same."""
    parts = network_differences(a.network, b.network)
    parts += training_differences(a.training, b.training)
    if a.data != b.data:
        parts.append("other data")
    if a.seed != b.seed:
        parts.append(f"seed {b.seed}")
    if a.dtype != b.dtype:
        parts.append(b.dtype)
    if b_pretrained:
        parts.append("pretrained")
    if not parts:
        return "A and B are the same"
    return "B: " + "; ".join(parts)
