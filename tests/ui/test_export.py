"""Export (issue 4): PNG frames, GIF and MP4, headless, from the command line and from
the window's dialog; determinism, the manifest, what the frames show, and the
error paths (nothing half-written is ever left looking complete)."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.qt

ROOT = Path(__file__).resolve().parents[2]
SMALL = (320, 180)
NOBODY = 65534


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def make_controller(qapp, tiny_experiment):
    """Fresh controllers on the tiny experiment (each export steps its own)."""
    from ui.controller import SimulationController

    made = []

    def make(experiment=None):
        c = SimulationController(experiment or tiny_experiment)
        made.append(c)
        return c

    yield make
    for c in made:
        c.shutdown()
        c.deleteLater()


def settings_for(out, fmt="png", **kw):
    from ui.export import ExportSettings

    kw.setdefault("view", "canvas")
    kw.setdefault("size", SMALL)
    kw.setdefault("steps", 2)
    return ExportSettings(out=Path(out), format=fmt, **kw)


def export(controller, out, fmt="png", progress=None, **kw):
    from ui.export import ExportJob

    return ExportJob(controller, settings_for(out, fmt, **kw), progress=progress).run()


def read_png(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im).copy()


def manifest(folder) -> dict:
    return json.loads((Path(folder) / "frames.json").read_text(encoding="utf-8"))


def expected_micro_phases(n_layers: int) -> list[tuple[str, int]]:
    """forward 1..N, loss, backward N..1, update: one iteration's micro-steps."""
    return ([("forward", k) for k in range(1, n_layers + 1)] + [("loss", 0)]
            + [("backward", k) for k in range(n_layers, 0, -1)] + [("update", 0)])


@contextmanager
def unwritable(folder: Path):
    """``folder`` cannot be written to. Root ignores file modes, so a root test process
    acts as nobody meanwhile (seteuid keeps the saved id, so it can switch back)."""
    folder.chmod(0o500)
    try:
        if os.geteuid() == 0:
            os.seteuid(NOBODY)
            try:
                yield
            finally:
                os.seteuid(0)
        else:
            yield
    finally:
        folder.chmod(0o755)


def run_cli(*args, env=None, preexec_fn=None, user=None, timeout=180):
    environment = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "export", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=environment, preexec_fn=preexec_fn, user=user)


@pytest.fixture
def experiment_file(tmp_path, tiny_experiment):
    path = tmp_path / "tiny.json"
    path.write_text(tiny_experiment.to_json(), encoding="utf-8")
    return path


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, size", [("1280x720", (1280, 720)), (" 320 X 180 ", (320, 180)),
                                        ("1024×1024", (1024, 1024))])
def test_parse_size_reads_w_x_h(text, size):
    from ui.export import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1280", "1280x", "x720", "12.5x10", "-3x4", "axb"])
def test_parse_size_rejects_garbage_with_an_example(text):
    from ui.export import ExportError, parse_size

    with pytest.raises(ExportError, match="WIDTHxHEIGHT, e.g. 1280x720"):
        parse_size(text)


@pytest.mark.parametrize("fmt, out, changes, message", [
    ("gif", "a.gif", {"size": (10, 10)}, "between 64 and 7680"),
    ("png", "frames", {"size": (9000, 720)}, "between 64 and 7680"),
    ("mp4", "a.mp4", {"size": (321, 180)}, "even width and height: use 320x180"),
    ("gif", "a.gif", {"fps": 60}, "between 1 and 50"),
    ("mp4", "a.mp4", {"fps": 0}, "between 1 and 60"),
    ("gif", "a.gif", {"steps": 0}, "Steps must be"),
    ("gif", "a.gif", {"every": 0}, "at least 1"),
    ("gif", "a.mp4", {}, "must end in .gif"),
    ("png", "frame.png", {}, "folder"),
    ("gif", "", {}, "Choose where"),
])
def test_settings_explain_what_is_wrong(fmt, out, changes, message):
    from ui.export import ExportError

    s = settings_for(out, fmt, **changes)
    assert any(message in p for p in s.problems()), s.problems()
    with pytest.raises(ExportError, match=message.split(":")[0]):
        s.validate()


# -- the frame source ------------------------------------------------------------------------


@pytest.mark.parametrize("micro, every, steps", [(False, 1, 3), (False, 2, 5), (True, 1, 2),
                                                 (True, 3, 4)])
def test_frame_source_makes_the_frames_it_counts(make_controller, micro, every, steps):
    from ui.export import FrameSource, count_frames

    c = make_controller()
    n_micro = c.sim.n_micro_steps
    source = FrameSource(c, steps, micro, every)
    infos = [info for _snap, info in source]
    assert len(infos) == source.total == count_frames(steps, micro, every, n_micro)
    assert [i.index for i in infos] == list(range(len(infos)))
    assert infos[0].step == 0 and infos[0].phase == "ready"
    assert c.sim.step_count == steps  # every iteration ran, kept or not
    if not micro:
        assert [i.step for i in infos[1:]] == sorted({min(k, steps) for k in
                                                     range(every, steps + every, every)})
        assert all(i.phase == "update" for i in infos[1:])
    else:
        n_layers = c.snapshot.n_layers
        phases = [(i.phase, i.layer) for i in infos[1:]]
        animated = len(range(0, steps, every))
        assert phases == expected_micro_phases(n_layers) * animated


def test_frame_source_refuses_a_diverged_simulation(make_controller, tiny_experiment):
    from dataclasses import replace

    from simulator.experiment import TrainSpec
    from simulator.spec import uniform_spec
    from ui.export import ExportError, FrameSource

    wild = replace(tiny_experiment, network=uniform_spec(2, 2, 4, 8, "relu", gain=10.0,
                                                         loss="mse"),
                   training=TrainSpec(lr=50.0, batch_size=16))
    c = make_controller(wild)
    c.run_steps(5)
    assert c.sim.divergence is not None
    with pytest.raises(ExportError, match="diverged.*reset"):
        FrameSource(c, 3)


def test_an_export_that_diverges_stops_there_with_a_warning(make_controller, tiny_experiment,
                                                           tmp_path):
    from dataclasses import replace

    from simulator.experiment import TrainSpec
    from simulator.spec import uniform_spec

    wild = replace(tiny_experiment, network=uniform_spec(2, 2, 4, 8, "relu", gain=10.0,
                                                         loss="mse"),
                   training=TrainSpec(lr=50.0, batch_size=16))
    result = export(make_controller(wild), tmp_path / "f", "png", steps=10)
    assert result.status == "done" and result.frames < 11
    assert "diverged" in result.warnings[0]
    assert len(manifest(tmp_path / "f")["frames"]) == result.frames


# -- PNG ---------------------------------------------------------------------------------------


def test_png_sequence_has_numbered_frames_and_a_manifest(make_controller, tmp_path):
    c = make_controller()
    n_layers = c.snapshot.n_layers
    out = tmp_path / "frames"
    result = export(c, out, "png", steps=1, micro=True, fps=12)
    assert result.status == "done" and result.path == out
    m = manifest(out)
    n = 1 + c.sim.n_micro_steps
    assert result.frames == n
    assert m["experiment"] == "Tiny tanh" and m["seed"] == 0
    assert m["view"] == "canvas" and m["size"] == [320, 180] and m["fps"] == 12
    assert m["granularity"] == "micro-step"
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"frame_{i:05d}.png" for i in range(n)] + ["frames.json"]
    frames = m["frames"]
    assert [f["file"] for f in frames] == [f"frame_{i:05d}.png" for i in range(n)]
    assert [(f["phase"], f["layer"]) for f in frames] == (
        [("ready", 0)] + expected_micro_phases(n_layers))
    assert [f["step"] for f in frames] == [0] * (n - 1) + [1]
    assert all(isinstance(f["loss"], float) and f["loss"] > 0 for f in frames)
    assert read_png(out / "frame_00000.png").shape == (180, 320, 3)


def test_same_experiment_and_seed_give_byte_identical_png_frames(make_controller, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    export(make_controller(), a, "png", view="composed", steps=3)
    export(make_controller(), b, "png", view="composed", steps=3)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_png_frames_carry_no_metadata(make_controller, tmp_path):
    """Only IHDR, IDAT and IEND: no time stamp, software name or text can differ."""
    export(make_controller(), tmp_path / "f", "png", steps=1)
    data = (tmp_path / "f" / "frame_00001.png").read_bytes()
    pos, chunks = 8, set()
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        chunks.add(data[pos + 4:pos + 8].decode("ascii"))
        pos += 12 + length
    assert chunks == {"IHDR", "IDAT", "IEND"}


def test_frames_differ_as_training_goes_on(make_controller, tmp_path):
    """The capture really redraws: a frame per micro-step is not one picture repeated."""
    out = tmp_path / "f"
    export(make_controller(), out, "png", steps=1, micro=True)
    pictures = {read_png(p).tobytes() for p in sorted(out.glob("frame_*.png"))}
    assert len(pictures) > 3


def _orange_columns(picture: np.ndarray) -> np.ndarray:
    """Per column, how many pixels have the backward highlight's orange (colors.BACKWARD,
    #ff8a1f, blended over the dark background): hue near 28 degrees, clearly saturated.
    The viridis colour scale of units and links never comes near it."""
    rgb = picture.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    orange = (r > 120) & (r > 1.3 * g) & (g > 1.5 * b + 10)
    return orange.sum(axis=0)


def test_backward_highlight_moves_from_right_to_left(make_controller, tmp_path):
    """In micro-step frames of the canvas, the highlighted layer walks from the output
    (right) to the input (left), one layer per backward micro-step; no other frame
    carries the backward highlight."""
    out = tmp_path / "f"
    c = make_controller()
    export(c, out, "png", view="canvas", size=(640, 360), steps=1, micro=True)
    frames = manifest(out)["frames"]
    centres = []
    for f in frames:
        counts = _orange_columns(read_png(out / f["file"]))
        if f["phase"] != "backward":
            assert counts.sum() < 20, f  # forward highlight is blue; loss/update: none
            continue
        assert counts.sum() > 200, f
        centres.append(float((counts * np.arange(counts.size)).sum() / counts.sum()))
    n_layers = c.snapshot.n_layers
    assert len(centres) == n_layers
    steps = np.diff(centres)
    assert np.all(steps < 0), centres
    # evenly spaced: the same distance per layer, as the canvas puts layers at x = k
    assert steps.max() - steps.min() < 0.25 * abs(steps.mean()), centres


def test_frames_change_where_the_backward_pass_is(make_controller, tmp_path):
    """What changes from one backward frame to the next moves from right to left too
    (the pulse, the newly computed deltas and their norm labels)."""
    out = tmp_path / "f"
    export(make_controller(), out, "png", view="canvas", size=(640, 360), steps=1, micro=True)
    frames = manifest(out)["frames"]
    backward = [i for i, f in enumerate(frames) if f["phase"] == "backward"]
    pictures = {i: read_png(out / frames[i]["file"]).astype(np.int16)
                for i in [backward[0] - 1, *backward]}
    centres = []
    for i in backward:
        changed = np.abs(pictures[i] - pictures[i - 1]).sum(axis=2) > 24
        weight = changed.sum(axis=0).astype(float)
        assert weight.sum() > 0, f"frame {i} looks like the one before"
        centres.append(float((weight * np.arange(weight.size)).sum() / weight.sum()))
    assert all(a > b for a, b in zip(centres, centres[1:], strict=False)), centres


# -- GIF ---------------------------------------------------------------------------------------


def test_gif_loops_at_the_requested_speed_and_matches_the_frames(make_controller, tmp_path):
    from PIL import Image, ImageSequence

    c1, c2 = make_controller(), make_controller()
    png = tmp_path / "frames"
    gif = tmp_path / "clip.gif"
    export(c1, png, "png", steps=1, micro=True, fps=20)
    result = export(c2, gif, "gif", steps=1, micro=True, fps=20)
    n = result.frames
    with Image.open(gif) as im:
        assert im.size == SMALL
        assert im.info["loop"] == 0
        durations, pictures = [], []
        for frame in ImageSequence.Iterator(im):
            durations.append(frame.info["duration"])
            pictures.append(np.asarray(frame.convert("RGB")).astype(np.int16))
    # identical neighbours are merged into one longer frame; the clip's length is exact
    assert sum(durations) == n * 50
    first = read_png(png / "frame_00000.png").astype(np.int16)
    assert np.abs(pictures[0] - first).mean() < 2.0  # 256 colours: near-exact


def test_gif_delays_average_to_the_fps(make_controller, tmp_path):
    from PIL import Image, ImageSequence

    from ui.export import GifWriter

    w = GifWriter(tmp_path / "x.gif", SMALL, 30, {})
    delays = [w._delay_ms(i, 1) for i in range(30)]
    assert set(delays) <= {30, 40} and sum(delays) == 1000
    result = export(make_controller(), tmp_path / "clip.gif", "gif", steps=3, fps=30)
    with Image.open(tmp_path / "clip.gif") as im:
        total = sum(f.info["duration"] for f in ImageSequence.Iterator(im))
    assert abs(total - result.frames * 1000 / 30) <= 10


def test_gif_is_deterministic(make_controller, tmp_path):
    export(make_controller(), tmp_path / "a.gif", "gif", steps=2)
    export(make_controller(), tmp_path / "b.gif", "gif", steps=2)
    assert (tmp_path / "a.gif").read_bytes() == (tmp_path / "b.gif").read_bytes()


# -- MP4 ---------------------------------------------------------------------------------------


def test_mp4_is_h264_yuv420p_with_every_frame(make_controller, tmp_path):
    import imageio_ffmpeg

    c1, c2 = make_controller(), make_controller()
    export(c1, tmp_path / "frames", "png", steps=4)
    result = export(c2, tmp_path / "clip.mp4", "mp4", steps=4, fps=10)
    data = (tmp_path / "clip.mp4").read_bytes()
    assert data[4:8] == b"ftyp"
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "clip.mp4"))
    meta = reader.__next__()
    assert tuple(meta["size"]) == SMALL
    assert meta["codec"].startswith("h264") and "yuv420p" in meta["pix_fmt"]
    frames = [np.frombuffer(f, np.uint8).reshape(SMALL[1], SMALL[0], 3) for f in reader]
    assert len(frames) == result.frames == 5
    first = read_png(tmp_path / "frames" / "frame_00000.png").astype(np.int16)
    assert np.abs(frames[0].astype(np.int16) - first).mean() < 6  # lossy, but the same picture


# -- destinations and failures -------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_unwritable_folder_fails_before_rendering_and_leaves_nothing(make_controller,
                                                                     tmp_path):
    from ui.export import ExportError, ExportJob

    folder = tmp_path / "locked"
    folder.mkdir()
    c = make_controller()
    job = ExportJob(c, settings_for(folder / "clip.gif", "gif"))
    with unwritable(folder), pytest.raises(ExportError) as caught:
        job.start()
    message = str(caught.value)
    assert "permission denied" in message and "Choose another folder" in message
    assert job.result.status == "failed" and job.frames_done == 0
    assert c.sim.step_count == 0  # nothing was rendered or trained
    assert leftovers(folder) == []


def test_missing_folder_is_named(make_controller, tmp_path):
    from ui.export import ExportError

    with pytest.raises(ExportError, match="does not exist. Create it or choose another"):
        export(make_controller(), tmp_path / "no" / "such" / "clip.mp4", "mp4")


def test_png_never_mixes_frames_with_other_files(make_controller, tmp_path):
    from ui.export import ExportError

    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(ExportError, match="already holds other files"):
        export(make_controller(), out, "png")
    assert leftovers(out) == ["thesis.tex"]
    assert leftovers(tmp_path) == ["mine"]


def test_png_export_replaces_an_earlier_export(make_controller, tmp_path):
    out = tmp_path / "frames"
    export(make_controller(), out, "png", steps=4)
    export(make_controller(), out, "png", steps=1)
    assert len(manifest(out)["frames"]) == 2
    assert leftovers(out) == ["frame_00000.png", "frame_00001.png", "frames.json"]
    assert leftovers(tmp_path) == ["frames"]


@pytest.mark.parametrize("fmt, name", [("gif", "clip.gif"), ("mp4", "clip.mp4"),
                                       ("png", "frames")])
def test_cancel_leaves_no_file(make_controller, tmp_path, fmt, name):
    from ui.export import ExportJob

    job = None

    def progress(done, total):
        if done == 3:
            job.cancel()

    job = ExportJob(make_controller(), settings_for(tmp_path / name, fmt, steps=20),
                    progress=progress)
    result = job.run()
    assert result.status == "cancelled" and "nothing was saved" in result.message
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt, name", [("gif", "clip.gif"), ("mp4", "clip.mp4"),
                                       ("png", "frames")])
def test_a_full_disk_fails_cleanly(make_controller, tmp_path, monkeypatch, fmt, name):
    """The writer's OSError (here a simulated ENOSPC on the fourth frame) becomes a clear
    message, and the temporary output is removed."""
    from ui import export as ex

    writer_class = ex.WRITERS[fmt]
    real_write = writer_class.write

    def failing_write(self, rgb, info):
        if info.index == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, rgb, info)

    monkeypatch.setattr(writer_class, "write", failing_write)
    with pytest.raises(ex.ExportError, match="disk is full.*nothing was saved"):
        export(make_controller(), tmp_path / name, fmt, steps=10)
    assert leftovers(tmp_path) == []


def test_existing_file_is_only_replaced_when_the_new_one_is_complete(make_controller,
                                                                     tmp_path):
    from ui.export import ExportJob

    target = tmp_path / "clip.gif"
    target.write_bytes(b"the earlier clip")
    job = None

    def progress(done, total):
        if done == 2:
            assert target.read_bytes() == b"the earlier clip"  # untouched while rendering
            job.cancel()

    job = ExportJob(make_controller(), settings_for(target, "gif", steps=5), progress=progress)
    assert job.run().status == "cancelled"
    assert target.read_bytes() == b"the earlier clip"
    export(make_controller(), target, "gif", steps=1)
    assert target.read_bytes()[:6] == b"GIF89a"
    assert leftovers(tmp_path) == ["clip.gif"]


# -- views -------------------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["canvas", "flow", "composed"])
def test_each_view_renders_at_exactly_the_requested_size(make_controller, tmp_path, view):
    from ui.export import build_capture

    c = make_controller()
    capture, used = build_capture(view, c, (333, 201))
    try:
        picture = capture.grab(c.snapshot)
    finally:
        capture.close()
    assert used == view
    assert picture.shape == (201, 333, 3) and picture.dtype == np.uint8
    assert picture.std() > 0  # something was drawn


def test_window_view_is_the_main_window_or_the_composed_fallback(make_controller, tmp_path):
    # the window registers itself as the "window" view when imported (ui.export never
    # imports ui.app); the command line imports it for --view window
    from ui.export.cli import load_main_window

    has_window = load_main_window()
    result = export(make_controller(), tmp_path / "w", "png", view="window", steps=1,
                    size=(640, 400))
    view = manifest(tmp_path / "w")["view"]
    if not has_window:
        assert view == "composed" and "not available" in result.warnings[0]
    else:
        assert view == "window" and not result.warnings
    assert read_png(tmp_path / "w" / "frame_00001.png").shape == (400, 640, 3)


# -- the dialog and the window -----------------------------------------------------------------


@pytest.fixture
def out_dir(tmp_path):
    """Where the window tests write (tmp_path also holds the settings file)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def window(qtbot, controller, editor, settings):
    """The real main window with the export action installed."""
    from ui.app import MainWindow
    from ui.export import install_export_action

    w = MainWindow(controller, editor, settings)
    qtbot.addWidget(w)
    w.exporter = install_export_action(w)
    return w


def fill_dialog(dialog, out, fmt, size=SMALL, steps=2, micro=False, view="canvas", fps=10):
    dialog.set_view(view)
    dialog.set_size(*size)
    dialog.steps_spin.setValue(steps)
    dialog.set_micro(micro)
    dialog.fps_spin.setValue(fps)
    dialog.set_format(fmt)
    dialog.dest_edit.setText(str(out))


def close_message(window):
    box = window.exporter.message_box
    if box is not None:
        box.close()


def test_export_action_is_enabled_with_ctrl_e(window):
    from PySide6.QtGui import QAction, QKeySequence

    action = window.findChild(QAction, "action_export")
    assert action.isEnabled()
    assert action.shortcut() == QKeySequence("Ctrl+E")
    action.trigger()
    dialog = window.exporter.dialog
    assert dialog is not None and dialog.isVisible()
    dialog.reject()


@pytest.mark.parametrize("fmt, name", [("png", "frames"), ("gif", "clip.gif"),
                                       ("mp4", "clip.mp4")])
def test_dialog_exports_each_format(qtbot, window, out_dir, fmt, name):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QAction

    window.findChild(QAction, "action_export").trigger()
    dialog = window.exporter.dialog
    fill_dialog(dialog, out_dir / name, fmt, steps=1, micro=True)
    assert dialog.ok_button.isEnabled(), dialog.problem_label.text()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.exporter.last_result is not None, timeout=60_000)
    result = window.exporter.last_result
    assert result.status == "done", result.message
    assert (out_dir / name).exists()
    assert leftovers(out_dir) == [name]
    box = window.exporter.message_box
    assert box is not None and "Saved" in box.text()
    assert "Open folder" in [b.text() for b in box.buttons()]
    assert window.controller.sim.step_count == 0  # the app's own simulation did not move
    close_message(window)


def test_dialog_validates_as_you_type(qtbot, window, out_dir):
    dialog = window.exporter.open_dialog()
    fill_dialog(dialog, out_dir / "clip.gif", "gif")
    assert dialog.ok_button.isEnabled()
    dialog.set_size(20, 20)
    assert not dialog.ok_button.isEnabled()
    assert "between 64 and 7680" in dialog.problem_label.text()
    dialog.set_size(321, 180)
    assert dialog.ok_button.isEnabled()  # odd sizes are fine for a GIF...
    dialog.set_format("mp4")
    assert dialog.dest_edit.text().endswith("clip.mp4")  # the suffix follows the format
    assert not dialog.ok_button.isEnabled()  # ... not for H.264
    assert "use 320x180" in dialog.problem_label.text()
    dialog.set_size(320, 180)
    dialog.dest_edit.setText("")
    assert "Choose where" in dialog.problem_label.text()
    dialog.reject()


def test_dialog_reports_an_unwritable_folder_and_stays_open(qtbot, window, out_dir):
    folder = out_dir / "locked"
    folder.mkdir()
    dialog = window.exporter.open_dialog()
    fill_dialog(dialog, folder / "clip.gif", "gif")
    with unwritable(folder):
        dialog.accept()
    assert dialog.isVisible() and not window.exporter.busy
    assert "permission denied" in dialog.problem_label.text()
    assert leftovers(folder) == []
    dialog.reject()


def test_dialog_remembers_the_last_choices(qtbot, window, out_dir):
    dialog = window.exporter.open_dialog()
    fill_dialog(dialog, out_dir / "clip.mp4", "mp4", size=(1024, 1024), steps=7, micro=True,
                view="flow", fps=24)
    dialog.every_spin.setValue(3)
    dialog.accept()
    window.exporter.cancel()
    qtbot.waitUntil(lambda: window.exporter.last_result is not None, timeout=30_000)
    close_message(window)
    again = window.exporter.open_dialog()
    s = again.export_settings()
    assert (s.format, s.size, s.steps, s.micro, s.every, s.view, s.fps) == (
        "mp4", (1024, 1024), 7, True, 3, "flow", 24)
    assert Path(s.out).parent == out_dir
    again.reject()


def test_cancel_in_the_progress_dialog_leaves_no_file(qtbot, window, out_dir):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QPushButton

    exporter = window.exporter
    seen = []

    def click_cancel(done, total):
        seen.append(done)
        if done >= 2 and exporter.progress_dialog is not None:
            button = exporter.progress_dialog.findChild(QPushButton)
            assert button.text() == "Cancel"
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)

    ok = exporter.start(settings_for(out_dir / "clip.mp4", "mp4", steps=5000))
    assert ok and exporter.busy
    exporter.runner.progress.connect(click_cancel)
    qtbot.waitUntil(lambda: exporter.last_result is not None, timeout=30_000)
    assert exporter.last_result.status == "cancelled"
    assert max(seen) < 5000
    assert leftovers(out_dir) == []
    assert exporter.message_box is None  # a status-bar note, no dialog to dismiss


def test_the_window_keeps_answering_while_exporting(qtbot, window, out_dir):
    from PySide6.QtCore import QTimer

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    window.exporter.start(settings_for(out_dir / "clip.gif", "gif", steps=40))
    qtbot.waitUntil(lambda: window.exporter.last_result is not None, timeout=60_000)
    timer.stop()
    assert window.exporter.last_result.status == "done"
    assert len(ticks) >= 5  # the event loop ran between slices
    close_message(window)


# -- command line ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt, name", [("png", "frames"), ("gif", "clip.gif"),
                                       ("mp4", "clip.mp4")])
def test_cli_exports_each_format(tmp_path, experiment_file, fmt, name):
    out = tmp_path / name
    env = {"QT_QPA_PLATFORM": None, "DISPLAY": None}  # it must go offscreen by itself
    r = run_cli("--experiment", experiment_file, "--steps", 2, "--micro", "--size", "320x180",
                "--fps", 12, "--format", fmt, "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    assert "Exporting [" in r.stderr and "Saved" in r.stderr
    assert out.exists()
    if fmt == "png":
        m = manifest(out)
        assert len(m["frames"]) == 1 + 2 * 12  # 4 hidden layers + output: 12 micro-steps each
        assert m["fps"] == 12 and m["granularity"] == "micro-step"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "tiny.json"])


@pytest.mark.slow
def test_cli_png_frames_match_the_in_process_export(qapp, tmp_path, experiment_file,
                                                    make_controller):
    """The command draws exactly what the app draws: same views, same theme (which the
    command applies to its own application, as the app does)."""
    from ui.export.cli import apply_app_theme

    apply_app_theme(qapp)
    r = run_cli("--experiment", experiment_file, "--steps", 2, "--size", "320x180",
                "--view", "composed", "--format", "png", "--out", tmp_path / "cli")
    assert r.returncode == 0, r.stderr
    export(make_controller(), tmp_path / "here", "png", view="composed", steps=2)
    for p in sorted((tmp_path / "cli").glob("frame_*.png")):
        assert p.read_bytes() == (tmp_path / "here" / p.name).read_bytes(), p.name


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--preset", "no_such_preset"], "no preset 'no_such_preset'"),
    (["--size", "big"], "WIDTHxHEIGHT"),
    (["--size", "10x10"], "between 64 and 7680"),
    (["--format", "mp4", "--size", "321x181"], "even width and height"),
    (["--out", "{tmp}/missing/clip.gif"], "does not exist"),
    (["--steps", "0"], "Steps must be"),
])
def test_cli_bad_input_exits_2_with_a_clear_message(tmp_path, experiment_file, args, message):
    base = {"--experiment": str(experiment_file), "--steps": "2", "--format": "gif",
            "--out": str(tmp_path / "clip.gif"), "--size": "320x180"}
    if "--preset" in args:
        del base["--experiment"]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    r = run_cli(*[x for kv in base.items() for x in kv])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json"]


@pytest.mark.slow
def test_cli_unwritable_destination_exits_2(tmp_path, experiment_file):
    if os.geteuid() == 0:
        folder = Path("/sys")  # root ignores file modes, but sysfs refuses new files to anyone
    else:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o555)
    before = sorted(p.name for p in folder.iterdir())
    r = run_cli("--experiment", experiment_file, "--steps", 1, "--format", "gif",
                "--out", folder / "clip.gif")
    assert r.returncode == 2, r.stderr
    assert f"Cannot write to {folder / 'clip.gif'}: permission denied. Choose another " \
           "folder." in r.stderr
    assert sorted(p.name for p in folder.iterdir()) == before


def _limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
@pytest.mark.parametrize("fmt, name", [("gif", "clip.gif"), ("mp4", "clip.mp4"),
                                       ("png", "frames")])
def test_cli_running_out_of_space_exits_1_and_leaves_nothing(tmp_path, experiment_file, fmt,
                                                             name):
    """A file-size limit makes every write past 40 kB fail (EFBIG) in this process and
    in ffmpeg: the same path as a full disk, for real."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = run_cli("--experiment", experiment_file, "--steps", 30, "--micro", "--size",
                "640x360", "--format", fmt, "--out", out_dir / name,
                preexec_fn=_limit_file_size(40_000))
    assert r.returncode == 1, r.stderr
    assert "nothing was saved" in r.stderr and "Traceback" not in r.stderr
    assert list(out_dir.iterdir()) == []


def test_window_capture_follows_the_users_dock_layout(qtbot, window, out_dir):
    """From the app, the "window" capture is an offscreen copy of the main window with
    the user's dock layout; a floating dock is put back (it would be a window of its own)."""
    from PySide6.QtWidgets import QDockWidget

    from ui.export import build_capture

    window.docks["dock_loss"].hide()
    window.docks["dock_history"].setFloating(True)
    capture, used = build_capture("window", window.controller, SMALL,
                                  layout_state=window.saveState())
    try:
        copy = capture.widget
        docks = {d.objectName(): d for d in copy.findChildren(QDockWidget)}
        assert used == "window" and copy is not window
        assert not docks["dock_loss"].isVisible()
        assert not docks["dock_history"].isFloating()
        assert capture.grab(window.controller.snapshot).shape == (SMALL[1], SMALL[0], 3)
    finally:
        capture.close()
        window.docks["dock_history"].setFloating(False)


def test_export_action_waits_for_the_simulation(qtbot, tiny_experiment, settings):
    """The app builds the simulation in the background: Export is enabled once it exists."""
    from PySide6.QtGui import QAction

    from ui.app import MainWindow
    from ui.commands import Editor
    from ui.controller import SimulationController
    from ui.export import install_export_action

    controller = SimulationController(tiny_experiment, build_now=False)
    window = MainWindow(controller, Editor(controller), settings)
    qtbot.addWidget(window)
    install_export_action(window)
    action = window.findChild(QAction, "action_export")
    assert not action.isEnabled()
    with qtbot.waitSignal(controller.ready, timeout=120_000):
        controller.build_in_background()
    assert action.isEnabled()
    controller.shutdown()
    controller.deleteLater()
