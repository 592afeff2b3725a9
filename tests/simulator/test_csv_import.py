"""CSV import (issue 12 item 10, issue 8): the header rule, strict numbers, text class
labels with their mapping in the import summary, and huge finite values."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.data import DataError, DataSpec, load_csv, make_dataset

SPECIES = ("setosa", "versicolor", "virginica")


def write(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def iris_like(tmp_path):
    """The layout of the usual iris.csv: a header, four measurements, species names."""
    rng = np.random.default_rng(0)
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for k, name in enumerate(SPECIES):
        for _ in range(50):
            v = rng.normal([5.0 + k * 0.9, 3.4 - k * 0.3, 1.5 + k * 2.2, 0.25 + k * 0.9], 0.3)
            lines.append(",".join(f"{x:.1f}" for x in v) + f",{name}")
    return write(tmp_path, "\n".join(lines) + "\n", "iris.csv")


def test_species_names_become_classes_and_the_summary_shows_the_mapping(tmp_path):
    table = load_csv(iris_like(tmp_path))
    assert table.task == "classification"
    assert table.class_names == SPECIES  # alphabetical, as the docstring says
    assert np.bincount(table.y).tolist() == [50, 50, 50]
    assert table.feature_names[0] == "sepal_length" and table.X.shape == (150, 4)
    assert table.header_line == 1
    assert "line 1 taken as the header" in table.summary
    assert "0 = setosa, 1 = versicolor, 2 = virginica" in table.summary
    ds = make_dataset(DataSpec(kind="csv", path=str(tmp_path / "iris.csv")))
    assert ds.n_classes == 3 and ds.input_dim == 4 and ds.class_names == SPECIES
    assert ds.summary == table.summary


def test_numeric_labels_still_map_in_increasing_order(tmp_path):
    table = load_csv(write(tmp_path, "a,b,label\n1,2,7\n3,4,3\n5,6,7\n"))
    assert table.y.tolist() == [1, 0, 1] and table.class_names == ("3", "7")
    assert "0 = 3, 1 = 7" in table.summary


@pytest.mark.parametrize("first_row, bad", [("1,2O,0", "'2O'"), ("0x1A,3,1", "'0x1A'")])
def test_a_typo_in_the_first_row_is_an_error_not_a_header(tmp_path, first_row, bad):
    """Header rule: the first row is a header only when none of its feature cells is a
    number. '1,2O,0' has the number 1, so it is data, and '2O' is reported."""
    path = write(tmp_path, f"{first_row}\n3,4,1\n5,6,0\n")
    with pytest.raises(DataError, match=f"line 1, column [12]: {bad} is not a number"):
        load_csv(path)


def test_without_a_header_the_summary_says_so(tmp_path):
    table = load_csv(write(tmp_path, "1,2,0\n3,4,1\n5,6,0\n"))
    assert table.header_line == 0 and len(table.y) == 3
    assert "no header" in table.summary


def test_underscore_numbers_are_refused(tmp_path):
    with pytest.raises(DataError, match="line 2, column 1: '1_000' is not a number"):
        load_csv(write(tmp_path, "a,b,c\n1_000,2,0\n3,4,1\n"))


def test_values_near_the_largest_float_standardize_without_overflow(tmp_path):
    rows = [f"{(1 + i / 10) * 1e307:.6e},{i},{i % 2}" for i in range(20)]
    path = write(tmp_path, "big,small,label\n" + "\n".join(rows) + "\n")
    ds = make_dataset(DataSpec(kind="csv", path=str(path), test_fraction=0.2))
    col = np.concatenate([ds.X_train[:, 0], ds.X_test[:, 0]])
    assert np.all(np.isfinite(col))
    assert ds.X_train[:, 0].std() == pytest.approx(1.0, rel=1e-9)  # not silently 0
    # the same z-scores as the column scaled down (z-scores do not depend on the unit)
    assert np.allclose(ds.X_train[:, 0], ds.X_train[:, 1], atol=1e-9) or \
        np.corrcoef(ds.X_train[:, 0], ds.X_train[:, 1])[0, 1] == pytest.approx(1.0)
