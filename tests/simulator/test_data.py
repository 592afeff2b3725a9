"""Data sets: the spec, every generated kind, the split, and CSV import with its errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.data import (
    KINDS,
    MAX_CSV_CLASSES,
    MULTICLASS_KINDS,
    DataError,
    Dataset,
    DataSpec,
    load_csv,
    make_dataset,
)
from simulator.spec import SpecError

TOY_KINDS = tuple(k for k in KINDS if k != "csv")


def all_X(ds: Dataset) -> np.ndarray:
    return np.concatenate([ds.X_train, ds.X_test])


def all_y(ds: Dataset) -> np.ndarray:
    return np.concatenate([ds.y_train, ds.y_test])


# -- DataSpec ------------------------------------------------------------------------------

data_specs = st.builds(
    DataSpec,
    kind=st.sampled_from(TOY_KINDS),
    n_samples=st.integers(10, 2000),
    noise=st.floats(0.0, 10.0, allow_nan=False),
    test_fraction=st.floats(0.0, 0.9, allow_nan=False),
    seed=st.integers(0, 2**32 - 1),
    dims=st.integers(1, 1000),
)


@settings(max_examples=100, deadline=None)
@given(data_specs)
def test_spec_dict_round_trip(spec):
    assert DataSpec.from_dict(spec.to_dict()) == spec


def test_csv_spec_round_trip():
    spec = DataSpec("csv", path="some/file.csv", test_fraction=0.5)
    assert DataSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "changes, field, text",
    [
        ({"kind": "mnist"}, "data.kind", "'mnist'"),
        ({"kind": None}, "data.kind", "one of"),
        ({"n_samples": 5}, "data.n_samples", "between 10"),
        ({"n_samples": 10**9}, "data.n_samples", "between 10"),
        ({"n_samples": 100.5}, "data.n_samples", "whole number"),
        ({"noise": -0.1}, "data.noise", "between 0"),
        ({"noise": float("inf")}, "data.noise", "finite"),
        ({"noise": "low"}, "data.noise", "must be a number"),
        ({"test_fraction": 0.95}, "data.test_fraction", "between 0 and 0.9"),
        ({"seed": -1}, "data.seed", "between 0"),
        ({"classes": 1}, "data.classes", "between 2"),
        ({"classes": 3}, "data.classes", "always has 2 classes"),
        ({"dims": 0}, "data.dims", "between 1"),
        ({"path": "x.csv"}, "data.path", "only used when kind is 'csv'"),
    ],
)
def test_spec_validation_names_the_field(changes, field, text):
    d = {"kind": "circles", **changes}
    with pytest.raises(SpecError) as info:
        DataSpec(**d)
    assert info.value.field == field
    assert text in info.value.message


def test_csv_spec_needs_a_path():
    for path in (None, "", "   "):
        with pytest.raises(SpecError) as info:
            DataSpec("csv", path=path)
        assert info.value.field == "data.path"


@pytest.mark.parametrize(
    "d, field, text",
    [
        ([1, 2], "data", "must be an object"),
        ({"noise": 0.1}, "data.kind", "missing"),
        ({"kind": "xor", "size": 3}, "data", "size"),
        ({"kind": "csv", "path": 3}, "data.path", "file path"),
    ],
)
def test_from_dict_rejections(d, field, text):
    with pytest.raises(SpecError) as info:
        DataSpec.from_dict(d)
    assert info.value.field == field
    assert text in info.value.message


def test_multiclass_kinds_accept_classes():
    for kind in MULTICLASS_KINDS:
        assert DataSpec(kind, classes=5).classes == 5


# -- generated data sets -----------------------------------------------------------------


@pytest.mark.parametrize("kind", TOY_KINDS)
def test_shapes_types_and_labels(kind):
    classes = 3 if kind in MULTICLASS_KINDS else 2
    spec = DataSpec(kind, n_samples=300, classes=classes, dims=7)
    ds = make_dataset(spec)
    d = 7 if kind == "highdim" else 2
    assert ds.task == "classification"
    assert ds.n_classes == ds.output_dim == classes
    assert ds.input_dim == d
    assert ds.X_train.shape == (240, d) and ds.X_test.shape == (60, d)
    assert ds.y_train.shape == (240,) and ds.y_test.shape == (60,)
    assert ds.X_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    assert ds.X_test.dtype == np.float64 and ds.y_test.dtype == np.int64
    assert ds.feature_names == tuple(f"x{i + 1}" for i in range(d))
    y = all_y(ds)
    assert set(np.unique(y)) == set(range(classes))
    # roughly balanced classes
    assert np.bincount(y).min() >= 300 / classes * 0.6
    assert np.all(np.isfinite(all_X(ds)))
    assert ds.name


@pytest.mark.parametrize("kind", [k for k in TOY_KINDS if k != "highdim"])
def test_toy_sets_live_in_the_unit_square(kind):
    ds = make_dataset(DataSpec(kind, n_samples=2000, noise=0.0))
    X = all_X(ds)
    assert np.abs(X).max() <= 1.05
    assert np.abs(X).max() >= 0.5  # and fill a good part of it


@pytest.mark.parametrize("kind", TOY_KINDS)
def test_same_seed_same_data_other_seed_other_data(kind):
    a = make_dataset(DataSpec(kind, seed=3))
    b = make_dataset(DataSpec(kind, seed=3))
    c = make_dataset(DataSpec(kind, seed=4))
    for name in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.X_train, c.X_train)


def test_arrays_are_read_only():
    ds = make_dataset(DataSpec("xor"))
    with pytest.raises(ValueError):
        ds.X_train[0, 0] = 5.0
    with pytest.raises(ValueError):
        ds.y_test[0] = 1


def test_circles_are_two_rings():
    ds = make_dataset(DataSpec("circles", n_samples=1000, noise=0.0))
    r = np.linalg.norm(all_X(ds), axis=1)
    y = all_y(ds)
    np.testing.assert_allclose(r[y == 0], 0.45)
    np.testing.assert_allclose(r[y == 1], 1.0)


def test_xor_labels_follow_the_quadrants():
    ds = make_dataset(DataSpec("xor", n_samples=1000, noise=0.0))
    X, y = all_X(ds), all_y(ds)
    np.testing.assert_array_equal(y, (X[:, 0] * X[:, 1] < 0).astype(np.int64))


def test_gaussian_blobs_are_separate():
    ds = make_dataset(DataSpec("gaussians", n_samples=1200, noise=0.0, classes=4))
    X, y = all_X(ds), all_y(ds)
    centres = np.array([X[y == c].mean(axis=0) for c in range(4)])
    # each point is nearest to its own blob's centre almost always
    nearest = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).mean() > 0.95


def test_spiral_arms_are_rotated_copies():
    ds = make_dataset(DataSpec("spiral", n_samples=3000, noise=0.0, classes=3))
    X, y = all_X(ds), all_y(ds)
    turn = 2 * np.pi / 3
    rot = np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
    # rotating arm 0 by a third of a turn lands it on arm 1
    arm0 = X[y == 0] @ rot
    arm1 = X[y == 1]
    dist = np.sqrt(((arm0[:, None, :] - arm1[None]) ** 2).sum(-1)).min(axis=1)
    assert np.median(dist) < 0.02


def test_highdim_labels_come_from_the_teacher():
    # noise 0: the labels are a deterministic function of x, so a nearest-neighbour
    # rule beats chance clearly, and the two classes are equally large
    ds = make_dataset(DataSpec("highdim", n_samples=2000, noise=0.0, dims=5))
    y = all_y(ds)
    assert abs(np.bincount(y)[0] - 1000) <= 1
    X = all_X(ds)
    d2 = ((X[:200, None, :] - X[None, 200:, :]) ** 2).sum(-1)
    nn = y[200:][np.argmin(d2, axis=1)]
    assert (nn == y[:200]).mean() > 0.75
    assert abs(X.mean()) < 0.1 and abs(X.std() - 1) < 0.1


def test_noise_moves_points():
    clean = make_dataset(DataSpec("moons", noise=0.0))
    noisy = make_dataset(DataSpec("moons", noise=0.3))
    assert not np.allclose(clean.X_train, noisy.X_train)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(10, 500), frac=st.floats(0.0, 0.9), seed=st.integers(0, 1000))
def test_split_sizes(n, frac, seed):
    ds = make_dataset(DataSpec("xor", n_samples=n, test_fraction=frac, seed=seed))
    assert ds.n_train + ds.n_test == n
    assert ds.n_train >= 1
    if frac > 0:
        assert ds.n_test >= 1
        assert abs(ds.n_test - n * frac) <= 1
    else:
        assert ds.n_test == 0
        assert ds.X_test.shape == (0, 2) and ds.y_test.shape == (0,)


def test_split_is_a_partition():
    # the held-out points are exactly the points missing from the training part
    full = make_dataset(DataSpec("moons", n_samples=200, test_fraction=0.0, seed=9))
    split = make_dataset(DataSpec("moons", n_samples=200, test_fraction=0.25, seed=9))
    rows = {tuple(r) for r in full.X_train}
    train = {tuple(r) for r in split.X_train}
    test = {tuple(r) for r in split.X_test}
    assert train | test == rows and not train & test
    assert len(test) == 50


def test_make_dataset_needs_a_spec():
    with pytest.raises(TypeError):
        make_dataset({"kind": "xor"})


# -- CSV -------------------------------------------------------------------------------------


def write(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_classification_with_header(tmp_path):
    p = write(tmp_path, "height, weight ,label\n1,10,7\n2,20,3\n3,30,7\n4,40,5\n")
    X, y, task, names = load_csv(p)
    assert task == "classification"
    assert names == ("height", "weight")
    np.testing.assert_array_equal(X, [[1, 10], [2, 20], [3, 30], [4, 40]])
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [2, 0, 2, 1])  # 3 -> 0, 5 -> 1, 7 -> 2


def test_csv_without_header_comments_blanks_and_float_labels(tmp_path):
    p = write(tmp_path, "# measured today\n\n1.5,2,0.0\n\n3,4.25,1.0\n5,6,1\n")
    X, y, task, names = load_csv(p)
    assert task == "classification"
    assert names == ("x1", "x2")
    assert X.shape == (3, 2)
    np.testing.assert_array_equal(y, [0, 1, 1])


def test_csv_regression(tmp_path):
    p = write(tmp_path, "a;b;target\n1;2;0.5\n2;3;1.5\n3;5;2.25\n")
    X, y, task, names = load_csv(p)
    assert task == "regression"
    assert y.shape == (3, 1) and y.dtype == np.float64
    np.testing.assert_allclose(y[:, 0], [0.5, 1.5, 2.25])


def test_csv_many_integer_values_are_a_target(tmp_path):
    rows = "".join(f"{i},{i * 3}\n" for i in range(MAX_CSV_CLASSES + 5))
    _, y, task, _ = load_csv(write(tmp_path, rows))
    assert task == "regression"
    assert y.shape == (MAX_CSV_CLASSES + 5, 1)


def test_csv_tabs_and_bom(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes("\ufeffx\ty\n1\t0\n2\t1\n".encode())
    X, y, task, names = load_csv(p)
    assert names == ("x",)
    np.testing.assert_array_equal(X[:, 0], [1, 2])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "the file is empty"),
        ("\n\n# only a comment\n", "the file is empty"),
        ("1\n2\n3\n", "line 1 has 1 column"),
        ("a,b,c\n1,2,0\n3,4,1\n5,6\n", "line 4 has 2 columns, but line 1 has 3"),
        ("1,2,0\n3,4,1,9\n", "line 2 has 4 columns, but line 1 has 3"),
        ("a,b,c\n1,2,0\n3,4,1\n5,6,1\n7,8,0\n9,10,1\n11,abc,0\n",
         "line 7, column 2: 'abc' is not a number"),
        ("1,2,0\n3,,1\n", "line 2, column 2: is empty"),
        ("1,2,0\n3,nan,1\n", "line 2, column 2: 'nan' is not a finite number"),
        ("1,2,0\n3,4,inf\n", "line 2, column 3: 'inf' is not a finite number"),
        ("x,y\n1,0\n", "only 1 data row"),
        ("x,y\n", "no data rows"),
        ("1,2,4\n3,4,4\n5,6,4\n", "only one class"),
        ('1,2,0\n3,"4\n', "line 2"),
    ],
)
def test_csv_errors_name_file_line_and_column(tmp_path, text, expected):
    p = write(tmp_path, text, "bad.csv")
    with pytest.raises(DataError) as info:
        load_csv(p)
    message = str(info.value)
    assert str(p) in message
    assert expected in message
    assert "Traceback" not in message


def test_csv_missing_file_folder_and_binary(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="folder"):
        load_csv(tmp_path)
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataError, match="not a text"):
        load_csv(binary)


def test_csv_dataset_is_standardized_with_training_statistics(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    X = np.column_stack([rng.normal(100, 20, n), np.full(n, 7.0), rng.normal(-3, 0.1, n)])
    y = (X[:, 0] > 100).astype(int)
    lines = ["a,const,c,label"] + [f"{a},{b},{c},{t}" for (a, b, c), t in zip(X, y, strict=True)]
    p = write(tmp_path, "\n".join(lines) + "\n")
    ds = make_dataset(DataSpec("csv", path=str(p), test_fraction=0.2, seed=1))
    assert ds.task == "classification" and ds.n_classes == 2 and ds.output_dim == 2
    assert ds.input_dim == 3 and ds.feature_names == ("a", "const", "c")
    assert ds.name == "data"
    assert ds.n_train == 40 and ds.n_test == 10
    np.testing.assert_allclose(ds.X_train[:, [0, 2]].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(ds.X_train[:, [0, 2]].std(axis=0), 1, atol=1e-12)
    # the constant column stays at 0 everywhere, the held-out part is scaled, not re-fitted
    assert np.all(ds.X_train[:, 1] == 0) and np.all(ds.X_test[:, 1] == 0)
    assert abs(ds.X_test[:, 0].mean()) < 2 and ds.X_test[:, 0].std() > 0.3


def test_csv_dataset_regression_and_determinism(tmp_path):
    lines = ["x,y"] + [f"{i},{i * 0.5 + 0.25}" for i in range(30)]
    p = write(tmp_path, "\n".join(lines))
    spec = DataSpec("csv", path=str(p), seed=2)
    ds = make_dataset(spec)
    assert ds.task == "regression" and ds.n_classes == 0 and ds.output_dim == 1
    assert ds.y_train.shape == (ds.n_train, 1) and ds.y_train.dtype == np.float64
    np.testing.assert_allclose(ds.y_train.mean(), 0, atol=1e-12)
    again = make_dataset(spec)
    np.testing.assert_array_equal(ds.X_test, again.X_test)
    np.testing.assert_array_equal(ds.y_test, again.y_test)


def test_csv_dataset_reports_data_error(tmp_path):
    spec = DataSpec("csv", path=str(tmp_path / "gone.csv"))
    with pytest.raises(DataError, match="gone.csv"):
        make_dataset(spec)
