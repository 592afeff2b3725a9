"""Start-up: the status bar says "Loading kernels" when numba's cache has them and
"Compiling kernels" when it has not, and the first frame is drawn before training's
kernels are ready."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

import simulator  # noqa: E402
from ui.app import MainWindow  # noqa: E402
from ui.commands import Editor  # noqa: E402
from ui.controller import SimulationController  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_kernels_cached_reads_the_cache_without_compiling(tmp_path):
    simulator.warmup()  # compiles or loads: afterwards the cache holds every kernel
    assert simulator.kernels_cached()
    # a fresh, empty cache folder: nothing there, and asking compiles nothing
    code = ("import simulator\nfrom numba.core.dispatcher import Dispatcher\n"
            "from simulator import kernels as K\n"
            "print(simulator.kernels_cached(), sum(len(d.signatures) for d in vars(K).values()"
            " if isinstance(d, Dispatcher)))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out == ["False", "0"]


@pytest.mark.qt
@pytest.mark.parametrize("cached", [True, False])
def test_status_says_loading_or_compiling(qtbot, tiny_experiment, settings, monkeypatch,
                                          cached):
    monkeypatch.setattr(simulator, "kernels_cached", lambda dtypes=("float32",): cached)
    controller = SimulationController(tiny_experiment, build_now=False)
    window = MainWindow(controller, Editor(controller), settings, experiment=tiny_experiment)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    frames = []
    controller.snapshot_changed.connect(lambda snap: frames.append(controller.sim is None))
    with qtbot.waitSignal(controller.ready, timeout=120_000):
        controller.build_in_background()
        assert window.compiling_label.isVisible()
        text = window.compiling_label.text()
        assert text == ("Loading kernels\u2026" if cached else "Compiling kernels\u2026")
    assert not window.compiling_label.isVisible()
    # the first frame came before the simulation was handed over (and so before ready)
    assert frames and frames[0] is True
    assert window.action_step.isEnabled()
    controller.shutdown()
    controller.deleteLater()
