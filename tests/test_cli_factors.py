"""`main.py probe` reports the chain rule's factors of every hidden layer, as text and as
JSON, equal to the Simulation's own snapshot."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.data import DataSpec
from simulator.experiment import Experiment, TrainSpec, save_experiment
from simulator.simulation import Simulation
from simulator.spec import LayerSpec, NetworkSpec

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("weight_factor", "local_factor", "norm_factor", "skip_share")


def _experiment() -> Experiment:
    hidden = (LayerSpec(6, "sigmoid"), LayerSpec(6, "relu", batchnorm=True),
              LayerSpec(6, "tanh"))
    return Experiment(name="factors probe", description="",
                      network=NetworkSpec(2, 2, hidden=hidden, skips=((1, 3),)),
                      data=DataSpec(kind="xor", n_samples=80, noise=0.1),
                      training=TrainSpec(optimizer="sgd", lr=0.1, batch_size=16), seed=0)


def _probe(path, *extra):
    env = {k: v for k, v in os.environ.items() if k != "GFL_QUIT_AFTER_MS"}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "probe", "--experiment",
                           str(path), *extra], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_probe_json_and_text_carry_the_factors(tmp_path):
    exp = _experiment()
    path = tmp_path / "f.json"
    save_experiment(exp, path)
    report = json.loads(_probe(path, "--json"),
                        parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    snap = Simulation(exp).snapshot()
    layers = report["layers"]
    for i, row in enumerate(layers):
        for name in FIELDS:
            value = float(getattr(snap, name)[i])
            if math.isnan(value):
                assert row[name] is None, (i, name)
            else:
                assert row[name] == pytest.approx(value, rel=1e-6), (i, name)
    assert layers[0]["norm_factor"] is None and layers[1]["norm_factor"] is not None
    assert layers[0]["skip_share"] > 0 and layers[1]["skip_share"] == 0.0
    assert all(layers[-1][name] is None for name in FIELDS)  # the output layer
    text = _probe(path)
    assert "Chain-rule factors" in text
    table = text[text.index("Chain-rule factors"):].splitlines()[1:5]
    assert table[0].split()[:4] == ["layer", "activation", "passes", "on"]
    cells = table[2].split()  # layer 2: relu with batch norm
    assert cells[:2] == ["2", "relu"]
    assert float(cells[3]) == pytest.approx(layers[1]["weight_factor"], rel=1e-3)
    assert float(cells[4]) == pytest.approx(layers[1]["local_factor"], rel=1e-3)
    assert float(cells[5]) == pytest.approx(layers[1]["norm_factor"], rel=1e-3)
