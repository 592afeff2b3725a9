"""Exporting a comparison (issue 10): ``main.py export --compare`` draws A and B side by
side, stepped in lockstep, through the window's view classes and the export's writers."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.qt

SIZE = (480, 270)


def comparison_file(tmp_path: Path, experiment, edits, name="cmp.json") -> Path:
    d = {"format": "gradient-flow-lab/comparison", "version": 1, "name": "Tiny pair",
         "description": "", "a": experiment.to_dict(), "b_edits": edits}
    path = tmp_path / name
    path.write_text(json.dumps(d), encoding="utf-8")
    return path


def export(*argv) -> tuple[int, str]:
    """``main.py export ARGV`` in this process (the command line's own parser and run)."""
    from ui.export.cli import cli_run
    from ui.export_spec import cli_add_arguments

    parser = argparse.ArgumentParser()
    cli_add_arguments(parser)
    err = io.StringIO()
    code = cli_run(parser.parse_args([str(a) for a in argv]), stderr=err)
    return code, err.getvalue()


def read_png(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def halves(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A's and B's columns below the caption and the side headers (the layout is
    symmetric: 6 px margins, 10 px between the columns)."""
    h, w, _ = rgb.shape
    col = (w - 12 - 10) // 2
    top = h // 6
    return rgb[top:, 6:6 + col], rgb[top:, 6 + col + 10:6 + 2 * col + 10]


def frames_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("frame_*.png"))


def test_compare_png_has_the_frames_and_size_asked_for(qapp, tmp_path, tiny_experiment):
    src = comparison_file(tmp_path, tiny_experiment, [{"edit": "skips", "links": [[1, 3]]}])
    out = tmp_path / "frames"
    code, err = export("--compare", "--experiment", src, "--steps", 3, "--view", "composed",
                       "--format", "png", "--size", f"{SIZE[0]}x{SIZE[1]}", "--out", out)
    assert code == 0, err
    frames = frames_of(out)
    assert len(frames) == 4  # the start and one per iteration
    assert read_png(frames[-1]).shape == (SIZE[1], SIZE[0], 3)
    m = json.loads((out / "frames.json").read_text())
    assert m["comparison"] == "B: residual link (1,3)"
    assert [f["step"] for f in m["frames"]] == [0, 1, 2, 3]
    assert [f["b"]["step"] for f in m["frames"]] == [0, 1, 2, 3]


def test_both_halves_show_their_own_side(qapp, tmp_path, tiny_experiment):
    """Both columns are drawn; with no edit they are the same picture, with B's residual
    link B's column differs from A's."""
    size = f"{SIZE[0]}x{SIZE[1]}"
    diffs = {}
    for key, edits in (("same", []), ("edited", [{"edit": "skips", "links": [[1, 3]]}])):
        src = comparison_file(tmp_path, tiny_experiment, edits, f"{key}.json")
        out = tmp_path / key
        code, err = export("--compare", "--experiment", src, "--steps", 1, "--view",
                           "composed", "--format", "png", "--size", size, "--out", out)
        assert code == 0, err
        a, b = halves(read_png(frames_of(out)[-1]))
        for half in (a, b):  # content, not an empty background
            assert half.std() > 10
            assert len(np.unique(half.reshape(-1, 3), axis=0)) > 50
        diffs[key] = np.abs(a - b).mean()
    assert diffs["same"] < 0.05
    assert diffs["edited"] > 10.0


def test_compare_gif_of_the_preset(qapp, tmp_path):
    from PIL import Image

    out = tmp_path / "pair.gif"
    code, err = export("--compare", "--preset", "plain_vs_residual", "--steps", 1, "--view",
                       "flow", "--format", "gif", "--size", "320x180", "--out", out)
    assert code == 0, err
    with Image.open(out) as im:
        assert im.size == (320, 180)
        assert im.n_frames == 2
    assert "the two sides do not fit" in err  # two canvases need more than 320 px


def test_no_warning_when_the_sides_fit(qapp, tmp_path, tiny_experiment):
    src = comparison_file(tmp_path, tiny_experiment, [])
    code, err = export("--compare", "--experiment", src, "--steps", 1, "--view", "flow",
                       "--format", "gif", "--size", "1280x720", "--out", tmp_path / "f.gif")
    assert code == 0, err
    assert "export: warning" not in err


@pytest.mark.parametrize("argv, message", [
    (["--view", "composed"], "is an experiment, not a comparison file"),
    (["--view", "window"], "--compare exports the views canvas, flow, composed"),
])
def test_bad_combinations_exit_2_with_a_message(qapp, tmp_path, tiny_experiment, argv,
                                                message):
    src = tmp_path / "tiny.json"
    src.write_text(tiny_experiment.to_json(), encoding="utf-8")
    out = tmp_path / "x.gif"
    code, err = export("--compare", "--experiment", src, "--steps", 1, "--format", "gif",
                       "--out", out, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_unknown_comparison_preset_names_the_available_ones(qapp, tmp_path):
    code, err = export("--compare", "--preset", "nope", "--steps", 1, "--format", "gif",
                       "--view", "composed", "--out", tmp_path / "x.gif")
    assert code == 2
    assert "plain_vs_residual" in err


def test_micro_steps_animate_both_sides_through_one_iteration(qapp, tmp_path,
                                                              tiny_experiment):
    from simulator.simulation import Simulation

    n_micro = Simulation(tiny_experiment).n_micro_steps
    src = comparison_file(tmp_path, tiny_experiment, [{"edit": "init", "init": "he_normal"}])
    out = tmp_path / "micro"
    code, err = export("--compare", "--experiment", src, "--steps", 1, "--micro", "--view",
                       "canvas", "--format", "png", "--size", "320x180", "--out", out)
    assert code == 0, err
    m = json.loads((out / "frames.json").read_text())
    assert len(frames_of(out)) == len(m["frames"]) == 1 + n_micro
    phases = [f["phase"] for f in m["frames"]]
    assert phases == [f["b"]["phase"] for f in m["frames"]]  # lockstep
    assert "backward" in phases and m["frames"][-1]["step"] == m["frames"][-1]["b"]["step"] == 1


def test_a_comparison_file_without_compare_says_to_add_it(qapp, tmp_path, tiny_experiment):
    src = comparison_file(tmp_path, tiny_experiment, [])
    code, err = export("--experiment", src, "--steps", 1, "--format", "gif", "--out",
                       tmp_path / "x.gif")
    assert code == 2
    assert "is a comparison file: add --compare" in err


def test_caption_says_what_b_pretrains_while_a_waits(qapp):
    from simulator.compare_experiment import load_comparison
    from ui.export.compare import CompareView, build_driver, dispose_driver

    driver = build_driver(load_comparison("pretrained_vs_random"))
    try:
        driver.step()
        driver.step()
        frame = driver.frame
        pre = frame.pretrain
        assert frame.waiting and pre.step == 2
        view = CompareView(driver, "t", panels=())
        text = view.caption_text(frame)
        assert f"A waits while B is {pre.label} (step 2 of {pre.steps_per_layer}" in text
        assert f"reconstruction loss {pre.loss:.4g}" in text
        assert frame.label == "B: pretrained" and frame.label in text
        view.deleteLater()
    finally:
        dispose_driver(driver)
