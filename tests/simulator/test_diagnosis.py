"""diagnose() on hand-made snapshots: each finding appears (or not) with its numbers."""

import dataclasses

import numpy as np
import pytest

from simulator.diagnosis import (
    KINDS,
    REMEDIES,
    SEVERITIES,
    Finding,
    Remedy,
    diagnose,
    remedy_applies,
)
from simulator.remedies import residual_links
from simulator.snapshot import HIST_COLUMNS, DivergenceReport, History, Snapshot
from simulator.spec import LayerSpec, NetworkSpec, residual_skips, uniform_spec

NAN = float("nan")


def make_snapshot(spec, *, delta=None, grad=None, update=None, change=None, dead=None,
                  saturated=None, step=100, divergence=None):
    """A Snapshot with the given per-layer numbers; everything else NaN or tiny arrays."""
    n = spec.depth + 1

    def arr(values, fill=NAN):
        return np.full(n, fill) if values is None else np.asarray(values, dtype=np.float64)

    widths = spec.widths
    small = tuple(np.zeros((2, w)) for w in widths[1:])
    return Snapshot(
        spec=spec, step=step, phase="update", layer=0, micro_index=0, batch_size=2,
        loss=0.5, accuracy=0.5, val_loss=NAN, val_accuracy=NAN,
        delta_norm=arr(delta), grad_norm=arr(grad), bias_grad_norm=arr(None),
        weight_norm=arr(None, 1.0), update_ratio=arr(update), weight_change=arr(change),
        dead_fraction=arr(dead), saturated_fraction=arr(saturated),
        act_mean=arr(None, 0.0), act_std=arr(None, 1.0),
        backward_done=np.ones(n, dtype=bool),
        activations=small, deltas=small,
        weights=tuple(np.zeros((a, b)) for a, b in zip(widths[:-1], widths[1:], strict=True)),
        weight_grads=(), unit_delta=tuple(np.zeros(w) for w in widths[1:]),
        divergence=divergence,
    )


def make_history(n_layers, losses, delta_rows=None, start_step=0, capacity=5000):
    h = History(n_layers, capacity=capacity)
    for i, loss in enumerate(losses):
        per_layer = np.full((n_layers, len(HIST_COLUMNS)), np.nan)
        if delta_rows is not None:
            per_layer[:, 0] = delta_rows[i]
        h.record(start_step + i, loss, NAN, NAN, NAN, per_layer)
    return h


def kinds(findings):
    return [f.kind for f in findings]


def remedy_keys(finding):
    return [r.key for r in finding.remedies]


def only(findings, kind):
    matching = [f for f in findings if f.kind == kind]
    assert len(matching) == 1, kinds(findings)
    return matching[0]


SIGMOID10 = uniform_spec(4, 2, 10, 32, "sigmoid", init="uniform_fanin")
RELU5 = uniform_spec(4, 2, 5, 32, "relu", init="he_normal")


def geometric_deltas(n, factor, out=1.3e-2):
    """||delta_k|| = out * factor^(n - k): shrinking (factor < 1) towards the input."""
    return out * factor ** np.arange(n - 1, -1, -1, dtype=np.float64)


# -- the data types ----------------------------------------------------------------


def test_finding_and_remedy_are_frozen():
    f = Finding("healthy", "info", "t", "d")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.kind = "vanishing"
    with pytest.raises(dataclasses.FrozenInstanceError):
        REMEDIES["relu"].label = "x"
    assert isinstance(REMEDIES["relu"], Remedy)


def test_remedy_keys_are_exactly_the_ones_the_ui_maps():
    assert set(REMEDIES) == {"relu", "leaky_relu", "revive", "leaky_revive", "residual",
                             "batchnorm", "he_init",
                             "lecun_selu", "clip_norm", "lower_lr", "raise_lr"}
    for key, r in REMEDIES.items():
        assert r.key == key and r.label and r.why.endswith(".")


# -- no data -----------------------------------------------------------------------


def test_before_the_first_step_says_nothing():
    snap = make_snapshot(SIGMOID10, step=0)
    assert diagnose(SIGMOID10, snap) == []
    assert diagnose(SIGMOID10, snap, History(11)) == []


def test_nan_entries_are_ignored():
    delta = geometric_deltas(11, 0.9)
    delta[:5] = np.nan  # backward pass half done
    findings = diagnose(SIGMOID10, make_snapshot(SIGMOID10, delta=delta))
    assert "vanishing" not in kinds(findings)
    for f in findings:
        assert "nan" not in f.detail.lower()


def test_snapshot_of_another_layer_count_gives_nothing():
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 1e-2))
    assert diagnose(SIGMOID10, snap) == []


# -- vanishing ---------------------------------------------------------------------


def test_vanishing_is_named_with_its_numbers():
    n = 11
    delta = geometric_deltas(n, 0.2)  # layer 1: 0.2^10 = 1.0e-07 of the output
    update = np.geomspace(1e-9, 1e-3, n)
    change = np.geomspace(1e-4, 0.12, n)
    snap = make_snapshot(SIGMOID10, delta=delta, grad=delta * 3, update=update, change=change)
    findings = diagnose(SIGMOID10, snap)
    f = only(findings, "vanishing")
    assert f.severity == "critical"
    assert "Layer 1 receives 1.0e-07 of the output layer's gradient" in f.detail
    assert "||delta_1|| = 1.3e-09" in f.detail and "||delta_out|| = 0.013" in f.detail
    assert "0.2 per layer on the 10 steps down" in f.detail
    assert "1.0e-09" in f.detail and "1.0e-03" in f.detail  # update ratios, low vs output
    assert "0.01%" in f.detail and "12%" in f.detail  # weight change since the start
    # layer k gets 0.2^(11-k): layer 6 has 3.2e-4 (below 1e-3); layer 7 has 1.6e-3 but
    # updates 4e-3 times the output layer's, so it also counts; layer 8 (8e-3, 1.6e-2) not
    assert f.layers == (1, 2, 3, 4, 5, 6, 7)
    keys = remedy_keys(f)
    assert keys[:2] == ["relu", "residual"]  # the ReLU bundle (with He init and a safe lr)
    assert "batchnorm" in keys and "lecun_selu" in keys
    assert "he_init" not in keys  # He init does not rescue sigmoid layers
    assert "leaky_relu" not in keys and "clip_norm" not in keys
    assert "healthy" not in kinds(findings)


def test_vanishing_severity():
    snap = make_snapshot(SIGMOID10, delta=geometric_deltas(11, 0.1))
    assert only(diagnose(SIGMOID10, snap), "vanishing").severity == "critical"
    snap = make_snapshot(SIGMOID10, delta=geometric_deltas(11, 0.5))  # 9.8e-4
    f = only(diagnose(SIGMOID10, snap), "vanishing")
    assert f.severity == "warning" and f.layers == (1,)
    assert "9.8e-04" in f.detail


def test_milder_decay_counts_when_the_lower_layers_barely_update():
    n = 6
    delta = geometric_deltas(n, 0.35)  # layer 1: 0.35^5 = 5.3e-3 of the output
    slow = make_snapshot(RELU5, delta=delta, update=[5e-6, 1e-5, 5e-5, 1e-4, 3e-4, 1e-3])
    f = only(diagnose(RELU5, slow), "vanishing")
    assert f.title == "Lower layers learn slowly" and f.severity == "warning"
    assert "Layer 1 receives 5.3e-03" in f.detail
    assert "updates are 5.0e-03 times the output layer's" in f.detail
    assert f.layers == (1,)  # layer 2 gets 0.35^4 = 1.5e-2 of the gradient, above 1e-2
    # the same decay with even updates (e.g. Adam) is not reported
    even = make_snapshot(RELU5, delta=delta, update=[1e-3] * n)
    assert kinds(diagnose(RELU5, even)) == ["healthy"]


def test_vanishing_to_exactly_zero():
    delta = geometric_deltas(6, 0.5)
    delta[0] = 0.0
    f = only(diagnose(RELU5, make_snapshot(RELU5, delta=delta)), "vanishing")
    assert f.layers == (1,)
    assert "underflowed" in f.detail and "exactly 0" in f.detail


def test_vanishing_remedies_are_filtered_by_the_spec():
    spec = uniform_spec(4, 2, 6, 32, "relu", batchnorm=True, init="he_normal",
                        skips=residual_links(6))
    f = only(diagnose(spec, make_snapshot(spec, delta=geometric_deltas(7, 0.1))), "vanishing")
    # everything is in place already; SELU or ReLU at full scale would make the sum of
    # the skip links grow without bound, so nothing is offered
    assert remedy_keys(f) == []
    tanh = uniform_spec(4, 2, 6, 32, "tanh", skips=residual_skips(6))
    f = only(diagnose(tanh, make_snapshot(tanh, delta=geometric_deltas(7, 0.1))), "vanishing")
    assert remedy_keys(f) == ["residual", "batchnorm"]
    relu_glorot = uniform_spec(4, 2, 6, 32, "relu", init="glorot_uniform")
    f = only(diagnose(relu_glorot, make_snapshot(relu_glorot, delta=geometric_deltas(7, 0.1))),
             "vanishing")
    assert "he_init" in remedy_keys(f) and "relu" not in remedy_keys(f)


def test_vanishing_mentions_the_earlier_ratio_from_history():
    n = 11
    rows = [geometric_deltas(n, 0.8), geometric_deltas(n, 0.5)]
    history = make_history(n, [0.7, 0.69], delta_rows=rows, start_step=0)
    snap = make_snapshot(SIGMOID10, delta=geometric_deltas(n, 0.2), step=50)
    f = only(diagnose(SIGMOID10, snap, history), "vanishing")
    # the window median of the two rows is what is diagnosed; the earliest is quoted
    assert f"At step 0 the same ratio was {0.8**10:.3g}." in f.detail


def test_mild_decay_is_healthy():
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 0.5), dead=[0.1] * 5 + [NAN])
    findings = diagnose(RELU5, snap)
    assert kinds(findings) == ["healthy"]
    f = findings[0]
    assert f.severity == "info" and f.remedies == () and f.layers == ()
    assert "0.0312" in f.detail  # 0.5^5
    assert "10%" in f.detail


# -- exploding ---------------------------------------------------------------------


def test_exploding_ratio():
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 10.0, out=0.5),
                         update=[0.3, 0.1, 0.01, 1e-3, 1e-4, 1e-4])
    f = only(diagnose(RELU5, snap), "exploding")
    assert f.severity == "warning"
    assert "Layer 1 receives 1.0e+05 times the output layer's gradient" in f.detail
    assert "10 per layer" in f.detail
    assert "0.3 of the weights' size (layer 1)" in f.detail
    assert f.layers == (1, 2)  # 1e5 and 1e4 are above 1e3; layer 3 is at 1e3
    keys = remedy_keys(f)
    # what the remedy suite shows to work; clipping and a lower rate alone do not
    assert keys == ["batchnorm", "lecun_selu"]
    assert "raise_lr" not in keys and "he_init" not in keys  # He init is already in use
    assert "vanishing" not in kinds(diagnose(RELU5, snap))


def test_exploding_enormous_norms_without_relative_growth():
    delta = np.full(6, 3e7)
    f = only(diagnose(RELU5, make_snapshot(RELU5, delta=delta, grad=delta * 10)), "exploding")
    assert "||delta_1|| = 3.0e+07" in f.detail and "||dL/dW_1|| = 3.0e+08" in f.detail
    assert f.layers == (1, 2, 3, 4, 5, 6)


def test_exploding_in_a_chaotic_relu_init_suggests_he():
    spec = uniform_spec(4, 2, 5, 32, "relu", init="mean_field", sigma_w=3.0)
    f = only(diagnose(spec, make_snapshot(spec, delta=geometric_deltas(6, 1e2))), "exploding")
    assert f.severity == "critical"
    assert "he_init" in remedy_keys(f)


# -- dead units and saturation -----------------------------------------------------


def test_dead_units_name_the_worst_layers():
    # with a record of the start, units that switched off since are "dying"
    dead = [0.1, 0.6, 0.9, 0.45, 0.0, NAN]
    base = make_snapshot(RELU5, delta=geometric_deltas(6, 0.8), dead=[0.0, 0.3, 0.3, 0.4, 0.0,
                                                                       NAN], step=0)
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 0.8), dead=dead)
    findings = diagnose(RELU5, snap, baseline=base)
    f = only(findings, "dead_units")
    assert f.severity == "critical" and f.title == "Dying ReLU units"
    # on average 21 more points per layer; layer 4 (45%, 5 points more) is listed too
    assert f.layers == (2, 3, 4)
    assert f.detail.index("layer 3: 30% at the start, 90% now") < f.detail.index(
        "layer 2: 30% at the start, 60% now")
    assert "layer 1" not in f.detail
    assert remedy_keys(f) == ["revive", "leaky_revive"]
    assert "healthy" not in kinds(findings)
    # without that record, the same numbers are only a note
    f = only(diagnose(RELU5, snap), "dead_units")
    assert f.severity == "info" and f.remedies == () and f.layers == (2, 3, 4)
    assert "layer 3: 90%" in f.detail


def test_dead_units_below_threshold_are_not_reported():
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 0.8), dead=[0.3] * 5 + [0.99])
    # the output layer never counts
    assert "dead_units" not in kinds(diagnose(RELU5, snap))


def test_dying_units_in_a_leaky_net_do_not_suggest_leaky():
    spec = NetworkSpec(4, 2, hidden=(LayerSpec(16, "relu"), LayerSpec(16, "leaky_relu")))
    base = make_snapshot(spec, dead=[0.0, 0.0, NAN], step=0)
    snap = make_snapshot(spec, dead=[0.0, 0.5, NAN])
    f = only(diagnose(spec, snap, baseline=base), "dead_units")
    assert "leaky_revive" in remedy_keys(f)  # layer 1 is still plain relu
    leaky = uniform_spec(4, 2, 2, 16, "leaky_relu")
    base = make_snapshot(leaky, dead=[0.0, 0.0, NAN], step=0)
    f = only(diagnose(leaky, make_snapshot(leaky, dead=[0.5, 0.5, NAN]), baseline=base),
             "dead_units")
    assert "leaky_revive" not in remedy_keys(f)


def test_saturation():
    # saturation is judged from the activations, relative to sigmoid's largest slope 1/4:
    # a unit at a = 0.02 has slope 0.0196, under a fifth of 1/4; at a = 0.5 it is 1/4
    fractions = [0.2, 0.55, 0.95] + [0.1] * 7
    acts = []
    for frac in fractions:
        a = np.full((2, 32), 0.5)
        a[:, : int(round(frac * 32))] = 0.02
        acts.append(a)
    acts.append(np.zeros((2, 2)))
    snap = make_snapshot(SIGMOID10, delta=geometric_deltas(11, 0.9), saturated=[0.0] * 10 + [NAN])
    snap = dataclasses.replace(snap, activations=tuple(acts))
    f = only(diagnose(SIGMOID10, snap), "saturation")
    assert f.severity == "critical"
    assert f.layers == (2, 3)
    assert "layer 3 (sigmoid): 93.8%" in f.detail and "layer 2 (sigmoid): 56.2%" in f.detail
    assert remedy_keys(f) == ["relu", "batchnorm", "lecun_selu"]


# -- stalled loss ------------------------------------------------------------------


def test_flat_loss_is_stalled_with_numbers():
    rng = np.random.default_rng(0)
    losses = 0.693 + 0.002 * rng.standard_normal(250)
    history = make_history(11, losses, start_step=1000)
    snap = make_snapshot(SIGMOID10, delta=geometric_deltas(11, 0.9), update=[1e-6] * 11,
                         step=1250)
    f = only(diagnose(SIGMOID10, snap, history), "stalled")
    assert f.severity == "info"  # a plateau alone is a note, not a gradient problem
    assert "last 200 recorded steps (steps 1050 to 1249)" in f.detail
    assert "0.69" in f.detail
    assert "at most 1.0e-06" in f.detail
    assert remedy_keys(f) == []  # notes offer no buttons


def test_stalled_with_vanishing_points_at_the_cause():
    history = make_history(11, np.full(300, 0.69))
    snap = make_snapshot(SIGMOID10, delta=geometric_deltas(11, 0.2), step=300)
    findings = diagnose(SIGMOID10, snap, history)
    f = only(findings, "stalled")
    assert f.severity == "warning"
    assert "Vanishing gradient (see that finding) is the likely cause" in f.detail
    assert "residual" in remedy_keys(f) and "relu" in remedy_keys(f)
    assert f.layers == only(findings, "vanishing").layers


def test_stalled_with_large_updates_suggests_lowering_the_rate():
    history = make_history(6, np.full(200, 1.2))
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 0.8), update=[0.5] * 6, step=200)
    f = only(diagnose(RELU5, snap, history), "stalled")
    assert "steps this large can bounce around a minimum" in f.detail
    assert f.severity == "info" and remedy_keys(f) == []


def test_rising_spiky_loss_suggests_smaller_steps():
    losses = np.concatenate([np.full(100, 0.2), np.full(100, 0.3)])
    losses[120] = 3.4
    history = make_history(6, losses, start_step=1)
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 0.8), update=[1e-3] * 6, step=200)
    f = only(diagnose(RELU5, snap, history), "stalled")
    assert f.title == "Loss is rising"
    assert "went from 0.2 in the first quarter to 0.3 in the last (+50%)" in f.detail
    assert "as high as 3.4" in f.detail
    assert remedy_keys(f) == ["lower_lr", "clip_norm"]


def test_plateau_with_ordinary_updates_offers_no_learning_rate_change():
    history = make_history(6, np.full(200, 0.35))
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 0.8), update=[2e-3] * 6, step=200)
    f = only(diagnose(RELU5, snap, history), "stalled")
    assert f.title == "Loss has stalled"
    assert "ordinary size (at most 2.0e-03 of the weights)" in f.detail
    assert remedy_keys(f) == []


def test_clipping_already_on_is_not_suggested_again():
    from simulator.experiment import TrainSpec

    losses = np.concatenate([np.full(100, 0.2), np.full(100, 0.3)])
    history = make_history(6, losses, start_step=1)
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 0.8), update=[1e-3] * 6, step=200)
    assert "clip_norm" in remedy_keys(only(diagnose(RELU5, snap, history), "stalled"))
    clipped = diagnose(RELU5, snap, history, training=TrainSpec(clip_norm=1.0))
    assert "clip_norm" not in remedy_keys(only(clipped, "stalled"))
    loose = diagnose(RELU5, snap, history, training=TrainSpec(clip_norm=50.0))
    assert "clip_norm" in remedy_keys(only(loose, "stalled"))


def test_frozen_layer_is_described_as_not_moving():
    snap = make_snapshot(SIGMOID10, delta=geometric_deltas(11, 0.1), change=[0.0] * 10 + [0.3])
    f = only(diagnose(SIGMOID10, snap), "vanishing")
    assert "not measurably moved since the start (output layer: 30%)" in f.detail


@pytest.mark.parametrize(
    "losses",
    [
        np.linspace(1.0, 0.5, 300),  # still falling
        np.full(300, 0.005),  # converged: below the floor
        np.full(150, 0.69),  # too few recorded steps to tell
    ],
)
def test_loss_that_is_not_stalled(losses):
    history = make_history(6, losses)
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 0.8), step=len(losses))
    assert "stalled" not in kinds(diagnose(RELU5, snap, history))


# -- divergence --------------------------------------------------------------------


def test_divergence_is_the_only_finding():
    n = 6
    history = make_history(n, [0.7, 0.8, NAN], delta_rows=[
        geometric_deltas(n, 2.0), geometric_deltas(n, 50.0), np.full(n, np.nan)])
    report = DivergenceReport(step=2, phase="backward", layer=3, quantity="delta")
    snap = make_snapshot(RELU5, delta=np.full(n, np.nan), dead=[0.9] * 5 + [NAN],
                         divergence=report, step=2)
    findings = diagnose(RELU5, snap, history)
    assert kinds(findings) == ["diverged"]
    f = findings[0]
    assert f.severity == "critical" and f.layers == (3,)
    assert "At step 2, the delta of layer 3 became NaN or infinite" in f.detail
    assert "backward pass" in f.detail
    # the last finite row: 0.013 * 50^5 = 4.1e6 at layer 1
    assert "At step 1" in f.detail and "4.1e+06 (layer 1)" in f.detail
    # the weights are wrecked: only remedies that draw fresh ones
    assert remedy_keys(f) == ["revive", "lecun_selu"]


def test_divergence_in_the_loss():
    report = DivergenceReport(step=7, phase="loss", layer=0, quantity="loss")
    f = diagnose(RELU5, make_snapshot(RELU5, divergence=report))[0]
    assert "At step 7, the loss became NaN or infinite during the loss pass" in f.detail
    assert f.layers == ()


# -- ordering and the whole list -----------------------------------------------------


def test_findings_are_sorted_most_severe_first_and_well_formed():
    dead = [0.5] * 5 + [NAN]  # warning: dying since the start
    base = make_snapshot(RELU5, dead=[0.1] * 5 + [NAN], step=0)
    snap = make_snapshot(RELU5, delta=geometric_deltas(6, 0.01), dead=dead)  # critical
    findings = diagnose(RELU5, snap, baseline=base)
    assert kinds(findings) == ["vanishing", "dead_units"]
    assert [f.severity for f in findings] == ["critical", "warning"]
    for f in findings:
        assert f.kind in KINDS and f.severity in SEVERITIES
        assert f.title and f.detail
        assert all(1 <= k <= RELU5.depth + 1 for k in f.layers)
        assert all(isinstance(r, Remedy) for r in f.remedies)


# -- remedy filtering --------------------------------------------------------------


def test_remedy_applies():
    assert remedy_applies("relu", SIGMOID10)
    assert not remedy_applies("relu", RELU5)
    assert remedy_applies("leaky_relu", RELU5)
    assert not remedy_applies("leaky_relu", SIGMOID10)
    two = uniform_spec(4, 2, 2, 8, "tanh")
    assert not remedy_applies("residual", two)
    three = uniform_spec(4, 2, 3, 8, "tanh")
    assert remedy_applies("residual", three)
    # the remedy wants a skip around every layer above the first
    assert remedy_applies("residual", three.with_skip(1, 3))
    assert not remedy_applies("residual", three.with_skip(1, 2).with_skip(2, 3))
    six = uniform_spec(4, 2, 6, 8, "tanh")
    assert remedy_applies("residual", six.with_skip(1, 3))
    assert remedy_applies("residual", uniform_spec(4, 2, 6, 8, "tanh", skips=residual_skips(6)))
    assert not remedy_applies("residual", uniform_spec(4, 2, 6, 8, "tanh",
                                                       skips=residual_links(6)))
    assert not remedy_applies("batchnorm", uniform_spec(4, 2, 3, 8, batchnorm=True))
    mixed_bn = uniform_spec(4, 2, 3, 8, batchnorm=True).with_layer(2, batchnorm=False)
    assert remedy_applies("batchnorm", mixed_bn)
    assert not remedy_applies("batchnorm", NetworkSpec(4, 2))
    assert not remedy_applies("he_init", RELU5)
    assert remedy_applies("he_init", uniform_spec(4, 2, 3, 8, "prelu"))
    assert not remedy_applies("he_init", uniform_spec(4, 2, 3, 8, "tanh"))
    selu = uniform_spec(4, 2, 3, 8, "selu", init="lecun_normal")
    assert not remedy_applies("lecun_selu", selu)
    assert remedy_applies("lecun_selu", uniform_spec(4, 2, 3, 8, "selu"))
    for key in ("clip_norm", "lower_lr", "raise_lr"):
        assert remedy_applies(key, SIGMOID10)
    with pytest.raises(ValueError):
        remedy_applies("dropout", SIGMOID10)
