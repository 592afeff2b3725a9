"""Undoable edits: every change a user makes to the network or its training.

Each command calls only the Simulation's public edit API, through
``controller.apply`` (which holds the lock and announces the result). A command
works out what it needs for its undo when it runs (``redo``), not when it is
made, because the user may train between an undo and the next redo.

Undo restores the structure exactly. For the weights, an undo keeps what the
network learned since the edit wherever it can and puts back what the edit threw
away (a deleted layer, the rows cut off by a narrower layer, batch-norm scales).
The one exception is the projection of a skip link between layers of different
widths: a re-added link gets a freshly drawn one. Edits that redraw every weight
(initialization, data) undo to the exact state captured before them.

``Editor`` is what the views and the main window call: one method per gesture,
each pushing one command (or reporting why the value was refused).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from PySide6.QtGui import QUndoCommand

from simulator.data import DataSpec
from simulator.experiment import TrainSpec
from simulator.remedies import REMEDIES, apply_remedy, remedy_applies
from simulator.remedies import residual_links as residual_links  # re-exported for the views
from simulator.simulation import LayerParams, Simulation
from simulator.spec import ACTIVATIONS, LayerSpec, NetworkSpec, SpecError

DEFAULT_LAYER = LayerSpec(16, "relu")

Edit = Callable[[Simulation], object]


class EditCommand(QUndoCommand):
    """One undoable edit: ``do(sim)`` in redo, ``undo(sim)`` in undo.

    If the first redo is refused (the simulation raised a ValueError, which the
    controller reports), the command marks itself obsolete and QUndoStack drops it,
    so a refused edit leaves no entry behind. So does an edit that turned out to
    change nothing (``drop_if_unchanged``), e.g. "batch norm on" when it already is.
    """

    def __init__(self, controller, text: str, do: Edit, undo: Edit, *, structural: bool = True,
                 drop_if_unchanged: bool = True):
        super().__init__(text)
        self._controller = controller
        self._do = do
        self._undo = undo
        self._structural = structural
        self._drop_if_unchanged = drop_if_unchanged
        self.applied = False

    def redo(self) -> None:
        first = not self.applied
        before = self._controller.sim.experiment if first else None
        ok = self._controller.apply(self._do, structural=self._structural)
        if first:
            unchanged = ok and self._drop_if_unchanged and self._controller.sim.experiment == before
            if not ok or unchanged:
                self.setObsolete(True)
        self.applied = self.applied or ok

    def undo(self) -> None:
        self._controller.apply(self._undo, structural=self._structural)


def _kept_params(saved: LayerParams, names: tuple[str, ...]) -> LayerParams:
    return LayerParams(saved.layer, {k: v for k, v in saved.values.items() if k in names})


class Editor:
    """The user's edits, each as one command on the controller's undo stack.

    Every method returns True when the edit was applied and False when it was
    refused; a refusal is announced through ``controller.error`` and changes nothing.
    Layer numbers follow the spec: hidden layers 1..L, output L+1; ``k = 0`` in
    set_activation / set_batchnorm / set_width means every hidden layer.
    """

    def __init__(self, controller):
        self.controller = controller

    # -- plumbing -----------------------------------------------------------------------
    @property
    def _sim(self) -> Simulation | None:
        return self.controller.sim

    def _push(self, text: str, do: Edit, undo: Edit, structural: bool = True,
              drop_if_unchanged: bool = True) -> bool:
        if not self.controller.is_ready:
            return False
        do, undo = _keeping_projections(do, undo)
        cmd = EditCommand(self.controller, text, do, undo, structural=structural,
                          drop_if_unchanged=drop_if_unchanged)
        self.controller.push_edit(cmd)
        return cmd.applied

    def _refuse(self, error: Exception | str) -> bool:
        self.controller.error.emit(f"Not changed: {error}")
        return False

    def _spec(self) -> NetworkSpec:
        return self._sim.spec

    # -- skip links ---------------------------------------------------------------------
    def add_skip(self, i: int, j: int) -> bool:
        return self._push(f"Add skip link {i} → {j}",
                          lambda sim: sim.add_skip(i, j), lambda sim: sim.remove_skip(i, j))

    def remove_skip(self, i: int, j: int) -> bool:
        return self._push(f"Remove skip link {i} → {j}",
                          lambda sim: sim.remove_skip(i, j), lambda sim: sim.add_skip(i, j))

    # -- per-layer settings ---------------------------------------------------------------
    def set_activation(self, k: int, activation: str) -> bool:
        if activation not in ACTIVATIONS:
            return self._refuse(f"unknown activation {activation!r}")
        if k == 0:
            return self._spec_edit(f"All layers: {activation}",
                                   lambda sim: sim.set_activation_all(activation))
        return self._spec_edit(f"Layer {k}: {activation}",
                               lambda sim: sim.set_activation(k, activation))

    def set_batchnorm(self, k: int, on: bool) -> bool:
        on = bool(on)
        word = "on" if on else "off"
        if k == 0:
            return self._spec_edit(f"Batch norm {word} for all layers",
                                   lambda sim: sim.set_batchnorm_all(on))
        return self._spec_edit(f"Layer {k}: batch norm {word}",
                               lambda sim: sim.set_batchnorm(k, on))

    def set_width(self, k: int, width: int) -> bool:
        try:
            width = LayerSpec(width).width  # the spec's own check and message
        except SpecError as e:
            return self._refuse(e)
        if k == 0:
            return self._spec_edit(f"Width {width} for all layers",
                                   lambda sim: sim.set_width_all(width))
        return self._spec_edit(f"Layer {k}: width {width}", lambda sim: sim.set_width(k, width))

    def _spec_edit(self, text: str, do: Edit) -> bool:
        """An edit that keeps the number of layers. Undo puts the old spec back and
        restores what the edit threw away: rows and columns cut off by a narrower
        layer, batch-norm scales, PReLU slopes."""
        state = {}

        def redo(sim: Simulation):
            old = sim.spec
            saved = [sim.layer_params(k) for k in range(1, old.depth + 2)]
            do(sim)
            state["old"] = old
            state["lost"] = [_lost_params(old, sim.spec, s) for s in saved]

        def undo(sim: Simulation):
            sim.set_spec(state["old"])
            for params in state["lost"]:
                if params.values:
                    sim.set_layer_params(params)

        return self._push(text, redo, undo)

    # -- layers --------------------------------------------------------------------------
    def insert_layer(self, k: int) -> bool:
        """Insert a new hidden layer right above layer k (nearer the output): a copy of
        layer k's spec with fresh weights. k = 0 (the input) inserts below hidden layer 1;
        k = L+1 (the output) inserts below the output layer."""
        if not self.controller.is_ready:
            return False
        spec = self._spec()
        L = spec.depth
        if not 0 <= k <= L + 1:
            return self._refuse(f"there is no layer {k}")
        position = min(k + 1, L + 1)
        if 1 <= k <= L:
            template = spec.hidden[k - 1]
        elif L:
            template = spec.hidden[0] if k == 0 else spec.hidden[-1]
        else:
            template = DEFAULT_LAYER
        state = {}

        def redo(sim: Simulation):
            state["old"] = sim.spec
            state["next"] = sim.layer_params(position)
            sim.insert_layer(position, template)

        def undo(sim: Simulation):
            sim.delete_layer(position)
            sim.set_skips(state["old"].skips)
            sim.set_layer_params(state["next"], layer=position)

        return self._push(f"Insert layer {position}", redo, undo)

    def delete_layer(self, k: int) -> bool:
        state = {}

        def redo(sim: Simulation):
            old = sim.spec
            if not isinstance(k, int) or not 1 <= k <= old.depth:
                raise SpecError("layer", f"only hidden layers 1..{old.depth} can be deleted")
            following = sim.layer_params(k + 1)
            state["old"], state["next"] = old, following
            state["deleted"] = sim.delete_layer(k)

        def undo(sim: Simulation):
            old = state["old"]
            sim.insert_layer(k, old.hidden[k - 1], params=state["deleted"])
            sim.set_layer_params(state["next"], layer=k + 1)
            sim.set_skips(old.skips)

        return self._push(f"Delete layer {k}", redo, undo)

    def set_depth(self, depth: int) -> bool:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            return self._refuse(f"depth must be a whole number, 0 or more; got {depth!r}")
        if not self.controller.is_ready:
            return False
        if depth == self._spec().depth:
            return True
        state = {}

        def redo(sim: Simulation):
            old = sim.spec
            # the layers a shallower stack loses, and the output layer whose input changes
            state["old"] = old
            state["saved"] = [sim.layer_params(k) for k in range(depth + 1, old.depth + 2)]
            sim.set_depth(depth)

        def undo(sim: Simulation):
            old = state["old"]
            if depth > old.depth:
                sim.set_depth(old.depth)
                return
            n = sim.spec.depth
            old_of_new = list(range(n + 1)) + [None] * (old.depth - n) + [n + 1]
            sim.set_spec(old, old_of_new)
            for params in state["saved"]:
                sim.set_layer_params(params)

        return self._push(f"Depth {depth}", redo, undo)

    # -- whole-network settings that redraw the weights ------------------------------------
    def _redraw_edit(self, text: str, do: Edit, drop_if_unchanged: bool = False) -> bool:
        """Undo puts back the exact structure, weights and optimizer state from before."""
        state = {}

        def redo(sim: Simulation):
            saved = sim.capture_state()
            do(sim)
            state["saved"] = saved

        def undo(sim: Simulation):
            sim.restore_state(state["saved"])

        # re-initializing with the same settings still draws new weights: keep that
        return self._push(text, redo, undo, drop_if_unchanged=drop_if_unchanged)

    def set_init(self, init: str | None = None, gain: float | None = None,
                 sigma_w: float | None = None, sigma_b: float | None = None) -> bool:
        if not self.controller.is_ready:
            return False
        changes = {k: v for k, v in dict(init=init, gain=gain, sigma_w=sigma_w,
                                         sigma_b=sigma_b).items() if v is not None}
        try:
            replace(self._spec(), **changes)  # the spec's own checks, before any change
        except SpecError as e:
            return self._refuse(e)
        name = init or self._spec().init
        return self._redraw_edit(f"Initialization: {name}",
                                 lambda sim: sim.set_init(init, gain, sigma_w, sigma_b))

    def set_data(self, data: DataSpec) -> bool:
        return self._redraw_edit(f"Data: {data.kind}", lambda sim: sim.set_data(data),
                                 drop_if_unchanged=True)

    # -- training settings ---------------------------------------------------------------
    def set_training(self, training: TrainSpec) -> bool:
        if not self.controller.is_ready:
            return False
        state = {}

        def redo(sim: Simulation):
            state["old"] = sim.training
            sim.set_training(training)

        def undo(sim: Simulation):
            sim.set_training(state["old"])

        return self._push(_training_text(self._sim.training, training), redo, undo,
                          structural=False)

    def update_training(self, **changes) -> bool:
        """set_training with some fields of the current TrainSpec changed; values the
        spec refuses are reported and change nothing."""
        if not self.controller.is_ready:
            return False
        try:
            training = replace(self._sim.training, **changes)
        except SpecError as e:
            return self._refuse(e)
        if training == self._sim.training:
            return True
        return self.set_training(training)

    def set_seed(self, seed: int) -> bool:
        """Start over from the weights and batch order of another seed. Like Reset this
        is not undoable: it clears the training history and the undo stack."""
        if not self.controller.is_ready:
            return False
        if seed == self._sim.experiment.seed:
            return True
        try:
            replace(self._sim.experiment, seed=seed)
        except SpecError as e:
            return self._refuse(e)
        self.controller.pause()
        ok = self.controller.apply(lambda sim: sim.reset(seed))
        if ok:
            self.controller.undo_stack.clear()
        return ok

    # -- the diagnosis's remedies ---------------------------------------------------------
    def apply_remedy(self, key: str) -> bool:
        """Apply one of the diagnosis's remedies (simulator.remedies) as one undoable
        step: the remedy and its companion changes (a ReLU switch comes with He init
        and a safe learning rate) undo together, back to the exact state before."""
        if not self.controller.is_ready:
            return False
        if key not in REMEDIES:
            return self._refuse(f"unknown remedy {key!r}")
        sim = self._sim
        if not remedy_applies(key, sim.spec, sim.training):
            return self._refuse(f"the remedy '{REMEDIES[key].label}' changes nothing here")
        return self._redraw_edit(f"Remedy: {REMEDIES[key].label}",
                                 lambda sim: apply_remedy(sim, key))


def _keeping_projections(do: Edit, undo: Edit) -> tuple[Edit, Edit]:
    """``do`` and ``undo`` such that undo also puts back every skip projection the edit
    threw away (a removed link, a layer deleted under it, widths that became equal or
    changed): the restored structure would otherwise draw them afresh. Projections the
    edit kept are left as they are, with any training done since."""
    lost: dict[str, np.ndarray] = {}

    def do_keeping(sim: Simulation):
        before = sim.projection_params()
        result = do(sim)
        after = sim.network.params
        lost.clear()
        lost.update({name: v for name, v in before.items()
                     if name not in after or after[name].shape != v.shape})
        return result

    def undo_keeping(sim: Simulation):
        result = undo(sim)
        if lost:
            sim.set_projection_params(lost)
        return result

    return do_keeping, undo_keeping


def _lost_params(old: NetworkSpec, new: NetworkSpec, saved: LayerParams) -> LayerParams:
    """The part of layer ``saved.layer``'s parameters that going from ``old`` to ``new``
    destroyed: the whole layer when it or the layer below got narrower, else only the
    batch-norm scales or PReLU slope that were dropped."""
    k = saved.layer
    ow, nw = old.widths, new.widths
    if nw[k] < ow[k] or nw[k - 1] < ow[k - 1]:
        return saved
    lost: list[str] = []
    if k <= old.depth:
        before, after = old.hidden[k - 1], new.hidden[k - 1]
        if before.batchnorm and not after.batchnorm:
            lost += ["gamma", "beta"]
        if before.activation == "prelu" and after.activation != "prelu":
            lost.append("alpha")
    return _kept_params(saved, tuple(lost))


def _training_text(old: TrainSpec, new: TrainSpec) -> str:
    labels = {"optimizer": "optimizer", "lr": "learning rate", "batch_size": "batch size",
              "weight_decay": "L2", "clip_norm": "clip norm", "clip_value": "clip value",
              "momentum": "momentum", "beta1": "beta1", "beta2": "beta2", "eps": "eps"}
    changed = [f"{label} {getattr(new, name):g}" if not isinstance(getattr(new, name), str)
               else f"{label} {getattr(new, name)}"
               for name, label in labels.items() if getattr(old, name) != getattr(new, name)]
    return "Training: " + (", ".join(changed) if changed else "unchanged")
