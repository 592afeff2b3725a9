"""What an export is, without Qt: formats, views and sizes, ``ExportSettings`` and its
checks, how many frames it makes, and the options of ``python main.py export``.

Kept apart from ``ui.export`` (which renders with Qt widgets) so the command line
can be built, and settings checked, without importing Qt: ``main.py probe`` never
loads it. ``ui.export`` re-exports everything here.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("png", "gif", "mp4")
FORMAT_LABELS = {"png": "PNG sequence", "gif": "GIF", "mp4": "MP4 (H.264)"}
VIEWS = ("canvas", "flow", "composed", "composed_factors", "window")
VIEW_LABELS = {
    "window": "Whole window",
    "canvas": "Network canvas",
    "flow": "Gradient flow",
    "composed": "Canvas + gradient flow + loss",
    "composed_factors": "Canvas + chain-rule factors + gradient flow + loss",
}
SIZE_PRESETS = ((1280, 720), (1920, 1080), (1024, 1024))
DEFAULT_SIZE = (1280, 720)
DEFAULT_FPS = 10
MIN_SIDE, MAX_SIDE = 64, 7680
MAX_FPS = 60
GIF_MAX_FPS = 50  # GIF delays are whole centiseconds; players slow down anything under 2 cs
MAX_STEPS = 1_000_000
MAX_FRAMES = 100_000


class ExportError(Exception):
    """An export cannot start or could not finish. The message says what to do next."""


# -- settings ----------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720). Raises ExportError with a usable message."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*", str(text))
    if not m:
        raise ExportError(f"Size must be WIDTHxHEIGHT, e.g. 1280x720 (got {text!r}).")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class ExportSettings:
    """What to export. ``micro``: one frame per micro-step instead of per iteration;
    ``every``: keep every K-th iteration (micro: animate every K-th iteration and
    run the ones between at full speed)."""

    out: Path
    format: str = "gif"
    view: str = "canvas"
    size: tuple[int, int] = DEFAULT_SIZE
    steps: int = 10
    micro: bool = False
    every: int = 1
    fps: int = DEFAULT_FPS

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    def problems(self) -> list[str]:
        """Everything wrong with these settings, as messages for the user (empty if fine)."""
        out = []
        if self.format not in FORMATS:
            out.append(f"Format must be one of {', '.join(FORMATS)} (got {self.format!r}).")
        if self.view not in VIEWS:
            out.append(f"View must be one of {', '.join(VIEWS)} (got {self.view!r}).")
        w, h = self.size
        if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
            out.append(f"Width and height must be between {MIN_SIDE} and {MAX_SIDE} pixels "
                       f"(got {w}x{h}).")
        elif self.format == "mp4" and (w % 2 or h % 2):
            out.append(f"MP4 (H.264, yuv420p) needs an even width and height: use "
                       f"{w - w % 2}x{h - h % 2} instead of {w}x{h}.")
        if not 1 <= self.steps <= MAX_STEPS:
            out.append(f"Steps must be between 1 and {MAX_STEPS} (got {self.steps}).")
        if not 1 <= self.every <= MAX_STEPS:
            out.append(f"'Every' must be at least 1 (got {self.every}).")
        top = GIF_MAX_FPS if self.format == "gif" else MAX_FPS
        if not 1 <= self.fps <= top:
            extra = " (GIF delays are whole hundredths of a second)" if self.format == "gif" else ""
            out.append(f"Frames per second must be between 1 and {top}{extra} (got {self.fps}).")
        text = str(self.out).strip()
        if not text or text == ".":
            out.append("Choose where to save the export.")
        elif self.format == "png" and Path(text).suffix.lower() in (".png", ".gif", ".mp4"):
            out.append(f"A PNG sequence is saved as a folder of frames: give a folder name, "
                       f"not {Path(text).name!r}.")
        elif self.format in ("gif", "mp4") and Path(text).suffix.lower() != f".{self.format}":
            out.append(f"The file name must end in .{self.format} (got {Path(text).name!r}).")
        return out

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise ExportError(" ".join(problems))


def with_format_suffix(path: str | os.PathLike, fmt: str) -> Path:
    """``path`` with the suffix ``fmt`` needs (a folder for PNG, .gif / .mp4 otherwise)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".gif", ".mp4", ".png"):
        p = p.with_suffix("")
    return p if fmt == "png" else p.with_name(p.name + f".{fmt}")


def count_frames(steps: int, micro: bool, every: int, n_micro_steps: int,
                 position: int = 0) -> int:
    """Frames an export makes: the starting state, then one per kept iteration, or one
    per micro-step of every animated iteration (the first may already be under way)."""
    if not micro:
        return 1 + math.ceil(steps / every)
    animated = math.ceil(steps / every)
    return 1 + animated * n_micro_steps - position

EXIT_OK = 0
EXIT_FAILED = 1  # the export started but could not be written (disk full, ffmpeg failed)
EXIT_BAD_INPUT = 2  # as the other subcommands: bad preset, file, size, destination, numbers
EXIT_INTERRUPTED = 130

EXPORT_HELP = "render the animation headless to PNG frames, a GIF or an MP4"
EXPORT_DESCRIPTION = (
    "Train N iterations from the experiment's start and draw one frame per iteration "
    "(or per micro-step with --micro, so the backward pass moves layer by layer) with the "
    "same views as the window, offscreen. Writes a folder of frame_00000.png... with a "
    "frames.json manifest, a looping GIF, or an H.264 MP4; the output appears complete or "
    "not at all. Exit codes: 0 done, 1 the export failed while writing (disk full, ...), "
    "2 bad input (preset, file, size, destination), 130 interrupted.")


def cli_add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python main.py export``."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", metavar="NAME", help="a preset, e.g. deep_sigmoid")
    what.add_argument("--experiment", metavar="FILE", help="an experiment JSON file")
    parser.add_argument("--steps", type=int, required=True, metavar="N",
                        help="training iterations to animate, from the starting state")
    parser.add_argument("--micro", action="store_true",
                        help="one frame per micro-step (the backward pass animated layer by "
                             "layer) instead of one per iteration")
    parser.add_argument("--every", type=int, default=1, metavar="K",
                        help="keep every K-th iteration (with --micro: animate every K-th "
                             "iteration, run the others at full speed); default 1")
    parser.add_argument("--view", choices=VIEWS, default="canvas",
                        help="what to draw: the network canvas, the gradient flow, both "
                             "with the loss (composed), the same plus the chain-rule factor "
                             "panel (composed_factors; with --micro it follows the layer "
                             "being computed), or the whole window; default canvas")
    parser.add_argument("--size", default=f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}",
                        metavar="WxH", help="frame size in pixels; default %(default)s")
    parser.add_argument("--fps", type=int, default=DEFAULT_FPS, metavar="F",
                        help="frames per second of the GIF/MP4 (and in frames.json); "
                             "default %(default)s")
    parser.add_argument("--format", choices=FORMATS, required=True,
                        help="png (a folder of frame_00000.png... and frames.json), gif or mp4")
    parser.add_argument("--out", required=True, metavar="PATH",
                        help="the .gif or .mp4 file, or the folder for the PNG frames")
