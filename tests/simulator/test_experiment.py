"""Experiments: TrainSpec, the JSON file format, hostile files, saving, and the presets."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import experiment as experiment_module
from simulator.data import DataSpec, make_dataset
from simulator.experiment import (
    DTYPES,
    FORMAT,
    MAX_FILE_BYTES,
    OPTIMIZERS,
    PRESET_DIR,
    VERSION,
    Experiment,
    ExperimentError,
    TrainSpec,
    list_presets,
    load_experiment,
    load_preset,
    save_experiment,
)
from simulator.spec import ACTIVATIONS, INITS, LayerSpec, NetworkSpec, SpecError, uniform_spec

REQUIRED_PRESETS = (
    "deep_sigmoid", "fixed_by_relu", "fixed_by_residual", "fixed_by_batchnorm",
    "relu_standard_init", "relu_he_init", "tanh_edge_of_chaos", "exploding",
    "exploding_clipped", "dying_relu", "selu_lecun",
)

finite = {"allow_nan": False, "allow_infinity": False}

# -- strategies -----------------------------------------------------------------------------

train_specs = st.builds(
    TrainSpec,
    optimizer=st.sampled_from(OPTIMIZERS),
    lr=st.floats(1e-6, 100.0, **finite),
    batch_size=st.integers(1, 10**6),
    weight_decay=st.floats(0.0, 10.0, **finite),
    clip_norm=st.floats(0.0, 1e6, **finite),
    clip_value=st.floats(0.0, 1e6, **finite),
    momentum=st.floats(0.0, 0.999, **finite),
    beta1=st.floats(0.0, 0.999, **finite),
    beta2=st.floats(0.0, 0.9999, **finite),
    eps=st.floats(1e-12, 1.0, **finite),
)


@st.composite
def experiments(draw) -> Experiment:
    kind = draw(st.sampled_from(["spiral", "circles", "xor", "gaussians", "moons", "highdim"]))
    classes = draw(st.integers(2, 6)) if kind in ("spiral", "gaussians") else 2
    dims = draw(st.integers(1, 40))
    data = DataSpec(kind, n_samples=draw(st.integers(10, 5000)),
                    noise=draw(st.floats(0, 2, **finite)),
                    test_fraction=draw(st.floats(0, 0.9, **finite)),
                    seed=draw(st.integers(0, 2**32 - 1)), classes=classes, dims=dims)
    hidden = draw(st.lists(st.builds(LayerSpec, st.integers(1, 32), st.sampled_from(ACTIVATIONS),
                                     st.booleans()), max_size=6))
    pairs = [(a, b) for a in range(len(hidden) + 1) for b in range(a + 1, len(hidden) + 1)]
    skips = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=4)) if pairs else []
    network = NetworkSpec(
        input_dim=dims if kind == "highdim" else 2, output_dim=classes, hidden=tuple(hidden),
        skips=tuple(skips), init=draw(st.sampled_from(INITS)),
        loss=draw(st.sampled_from(["cross_entropy", "mse"])),
        gain=draw(st.floats(0.1, 10, **finite)), sigma_w=draw(st.floats(0, 5, **finite)),
        sigma_b=draw(st.floats(0, 1, **finite)),
    )
    return Experiment(
        name=draw(st.text(min_size=1, max_size=30).filter(str.strip)),
        description=draw(st.text(max_size=200)),
        network=network, data=data, training=draw(train_specs),
        seed=draw(st.integers(0, 2**32 - 1)), dtype=draw(st.sampled_from(DTYPES)),
    )


def simple_experiment(**changes) -> Experiment:
    exp = Experiment(
        name="test", description="a small test experiment",
        network=uniform_spec(2, 2, 3, 8, "tanh"), data=DataSpec("circles", n_samples=100),
        training=TrainSpec(),
    )
    return replace(exp, **changes)


def good_dict() -> dict:
    exp = simple_experiment(network=uniform_spec(2, 2, 5, 8, "relu", skips=((1, 3),)))
    return exp.to_dict()


# -- TrainSpec -----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(train_specs)
def test_train_spec_round_trip(spec):
    assert TrainSpec.from_dict(spec.to_dict()) == spec
    assert TrainSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_train_spec_defaults():
    t = TrainSpec()
    assert (t.optimizer, t.lr, t.batch_size, t.clip_norm, t.clip_value) == ("sgd", 0.1, 32, 0, 0)


@pytest.mark.parametrize(
    "changes, field, text",
    [
        ({"optimizer": "lbfgs"}, "training.optimizer", "'lbfgs'"),
        ({"lr": 0}, "training.lr", "greater than 0"),
        ({"lr": -1}, "training.lr", "between"),
        ({"lr": 101}, "training.lr", "between"),
        ({"lr": float("nan")}, "training.lr", "finite"),
        ({"lr": "0.1"}, "training.lr", "must be a number"),
        ({"lr": True}, "training.lr", "must be a number"),
        ({"batch_size": 0}, "training.batch_size", "between 1"),
        ({"batch_size": 3.5}, "training.batch_size", "whole number"),
        ({"weight_decay": -0.1}, "training.weight_decay", "between 0"),
        ({"clip_norm": -1}, "training.clip_norm", "between 0"),
        ({"clip_value": float("inf")}, "training.clip_value", "finite"),
        ({"momentum": 1.0}, "training.momentum", "less than 1"),
        ({"beta1": 1.5}, "training.beta1", "between 0"),
        ({"beta2": 1.0}, "training.beta2", "less than 1"),
        ({"eps": 0}, "training.eps", "greater than 0"),
    ],
)
def test_train_spec_validation(changes, field, text):
    with pytest.raises(SpecError) as info:
        TrainSpec(**changes)
    assert info.value.field == field
    assert text in info.value.message


def test_train_spec_from_dict_rejects_unknown_and_non_objects():
    with pytest.raises(SpecError, match="learning_rate"):
        TrainSpec.from_dict({"learning_rate": 0.1})
    with pytest.raises(SpecError, match="must be an object"):
        TrainSpec.from_dict("fast")


# -- Experiment ------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(experiments())
def test_experiment_json_round_trip(exp):
    assert Experiment.from_dict(exp.to_dict()) == exp
    text = exp.to_json()
    assert Experiment.from_json(text) == exp
    d = json.loads(text)
    assert d["format"] == FORMAT and d["version"] == VERSION
    assert list(d) == ["format", "version", "name", "description", "network", "data",
                       "training", "seed", "dtype"]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 1000}, "name"),
        ({"name": 3}, "name"),
        ({"description": None}, "description"),
        ({"network": {"input_dim": 2}}, "network"),
        ({"data": "circles"}, "data"),
        ({"training": None}, "training"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**40}, "seed"),
        ({"dtype": "float16"}, "dtype"),
    ],
)
def test_experiment_constructor_validation(changes, field):
    with pytest.raises(SpecError) as info:
        simple_experiment(**changes)
    assert info.value.field == field


def mutate(d, path, value):
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


@pytest.mark.parametrize(
    "path, value, field, text",
    [
        (("network", "hidden", 3, "width"), 0, "network.hidden[3].width",
         "must be between 1 and 4096, got 0"),
        (("network", "hidden", 3, "width"), 10**9, "network.hidden[3].width", "4096"),
        (("network", "hidden", 0, "activation"), "magic", "network.hidden[0].activation",
         "magic"),
        (("network", "skips", 0), [4, 2], "network.skips[0]", "from < to"),
        (("network", "gain"), 10**400, "network.gain", "finite"),
        (("network", "sigma_w"), 1e308 * 10, "network.sigma_w", "finite"),
        (("data", "noise"), -1, "data.noise", "between"),
        (("data", "kind"), "csv", "data.path", "needs the path"),
        (("data", "junk"), 1, "data", "junk"),
        (("training", "lr"), 0, "training.lr", "greater than 0"),
        (("training", "batch_size"), "all", "training.batch_size", "whole number"),
        (("seed",), 1.5, "seed", "whole number"),
        (("dtype",), "int8", "dtype", "int8"),
        (("format",), "something/else", "format", "not a Gradient Flow Lab experiment"),
        (("version",), 2, "version", "newer"),
        (("version",), "1", "version", "whole number"),
        (("version",), 0, "version", "at least 1"),
        (("comment",), "hi", "experiment", "comment"),
        (("network",), [1, 2, 3], "network", "must be an object"),
    ],
)
def test_malformed_dict_names_field_and_file(path, value, field, text):
    d = good_dict()
    mutate(d, path, value)
    with pytest.raises(ExperimentError) as info:
        Experiment.from_dict(d, source="my.json")
    e = info.value
    assert isinstance(e, ValueError)
    assert e.field == field
    assert text in str(e)
    assert str(e).startswith(f"my.json: {field}: ")


@pytest.mark.parametrize("key", ["name", "network", "data", "training", "format", "version"])
def test_missing_required_key(key):
    d = good_dict()
    del d[key]
    with pytest.raises(ExperimentError) as info:
        Experiment.from_dict(d)
    assert info.value.field == key


def test_optional_keys_have_defaults():
    d = good_dict()
    for key in ("description", "seed", "dtype"):
        del d[key]
    exp = Experiment.from_dict(d)
    assert (exp.description, exp.seed, exp.dtype) == ("", 0, "float32")


def leaf_paths(d, prefix=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from leaf_paths(v, (*prefix, k))
    elif isinstance(d, list) and d:
        for i, v in enumerate(d):
            yield from leaf_paths(v, (*prefix, i))
    else:
        yield prefix


LEAVES = list(leaf_paths(good_dict()))

garbage = st.recursive(
    st.none() | st.booleans() | st.integers(-10**50, 10**50) | st.text(max_size=20)
    | st.floats(),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


def all_finite(value) -> bool:
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, list):
        return all(all_finite(v) for v in value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    return True


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(LEAVES), value=garbage)
def test_garbage_anywhere_gives_experiment_error_in_its_section(path, value):
    d = good_dict()
    mutate(d, path, value)
    try:
        exp = Experiment.from_dict(d, source="g.json")
    except ExperimentError as e:
        assert e.field is not None
        assert e.field.split(".")[0].split("[")[0] in (path[0], "experiment")
        assert str(e).startswith("g.json: ")
        assert len(str(e)) < 500
        outcome = str(e)
    else:
        # accepted: then it must survive its own round trip
        assert Experiment.from_json(exp.to_json()) == exp
        outcome = exp
    if all_finite(value):  # representable in JSON: the file gives the same answer
        try:
            assert Experiment.from_json(json.dumps(d), source="g.json") == outcome
        except ExperimentError as e:
            assert str(e) == outcome


@settings(max_examples=100, deadline=None)
@given(section=st.sampled_from(["", "network", "data", "training"]),
       key=st.text(min_size=1, max_size=10))
def test_unknown_keys_are_named(section, key):
    d = good_dict()
    target = d[section] if section else d
    if key in target:
        return
    target[key] = 1
    with pytest.raises(ExperimentError) as info:
        Experiment.from_dict(d)
    assert info.value.field == (section or "experiment")
    assert "unknown field" in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "not valid JSON"),
        ("{'single': 'quotes'}", "not valid JSON"),
        ("[1, 2", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ("42", "must be a JSON object"),
        ('{"format": NaN}', "NaN is not allowed"),
        ('{"x": Infinity}', "Infinity is not allowed"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"x": ' + "9" * 10_000 + "}", "thousands of digits"),
    ],
)
def test_hostile_text(text, expected):
    with pytest.raises(ExperimentError) as info:
        Experiment.from_json(text, source="evil.json")
    assert expected in str(info.value)
    assert str(info.value).startswith("evil.json: ")


def test_huge_garbage_value_gives_a_short_message():
    d = good_dict()
    d["training"]["lr"] = "x" * 1_000_000
    with pytest.raises(ExperimentError) as info:
        Experiment.from_json(json.dumps(d))
    assert info.value.field == "training.lr"
    assert len(str(info.value)) < 500


def test_a_million_layers_is_refused_quickly():
    d = good_dict()
    d["network"]["hidden"] = [{"width": 1}] * 200_000
    with pytest.raises(ExperimentError) as info:
        Experiment.from_dict(d)
    assert info.value.field == "network.hidden"
    assert "at most" in str(info.value)


# -- files -------------------------------------------------------------------------------------


def test_save_and_load(tmp_path):
    exp = simple_experiment(seed=12, dtype="float64")
    path = tmp_path / "exp.json"
    save_experiment(exp, path)
    assert load_experiment(path) == exp
    assert json.loads(path.read_text(encoding="utf-8")) == exp.to_dict()
    # overwrite in place, and no temporary files left behind
    exp2 = replace(exp, name="second")
    save_experiment(exp2, str(path))
    assert load_experiment(str(path)) == exp2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.json"]


def test_save_unicode_name(tmp_path):
    exp = simple_experiment(name="Tiefe Netze – σ_w = 1", description="ünïcödé ✓")
    save_experiment(exp, tmp_path / "u.json")
    assert load_experiment(tmp_path / "u.json") == exp


def test_save_into_missing_folder(tmp_path):
    target = tmp_path / "no" / "such" / "exp.json"
    with pytest.raises(ExperimentError) as info:
        save_experiment(simple_experiment(), target)
    assert str(target) in str(info.value)
    assert "cannot be written" in str(info.value)


NOBODY = 65534


def _in_unprivileged_child(fn) -> str:
    """Run ``fn()`` in a forked child and return what happened there as text. When this
    process is root (as in CI) the child first becomes nobody, since root ignores file
    modes; the parent keeps its privileges."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(r)
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            try:
                fn()
                outcome = "ok"
            except ExperimentError as e:
                outcome = f"ExperimentError: {e}"
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                outcome = f"{type(e).__name__}: {e}"
            os.write(w, outcome.encode())
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes and fork")
def test_save_into_read_only_folder():
    # under a folder everyone may enter (tmp_path's parents are private to root)
    base = Path(tempfile.mkdtemp(prefix="gfl-ro-"))
    try:
        base.chmod(0o755)
        folder, open_folder = base / "ro", base / "open"
        folder.mkdir(mode=0o555)
        folder.chmod(0o555)
        open_folder.mkdir()
        open_folder.chmod(0o777)
        exp = simple_experiment()
        # the same unprivileged process can write next door: only the mode stops it
        assert _in_unprivileged_child(lambda: save_experiment(exp, open_folder / "e.json")) == "ok"
        outcome = _in_unprivileged_child(lambda: save_experiment(exp, folder / "exp.json"))
        assert outcome.startswith("ExperimentError: "), outcome
        assert "cannot be written" in outcome and str(folder / "exp.json") in outcome
        assert list(folder.iterdir()) == []
        assert load_experiment(open_folder / "e.json") == exp
    finally:
        for d in base.iterdir():
            d.chmod(0o700)
        shutil.rmtree(base)


def test_failed_replace_leaves_no_temp_file(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(experiment_module.os, "replace", refuse)
    with pytest.raises(ExperimentError, match="Permission denied"):
        save_experiment(simple_experiment(), tmp_path / "exp.json")
    assert list(tmp_path.iterdir()) == []


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ExperimentError, match="does not exist") as info:
        load_experiment(tmp_path / "missing.json")
    assert "missing.json" in str(info.value)
    with pytest.raises(ExperimentError, match="folder"):
        load_experiment(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ExperimentError, match="not valid JSON") as info:
        load_experiment(bad)
    assert str(bad) in str(info.value)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ExperimentError, match="not a text"):
        load_experiment(binary)


def test_load_names_file_and_field(tmp_path):
    d = good_dict()
    d["network"]["hidden"][3]["width"] = 0
    path = tmp_path / "w.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    assert str(info.value) == (
        f"{path}: network.hidden[3].width: must be between 1 and 4096, got 0"
    )
    assert info.value.path == str(path)


def test_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.json"
    # valid JSON, so only the size check can refuse it
    path.write_text('{"x": "' + "a" * (MAX_FILE_BYTES + 10) + '"}', encoding="utf-8")
    with pytest.raises(ExperimentError, match="MB") as info:
        load_experiment(path)
    assert "big.json" in str(info.value)
    with pytest.raises(ExperimentError, match="MB"):
        Experiment.from_json(path.read_text(encoding="utf-8"))


def write_csv(folder, name="points.csv"):
    lines = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(20)]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_experiment(path) -> Experiment:
    return simple_experiment(data=DataSpec("csv", path=str(path)))


def test_relative_csv_path_is_resolved_against_the_file(tmp_path):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    csv_path = write_csv(folder / "data")
    d = csv_experiment("data/points.csv").to_dict()
    exp_path = folder / "exp.json"
    exp_path.write_text(json.dumps(d), encoding="utf-8")
    exp = load_experiment(exp_path)
    assert os.path.samefile(exp.data.path, csv_path)
    assert os.path.isabs(exp.data.path)
    dataset = exp.build_dataset()
    assert dataset.input_dim == 2 and dataset.n_classes == 2


def test_saved_csv_path_is_relative_inside_the_folder(tmp_path):
    csv_path = write_csv(tmp_path)
    exp = csv_experiment(csv_path.resolve())
    save_experiment(exp, tmp_path / "exp.json")
    stored = json.loads((tmp_path / "exp.json").read_text(encoding="utf-8"))
    assert stored["data"]["path"] == "points.csv"
    back = load_experiment(tmp_path / "exp.json")
    assert os.path.samefile(back.data.path, csv_path)
    # saved elsewhere, the path stays absolute
    other = tmp_path / "elsewhere"
    other.mkdir()
    save_experiment(exp, other / "exp.json")
    stored = json.loads((other / "exp.json").read_text(encoding="utf-8"))
    assert os.path.isabs(stored["data"]["path"])
    assert os.path.samefile(load_experiment(other / "exp.json").data.path, csv_path)


def test_build_dataset_reports_csv_problems_as_experiment_error(tmp_path):
    exp = csv_experiment(tmp_path / "gone.csv")
    with pytest.raises(ExperimentError, match="gone.csv"):
        exp.build_dataset()


# -- checking the network against the data ----------------------------------------------------


def test_validate_against_accepts_matching_shapes():
    exp = simple_experiment()
    exp.validate_against(make_dataset(exp.data))
    mse = replace(exp, network=replace(exp.network, loss="mse"))
    mse.validate_against(make_dataset(exp.data))  # one-hot targets: one output per class


@pytest.mark.parametrize(
    "network, data, field, hint",
    [
        (uniform_spec(3, 2, 2, 4), DataSpec("xor"), "network.input_dim", "set input_dim to 2"),
        (uniform_spec(2, 3, 2, 4), DataSpec("moons"), "network.output_dim",
         "set output_dim to 2"),
        (uniform_spec(2, 2, 2, 4), DataSpec("spiral", classes=4), "network.output_dim",
         "set output_dim to 4"),
        (uniform_spec(2, 3, 2, 4, loss="mse"), DataSpec("xor"), "network.output_dim",
         "set output_dim to 2"),
        (uniform_spec(2, 2, 2, 4), DataSpec("highdim", dims=9), "network.input_dim",
         "set input_dim to 9"),
    ],
)
def test_validate_against_says_what_to_change(network, data, field, hint):
    exp = simple_experiment(network=network, data=data)
    with pytest.raises(ExperimentError) as info:
        exp.validate_against(make_dataset(data))
    assert info.value.field == field
    assert hint in str(info.value)
    with pytest.raises(ExperimentError):
        exp.build_dataset()


def test_validate_against_regression(tmp_path):
    lines = ["a,b,t"] + [f"{i},{i * 2},{i * 0.37}" for i in range(12)]
    path = tmp_path / "reg.csv"
    path.write_text("\n".join(lines), encoding="utf-8")
    data = DataSpec("csv", path=str(path))
    ce = simple_experiment(data=data)
    with pytest.raises(ExperimentError) as info:
        ce.build_dataset()
    assert info.value.field == "network.loss" and "set loss to mse" in str(info.value)
    wide = simple_experiment(data=data, network=uniform_spec(2, 2, 2, 4, loss="mse"))
    with pytest.raises(ExperimentError, match="set output_dim to 1"):
        wide.build_dataset()
    ok = simple_experiment(data=data, network=uniform_spec(2, 1, 2, 4, loss="mse"))
    assert ok.build_dataset().task == "regression"


# -- presets -----------------------------------------------------------------------------------


def test_preset_dir_is_in_the_repository():
    assert PRESET_DIR.is_dir()
    assert PRESET_DIR == experiment_module.Path(experiment_module.__file__).resolve().parent \
        .parent / "assets" / "presets"


def test_preset_files_are_numbered_in_order():
    files = sorted(p.name for p in PRESET_DIR.glob("*.json"))
    assert files, "no presets found"
    numbers = []
    for name in files:
        m = re.fullmatch(r"(\d{2})_([a-z0-9_]+)\.json", name)
        assert m, f"{name} does not follow NN_key.json"
        numbers.append(int(m.group(1)))
    assert numbers == list(range(1, len(files) + 1))


def test_list_presets_has_every_required_key_in_file_order():
    presets = list_presets()
    keys = [k for k, _, _ in presets]
    assert len(keys) == len(set(keys)) == len(list(PRESET_DIR.glob("*.json")))
    for key in REQUIRED_PRESETS:
        assert key in keys
    files = sorted(PRESET_DIR.glob("*.json"))
    assert keys == [f.stem.split("_", 1)[1] for f in files]
    for _key, name, description in presets:
        assert name.strip() and len(description) > 80


@pytest.mark.parametrize("key", [k for k, _, _ in list_presets()])
def test_every_preset_loads_validates_and_round_trips(key):
    exp = load_preset(key)
    dataset = exp.build_dataset()  # raises if the network does not fit the data
    assert dataset.input_dim == 2 and dataset.n_classes == 2
    assert exp.network.loss == "cross_entropy"
    assert exp.data.kind in ("spiral", "circles")
    assert 1e-4 <= exp.training.lr <= 1.0
    assert Experiment.from_json(exp.to_json()) == exp
    assert Experiment.from_dict(copy.deepcopy(exp.to_dict())) == exp


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ExperimentError) as info:
        load_preset("deep_sigmoidd")
    message = str(info.value)
    assert "deep_sigmoidd" in message
    for key in REQUIRED_PRESETS:
        assert key in message


def same_except(a: Experiment, b: Experiment, **diffs) -> bool:
    """a and b differ only in name, description and the given network/training fields."""
    net = replace(b.network, **{k: getattr(a.network, k) for k in diffs.get("network", ())})
    train = replace(b.training, **{k: getattr(a.training, k) for k in diffs.get("training", ())})
    return replace(b, name=a.name, description=a.description, network=net,
                   training=train) == a


def test_preset_pairs_differ_only_in_the_remedy():
    deep = load_preset("deep_sigmoid")
    net = deep.network
    assert 12 <= net.depth <= 20 and net.init == "uniform_fanin" and not net.skips
    assert {h.activation for h in net.hidden} == {"sigmoid"}
    assert not any(h.batchnorm for h in net.hidden)

    residual = load_preset("fixed_by_residual")
    assert residual.network.skips
    assert same_except(deep, residual, network=("skips",))

    bn = load_preset("fixed_by_batchnorm")
    assert all(h.batchnorm for h in bn.network.hidden)
    assert {h.activation for h in bn.network.hidden} == {"sigmoid"}
    assert same_except(deep, bn, network=("hidden",))

    relu = load_preset("fixed_by_relu")
    assert {h.activation for h in relu.network.hidden} == {"relu"}
    assert relu.network.init == "he_normal" and relu.network.depth == net.depth
    assert same_except(deep, relu, network=("hidden", "init"), training=("lr",))

    standard, he = load_preset("relu_standard_init"), load_preset("relu_he_init")
    assert standard.network.init == "uniform_fanin" and he.network.init == "he_normal"
    assert {h.activation for h in he.network.hidden} == {"relu"}
    assert he.network.depth >= 20
    assert same_except(standard, he, network=("init",))

    exploding, clipped = load_preset("exploding"), load_preset("exploding_clipped")
    assert exploding.training.clip_norm == 0 and clipped.training.clip_norm == 1.0
    assert same_except(exploding, clipped, training=("clip_norm",))


def test_special_presets_have_their_settings():
    tanh = load_preset("tanh_edge_of_chaos").network
    assert tanh.init == "mean_field" and tanh.sigma_w == 1.0 and tanh.sigma_b == 0.0
    assert {h.activation for h in tanh.hidden} == {"tanh"} and 30 <= tanh.depth <= 50

    exploding = load_preset("exploding").network
    assert exploding.init == "mean_field"
    relu_critical = 2 ** 0.5  # sigma_w above this makes a ReLU net's gradient grow
    assert exploding.sigma_w > 1.5 * relu_critical

    selu = load_preset("selu_lecun").network
    assert selu.init == "lecun_normal" and {h.activation for h in selu.hidden} == {"selu"}
    assert selu.depth >= 16

    dying = load_preset("dying_relu")
    assert {h.activation for h in dying.network.hidden} == {"relu"}
    assert dying.training.lr >= 0.5


def test_presets_skip_broken_files(tmp_path, monkeypatch):
    save_experiment(simple_experiment(name="Good one"), tmp_path / "01_good.json")
    (tmp_path / "02_broken.json").write_text("{", encoding="utf-8")
    monkeypatch.setattr(experiment_module, "PRESET_DIR", tmp_path)
    assert [k for k, _, _ in list_presets()] == ["good"]
    assert load_preset("good").name == "Good one"
    with pytest.raises(ExperimentError, match="not valid JSON"):
        load_preset("broken")
