"""Start the real program in a subprocess and let it quit itself with a timer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

ROOT = Path(__file__).resolve().parents[1]


def run_main(tmp_path: Path, *args: str, quit_after_ms: int = 1500,
             screenshot: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", OPENBLAS_NUM_THREADS="1",
               GFL_QUIT_AFTER_MS=str(quit_after_ms),
               GFL_SETTINGS=str(tmp_path / "settings.ini"),  # never the user's settings
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    if screenshot is not None:
        env["GFL_SCREENSHOT"] = str(screenshot)
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_main_starts_and_quits(tmp_path):
    shot = tmp_path / "window.png"
    result = run_main(tmp_path, screenshot=shot)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert shot.stat().st_size > 10_000  # something was drawn
    settings = (tmp_path / "settings.ini").read_text()
    assert "geometry" in settings and "state" in settings


@pytest.mark.slow
def test_main_opens_a_file(tmp_path):
    from simulator.data import DataSpec
    from simulator.experiment import Experiment, TrainSpec, save_experiment
    from simulator.spec import uniform_spec

    path = tmp_path / "small.json"
    save_experiment(Experiment(
        name="Small", description="", network=uniform_spec(2, 2, depth=3, width=6),
        data=DataSpec(kind="moons", n_samples=60), training=TrainSpec()), path)
    result = run_main(tmp_path, str(path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert str(path) in (tmp_path / "settings.ini").read_text()
