"""Ctrl+C during ``main.py export`` (issue 12, item 2): SIGINT at any moment stops the
export cleanly, exit 130, nothing left behind that looks complete (or at all).

Before the fix a KeyboardInterrupt raised inside a pyqtgraph ``paint()`` called from
C++ crashed the process (SIGSEGV) or was lost (the export ran to the end)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.qt, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def experiment_file(tmp_path, tiny_experiment):
    from simulator.experiment import save_experiment

    path = tmp_path / "tiny.json"
    save_experiment(tiny_experiment, path)
    return path


def start_export(experiment_file, out):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT),
               OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "export", "--experiment", str(experiment_file),
         "--steps", "2000", "--micro", "--view", "composed", "--format", "gif",
         "--size", "320x180", "--out", str(out)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)


@pytest.mark.parametrize("frames_lines", [1, 2])
def test_ctrl_c_while_frames_are_drawn_exits_130_and_leaves_nothing(tmp_path, experiment_file,
                                                                    frames_lines):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = start_export(experiment_file, out_dir / "clip.gif")
    try:
        seen = 0
        for line in proc.stderr:  # one progress line per 10 %: frames are being drawn
            if line.startswith("Exporting ["):
                seen += 1
                if seen == frames_lines:
                    break
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130, rest
    assert "cancelled; nothing was saved" in rest and "Traceback" not in rest
    assert list(out_dir.iterdir()) == []

