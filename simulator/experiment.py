"""An experiment: a network, its data and how to train it, saved as one JSON file.

File format (version 1)::

    {"format": "gradient-flow-lab/experiment", "version": 1,
     "name": ..., "description": ...,
     "network": NetworkSpec.to_dict(), "data": DataSpec.to_dict(),
     "training": TrainSpec.to_dict(), "seed": 0, "dtype": "float32"}

Files come from anywhere, so reading one trusts nothing: the size is capped
before parsing, every field is checked, and every problem becomes an
``ExperimentError`` whose message names the file and the field.

Presets are experiment files in ``assets/presets`` named ``NN_key.json``; the
number only fixes the teaching order, the key is the rest of the name.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .budget import MemoryEstimate, estimate_memory, over_budget
from .data import (
    EMBED_BY_DEFAULT_BYTES,
    MAX_EMBEDDED_CHARS,
    DataError,
    Dataset,
    DataSpec,
    make_dataset,
    read_regular_file,
    too_big,
)
from .presets import find_preset, preset_summaries
from .spec import MAX_HIDDEN, NetworkSpec, SpecError, _check_choice, _check_float, _check_int
from .tempfiles import remove_stale_temporaries, temp_prefix

FORMAT = "gradient-flow-lab/experiment"
VERSION = 1
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 20_000
MAX_MESSAGE_CHARS = 300

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
DTYPES = ("float32", "float64")

PRESET_DIR = Path(__file__).resolve().parent.parent / "assets" / "presets"


class ExperimentError(ValueError):
    """An experiment is invalid or its file cannot be read or written.

    ``field`` is the offending field (e.g. "network.hidden[3].width") or None,
    ``path`` the file involved or None.
    """

    def __init__(self, message: str, field: str | None = None, path: str | None = None):
        # A hostile file can put megabytes into one field; the message quotes it.
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        text = f"{field}: {message}" if field else message
        if path is not None:
            text = f"{path}: {text}"
        super().__init__(text)
        self.field = field
        self.path = path
        self.message = message


def _check_open_float(name: str, value: Any, lo: float, hi: float) -> float:
    """A finite number with lo < value <= hi."""
    value = _check_float(name, value, lo, hi)
    if value <= lo:
        raise SpecError(name, f"must be greater than {lo:g} and at most {hi:g}, got {value!r}")
    return value


def _check_below_one(name: str, value: Any) -> float:
    value = _check_float(name, value, 0.0, 1.0)
    if value >= 1.0:
        raise SpecError(name, f"must be at least 0 and less than 1, got {value!r}")
    return value


@dataclass(frozen=True)
class TrainSpec:
    """How to train: optimizer, step size, batch size, regularization and clipping.

    batch_size larger than the training set means full-batch gradient descent.
    clip_norm > 0 rescales the whole gradient to that norm when it is longer
    (Pascanu et al. 2013); clip_value > 0 clips each component to +-clip_value.
    momentum is used by "momentum"; beta1, beta2, eps by "adam" (beta2 and eps
    also by "rmsprop").
    """

    optimizer: str = "sgd"
    lr: float = 0.1
    batch_size: int = 32
    weight_decay: float = 0.0
    clip_norm: float = 0.0
    clip_value: float = 0.0
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        set_ = object.__setattr__
        _check_choice("training.optimizer", self.optimizer, OPTIMIZERS)
        set_(self, "lr", _check_open_float("training.lr", self.lr, 0.0, 100.0))
        set_(self, "batch_size", _check_int("training.batch_size", self.batch_size, 1, 10**7))
        set_(self, "weight_decay",
             _check_float("training.weight_decay", self.weight_decay, 0.0, 10.0))
        set_(self, "clip_norm", _check_float("training.clip_norm", self.clip_norm, 0.0, 1e6))
        set_(self, "clip_value", _check_float("training.clip_value", self.clip_value, 0.0, 1e6))
        set_(self, "momentum", _check_below_one("training.momentum", self.momentum))
        set_(self, "beta1", _check_below_one("training.beta1", self.beta1))
        set_(self, "beta2", _check_below_one("training.beta2", self.beta2))
        set_(self, "eps", _check_open_float("training.eps", self.eps, 0.0, 1.0))

    def to_dict(self) -> dict:
        return {
            "optimizer": self.optimizer,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "weight_decay": self.weight_decay,
            "clip_norm": self.clip_norm,
            "clip_value": self.clip_value,
            "momentum": self.momentum,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
        }

    @classmethod
    def from_dict(cls, d: Any) -> TrainSpec:
        if not isinstance(d, dict):
            raise SpecError("training", f"must be an object, got {type(d).__name__}")
        allowed = {"optimizer", "lr", "batch_size", "weight_decay", "clip_norm", "clip_value",
                   "momentum", "beta1", "beta2", "eps"}
        unknown = set(d) - allowed
        if unknown:
            raise SpecError("training", f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        return cls(**d)


def _check_encodable(field: str, text: str) -> None:
    """Text that cannot be written as UTF-8 (a lone surrogate such as \\ud800, which
    JSON allows) would fail only later, when printed or saved."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start]
        raise SpecError(field, f"contains an invalid character (U+{ord(bad):04X}, half of "
                               f"a surrogate pair) at position {e.start + 1}") from None


@dataclass(frozen=True)
class Experiment:
    """Everything needed to rerun a piece of training exactly.

    ``data.seed`` fixes the data set; ``seed`` fixes the initial weights and
    the order of the mini-batches.
    """

    name: str
    description: str
    network: NetworkSpec
    data: DataSpec
    training: TrainSpec
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise SpecError("name", f"must be a non-empty text, got {self.name!r}")
        if len(self.name) > MAX_NAME_CHARS:
            raise SpecError("name", f"must be at most {MAX_NAME_CHARS} characters long")
        if not isinstance(self.description, str):
            raise SpecError("description", f"must be text, got {type(self.description).__name__}")
        if len(self.description) > MAX_DESCRIPTION_CHARS:
            raise SpecError(
                "description", f"must be at most {MAX_DESCRIPTION_CHARS} characters long"
            )
        for name, cls in (("network", NetworkSpec), ("data", DataSpec), ("training", TrainSpec)):
            if not isinstance(getattr(self, name), cls):
                raise SpecError(name, f"must be a {cls.__name__}")
        object.__setattr__(self, "seed", _check_int("seed", self.seed, 0, 2**32 - 1))
        _check_choice("dtype", self.dtype, DTYPES)
        for field in ("name", "description"):
            _check_encodable(field, getattr(self, field))
        # all the limits together, before anything is allocated
        problem = over_budget(self.memory_estimate())
        if problem is not None:
            raise SpecError("network", f"this experiment {problem}")

    def memory_estimate(self) -> MemoryEstimate:
        """The bytes a simulation of this experiment will hold (simulator.budget)."""
        return estimate_memory(self.network, self.data, self.training, self.dtype)

    # -- consistency with the data -------------------------------------------------------
    def validate_against(self, dataset: Dataset) -> None:
        """Raise ExperimentError when the network does not fit ``dataset``'s shapes.

        cross_entropy needs class labels and one output per class. mse on a
        classification set trains on one-hot targets, so it also needs one
        output per class; on a regression set, one output per target column.
        """
        net = self.network
        if net.input_dim != dataset.input_dim:
            raise ExperimentError(
                f"is {net.input_dim}, but the data set '{dataset.name}' has "
                f"{dataset.input_dim} input feature(s): set input_dim to {dataset.input_dim}",
                field="network.input_dim",
            )
        if dataset.task == "regression":
            if net.loss == "cross_entropy":
                raise ExperimentError(
                    f"cross_entropy needs class labels, but '{dataset.name}' has numeric "
                    "targets (regression): set loss to mse",
                    field="network.loss",
                )
            if net.output_dim != dataset.output_dim:
                raise ExperimentError(
                    f"is {net.output_dim}, but '{dataset.name}' has {dataset.output_dim} "
                    f"target column(s): set output_dim to {dataset.output_dim}",
                    field="network.output_dim",
                )
            return
        if net.output_dim != dataset.n_classes:
            raise ExperimentError(
                f"is {net.output_dim}, but '{dataset.name}' has {dataset.n_classes} classes "
                f"and {net.loss} needs one output per class: set output_dim to "
                f"{dataset.n_classes}",
                field="network.output_dim",
            )

    def build_dataset(self) -> Dataset:
        """Make this experiment's data set and check the network fits it.

        Raises ExperimentError (also for CSV reading problems, which name the file).
        """
        try:
            dataset = make_dataset(self.data)
        except DataError as e:
            raise ExperimentError(str(e), field="data") from None
        self.validate_against(dataset)
        return dataset

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "name": self.name,
            "description": self.description,
            "network": self.network.to_dict(),
            "data": self.data.to_dict(),
            "training": self.training.to_dict(),
            "seed": self.seed,
            "dtype": self.dtype,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(
        cls, d: Any, base_dir: str | os.PathLike | None = None, source: str | None = None
    ) -> Experiment:
        """Build an experiment from parsed JSON. Relative CSV paths resolve against base_dir.

        ``source`` (a file name) is put in front of error messages.
        """
        try:
            return cls._from_dict(d, base_dir)
        except SpecError as e:
            raise ExperimentError(e.message, field=e.field, path=source) from None
        except RecursionError:
            raise ExperimentError(
                "is not a usable experiment (nested too deeply)", path=source
            ) from None

    @classmethod
    def _from_dict(cls, d: Any, base_dir) -> Experiment:
        if not isinstance(d, dict):
            raise SpecError("experiment", f"must be a JSON object, got {_json_type(d)}")
        fmt = d.get("format")
        if fmt != FORMAT:
            raise SpecError(
                "format",
                f"must be {FORMAT!r} (this is not a Gradient Flow Lab experiment), got "
                f"{_short_repr(fmt)}",
            )
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise SpecError("version", f"must be a whole number, got {_short_repr(version)}")
        if version > VERSION:
            raise SpecError(
                "version",
                f"the file was written by a newer Gradient Flow Lab (format version {version}); "
                f"this one reads version {VERSION}. Update the program to open it",
            )
        if version < 1:
            raise SpecError("version", f"must be at least 1, got {version}")
        allowed = {"format", "version", "name", "description", "network", "data", "training",
                   "seed", "dtype"}
        unknown = set(d) - allowed
        if unknown:
            names = ", ".join(sorted(_short_repr(k) for k in unknown)[:10])
            raise SpecError("experiment", f"unknown field(s) {names}")
        for req in ("name", "network", "data", "training"):
            if req not in d:
                raise SpecError(req, "is missing")
        hidden_raw = d["network"].get("hidden") if isinstance(d["network"], dict) else None
        if isinstance(hidden_raw, list) and len(hidden_raw) > MAX_HIDDEN:
            # Refuse before checking each of possibly millions of layers.
            raise SpecError(
                "network.hidden", f"at most {MAX_HIDDEN} hidden layers, got {len(hidden_raw)}"
            )
        network = NetworkSpec.from_dict(d["network"], "network")
        data_raw = d["data"]
        if (
            base_dir is not None
            and isinstance(data_raw, dict)
            and data_raw.get("kind") == "csv"
            and isinstance(data_raw.get("path"), str)
            and data_raw["path"].strip()
            and "\x00" not in data_raw["path"]
            and not os.path.isabs(data_raw["path"])
        ):
            data_raw = {**data_raw, "path": str(Path(base_dir) / data_raw["path"])}
        data = DataSpec.from_dict(data_raw)
        training = TrainSpec.from_dict(d["training"])
        return cls(
            name=d["name"],
            description=d.get("description", ""),
            network=network,
            data=data,
            training=training,
            seed=d.get("seed", 0),
            dtype=d.get("dtype", "float32"),
        )

    @classmethod
    def from_json(
        cls, text: str, base_dir: str | os.PathLike | None = None, source: str | None = None
    ) -> Experiment:
        return cls.from_dict(_parse_json(text, source), base_dir=base_dir, source=source)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short_repr(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else _json_type(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in an experiment file")


def _parse_json(text: str, source: str | None) -> Any:
    if len(text) > MAX_FILE_BYTES:
        raise ExperimentError(
            f"the experiment is {len(text) / 2**20:.1f} MB long; at most "
            f"{MAX_FILE_BYTES // 2**20} MB is accepted",
            path=source,
        )
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ExperimentError(
            f"is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", path=source
        ) from None
    except RecursionError:
        raise ExperimentError("is not a usable experiment (nested too deeply)", path=source) \
            from None
    except ValueError as e:  # NaN/Infinity constants, or an integer with thousands of digits
        reason = str(e)
        if "digits" in reason:
            reason = "it holds a number with thousands of digits"
        raise ExperimentError(f"is not a usable experiment ({reason})", path=source) from None


# -- files -------------------------------------------------------------------------------


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Read and check an experiment file. A relative CSV path is taken from the file's folder."""
    path = Path(path)
    text = read_experiment_text(path)
    return Experiment.from_json(text, base_dir=path.resolve().parent, source=str(path))


def read_experiment_text(path: str | os.PathLike) -> str:
    """The text of an experiment (or comparison) file, refusing folders, FIFOs, devices,
    files too large and files that are not UTF-8, each with a message naming the file."""
    path = Path(path)
    try:
        raw = read_regular_file(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise ExperimentError("the file does not exist", path=str(path)) from None
    except IsADirectoryError:
        raise ExperimentError("is a folder, not an experiment file", path=str(path)) from None
    except ValueError as e:  # a FIFO, a device: reading it would block
        raise ExperimentError(str(e), path=str(path)) from None
    except OSError as e:
        raise ExperimentError(f"cannot be read ({e.strerror or e})", path=str(path)) from None
    if len(raw) > MAX_FILE_BYTES:
        try:
            size = path.stat().st_size
        except OSError:
            size = len(raw)
        raise ExperimentError(f"{too_big(size, MAX_FILE_BYTES)} for an experiment file",
                              path=str(path))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ExperimentError("is not a text (UTF-8) file", path=str(path)) from None
    return text


def save_experiment(exp: Experiment, path: str | os.PathLike,
                    embed_csv: bool | None = None, *, sections: dict | None = None) -> None:
    """Write ``exp`` to ``path`` atomically: a temporary file in the same folder, written
    and fsynced, then renamed over the target.

    The file keeps the mode it had (a new file gets the umask's), and a symbolic link
    is written through to its target rather than replaced by a plain file. A CSV
    path inside the target folder is stored relative to it, so the folder can be
    moved or shared as a whole.

    ``embed_csv``: copy the CSV's contents into the file (True), keep only the path
    (False), or embed files of at most EMBED_BY_DEFAULT_BYTES (None, the default),
    so a copied experiment file still opens. An embedded copy stays embedded.

    ``sections``: further top-level sections that other modules read (the optional
    "pretraining" of ``compare_experiment``), written after the experiment's fields.
    """
    path = Path(path)
    target = Path(os.path.realpath(path))  # through a symlink, to the file it names
    folder = target.parent  # the temporary file must be beside the target
    exp = _with_csv_embedded(exp, embed_csv)
    if exp.data.kind == "csv" and exp.data.path is not None:
        csv_path = Path(exp.data.path)
        if csv_path.is_absolute():
            try:
                rel = csv_path.resolve().relative_to(folder.resolve())
            except ValueError:
                pass
            else:
                exp = replace(exp, data=replace(exp.data, path=rel.as_posix()))
    if sections:
        text = json.dumps({**exp.to_dict(), **sections}, indent=2, ensure_ascii=False) + "\n"
    else:
        text = exp.to_json()
    tmp_name = None
    try:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        remove_stale_temporaries(folder)  # left by a save that was killed
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".tmp",
                                        dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)  # mkstemp made it private
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
        tmp_name = None
        _fsync_folder(folder)
    except OSError as e:
        raise ExperimentError(f"cannot be written ({e.strerror or e})", path=str(path)) from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


def _with_csv_embedded(exp: Experiment, embed_csv: bool | None) -> Experiment:
    data = exp.data
    if data.kind != "csv" or data.path is None:
        return exp
    if embed_csv is False:
        return replace(exp, data=replace(data, text=None)) if data.text is not None else exp
    if data.text is not None:
        return exp
    try:
        size = os.path.getsize(data.path)
    except OSError:
        if embed_csv:
            raise ExperimentError(f"the data file {data.path} cannot be read, so it cannot "
                                  "be embedded", field="data.path") from None
        return exp  # missing: the path is kept, and opening the file will say so
    if embed_csv is None and size > EMBED_BY_DEFAULT_BYTES:
        return exp
    if size > MAX_EMBEDDED_CHARS:
        raise ExperimentError(f"the data file is {size:,} bytes; at most "
                              f"{MAX_EMBEDDED_CHARS:,} can be embedded in an experiment",
                              field="data.text")
    try:
        raw = read_regular_file(Path(data.path), MAX_EMBEDDED_CHARS)
        text = raw.decode("utf-8-sig")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        if embed_csv:
            raise ExperimentError(f"the data file {data.path} cannot be embedded ({e})",
                                  field="data.path") from None
        return exp
    return replace(exp, data=replace(data, text=text))


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    value = os.umask(0o022)
    os.umask(value)
    return value


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); skipped where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- presets -----------------------------------------------------------------------------


def list_presets() -> list[tuple[str, str, str]]:
    """(key, name, description) of every preset, in teaching order.

    A preset file that does not load is skipped here; ``load_preset`` reports why.
    """
    return preset_summaries(PRESET_DIR, load_experiment, ExperimentError)


def load_preset(key: str) -> Experiment:
    """Load the preset ``key`` (the file name without its number prefix, e.g. "deep_sigmoid")."""
    file, available = find_preset(PRESET_DIR, key)
    if file is None:
        raise ExperimentError(f"there is no preset {key!r}; available: {available}",
                              field="preset")
    return load_experiment(file)

