"""NetworkSpec / LayerSpec: validation messages, skip links, layer edits, JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.spec import (
    ACTIVATIONS,
    INITS,
    LOSSES,
    MAX_HIDDEN,
    MAX_WIDTH,
    LayerSpec,
    NetworkSpec,
    SpecError,
    residual_skips,
    uniform_spec,
)

# -- strategies -----------------------------------------------------------------------------

layers = st.builds(
    LayerSpec,
    width=st.integers(1, 64),
    activation=st.sampled_from(ACTIVATIONS),
    batchnorm=st.booleans(),
)


@st.composite
def network_specs(draw) -> NetworkSpec:
    hidden = draw(st.lists(layers, min_size=0, max_size=8))
    depth = len(hidden)
    pairs = [(a, b) for a in range(depth + 1) for b in range(a + 1, depth + 1)]
    skips = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=6)) if pairs else []
    loss = draw(st.sampled_from(LOSSES))
    out_lo = 2 if loss == "cross_entropy" else 1
    finite = {"allow_nan": False, "allow_infinity": False}
    return NetworkSpec(
        input_dim=draw(st.integers(1, 50)),
        output_dim=draw(st.integers(out_lo, 10)),
        hidden=tuple(hidden),
        skips=tuple(skips),
        init=draw(st.sampled_from(INITS)),
        loss=loss,
        gain=draw(st.floats(1e-6, 1e3, **finite)),
        sigma_w=draw(st.floats(0.0, 1e3, **finite)),
        sigma_b=draw(st.floats(0.0, 1e3, **finite)),
    )


def small_net(depth=4, width=8, **kwargs) -> NetworkSpec:
    return uniform_spec(2, 3, depth, width, "tanh", **kwargs)


def good_dict() -> dict:
    return small_net(skips=((1, 3),)).to_dict()


# -- JSON round trip -----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(network_specs())
def test_json_round_trip(spec):
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    assert NetworkSpec.from_json(spec.to_json()) == spec
    # the dict is plain JSON: no tuples or numpy values sneak in
    assert json.loads(json.dumps(spec.to_dict())) == spec.to_dict()


def test_skips_are_stored_sorted_and_as_tuples():
    spec = small_net(skips=[[2, 4], (0, 1)])
    assert spec.skips == ((0, 1), (2, 4))


# -- validation messages -----------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, field, text",
    [
        (lambda d: d["hidden"][2].update(width=0), "network.hidden[2].width",
         f"between 1 and {MAX_WIDTH}, got 0"),
        (lambda d: d["hidden"][0].update(width=2.5), "network.hidden[0].width", "whole number"),
        (lambda d: d["hidden"][1].update(activation="swish"), "network.hidden[1].activation",
         "'swish'"),
        (lambda d: d["hidden"][1].update(batchnorm="yes"), "network.hidden[1].batchnorm",
         "true or false"),
        (lambda d: d["hidden"][0].update(colour="red"), "network.hidden[0]", "colour"),
        (lambda d: d["hidden"][0].pop("width"), "network.hidden[0].width", "missing"),
        (lambda d: d.update(hidden=[3]), "network.hidden[0]", "must be an object"),
        (lambda d: d.update(hidden="deep"), "network.hidden", "list"),
        (lambda d: d.update(input_dim=0), "network.input_dim", "between 1"),
        (lambda d: d.update(input_dim=True), "network.input_dim", "whole number"),
        (lambda d: d.pop("output_dim"), "network.output_dim", "missing"),
        (lambda d: d.update(output_dim=1), "network.output_dim", "at least 2 classes"),
        (lambda d: d.update(init="xavier"), "network.init", "'xavier'"),
        (lambda d: d.update(loss="hinge"), "network.loss", "'hinge'"),
        (lambda d: d.update(gain=0), "network.gain", "between"),
        (lambda d: d.update(gain=float("nan")), "network.gain", "finite"),
        (lambda d: d.update(gain=10**400), "network.gain", "finite"),
        (lambda d: d.update(sigma_w=-1), "network.sigma_w", "between 0"),
        (lambda d: d.update(sigma_b="1"), "network.sigma_b", "must be a number"),
        (lambda d: d.update(skips=[[3, 1]]), "network.skips[0]", "from < to"),
        (lambda d: d.update(skips=[[2, 2]]), "network.skips[0]", "from < to"),
        (lambda d: d.update(skips=[[0, 5]]), "network.skips[0][1]", "between 0 and 4"),
        (lambda d: d.update(skips=[[-1, 2]]), "network.skips[0][0]", "between 0 and 4"),
        (lambda d: d.update(skips=[[1, 2, 3]]), "network.skips[0]", "pair"),
        (lambda d: d.update(skips=[{"from": 1, "to": 2}]), "network.skips[0]", "pair"),
        (lambda d: d.update(skips=["12"]), "network.skips[0]", "pair"),
        (lambda d: d.update(skips=[[1, 2], [1, 2]]), "network.skips", "twice"),
        (lambda d: d.update(skips={"a": 1}), "network.skips", "list"),
        (lambda d: d.update(depth=3), "network", "depth"),
    ],
)
def test_from_dict_names_the_bad_field(mutate, field, text):
    d = good_dict()
    mutate(d)
    with pytest.raises(SpecError) as info:
        NetworkSpec.from_dict(d)
    assert info.value.field == field
    assert text in info.value.message
    assert str(info.value).startswith(field + ": ")


def test_too_many_layers_rejected():
    with pytest.raises(SpecError, match=f"at most {MAX_HIDDEN}"):
        uniform_spec(2, 2, MAX_HIDDEN + 1, 2)
    assert uniform_spec(2, 2, MAX_HIDDEN, 2).depth == MAX_HIDDEN


def test_not_an_object_or_not_json():
    with pytest.raises(SpecError, match="must be an object"):
        NetworkSpec.from_dict([1, 2])
    with pytest.raises(SpecError, match="not valid JSON"):
        NetworkSpec.from_json("{nope")


bad_values = st.one_of(
    st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**30, 0),
    st.integers(10**7, 10**400),
)


@settings(max_examples=200, deadline=None)
@given(
    field=st.sampled_from(["input_dim", "output_dim", "gain", "sigma_w", "sigma_b", "init",
                           "loss", "hidden", "skips"]),
    value=bad_values,
)
def test_garbage_is_rejected_with_its_field(field, value):
    d = small_net().to_dict()  # no skips, so an empty hidden list is legal
    d[field] = value
    try:
        spec = NetworkSpec.from_dict(d)
    except SpecError as e:
        assert e.field.startswith(f"network.{field}")
    else:  # a few garbage values are legal (e.g. sigma_w = 0.0, hidden = [])
        assert spec.to_dict()[field] == d[field]


# -- derived facts and edits ---------------------------------------------------------------


def test_widths_depth_and_projection():
    spec = NetworkSpec(3, 2, hidden=(LayerSpec(8), LayerSpec(8), LayerSpec(5)),
                       skips=((0, 1), (1, 2), (1, 3)))
    assert spec.depth == 3
    assert spec.widths == (3, 8, 8, 5, 2)
    assert spec.skip_needs_projection((0, 1))
    assert not spec.skip_needs_projection((1, 2))
    assert spec.skip_needs_projection((1, 3))


def test_residual_skips():
    assert residual_skips(6) == ((1, 3), (3, 5))
    assert residual_skips(7) == ((1, 3), (3, 5), (5, 7))
    assert residual_skips(4, every=1) == ((1, 2), (2, 3), (3, 4))
    assert residual_skips(1) == ()
    for depth in range(1, 12):
        uniform_spec(2, 2, depth, 4, skips=residual_skips(depth))  # always valid


def test_with_and_without_skip():
    spec = small_net()
    spec2 = spec.with_skip(2, 4)
    assert spec2.skips == ((2, 4),) and spec.skips == ()
    with pytest.raises(SpecError, match="already exists"):
        spec2.with_skip(2, 4)
    assert spec2.without_skip(2, 4) == spec
    with pytest.raises(SpecError, match="no skip"):
        spec.without_skip(1, 2)
    with pytest.raises(SpecError):
        spec.with_skip(3, 3)


def test_with_layer_changes_one_layer():
    spec = small_net()
    spec2 = spec.with_layer(2, activation="relu", batchnorm=True)
    assert spec2.hidden[1] == LayerSpec(8, "relu", True)
    assert spec2.hidden[0] == spec.hidden[0] and spec2.hidden[2:] == spec.hidden[2:]
    with pytest.raises(SpecError, match="numbered 1..4"):
        spec.with_layer(0, width=3)
    with pytest.raises(SpecError, match="width"):
        spec.with_layer(1, width=0)


def test_inserted_layer_map_and_skips():
    spec = small_net(skips=((0, 1), (1, 3), (2, 4), (3, 4)))
    new_layer = LayerSpec(5, "relu")
    new, old_of_new = spec.with_inserted_layer(3, new_layer)
    assert new.depth == 5
    assert new.hidden[2] == new_layer
    # layers 0..2 keep their numbers, the new layer has none, 3..5 (output) shift by one
    assert old_of_new == [0, 1, 2, None, 3, 4, 5]
    assert new.skips == ((0, 1), (1, 4), (2, 5), (4, 5))
    # every surviving layer is the same object as before
    for j, old in enumerate(old_of_new):
        if old is not None and 1 <= j <= new.depth:
            assert new.hidden[j - 1] == spec.hidden[old - 1]


@pytest.mark.parametrize("k", [1, 5])
def test_insert_at_the_ends(k):
    spec = small_net(skips=((1, 2),))
    new, old_of_new = spec.with_inserted_layer(k, LayerSpec(3))
    assert len(old_of_new) == new.depth + 2
    assert old_of_new[k] is None
    assert old_of_new[0] == 0 and old_of_new[-1] == spec.depth + 1
    assert new.skips == (((2, 3),) if k == 1 else ((1, 2),))


def test_insert_out_of_range():
    with pytest.raises(SpecError, match="1..5"):
        small_net().with_inserted_layer(6, LayerSpec(3))
    with pytest.raises(SpecError):
        small_net().with_inserted_layer(0, LayerSpec(3))


def test_deleted_layer_map_and_skips():
    spec = small_net(skips=((0, 2), (1, 3), (2, 4), (1, 4), (3, 4)))
    new, old_of_new = spec.with_deleted_layer(2)
    assert new.depth == 3
    assert new.hidden == spec.hidden[:1] + spec.hidden[2:]
    assert old_of_new == [0, 1, 3, 4, 5]
    # skips touching layer 2 go; the others follow their layers
    assert new.skips == ((1, 2), (1, 3), (2, 3))


def test_delete_only_layer_and_bad_index():
    spec = uniform_spec(2, 2, 1, 4, skips=((0, 1),))
    new, old_of_new = spec.with_deleted_layer(1)
    assert new.depth == 0 and new.skips == () and old_of_new == [0, 2]
    with pytest.raises(SpecError):
        spec.with_deleted_layer(2)


@settings(max_examples=100, deadline=None)
@given(network_specs(), st.data())
def test_insert_then_delete_is_identity(spec, data):
    k = data.draw(st.integers(1, spec.depth + 1))
    inserted, ins_map = spec.with_inserted_layer(k, LayerSpec(7, "elu"))
    back, del_map = inserted.with_deleted_layer(k)
    assert back == spec
    # composing the two maps gives the identity on the original layers
    assert [ins_map[j] for j in del_map] == list(range(spec.depth + 2))


@settings(max_examples=100, deadline=None)
@given(network_specs(), st.data())
def test_delete_keeps_valid_skips(spec, data):
    if spec.depth == 0:
        return
    k = data.draw(st.integers(1, spec.depth))
    new, old_of_new = spec.with_deleted_layer(k)
    assert len(old_of_new) == new.depth + 2
    kept = {(old_of_new[a], old_of_new[b]) for a, b in new.skips}
    assert kept == {s for s in spec.skips if k not in s}


def test_describe():
    spec = small_net(skips=residual_skips(4), batchnorm=True, init="he_normal")
    assert spec.describe() == "4 x 8 tanh, batch norm, 1 skip link, he_normal"
    mixed = NetworkSpec(2, 2, hidden=(LayerSpec(4, "relu"), LayerSpec(6, "tanh")))
    assert mixed.describe() == "2 x 4-6 mixed, glorot_uniform"
