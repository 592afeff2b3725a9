"""``main.py probe`` and ``main.py presets --mode time`` on through-time experiments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from simulator.experiment import TrainSpec
from simulator.recurrent.experiment import (
    RecurrentExperiment,
    list_recurrent_presets,
    save_recurrent_experiment,
)
from simulator.recurrent.simulation import RecurrentSimulation
from simulator.recurrent.tasks import TaskSpec

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"


def run_main(*args, timeout=300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GFL_QUIT_AFTER_MS"}
    return subprocess.run([sys.executable, str(MAIN), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} in the output")

    return json.loads(text, parse_constant=refuse)


def small(tmp_path, **train) -> Path:
    task = TaskSpec(kind="first_symbol", lag=7, n_samples=40, symbols=3, seed=1)
    exp = RecurrentExperiment.build("small recall", task, TrainSpec(
        **{"optimizer": "adam", "lr": 0.01, "batch_size": 8, **train}), cell="gru", hidden=4,
        compare=("rnn", "lstm"))
    path = tmp_path / "small.json"
    save_recurrent_experiment(exp, path)
    return path


def test_presets_time_lists_the_through_time_presets():
    proc = run_main("presets", "--mode", "time", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = strict_json(proc.stdout)
    assert [(r["key"], r["name"], r["description"]) for r in rows] == list_recurrent_presets()


def test_probe_prints_per_time_step_norms_of_every_cell(tmp_path):
    path = small(tmp_path)
    proc = run_main("probe", "--experiment", path, "--steps", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    rep = strict_json(proc.stdout)
    assert rep["mode"] == "recurrent" and [c["cell"] for c in rep["cells"]] == ["rnn", "lstm"]
    # the same numbers as the simulation in this process
    exp = RecurrentExperiment.from_json(path.read_text())
    for c in rep["cells"]:
        sim = RecurrentSimulation(exp.with_cell(c["cell"]))
        sim.run(3)
        snap = sim.snapshot()
        assert c["step"] == 3
        np.testing.assert_allclose(c["hidden_grad_norms"], snap.hidden_grad_norms, rtol=1e-6)
        assert len(c["hidden_grad_norms"]) == 7
    assert rep["cells"][1]["cell_grad_norms"] is not None
    assert rep["cells"][0]["cell_grad_norms"] is None
    text = run_main("probe", "--experiment", path, "--steps", "0")
    assert text.returncode == 0, text.stderr
    assert "rnn ||dL/dh_t||" in text.stdout and "lstm ||dL/dc_t||" in text.stdout
    assert "step 0: gradients of the first batch" in text.stdout


def test_probe_on_a_preset_reports_divergence_with_exit_3():
    proc = run_main("probe", "--preset", "exploding_rnn", "--steps", "60")
    assert proc.returncode == 3, proc.stderr
    assert "diverged" in proc.stderr and "time step" in proc.stdout + proc.stderr
    assert "Exploding gradient through time" in proc.stdout or "Training diverged" in proc.stdout


def test_bad_recurrent_file_names_the_field(tmp_path):
    path = small(tmp_path)
    d = json.loads(path.read_text())
    d["task"]["lag"] = 1
    path.write_text(json.dumps(d))
    proc = run_main("probe", "--experiment", path)
    assert proc.returncode == 2
    assert "task.lag" in proc.stderr and "Traceback" not in proc.stderr
