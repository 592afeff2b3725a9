"""Comparison and pretraining files (field-named errors, round trips) and the comparison
presets: every number or claim their descriptions state, recomputed."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from simulator.compare import Comparison
from simulator.compare_experiment import (
    ComparisonSpec,
    PretrainedExperiment,
    check_comparison,
    list_comparisons,
    load_comparison,
    load_study,
)
from simulator.experiment import ExperimentError, load_preset
from simulator.pretrain import PretrainSpec


def _write(tmp_path, d, name="x.json"):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return p


def test_experiment_with_pretraining_round_trips(tmp_path):
    exp = load_preset("deep_sigmoid")
    study = PretrainedExperiment(exp, PretrainSpec(steps_per_layer=5, tied=False))
    back = load_study(_write(tmp_path, study.to_dict()))
    assert back == study
    sim, pre = back.build()
    assert pre is not None and pre.spec.tied is False
    assert load_study(_write(tmp_path, exp.to_dict(), "plain.json")).pretraining is None


@pytest.mark.parametrize("change, field", [
    (lambda d: d.update(pretraining={"lr": -1}), "pretraining.lr"),
    (lambda d: d.update(pretraining={"denoise": "a"}), "pretraining.denoise"),
    (lambda d: d.update(pretraining=[1]), "pretraining"),
    (lambda d: (d["network"].update(skips=[[1, 3]]), d.update(pretraining={})),
     "network.skips"),
])
def test_bad_pretraining_sections_name_the_field(tmp_path, change, field):
    d = load_preset("deep_sigmoid").to_dict()
    change(d)
    with pytest.raises(ExperimentError) as e:
        load_study(_write(tmp_path, d))
    assert e.value.field == field and str(tmp_path) in str(e.value)


def test_comparison_file_round_trips_and_builds(tmp_path):
    spec = load_comparison("glorot_vs_he")
    back = load_study(_write(tmp_path, spec.to_dict()))
    assert back == spec
    assert back.build().label == "B: He init"


@pytest.mark.parametrize("edits, field", [
    ([{"edit": "init", "init": "he"}], "b_edits[0].init"),
    ([{"edit": "bogus"}], "b_edits[0].edit"),
    ([{"edit": "skips", "links": [[3, 1]]}], "b_edits[0].skips[0]"),
    ([{"edit": "training", "lr": 0}], "b_edits[0].training.lr"),
    ([{"edit": "activation", "layer": 99, "activation": "relu"}], "b_edits[0].layer"),
    ([{"edit": "init", "init": "he_normal", "colour": 1}], "b_edits[0].init"),
    (["x"], "b_edits[0]"),
])
def test_bad_b_edits_name_their_place(tmp_path, edits, field):
    d = load_comparison("glorot_vs_he").to_dict()
    d["b_edits"] = edits
    path = _write(tmp_path, d)
    with pytest.raises(ExperimentError) as e:
        check_comparison(load_study(path), source=str(path))
    assert e.value.field == field, str(e.value)


def test_bad_comparison_fields(tmp_path):
    d = load_comparison("glorot_vs_he").to_dict()
    d["a"]["training"]["lr"] = "fast"
    with pytest.raises(ExperimentError) as e:
        load_study(_write(tmp_path, d))
    assert e.value.field == "a.training.lr"
    d = load_comparison("glorot_vs_he").to_dict()
    d["extra"] = 1
    with pytest.raises(ExperimentError, match="unknown field"):
        load_study(_write(tmp_path, d))


def test_the_three_comparison_presets_are_there():
    names = [n for _, n, _ in list_comparisons()]
    assert names == ["Deep sigmoid: plain vs residual", "ReLU: Glorot vs He init at 30 layers",
                     "Pretrained vs random, deep sigmoid"]


def test_plain_vs_residual_description_holds():
    spec = load_comparison("plain_vs_residual")
    assert replace(spec.a, name="x", description="") == replace(
        load_preset("deep_sigmoid"), name="x", description="")
    assert spec.a.network.depth == 16 and "16-layer" in spec.description
    a, b = spec.build().snapshots()
    top = a.spec.depth - 1
    assert a.grad_norm[0] < 1e-3 * a.grad_norm[top]  # orders of magnitude smaller
    assert b.grad_norm[0] > 1000 * a.grad_norm[0]
    assert "more than a thousand times" in spec.description


def test_glorot_vs_he_description_holds():
    spec = load_comparison("glorot_vs_he")
    assert spec.a.network.depth == 30 and "Thirty" in spec.description
    # He's variance 2/fan_in is twice Glorot's 2/(fan_in + fan_out) between 16-unit layers
    assert (2 / 16) / (2 / (16 + 16)) == 2
    c = spec.build()
    a, b = c.snapshots()
    assert np.all(b.grad_norm > 100 * a.grad_norm)
    c.run(500)
    la = np.mean(c.a.history.scalar("loss")[-50:])
    lb = np.mean(c.b.history.scalar("loss")[-50:])
    assert abs(la - math.log(2)) < 0.01 and lb < 0.6


def _final_loss(sim, n=50):
    return float(np.mean(sim.history.scalar("loss")[-n:]))


@pytest.mark.slow
def test_pretrained_vs_random_preset_shows_its_stated_difference_over_5_seeds():
    spec = load_comparison("pretrained_vs_random")
    assert spec.a.network.depth == 6 and "Six sigmoid" in spec.description
    assert "300 steps per layer" in spec.description
    assert spec.b_edits[0]["steps_per_layer"] == 300
    for seed in range(5):  # "for each of seeds 0 to 4"
        c = replace(spec, a=replace(spec.a, seed=seed)).build()
        c.run(6 * 300 + 500)
        assert c.a.step_count == c.b.step_count == 500
        assert _final_loss(c.b) < _final_loss(c.a) - 0.1
        wa, wb = c.a.snapshot().weight_change, c.b.snapshot().weight_change
        assert wb[0] > 10 * wa[0]  # "the lowest layer has moved much further"


@pytest.mark.slow
def test_pretraining_caveats_in_the_description_hold():
    spec = load_comparison("pretrained_vs_random")
    gains = {}
    for kind, standardize in (("circles", True), ("spiral", True), ("circles", False)):
        diffs = []
        for seed in range(3):
            a = replace(spec.a, seed=seed)
            if kind == "spiral":
                a = replace(a, data=replace(a.data, kind="spiral"))
            edit = {**spec.b_edits[0], "standardize": standardize}
            c = ComparisonSpec("x", "", a, (edit,)).build()
            c.run(6 * 300 + 500)
            diffs.append(_final_loss(c.a) - _final_loss(c.b))
        gains[kind, standardize] = np.mean(diffs)
    # without standardization: no better than from random weights
    assert abs(gains["circles", False]) < 0.01
    # on the spiral pretraining helped, but less than on circles
    assert 0 < gains["spiral", True] < gains["circles", True]


def test_comparison_uses_same_first_weights_as_a_single_run():
    spec = load_comparison("pretrained_vs_random")
    c = Comparison(spec.a)
    assert np.array_equal(c.a.network.params_flat, c.b.network.params_flat)



def test_a_comparison_saved_from_its_state_reopens_the_same(tmp_path):
    from simulator.compare_experiment import save_comparison

    c = load_comparison("pretrained_vs_random").build()
    c.b.set_training(replace(c.b.training, lr=0.05))
    spec = ComparisonSpec.of(c, "mine", c.label)
    path = tmp_path / "mine.json"
    save_comparison(spec, path)
    back = load_study(path)
    assert back == spec
    c2 = back.build()
    assert c2.label == c.label == "B: lr 0.05; pretrained"
    assert c2.b.experiment == c.b.experiment and c2.a.experiment == c.a.experiment
    assert c2.pretrainer.spec == c.pretrainer.spec
