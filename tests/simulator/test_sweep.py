"""Sweeps: axes refused before anything runs, records that are what they say, resuming
without losing or repeating a point, and the same numbers from every executor."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from simulator.experiment import load_preset
from simulator.simulation import Simulation
from simulator.spec import residual_skips
from simulator.sweep import (
    TIMING_FIELDS,
    Point,
    Sweep,
    SweepError,
    depth_scale_boundary,
    list_sweep_presets,
    load_sweep_preset,
    parse_vary,
    plot_layout,
    point_key,
    read_results,
    run_point,
    run_sweep,
    table,
)
from simulator.theory import chi1, depth_scale

ROOT = Path(__file__).resolve().parents[2]


def _tiny_experiment(**training):
    exp = load_preset("deep_sigmoid")
    net = replace(exp.network, hidden=exp.network.hidden[:2], skips=())
    net = replace(net, hidden=tuple(replace(h, width=4) for h in net.hidden))
    data = replace(exp.data, n_samples=60)
    return replace(exp, network=net, data=data,
                   training=replace(exp.training, batch_size=16, **training))


def _tiny_sweep(**kw):
    args = dict(axes=(("depth", [1, 2]), ("skips", ["none", "residual"])), steps=12, seeds=2,
                check_every=4)
    args.update(kw)
    return Sweep(_tiny_experiment(), **args)


def _numbers(records):
    return sorted(({k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records),
                  key=lambda r: r["key"])


# -- bad axes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("axes, axis, words", [
    ((("depht", [2, 4]),), "depht", "not a field a sweep can vary"),
    ((("depth", []),), "depth", "has no values"),
    ((("depth", ["two"]),), "depth", "whole number"),
    ((("activation", ["sigmoid", "swoosh"]),), "activation", "must be one of"),
    ((("lr", ["nan"]),), "lr", "finite number"),
    ((("batchnorm", ["maybe"]),), "batchnorm", "on or off"),
    ((("depth", [2, 2]),), "depth", "twice"),
    ((("width", [0, 4]),), "width", "between 1 and"),
])
def test_bad_axes_are_refused_with_the_axis_named(axes, axis, words):
    with pytest.raises(SweepError) as info:
        Sweep(_tiny_experiment(), axes=axes, steps=10)
    assert info.value.axis == axis
    assert f"axis {axis}" in str(info.value) and words in str(info.value)


def test_a_value_valid_alone_but_not_in_this_experiment_is_refused_before_anything_runs(
        tmp_path):
    out = tmp_path / "r.jsonl"
    sweep = Sweep(_tiny_experiment(), axes=(("sigma_w2", [1.0, 2.0]),), steps=5)
    with pytest.raises(SweepError) as info:
        run_sweep(sweep, out, executor="serial")
    assert info.value.axis == "sigma_w2" and "mean_field" in str(info.value)
    assert not out.exists()  # nothing ran, nothing was written
    # the residual pattern needs no check; data that no longer fits the network does
    bad = Sweep(_tiny_experiment(), axes=(("data.kind", ["circles", "spiral"]),
                                          ("data.classes", [3])), steps=5)
    with pytest.raises(SweepError) as info:
        bad.validate()
    assert "data" in info.value.axis


def test_parse_vary_reads_the_command_line_form():
    assert parse_vary("depth=2, 4,8") == ("depth", (2, 4, 8))
    assert parse_vary("batchnorm=on,off") == ("batchnorm", (True, False))
    assert parse_vary("training.lr=0.1,0.01") == ("lr", (0.1, 0.01))
    with pytest.raises(SweepError, match="NAME=VALUE"):
        parse_vary("depth")


# -- points -----------------------------------------------------------------------------------

def test_point_keys_are_stable_and_do_not_depend_on_axis_order():
    a = point_key({"depth": 4, "skips": "none"}, 1)
    b = point_key({"skips": "none", "depth": 4}, 1)
    assert a == b == '{"depth":4,"seed":1,"skips":"none"}'
    sweep = _tiny_sweep()
    keys = [p.key for p in sweep.points()]
    assert len(keys) == len(set(keys)) == sweep.n_points == 8


def test_axes_land_in_the_experiment():
    exp = load_preset("fixed_by_residual")  # a skip around every layer
    assert exp.network.skips == residual_skips(exp.network.depth, 1)
    sweep = Sweep(exp, axes=(("depth", [6]), ("width", [5]), ("lr", [0.02])), steps=5)
    e = sweep.experiment_for(sweep.points()[0])
    assert e.network.depth == 6 and {h.width for h in e.network.hidden} == {5}
    assert e.network.skips == residual_skips(6, 1) and e.training.lr == 0.02
    plain = Sweep(exp, axes=(("skips", ["none", "residual"]), ("sigma_w2", [2.25]),
                             ("init", ["mean_field"])), steps=5)
    p_none, p_res = plain.points()
    assert plain.experiment_for(p_none).network.skips == ()
    e_res = plain.experiment_for(p_res)
    assert e_res.network.skips == residual_skips(exp.network.depth, 2)
    assert e_res.network.sigma_w == pytest.approx(1.5)


# -- what a record holds ----------------------------------------------------------------------

def test_run_point_record_matches_an_independent_run():
    exp = _tiny_experiment()
    rec = run_point(exp.to_dict(), steps=10, target_loss=10.0, interval=5)
    sim = Simulation(exp)
    snap0 = sim.snapshot()
    assert rec["delta_ratio_start"] == pytest.approx(
        float(snap0.delta_norm[0] / snap0.delta_norm[-1]), rel=1e-12)
    sim.run(10, snapshot=False)
    o = sim.network.predict(sim.dataset.X_train).astype(np.float64)
    y = np.asarray(sim.dataset.y_train)
    p = np.exp(o - o.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert rec["train_loss"] == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])),
                                              rel=1e-9)
    assert rec["train_accuracy"] == pytest.approx(np.mean(o.argmax(axis=1) == y))
    assert (rec["val_loss"], rec["val_accuracy"]) == pytest.approx(sim.evaluate())
    end = sim.snapshot()
    assert rec["delta_ratio_end"] == pytest.approx(
        float(end.delta_norm[0] / end.delta_norm[-1]), rel=1e-12)
    assert rec["steps_done"] == 10 and rec["diverged_at"] is None
    assert rec["steps_to_target"] == 0  # every loss is below a target of 10
    assert rec["best_train_loss"] <= rec["train_loss"]


def test_a_diverging_point_reports_its_step():
    exp = load_preset("exploding")
    exp = replace(exp, training=replace(exp.training, lr=50.0), network=replace(
        exp.network, hidden=exp.network.hidden[:6], skips=()))
    rec = run_point(exp.to_dict(), steps=200, target_loss=0.0, interval=10)
    assert rec["diverged_at"] is not None and rec["steps_done"] <= rec["diverged_at"] + 1
    assert rec["train_loss"] is None and rec["steps_to_target"] is None


# -- files, resuming --------------------------------------------------------------------------

def test_cancelled_sweep_resumes_without_losing_or_repeating_points(tmp_path):
    out = tmp_path / "r.jsonl"
    sweep = _tiny_sweep()
    cancel = threading.Event()
    seen = []

    def stop_after_three(record, progress):
        seen.append(progress)
        if progress.done == 3:
            cancel.set()

    first = run_sweep(sweep, out, executor="serial", on_record=stop_after_three, cancel=cancel)
    assert first.cancelled and first.ran == 3
    assert len(read_results(out)[1]) == 3
    # a process killed mid-write leaves a partial line: it is dropped, not parsed
    with open(out, "a") as f:
        f.write('{"type":"point","key":"{\\"dep')
    second = run_sweep(sweep, out, executor="serial")
    assert (second.resumed, second.ran) == (3, 5)
    headers, records = read_results(out)
    keys = [r["key"] for r in records]
    assert sorted(keys) == sorted(p.key for p in sweep.points())
    assert len(headers) == 1
    # nothing left to do: nothing runs
    assert run_sweep(sweep, out, executor="serial").ran == 0
    # a progress report counts done, total and a rate
    assert seen[-1].done == 3 and seen[-1].total == 8 and seen[-1].points_per_min > 0


def test_a_results_file_of_another_sweep_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    run_sweep(_tiny_sweep(seeds=1, axes=(("depth", [1]),)), out, executor="serial")
    with pytest.raises(SweepError, match="different sweep"):
        run_sweep(_tiny_sweep(seeds=1, axes=(("depth", [1]),), steps=13), out,
                  executor="serial")
    # growing an axis is the same sweep: only the new point runs
    grown = run_sweep(_tiny_sweep(seeds=1, axes=(("depth", [1, 2]),)), out, executor="serial")
    assert (grown.resumed, grown.ran) == (1, 1)


@pytest.mark.slow
def test_a_killed_sweep_resumes_with_no_point_lost_or_repeated(tmp_path):
    """Kill the whole process group (parent and pool worker) with SIGKILL half-way."""
    out = tmp_path / "r.jsonl"
    exp_file = tmp_path / "e.json"
    exp_file.write_text(_tiny_experiment().to_json())
    cmd = [sys.executable, str(ROOT / "main.py"), "sweep", "--experiment", str(exp_file),
           "--vary", "depth=1,2,3,4,5,6", "--steps", "1500", "--seeds", "2",
           "--check-every", "100", "--out", str(out), "--workers", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_text().count('"type":"point"') >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    _, before = read_results(out)
    assert 3 <= len(before) < 12
    sweep = Sweep(_tiny_experiment(), axes=(("depth", [1, 2, 3, 4, 5, 6]),), steps=1500,
                  seeds=2, check_every=100, name=f"{_tiny_experiment().name}: depth")
    again = run_sweep(sweep, out, executor="serial")
    assert again.resumed == len(before) and again.ran == 12 - len(before)
    _, records = read_results(out)
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)) == 12
    assert set(keys) == {p.key for p in sweep.points()}


# -- executors agree --------------------------------------------------------------------------

@pytest.mark.slow
def test_serial_local_pool_and_dask_give_identical_records(tmp_path):
    distributed = pytest.importorskip("distributed")
    sweep = _tiny_sweep()
    serial = run_sweep(sweep, tmp_path / "s.jsonl", executor="serial")
    pool = run_sweep(sweep, tmp_path / "p.jsonl", executor="local", workers=2)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        dask = run_sweep(sweep, tmp_path / "d.jsonl", scheduler=cluster.scheduler_address)
    assert dask.executor == "dask" and pool.executor == "local"
    assert _numbers(serial.records) == _numbers(pool.records) == _numbers(dask.records)
    assert len(serial.records) == sweep.n_points
    # and what is on disk reads back to the same numbers (floats round-trip exactly)
    assert _numbers(read_results(tmp_path / "d.jsonl")[1]) == _numbers(serial.records)


# -- plotting helpers -------------------------------------------------------------------------

def test_table_means_over_seeds_and_keeps_divergence_visible():
    recs = [{"axes": {"depth": 2}, "train_loss": 0.2}, {"axes": {"depth": 2}, "train_loss": 0.4},
            {"axes": {"depth": 4}, "train_loss": None}, {"axes": {"depth": 4}, "train_loss": 1}]
    t = table(recs, ["depth"], "train_loss")
    assert t[(2,)] == pytest.approx(0.3) and math.isnan(t[(4,)])


def test_depth_scale_boundary_is_six_xi_where_the_theory_applies():
    sweep = load_sweep_preset("trainability")
    d = sweep.to_dict()
    s2 = [0.5, 1.0, 3.0]
    sb2 = sweep.experiment.network.sigma_b ** 2
    got = depth_scale_boundary(d, s2)
    assert got == pytest.approx([6 * depth_scale(chi1("tanh", s, sb2)) for s in s2])
    # docs/SWEEPS.md quotes 6 xi of about 95 and 129 layers at sigma_w^2 = 1.5 and 2
    assert depth_scale_boundary(d, [1.5, 2.0]) == pytest.approx([95, 129], abs=0.5)
    d["axes"].append({"name": "skips", "values": ["residual"]})
    assert depth_scale_boundary(d, s2) is None


def test_plot_layout():
    assert plot_layout([("depth", [2, 4, 8]), ("skips", ["none", "residual"])]) == \
        ("line", "depth", "skips")
    assert plot_layout([("depth", [2, 4, 8]), ("sigma_w2", [1, 2, 3])]) == \
        ("heatmap", "sigma_w2", "depth")


def test_presets_load_and_match_their_names():
    keys = [k for k, _, _ in list_sweep_presets()]
    assert keys == ["degradation", "trainability"]
    deg = load_sweep_preset("degradation")
    assert dict(deg.axes)["skips"] == ("none", "residual")
    depths = dict(deg.axes)["depth"]
    assert min(depths) == 2 and max(depths) == 64  # "depth 2-64"
    tr = load_sweep_preset("trainability")
    assert tr.experiment.network.init == "mean_field"
    assert {h.activation for h in tr.experiment.network.hidden} == {"tanh"}
    assert set(dict(tr.axes)) == {"sigma_w2", "depth"}
    for s in (deg, tr):
        s.validate()
        assert isinstance(s.points()[0], Point)
    # what docs/SWEEPS.md says of their sizes and settings
    assert (deg.n_points, tr.n_points) == (36, 54)
    assert (deg.steps, tr.steps, deg.seeds, tr.seeds) == (2000, 1000, 3, 1)
    for s in (deg, tr):
        e = s.experiment
        assert {h.width for h in e.network.hidden} == {16}
        assert (e.data.kind, e.data.n_samples, e.training.batch_size) == ("circles", 400, 32)
        assert e.build_dataset().n_train == 320
    assert (deg.experiment.training.optimizer, deg.experiment.training.lr) == ("adam", 0.003)
    assert deg.experiment.network.init == "glorot_uniform"
    assert (tr.experiment.training.optimizer, tr.experiment.training.lr) == ("sgd", 0.05)
    assert tr.experiment.network.sigma_b ** 2 == pytest.approx(0.05)
    assert len(dict(tr.axes)["sigma_w2"]) == 9 and len(dict(tr.axes)["depth"]) == 6


def test_results_lines_are_strict_json(tmp_path):
    out = tmp_path / "r.jsonl"
    run_sweep(_tiny_sweep(seeds=1, axes=(("depth", [1]),)), out, executor="serial")
    for line in out.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the file"))


# -- what the presets' descriptions claim -------------------------------------------------------

@pytest.mark.slow
def test_degradation_preset_shows_what_its_description_says(tmp_path):
    """Shallow plain nets fit the training set; the deepest plain net stays near ln 2
    (guessing); the residual net of the same depth fits it. One seed, the extreme depths."""
    base = load_sweep_preset("degradation")
    assert "ln 2" in base.description
    sweep = replace(base, axes=(("depth", (2, 64)), ("skips", ("none", "residual"))), seeds=1)
    out = run_sweep(sweep, tmp_path / "r.jsonl", executor="serial")
    loss = {(r["axes"]["depth"], r["axes"]["skips"]): r["train_loss"] for r in out.records}
    assert loss[(2, "none")] < 0.1 and loss[(64, "residual")] < 0.1
    assert abs(loss[(64, "none")] - math.log(2)) < 0.05


@pytest.mark.slow
def test_trainability_preset_trains_below_six_xi_and_not_above(tmp_path):
    """Two sigma_w^2 on the ordered side and one deep in the chaotic side, a depth below
    and a depth above 6 xi for each."""
    base = load_sweep_preset("trainability")
    assert "6 xi" in base.description
    sweep = replace(base, axes=(("sigma_w2", (0.5, 1.0, 6.0)), ("depth", (4, 32))))
    sb2 = base.experiment.network.sigma_b ** 2
    out = run_sweep(sweep, tmp_path / "r.jsonl", executor="serial")
    for r in out.records:
        bound = 6 * depth_scale(chi1("tanh", r["axes"]["sigma_w2"], sb2))
        assert 4 < bound < 32  # the grid straddles the boundary
        if r["axes"]["depth"] < bound:
            assert r["train_loss"] < 0.1
        else:
            assert r["train_loss"] > 0.5


def test_an_empty_file_is_used_and_a_file_that_is_not_results_is_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert run_sweep(_tiny_sweep(seeds=1, axes=(("depth", [1]),)), empty,
                     executor="serial").ran == 1
    other = tmp_path / "experiment.json"
    other.write_text(_tiny_experiment().to_json())
    before = other.read_text()
    with pytest.raises(SweepError, match="holds no sweep results"):
        run_sweep(_tiny_sweep(seeds=1, axes=(("depth", [1]),)), other, executor="serial")
    assert other.read_text() == before


def test_a_failing_point_stops_the_sweep_with_its_key_and_keeps_finished_points(
        tmp_path, monkeypatch):
    import simulator.sweep as sweep_module

    real = sweep_module.run_point

    def fails_at_depth_1(exp, *args):
        if len(exp["network"]["hidden"]) == 1:
            raise FloatingPointError("boom")
        return real(exp, *args)

    monkeypatch.setattr(sweep_module, "run_point", fails_at_depth_1)
    out = tmp_path / "r.jsonl"
    sweep = _tiny_sweep(seeds=1, axes=(("depth", [1, 2]),))
    # points run longest first: depth 2 finishes, then depth 1 fails
    with pytest.raises(SweepError, match=r'point \{"depth":1,"seed":0\} failed: '
                                         r"FloatingPointError: boom"):
        run_sweep(sweep, out, executor="serial")
    assert [r["axes"] for r in read_results(out)[1]] == [{"depth": 2}]
    monkeypatch.setattr(sweep_module, "run_point", real)
    again = run_sweep(sweep, out, executor="serial")
    assert (again.resumed, again.ran) == (1, 1)
