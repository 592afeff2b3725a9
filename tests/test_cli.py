"""main.py's headless commands, run the way a user runs them: in a subprocess.

The numbers ``probe`` prints are checked against a Simulation built in this
process from the same experiment, so the command is shown to report the real
state and not merely to print something.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from simulator.data import DataSpec
from simulator.experiment import Experiment, TrainSpec, list_presets, save_experiment
from simulator.simulation import Simulation
from simulator.spec import LayerSpec, NetworkSpec, uniform_spec

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
COLUMNS = ("layer", "width", "activation", "bn", "||delta||", "||dW||", "||W||",
           "update ratio", "change since init", "dead %", "saturated %", "act mean", "act std")


def run_main(*args, timeout=300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GFL_QUIT_AFTER_MS"}
    return subprocess.run([sys.executable, str(MAIN), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity, which are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} in the output")

    return json.loads(text, parse_constant=refuse)


def assert_clean_error(proc, code: int, *fragments: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.fixture
def experiment():
    """Four small layers with mixed activations, batch norm on one: every column has a
    meaning; xor with a held-out part."""
    hidden = (LayerSpec(8, "sigmoid"), LayerSpec(8, "relu", batchnorm=True),
              LayerSpec(8, "tanh"), LayerSpec(6, "relu"))
    return Experiment(name="CLI probe", description="Mixed activations on xor.",
                      network=NetworkSpec(2, 2, hidden=hidden, init="glorot_uniform"),
                      data=DataSpec(kind="xor", n_samples=100, noise=0.1, test_fraction=0.2),
                      training=TrainSpec(optimizer="sgd", lr=0.1, batch_size=16), seed=0)


@pytest.fixture
def experiment_file(tmp_path, experiment):
    path = tmp_path / "probe.json"
    save_experiment(experiment, path)
    return path


# -- presets ---------------------------------------------------------------------------------


def test_presets_prints_every_preset_once_in_order():
    proc = run_main("presets")
    assert proc.returncode == 0, proc.stderr
    expected = list_presets()
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [key for key, _, _ in expected]
    for line, (_, name, _) in zip(lines, expected, strict=True):
        assert name in line
    if not expected:
        assert "no presets" in proc.stderr


def test_presets_json_is_the_list_of_presets():
    proc = run_main("presets", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = strict_json(proc.stdout)
    assert [(r["key"], r["name"], r["description"]) for r in rows] == list_presets()


# -- probe at initialization --------------------------------------------------------------------


def test_probe_table_at_step_0_shows_every_layer(experiment_file, experiment):
    proc = run_main("probe", "--experiment", experiment_file)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "CLI probe" in out
    assert "step 0" in out and "no update" in out
    header = next(line for line in out.splitlines() if line.startswith("layer"))
    positions = [header.index(c) for c in COLUMNS]
    assert positions == sorted(positions)
    # the first table only (the chain-rule factors follow in a table of their own)
    first = out[out.index(header):].split("\n\n")[0]
    rows = [line.split() for line in first.splitlines()
            if line.split() and line.split()[0] in ("1", "2", "3", "4", "out")]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "out"]
    assert [r[2] for r in rows] == ["sigmoid", "relu", "tanh", "relu", "linear"]
    assert [r[3] for r in rows] == ["no", "yes", "no", "no", "-"]
    assert [r[1] for r in rows] == ["8", "8", "8", "6", "2"]
    assert "Traceback" not in proc.stderr


def test_probe_json_at_step_0_reports_the_first_batch_gradients(experiment_file, experiment):
    proc = run_main("probe", "--experiment", experiment_file, "--json")
    assert proc.returncode == 0, proc.stderr
    report = strict_json(proc.stdout)
    expected = Simulation(experiment).snapshot()
    assert report["step"] == 0
    assert report["source"] == {"file": str(experiment_file)}
    assert report["divergence"] is None
    assert report["loss"] == pytest.approx(expected.loss, rel=1e-9)
    layers = report["layers"]
    assert [r["layer"] for r in layers] == [1, 2, 3, 4, 5]
    assert [r["batchnorm"] for r in layers] == [False, True, False, False, False]
    for i, row in enumerate(layers):
        assert row["delta_norm"] == pytest.approx(float(expected.delta_norm[i]), rel=1e-9)
        assert row["grad_norm"] == pytest.approx(float(expected.grad_norm[i]), rel=1e-9)
        assert row["delta_norm"] > 0
        assert row["update_ratio"] is None  # NaN before the first update becomes null
        assert row["weight_change"] == 0
    findings = report["findings"]
    assert findings is None or all({"kind", "severity", "title", "detail"} <= set(f)
                                   for f in findings)


# -- probe after training -------------------------------------------------------------------------


@pytest.mark.slow
def test_probe_json_after_steps_matches_the_simulation(experiment_file, experiment):
    proc = run_main("probe", "--experiment", experiment_file, "--steps", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    report = strict_json(proc.stdout)
    sim = Simulation(experiment)
    sim.run(30, snapshot=False)
    expected = sim.snapshot()
    assert report["step"] == 30 and report["steps_requested"] == 30
    assert report["loss"] == pytest.approx(expected.loss, rel=1e-9)
    for i, row in enumerate(report["layers"]):
        for field in ("delta_norm", "grad_norm", "weight_norm", "update_ratio",
                      "weight_change"):
            assert row[field] == pytest.approx(float(getattr(expected, field)[i]), rel=1e-9)
        assert row["update_ratio"] > 0 and row["weight_change"] > 0


@pytest.mark.slow
def test_probe_table_after_steps(experiment_file):
    proc = run_main("probe", "--experiment", experiment_file, "--steps", "5")
    assert proc.returncode == 0, proc.stderr
    assert "after 5 training steps" in proc.stdout


@pytest.mark.slow
def test_probe_a_preset():
    presets = list_presets()
    if not presets:
        pytest.skip("no presets in assets/presets")
    key = presets[0][0]
    proc = run_main("probe", "--preset", key, "--steps", "3", "--json")
    assert proc.returncode in (0, 3), proc.stderr
    report = strict_json(proc.stdout)
    assert report["source"] == {"preset": key}
    assert report["step"] <= 3


def test_probe_reports_divergence_with_exit_code_3(tmp_path, experiment):
    # linear layers (unbounded, cannot die), weights 10x too large, a huge step: overflows
    blow_up = replace(experiment, network=uniform_spec(2, 2, 3, 8, "linear", gain=10.0),
                      training=TrainSpec(optimizer="sgd", lr=10.0, batch_size=16))
    path = tmp_path / "blow_up.json"
    save_experiment(blow_up, path)
    proc = run_main("probe", "--experiment", path, "--steps", "50", "--json")
    assert_clean_error(proc, 3, "diverged")
    report = strict_json(proc.stdout)
    assert report["divergence"]["phase"] in ("forward", "loss", "backward", "update")
    assert report["step"] < 50


# -- bad input -----------------------------------------------------------------------------------


def test_unknown_preset_is_a_clear_error():
    proc = run_main("probe", "--preset", "no_such_preset")
    assert_clean_error(proc, 2, "no_such_preset", "no preset")
    assert proc.stdout == ""


def test_malformed_experiment_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"format": "gradient-flow-lab/experiment", "version": 1,', encoding="utf-8")
    proc = run_main("probe", "--experiment", path)
    assert_clean_error(proc, 2, "broken.json", "not valid JSON")
    assert proc.stdout == ""


def test_invalid_number_in_experiment_names_the_field(tmp_path, experiment):
    data = experiment.to_dict()
    data["training"]["lr"] = -1
    path = tmp_path / "bad_lr.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    proc = run_main("probe", "--experiment", path)
    assert_clean_error(proc, 2, "bad_lr.json", "training.lr")


def test_missing_experiment_file(tmp_path):
    proc = run_main("probe", "--experiment", tmp_path / "nowhere.json")
    assert_clean_error(proc, 2, "nowhere.json", "does not exist")


@pytest.mark.parametrize("steps", ["-1", "ten", "1.5"])
def test_bad_step_count(experiment_file, steps):
    proc = run_main("probe", "--experiment", experiment_file, "--steps", steps)
    assert_clean_error(proc, 2, "--steps")


@pytest.mark.parametrize("args", [[], ["--preset", "a", "--experiment", "b.json"]])
def test_probe_needs_exactly_one_source(args):
    proc = run_main("probe", *args)
    assert_clean_error(proc, 2, "--preset")


def test_mistyped_command_is_not_opened_as_a_file():
    proc = run_main("prob")
    assert_clean_error(proc, 2, "'prob'", "probe")


def test_help_lists_the_commands():
    proc = run_main("--help")
    assert proc.returncode == 0
    assert "presets" in proc.stdout and "probe" in proc.stdout


# -- the hand-over to the window (in-process: no window is opened) ------------------------------


@pytest.fixture
def main_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import main

    return main


def test_without_a_command_main_hands_argv_to_the_gui(main_module, monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("ui.app")
    fake.main = lambda argv: calls.append(argv) or 7
    monkeypatch.setitem(sys.modules, "ui.app", fake)
    file = tmp_path / "some.json"
    assert main_module.main([str(file)]) == 7
    assert main_module.main([]) == 7
    assert calls == [[str(file)], []]


def test_without_the_gui_main_says_so(main_module, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ui.app", None)  # makes "from ui.app import" fail
    assert main_module.main([]) == 1
    err = capsys.readouterr().err
    assert "cannot open the window" in err and "probe" in err
