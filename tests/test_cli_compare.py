"""``main.py probe --compare`` and probe of experiment files with a pretraining section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cli
from simulator.compare_experiment import PretrainedExperiment, load_comparison
from simulator.data import DataSpec
from simulator.experiment import Experiment, TrainSpec, save_experiment
from simulator.pretrain import PretrainSpec
from simulator.spec import LayerSpec, NetworkSpec

ROOT = Path(__file__).resolve().parent.parent


def probe(*argv):
    import main

    args = main.build_parser().parse_args(["probe", *map(str, argv)])
    return cli.run_subcommand("probe", args)


def _experiment():
    return Experiment("small sigmoid", "", NetworkSpec(2, 2, hidden=tuple(
        LayerSpec(6, "sigmoid") for _ in range(3)), init="uniform_fanin"),
        DataSpec(kind="circles", n_samples=80), TrainSpec(optimizer="momentum", batch_size=16))


@pytest.fixture
def pretrain_file(tmp_path):
    path = tmp_path / "pre.json"
    study = PretrainedExperiment(_experiment(), PretrainSpec(steps_per_layer=40))
    path.write_text(json.dumps(study.to_dict()))
    return path


def test_probe_reports_each_stage_before_and_after(pretrain_file, capsys):
    assert probe("--experiment", pretrain_file, "--steps", 5, "--json") == 0
    rep = json.loads(capsys.readouterr().out)
    rows = rep["pretraining"]["layers"]
    assert [r["layer"] for r in rows] == [1, 2, 3]
    assert all(r["steps"] == 40 and r["loss_after"] < r["loss_before"] for r in rows)
    assert rep["step"] == 5
    assert probe("--experiment", pretrain_file) == 0
    out = capsys.readouterr().out
    assert "reconstruction loss before" in out and "40 steps per layer" in out


def test_probe_compare_preset_json_and_text(capsys):
    assert probe("--compare", "--preset", "glorot_vs_he", "--steps", 3, "--json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["label"] == "B: He init"
    assert rep["A"]["step"] == rep["B"]["step"] == 3
    assert len(rep["A"]["layers"]) == len(rep["B"]["layers"]) == 31
    assert probe("--compare", "--preset", "glorot_vs_he") == 0
    out = capsys.readouterr().out
    assert "B grad norm" in out and "Diagnosis of A" in out


def test_probe_compare_file_with_pretraining_waits_for_b(tmp_path, capsys):
    spec = load_comparison("pretrained_vs_random")
    d = spec.to_dict()
    d["b_edits"][0]["steps_per_layer"] = 10
    path = tmp_path / "cmp.json"
    path.write_text(json.dumps(d))
    assert probe("--compare", "--experiment", path, "--steps", 30, "--json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["A"]["step"] == rep["B"]["step"] == 0  # 60 pretraining steps: A waits
    assert rep["B"]["pretraining_done"] is False
    assert probe("--compare", "--experiment", path, "--steps", 70) == 0
    out = capsys.readouterr().out
    assert "A: step 10" in out and "B: step 10" in out and "B Pretraining" in out


def test_bad_input_is_one_clear_message(tmp_path, capsys):
    plain = tmp_path / "plain.json"
    save_experiment(_experiment(), plain)
    assert probe("--compare", "--experiment", plain) == 2
    assert "not a comparison file" in capsys.readouterr().err
    cmp_file = tmp_path / "c.json"
    cmp_file.write_text(json.dumps(load_comparison("glorot_vs_he").to_dict()))
    assert probe("--experiment", cmp_file) == 2
    assert "add --compare" in capsys.readouterr().err
    d = load_comparison("glorot_vs_he").to_dict()
    d["b_edits"] = [{"edit": "init", "init": "he"}]
    cmp_file.write_text(json.dumps(d))
    assert probe("--compare", "--experiment", cmp_file) == 2
    assert "b_edits[0].init" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**_experiment().to_dict(), "pretraining": {"lr": 0}}))
    assert probe("--experiment", bad) == 2
    assert "pretraining.lr" in capsys.readouterr().err


def test_pretraining_divergence_exits_3(tmp_path, capsys):
    exp = _experiment()
    from dataclasses import replace
    exp = replace(exp, network=replace(exp.network, hidden=tuple(
        LayerSpec(6, "linear") for _ in range(3))))
    path = tmp_path / "div.json"
    path.write_text(json.dumps(PretrainedExperiment(
        exp, PretrainSpec(steps_per_layer=50, lr=90.0, momentum=0.99)).to_dict()))
    assert probe("--experiment", path) == 3
    assert "Pretraining diverged" in capsys.readouterr().err


def test_subprocess_probe_compare_has_no_traceback():
    env = {k: v for k, v in os.environ.items() if k != "GFL_QUIT_AFTER_MS"}
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "probe", "--compare",
                           "--preset", "plain_vs_residual"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "B: residual links (1,3)" in proc.stdout
