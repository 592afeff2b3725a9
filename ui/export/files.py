"""Where an export goes: checking a destination before anything is rendered,
messages for OS errors, and removing temporary output."""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path

from simulator.tempfiles import remove_stale_temporaries, temp_prefix
from ui.export_spec import ExportError

MANIFEST_NAME = "frames.json"
MANIFEST_FORMAT = "gradient-flow-lab/frames"
_FRAME_FILE = re.compile(r"^frame_\d{5,}\.png$")


_umask_value: int | None = None


def umask() -> int:
    """The process umask, read without changing it where the OS allows (threads)."""
    global _umask_value
    if _umask_value is None:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        _umask_value = int(line.split()[1], 8)
        except (OSError, ValueError):
            pass
        if _umask_value is None:
            _umask_value = os.umask(0o022)
            os.umask(_umask_value)
    return _umask_value


def describe_os_error(e: OSError, dest: Path) -> str:
    """A message for the user: what went wrong with ``dest`` and what to do next."""
    code = e.errno
    folder = dest.parent
    if code in (errno.EACCES, errno.EPERM):
        return f"Cannot write to {dest}: permission denied. Choose another folder."
    if code == errno.EROFS:
        return f"Cannot write to {dest}: the drive is read-only. Choose another folder."
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"The disk is full while writing {dest}. Free some space or choose another "
                "drive; nothing was saved.")
    if code == errno.EFBIG:
        return (f"{dest} grew larger than this drive (or your account) allows a file to be. "
                "Export fewer frames or a smaller size, or choose another drive; nothing was "
                "saved.")
    if code == errno.ENOENT and folder.is_dir():  # /proc, /sys: folders that take no files
        return (f"Cannot write to {dest}: the folder {folder} does not accept new files. "
                "Choose another folder.")
    if code == errno.ENOENT:
        return (f"Cannot write to {dest}: the folder {folder} does not exist. Create it or "
                "choose another folder.")
    if code == errno.ENOTDIR:
        return f"Cannot write to {dest}: {folder} is not a folder. Choose another folder."
    reason = e.strerror or str(e)
    return f"Cannot write to {dest}: {reason}. Choose another folder."


def remove_path(path: Path | None) -> None:
    if path is None:
        return
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def is_earlier_export(folder: Path) -> bool:
    """True if ``folder`` holds only what a PNG export writes (so it may be replaced)."""
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return False
    return MANIFEST_NAME in names and all(n == MANIFEST_NAME or _FRAME_FILE.match(n)
                                          for n in names)


def check_destination(fmt: str, out: str | os.PathLike) -> Path:
    """Raise ExportError unless the export could be written to ``out``; returns it absolute.

    Proves it by creating (and removing) a temporary file next to the destination.
    """
    dest = Path(os.path.abspath(os.path.expanduser(str(out))))
    try:
        _check_destination(fmt, dest)
    except OSError as e:
        raise ExportError(describe_os_error(e, dest)) from None
    return dest


def _check_destination(fmt: str, dest: Path) -> None:
    if fmt == "png":
        if dest.exists() and not dest.is_dir():
            raise ExportError(f"{dest} is a file; a PNG sequence needs a folder. Choose a "
                              "new folder name.")
        if dest.is_dir() and any(dest.iterdir()) and not is_earlier_export(dest):
            raise ExportError(f"The folder {dest} already holds other files. Choose an empty "
                              "or new folder so no file of yours gets mixed with the frames.")
    elif dest.is_dir():
        raise ExportError(f"{dest} is a folder. Give a file name ending in .{fmt}.")
    if not dest.parent.is_dir():
        if dest.parent.exists():
            raise ExportError(f"Cannot write to {dest}: {dest.parent} is not a folder. "
                              "Choose another folder.")
        raise ExportError(f"Cannot write to {dest}: the folder {dest.parent} does not exist. "
                          "Create it or choose another folder.")
    remove_stale_temporaries(dest.parent)  # left by an export or save that was killed
    fd, name = tempfile.mkstemp(prefix=temp_prefix(dest.name), suffix=".check",
                                dir=dest.parent)
    os.close(fd)
    os.unlink(name)


