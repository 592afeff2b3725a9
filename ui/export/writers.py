"""Frame writers: a PNG sequence with its manifest, an animated GIF, an MP4 through
ffmpeg. Each writes to a temporary file or folder next to the destination and
renames it into place only when complete."""

from __future__ import annotations

import errno
import json
import os
import signal
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np

from simulator.tempfiles import temp_prefix
from ui.export.files import MANIFEST_NAME, describe_os_error, is_earlier_export, remove_path, umask
from ui.export.frames import FrameInfo
from ui.export_spec import ExportError

PNG_COMPRESS_LEVEL = 1  # zlib: half the time of level 6 for 1280x720 UI frames, ~25% larger

class FrameWriter:
    """Base: a temporary file or folder next to ``dest``, renamed into place by ``commit``.

    ``open`` creates the temporary (proving the destination writable), ``write``
    adds one RGB frame, ``commit`` finishes and renames, ``discard`` removes it.
    ``write`` / ``commit`` run on the export's worker thread; OSError there is
    turned into an ExportError by the job.
    """

    def __init__(self, dest: Path, size: tuple[int, int], fps: int, manifest: dict):
        self.dest = dest
        self.size = size
        self.fps = fps
        self.manifest = manifest
        self.tmp: Path | None = None
        self.frames_written = 0

    def open(self) -> None:
        raise NotImplementedError

    def write(self, rgb: np.ndarray, info: FrameInfo) -> None:
        raise NotImplementedError

    def commit(self) -> Path:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Make a ``write`` under way on the encoder thread return soon (cancel, error)."""

    def discard(self) -> None:
        remove_path(self.tmp)
        self.tmp = None

    def _new_temp_file(self) -> Path:
        fd, name = tempfile.mkstemp(prefix=temp_prefix(self.dest.name), suffix=".partial",
                                    dir=self.dest.parent)
        os.close(fd)
        self.tmp = Path(name)
        return self.tmp

    def _replace_file(self) -> Path:
        """fsync and rename the finished temporary file over ``dest``."""
        os.chmod(self.tmp, 0o666 & ~umask())  # mkstemp made it private
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.dest)
        self.tmp = None
        return self.dest


def encode_png(rgb: np.ndarray, level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """An (h, w, 3) uint8 image as PNG bytes: 8-bit RGB, one IDAT, no other chunk.

    Every row uses filter type 2, "Up" (each byte minus the byte above it, modulo
    256; the first row's "above" is zeros; PNG spec section 9.2): on UI pictures,
    mostly flat colours and straight lines, it compresses as well as Pillow's
    adaptive filters in a third of the time, in two numpy and zlib calls that
    release the GIL. Nothing but pixels goes in, so equal pixels give equal bytes.
    """
    h, w, _ = rgb.shape
    rows = rgb.reshape(h, 3 * w)
    filtered = np.empty((h, 3 * w + 1), np.uint8)
    filtered[:, 0] = 2
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # uint8 wraps: modulo 256

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    # width, height, bit depth 8, colour type 2 (RGB), deflate, filter method 0, no interlace
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(filtered, level)) + chunk(b"IEND", b""))


def manifest_text(header: dict, frames: list[dict]) -> str:
    """frames.json: the header fields, then one line per frame (diff- and grep-friendly)."""
    head = json.dumps({**header, "frames": []}, indent=1, allow_nan=False, ensure_ascii=False)
    rows = ",\n".join("  " + json.dumps(f, allow_nan=False, ensure_ascii=False)
                      for f in frames)
    body = f'"frames": [\n{rows}\n ]' if frames else '"frames": []'
    return head.replace('"frames": []', body) + "\n"


class PngSequenceWriter(FrameWriter):
    """frame_00000.png, ... and frames.json, in a folder that appears complete or not at all."""

    def open(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(self.dest.name), suffix=".partial",
                                         dir=self.dest.parent))
        self.frames = []

    def write(self, rgb: np.ndarray, info: FrameInfo) -> None:
        name = f"frame_{info.index:05d}.png"
        data = encode_png(rgb)
        with open(self.tmp / name, "wb") as f:
            f.write(data)
        self.frames.append({"file": name, **info.to_json()})
        self.frames_written += 1

    def commit(self) -> Path:
        path = self.tmp / MANIFEST_NAME
        with open(path, "w", encoding="utf-8") as f:
            f.write(manifest_text(self.manifest, self.frames))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(self.tmp, 0o777 & ~umask())  # mkdtemp made it private
        old = None
        if self.dest.is_dir():
            if any(self.dest.iterdir()):
                if not is_earlier_export(self.dest):
                    raise ExportError(f"The folder {self.dest} was filled with other files "
                                      "during the export. Choose an empty or new folder.")
                # Move the earlier export aside first, so dest is never half old, half new.
                old = Path(tempfile.mkdtemp(prefix=temp_prefix(self.dest.name), suffix=".old",
                                            dir=self.dest.parent))
                os.replace(self.dest, old / "export")
            else:
                self.dest.rmdir()
        os.replace(self.tmp, self.dest)
        self.tmp = None
        remove_path(old)
        return self.dest


class GifWriter(FrameWriter):
    """An animated GIF, streamed to disk frame by frame (memory stays one frame).

    Each frame gets its own 256-colour palette (median cut, no dithering: exact and
    deterministic for flat UI colours) and only the rectangle that changed since the
    previous frame is stored; identical frames are merged into a longer delay.
    Delays are whole centiseconds, rounded from exact frame times so the average
    rate is ``fps`` (e.g. 3, 3, 4 cs at 30 fps).
    """

    def open(self) -> None:
        self._new_temp_file()
        self._file = open(self.tmp, "wb")  # noqa: SIM115 (closed in commit/discard)
        self._prev = None
        self._pending = None  # (image, offset, n_frames) written when the next one differs
        self._frames_in_file = 0

    def _delay_ms(self, first: int, n: int) -> int:
        t = lambda i: round(i * 100 / self.fps)  # noqa: E731 (frame i's start, centiseconds)
        return max(2, t(first + n) - t(first)) * 10

    def _flush_pending(self) -> None:
        from PIL import GifImagePlugin

        if self._pending is None:
            return
        image, offset, first, n = self._pending
        params = {"duration": self._delay_ms(first, n), "disposal": 1}
        if self._frames_in_file == 0:
            header, _ = GifImagePlugin.getheader(image, info={"loop": 0})
            for chunk in header:
                self._file.write(chunk)
        else:
            params["include_color_table"] = True
        for chunk in GifImagePlugin.getdata(image, offset=offset, **params):
            self._file.write(chunk)
        self._frames_in_file += 1
        self._pending = None

    def write(self, rgb: np.ndarray, info: FrameInfo) -> None:
        from PIL import Image

        index = self.frames_written
        self.frames_written += 1
        if self._prev is None:
            box = (0, 0, rgb.shape[1], rgb.shape[0])
        else:
            changed = np.any(rgb != self._prev, axis=2)
            rows = np.flatnonzero(changed.any(axis=1))
            if rows.size == 0:  # same picture: show the pending one longer
                image, offset, first, n = self._pending
                self._pending = (image, offset, first, n + 1)
                return
            cols = np.flatnonzero(changed.any(axis=0))
            box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        self._flush_pending()
        self._prev = rgb
        part = Image.fromarray(np.ascontiguousarray(rgb[box[1]:box[3], box[0]:box[2]]), "RGB")
        image = part.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        self._pending = (image, (box[0], box[1]), index, 1)

    def commit(self) -> Path:
        self._flush_pending()
        self._file.write(b";")  # trailer
        self._file.close()
        return self._replace_file()

    def discard(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None and not f.closed:
            try:
                f.close()
            except OSError:
                pass
        super().discard()


class Mp4Writer(FrameWriter):
    """H.264 in MP4 (yuv420p, plays everywhere) through imageio-ffmpeg's ffmpeg binary.

    ffmpeg is run directly (not through ``imageio_ffmpeg.write_frames``) so its exit
    status and error text are checked: a full disk when ffmpeg writes the index at
    the end must fail the export, not leave a broken file.
    """

    def open(self) -> None:
        try:
            import imageio_ffmpeg

            exe = imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError) as e:
            raise ExportError("MP4 export needs ffmpeg, which comes with the imageio-ffmpeg "
                              f"package ({e}). Install it (pip install imageio-ffmpeg) or "
                              "export a GIF or PNG sequence.") from None
        self._new_temp_file()
        w, h = self.size
        self._log = tempfile.TemporaryFile()  # ffmpeg's stderr: a file never fills up like a pipe
        cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(self.fps),
               "-i", "pipe:0", "-an",
               "-c:v", "libx264", "-preset", "veryfast", "-tune", "animation", "-crf", "18",
               "-pix_fmt", "yuv420p",
               # no encoder string, creation time or other metadata: reproducible files
               "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
               "-movflags", "+faststart", "-f", "mp4", str(self.tmp)]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=self._log)
        except OSError as e:
            self.discard()
            raise ExportError(f"Could not start ffmpeg ({e}). Export a GIF or PNG sequence "
                              "instead.") from None

    def _ffmpeg_error(self) -> str:
        try:
            self._log.seek(0)
            text = self._log.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            text = ""
        return text.splitlines()[-1] if text else ""

    def _fail(self) -> None:
        """ffmpeg stopped or failed: raise the most useful message."""
        code = self._proc.wait()
        detail = self._ffmpeg_error()
        low = detail.lower()
        if code == -getattr(signal, "SIGXFSZ", 25):  # killed for exceeding the file size limit
            raise ExportError(describe_os_error(OSError(errno.EFBIG, "File too large"),
                                                self.dest))
        for words, code in (("no space left", errno.ENOSPC), ("file too large", errno.EFBIG),
                            ("permission denied", errno.EACCES),
                            ("disk quota", errno.EDQUOT)):
            if words in low:
                raise ExportError(describe_os_error(OSError(code, detail), self.dest))
        raise ExportError(f"ffmpeg could not write {self.dest}"
                          + (f": {detail}" if detail else f" (exit status "
                             f"{self._proc.returncode})")
                          + ". Nothing was saved; try another folder, a GIF, or a PNG sequence.")

    def write(self, rgb: np.ndarray, info: FrameInfo) -> None:
        try:
            self._proc.stdin.write(memoryview(np.ascontiguousarray(rgb)).cast("B"))
        except (OSError, ValueError):  # ffmpeg has stopped (a full disk, ...)
            self._fail()
        self.frames_written += 1

    def commit(self) -> Path:
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        if self._proc.wait() != 0:
            self._fail()
        self._log.close()
        return self._replace_file()

    def interrupt(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()  # a write blocked on the pipe fails at once

    def discard(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.stdin.close()
            except (OSError, ValueError):
                pass
            proc.wait()
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
        super().discard()


WRITERS = {"png": PngSequenceWriter, "gif": GifWriter, "mp4": Mp4Writer}

