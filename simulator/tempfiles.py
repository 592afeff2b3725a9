"""Temporary files next to a destination, and removing the ones a killed run left.

Saves and exports write ``.NAME.gfl<pid>.<random>.<kind>`` beside the target and
rename it into place when complete (kind: ``tmp`` for experiment files, ``partial``
for exports, ``check`` for a writability probe, ``old`` for an export being
replaced). A run killed midway leaves its temporary behind; the next save or
export into that folder removes every one whose process is gone.
"""

from __future__ import annotations

import os
import re
import shutil

KINDS = ("tmp", "partial", "check", "old")
_STALE = re.compile(r"^\..+\.gfl(\d+)\.[A-Za-z0-9_]+\.(?:tmp|partial|check|old)$")


def temp_prefix(name: str) -> str:
    """The prefix for tempfile.mkstemp / mkdtemp: hidden, named after the target, and
    carrying this process's id (so a later run can tell whether it is still in use)."""
    return f".{name}.gfl{os.getpid()}."


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its files alone
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Remove the temporaries in ``folder`` whose process no longer runs; returns their
    names. Only names of this app's pattern are touched; errors are ignored (it is
    housekeeping, never a reason for a save to fail)."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _STALE.match(entry.name)
        if m is None or _alive(int(m.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            continue
    return removed
