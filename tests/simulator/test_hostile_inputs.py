"""What hostile inputs found (issue 12): FIFOs, lone surrogates, saves that changed
permissions, experiments too big for memory, stale temporary files, size messages."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from simulator import budget
from simulator.data import MAX_CSV_BYTES, DataError, DataSpec, make_dataset
from simulator.experiment import (
    Experiment,
    ExperimentError,
    TrainSpec,
    load_experiment,
    save_experiment,
)
from simulator.network import Network
from simulator.spec import SpecError, uniform_spec

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")


def small(**kw) -> Experiment:
    base = dict(name="Small", description="", network=uniform_spec(2, 2, depth=3, width=8),
                data=DataSpec(kind="xor", n_samples=60), training=TrainSpec(batch_size=16))
    base.update(kw)
    return Experiment(**base)


# -- item 5: a FIFO hangs every front end --------------------------------------------------------


@needs_fifo
def test_a_fifo_as_the_experiment_file_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    with pytest.raises(ExperimentError, match="named pipe"):
        load_experiment(fifo)  # nobody writes to it: reading would block forever


@needs_fifo
def test_a_fifo_as_the_csv_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="named pipe"):
        make_dataset(DataSpec(kind="csv", path=str(fifo)))


def test_a_device_is_refused(tmp_path):
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    with pytest.raises(ExperimentError, match="device"):
        load_experiment("/dev/null")


# -- item 6: a lone surrogate in the name --------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "description"])
def test_a_lone_surrogate_is_refused_naming_the_field(field):
    d = small().to_dict()
    d[field] = "\ud800x"
    text = json.dumps(d)  # valid JSON: "\ud800x"
    assert "\\ud800" in text
    with pytest.raises(ExperimentError) as e:
        Experiment.from_json(text)
    assert field in str(e.value) and "U+D800" in str(e.value)


# -- item 7: saves keep the mode, follow links, fsync --------------------------------------------


def test_a_save_keeps_the_files_mode(tmp_path):
    path = tmp_path / "e.json"
    save_experiment(small(), path)
    os.chmod(path, 0o644)
    save_experiment(small(name="Again"), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    os.chmod(path, 0o600)
    save_experiment(small(name="Private"), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_new_file_gets_the_umasks_mode(tmp_path):
    old = os.umask(0o027)
    try:
        save_experiment(small(), tmp_path / "new.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o640


def test_a_save_through_a_symlink_writes_its_target(tmp_path):
    real = tmp_path / "real" / "e.json"
    real.parent.mkdir()
    save_experiment(small(), real)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    save_experiment(small(name="Through the link"), link)
    assert link.is_symlink()
    assert load_experiment(real).name == "Through the link"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real"]


# -- item 12: stale temporaries from a killed run ------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_save_removes_temporaries_a_killed_run_left(tmp_path):
    dead = _dead_pid()
    stale = [f".e.json.gfl{dead}.k2j3h4.tmp", f".clip.gif.gfl{dead}.abc_1.partial"]
    for name in stale:
        (tmp_path / name).write_text("half")
    (tmp_path / f".frames.gfl{dead}.x1.partial").mkdir()  # a PNG export's folder
    live = f".e.json.gfl{os.getpid()}.zz.tmp"  # a save under way in this process
    (tmp_path / live).write_text("busy")
    mine = ".notes.txt.tmp"  # not this app's pattern: never touched
    (tmp_path / mine).write_text("keep")
    save_experiment(small(), tmp_path / "e.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, mine, "e.json"])


# -- items 3 and 4: a memory budget ---------------------------------------------------------------


def test_too_big_for_the_budget_is_refused_saying_how_much(monkeypatch):
    monkeypatch.setenv(budget.ENV_BUDGET, "1G")
    with pytest.raises(SpecError) as e:
        small(network=uniform_spec(2, 2, depth=8, width=4096))
    message = str(e.value)
    assert "needs about" in message and "GB" in message
    assert "1.0 GB allowed" in message and budget.ENV_BUDGET in message


def test_a_file_too_big_for_the_budget_fails_to_load_with_the_field(tmp_path, monkeypatch):
    path = tmp_path / "big.json"
    d = small().to_dict()
    d["network"]["hidden"] = [{"width": 4096, "activation": "tanh"}] * 8  # 1.4 kB of JSON
    path.write_text(json.dumps(d))
    monkeypatch.setenv(budget.ENV_BUDGET, "1G")
    with pytest.raises(ExperimentError, match="network.*needs about"):
        load_experiment(path)
    monkeypatch.setenv(budget.ENV_BUDGET, "100G")
    assert load_experiment(path).network.depth == 8  # the same file, under a larger budget


def test_batch_and_data_count_in_the_estimate(monkeypatch):
    monkeypatch.setenv(budget.ENV_BUDGET, "1G")
    wide = uniform_spec(1000, 2, depth=2, width=16)
    # 200 000 samples of 1000 dimensions: 2.4 GB of data from a 1 kB file
    with pytest.raises(SpecError, match="data"):
        small(network=wide, data=DataSpec(kind="highdim", dims=1000, n_samples=200_000))
    # a huge batch on wide layers: the workspace
    with pytest.raises(SpecError, match="workspace"):
        small(network=uniform_spec(2, 2, depth=30, width=4000),
              data=DataSpec(kind="spiral", n_samples=200_000),
              training=TrainSpec(batch_size=10**7))


def test_the_estimate_counts_what_the_network_allocates():
    spec = uniform_spec(3, 4, depth=5, width=24, activation="prelu")
    spec = replace(spec, skips=((0, 3), (1, 4)))
    spec = replace(spec, hidden=tuple(replace(h, batchnorm=(i % 2 == 0))
                                      for i, h in enumerate(spec.hidden)))
    for dtype, size in (("float32", 4), ("float64", 8)):
        exp = small(network=spec, data=DataSpec(kind="gaussians", classes=4, n_samples=300),
                    dtype=dtype)
        est = exp.memory_estimate()
        net = Network(spec, 0, np.dtype(dtype))
        assert est.n_params == net.n_params
        assert est.per_example == net._ws_per_example
        assert est.parameters == net.n_params * (5 * size + 5)
        assert est.optimizer == 2 * net.n_params * size
        assert est.total == (est.parameters + est.optimizer + est.workspace + est.data
                             + est.history)


def test_the_budget_override_is_parsed_and_checked(monkeypatch):
    assert budget.parse_bytes("4G") == 4 * 2**30
    assert budget.parse_bytes("500M") == 500 * 2**20
    assert budget.parse_bytes("2.5GiB") == int(2.5 * 2**30)
    with pytest.raises(ValueError, match=budget.ENV_BUDGET):
        budget.parse_bytes("lots")
    monkeypatch.setenv(budget.ENV_BUDGET, "3G")
    assert budget.memory_budget()[0] == 3 * 2**30
    monkeypatch.delenv(budget.ENV_BUDGET)
    amount, source = budget.memory_budget()
    assert amount > 0 and budget.ENV_BUDGET in source


# -- item 10 (size message): "the file is 50 MB; at most 50 MB" ----------------------------------


def test_a_csv_just_over_the_limit_says_by_how_much(tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "wb") as f:
        f.truncate(MAX_CSV_BYTES + 1)  # sparse: no real disk use
    with pytest.raises(DataError) as e:
        make_dataset(DataSpec(kind="csv", path=str(path)))
    assert f"{MAX_CSV_BYTES + 1:,} bytes" in str(e.value)
    assert f"{MAX_CSV_BYTES:,} bytes" in str(e.value)
