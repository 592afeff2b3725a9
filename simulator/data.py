"""Training data: small 2-D toy problems, a many-input task, and the user's own CSV files.

A ``DataSpec`` says which data set to build (pure data, validated on
construction); ``make_dataset`` turns it into a ``Dataset`` of read-only numpy
arrays, already split into a training part and a held-out part. The same spec
always gives the same arrays.

The toy sets live roughly in [-1, 1]^2 so that no input scaling is needed and
a hidden unit's pre-activation starts in a sensible range. CSV features are
standardized with the mean and spread of the training rows only, so that the
held-out rows say honestly how well the network generalizes. A CSV regression
target is standardized the same way.
"""

from __future__ import annotations

import array
import csv
import io
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .spec import SpecError, _check_choice, _check_float, _check_int

KINDS = ("spiral", "circles", "xor", "gaussians", "moons", "highdim", "csv")
# Kinds whose number of classes is set by ``DataSpec.classes``; all others have two.
MULTICLASS_KINDS = ("spiral", "gaussians")

MAX_SAMPLES = 200_000
MAX_CLASSES = 10
MAX_DIMS = 1000
MAX_TEST_FRACTION = 0.9

# A CSV label column with integer values becomes class labels, unless it holds
# more distinct values than this: then it is almost surely a numeric target.
MAX_CSV_CLASSES = 100
MAX_CSV_BYTES = 50 * 1024 * 1024
MAX_EMBEDDED_CHARS = 3 * 2**20  # an experiment file is at most 4 MB
EMBED_BY_DEFAULT_BYTES = 256 * 2**10  # Save embeds a CSV this small unless told not to

# Width of the hidden layer of the fixed random "teacher" that labels ``highdim``.
TEACHER_WIDTH = 16


class DataError(ValueError):
    """The data cannot be read or built. The message names the file, line and column."""


@dataclass(frozen=True)
class DataSpec:
    """Which data set to build.

    noise: standard deviation of the Gaussian jitter added to each coordinate of
        the toy sets (whose radius is about 1); for ``highdim`` it is the spread
        of the noise added to the teacher's output, relative to that output's own
        spread, so some labels near the boundary flip. Unused for ``csv``.
    classes: spiral arms or Gaussian blobs; must be 2 for the other kinds.
    dims: input dimension of ``highdim``.
    path: the CSV file, for ``csv`` only. ``n_samples`` is unused for ``csv``:
        every row of the file is used.
    """

    kind: str
    n_samples: int = 400
    noise: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    classes: int = 2
    dims: int = 20
    path: str | None = None
    text: str | None = None  # csv only: the file's contents, embedded (then path is a name)

    def __post_init__(self):
        _check_choice("data.kind", self.kind, KINDS)
        set_ = object.__setattr__
        set_(self, "n_samples", _check_int("data.n_samples", self.n_samples, 10, MAX_SAMPLES))
        set_(self, "noise", _check_float("data.noise", self.noise, 0.0, 10.0))
        set_(
            self,
            "test_fraction",
            _check_float("data.test_fraction", self.test_fraction, 0.0, MAX_TEST_FRACTION),
        )
        set_(self, "seed", _check_int("data.seed", self.seed, 0, 2**32 - 1))
        set_(self, "classes", _check_int("data.classes", self.classes, 2, MAX_CLASSES))
        if self.kind not in MULTICLASS_KINDS and self.classes != 2:
            raise SpecError(
                "data.classes",
                f"'{self.kind}' always has 2 classes (only "
                f"{' and '.join(MULTICLASS_KINDS)} can have more), got {self.classes}",
            )
        set_(self, "dims", _check_int("data.dims", self.dims, 1, MAX_DIMS))
        if self.kind == "csv":
            if not isinstance(self.path, str) or not self.path.strip():
                raise SpecError("data.path", "a CSV data set needs the path of its file")
            if "\x00" in self.path or len(self.path) > 4096:
                raise SpecError("data.path", "is not a usable file path")
            if self.text is not None and (not isinstance(self.text, str)
                                          or len(self.text) > MAX_EMBEDDED_CHARS):
                raise SpecError("data.text", "must be the CSV text, at most "
                                             f"{MAX_EMBEDDED_CHARS:,} characters")
        elif self.path is not None:
            raise SpecError("data.path", f"is only used when kind is 'csv', not '{self.kind}'")
        elif self.text is not None:
            raise SpecError("data.text", f"is only used when kind is 'csv', not '{self.kind}'")

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "n_samples": self.n_samples,
            "noise": self.noise,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "classes": self.classes,
            "dims": self.dims,
            "path": self.path,
            **({"text": self.text} if self.text is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: Any) -> DataSpec:
        if not isinstance(d, dict):
            raise SpecError("data", f"must be an object, got {type(d).__name__}")
        allowed = {"kind", "n_samples", "noise", "test_fraction", "seed", "classes", "dims",
                   "path", "text"}
        unknown = set(d) - allowed
        if unknown:
            raise SpecError("data", f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        if "kind" not in d:
            raise SpecError("data.kind", "is missing")
        if "path" in d and d["path"] is not None and not isinstance(d["path"], str):
            raise SpecError("data.path", f"must be a file path (text), got {d['path']!r}")
        return cls(**d)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set split into training and held-out parts. Arrays are read-only.

    X is float64 (n, input_dim). For classification y is int64 (n,) with labels
    0..n_classes-1; for regression y is float64 (n, output_dim) and n_classes is 0.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    task: str
    n_classes: int
    input_dim: int
    output_dim: int
    name: str
    feature_names: tuple[str, ...] = field(default_factory=tuple)
    class_names: tuple[str, ...] = ()  # CSV: the label each class number stands for
    summary: str = ""  # CSV: what the import made of the file (header row, classes)

    def __post_init__(self):
        for name in ("X_train", "y_train", "X_test", "y_test"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "feature_names", tuple(self.feature_names))

    @property
    def n_train(self) -> int:
        return len(self.X_train)

    @property
    def n_test(self) -> int:
        return len(self.X_test)


# -- the toy problems ------------------------------------------------------------------
# Each generator returns X (n, d) float64 and y (n,) int64 before the split.


def _class_sizes(n: int, k: int) -> list[int]:
    """n points shared out as evenly as possible over k classes."""
    return [n // k + (1 if c < n % k else 0) for c in range(k)]


def _spiral(n, noise, k, rng):
    # Arm c: radius grows with t while the angle turns 1.25 times around, offset
    # by c/k of a turn. Neighbouring arms are 1/(1.25 k) apart along a ray.
    xs, ys = [], []
    for c, m in enumerate(_class_sizes(n, k)):
        t = rng.uniform(0.0, 1.0, m)
        r = 0.08 + 0.92 * t
        angle = 2 * np.pi * (c / k + 1.25 * t)
        pts = np.column_stack([r * np.cos(angle), r * np.sin(angle)])
        xs.append(pts + noise * rng.standard_normal((m, 2)))
        ys.append(np.full(m, c))
    return np.concatenate(xs), np.concatenate(ys)


def _circles(n, noise, rng):
    # Class 0: inner ring of radius 0.45; class 1: outer ring of radius 1.
    xs, ys = [], []
    for c, (m, radius) in enumerate(zip(_class_sizes(n, 2), (0.45, 1.0), strict=True)):
        angle = rng.uniform(0.0, 2 * np.pi, m)
        pts = radius * np.column_stack([np.cos(angle), np.sin(angle)])
        xs.append(pts + noise * rng.standard_normal((m, 2)))
        ys.append(np.full(m, c))
    return np.concatenate(xs), np.concatenate(ys)


def _xor(n, noise, rng):
    # Uniform in the square, kept a little away from the axes so the clean
    # problem has a margin; class 1 where the two coordinates' signs differ.
    u = rng.uniform(-1.0, 1.0, (n, 2))
    x = np.sign(u) * (0.05 + 0.95 * np.abs(u))
    y = (x[:, 0] * x[:, 1] < 0).astype(np.int64)
    return x + noise * rng.standard_normal((n, 2)), y


def _gaussians(n, noise, k, rng):
    # Blob centres evenly spaced on a circle of radius 0.65; spread grows with noise.
    spread = math.hypot(0.12, noise)
    xs, ys = [], []
    for c, m in enumerate(_class_sizes(n, k)):
        angle = 2 * np.pi * c / k + np.pi / 4
        centre = 0.65 * np.array([np.cos(angle), np.sin(angle)])
        xs.append(centre + spread * rng.standard_normal((m, 2)))
        ys.append(np.full(m, c))
    return np.concatenate(xs), np.concatenate(ys)


def _moons(n, noise, rng):
    # Upper moon (cos t, sin t) and lower moon (1 - cos t, 1/2 - sin t), t in [0, pi],
    # then shifted and scaled from [-1, 2] x [-1/2, 1] to about [-1, 1] x [-1/2, 1/2].
    m0, m1 = _class_sizes(n, 2)
    t0 = rng.uniform(0.0, np.pi, m0)
    t1 = rng.uniform(0.0, np.pi, m1)
    upper = np.column_stack([np.cos(t0), np.sin(t0)])
    lower = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
    x = (np.concatenate([upper, lower]) - np.array([0.5, 0.25])) / 1.5
    y = np.concatenate([np.zeros(m0, np.int64), np.ones(m1, np.int64)])
    return x + noise * rng.standard_normal((n, 2)), y


def _highdim(n, noise, dims, rng):
    """Inputs x ~ N(0, I_dims); labels from a fixed random teacher network.

    The teacher is one tanh layer of TEACHER_WIDTH units with N(0, 1/dims) weights
    and a random readout v: f(x) = tanh(x W) . v. Gaussian noise of ``noise``
    times f's own spread is added, and the label is 1 where the result lies
    above its median, so the two classes are equally large. The teacher is
    drawn from the data seed, so one seed is one fixed task.
    """
    W = rng.standard_normal((dims, TEACHER_WIDTH)) / math.sqrt(dims)
    v = rng.standard_normal(TEACHER_WIDTH)
    x = rng.standard_normal((n, dims))
    f = np.tanh(x @ W) @ v
    f = f + noise * (f.std() + 1e-12) * rng.standard_normal(n)
    y = (f > np.median(f)).astype(np.int64)
    return x, y


def _split(n: int, test_fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train / held-out indices; at least 1 held out when the fraction > 0."""
    n_test = int(round(n * test_fraction))
    if test_fraction > 0:
        n_test = max(1, n_test)
    n_test = min(n_test, n - 1)  # always keep something to train on
    perm = rng.permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def make_dataset(spec: DataSpec) -> Dataset:
    """Build the data set ``spec`` describes. The same spec gives the same arrays."""
    if not isinstance(spec, DataSpec):
        raise TypeError(f"make_dataset needs a DataSpec, got {type(spec).__name__}")
    if spec.kind == "csv":
        return _csv_dataset(spec)
    # Separate streams for the points and for the split, both from the one seed.
    rng = np.random.default_rng([spec.seed, 0])
    split_rng = np.random.default_rng([spec.seed, 1])
    n, noise, k = spec.n_samples, spec.noise, spec.classes
    if spec.kind == "spiral":
        X, y = _spiral(n, noise, k, rng)
        name = f"spiral ({k} arms)"
    elif spec.kind == "circles":
        X, y = _circles(n, noise, rng)
        name = "circles"
    elif spec.kind == "xor":
        X, y = _xor(n, noise, rng)
        name = "xor"
    elif spec.kind == "gaussians":
        X, y = _gaussians(n, noise, k, rng)
        name = f"gaussians ({k} blobs)"
    elif spec.kind == "moons":
        X, y = _moons(n, noise, rng)
        name = "moons"
    else:  # highdim
        X, y = _highdim(n, noise, spec.dims, rng)
        name = f"highdim ({spec.dims} inputs)"
    X = X.astype(np.float64)
    y = y.astype(np.int64)
    n_classes = k if spec.kind in MULTICLASS_KINDS else 2
    train, test = _split(len(X), spec.test_fraction, split_rng)
    return Dataset(
        X_train=X[train],
        y_train=y[train],
        X_test=X[test],
        y_test=y[test],
        task="classification",
        n_classes=n_classes,
        input_dim=X.shape[1],
        output_dim=n_classes,
        name=name,
        feature_names=tuple(f"x{i + 1}" for i in range(X.shape[1])),
    )


# -- CSV files -----------------------------------------------------------------------------


# A number as written in a table: optional sign, digits with an optional decimal point,
# optional exponent; or nan / inf (refused later, by name). Python's float() also takes
# "1_000", which no spreadsheet writes; a cell like that is a typo, not a thousand.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)",
                     re.IGNORECASE)


def _parse_number(cell: str) -> float | None:
    if not _NUMBER.fullmatch(cell):
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def _sniff_delimiter(first_line: str) -> str:
    for delim in (",", ";", "\t"):
        if delim in first_line:
            return delim
    return ","


def read_regular_file(path: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path``, which must be a regular file.

    Opened without blocking and checked on the open descriptor: a FIFO, a device or
    /dev/stdin would otherwise block the reader until someone writes to it.
    Raises OSError (FileNotFoundError, IsADirectoryError) or ValueError (not a
    regular file: the message says what it is)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "is a folder", str(path))
        if not stat.S_ISREG(mode):
            kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else
                    "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
                    "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise ValueError(f"is {kind}, not a file; give a regular file")
        if os.fstat(fd).st_size > limit:
            return b"\0" * (limit + 1)  # the caller reports the size; nothing is read
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read(limit + 1)
    finally:
        if fd >= 0:
            os.close(fd)


def too_big(size: int, limit: int) -> str:
    return (f"the file is {size:,} bytes, over the limit of {limit:,} bytes "
            f"({limit // 2**20} MB)")


def _read_text(path: Path) -> str:
    try:
        raw = read_regular_file(path, MAX_CSV_BYTES)
    except FileNotFoundError:
        raise DataError(f"{path}: the file does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a CSV file") from None
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(raw) > MAX_CSV_BYTES:
        try:
            size = path.stat().st_size
        except OSError:
            size = len(raw)
        raise DataError(f"{path}: {too_big(size, MAX_CSV_BYTES)} for a CSV file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: is not a text (UTF-8) CSV file") from None


@dataclass(frozen=True)
class CsvTable:
    """What ``load_csv`` read: X float64 (n, d) not yet standardized; y int64 class
    numbers (classification) or float64 (n, 1) targets (regression)."""

    X: np.ndarray
    y: np.ndarray
    task: str
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]  # the label of each class number, 0..K-1
    header_line: int  # the line taken as the header, 0 if none
    summary: str

    def __iter__(self):
        """``X, y, task, feature_names = load_csv(path)`` (the earlier tuple form)."""
        return iter((self.X, self.y, self.task, self.feature_names))


class LoadCancelled(Exception):
    """``load_csv``'s ``progress`` callback asked to stop."""


_last_table: tuple[tuple, CsvTable] | None = None  # (file identity, what it held)


def _identity(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def load_csv(path: str | os.PathLike,
             progress: Callable[[float], bool] | None = None) -> CsvTable:
    """``read_csv`` with the last file read remembered: the window reads a large file
    once in the background (with ``progress``), then the edit that uses it finds it
    here instead of parsing it again on the GUI thread. A file changed on disk
    (size, time or inode) is read again."""
    global _last_table
    path = Path(path)
    key = _identity(path)
    cached = _last_table
    if key is not None and cached is not None and cached[0] == key:
        return cached[1]
    table = read_csv(path, progress)
    if key is not None:
        _last_table = (key, table)
    return table


def read_csv(path: str | os.PathLike,
             progress: Callable[[float], bool] | None = None) -> CsvTable:
    """Read a CSV data set: features in every column but the last, which is the label.

    Header rule: the first row (after blank and ``#`` lines) is a header when none of
    its feature cells (every column but the last) is a number; otherwise it is data,
    and a cell in it that is not a number is an error naming the line and column
    (never silently dropped). Numbers are written plainly (``-1.5``, ``2e-3``; not
    ``1_000`` or ``0x1A``).

    Labels: if every label is a whole number (and there are at most
    MAX_CSV_CLASSES distinct ones) the task is classification, classes numbered in
    increasing order of the values; if any label is not a number, every label is a
    class name (``setosa``), classes numbered in alphabetical order of the names;
    otherwise the task is regression. ``summary`` says which row was the header
    and how labels became classes. Commas, semicolons or tabs separate cells.
    Every problem raises ``DataError`` naming the file, and the line and column.

    ``progress(fraction)`` is called every few thousand rows; returning False stops
    the reading (``LoadCancelled``).
    """
    path = Path(path)
    return parse_csv(_read_text(path), path, progress)


def parse_csv(text: str, path: str | os.PathLike,
              progress: Callable[[float], bool] | None = None) -> CsvTable:
    """``read_csv`` on text already read (an embedded copy); ``path`` names it in
    messages."""
    first = next((ln for ln in io.StringIO(text)
                  if ln.strip() and not ln.lstrip().startswith("#")), None)
    if first is None:
        raise DataError(f"{path}: the file is empty")
    reader = csv.reader(io.StringIO(text), delimiter=_sniff_delimiter(first))
    total_lines = max(1, text.count("\n") + 1)

    header: list[str] | None = None
    header_line = 0
    rows = array.array("d")  # the feature cells, row after row: 8 bytes each
    n_rows = 0
    labels_text: list[str] = []
    label_lines: list[int] = []
    n_cols = 0
    first_data_line = 0
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if cells[0].lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in cells]
            if progress is not None and n_rows % 4096 == 4095 and not progress(
                    min(1.0, line / total_lines)):
                raise LoadCancelled(str(path))
            if header is None and not n_rows and n_cols == 0:
                n_cols = len(cells)
                if n_cols < 2:
                    raise DataError(
                        f"{path}: line {line} has {n_cols} column; a CSV data set needs at "
                        "least 2 (features, then the label in the last column)"
                    )
                first_data_line = line
                if all(_parse_number(c) is None for c in cells[:-1]):
                    header, header_line = cells, line
                    continue
            if len(cells) != n_cols:
                raise DataError(
                    f"{path}: line {line} has {len(cells)} columns, but line "
                    f"{first_data_line} has {n_cols}; every row needs the same number"
                )
            for col, cell in enumerate(cells[:-1], start=1):
                rows.append(_cell_value(path, line, col, cell))
            if cells[-1] == "":
                raise DataError(f"{path}: line {line}, column {n_cols}: the label is empty")
            n_rows += 1
            labels_text.append(cells[-1])
            label_lines.append(line)
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num}: cannot be read as CSV ({e})") from None

    if n_rows < 2:
        got = "no data rows" if not n_rows else "only 1 data row"
        raise DataError(f"{path}: has {got}; at least 2 are needed")
    X = np.frombuffer(rows, dtype=np.float64).reshape(n_rows, n_cols - 1).copy()
    del rows
    if header is not None:
        feature_names = tuple(h or f"x{i + 1}" for i, h in enumerate(header[:-1]))
        said = f"line {header_line} taken as the header"
    else:
        feature_names = tuple(f"x{i + 1}" for i in range(X.shape[1]))
        said = "no header (the first row holds numbers)"
    summary = f"{n_rows} rows, {X.shape[1]} inputs; {said}"

    numbers = [_parse_number(c) for c in labels_text]
    if any(v is None for v in numbers):  # class names
        names = sorted(set(labels_text))
        if len(names) > MAX_CSV_CLASSES:
            raise DataError(f"{path}: column {n_cols} (the label) has {len(names)} different "
                            f"names; at most {MAX_CSV_CLASSES} classes are supported")
        if len(names) < 2:
            raise DataError(f"{path}: column {n_cols} (the label) has only one class "
                            f"({_short(names[0])}); a classifier needs at least 2")
        index = {name: k for k, name in enumerate(names)}
        y = np.array([index[c] for c in labels_text], np.int64)
        mapping = ", ".join(f"{k} = {name}" for k, name in enumerate(names))
        return CsvTable(X, y, "classification", feature_names, tuple(names), header_line,
                        f"{summary}; {len(names)} classes from the label names: {mapping}")
    for value, cell, line in zip(numbers, labels_text, label_lines, strict=True):
        if not math.isfinite(value):
            raise DataError(f"{path}: line {line}, column {n_cols}: {_short(cell)} is not a "
                            "finite number (NaN and infinity cannot be used)")
    labels = np.array(numbers, np.float64)
    values = np.unique(labels)
    if np.all(labels == np.round(labels)) and len(values) <= MAX_CSV_CLASSES:
        if len(values) < 2:
            raise DataError(
                f"{path}: column {n_cols} (the label) has only one class ({values[0]:g}); "
                "a classifier needs at least 2"
            )
        y = np.searchsorted(values, labels).astype(np.int64)
        names = tuple(f"{v:g}" for v in values)
        mapping = ", ".join(f"{k} = {name}" for k, name in enumerate(names))
        return CsvTable(X, y, "classification", feature_names, names, header_line,
                        f"{summary}; {len(names)} classes: {mapping}")
    return CsvTable(X, labels.reshape(-1, 1), "regression", feature_names, (), header_line,
                    f"{summary}; the last column is a target to predict (regression)")


def _cell_value(path: Path, line: int, col: int, cell: str) -> float:
    v = _parse_number(cell)
    if v is None:
        what = "is empty" if cell == "" else f"{_short(cell)} is not a number"
        raise DataError(f"{path}: line {line}, column {col}: {what}")
    if not math.isfinite(v):
        raise DataError(
            f"{path}: line {line}, column {col}: {_short(cell)} is not a finite "
            "number (NaN and infinity cannot be used)"
        )
    return v


def _short(cell: str) -> str:
    return repr(cell if len(cell) <= 40 else cell[:37] + "...")


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-score both parts with the training part's statistics; constant columns become 0.

    Each column is first divided by its largest magnitude (which leaves z-scores
    unchanged), so finite values near 1e308 do not overflow in the mean or variance."""
    peak = np.abs(train).max(axis=0) if len(train) else np.ones(train.shape[1])
    peak = np.where((peak > 0) & np.isfinite(peak), peak, 1.0)
    train = train / peak
    test = test / peak
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    constant = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
    scale = np.where(constant, 1.0, std)
    train = (train - mean) / scale
    test = (test - mean) / scale
    train[:, constant] = 0.0
    test[:, constant] = 0.0
    return train, test


def _csv_dataset(spec: DataSpec) -> Dataset:
    if spec.text is not None:
        table = parse_csv(spec.text, f"{spec.path} (embedded)")
    else:
        table = load_csv(spec.path)
    X, y, task, feature_names = table.X, table.y, table.task, table.feature_names
    train, test = _split(len(X), spec.test_fraction, np.random.default_rng([spec.seed, 1]))
    X_train, X_test = _standardize(X[train], X[test])
    y_train, y_test = y[train], y[test]
    if task == "regression":
        # Targets get the same z-score treatment: a target in the thousands would
        # make the squared error, and every gradient, explode from the first step.
        y_train, y_test = _standardize(y_train, y_test)
    if task == "classification":
        n_classes = int(y.max()) + 1
        output_dim = n_classes
    else:
        n_classes = 0
        output_dim = y.shape[1]
    return Dataset(
        X_train=X_train,
        y_train=y_train,
        X_test=X_test,
        y_test=y_test,
        task=task,
        n_classes=n_classes,
        input_dim=X.shape[1],
        output_dim=output_dim,
        name=Path(spec.path).stem,
        feature_names=feature_names,
        class_names=table.class_names,
        summary=table.summary,
    )
