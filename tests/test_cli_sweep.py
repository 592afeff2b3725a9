"""main.py sweep and sweep-plot: refusals before anything runs, a run and its resume through
the real command line, and the figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import main
from cli_sweep import build_sweep
from simulator.experiment import load_preset
from simulator.sweep import read_results, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def _run(argv, capsys):
    code = main.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_sweep_and_sweep_plot_are_registered():
    assert "sweep" in main.COMMANDS and "sweep-plot" in main.COMMANDS


@pytest.mark.parametrize("vary, words", [
    (["depht=2,4"], "axis depht: is not a field a sweep can vary"),
    (["depth="], "axis depth: has no values"),
    (["depth=2,x"], "axis depth: must be a whole number, got 'x'"),
    (["width=0"], "axis width"),
    (["sigma_w2=1,2"], "axis sigma_w2"),
    ([], "give at least one --vary"),
])
def test_bad_axes_exit_2_naming_the_axis_and_write_nothing(vary, words, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    argv = ["sweep", "--preset", "deep_sigmoid", "--steps", "5", "--out", str(out)]
    for v in vary:
        argv += ["--vary", v]
    code, stdout, err = _run(argv, capsys)
    assert code == 2 and words in err and "Traceback" not in err
    assert stdout == "" and not out.exists()


def test_unknown_sweep_preset_lists_the_available_ones(tmp_path, capsys):
    code, _, err = _run(["sweep", "--sweep-preset", "nope", "--out", str(tmp_path / "r")],
                        capsys)
    assert code == 2 and "degradation" in err and "trainability" in err


def test_plot_of_a_missing_file_is_bad_input(tmp_path, capsys):
    code, _, err = _run(["sweep-plot", str(tmp_path / "none.jsonl"), "--out",
                         str(tmp_path / "f.png")], capsys)
    assert code == 2 and "cannot be read" in err


def _tiny_experiment_file(tmp_path) -> Path:
    exp = load_preset("tanh_edge_of_chaos")
    net = replace(exp.network, hidden=tuple(replace(h, width=4) for h in exp.network.hidden[:2]))
    exp = replace(exp, network=net, data=replace(exp.data, n_samples=60),
                  training=replace(exp.training, batch_size=16))
    path = tmp_path / "tiny.json"
    path.write_text(exp.to_json())
    return path


@pytest.mark.slow
@pytest.mark.qt
def test_sweep_runs_resumes_and_plots_a_heatmap(tmp_path, qapp):
    exp = _tiny_experiment_file(tmp_path)
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, str(ROOT / "main.py"), "sweep", "--experiment", str(exp),
            "--vary", "sigma_w2=0.5,1,2", "--steps", "10", "--out", str(out), "--workers", "1"]
    first = subprocess.run(base + ["--vary", "depth=1,2,3"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "[9/9]" in first.stdout and "points/min" in first.stdout
    # one more depth (resumed in this process, serially): the nine finished points are
    # kept and only the three new ones run
    args = main.build_parser(only="sweep").parse_args(
        base[2:] + ["--vary", "depth=1,2,3,4"])
    outcome = run_sweep(build_sweep(args), out, executor="serial")
    assert (outcome.resumed, outcome.ran) == (9, 3)
    headers, records = read_results(out)
    assert len(records) == 12 and len({r["key"] for r in records}) == 12
    assert all(json.loads(r["key"])["seed"] == 0 for r in records)

    fig = tmp_path / "f.png"
    code = main.main(["sweep-plot", str(out), "--out", str(fig), "--size", "600x400"])
    assert code == 0
    from PySide6.QtGui import QImage

    img = QImage(str(fig))
    assert (img.width(), img.height()) == (600, 400)
    # the dashed 6-xi boundary is drawn in white over the heatmap
    ptr = img.convertToFormat(QImage.Format.Format_RGB888)
    rgb = np.frombuffer(ptr.constBits(), np.uint8).reshape(400, ptr.bytesPerLine())
    rgb = rgb[:, :1800].reshape(400, 600, 3)
    assert np.any(np.all(rgb >= 250, axis=2))
