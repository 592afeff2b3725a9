"""Regenerate the README's screenshots of the real window.

Run under a virtual X server so the real window system plugin draws the window:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

It opens the deep sigmoid preset, trains a little, stops halfway through a
backward pass, and saves docs/screenshots/*.png; then applies two of the
diagnosis's remedies (residual links, batch norm), trains again and saves the
"after" pictures. Settings go to a
temporary file, never the user's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from ui.app import APP_NAME, MainWindow, apply_theme, choose_experiment  # noqa: E402
from ui.commands import Editor  # noqa: E402
from ui.controller import SimulationController  # noqa: E402

WINDOW_SIZE = (1560, 960)


def settle(app: QApplication, ms: int = 400) -> None:
    """Let the event loop run for ``ms`` so every panel has drawn its latest frame."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()
    app.processEvents()


def save(widget, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not widget.grab().save(str(path)):
        raise SystemExit(f"could not write {path}")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def backward_halfway(controller) -> None:
    """Micro-step into the backward pass, so the canvas shows the pulse part way down."""
    sim = controller.sim
    n_layers = sim.spec.depth + 1
    for _ in range(n_layers + 1 + n_layers // 2):  # forward, loss, half of backward
        controller.micro_step()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--steps", type=int, default=300, help="training steps before/after")
    args = parser.parse_args(argv)

    app = QApplication.instance() or QApplication([APP_NAME])
    app.setApplicationName(APP_NAME)
    apply_theme(app)
    with tempfile.TemporaryDirectory() as tmp:
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        experiment, path, _problem = choose_experiment(None, settings)
        controller = SimulationController(experiment)
        editor = Editor(controller)
        window = MainWindow(controller, editor, settings, path=path)
        window.resize(*WINDOW_SIZE)
        window.show()
        settle(app, 600)

        controller.run_steps(args.steps)
        backward_halfway(controller)
        settle(app)
        save(window, args.out / "window.png")
        save(window.canvas, args.out / "canvas.png")
        for name in ("flow", "diagnosis", "history"):
            if name in window.views:
                save(window.docks[f"dock_{name}"], args.out / f"{name}.png")

        # the fix, applied the way the diagnosis offers it, then the same training again
        editor.apply_remedy("residual")
        editor.apply_remedy("batchnorm")
        controller.run_steps(args.steps)
        backward_halfway(controller)
        settle(app)
        save(window, args.out / "window_fixed.png")
        save(window.canvas, args.out / "canvas_fixed.png")

        help_window = window.show_help("vanishing")
        if help_window is not None:
            settle(app, 200)
            save(help_window, args.out / "help.png")
            help_window.close()
        window.unattended_answer = "discard"  # the remedies were for the pictures only
        window.close()
        controller.deleteLater()
        settle(app, 50)
    return 0


if __name__ == "__main__":
    sys.exit(main())
