"""``main.py probe --remedy KEY --remedy-at STEP``: train, apply, train on, report."""

from __future__ import annotations

import numpy as np

from simulator.experiment import load_preset
from simulator.remedies import apply_remedy
from simulator.simulation import Simulation
from tests.test_cli import assert_clean_error, run_main, strict_json


def test_probe_applies_remedies_at_the_given_step_and_says_so():
    proc = run_main("probe", "--preset", "deep_sigmoid", "--steps", 30, "--remedy", "relu",
                    "--remedy", "clip_norm", "--remedy-at", 10, "--json")
    assert proc.returncode == 0, proc.stderr
    report = strict_json(proc.stdout)
    applied = report["remedies_applied"]
    assert [(r["key"], r["step"]) for r in applied] == [("relu", 10), ("clip_norm", 10)]
    assert applied[0]["changes"] == ["sigmoid -> relu on 16 layers",
                                     "weights redrawn with he_normal",
                                     "learning rate 0.1 -> 0.01"]
    assert report["step"] == 30
    # the same thing done in this process gives the same numbers
    sim = Simulation(load_preset("deep_sigmoid"))
    sim.run(10, snapshot=False)
    apply_remedy(sim, "relu")
    apply_remedy(sim, "clip_norm")
    sim.run(20, snapshot=False)
    snap = sim.snapshot()
    np.testing.assert_allclose([r["delta_norm"] for r in report["layers"]],
                               snap.delta_norm.astype(float), rtol=1e-6)
    assert {r["activation"] for r in report["layers"][:-1]} == {"relu"}


def test_probe_remedy_errors_are_clear():
    proc = run_main("probe", "--preset", "deep_sigmoid", "--remedy", "homeopathy")
    assert_clean_error(proc, 2, "unknown remedy 'homeopathy'")
    proc = run_main("probe", "--preset", "relu_he_init", "--remedy", "he_init")
    assert_clean_error(proc, 2, "--remedy he_init", "changes nothing")
    proc = run_main("probe", "--preset", "deep_sigmoid", "--steps", 5, "--remedy", "relu",
                    "--remedy-at", 9)
    assert_clean_error(proc, 2, "--remedy-at 9 is after the last step")


def test_probe_text_names_the_remedy():
    proc = run_main("probe", "--preset", "exploding", "--remedy", "he_init")
    assert proc.returncode == 0, proc.stderr
    assert "remedy 'Re-initialize with He normal' applied at step 0: weights redrawn " \
           "with he_normal" in proc.stdout
