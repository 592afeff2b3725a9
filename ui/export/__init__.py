"""Export the animation: PNG frames, GIF and MP4, from the window and headless.

Frames are drawn by the same view classes that draw the screen (the network
canvas, the gradient-flow plot, the loss plot, or the whole main window), on a
private copy of the simulation, one frame per iteration or per micro-step::

    SimulationController ──> FrameSource ──> FrameCapture ──> writer thread ──> file
       (a private copy)      (steps it)      (view.render_snapshot,   (PNG / GIF / MP4,
                                              then widget -> QImage)    temp name, rename)

One idea per module:

- ``ui.export_spec``   what an export is (settings, checks, CLI options), without Qt
- ``frames``           FrameSource: steps the simulation, one frame per (micro-)step
- ``capture``          FrameCapture: a view drawn into an image of exact size
- ``files``            destinations: checks, OS-error messages, temporary output
- ``writers``          PNG sequence, GIF and MP4 writers
- ``job``              ExportJob: renders in slices, encodes on one worker thread
- ``dialog``           File > Export animation... (dialog, runner, progress)
- ``time_job``         the through-time export job (issue 9), for the dialog and the CLI
- ``cli``              ``python main.py export`` (imported only by the command line);
                       ``through_time`` is its through-time half

Imports go one way: ui.app -> ui.export.dialog -> job -> capture / writers -> frames.
The "window" view gets the main window class by registration (ui.app calls
``register_window_class``), so nothing here imports ui.app except ``cli``, which
nothing in the window imports.

Guarantees:

- A writer first creates its temporary file or folder next to the destination,
  so an unwritable destination fails before anything is rendered. The result is
  renamed into place only when complete; a cancel or an error removes it.
- PNG frames carry no timestamp or other metadata, so the same experiment and
  seed give byte-identical frames.
- Rendering runs on the GUI thread (it uses widgets) in short slices; encoding
  runs on one worker thread so frame k+1 renders while frame k compresses.
"""

from ui.export.capture import (
    VIEW_FACTORIES,
    ComposedView,
    FrameCapture,
    build_capture,
    register_window_class,
    window_view_available,
)
from ui.export.dialog import ExportDialog, ExportRunner, WindowExporter, install_export_action
from ui.export.files import MANIFEST_FORMAT, MANIFEST_NAME, check_destination, describe_os_error
from ui.export.frames import FrameInfo, FrameSource, phase_text
from ui.export.job import SLICE_SECONDS, ExportJob, ExportResult, clone_controller
from ui.export.writers import (
    PNG_COMPRESS_LEVEL,
    WRITERS,
    FrameWriter,
    GifWriter,
    Mp4Writer,
    PngSequenceWriter,
    encode_png,
    manifest_text,
)
from ui.export_spec import (
    DEFAULT_FPS,
    DEFAULT_SIZE,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    FORMAT_LABELS,
    FORMATS,
    GIF_MAX_FPS,
    MAX_FPS,
    MAX_FRAMES,
    MAX_SIDE,
    MAX_STEPS,
    MIN_SIDE,
    SIZE_PRESETS,
    VIEW_LABELS,
    VIEWS,
    ExportError,
    ExportSettings,
    count_frames,
    parse_size,
    with_format_suffix,
)

__all__ = [
    "DEFAULT_FPS", "DEFAULT_SIZE", "EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED",
    "EXIT_OK", "FORMATS", "FORMAT_LABELS", "GIF_MAX_FPS", "MANIFEST_FORMAT", "MANIFEST_NAME",
    "MAX_FPS", "MAX_FRAMES", "MAX_SIDE", "MAX_STEPS", "MIN_SIDE", "PNG_COMPRESS_LEVEL",
    "SIZE_PRESETS", "SLICE_SECONDS", "VIEWS", "VIEW_FACTORIES", "VIEW_LABELS", "WRITERS",
    "ComposedView", "ExportDialog", "ExportError", "ExportJob", "ExportResult", "ExportRunner",
    "ExportSettings", "FrameCapture", "FrameInfo", "FrameSource", "FrameWriter", "GifWriter",
    "Mp4Writer", "PngSequenceWriter", "WindowExporter", "build_capture", "check_destination",
    "clone_controller", "count_frames", "describe_os_error", "encode_png",
    "install_export_action", "manifest_text", "parse_size", "phase_text",
    "register_window_class", "window_view_available", "with_format_suffix",
]
