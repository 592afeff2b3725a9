"""The command line against hostile inputs (issue 12, items 3-6 and 12): each runs
``main.py`` as a user would and checks the exit code and that no traceback or raw
terminal escape comes out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.data import DataSpec
from simulator.experiment import Experiment, TrainSpec, save_experiment
from simulator.spec import uniform_spec

ROOT = Path(__file__).resolve().parents[1]


def run(*args, env=None, **kw) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1",
             QT_QPA_PLATFORM="offscreen")
    e.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=e, **kw)


def tiny(name="Tiny") -> Experiment:
    return Experiment(name=name, description="", network=uniform_spec(2, 2, depth=2, width=4),
                      data=DataSpec(kind="xor", n_samples=40), training=TrainSpec())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_probe_refuses_a_fifo_instead_of_hanging(tmp_path):
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    r = run("probe", "--experiment", fifo)
    assert r.returncode == 2
    assert "named pipe" in r.stderr and "Traceback" not in r.stderr


def test_probe_refuses_a_lone_surrogate_in_the_name(tmp_path):
    d = tiny().to_dict()
    d["name"] = "\ud800x"
    path = tmp_path / "s.json"
    path.write_text(json.dumps(d), encoding="ascii")
    for extra in ([], ["--json"]):
        r = run("probe", "--experiment", path, *extra)
        assert r.returncode == 2, r.stderr
        assert "name" in r.stderr and "Traceback" not in r.stderr


def test_ansi_escapes_in_a_name_are_shown_not_obeyed(tmp_path):
    path = tmp_path / "a.json"
    save_experiment(tiny(name="\x1b[2J\x1b[31mred"), path)
    r = run("probe", "--experiment", path)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\\x1b[31mred" in r.stdout


def test_probe_into_a_closed_pipe_exits_quietly(tmp_path):
    """`probe | head -1`: the reader has gone before probe writes (closed here at
    once, so the write always fails, not only when head is quick)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "probe", "--preset",
                          "deep_sigmoid"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_too_big_for_the_budget_is_a_clear_error(tmp_path):
    d = tiny().to_dict()
    d["network"]["hidden"] = [{"width": 4096, "activation": "tanh"}] * 8
    path = tmp_path / "big.json"
    path.write_text(json.dumps(d))
    assert path.stat().st_size < 2000
    r = run("probe", "--experiment", path, env={"GFL_MEMORY_BUDGET": "1G"})
    assert r.returncode == 2
    assert "needs about" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.qt
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_export_into_proc_says_the_folder_takes_no_files(tmp_path):
    pytest.importorskip("PySide6")
    r = run("export", "--preset", "deep_sigmoid", "--steps", 1, "--format", "gif",
            "--out", "/proc/x.gif")
    assert r.returncode == 2, r.stderr
    assert "/proc does not accept new files" in r.stderr
    assert "does not exist" not in r.stderr
