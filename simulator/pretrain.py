"""Greedy layer-wise pretraining (Hinton et al. 2006; Bengio et al. 2007), stepped like training.

Hidden layer 1 is trained as an autoencoder on the inputs, then layer 2 on
layer 1's codes, and so on up the stack; each layer's encoder is the network's
own W_k, b_k and activation, so what it learns is written straight into the
network. Then the whole network is fine-tuned with backprop by the ordinary
``Simulation``, starting from the pretrained weights.

A ``Pretrainer`` wraps a ``Simulation`` and is stepped like one: ``micro_step()``
(encode, decode, loss, backward decoder, backward encoder, update),
``step()``, ``run(n)``. Once every layer is done it hands over to the simulation,
so the same calls go on as fine-tuning. ``snapshot()`` says which stage and layer
is being trained and its reconstruction loss; ``history[k]`` holds layer k's
reconstruction loss per step; a NaN or Inf stops pretraining with a
``PretrainDivergence`` (training's divergence, reported the same way).

The autoencoder arithmetic is in ``ae_kernels`` (numpy twin: ``ae_reference``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import ae_kernels as AK
from .network import ACT_CODE
from .simulation import LayerParams, SavedState, Simulation
from .spec import NetworkSpec, SpecError, _check_float, _check_int

MICRO_STEPS = ("encode", "decode", "loss", "backward decoder", "backward encoder", "update")
FUSED_CHUNK = 256
_QUANTITY = {AK.ST_ENCODE: ("encode", "codes"), AK.ST_DECODE: ("decode", "reconstruction"),
             AK.ST_LOSS: ("loss", "reconstruction loss"), AK.ST_UPDATE: ("update", "weights")}


@dataclass(frozen=True)
class PretrainSpec:
    """How to pretrain: steps per layer, its own learning rate and batch size, tied or
    untied decoder, and the fraction of inputs zeroed when denoising (0: plain).

    ``standardize``: each layer's autoencoder sees its inputs centred and scaled to unit
    spread per feature (mean m, spread s over the training inputs). The scaling is folded
    into the layer exactly when its weights are written: W = W' / s (row-wise), b = b' -
    (m / s) W', so the network computes the same function as the trained encoder. Without
    it, the nearly constant codes of a small-weight sigmoid stack give the autoencoders
    almost nothing to reconstruct."""

    steps_per_layer: int = 300
    lr: float = 0.1
    momentum: float = 0.9
    batch_size: int = 32
    tied: bool = True
    denoise: float = 0.0
    standardize: bool = True

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "steps_per_layer", _check_int("pretraining.steps_per_layer",
                                                 self.steps_per_layer, 1, 10**7))
        set_(self, "lr", _check_float("pretraining.lr", self.lr, 0.0, 100.0))
        if self.lr <= 0:
            raise SpecError("pretraining.lr", f"must be greater than 0, got {self.lr!r}")
        momentum = _check_float("pretraining.momentum", self.momentum, 0.0, 1.0)
        if momentum >= 1.0:
            raise SpecError("pretraining.momentum", f"must be less than 1, got {momentum!r}")
        set_(self, "momentum", momentum)
        set_(self, "batch_size", _check_int("pretraining.batch_size", self.batch_size, 1, 10**7))
        for name in ("tied", "standardize"):
            if not isinstance(getattr(self, name), bool):
                raise SpecError(f"pretraining.{name}",
                                f"must be true or false, got {getattr(self, name)!r}")
        denoise = _check_float("pretraining.denoise", self.denoise, 0.0, 1.0)
        if denoise >= 1.0:
            raise SpecError("pretraining.denoise",
                            f"is the fraction of inputs zeroed: at least 0 and less than 1, "
                            f"got {denoise!r}")
        set_(self, "denoise", denoise)

    def to_dict(self) -> dict:
        return {"steps_per_layer": self.steps_per_layer, "lr": self.lr,
                "momentum": self.momentum, "batch_size": self.batch_size, "tied": self.tied,
                "denoise": self.denoise, "standardize": self.standardize}

    @classmethod
    def from_dict(cls, d: Any) -> PretrainSpec:
        if not isinstance(d, dict):
            raise SpecError("pretraining", f"must be an object, got {type(d).__name__}")
        unknown = set(d) - set(cls().to_dict())
        if unknown:
            raise SpecError("pretraining",
                            f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        return cls(**d)


def check_pretrainable(spec: NetworkSpec) -> None:
    """Greedy pretraining needs a plain stack: each hidden layer's input is exactly the
    layer below it. Raise SpecError naming the field that is in the way."""
    if spec.depth == 0:
        raise SpecError("network.hidden", "pretraining needs at least one hidden layer")
    if spec.skips:
        raise SpecError("network.skips", "pretraining works on a plain stack; a skip link "
                        "feeds a layer more than the layer below it: remove the skip links")
    for k, layer in enumerate(spec.hidden, start=1):
        if layer.batchnorm:
            raise SpecError(f"network.hidden[{k - 1}].batchnorm",
                            "pretraining works on layers without batch norm")
        if layer.activation == "prelu":
            raise SpecError(f"network.hidden[{k - 1}].activation",
                            "pretraining does not train PReLU slopes: pick another activation")


@dataclass(frozen=True)
class PretrainDivergence:
    """Pretraining produced NaN or Inf; it stops, like training does."""

    layer: int
    step: int
    phase: str
    quantity: str

    @property
    def message(self) -> str:
        return (f"Pretraining diverged in layer {self.layer} at step {self.step}: the "
                f"{self.quantity} became NaN or infinite during the {self.phase} micro-step. "
                "Lower the pretraining learning rate, then start again.")


@dataclass(frozen=True)
class PretrainSnapshot:
    """One moment of pretraining. ``layer`` is the layer being trained (0 once done)."""

    stage: str  # "pretrain" or "finetune"
    layer: int
    n_layers: int
    step: int  # steps done on this layer
    steps_per_layer: int
    phase: str  # the micro-step just done ("ready" between steps)
    loss: float  # the last reconstruction loss of this layer
    loss_before: tuple  # per layer 1..L: on all training inputs, before its stage (nan: not yet)
    loss_after: tuple  # per layer 1..L: after its stage
    divergence: PretrainDivergence | None

    @property
    def label(self) -> str:
        if self.stage == "finetune":
            return "fine-tuning"
        return f"pretraining layer {self.layer} of {self.n_layers}"


class Pretrainer:
    """Greedy layer-wise pretraining of ``sim``'s network, then fine-tuning by ``sim``."""

    def __init__(self, sim: Simulation, spec: PretrainSpec | None = None):
        check_pretrainable(sim.spec)
        self.sim = sim
        self.spec = spec if spec is not None else PretrainSpec()
        self.seed = sim.experiment.seed
        self.dtype = sim.dtype
        L = sim.spec.depth
        self.n_layers = L
        self.history: list[list[float]] = [[] for _ in range(L)]
        self.loss_before = [np.nan] * L
        self.loss_after = [np.nan] * L
        self.divergence: PretrainDivergence | None = None
        self._raw_inputs = np.asarray(sim._X, np.float64)
        self.layer = 0
        self._start_layer(1)

    # -- stages ----------------------------------------------------------------------
    @property
    def stage(self) -> str:
        return "finetune" if self.layer == 0 else "pretrain"

    @property
    def done(self) -> bool:
        return self.layer == 0

    @property
    def steps_left(self) -> int:
        """Pretraining steps still to do (0 once fine-tuning has begun)."""
        if self.done:
            return 0
        spl = self.spec.steps_per_layer
        return spl - self.layer_step + (self.n_layers - self.layer) * spl

    def _start_layer(self, k: int) -> None:
        self.layer = k
        self.layer_step = 0
        self._pos = 0
        self._phase = "ready"
        net = self.sim.network
        dt = self.dtype
        raw = self._raw_inputs
        if self.spec.standardize:
            self._mean = raw.mean(axis=0)
            self._scale = np.maximum(raw.std(axis=0), 1e-6)
        else:
            self._mean = np.zeros(raw.shape[1])
            self._scale = np.ones(raw.shape[1])
        self._inputs = np.ascontiguousarray((raw - self._mean) / self._scale, dtype=dt)
        W = np.asarray(net.params[f"W{k}"], np.float64)
        b = np.asarray(net.params[f"b{k}"], np.float64)
        # the same function of the standardized inputs: x W + b = x' (s W) + (b + m W)
        self.W = np.ascontiguousarray(W * self._scale[:, None], dtype=dt)
        self.b = np.ascontiguousarray(b + self._mean @ W, dtype=dt)
        n_in, n_out = self.W.shape
        self.D = np.ascontiguousarray(self.W.T.copy()) if not self.spec.tied else np.zeros(
            (n_out, n_in), dt)
        self.c = np.zeros(n_in, dt)
        self.gW, self.gb = np.zeros_like(self.W), np.zeros_like(self.b)
        self.gD, self.gc = np.zeros_like(self.D), np.zeros_like(self.c)
        self.vW, self.vb = np.zeros_like(self.W), np.zeros_like(self.b)
        self.vD, self.vc = np.zeros_like(self.D), np.zeros_like(self.c)
        self.code = ACT_CODE[self.sim.spec.hidden[k - 1].activation]
        n = len(self._inputs)
        self.batch_size = max(1, min(self.spec.batch_size, n))
        B = self.batch_size
        self._ws = {name: np.zeros((B, w), dt) for name, w in
                    (("x", n_in), ("xt", n_in), ("z", n_out), ("h", n_out), ("dp", n_out),
                     ("r", n_in), ("gr", n_in), ("gh", n_out), ("gz", n_out))}
        self._batch_rng = np.random.default_rng([self.seed, 17, k])
        self._noise_rng = np.random.default_rng([self.seed, 19, k])
        self._perm = self._batch_rng.permutation(n)
        self._perm_pos = 0
        self._keep = np.ones((1, B, n_in), dt)
        self.loss = np.nan
        self.loss_before[k - 1] = self.reconstruction_loss()

    def _finish_layer(self) -> None:
        k = self.layer
        self.loss_after[k - 1] = self.reconstruction_loss()
        W = self.W.astype(np.float64) / self._scale[:, None]
        b = self.b.astype(np.float64) - (self._mean / self._scale) @ self.W.astype(np.float64)
        self.sim.set_layer_params(LayerParams(k, {"W": W, "b": b}))
        # the next layer learns to reconstruct this layer's codes of the training inputs
        codes = np.zeros((len(self._inputs), self.W.shape[1]), self.dtype)
        AK.encode_all(self._inputs, self.W, self.b, self.code, codes)
        self._raw_inputs = codes.astype(np.float64)
        if k < self.n_layers:
            self._start_layer(k + 1)
        else:
            self._hand_over()

    def _hand_over(self) -> None:
        """Fine-tuning starts here: fresh optimizer state, and weight change measured
        from the pretrained weights (the simulation's ``weight_change``)."""
        self.layer = 0
        sim = self.sim
        state = sim.capture_state()
        zeros = np.zeros_like(state.m1)
        sim.restore_state(SavedState(state.experiment, state.params, state.params.copy(),
                                     state.running, zeros, zeros.copy(), 0))
        self._phase = "ready"

    def reconstruction_loss(self) -> float:
        """Layer's reconstruction loss on all its (clean, standardized when asked) training
        inputs."""
        X = self._inputs
        h = np.zeros((len(X), self.W.shape[1]), self.dtype)
        AK.encode_all(X, self.W, self.b, self.code, h)
        dec = self.W.T if self.spec.tied else self.D
        with np.errstate(all="ignore"):
            r = h.astype(np.float64) @ dec + self.c
            return float(np.mean((r - X) ** 2))

    # -- batches ---------------------------------------------------------------------
    def _take_batch(self) -> np.ndarray:
        B, n = self.batch_size, len(self._inputs)
        if self._perm_pos + B > n:
            self._perm = self._batch_rng.permutation(n)
            self._perm_pos = 0
        idx = self._perm[self._perm_pos:self._perm_pos + B].astype(np.int64)
        self._perm_pos += B
        return idx

    def _masks(self, steps: int) -> np.ndarray:
        B, n_in = self.batch_size, self.W.shape[0]
        if self.spec.denoise <= 0:
            return self._keep
        keep = self._noise_rng.random((steps, B, n_in)) >= self.spec.denoise
        return keep.astype(self.dtype)

    # -- stepping --------------------------------------------------------------------
    def micro_step(self):
        """The next named micro-step of pretraining (or of fine-tuning, once done)."""
        if self.done:
            return self.sim.micro_step()
        if self.divergence is not None:
            return self.snapshot()
        ws = self._ws
        tied = self.spec.tied
        name = MICRO_STEPS[self._pos]
        ok = True
        if name == "encode":
            AK.ae_gather(self._inputs, self._take_batch(), ws["x"])
            keep = self._masks(1)[0]
            AK.ae_corrupt(ws["x"], keep, self.spec.denoise > 0, ws["xt"])
            ok = AK.ae_encode(ws["xt"], self.W, self.b, self.code, ws["z"], ws["h"], ws["dp"])
        elif name == "decode":
            ok = AK.ae_decode(ws["h"], self.W, self.D, self.c, tied, ws["r"])
        elif name == "loss":
            self.loss = float(AK.ae_loss(ws["r"], ws["x"], ws["gr"]))
            ok = bool(np.isfinite(self.loss))
        elif name == "backward decoder":
            AK.ae_backward_decoder(ws["h"], ws["gr"], self.W, self.D, tied, self.gD, self.gc,
                                   ws["gh"])
        elif name == "backward encoder":
            AK.ae_backward_encoder(ws["xt"], ws["gh"], ws["dp"], ws["h"], ws["gr"], tied,
                                   self.gW, self.gb, ws["gz"])
        else:
            ok = AK.ae_update(self.W, self.b, self.D, self.c, self.gW, self.gb, self.gD, self.gc,
                              self.vW, self.vb, self.vD, self.vc, tied, self.spec.lr,
                              self.spec.momentum)
        if not ok:
            quantity = dict(_QUANTITY.values())[name]
            self._diverge(name, quantity)
            return self.snapshot()
        self._phase = name
        self._pos += 1
        if name == "loss":
            self.history[self.layer - 1].append(self.loss)
        if self._pos == len(MICRO_STEPS):
            self._pos = 0
            self.layer_step += 1
            if self.layer_step >= self.spec.steps_per_layer:
                self._finish_layer()
        return self.snapshot()

    def _diverge(self, phase: str, quantity: str) -> None:
        self.divergence = PretrainDivergence(self.layer, self.layer_step, phase, quantity)
        self._pos = 0

    def step(self):
        """Finish the current pretraining step (or do a whole one); fine-tuning once done."""
        if self.done:
            return self.sim.step()
        if self._pos == 0:
            self.run(1, snapshot=False)
        else:
            start = (self.layer, self.layer_step)
            while ((self.layer, self.layer_step) == start and self.divergence is None
                   and not self.done):
                self.micro_step()
        return self.snapshot()

    def run(self, n: int, snapshot: bool = True):
        """n whole steps through the fused kernel, crossing from layer to layer and on
        into fine-tuning when pretraining ends within them."""
        while n > 0 and not self.done and self.divergence is None:
            if self._pos != 0:
                self.step()
                n -= 1
                continue
            chunk = min(n, FUSED_CHUNK, self.spec.steps_per_layer - self.layer_step)
            batches = np.stack([self._take_batch() for _ in range(chunk)])
            keep = self._masks(chunk)
            losses = np.full(chunk, np.nan)
            ws = self._ws
            done, status = AK.ae_train_steps(
                self._inputs, batches, keep, self.spec.denoise > 0, self.W, self.b, self.D,
                self.c, self.gW, self.gb, self.gD, self.gc, self.vW, self.vb, self.vD, self.vc,
                self.code, self.spec.tied, self.spec.lr, self.spec.momentum, ws["x"], ws["xt"],
                ws["z"], ws["h"], ws["dp"], ws["r"], ws["gr"], ws["gh"], ws["gz"], losses)
            recorded = done + (1 if status == AK.ST_LOSS else 0)
            self.history[self.layer - 1].extend(losses[:min(recorded, chunk)].tolist())
            if recorded:
                self.loss = float(losses[recorded - 1])
            self._phase = "update"
            if status:
                self.layer_step += done - (1 if status == AK.ST_UPDATE else 0)
                phase, quantity = _QUANTITY[status]
                self._diverge(phase, quantity)
                break
            self.layer_step += done
            n -= done
            if self.layer_step >= self.spec.steps_per_layer:
                self._finish_layer()
        if n > 0 and self.done:
            self.sim.run(n, snapshot=False)
        if snapshot:
            return self.sim.snapshot() if self.done else self.snapshot()
        return None

    def pretrain_all(self) -> None:
        """Run every remaining pretraining step (stops at the hand-over or a divergence)."""
        while not self.done and self.divergence is None:
            self.run(self.spec.steps_per_layer - self.layer_step, snapshot=False)

    # -- observing -------------------------------------------------------------------
    def snapshot(self) -> PretrainSnapshot:
        return PretrainSnapshot(
            stage=self.stage, layer=self.layer, n_layers=self.n_layers,
            step=self.layer_step if not self.done else self.spec.steps_per_layer,
            steps_per_layer=self.spec.steps_per_layer, phase=self._phase,
            loss=self.loss, loss_before=tuple(self.loss_before),
            loss_after=tuple(self.loss_after), divergence=self.divergence)

    def loss_history(self, k: int) -> np.ndarray:
        """Reconstruction loss per step of layer k (1-based)."""
        return np.asarray(self.history[k - 1], np.float64)


def pretrain(sim: Simulation, spec: PretrainSpec | None = None) -> Pretrainer:
    """Pretrain every hidden layer of ``sim`` at once; ``sim`` is then ready to fine-tune."""
    p = Pretrainer(sim, spec)
    p.pretrain_all()
    return p



def warmup(dtypes=("float32", "float64")) -> None:
    """Compile (or load from numba's cache) the autoencoder kernels on tiny arrays of the
    exact types pretraining uses, so the first pretraining step does not wait for it."""
    from .data import DataSpec
    from .experiment import Experiment, TrainSpec
    from .spec import LayerSpec

    for dtype in dtypes:
        spec = NetworkSpec(2, 2, hidden=(LayerSpec(3, "sigmoid"), LayerSpec(2, "tanh")))
        exp = Experiment("warmup", "", spec, DataSpec(kind="xor", n_samples=16),
                         TrainSpec(batch_size=4), dtype=dtype)
        for tied, denoise in ((True, 0.0), (False, 0.3)):
            p = Pretrainer(Simulation(exp, history_capacity=4),
                           PretrainSpec(steps_per_layer=2, batch_size=4, tied=tied,
                                        denoise=denoise))
            for _ in range(len(MICRO_STEPS)):
                p.micro_step()
            p.pretrain_all()
